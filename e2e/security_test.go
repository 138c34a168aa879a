package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	bin "encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mastership/mastership/agent/core"
	"github.com/mastership/mastership/agent/transport"
	"github.com/mastership/mastership/agent/wire"
	"github.com/mastership/mastership/gossip"
	"github.com/mastership/mastership/naming/api"
	"github.com/mastership/mastership/naming/auth"
	"github.com/mastership/mastership/naming/client"
	"github.com/mastership/mastership/recover"
)

// secureGroup is a naming node and three strict agents with -acl, mutual
// TLS and a gossip key, each on its own loopback address.
type secureGroup struct {
	sec        *e2eSecurity
	naming     string
	agents     []cliAgent
	hc         *http.Client // the harness: operator, client and read
	args       map[uint64][]string
	procs      map[uint64]*proc
	namingProc *proc
}

func startSecureGroup(t *testing.T, third int) *secureGroup {
	t.Helper()
	g := &secureGroup{naming: freeAddr(t, fmt.Sprintf("127.0.%d.2", third)), args: map[uint64][]string{}, procs: map[uint64]*proc{}}
	ips := []string{fmt.Sprintf("127.0.%d.2", third)}
	for i := 1; i <= 3; i++ {
		ip := fmt.Sprintf("127.0.%d.%d", third, 10+i)
		ips = append(ips, ip)
		g.agents = append(g.agents, cliAgent{id: uint64(i), ip: ip, bind: freeAddr(t, ip), api: freeAddr(t, ip)})
	}
	g.sec = newSecurity(t, ips...)
	g.hc = &http.Client{Timeout: 5 * time.Second, Transport: g.sec.harness.Transport(&http.Transport{})}
	t.Cleanup(g.hc.CloseIdleConnections)
	g.namingProc = start(t, "naming", append([]string{"-log-level", "debug", "naming", "-profile", "local", "-bind", g.naming,
		"-data-dir", t.TempDir(), "-pprof"}, g.sec.namingArgs(ips[0])...)...)
	var join []string
	for _, a := range g.agents {
		join = append(join, a.bind)
	}
	for _, a := range g.agents {
		g.args[a.id] = append([]string{"-log-level", "debug", "agent", "-profile", "local",
			"-group", "g", "-id", strconv.FormatUint(a.id, 10), "-bind", a.bind, "-api", a.api, "-join", strings.Join(join, ","),
			"-naming", g.naming, "-mode", "strict", "-expect", "3", "-data-dir", t.TempDir(), "-pprof"}, g.sec.agentArgs(a.ip)...)
		g.procs[a.id] = start(t, fmt.Sprintf("agent%d", a.id), g.args[a.id]...)
	}
	return g
}

// waitStable waits for one serving master followed by the two others
// (recover.CheckFollowed), and returns it.
func (g *secureGroup) waitStable(t *testing.T) cliAgent {
	t.Helper()
	var master cliAgent
	waitFor(t, 30*time.Second, "a serving master followed by all", func() bool {
		var states []recover.MemberState
		serving := map[uint64]bool{}
		for _, a := range g.agents {
			resp, err := g.hc.Get(g.sec.harness.URL(a.api, "/v1/info"))
			if err != nil {
				return false
			}
			var in wire.Info
			json.NewDecoder(resp.Body).Decode(&in)
			resp.Body.Close()
			states = append(states, recover.StateOfInfo(in))
			serving[in.ID] = in.Serving
		}
		m, err := recover.CheckFollowed(states)
		if err != nil || !serving[m] {
			return false
		}
		for _, a := range g.agents {
			if a.id == m {
				master = a
			}
		}
		return true
	})
	return master
}

// state is what an outsider must not change: each agent's role, epoch and
// digest, the registered master, and the divergence records.
type secState struct {
	infos   map[uint64]string
	master  string
	records map[uint64]string
}

