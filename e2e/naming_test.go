package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mastership/mastership/naming/api"
	"github.com/mastership/mastership/naming/client"
)

func startNaming(t *testing.T, addr, dir string) *proc {
	t.Helper()
	p := start(t, "naming", "-log-level", "warn", "naming", "-profile", "local", "-bind", addr, "-data-dir", dir, "-restart-grace", "1m")
	cl, err := client.New(addr, client.WithTimeout(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	waitFor(t, 10*time.Second, "naming node up", func() bool {
		_, err := cl.Health(context.Background())
		return err == nil
	})
	return p
}

// The naming node is killed with SIGKILL while clients register; restarted
// on the same data directory it still has every acknowledged registration
// and its event.
func TestNamingSurvivesKill9(t *testing.T) {
	addr := freeAddr(t, "127.0.0.1")
	dir := t.TempDir()
	node := startNaming(t, addr, dir)

	const clients = 8
	var (
		mu    sync.Mutex
		acked = map[string]api.Registration{}
		n     atomic.Int64
	)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			cl, _ := client.New(addr, client.WithTimeout(2*time.Second))
			defer cl.Close()
			for i := 0; ctx.Err() == nil; i++ {
				g := fmt.Sprintf("c%d-g%d", c, i)
				a := fmt.Sprintf("127.0.0.%d:9000", c+1)
				jr, err := cl.Join(ctx, api.JoinRequest{Group: g, ID: uint64(c + 1), Addr: a, TTL: 10 * time.Minute})
				if err != nil {
					if errors.Is(err, api.ErrUnavailable) {
						return // the node is gone
					}
					t.Errorf("join %s: %v", g, err)
					return
				}
				resp, err := cl.Register(ctx, api.RegisterRequest{Group: g, ID: uint64(c + 1), Addr: a, Session: jr.Session,
					Epoch: api.Epoch{Term: uint64(i + 1)}, TTL: 10 * time.Minute})
				if err != nil {
					if errors.Is(err, api.ErrUnavailable) {
						return // the node is gone
					}
					t.Errorf("register %s: %v", g, err)
					return
				}
				mu.Lock()
				acked[g] = resp.Master
				mu.Unlock()
				n.Add(1)
			}
		}(c)
	}
	waitFor(t, 30*time.Second, "1000 acknowledged registrations", func() bool { return n.Load() >= 1000 })
	node.kill()
	wg.Wait()
	cancel()

	startNaming(t, addr, dir)
	cl, _ := client.New(addr)
	defer cl.Close()
	bg := context.Background()
	mu.Lock()
	defer mu.Unlock()
	t.Logf("%d registrations acknowledged before SIGKILL", len(acked))
	for g, want := range acked {
		look, err := cl.Lookup(bg, api.LookupRequest{Group: g})
		if err != nil || look.Master == nil || look.Master.ID != want.ID || look.Master.Epoch != want.Epoch {
			t.Fatalf("%s after restart: %+v %v; acknowledged %+v", g, look.Master, err, want)
		}
		evs, err := cl.AllEvents(bg, g, 0)
		if err != nil || len(evs) != 2 || evs[0].Kind != api.EventMemberJoined || evs[1].Kind != api.EventMasterRegistered || evs[1].ID != want.ID {
			t.Fatalf("%s events after restart: %+v %v", g, evs, err)
		}
	}
	// The restarted node keeps serving and numbering.
	jr, err := cl.Join(bg, api.JoinRequest{Group: "after", ID: 1, Addr: "127.0.0.1:9000"})
	if err != nil {
		t.Fatalf("join after restart: %v", err)
	}
	if _, err := cl.Register(bg, api.RegisterRequest{Group: "after", ID: 1, Addr: "127.0.0.1:9000", Session: jr.Session, Epoch: api.Epoch{Term: 1, ID: 1}}); err != nil {
		t.Fatalf("register after restart: %v", err)
	}
}

