package naming

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/mastership/mastership/agent/wire"
	"github.com/mastership/mastership/naming/api"
)

// proofAgent serves the /v1/info of agent 1 of group g with the join proof
// it was last given.
type proofAgent struct {
	srv   *httptest.Server
	mu    sync.Mutex
	proof []byte
}

func newProofAgent(t *testing.T) *proofAgent {
	pa := &proofAgent{}
	pa.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/info" {
			http.NotFound(w, r)
			return
		}
		pa.mu.Lock()
		info := wire.Info{ID: 1, Group: "g", Role: "backup", JoinProof: api.JoinProofOf(pa.proof)}
		pa.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(info)
	}))
	t.Cleanup(pa.srv.Close)
	return pa
}

// join is the agent's own join: it serves the proof before it sends it.
func (pa *proofAgent) join(t *testing.T, tn *testNode, proof string) (api.JoinResponse, error) {
	pa.mu.Lock()
	pa.proof = []byte(proof)
	pa.mu.Unlock()
	return tn.client.Join(context.Background(), api.JoinRequest{Group: "g", ID: 1, Addr: pa.srv.Listener.Addr().String(),
		TTL: time.Minute, Proof: []byte(proof)})
}

// A running agent's live session is replaced only by a join that the agent
// serving its address shows it sent: an outsider naming that address, with
// any proof or none, is refused and the session, its registration and the
// group's events are as they were (a join at a victim's address, then a
// leave with the session it got, must not make the victim exit).
func TestJoinTakeoverNeedsProof(t *testing.T) {
	tn := startNode(t, testConfig(t, t.TempDir()))
	ctx := context.Background()
	pa := newProofAgent(t)
	addrA := pa.srv.Listener.Addr().String()
	first, err := pa.join(t, tn, "first start")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tn.client.Register(ctx, api.RegisterRequest{Group: "g", ID: 1, Addr: addrA, Session: first.Session, Epoch: api.Epoch{Term: 1, ID: 1}}); err != nil {
		t.Fatal(err)
	}
	before, err := tn.client.AllEvents(ctx, "g", 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, forged := range [][]byte{nil, []byte("a guess"), []byte(api.JoinProofOf([]byte("first start")))} {
		_, err := tn.client.Join(ctx, api.JoinRequest{Group: "g", ID: 1, Addr: addrA, TTL: time.Minute, Proof: forged})
		if !errors.Is(err, api.ErrRefused) {
			t.Fatalf("an outsider's join at the agent's address with proof %q: %v, want refused", forged, err)
		}
	}
	if _, err := tn.client.Renew(ctx, api.RenewRequest{Group: "g", ID: 1, Session: first.Session}); err != nil {
		t.Fatalf("the agent's session after the refused takeovers: %v", err)
	}
	look, err := tn.client.Lookup(ctx, api.LookupRequest{Group: "g"})
	if err != nil || look.Master == nil || look.Master.ID != 1 {
		t.Fatalf("master after the refused takeovers: %+v, %v", look.Master, err)
	}
	after, err := tn.client.AllEvents(ctx, "g", 0)
	if err != nil || len(after) != len(before) {
		t.Fatalf("events after the refused takeovers: %d, before %d (%v)", len(after), len(before), err)
	}

	// The agent restarts within its session's TTL: its own rejoin, with a
	// proof it serves, replaces the session.
	again, err := pa.join(t, tn, "second start")
	if err != nil {
		t.Fatalf("the agent's own rejoin: %v", err)
	}
	if again.Session == first.Session {
		t.Fatal("the rejoin kept the old session")
	}
	if _, err := tn.client.Renew(ctx, api.RenewRequest{Group: "g", ID: 1, Session: first.Session}); !errors.Is(err, api.ErrSessionExpired) {
		t.Fatalf("the replaced session: %v, want expired", err)
	}

	// Nobody serves the address (the agent is down): its live session is
	// kept until it lapses.
	dead := addr(9)
	if _, err := tn.client.Join(ctx, api.JoinRequest{Group: "g", ID: 9, Addr: dead, TTL: time.Minute}); err != nil {
		t.Fatal(err)
	}
	if _, err := tn.client.Join(ctx, api.JoinRequest{Group: "g", ID: 9, Addr: dead, TTL: time.Minute, Proof: []byte("x")}); !errors.Is(err, api.ErrRefused) {
		t.Fatalf("a rejoin at an address nobody serves: %v, want refused", err)
	}
}

// infoServer answers /v1/info as agent id of group g in role at epoch e.
func infoServer(t *testing.T, id uint64, role string, e api.Epoch) string {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(wire.Info{ID: id, Group: "g", Role: role, Epoch: e})
	}))
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
}