func (g *secureGroup) state(t *testing.T) secState {
	t.Helper()
	st := secState{infos: map[uint64]string{}, records: map[uint64]string{}}
	for _, a := range g.agents {
		var in wire.Info
		g.getJSON(t, a.api, "/v1/info", &in)
		st.infos[a.id] = fmt.Sprintf("%s epoch=%s master=%d digest=%s applied=%d", in.Role, in.Epoch, in.Master, in.Digest, in.Applied)
		var recs []json.RawMessage
		g.getJSON(t, a.api, "/v1/divergence", &recs)
		b, _ := json.Marshal(recs)
		st.records[a.id] = string(b)
	}
	nc, _ := client.New(g.naming, client.WithCreds(g.sec.harness))
	defer nc.Close()
	look, err := nc.Lookup(context.Background(), api.LookupRequest{Group: "g"})
	if err != nil || look.Master == nil {
		t.Fatalf("lookup with the operator's credentials: %+v %v", look, err)
	}
	st.master = fmt.Sprintf("%d at %s epoch %s", look.Master.ID, look.Master.Addr, look.Master.Epoch)
	return st
}

func (g *secureGroup) getJSON(t *testing.T, addr, path string, v any) {
	t.Helper()
	resp, err := g.hc.Get(g.sec.harness.URL(addr, path))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s%s: %s %s", addr, path, resp.Status, b)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatal(err)
	}
}