// The command line: register, status and events in text and JSON, and
// clear errors with non-zero exits for bad input.
func TestNamingCommandLine(t *testing.T) {
	addr := freeAddr(t, "127.0.0.1")
	startNaming(t, addr, t.TempDir())
	// Members 1 and 3 of orders: agents that answer as masters (a manual
	// registration is probed), and 2, a back-up.
	cl, _ := client.New(addr)
	defer cl.Close()
	agents := map[uint64]string{}
	for id, role := range map[uint64]string{1: "master", 2: "backup", 3: "master"} {
		srv := fakeInfo(t, "orders", id, role)
		agents[id] = srv
		if _, err := cl.Join(context.Background(), api.JoinRequest{Group: "orders", ID: id, Addr: srv, TTL: 10 * time.Minute}); err != nil {
			t.Fatal(err)
		}
	}
	out, errOut, code := run(t, "register", "-naming", addr, "-group", "orders", "-id", "3", "-addr", agents[3], "-ttl", "5m")
	if code != 0 || !strings.Contains(out, "registered 3 as master of orders") {
		t.Fatalf("register: %d %q %q", code, out, errOut)
	}
	// Not a member (the outsider's takeover), a member at another address,
	// a member that is no master: refused, nothing changes.
	for _, args := range [][]string{
		{"-id", "66", "-addr", "127.0.0.66:8946", "-ttl", "10m"},
		{"-id", "1", "-addr", "127.0.0.66:8946"},
		{"-id", "2", "-addr", agents[2]},
	} {
		out, errOut, code := run(t, append([]string{"register", "-naming", addr, "-group", "orders"}, args...)...)
		if code != 1 || !strings.Contains(errOut, "refused") {
			t.Errorf("register %v: exit %d, %q %q; want a refusal", args, code, out, errOut)
		}
	}
	out, _, code = run(t, "register", "-naming", addr, "-group", "orders", "-id", "1", "-addr", agents[1], "-ttl", "5m", "-json")
	var reg struct {
		Accepted bool
		Removed  []uint64
		Master   api.MasterStatus
	}
	if code != 0 || json.Unmarshal([]byte(out), &reg) != nil || !reg.Accepted || reg.Master.ID != 1 || len(reg.Removed) != 1 {
		t.Fatalf("register -json: %d %q", code, out)
	}
	out, _, code = run(t, "status", "-naming", addr, "-group", "orders", "-json")
	var st map[string]any
	if code != 0 || json.Unmarshal([]byte(out), &st) != nil {
		t.Fatalf("status -json: %d %q", code, out)
	}
	if m := st["master"].(map[string]any); m["id"] != float64(1) || m["addr"] != agents[1] || m["epoch"].(map[string]any)["term"] != float64(2) || len(st["members"].([]any)) != 3 {
		t.Fatalf("status: %s", out)
	}
	if b, _ := json.Marshal(st["master"]); !strings.HasPrefix(string(b), `{"addr":`) || strings.Contains(out, "session") {
		t.Fatalf("status shape: %s", out)
	}
	out, _, code = run(t, "status", "-naming", addr, "-json")
	var list []api.GroupStatus
	if code != 0 || json.Unmarshal([]byte(out), &list) != nil || len(list) != 1 {
		t.Fatalf("status all -json: %d %q", code, out)
	}
	out, _, code = run(t, "events", "-naming", addr, "-group", "orders", "-json")
	var evs []map[string]any
	if code != 0 || json.Unmarshal([]byte(out), &evs) != nil {
		t.Fatalf("events -json: %d %q", code, out)
	}
	kinds := map[string]map[string]any{}
	for _, e := range evs {
		kinds[e["kind"].(string)] = e
		if _, err := time.Parse(time.RFC3339, e["time"].(string)); err != nil || e["seq"] == nil {
			t.Fatalf("event shape: %v", e)
		}
	}
	res := kinds[api.EventConflictResolved]
	if res == nil || res["retained"] != float64(1) || fmt.Sprint(res["removed"]) != "[3]" || kinds[api.EventConflictDetected] == nil {
		t.Fatalf("events: %s", out)
	}
	if reg := kinds[api.EventMasterRegistered]; reg == nil || reg["manual"] != true {
		t.Fatalf("the manual registration is not recorded as manual: %s", out)
	}
	if ref := kinds[api.EventRegistrationRefused]; ref == nil || ref["manual"] != true {
		t.Fatalf("the refused manual registration is not recorded: %s", out)
	}
	out, _, code = run(t, "events", "-naming", addr, "-group", "orders")
	if code != 0 || !strings.Contains(out, "conflict-resolved") || !strings.Contains(out, "retained=1") {
		t.Fatalf("events text: %q", out)
	}
	// Times in text with their date and zone.
	if !regexp.MustCompile(`(?m)^\s+\d+  \d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} \S+  `).MatchString(out) {
		t.Fatalf("events text without date and zone: %q", out)
	}
	// The status table gives the master's epoch as TERM.ID.
	out, _, code = run(t, "status", "-naming", addr, "-group", "orders")
	if code != 0 || !regexp.MustCompile(`\b2\.1\b`).MatchString(out) {
		t.Fatalf("status table without the epoch as TERM.ID: %q", out)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"status", "-naming", addr, "-group", "Bad!"}, "invalid group"},
		{[]string{"status", "-naming", addr, "-group", "missing"}, "not-found"},
		{[]string{"register", "-naming", addr, "-group", "g", "-id", "0", "-addr", "127.0.0.1:1"}, "id 0"},
		{[]string{"register", "-naming", addr, "-group", "g", "-id", "2", "-addr", "nohost"}, "invalid addr"},
		{[]string{"register", "-naming", addr, "-group", "g", "-id", "2", "-addr", "127.0.0.1:1", "-ttl", "100h"}, "over the node's limit"},
		{[]string{"register", "-naming", addr, "-group", "g"}, "Required flag"},
		{[]string{"status", "-naming", "nowhere"}, "-naming"},
		{[]string{"-log-level", "loud", "status"}, "-log-level"},
		{[]string{"naming", "-bind", freeAddr(t, "127.0.0.1")}, "data-dir"},
		{[]string{"naming", "-data-dir", t.TempDir(), "-session-ttl", "1ms"}, "session-ttl"},
	} {
		out, errOut, code := run(t, tc.args...)
		if code == 0 || !strings.Contains(errOut, tc.want) {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want non-zero and %q", tc.args, code, out, errOut, tc.want)
		}
	}
	// None of that changed anything.
	out, _, _ = run(t, "status", "-naming", addr, "-json")
	if json.Unmarshal([]byte(out), &list) != nil || len(list) != 1 {
		t.Fatalf("bad input changed the groups: %s", out)
	}
}

// fakeInfo serves GET /v1/info as an agent of group with id in role would,
// and returns its address.
func fakeInfo(t *testing.T, group string, id uint64, role string) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/info" {
			http.NotFound(w, r)
			return
		}
		json.NewEncoder(w).Encode(map[string]any{"id": id, "group": group, "role": role})
	}))
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
}