// An outsider that joined an open node as a member of a strict group (two
// calls, no credentials) cannot supersede the live master with a made-up
// newer epoch: the candidate is probed at its address first. The group's
// master and epoch stay, and a real newer master still takes over.
func TestStrictSupersedeIsProbed(t *testing.T) {
	tn := startNode(t, testConfig(t, t.TempDir()))
	ctx := context.Background()
	e1 := api.Epoch{Term: 1, ID: 1}
	m1 := infoServer(t, 1, "master", e1)
	j1, err := tn.client.Join(ctx, api.JoinRequest{Group: "g", ID: 1, Addr: m1, Mode: "strict", TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tn.client.Register(ctx, api.RegisterRequest{Group: "g", ID: 1, Addr: m1, Session: j1.Session, Epoch: e1, Mode: "strict"}); err != nil {
		t.Fatal(err)
	}
	// The outsider: a member at an address nobody serves, then one whose
	// API answers but not as that master at that epoch.
	for _, tc := range []struct {
		name string
		id   uint64
		addr string
	}{
		{"nobody at the address", 66, "127.0.0.66:8946"},
		{"a back-up", 67, infoServer(t, 67, "backup", api.Epoch{Term: 2, ID: 67})},
		{"another epoch", 68, infoServer(t, 68, "master", api.Epoch{Term: 2, ID: 99})},
	} {
		j, err := tn.client.Join(ctx, api.JoinRequest{Group: "g", ID: tc.id, Addr: tc.addr, TTL: time.Minute})
		if err != nil {
			t.Fatalf("%s: join: %v", tc.name, err)
		}
		_, err = tn.client.Register(ctx, api.RegisterRequest{Group: "g", ID: tc.id, Addr: tc.addr, Session: j.Session,
			Epoch: api.Epoch{Term: 2, ID: tc.id}, Mode: "strict", TTL: 10 * time.Minute})
		if !errors.Is(err, api.ErrRefused) {
			t.Fatalf("%s: register at a newer epoch: %v, want refused", tc.name, err)
		}
	}
	st, err := tn.client.Status(ctx, api.StatusRequest{Group: "g"})
	if err != nil || len(st.Groups) != 1 || st.Groups[0].Master == nil || st.Groups[0].Master.ID != 1 || st.Groups[0].Master.Epoch != 1 {
		t.Fatalf("after the outsiders: %+v, %v; want master 1 at %s", st.Groups, err, e1)
	}
	evs, err := tn.client.AllEvents(ctx, "g", 0)
	if err != nil {
		t.Fatal(err)
	}
	if n := countKind(evs, api.EventRegistrationRefused); n != 3 {
		t.Fatalf("%d registration-refused events, want 3", n)
	}
	// A real newer master, answering as such, supersedes 1 at once: the
	// outsiders' epochs 2.66 to 2.68 did not fence the group (2.2 is older
	// than them).
	e2 := api.Epoch{Term: 2, ID: 2}
	m2 := infoServer(t, 2, "master", e2)
	j2, err := tn.client.Join(ctx, api.JoinRequest{Group: "g", ID: 2, Addr: m2, TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := tn.client.Register(ctx, api.RegisterRequest{Group: "g", ID: 2, Addr: m2, Session: j2.Session, Epoch: e2, Mode: "strict"})
	if err != nil || !resp.Accepted || resp.Master.ID != 2 {
		t.Fatalf("the real newer master: %+v, %v", resp, err)
	}
}

// The client's AllStatus pages through groups past one page, each once and
// in order.
func TestAllStatusPages(t *testing.T) {
	tn := startNode(t, testConfig(t, t.TempDir()))
	ctx := context.Background()
	n := api.MaxStatusPage*2 + 7
	for i := 0; i < n; i++ {
		if _, err := tn.client.Join(ctx, api.JoinRequest{Group: fmt.Sprintf("g%04d", i), ID: 1, Addr: addr(1), TTL: time.Minute}); err != nil {
			t.Fatal(err)
		}
	}
	all, err := tn.client.AllStatus(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != n {
		t.Fatalf("%d groups, want %d", len(all), n)
	}
	for i, g := range all {
		if want := fmt.Sprintf("g%04d", i); g.Group != want {
			t.Fatalf("group %d is %q, want %q", i, g.Group, want)
		}
	}
}

// The two ways around the supersede probe that an attacker could take: an
// agent's registration at term 0 (which took the group's next term with no
// probe), and a strict group with no live master (new, or its master left),
// which a member at a made-up epoch took without one.
func TestStrictRegistrationAlwaysProbed(t *testing.T) {
	tn := startNode(t, testConfig(t, t.TempDir()))
	ctx := context.Background()
	join := func(id uint64, at string) uint64 {
		t.Helper()
		j, err := tn.client.Join(ctx, api.JoinRequest{Group: "g", ID: id, Addr: at, Mode: "strict", TTL: time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		return j.Session
	}
	outsider := "127.0.0.66:8946" // nobody serves it
	s66 := join(66, outsider)
	// A vacant group: no master registered yet.
	if _, err := tn.client.Register(ctx, api.RegisterRequest{Group: "g", ID: 66, Addr: outsider, Session: s66,
		Epoch: api.Epoch{Term: 1 << 19, ID: 66}, Mode: "strict"}); !errors.Is(err, api.ErrRefused) {
		t.Fatalf("a made-up epoch in a vacant strict group: %v, want refused", err)
	}
	if _, err := tn.client.Register(ctx, api.RegisterRequest{Group: "g", ID: 66, Addr: outsider, Session: s66, Mode: "strict"}); !errors.Is(err, api.ErrInvalid) {
		t.Fatalf("an agent's registration at term 0: %v, want invalid", err)
	}
	// The real first master, answering as such, is taken; after it leaves,
	// the vacancy is no more open to the outsider than before.
	e1 := api.Epoch{Term: 1, ID: 1}
	m1 := infoServer(t, 1, "master", e1)
	s1 := join(1, m1)
	if resp, err := tn.client.Register(ctx, api.RegisterRequest{Group: "g", ID: 1, Addr: m1, Session: s1, Epoch: e1, Mode: "strict"}); err != nil || !resp.Accepted {
		t.Fatalf("the real first master: %+v, %v", resp, err)
	}
	if err := tn.client.Leave(ctx, api.LeaveRequest{Group: "g", ID: 1, Session: s1}); err != nil {
		t.Fatal(err)
	}
	if _, err := tn.client.Register(ctx, api.RegisterRequest{Group: "g", ID: 66, Addr: outsider, Session: s66,
		Epoch: api.Epoch{Term: 2, ID: 66}, Mode: "strict"}); !errors.Is(err, api.ErrRefused) {
		t.Fatalf("a made-up epoch after the master left: %v, want refused", err)
	}
	look, err := tn.client.Lookup(ctx, api.LookupRequest{Group: "g"})
	if err != nil || look.Master != nil {
		t.Fatalf("lookup after the outsider: %+v, %v; want no master", look.Master, err)
	}
}