// An outsider against a secured cluster: without a certificate, or with
// one but without a token, or with a token that lacks the capability,
// register, kv put and get, /rpc/state, divergence discard, a raw message
// stream and a gossip join all fail with a clear error; afterwards the
// master, its epoch, every digest and every divergence record are the
// same. The command line with the right credentials works throughout.
func TestOutsiderAgainstSecuredCluster(t *testing.T) {
	g := startSecureGroup(t, 96)
	master := g.waitStable(t)
	// Writes through the command line with the agents' token (client).
	asAgents := g.sec.cliArgs(g.sec.agentsToken)
	for i := 0; i < 5; i++ {
		mustRun(t, append(append([]string{"kv", "put", "-group", "g", "-naming", g.naming}, asAgents...), fmt.Sprintf("k%d", i), "v")...)
	}
	master = g.seedDivergence(t, master)
	// Every back-up has applied the writes (commits reach them with the
	// next heartbeat): the state to compare against.
	var before secState
	waitFor(t, 10*time.Second, "equal digests", func() bool {
		before = g.state(t)
		digests := map[string]bool{}
		for _, in := range before.infos {
			digests[in[strings.Index(in, "digest="):]] = true
		}
		return len(digests) == 1
	})

	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"register in clear text", []string{"register", "-naming", g.naming, "-group", "g", "-id", "66", "-addr", "127.0.0.66:8946", "-ttl", "10m"}, "HTTPS server"},
		{"register without a token", append([]string{"register", "-naming", g.naming, "-group", "g", "-id", strconv.FormatUint(master.id, 10), "-addr", master.api}, g.sec.tlsArgs("harness")...), "unauthorized"},
		{"register with the agents' token", append([]string{"register", "-naming", g.naming, "-group", "g", "-id", strconv.FormatUint(master.id, 10), "-addr", master.api, "-epoch", "99"}, asAgents...), "operator capability"},
		{"kv put in clear text", []string{"kv", "put", "-group", "g", "-agent", master.api, "-timeout", "2s", "k0", "outsider"}, "HTTPS server"},
		{"kv get in clear text", []string{"kv", "get", "-group", "g", "-agent", master.api, "-timeout", "2s", "k0"}, "HTTPS server"},
		{"kv get without a token", append(append([]string{"kv", "get", "-group", "g", "-naming", g.naming, "-timeout", "2s"}, g.sec.tlsArgs("harness")...), "k0"), "unauthorized"},
		{"divergence discard without a token", append(append([]string{"divergence", "discard", "-agent", master.api, "-yes"}, g.sec.tlsArgs("harness")...), "1"), "unauthorized"},
		{"divergence discard in clear text", []string{"divergence", "discard", "-agent", master.api, "-yes", "1"}, "HTTPS server"},
		{"kv put without a token", append(append([]string{"kv", "put", "-group", "g", "-agent", master.api, "-timeout", "2s"}, g.sec.tlsArgs("harness")...), "k0", "outsider"), "unauthorized"},
		{"kv get with a read-only token", append(append([]string{"kv", "get", "-group", "g", "-agent", master.api, "-timeout", "2s"}, g.sec.cliArgs(g.sec.readToken)...), "k0"), "client capability"},
		{"divergence discard with the agents' token", append(append([]string{"divergence", "discard", "-agent", master.api, "-yes"}, asAgents...), "1"), "operator capability"},
		{"info without a token", append([]string{"info", "-agent", master.api}, g.sec.tlsArgs("harness")...), "unauthorized"},
		{"keyring list with the agents' token", append([]string{"keyring", "-agent", master.api, "list"}, asAgents...), "operator capability"},
	} {
		out, errOut, code := run(t, tc.args...)
		if code != 1 || !strings.Contains(strings.ToLower(errOut), strings.ToLower(tc.want)) {
			t.Errorf("%s: exit %d, stdout %q, stderr %q; want exit 1 and %q", tc.name, code, out, errOut, tc.want)
		}
	}

	// /rpc/state: in clear text, with TLS but no certificate, and with a
	// certificate but no token.
	if resp, err := http.Get("http://" + master.api + "/rpc/state"); err == nil {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || !bytes.Contains(b, []byte("HTTPS server")) || bytes.Contains(b, []byte("k0")) {
			t.Fatalf("/rpc/state in clear text: %s %q, want 400 saying the agent speaks HTTPS", resp.Status, b)
		}
	}
	cfg, _ := auth.ClientTLS(g.sec.files("harness"))
	anon := cfg.Clone()
	anon.Certificates = nil
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: anon}}
	if resp, err := hc.Get("https://" + master.api + "/rpc/state"); err == nil {
		resp.Body.Close()
		t.Fatalf("/rpc/state over TLS without a client certificate: %s", resp.Status)
	}
	hc = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg}}
	resp, err := hc.Get("https://" + master.api + "/rpc/state")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var e api.Error
	if resp.StatusCode != 401 || api.Decode(b, &e) != nil || e.Code != api.CodeUnauthorized {
		t.Fatalf("/rpc/state without a token: %s %q", resp.Status, b)
	}
	if bytes.Contains(b, []byte("k0")) {
		t.Fatal("the refusal carries state")
	}

	// The naming node over TLS without a client certificate (the command
	// line takes none without its key, so the Go client), with the
	// operator's token: a manual registration of the outsider and one of
	// the master at a far epoch are refused at the handshake.
	anonNaming, err := client.New(g.naming, client.WithCreds(auth.Creds{Token: secOps, TLS: anon}), client.WithTimeout(3*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer anonNaming.Close()
	for _, req := range []api.RegisterRequest{
		{Group: "g", ID: 66, Addr: "127.0.0.66:8946", Manual: true, TTL: 10 * time.Minute},
		{Group: "g", ID: master.id, Addr: master.api, Manual: true, Epoch: api.Epoch{Term: 1 << 40}},
	} {
		if _, err := anonNaming.Register(context.Background(), req); err == nil || !strings.Contains(err.Error(), "certificate") {
			t.Errorf("register %d over TLS without a client certificate: %v, want a refused handshake", req.ID, err)
		}
	}

	// A raw message stream: in clear text, over TLS without a client
	// certificate, and over TLS with a certificate but no token in its
	// hello. Each is closed before a message is read.
	frame := core.AppendWire(nil, &core.Message{Type: core.MsgTrigger, Group: "g", From: 2, To: master.id, Epoch: api.Epoch{Term: ^uint64(0), ID: 2}})
	stream := append(append(append([]byte{}, transport.Magic[:]...), 0, 0, 0, 0, 0, 0), bin.BigEndian.AppendUint32(nil, uint32(len(frame)))...)
	stream = append(stream, frame...)
	raw, err := net.DialTimeout("tcp", master.api, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	raw.SetDeadline(time.Now().Add(5 * time.Second))
	raw.Write(stream)
	if _, err := raw.Read(make([]byte, 1)); err == nil {
		t.Error("a clear-text stream was answered")
	}
	raw.Close()
	if tc, err := tls.Dial("tcp", master.api, anon); err == nil {
		tc.SetDeadline(time.Now().Add(5 * time.Second))
		tc.Write(stream)
		if _, err := tc.Read(make([]byte, 1)); err == nil || strings.Contains(err.Error(), "timeout") {
			t.Errorf("a stream over TLS without a client certificate stayed open: %v", err)
		}
		tc.Close()
	}
	tc, err := tls.Dial("tcp", master.api, cfg)
	if err != nil {
		t.Fatal(err)
	}
	tc.SetDeadline(time.Now().Add(5 * time.Second))
	tc.Write(stream)
	if _, err := tc.Read(make([]byte, 1)); err == nil || strings.Contains(err.Error(), "timeout") {
		t.Errorf("a stream without a token stayed open: %v", err)
	}
	tc.Close()

	// A gossip join without the key.
	gcfg := gossip.DefaultConfig(gossip.ProfileLocal)
	gcfg.Group, gcfg.ID = "g", 77
	gcfg.BindAddr = "127.0.96.77:0"
	gcfg.Join = []string{g.agents[1].bind}
	gcfg.Meta = gossip.Meta{Role: api.RoleMaster, Epoch: api.Epoch{Term: 1 << 30, ID: 77}, API: "127.0.96.77:1"}
	gcfg.Rand = rand.New(rand.NewSource(77))
	rogue, err := gossip.New(gcfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer rogue.Shutdown()
	if _, err := rogue.Join(); err == nil {
		t.Error("a gossip join without the key succeeded")
	}

	checkCapabilities(t, g, master.api)

	after := g.state(t)
	if fmt.Sprint(before) != fmt.Sprint(after) {
		t.Fatalf("the outsider changed the cluster:\nbefore %+v\nafter  %+v", before, after)
	}
	// An application's token, client alone, finds the master (through the
	// naming node, or an agent) and writes and reads.
	asApp := g.sec.cliArgs(g.sec.clientToken)
	mustRun(t, append(append([]string{"kv", "put", "-group", "g", "-naming", g.naming}, asApp...), "app", "written")...)
	for _, where := range [][]string{{"-naming", g.naming}, {"-agent", g.agents[0].api}} {
		if out := mustRun(t, append(append(append([]string{"kv", "get", "-group", "g"}, where...), asApp...), "app")...); strings.TrimSpace(out) != "written" {
			t.Fatalf("kv get %v with the client token: %q", where, out)
		}
	}
	// It may ask for its group's status, not for every group's: the list
	// of groups, their members and addresses is the read capability's.
	if out := mustRun(t, append([]string{"status", "-naming", g.naming, "-group", "g"}, asApp...)...); !strings.Contains(out, "g") {
		t.Fatalf("status of its group with the client token: %q", out)
	}
	if out, errOut, code := run(t, append([]string{"status", "-naming", g.naming}, asApp...)...); code == 0 || !strings.Contains(errOut, "needs the read capability") {
		t.Fatalf("status of every group with the client token: exit %d, %q %q; want refused for want of read", code, out, errOut)
	}
	if out := mustRun(t, append([]string{"status", "-naming", g.naming}, g.sec.cliArgs(g.sec.readToken)...)...); !strings.Contains(out, "g") {
		t.Fatalf("status of every group with the read token: %q", out)
	}
	// No process wrote a secret to its log, at debug level, through all
	// of the above; a secured one warns of no open door.
	outputs := map[string]string{"naming": g.namingProc.output()}
	for id, p := range g.procs {
		outputs[fmt.Sprintf("agent %d", id)] = p.output()
	}
	for who, out := range outputs {
		for _, secret := range []string{secAgents, secNaming, secOps, secRead, secClient, g.sec.key} {
			if strings.Contains(out, secret) {
				t.Errorf("%s logged the secret %.6s...", who, secret)
			}
		}
		for _, open := range []string{"no -acl", "no TLS"} {
			if strings.Contains(out, open) {
				t.Errorf("%s, secured, warns %q", who, open)
			}
		}
		// Every agent's certificate covers its address: no honest stream
		// is refused (the refused side would fall back to dialing, and
		// nothing else would tell).
		if strings.Contains(out, "does not cover") {
			t.Errorf("%s refused an honest agent's stream:\n%s", who, out)
		}
	}
	// The operator can: a manual registration of the master is probed
	// and accepted, and is recorded as manual.
	out := mustRun(t, append([]string{"register", "-naming", g.naming, "-group", "g", "-id", strconv.FormatUint(master.id, 10),
		"-addr", master.api}, g.sec.cliArgs(g.sec.opsToken)...)...)
	if !strings.Contains(out, "registered") {
		t.Fatalf("operator's register: %q", out)
	}
	if out := mustRun(t, append([]string{"keyring", "-agent", master.api, "list"}, g.sec.cliArgs(g.sec.opsToken)...)...); strings.Count(out, " ok ") != 3 {
		t.Fatalf("keyring list as the operator:\n%s", out)
	}
}

// The outsider's takeover on an open node (no -acl, no TLS): a manual
// registration of an agent that is no member of the group is refused, and
// the group's master, epochs and digests stay as they were.
func TestOutsiderTakeoverFailsOnOpenNode(t *testing.T) {
	hc := &http.Client{Timeout: time.Second}
	defer hc.CloseIdleConnections()
	g := startStrictGroup(t, 97)
	before := waitOneMaster(t, hc, g)
	// Open, each process says so at start.
	for id, p := range g.procs {
		for _, warn := range []string{"no -acl: the agent is open", "no TLS"} {
			if !strings.Contains(p.output(), warn) {
				t.Errorf("agent %d, open, does not warn %q", id, warn)
			}
		}
	}
	out, errOut, code := run(t, "register", "-naming", g.naming, "-group", "g", "-id", "66", "-addr", "127.0.0.66:8946", "-ttl", "10m")
	if code != 1 || !strings.Contains(errOut, "not a live member") {
		t.Fatalf("the outsider's register: exit %d, %q %q", code, out, errOut)
	}
	// The same outsider through the naming node's RPC, as a member: it
	// joins as 66 and registers at a newer epoch; then it names the
	// master's own address to take the master's session.
	nc := g.nc
	ctx := context.Background()
	var master cliAgent
	for _, a := range g.agents {
		if before[a.id].Role == "master" {
			master = a
		}
	}
	jr, err := nc.Join(ctx, api.JoinRequest{Group: "g", ID: 66, Addr: "127.0.0.66:8946", TTL: 10 * time.Minute})
	if err != nil {
		t.Fatalf("the outsider's join as a new member: %v", err)
	}
	_, err = nc.Register(ctx, api.RegisterRequest{Group: "g", ID: 66, Addr: "127.0.0.66:8946", Session: jr.Session,
		Epoch: api.Epoch{Term: before[master.id].Epoch.Term + 1, ID: 66}, Mode: "strict", TTL: 10 * time.Minute})
	if !errors.Is(err, api.ErrRefused) {
		t.Fatalf("the outsider's registration at a newer epoch: %v, want refused", err)
	}
	if _, err := nc.Join(ctx, api.JoinRequest{Group: "g", ID: master.id, Addr: master.api, TTL: 10 * time.Minute, Proof: []byte("guess")}); !errors.Is(err, api.ErrRefused) {
		t.Fatalf("the outsider's join at the master's address: %v, want refused", err)
	}
	after := waitOneMaster(t, hc, g)
	for id, in := range before {
		if after[id] != in {
			t.Fatalf("agent %d: %+v before, %+v after", id, in, after[id])
		}
	}
	look, err := nc.Lookup(ctx, api.LookupRequest{Group: "g"})
	if err != nil || look.Master == nil || look.Master.ID != master.id {
		t.Fatalf("registered master after the outsider: %+v, %v; want %d", look.Master, err, master.id)
	}
}

// Gossip key rotation on a secured cluster, as an operator runs it: install
// the new key, use it, remove the old one, each on every live member with
// each outcome printed. An agent restarted afterwards with its old -encrypt
// takes the rotated keys from its data dir and rejoins.
func TestKeyringRotation(t *testing.T) {
	g := startSecureGroup(t, 98)
	master := g.waitStable(t)
	ops := g.sec.cliArgs(g.sec.opsToken)
	newKey := strings.TrimSpace(mustRun(t, "keygen"))
	for _, step := range []string{"install", "use"} {
		out := mustRun(t, append(append([]string{"keyring", "-agent", master.api}, ops...), step, newKey)...)
		if strings.Count(out, " ok ") != 3 {
			t.Fatalf("keyring %s:\n%s", step, out)
		}
	}
	out := mustRun(t, append(append([]string{"keyring", "-agent", master.api}, ops...), "remove", g.sec.key)...)
	if strings.Count(out, " ok ") != 3 {
		t.Fatalf("keyring remove:\n%s", out)
	}
	var results []wire.KeyringResult
	if code, errOut := cliJSON(t, &results, append(append([]string{"keyring", "-agent", master.api}, ops...), "list", "-json")...); code != 0 {
		t.Fatalf("keyring list: %d %s", code, errOut)
	}
	for _, r := range results {
		if !r.OK || r.Primary != newKey || len(r.Keys) != 1 {
			t.Fatalf("after the rotation: %+v", results)
		}
	}
	// A bad key changes nothing anywhere.
	if _, errOut, code := run(t, append(append([]string{"keyring", "-agent", master.api}, ops...), "use", "bm9wZQ==")...); code != 2 {
		t.Fatalf("keyring use of a 4-byte key: exit %d %s", code, errOut)
	}
	if _, errOut, code := run(t, append(append([]string{"keyring", "-agent", master.api}, ops...), "remove", newKey)...); code != 1 || !strings.Contains(errOut, "failed on 3 of 3") {
		t.Fatalf("removing the key in use: exit %d %s", code, errOut)
	}
	// A back-up restarts with the old -encrypt in its flags.
	var backup cliAgent
	for _, a := range g.agents {
		if a.id != master.id {
			backup = a
		}
	}
	g.procs[backup.id].kill()
	g.procs[backup.id] = start(t, "restarted", g.args[backup.id]...)
	g.waitStable(t)
	waitFor(t, 20*time.Second, "the restarted agent alive in gossip both ways", func() bool {
		var a, b []wire.Member
		g.getJSON(t, master.api, "/v1/members", &a)
		g.getJSON(t, backup.api, "/v1/members", &b)
		alive := func(ms []wire.Member, id uint64) bool {
			for _, m := range ms {
				if m.ID == id && m.Health == "alive" {
					return true
				}
			}
			return false
		}
		return alive(a, backup.id) && alive(b, master.id)
	})
	if !strings.Contains(g.procs[backup.id].output(), "keyring file in the data dir overrides -encrypt") {
		t.Fatalf("the restarted agent did not take the rotated keys:\n%s", g.procs[backup.id].output())
	}
}

// authOutcome classifies an answer: "unauthorized" or "forbidden" when the
// ACL refused the call, "passed" when it reached the endpoint (whatever the
// endpoint then said of its made-up body).
func authOutcome(t *testing.T, resp *http.Response) string {
	t.Helper()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	var e api.Error
	if strings.Contains(resp.Header.Get("Content-Type"), "json") {
		json.Unmarshal(b, &e)
	} else {
		api.Decode(b, &e)
	}
	switch e.Code {
	case api.CodeUnauthorized, api.CodeForbidden:
		return string(e.Code)
	}
	if resp.StatusCode == 401 || resp.StatusCode == 403 && e.Code == "" {
		t.Fatalf("a %s without an ACL error code: %q", resp.Status, b)
	}
	return "passed"
}

// Every route of the agent API and of the naming node, with each kind of
// token and none: a caller gets through exactly where its token holds the
// route's capability (README's table). The bodies are made up so that a
// call that gets through changes nothing.
func checkCapabilities(t *testing.T, g *secureGroup, agentAddr string) {
	cfg, err := auth.ClientTLS(g.sec.files("harness"))
	if err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg}}
	defer hc.CloseIdleConnections()
	tokens := map[string][]string{ // token: its capabilities
		"":        nil,
		secRead:   {"read"},
		secAgents: {"agent", "client", "read"},
		secNaming: {"agent", "read"},
		secOps:    {"operator", "client", "read"},
		secClient: {"client"},
	}
	garbage := []byte("\xc1 not a request")
	// Registrations of an outsider, refused for what they claim once the
	// token passes: an agent's own needs agent, one by hand operator.
	agentReg, _ := api.Encode(&api.RegisterRequest{Group: "g", ID: 66, Addr: "127.0.0.66:8946", Session: 1, Epoch: api.Epoch{Term: 1 << 30, ID: 66}})
	manualReg, _ := api.Encode(&api.RegisterRequest{Group: "g", ID: 66, Addr: "127.0.0.66:8946", Manual: true})
	type route struct {
		method, path, need string
		body               []byte
	}
	agentRoutes := []route{
		{"GET", "/v1/health", "", nil}, {"GET", "/v1/role/master", "", nil}, {"GET", "/v1/role/backup", "", nil},
		{"GET", "/metrics", "", nil}, {"GET", "/debug/pprof/", "operator", nil}, {"GET", "/debug/pprof/cmdline", "operator", nil},
		{"GET", "/v1/info", "read|client", nil}, {"GET", "/v1/members", "read|client", nil},
		{"GET", "/v1/divergence", "read", nil}, {"GET", "/v1/divergence/999999", "read", nil},
		{"GET", "/v1/divergence/999999/state", "operator", nil},
		{"POST", "/v1/kv", "client", garbage},
		{"POST", "/v1/divergence/999999/replay", "operator", nil}, {"DELETE", "/v1/divergence/999999", "operator", nil},
		{"POST", "/v1/switchover", "operator", garbage}, {"POST", "/v1/fault", "operator", garbage},
		{"POST", "/v1/keyring", "operator", garbage},
		{"POST", "/rpc/notify", "agent", garbage}, {"GET", "/rpc/state", "agent", nil}, {"POST", "/rpc/hashes", "agent", garbage},
	}
	namingRoutes := []route{
		{"GET", "/v1/health", "", nil}, {"GET", "/metrics", "", nil}, {"GET", "/debug/pprof/", "operator", nil},
		{"GET", "/ui/", "", nil}, {"GET", "/ui/app.js", "", nil}, {"GET", "/v1/ui/state", "read", nil},
		{"GET", "/v1/groups", "read", nil}, {"GET", "/v1/groups/g", "read", nil},
		{"GET", "/v1/groups/g/events", "read", nil}, {"GET", "/v1/peers", "read", nil},
		{"GET", "/v1/snapshot", "operator", nil}, {"PUT", "/v1/snapshot", "operator", garbage},
		{"POST", "/rpc/join", "agent", garbage}, {"POST", "/rpc/renew", "agent", garbage}, {"POST", "/rpc/leave", "agent", garbage},
		{"POST", "/rpc/recheck", "agent", garbage}, {"POST", "/rpc/pause", "operator", garbage},
		{"POST", "/rpc/register", "agent", agentReg}, {"POST", "/rpc/register", "operator", manualReg},
		{"POST", "/rpc/lookup", "read|client", garbage}, {"POST", "/rpc/status", "read|client", garbage}, {"POST", "/rpc/events", "read", garbage},
		{"POST", "/rpc/peers", "read", garbage}, {"POST", "/rpc/add-peer", "operator", garbage}, {"POST", "/rpc/remove-peer", "operator", garbage},
	}
	for _, side := range []struct {
		addr   string
		routes []route
	}{{agentAddr, agentRoutes}, {g.naming, namingRoutes}} {
		for _, r := range side.routes {
			for token, caps := range tokens {
				req, _ := http.NewRequest(r.method, "https://"+side.addr+r.path, bytes.NewReader(r.body))
				if token != "" {
					req.Header.Set("Authorization", "Bearer "+token)
				}
				resp, err := hc.Do(req)
				if err != nil {
					t.Fatalf("%s %s%s: %v", r.method, side.addr, r.path, err)
				}
				got := authOutcome(t, resp)
				want := "passed"
				switch {
				case r.need == "":
				case token == "":
					want = "unauthorized"
				case !slices.ContainsFunc(strings.Split(r.need, "|"), func(c string) bool { return slices.Contains(caps, c) }):
					want = "forbidden"
				}
				if got != want {
					t.Errorf("%s %s%s with capabilities %v: %s, want %s", r.method, side.addr, r.path, caps, got, want)
				}
			}
		}
	}
}

// seedDivergence leaves a divergence record in the group, so that the
// outsider's test has one to keep: the back-ups are stopped, the master
// takes a write it cannot commit and is killed, the back-ups elect a new
// master, and the old one, restarted, keeps its uncommitted write as a
// record when the new master's log replaces its own. It returns the new
// master.
func (g *secureGroup) seedDivergence(t *testing.T, master cliAgent) cliAgent {
	t.Helper()
	for _, a := range g.agents {
		if a.id != master.id {
			if err := g.procs[a.id].signal(syscall.SIGSTOP); err != nil {
				t.Fatal(err)
			}
		}
	}
	put := func() {
		req, _ := http.NewRequest("POST", g.sec.harness.URL(master.api, "/v1/kv"), strings.NewReader(`{"op":"put","key":"lost","value":"x"}`))
		req.Header.Set("Content-Type", "application/json")
		hc := &http.Client{Timeout: 500 * time.Millisecond, Transport: g.hc.Transport}
		if resp, err := hc.Do(req); err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 {
				t.Fatalf("a write without a majority was acknowledged: %s", b)
			}
		}
	}
	var in0, in1 wire.Info
	g.getJSON(t, master.api, "/v1/info", &in0)
	put()
	g.getJSON(t, master.api, "/v1/info", &in1)
	if in1.Last <= in0.Last {
		t.Fatalf("the master did not append the write: last %d before, %d after", in0.Last, in1.Last)
	}
	// The stopped back-ups are killed, not continued: the append waiting
	// in their sockets must never reach their logs.
	for _, a := range g.agents {
		g.procs[a.id].kill()
	}
	for _, a := range g.agents {
		if a.id != master.id {
			g.procs[a.id] = start(t, fmt.Sprintf("agent%d-restarted", a.id), g.args[a.id]...)
		}
	}
	waitFor(t, 30*time.Second, "a new master of the two back-ups", func() bool {
		for _, a := range g.agents {
			if a.id == master.id {
				continue
			}
			var in wire.Info
			resp, err := g.hc.Get(g.sec.harness.URL(a.api, "/v1/info"))
			if err != nil {
				continue
			}
			json.NewDecoder(resp.Body).Decode(&in)
			resp.Body.Close()
			if in.Role == "master" && in.Serving {
				return true
			}
		}
		return false
	})
	g.procs[master.id] = start(t, fmt.Sprintf("agent%d-restarted", master.id), g.args[master.id]...)
	next := g.waitStable(t)
	waitFor(t, 20*time.Second, "a divergence record on the old master", func() bool {
		var recs []json.RawMessage
		g.getJSON(t, master.api, "/v1/divergence", &recs)
		return len(recs) > 0
	})
	return next
}
