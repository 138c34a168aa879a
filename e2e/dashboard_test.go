package e2e

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// webDriver drives a real browser through chromedriver's WebDriver
// protocol (plain HTTP and JSON).
type webDriver struct {
	t       *testing.T
	base    string // http://127.0.0.1:PORT
	session string
	hc      *http.Client
}

func (wd *webDriver) call(method, path string, body any, out any) error {
	var in io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		in = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, wd.base+path, in)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := wd.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return fmt.Errorf("%s %s: %s %s", method, path, resp.Status, b)
	}
	var v struct {
		Value json.RawMessage `json:"value"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return fmt.Errorf("%s %s: %v: %s", method, path, err, b)
	}
	if out != nil {
		return json.Unmarshal(v.Value, out)
	}
	return nil
}

// startBrowser starts chromedriver and a headless Chromium session, or
// skips the test, saying why, where they are not installed.
func startBrowser(t *testing.T) *webDriver {
	t.Helper()
	driver, err := exec.LookPath("chromedriver")
	if err != nil {
		t.Skip("chromedriver is not installed (Debian: apt-get install chromium chromium-driver)")
	}
	browser, err := exec.LookPath("chromium")
	if err != nil {
		t.Skip("chromium is not installed (Debian: apt-get install chromium chromium-driver)")
	}
	addr := freeAddr(t, "127.0.0.1")
	port := addr[strings.LastIndex(addr, ":")+1:]
	cmd := exec.Command(driver, "--port="+port)
	var log bytes.Buffer
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	wd := &webDriver{t: t, base: "http://" + addr, hc: &http.Client{Timeout: 60 * time.Second}}
	waitFor(t, 20*time.Second, "chromedriver ready", func() bool {
		var st struct {
			Ready bool `json:"ready"`
		}
		return wd.call("GET", "/status", nil, &st) == nil && st.Ready
	})
	caps := map[string]any{"capabilities": map[string]any{"alwaysMatch": map[string]any{
		"browserName": "chrome",
		"goog:chromeOptions": map[string]any{"binary": browser, "args": []string{
			"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
			"--disable-background-networking", "--disable-component-update", "--disable-sync",
			"--user-data-dir=" + t.TempDir(), "--window-size=1300,700"}},
	}}}
	var sess struct {
		SessionID string `json:"sessionId"`
	}
	if err := wd.call("POST", "/session", caps, &sess); err != nil {
		t.Fatalf("start a browser session: %v\n%s", err, log.String())
	}
	wd.session = sess.SessionID
	t.Cleanup(func() { wd.call("DELETE", "/session/"+wd.session, nil, nil) })
	return wd
}

func (wd *webDriver) open(url string) {
	if err := wd.call("POST", "/session/"+wd.session+"/url", map[string]string{"url": url}, nil); err != nil {
		wd.t.Fatal(err)
	}
}

// eval runs script in the page and decodes what it returns into out.
func (wd *webDriver) eval(script string, out any) error {
	return wd.call("POST", "/session/"+wd.session+"/execute/sync", map[string]any{"script": script, "args": []any{}}, out)
}

// read is eval that fails the test on error.
func (wd *webDriver) read(script string, out any) {
	if err := wd.eval(script, out); err != nil {
		wd.t.Fatal(err)
	}
}

// screenshot saves the page as a PNG in the e2e artifacts dir
// (MASTERSHIP_E2E_LOG_DIR, else the system's temporary dir) and returns
// its path.
func (wd *webDriver) screenshot(name string) string {
	var b64 string
	if err := wd.call("GET", "/session/"+wd.session+"/screenshot", nil, &b64); err != nil {
		wd.t.Fatal(err)
	}
	png, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		wd.t.Fatal(err)
	}
	dir := os.Getenv("MASTERSHIP_E2E_LOG_DIR")
	if dir == "" {
		dir = os.TempDir()
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, png, 0o644); err != nil {
		wd.t.Fatal(err)
	}
	return path
}

// dashGroup is what the rendered page shows of group g.
type dashView struct {
	Masters int      `json:"masters"`
	Split   bool     `json:"split"`
	Badge   string   `json:"badge"`
	Roles   []string `json:"roles"`
}

const dashScript = `const s = document.querySelector('section.group[data-group="g"]');
if (!s) return {masters: -1, split: false, badge: "", roles: []};
return {masters: Number(s.dataset.masters), split: s.classList.contains("split"),
  badge: s.querySelector(".badge").textContent,
  roles: Array.from(s.querySelectorAll("tr.member")).map(r => r.dataset.role)};`

// The dashboard in a real browser (headless Chromium through
// chromedriver), against a running naming node and three agents, through
// a partition and its heal: the page shows one master, then the split
// brain (two masters, in red) as it happens, then one master again,
// updating live from the naming node's stream. A screenshot of the split
// is kept.
func TestDashboardInBrowser(t *testing.T) {
	wd := startBrowser(t)
	g := startGroupAt(t, 143, 3, "available", false, "local", "-fault-control")
	waitFor(t, 20*time.Second, "a registered master", func() bool { return cliRegistered(t, g.naming, "g") != 0 })
	wd.open("http://" + g.naming + "/ui/")
	view := func() (v dashView) { wd.read(dashScript, &v); return v }
	var v dashView
	waitFor(t, 20*time.Second, "the page shows one master and every member", func() bool {
		v = view()
		return v.Masters == 1 && !v.Split && len(v.Roles) == 3 && v.Badge == "one master"
	})
	master := cliRegistered(t, g.naming, "g")
	var alone, others []cliAgent
	for _, a := range g.agents {
		if a.id == master {
			alone = append(alone, a)
		} else {
			others = append(others, a)
		}
	}
	namingIP := g.naming[:strings.LastIndex(g.naming, ":")]
	for _, a := range others {
		if _, errOut, code := run(t, "fault", "-agent", a.api, "partition", "-from", alone[0].ip+","+namingIP); code != 0 {
			t.Fatalf("partition %d: %s", a.id, errOut)
		}
	}
	if _, errOut, code := run(t, "fault", "-agent", alone[0].api, "partition", "-from", others[0].ip+","+others[1].ip); code != 0 {
		t.Fatalf("partition %d: %s", alone[0].id, errOut)
	}
	waitFor(t, 20*time.Second, "the page shows the split brain: two masters, in red", func() bool {
		v = view()
		return v.Masters == 2 && v.Split && strings.HasPrefix(v.Badge, "split brain: 2 masters")
	})
	t.Logf("split brain on the page: %+v; screenshot %s", v, wd.screenshot("dashboard-split-brain.png"))
	for _, a := range g.agents {
		if _, errOut, code := run(t, "fault", "-agent", a.api, "heal"); code != 0 {
			t.Fatalf("heal %d: %s", a.id, errOut)
		}
	}
	waitFor(t, 30*time.Second, "the page shows one master again", func() bool {
		v = view()
		return v.Masters == 1 && !v.Split && v.Badge == "one master"
	})
	t.Logf("healed on the page: %+v; screenshot %s", v, wd.screenshot("dashboard-healed.png"))
}

// element finds the element that the CSS selector sel names.
func (wd *webDriver) element(sel string) string {
	var el map[string]string
	if err := wd.call("POST", "/session/"+wd.session+"/element", map[string]string{"using": "css selector", "value": sel}, &el); err != nil {
		wd.t.Fatal(err)
	}
	for _, id := range el {
		return id
	}
	wd.t.Fatalf("element %s: no ID in the answer", sel)
	return ""
}

// typeInto clears the field sel and types text into it, key by key, as
// a user does.
func (wd *webDriver) typeInto(sel, text string) {
	id := wd.element(sel)
	if err := wd.call("POST", "/session/"+wd.session+"/element/"+id+"/clear", map[string]any{}, nil); err != nil {
		wd.t.Fatal(err)
	}
	if err := wd.call("POST", "/session/"+wd.session+"/element/"+id+"/value", map[string]string{"text": text}, nil); err != nil {
		wd.t.Fatal(err)
	}
}

func (wd *webDriver) click(sel string) {
	if err := wd.call("POST", "/session/"+wd.session+"/element/"+wd.element(sel)+"/click", map[string]any{}, nil); err != nil {
		wd.t.Fatal(err)
	}
}

// loginView is what the page shows of its token prompt.
type loginView struct {
	Login   bool   `json:"login"`   // the prompt is shown
	Problem string `json:"problem"` // the prompt's message
	Conn    string `json:"conn"`    // the connection line
	Groups  int    `json:"groups"`  // group sections rendered
	Masters int    `json:"masters"` // of group g, -1 if not shown
	Session string `json:"session"` // the token the tab keeps
	Local   int    `json:"local"`   // entries of localStorage
	URL     string `json:"url"`
}

const loginScript = `const s = document.querySelector('section.group[data-group="g"]');
const p = document.getElementById("login-problem");
return {login: !document.getElementById("login").hidden, problem: p ? p.textContent : "",
  conn: document.getElementById("conn").textContent,
  groups: document.querySelectorAll("section.group").length, masters: s ? Number(s.dataset.masters) : -1,
  session: sessionStorage.getItem("mastership-token") || "", local: localStorage.length, url: location.href};`

// The dashboard of a naming node with an ACL, in a real browser: it asks
// for a token and shows nothing until it has one with the read
// capability. A token the ACL does not hold and a client-only one are
// refused, each with its reason, and the prompt stays; a token a browser cannot send in a header (a character
// outside Latin-1, as a pasted typographic quote is) is refused at the
// prompt, which stays usable; the reader's token shows the group, live.
// The token is kept for the tab only (sessionStorage), never in the URL.
func TestDashboardAsksForAToken(t *testing.T) {
	wd := startBrowser(t)
	sec := newSecurity(t)
	namingAddr := freeAddr(t, "127.0.47.2")
	start(t, "naming", "-log-level", "warn", "naming", "-profile", "local", "-bind", namingAddr,
		"-data-dir", t.TempDir(), "-acl", sec.acl, "-token-file", sec.namingToken)
	ip := "127.0.47.11"
	start(t, "agent1", "-log-level", "warn", "agent", "-profile", "local", "-group", "g", "-id", "1",
		"-bind", freeAddr(t, ip), "-api", freeAddr(t, ip), "-naming", namingAddr, "-mode", "available",
		"-acl", sec.acl, "-token-file", sec.agentsToken)
	wd.open("http://" + namingAddr + "/ui/")
	view := func() (v loginView) { wd.read(loginScript, &v); return v }
	var v loginView
	waitFor(t, 20*time.Second, "the page asks for a token and shows no group", func() bool {
		v = view()
		return v.Login && v.Groups == 0 && v.Problem == "No token yet."
	})

	// A token the ACL does not hold: refused, with the reason (spaces
	// inside are sent: a secret may hold them).
	wd.typeInto("#token", "  not a token of this acl ")
	wd.click("#login button")
	waitFor(t, 20*time.Second, "the unknown token refused, the prompt shown again", func() bool {
		v = view()
		return v.Login && v.Groups == 0 && strings.Contains(v.Problem, "does not hold it")
	})

	// A token without the read capability: refused, with the reason.
	wd.typeInto("#token", secClient)
	wd.click("#login button")
	waitFor(t, 20*time.Second, "the client-only token refused, the prompt shown again", func() bool {
		v = view()
		return v.Login && v.Groups == 0 && strings.Contains(v.Problem, "lacks the read capability")
	})
	t.Logf("the client-only token refused: %+v; screenshot %s", v, wd.screenshot("dashboard-token-refused.png"))

	// A token no HTTP header can carry: refused at the prompt, which
	// stays (a fetch with it would throw, and the page would retry it
	// forever with the prompt hidden).
	wd.typeInto("#token", secRead+"\u2019")
	wd.click("#login button")
	v = view()
	if !v.Login || !strings.Contains(v.Problem, "cannot be sent") {
		t.Fatalf("a token with a character outside Latin-1: %+v, want the prompt with the reason", v)
	}
	if v.Session != "" {
		// Neither this token nor the client-only one before it: the page's
		// retries would send that one, and its refusal would be shown as
		// this one's.
		t.Fatalf("the page keeps a token after refusing one it cannot send: %+v", v)
	}

	// Such a token kept in the tab (by an older page): dropped, and asked
	// for again.
	var ignored any
	wd.read(`sessionStorage.setItem("mastership-token", "`+secRead+`\u2019"); location.reload(); return null;`, &ignored)
	waitFor(t, 20*time.Second, "the kept token dropped and asked for again", func() bool {
		v = view()
		return v.Login && v.Session == "" && strings.Contains(v.Problem, "kept cannot be sent")
	})

	// The reader's token: the group, live.
	wd.typeInto("#token", secRead)
	wd.click("#login button")
	waitFor(t, 30*time.Second, "the group shown with its master, the prompt gone", func() bool {
		v = view()
		return !v.Login && v.Masters == 1 && v.Conn == "live"
	})
	if v.Session != secRead || v.Local != 0 || strings.Contains(v.URL, secRead) {
		t.Fatalf("the token must be kept for the tab only: sessionStorage %q, localStorage %d entries, URL %s", v.Session, v.Local, v.URL)
	}
	t.Logf("shown with the reader's token: %+v; screenshot %s", v, wd.screenshot("dashboard-token.png"))
}
