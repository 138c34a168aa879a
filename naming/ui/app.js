// The dashboard: it reads /v1/ui/stream (server-sent events, read with
// fetch so that a token can go in a header), falls back to polling
// /v1/ui/state, and renders every group from each state it gets. Text
// from the state is set as text, never as HTML.
"use strict";

const groupsEl = document.getElementById("groups");
const connEl = document.getElementById("conn");
const loginEl = document.getElementById("login");
const problemEl = document.getElementById("login-problem");

function headers() {
  const t = sessionStorage.getItem("mastership-token");
  if (t && !sendable.test(t)) {
    // Kept by an older page: no fetch could send it.
    sessionStorage.removeItem("mastership-token");
    ask("The token this tab kept cannot be sent; enter it again.");
    return {};
  }
  return t ? { Authorization: "Bearer " + t } : {};
}

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v;
    else if (k.startsWith("data-")) e.setAttribute(k, v);
    else e[k] = v;
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}

function setConn(state, text) {
  connEl.className = "conn " + state;
  connEl.textContent = text;
}

function render(st) {
  document.getElementById("node").textContent = "naming node " + st.node + " (" + st.role + ")";
  document.getElementById("more").hidden = !st.more;
  const sections = st.groups.map(renderGroup);
  if (sections.length === 0) sections.push(el("p", {}, "No group yet."));
  groupsEl.replaceChildren(...sections);
  document.body.setAttribute("data-updated", st.time || new Date().toISOString());
}

function renderGroup(g) {
  let badge;
  if (g.masters > 1) badge = el("span", { class: "badge split" }, "split brain: " + g.masters + " masters");
  else if (g.masters === 1) badge = el("span", { class: "badge ok" }, "one master");
  else badge = el("span", { class: "badge none" }, "no master");
  const reg = g.master ? "registered: " + g.master.id + " at epoch " + g.master.epoch.term + "." + g.master.epoch.id : "no master registered";
  const title = el("h2", {}, el("span", {}, g.group), badge,
    el("span", { class: "badge" }, g.mode + ", " + g.policy + (g.paused ? ", paused" : "")),
    el("span", { class: "badge" }, reg));
  const head = el("tr", {}, ...["ID", "role", "epoch", "follows", "serving", "digest", "address"].map(h => el("th", {}, h)));
  const rows = g.members.map(m => {
    const cls = "member " + (m.error ? "down" : m.role) + (m.expired ? " expired" : "");
    return el("tr", { class: cls, "data-id": m.id, "data-role": m.role || "unreachable" },
      el("td", {}, m.id),
      el("td", { class: "role" }, m.error ? "unreachable" : m.role),
      el("td", {}, m.epoch || ""),
      el("td", {}, m.master ? m.master : ""),
      el("td", {}, m.error ? "" : (m.serving ? "yes" : "no")),
      el("td", { class: "digest" }, (m.digest || "").slice(0, 12)),
      el("td", { title: m.error || "" }, m.addr + (m.expired ? " (session expired)" : "")));
  });
  const events = el("ul", { class: "events" }, ...g.events.slice().reverse().map(e =>
    el("li", {}, new Date(e.time).toLocaleTimeString() + " ", el("span", { class: "kind" }, e.kind), " " + describe(e))));
  return el("section", { class: "group" + (g.masters > 1 ? " split" : ""), "data-group": g.group, "data-masters": g.masters },
    title, el("table", {}, el("thead", {}, head), el("tbody", {}, ...rows)), events);
}

function describe(e) {
  const parts = [];
  if (e.id) parts.push("id=" + e.id);
  if (e.retained) parts.push("retained=" + e.retained);
  if (e.removed && e.removed.length) parts.push("removed=" + e.removed.join(","));
  if (e.epoch && e.epoch.term) parts.push("epoch=" + e.epoch.term + "." + e.epoch.id);
  if (e.reason) parts.push(e.reason);
  if (e.error) parts.push(e.error);
  return parts.join(" ");
}

async function stream() {
  const hs = headers(); // may drop a kept token it cannot send
  const used = sessionStorage.getItem("mastership-token");
  const resp = await fetch("/v1/ui/stream", { headers: hs });
  if (used !== sessionStorage.getItem("mastership-token")) {
    // The answer is to a token the user has replaced meanwhile: it says
    // nothing of the new one, which the next try sends.
    resp.body && resp.body.cancel();
    throw new Error("the token changed; trying the new one");
  }
  if (resp.status === 401 || resp.status === 403) {
    // With no token, what the prompt says already stays (a kept token
    // was dropped, say).
    let why = problemEl.textContent || "No token yet.";
    if (resp.status === 403) why = "The token was accepted but lacks the read capability.";
    else if (sessionStorage.getItem("mastership-token")) why = "The token was refused: the naming node's ACL does not hold it.";
    ask(why);
    throw new Error(why);
  }
  if (!resp.ok || !resp.body) throw new Error("stream: " + resp.status);
  setConn("live", "live");
  problemEl.textContent = "";
  loginEl.hidden = true;
  const reader = resp.body.getReader();
  const dec = new TextDecoder();
  let buf = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buf += dec.decode(value, { stream: true });
    let i;
    while ((i = buf.indexOf("\n\n")) >= 0) {
      const msg = buf.slice(0, i);
      buf = buf.slice(i + 2);
      const data = msg.split("\n").filter(l => l.startsWith("data: ")).map(l => l.slice(6)).join("\n");
      if (data) render(JSON.parse(data));
    }
  }
}

async function poll() {
  const resp = await fetch("/v1/ui/state", { headers: headers() });
  if (!resp.ok) throw new Error("state: " + resp.status);
  render(await resp.json());
}

async function run() {
  for (;;) {
    try {
      await stream();
    } catch (err) {
      setConn("down", String(err.message || err));
      try { await poll(); } catch (_) { /* shown above */ }
    }
    await new Promise(r => setTimeout(r, 1000));
  }
}

// ask shows the token prompt with why.
function ask(why) {
  problemEl.textContent = why;
  loginEl.hidden = false;
}

// A header carries printable ASCII only: fetch throws on a character past
// Latin-1, and sends one past ASCII as a byte the secret does not hold.
// Such a token is refused here, not kept: kept, every fetch would throw
// and the page would retry it with no prompt to correct it. (Spaces at
// the ends are trimmed, as the naming node trims a bearer token.)
const sendable = /^[\x20-\x7e]+$/;

loginEl.addEventListener("submit", ev => {
  ev.preventDefault();
  const token = document.getElementById("token").value.trim();
  if (!sendable.test(token)) {
    // The token kept before goes too: the page's retries would send it,
    // and what its refusal says would stand for this one.
    sessionStorage.removeItem("mastership-token");
    ask(token === "" ? "Enter a token." :
      "This token cannot be sent: a header carries ASCII letters, digits, punctuation and spaces only. Use mastership status with it instead.");
    return;
  }
  sessionStorage.setItem("mastership-token", token);
  problemEl.textContent = "";
  loginEl.hidden = true;
});

run();
