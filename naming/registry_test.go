package naming

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mastership/mastership/naming/api"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func newTestRegistry(window time.Duration) *Registry {
	return NewRegistry(RegistryConfig{
		DefaultPolicy:   api.PolicyLowestID,
		SessionTTL:      2 * time.Second,
		RegistrationTTL: 3 * time.Second,
		MaxTTL:          time.Minute,
		ConflictWindow:  window,
	}, rand.New(rand.NewSource(1)))
}

func addr(id uint64) string { return fmt.Sprintf("127.0.0.%d:7500", id) }

func join(t *testing.T, r *Registry, now time.Time, group string, id uint64, prio int) uint64 {
	t.Helper()
	// The agent itself joins: it would show its join proof.
	req := api.JoinRequest{Group: group, ID: id, Addr: addr(id), Priority: prio}
	resp, err := r.Join(now, req, r.JoinReplaces(now, req), &Effects{})
	if err != nil {
		t.Fatalf("join %d: %v", id, err)
	}
	return resp.Session
}

func kinds(fx *Effects) []string {
	var k []string
	for _, e := range fx.Events {
		k = append(k, e.Event.Kind)
	}
	return k
}

func TestRetain(t *testing.T) {
	cands := []Candidate{{ID: 5, Priority: 1}, {ID: 2, Priority: 1}, {ID: 9, Priority: 7}, {ID: 4, Priority: 7}}
	tests := []struct {
		policy  api.Policy
		cands   []Candidate
		want    uint64
		removed []uint64
	}{
		{api.PolicyLowestID, cands, 2, []uint64{4, 5, 9}},
		{api.PolicyPriority, cands, 4, []uint64{2, 5, 9}},
		{api.PolicyLowestID, cands[:1], 5, nil},
		{api.PolicyPriority, []Candidate{{ID: 3, Priority: -1}, {ID: 8, Priority: 0}}, 8, []uint64{3}},
	}
	for _, tt := range tests {
		// Same answer for every order of the candidates.
		for i := 0; i < 5; i++ {
			c := slices.Clone(tt.cands)
			rand.New(rand.NewSource(int64(i))).Shuffle(len(c), func(a, b int) { c[a], c[b] = c[b], c[a] })
			got, removed := Retain(tt.policy, c)
			if got.ID != tt.want || !slices.Equal(removed, tt.removed) {
				t.Errorf("Retain(%s, %v) = %d, %v; want %d, %v", tt.policy, c, got.ID, removed, tt.want, tt.removed)
			}
		}
	}
}

func TestRetainPanicsOnBrokenInput(t *testing.T) {
	for _, tc := range []struct {
		p api.Policy
		c []Candidate
	}{{api.PolicyLowestID, nil}, {"random", []Candidate{{ID: 1}}}} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("Retain(%q, %v) did not panic", tc.p, tc.c)
				}
			}()
			Retain(tc.p, tc.c)
		}()
	}
}

func TestBadInputChangesNothing(t *testing.T) {
	r := newTestRegistry(0)
	now := t0
	join(t, r, now, "g", 1, 0)
	before, _ := r.Record("g")
	cases := []struct {
		name string
		call func(fx *Effects) error
		code api.Code
	}{
		{"bad group", func(fx *Effects) error {
			_, err := r.Join(now, api.JoinRequest{Group: "Bad_Group", ID: 1, Addr: addr(1)}, 0, fx)
			return err
		}, api.CodeInvalid},
		{"long group", func(fx *Effects) error {
			_, err := r.Join(now, api.JoinRequest{Group: string(make([]byte, 64)), ID: 1, Addr: addr(1)}, 0, fx)
			return err
		}, api.CodeInvalid},
		{"id 0", func(fx *Effects) error {
			_, _, err := r.Register(now, api.RegisterRequest{Group: "g", ID: 0, Addr: addr(1), Manual: true}, fx)
			return err
		}, api.CodeInvalid},
		{"bad addr", func(fx *Effects) error {
			_, _, err := r.Register(now, api.RegisterRequest{Group: "g", ID: 1, Addr: "nohost", Manual: true}, fx)
			return err
		}, api.CodeInvalid},
		{"bad port", func(fx *Effects) error {
			_, _, err := r.Register(now, api.RegisterRequest{Group: "g", ID: 1, Addr: "127.0.0.1:99999", Manual: true}, fx)
			return err
		}, api.CodeInvalid},
		{"ttl over max", func(fx *Effects) error {
			_, _, err := r.Register(now, api.RegisterRequest{Group: "g", ID: 1, Addr: addr(1), TTL: time.Hour, Manual: true}, fx)
			return err
		}, api.CodeInvalid},
		{"negative ttl", func(fx *Effects) error {
			_, err := r.Join(now, api.JoinRequest{Group: "g", ID: 1, Addr: addr(1), TTL: -time.Second}, 0, fx)
			return err
		}, api.CodeInvalid},
		{"epoch of another id", func(fx *Effects) error {
			_, _, err := r.Register(now, api.RegisterRequest{Group: "g", ID: 1, Addr: addr(1), Epoch: api.Epoch{Term: 1, ID: 2}, Manual: true}, fx)
			return err
		}, api.CodeInvalid},
		{"bad mode", func(fx *Effects) error {
			_, err := r.Join(now, api.JoinRequest{Group: "g", ID: 1, Addr: addr(1), Mode: "eventual"}, 0, fx)
			return err
		}, api.CodeInvalid},
		{"bad policy", func(fx *Effects) error {
			_, _, err := r.Register(now, api.RegisterRequest{Group: "g", ID: 1, Addr: addr(1), Policy: "oldest", Manual: true}, fx)
			return err
		}, api.CodeInvalid},
		{"unknown session", func(fx *Effects) error {
			_, _, err := r.Register(now, api.RegisterRequest{Group: "g", ID: 1, Addr: addr(1), Session: 42}, fx)
			return err
		}, api.CodeSessionExpired},
		{"neither session nor manual", func(fx *Effects) error {
			_, _, err := r.Register(now, api.RegisterRequest{Group: "g", ID: 1, Addr: addr(1)}, fx)
			return err
		}, api.CodeInvalid},
		{"manual, not a member", func(fx *Effects) error {
			_, _, err := r.Register(now, api.RegisterRequest{Group: "g", ID: 66, Addr: "127.0.0.66:8946", TTL: 30 * time.Second, Manual: true}, fx)
			return err
		}, api.CodeRefused},
		{"manual, a member at another address", func(fx *Effects) error {
			_, _, err := r.Register(now, api.RegisterRequest{Group: "g", ID: 1, Addr: "127.0.0.66:8946", Manual: true}, fx)
			return err
		}, api.CodeRefused},
		{"register into an unknown group", func(fx *Effects) error {
			_, _, err := r.Register(now, api.RegisterRequest{Group: "nope", ID: 1, Addr: addr(1), Manual: true}, fx)
			return err
		}, api.CodeNotFound},
		{"lookup unknown", func(fx *Effects) error {
			_, err := r.Lookup(now, api.LookupRequest{Group: "nope"})
			return err
		}, api.CodeNotFound},
		{"renew unknown", func(fx *Effects) error {
			_, err := r.Renew(now, api.RenewRequest{Group: "nope", ID: 1, Session: 1})
			return err
		}, api.CodeNotFound},
		{"recheck unknown", func(fx *Effects) error {
			_, err := r.Recheck(now, api.RecheckRequest{Group: "nope"}, fx)
			return err
		}, api.CodeNotFound},
	}
	for _, tc := range cases {
		fx := &Effects{}
		err := tc.call(fx)
		if e := api.ToError(err); err == nil || e.Code != tc.code {
			t.Errorf("%s: err %v, want code %s", tc.name, err, tc.code)
		}
		if len(fx.Persist)+len(fx.Events)+len(fx.Triggers) != 0 {
			t.Errorf("%s: effects %+v, want none", tc.name, fx)
		}
		if n := r.Groups(); n != 1 {
			t.Errorf("%s: %d groups exist after bad input", tc.name, n)
		}
		if rec, _ := r.Record("g"); !bytes.Equal(rec, before) {
			t.Errorf("%s: group g changed", tc.name)
		}
	}
}

func TestJoinSessionsAndTakenID(t *testing.T) {
	r := newTestRegistry(0)
	s1 := join(t, r, t0, "g", 1, 0)
	// A second agent claiming ID 1 from another address is refused.
	_, err := r.Join(t0, api.JoinRequest{Group: "g", ID: 1, Addr: addr(9)}, 0, &Effects{})
	if !errors.Is(err, api.ErrIDTaken) {
		t.Fatalf("second agent with id 1: %v, want id-taken", err)
	}
	// A join naming 1's address, not shown to come from the agent there
	// (an outsider), is refused and leaves 1's session as it was.
	fx0 := &Effects{}
	if _, err := r.Join(t0, api.JoinRequest{Group: "g", ID: 1, Addr: addr(1)}, 0, fx0); !errors.Is(err, api.ErrRefused) || len(fx0.Events) != 0 {
		t.Fatalf("unproven rejoin at 1's address: %v, events %v; want refused and none", err, kinds(fx0))
	}
	if _, err := r.Renew(t0, api.RenewRequest{Group: "g", ID: 1, Session: s1}); err != nil {
		t.Fatalf("1's session after a refused takeover: %v", err)
	}
	if _, err := r.Join(t0, api.JoinRequest{Group: "g", ID: 1, Addr: addr(1), Proof: make([]byte, api.MaxJoinProof+1)}, 1, &Effects{}); !errors.Is(err, api.ErrInvalid) {
		t.Fatalf("an oversized join proof: %v, want invalid", err)
	}
	// A join retried with the proof of the join that opened the session
	// (its answer was lost) gets that session back, renewed, whoever
	// could probe the address.
	r2 := newTestRegistry(0)
	first, err := r2.Join(t0, api.JoinRequest{Group: "g", ID: 1, Addr: addr(1), Proof: []byte("p1")}, 0, &Effects{})
	if err != nil {
		t.Fatal(err)
	}
	again, err := r2.Join(t0.Add(time.Second), api.JoinRequest{Group: "g", ID: 1, Addr: addr(1), Proof: []byte("p1")}, 0, &Effects{})
	if err != nil || again.Session != first.Session {
		t.Fatalf("the same join retried: session %d (%v), want %d", again.Session, err, first.Session)
	}
	if _, err := r2.Join(t0, api.JoinRequest{Group: "g", ID: 1, Addr: addr(1), Proof: []byte("p2")}, 0, &Effects{}); !errors.Is(err, api.ErrRefused) {
		t.Fatalf("another join, unproven: %v, want refused", err)
	}
	// A join proven over a session that a newer join replaced since (a
	// slow probe overtaken) proves nothing.
	r3 := newTestRegistry(0)
	a1, _ := r3.Join(t0, api.JoinRequest{Group: "g", ID: 1, Addr: addr(1), Proof: []byte("a")}, 0, &Effects{})
	a2req := api.JoinRequest{Group: "g", ID: 1, Addr: addr(1), Proof: []byte("b")}
	a2, err := r3.Join(t0, a2req, a1.Session, &Effects{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r3.Join(t0, api.JoinRequest{Group: "g", ID: 1, Addr: addr(1), Proof: []byte("c")}, a1.Session, &Effects{}); !errors.Is(err, api.ErrRefused) {
		t.Fatalf("a join proven over the replaced session: %v, want refused", err)
	}
	if _, err := r3.Renew(t0, api.RenewRequest{Group: "g", ID: 1, Session: a2.Session}); err != nil {
		t.Fatalf("the newer session after a stale proven join: %v", err)
	}
	// The same address rejoining (a restart), shown to be the agent
	// there, gets a new session.
	s1b := join(t, r, t0, "g", 1, 0)
	if s1b == s1 {
		t.Fatalf("rejoin kept session %d", s1)
	}
	if _, err := r.Renew(t0, api.RenewRequest{Group: "g", ID: 1, Session: s1}); !errors.Is(err, api.ErrSessionExpired) {
		t.Fatalf("renew of replaced session: %v", err)
	}
	// Renewal extends; without it the session lapses at the sweep.
	if _, err := r.Renew(t0.Add(1500*time.Millisecond), api.RenewRequest{Group: "g", ID: 1, Session: s1b}); err != nil {
		t.Fatal(err)
	}
	fx := &Effects{}
	r.Sweep(t0.Add(3*time.Second), fx)
	if len(fx.Events) != 0 {
		t.Fatalf("renewed session expired: %v", kinds(fx))
	}
	r.Sweep(t0.Add(3500*time.Millisecond), fx)
	if !slices.Equal(kinds(fx), []string{api.EventMemberExpired}) {
		t.Fatalf("events %v, want member-expired", kinds(fx))
	}
	// After expiry another address may take the ID.
	if _, err := r.Join(t0.Add(4*time.Second), api.JoinRequest{Group: "g", ID: 1, Addr: addr(9)}, 0, &Effects{}); err != nil {
		t.Fatalf("join after expiry: %v", err)
	}
}

func TestRegisterAndRenew(t *testing.T) {
	r := newTestRegistry(0)
	join(t, r, t0, "g", 3, 0)
	fx := &Effects{}
	resp, pending, err := r.Register(t0, api.RegisterRequest{Group: "g", ID: 3, Addr: addr(3), Manual: true}, fx)
	if err != nil || pending || !resp.Accepted {
		t.Fatalf("register: %+v pending=%v err=%v", resp, pending, err)
	}
	if resp.Master.Epoch != (api.Epoch{Term: 1, ID: 3}) {
		t.Fatalf("assigned epoch %s, want 1.3", resp.Master.Epoch)
	}
	if !slices.Equal(kinds(fx), []string{api.EventMasterRegistered}) || !slices.Equal(fx.Persist, []string{"g"}) {
		t.Fatalf("effects %v %v", kinds(fx), fx.Persist)
	}
	// A renewal with the same epoch records nothing and persists nothing.
	fx = &Effects{}
	if _, _, err := r.Register(t0.Add(time.Second), api.RegisterRequest{Group: "g", ID: 3, Addr: addr(3), Manual: true}, fx); err != nil {
		t.Fatal(err)
	}
	if len(fx.Events)+len(fx.Persist) != 0 {
		t.Fatalf("renewal had effects %v %v", kinds(fx), fx.Persist)
	}
	// The same master with an older epoch is stale.
	_, _, err = r.Register(t0, api.RegisterRequest{Group: "g", ID: 3, Addr: addr(3), Epoch: api.Epoch{Term: 0}, Manual: true}, &Effects{})
	if err != nil {
		t.Fatalf("renewal by hand: %v", err)
	}
	r.Register(t0, api.RegisterRequest{Group: "g", ID: 3, Addr: addr(3), Epoch: api.Epoch{Term: 5}, Manual: true}, &Effects{})
	fx = &Effects{}
	_, _, err = r.Register(t0, api.RegisterRequest{Group: "g", ID: 3, Addr: addr(3), Epoch: api.Epoch{Term: 4}, Manual: true}, fx)
	if !errors.Is(err, api.ErrRefused) || !slices.Equal(kinds(fx), []string{api.EventRegistrationRefused}) {
		t.Fatalf("stale epoch: %v %v", err, kinds(fx))
	}
	look, err := r.Lookup(t0.Add(time.Second), api.LookupRequest{Group: "g"})
	if err != nil || look.Master == nil || look.Master.ID != 3 || look.Master.Epoch.Term != 5 {
		t.Fatalf("lookup: %+v %v", look, err)
	}
	// The registration lapses after its TTL (3s from the last renewal).
	if look, _ := r.Lookup(t0.Add(3*time.Second), api.LookupRequest{Group: "g"}); look.Master != nil {
		t.Fatalf("lapsed registration still returned: %+v", look.Master)
	}
	fx = &Effects{}
	r.Sweep(t0.Add(3*time.Second), fx)
	// The member's session (2s) ended first, and the registration with it.
	if !slices.Equal(kinds(fx), []string{api.EventMemberExpired, api.EventMasterExpired}) {
		t.Fatalf("sweep events %v", kinds(fx))
	}
}

func TestSessionLapseRemovesItsRegistration(t *testing.T) {
	r := newTestRegistry(0)
	s := join(t, r, t0, "g", 2, 0)
	if _, _, err := r.Register(t0, api.RegisterRequest{Group: "g", ID: 2, Addr: addr(2), Session: s, TTL: time.Minute, Epoch: api.Epoch{Term: 1, ID: 2}}, &Effects{}); err != nil {
		t.Fatal(err)
	}
	fx := &Effects{}
	r.Sweep(t0.Add(2*time.Second), fx)
	if !slices.Equal(kinds(fx), []string{api.EventMemberExpired, api.EventMasterExpired}) {
		t.Fatalf("events %v", kinds(fx))
	}
	if look, _ := r.Lookup(t0.Add(2*time.Second), api.LookupRequest{Group: "g"}); look.Master != nil {
		t.Fatalf("registration outlived its session")
	}
}

// The conflict path of figure 12: detect (1210), retain (1220), remove
// (1230), trigger (1240), for both policies and with and without a window.
func TestConflictDecision(t *testing.T) {
	for _, tc := range []struct {
		policy api.Policy
		want   uint64
	}{{api.PolicyLowestID, 1}, {api.PolicyPriority, 4}} {
		t.Run(string(tc.policy), func(t *testing.T) {
			r := newTestRegistry(50 * time.Millisecond)
			for id := uint64(1); id <= 5; id++ {
				r.Join(t0, api.JoinRequest{Group: "g", ID: id, Addr: addr(id), Priority: int(id % 5), Policy: string(tc.policy)}, 0, &Effects{})
			}
			// 3 registers first, then 1, 4 and 5 compete; a non-member 7
			// cannot register at all.
			if _, _, err := r.Register(t0, api.RegisterRequest{Group: "g", ID: 3, Addr: addr(3), Epoch: api.Epoch{Term: 1}, Manual: true}, &Effects{}); err != nil {
				t.Fatal(err)
			}
			fx := &Effects{}
			if _, _, err := r.Register(t0, api.RegisterRequest{Group: "g", ID: 7, Addr: addr(7), Epoch: api.Epoch{Term: 2}, Manual: true}, &Effects{}); !errors.Is(err, api.ErrRefused) {
				t.Fatalf("a non-member registered: %v", err)
			}
			for _, id := range []uint64{1, 4, 5} {
				_, pending, err := r.Register(t0.Add(time.Millisecond), api.RegisterRequest{Group: "g", ID: id, Addr: addr(id), Epoch: api.Epoch{Term: 2}, Manual: true}, fx)
				if err != nil || !pending {
					t.Fatalf("register %d: pending=%v err=%v", id, pending, err)
				}
			}
			if len(fx.Timers) != 1 || !fx.Timers[0].At.Equal(t0.Add(51*time.Millisecond)) {
				t.Fatalf("timers %+v, want one at the window's end", fx.Timers)
			}
			// Readers see only the incumbent while the window is open.
			if look, _ := r.Lookup(t0.Add(10*time.Millisecond), api.LookupRequest{Group: "g"}); look.Master.ID != 3 {
				t.Fatalf("lookup during window: %d", look.Master.ID)
			}
			fx = &Effects{}
			r.Decide(t0.Add(50*time.Millisecond), "g", nil, fx)
			if len(fx.Decisions) != 0 {
				t.Fatalf("decided before the window closed")
			}
			r.Decide(t0.Add(51*time.Millisecond), "g", nil, fx)
			if !slices.Equal(kinds(fx), []string{api.EventConflictDetected, api.EventConflictResolved}) {
				t.Fatalf("events %v", kinds(fx))
			}
			res := fx.Events[1].Event
			if res.Retained != tc.want || len(res.Removed) != 3 || res.Policy != tc.policy {
				t.Fatalf("resolved %+v, want %d retained", res, tc.want)
			}
			if got := fx.Events[0].Event.Candidates; !slices.Equal(got, []uint64{1, 3, 4, 5}) {
				t.Fatalf("candidates %v", got)
			}
			if len(fx.Decisions) != 1 || fx.Decisions[0].Master.ID != tc.want {
				t.Fatalf("decisions %+v", fx.Decisions)
			}
			// Every member is triggered.
			if len(fx.Triggers) != 1 {
				t.Fatalf("triggers %+v", fx.Triggers)
			}
			var ids []uint64
			for _, tg := range fx.Triggers[0].Targets {
				ids = append(ids, tg.ID)
			}
			if !slices.Equal(ids, []uint64{1, 2, 3, 4, 5}) || fx.Triggers[0].Notify.Master.ID != tc.want {
				t.Fatalf("trigger targets %v master %+v", ids, fx.Triggers[0].Notify.Master)
			}
			look, _ := r.Lookup(t0.Add(52*time.Millisecond), api.LookupRequest{Group: "g"})
			if look.Master.ID != tc.want {
				t.Fatalf("lookup after decision: %d", look.Master.ID)
			}
		})
	}
}

func TestConflictWithoutWindowDecidesAtOnce(t *testing.T) {
	r := newTestRegistry(0)
	join(t, r, t0, "g", 5, 0)
	join(t, r, t0, "g", 2, 0)
	r.Register(t0, api.RegisterRequest{Group: "g", ID: 5, Addr: addr(5), Manual: true}, &Effects{})
	fx := &Effects{}
	resp, pending, err := r.Register(t0, api.RegisterRequest{Group: "g", ID: 2, Addr: addr(2), Manual: true}, fx)
	if err != nil || pending || !resp.Accepted || !resp.Conflict || !slices.Equal(resp.Removed, []uint64{5}) {
		t.Fatalf("resp %+v pending=%v err=%v", resp, pending, err)
	}
	// The loser re-registering competes again and loses again.
	resp, _, _ = r.Register(t0, api.RegisterRequest{Group: "g", ID: 5, Addr: addr(5), Manual: true}, &Effects{})
	if resp.Accepted || resp.Master.ID != 2 {
		t.Fatalf("loser: %+v", resp)
	}
}

func TestConflictCandidateThatLapsesIsNotRetained(t *testing.T) {
	r := newTestRegistry(time.Second)
	join(t, r, t0, "g", 5, 0)
	join(t, r, t0, "g", 1, 0)
	r.Register(t0, api.RegisterRequest{Group: "g", ID: 5, Addr: addr(5), TTL: 10 * time.Second, Manual: true}, &Effects{})
	r.Register(t0, api.RegisterRequest{Group: "g", ID: 1, Addr: addr(1), TTL: 500 * time.Millisecond, Manual: true}, &Effects{})
	fx := &Effects{}
	r.Decide(t0.Add(time.Second), "g", nil, fx)
	if len(fx.Decisions) != 1 || fx.Decisions[0].Master.ID != 5 || len(fx.Triggers) != 0 {
		t.Fatalf("decision %+v triggers %d", fx.Decisions, len(fx.Triggers))
	}
}

// A registration whose holder does not answer the probe is not kept over
// a live one, whatever the policy says (a crashed master's registration
// outlives it by its TTL).
func TestConflictSkipsCandidatesThatDoNotAnswer(t *testing.T) {
	r := newTestRegistry(10 * time.Millisecond)
	join(t, r, t0, "g", 1, 0)
	join(t, r, t0, "g", 2, 0)
	r.Register(t0, api.RegisterRequest{Group: "g", ID: 1, Addr: addr(1), Manual: true}, &Effects{})
	r.Register(t0, api.RegisterRequest{Group: "g", ID: 2, Addr: addr(2), Manual: true}, &Effects{})
	if c := r.Candidates("g"); len(c) != 2 {
		t.Fatalf("candidates %+v", c)
	}
	fx := &Effects{}
	r.Decide(t0.Add(10*time.Millisecond), "g", func(id uint64) bool { return id == 2 }, fx)
	if len(fx.Decisions) != 1 || fx.Decisions[0].Master.ID != 2 || !slices.Equal(fx.Decisions[0].Removed, []uint64{1}) {
		t.Fatalf("decision %+v", fx.Decisions)
	}
	if fx.Events[0].Event.Reason == "" || fx.Events[1].Event.Retained != 2 {
		t.Fatalf("events %+v", fx.Events)
	}
	// When nobody answers, the policy weighs them all.
	r.Register(t0.Add(time.Second), api.RegisterRequest{Group: "g", ID: 1, Addr: addr(1), Manual: true}, &Effects{})
	fx = &Effects{}
	r.Decide(t0.Add(2*time.Second), "g", func(uint64) bool { return false }, fx)
	if len(fx.Decisions) != 1 || fx.Decisions[0].Master.ID != 1 {
		t.Fatalf("decision without answers %+v", fx.Decisions)
	}
}

func TestStrictFencing(t *testing.T) {
	r := newTestRegistry(time.Second)
	for id := uint64(1); id <= 3; id++ {
		r.Join(t0, api.JoinRequest{Group: "s", ID: id, Addr: addr(id), Mode: "strict"}, 0, &Effects{})
	}
	if _, _, err := r.Register(t0, api.RegisterRequest{Group: "s", ID: 2, Addr: addr(2), Epoch: api.Epoch{Term: 4, ID: 2}, Manual: true}, &Effects{}); err != nil {
		t.Fatal(err)
	}
	// An older epoch is refused, even from a lower ID.
	fx := &Effects{}
	_, _, err := r.Register(t0, api.RegisterRequest{Group: "s", ID: 1, Addr: addr(1), Epoch: api.Epoch{Term: 3, ID: 1}, Manual: true}, fx)
	if !errors.Is(err, api.ErrRefused) || !slices.Equal(kinds(fx), []string{api.EventRegistrationRefused}) {
		t.Fatalf("older epoch: %v %v", err, kinds(fx))
	}
	// A newer epoch supersedes at once and triggers every member.
	fx = &Effects{}
	resp, pending, err := r.Register(t0, api.RegisterRequest{Group: "s", ID: 3, Addr: addr(3), Epoch: api.Epoch{Term: 5, ID: 3}, Manual: true}, fx)
	if err != nil || pending || !resp.Accepted || !slices.Equal(resp.Removed, []uint64{2}) {
		t.Fatalf("newer epoch: %+v %v %v", resp, pending, err)
	}
	if !slices.Equal(kinds(fx), []string{api.EventMasterSuperseded}) || len(fx.Triggers) != 1 || len(fx.Triggers[0].Targets) != 3 {
		t.Fatalf("effects %v %+v", kinds(fx), fx.Triggers)
	}
	// Once the registration lapses, the old epoch is still fenced.
	_, _, err = r.Register(t0.Add(time.Minute), api.RegisterRequest{Group: "s", ID: 2, Addr: addr(2), Epoch: api.Epoch{Term: 4, ID: 2}, Manual: true}, &Effects{})
	if !errors.Is(err, api.ErrRefused) {
		t.Fatalf("old epoch after lapse: %v", err)
	}
}

func TestModeAndPolicyMismatch(t *testing.T) {
	r := newTestRegistry(0)
	join(t, r, t0, "g", 1, 0)
	_, err := r.Join(t0, api.JoinRequest{Group: "g", ID: 2, Addr: addr(2), Mode: "strict"}, 0, &Effects{})
	if !errors.Is(err, api.ErrMismatch) {
		t.Fatalf("mode mismatch: %v", err)
	}
	_, _, err = r.Register(t0, api.RegisterRequest{Group: "g", ID: 2, Addr: addr(2), Policy: "priority", Manual: true}, &Effects{})
	if !errors.Is(err, api.ErrMismatch) {
		t.Fatalf("policy mismatch: %v", err)
	}
}

func TestRecheckTriggersMembers(t *testing.T) {
	r := newTestRegistry(time.Second)
	join(t, r, t0, "g", 1, 0)
	join(t, r, t0, "g", 2, 0)
	r.Register(t0, api.RegisterRequest{Group: "g", ID: 2, Addr: addr(2), Manual: true}, &Effects{})
	r.Register(t0, api.RegisterRequest{Group: "g", ID: 1, Addr: addr(1), Manual: true}, &Effects{})
	fx := &Effects{}
	resp, err := r.Recheck(t0.Add(time.Millisecond), api.RecheckRequest{Group: "g", From: 2, Reason: "competing claim"}, fx)
	if err != nil || resp.Master.ID != 2 {
		t.Fatalf("recheck: %+v %v", resp, err)
	}
	// Members are triggered; the open window is left to its timer.
	if !slices.Equal(kinds(fx), []string{api.EventRecheck}) || len(fx.Triggers) != 1 {
		t.Fatalf("effects %v triggers %d", kinds(fx), len(fx.Triggers))
	}
}

func TestRestoreRearmsWithGrace(t *testing.T) {
	r := newTestRegistry(0)
	s := join(t, r, t0, "g", 1, 0)
	r.Register(t0, api.RegisterRequest{Group: "g", ID: 1, Addr: addr(1), Session: s, Epoch: api.Epoch{Term: 7}}, &Effects{})
	rec, err := r.Record("g")
	if err != nil {
		t.Fatal(err)
	}
	later := t0.Add(time.Hour)
	r2 := newTestRegistry(0)
	if err := r2.Restore(later, 5*time.Second, rec); err != nil {
		t.Fatal(err)
	}
	look, err := r2.Lookup(later.Add(4*time.Second), api.LookupRequest{Group: "g"})
	if err != nil || look.Master == nil || look.Master.Epoch.Term != 7 {
		t.Fatalf("restored lookup %+v %v", look, err)
	}
	if _, err := r2.Renew(later.Add(4*time.Second), api.RenewRequest{Group: "g", ID: 1, Session: s}); err != nil {
		t.Fatalf("restored session: %v", err)
	}
	if err := r2.Restore(later, time.Second, []byte{0xc1}); err == nil {
		t.Fatalf("restore of garbage succeeded")
	}
}

// Epochs far above the group's (2^64-1, term + 2^40) are refused with their
// own code and recorded, never adopted: the group is not fenced, and a
// registration at the next term is still accepted. A manual registration
// at the last term cannot overflow.
func TestRegisterEpochOutOfRange(t *testing.T) {
	for _, mode := range []string{"strict", "available"} {
		r := newTestRegistry(0)
		var sessions [4]uint64
		for id := uint64(1); id <= 3; id++ {
			resp, err := r.Join(t0, api.JoinRequest{Group: "g", ID: id, Addr: addr(id), Mode: mode}, 0, &Effects{})
			if err != nil {
				t.Fatal(err)
			}
			sessions[id] = resp.Session
		}
		reg := func(id, term uint64) (api.RegisterResponse, error, *Effects) {
			fx := &Effects{}
			resp, _, err := r.Register(t0, api.RegisterRequest{Group: "g", ID: id, Addr: addr(id), Session: sessions[id],
				Epoch: api.Epoch{Term: term, ID: id}}, fx)
			return resp, err, fx
		}
		if _, err, _ := reg(1, 3); err != nil {
			t.Fatal(err)
		}
		for _, term := range []uint64{^uint64(0), 3 + 1<<40, 3 + api.MaxTermLead + 1} {
			_, err, fx := reg(2, term)
			if !errors.Is(err, api.ErrEpochRange) || !slices.Equal(kinds(fx), []string{api.EventRegistrationRefused}) {
				t.Fatalf("%s: term %d: %v, events %v", mode, term, err, kinds(fx))
			}
			if e := api.ToError(err); e.Code != api.CodeEpochRange {
				t.Fatalf("%s: code %s", mode, e.Code)
			}
		}
		look, _ := r.Lookup(t0, api.LookupRequest{Group: "g"})
		if look.Master == nil || look.Master.ID != 1 || look.Master.Epoch.Term != 3 {
			t.Fatalf("%s: master after the attempts %+v", mode, look.Master)
		}
		if resp, err, _ := reg(2, 4); err != nil || (mode == "strict" && !resp.Accepted) {
			t.Fatalf("%s: next term refused after the attempts: %+v %v", mode, resp, err)
		}
		if _, err, _ := reg(3, 3+api.MaxTermLead); err != nil {
			t.Fatalf("%s: a term within the bound refused: %v", mode, err)
		}
	}
	// Manual registration (term 0: the next one) at the last term.
	r := newTestRegistry(0)
	join(t, r, t0, "m", 1, 0)
	r.groups["m"].MaxEpoch = api.Epoch{Term: ^uint64(0), ID: 9}
	_, _, err := r.Register(t0, api.RegisterRequest{Group: "m", ID: 1, Addr: addr(1), Manual: true}, &Effects{})
	if !errors.Is(err, api.ErrEpochRange) {
		t.Fatalf("manual registration at the last term: %v", err)
	}
}

// A strict group fenced at the last term (a store from before epochs were
// bounded) is repaired by an operator's register -epoch: the explicit epoch
// becomes the group's, recorded as a reset, and the agents' elections go
// on from it. Without -epoch, or by an agent, an older epoch stays refused.
func TestRegisterEpochRepairsAFencedGroup(t *testing.T) {
	r := newTestRegistry(0)
	var sessions [3]uint64
	for id := uint64(1); id <= 2; id++ {
		resp, err := r.Join(t0, api.JoinRequest{Group: "g", ID: id, Addr: addr(id), Mode: "strict"}, 0, &Effects{})
		if err != nil {
			t.Fatal(err)
		}
		sessions[id] = resp.Session
	}
	fenced := api.Epoch{Term: ^uint64(0), ID: 9}
	r.groups["g"].MaxEpoch = fenced
	if _, _, err := r.Register(t0, api.RegisterRequest{Group: "g", ID: 2, Addr: addr(2), Session: sessions[2], Epoch: api.Epoch{Term: 6, ID: 2}}, &Effects{}); !errors.Is(err, api.ErrRefused) {
		t.Fatalf("an agent below the fence: %v, want refused", err)
	}
	fx := &Effects{}
	resp, _, err := r.Register(t0, api.RegisterRequest{Group: "g", ID: 1, Addr: addr(1), Epoch: api.Epoch{Term: 5}, Manual: true}, fx)
	if err != nil || !resp.Accepted || resp.Master.Epoch != (api.Epoch{Term: 5, ID: 1}) {
		t.Fatalf("register -epoch 5 on the fenced group: %+v, %v", resp, err)
	}
	if !slices.Equal(kinds(fx), []string{api.EventEpochReset, api.EventMasterRegistered}) {
		t.Fatalf("events %v, want the reset then the registration", kinds(fx))
	}
	if got := r.groups["g"].MaxEpoch; got != (api.Epoch{Term: 5, ID: 1}) {
		t.Fatalf("group epoch %s after the repair, want 5.1", got)
	}
	// The agents' next election, above the repaired epoch, supersedes.
	resp, _, err = r.Register(t0, api.RegisterRequest{Group: "g", ID: 2, Addr: addr(2), Session: sessions[2], Epoch: api.Epoch{Term: 6, ID: 2}}, &Effects{})
	if err != nil || !resp.Accepted || resp.Master.ID != 2 {
		t.Fatalf("an election after the repair: %+v, %v", resp, err)
	}
	// And an older epoch by an agent is fenced again.
	if _, _, err := r.Register(t0, api.RegisterRequest{Group: "g", ID: 1, Addr: addr(1), Session: sessions[1], Epoch: api.Epoch{Term: 5, ID: 1}}, &Effects{}); !errors.Is(err, api.ErrRefused) {
		t.Fatalf("an agent at 5.1 after the election at 6.2: %v, want refused", err)
	}
}

// Status without a group pages through every group by name, whatever their
// number; a join or registration that would pass -max-groups is refused
// and changes nothing.
func TestStatusPagesAndMaxGroups(t *testing.T) {
	r := NewRegistry(RegistryConfig{DefaultPolicy: api.PolicyLowestID, SessionTTL: time.Minute, RegistrationTTL: time.Minute,
		MaxTTL: time.Hour, MaxGroups: 2500}, rand.New(rand.NewSource(1)))
	for i := 0; i < 2500; i++ {
		join(t, r, t0, fmt.Sprintf("g%05d", i), 1, 0)
	}
	_, err := r.Join(t0, api.JoinRequest{Group: "one-more", ID: 1, Addr: addr(1)}, 0, &Effects{})
	if !errors.Is(err, api.ErrTooLarge) {
		t.Fatalf("join past max-groups: %v", err)
	}
	_, _, err = r.Register(t0, api.RegisterRequest{Group: "one-more", ID: 1, Addr: addr(1), Manual: true}, &Effects{})
	// Registrations never create groups (members do, by joining).
	if !errors.Is(err, api.ErrNotFound) || r.Groups() != 2500 || r.HasGroup("one-more") {
		t.Fatalf("register past max-groups: %v, %d groups", err, r.Groups())
	}
	var names []string
	after := ""
	for pages := 0; ; pages++ {
		if pages > 10 {
			t.Fatal("pages never end")
		}
		page, err := r.Status(t0, api.StatusRequest{After: after, Limit: api.MaxStatusPage + 500})
		if err != nil {
			t.Fatal(err)
		}
		if len(page.Groups) > api.MaxStatusPage {
			t.Fatalf("page of %d groups, cap %d", len(page.Groups), api.MaxStatusPage)
		}
		for _, g := range page.Groups {
			names = append(names, g.Group)
		}
		// Every page fits one message.
		if b, _ := api.Encode(&page); len(b) > api.MaxMessageBytes {
			t.Fatalf("page of %d bytes", len(b))
		}
		if !page.More {
			break
		}
		after = page.Next
	}
	if len(names) != 2500 || !slices.IsSorted(names) || names[0] != "g00000" {
		t.Fatalf("%d groups paged, sorted %v", len(names), slices.IsSorted(names))
	}
	if def, _ := r.Status(t0, api.StatusRequest{}); len(def.Groups) != api.DefaultStatusPage || !def.More {
		t.Fatalf("default page %d groups, more %v", len(def.Groups), def.More)
	}
	if _, err := r.Status(t0, api.StatusRequest{Limit: -1}); !errors.Is(err, api.ErrInvalid) {
		t.Fatalf("negative limit: %v", err)
	}
}

// Pause: a known group only; the state it is in already changes nothing;
// a change is an event and a trigger of every member saying so; joins,
// renewals, lookups and status say it, and the durable record keeps it.
func TestPause(t *testing.T) {
	r := newTestRegistry(0)
	s1 := join(t, r, t0, "g", 1, 0)
	join(t, r, t0, "g", 2, 0)
	for _, bad := range []api.PauseRequest{
		{Group: "nosuch", Paused: true},
		{Group: "Bad/Name", Paused: true},
		{Group: "g", Paused: true, Reason: strings.Repeat("x", api.MaxReasonBytes+1)},
	} {
		fx := &Effects{}
		if _, err := r.Pause(t0, bad, fx); err == nil || len(fx.Events) != 0 || len(fx.Triggers) != 0 {
			t.Errorf("pause %+v: %v, effects %+v", bad, err, fx)
		}
	}
	fx := &Effects{}
	resp, err := r.Pause(t0, api.PauseRequest{Group: "g", Paused: true, Reason: "upgrade"}, fx)
	if err != nil || !resp.Paused || !resp.Changed {
		t.Fatalf("pause: %+v %v", resp, err)
	}
	if !slices.Equal(kinds(fx), []string{api.EventGroupPaused}) || len(fx.Triggers) != 1 || !fx.Triggers[0].Notify.Paused ||
		len(fx.Triggers[0].Targets) != 2 || fx.Events[0].Event.Reason != "upgrade" {
		t.Fatalf("pause effects: events %v triggers %+v", kinds(fx), fx.Triggers)
	}
	fx = &Effects{}
	if resp, err := r.Pause(t0, api.PauseRequest{Group: "g", Paused: true}, fx); err != nil || !resp.Paused || resp.Changed || len(fx.Events) != 0 {
		t.Fatalf("pause again: %+v %v %v", resp, err, kinds(fx))
	}
	if rr, err := r.Renew(t0, api.RenewRequest{Group: "g", ID: 1, Session: s1}); err != nil || !rr.Paused {
		t.Fatalf("renew while paused: %+v %v", rr, err)
	}
	if lr, err := r.Lookup(t0, api.LookupRequest{Group: "g"}); err != nil || !lr.Paused {
		t.Fatalf("lookup while paused: %+v %v", lr, err)
	}
	if st, err := r.Status(t0, api.StatusRequest{Group: "g"}); err != nil || !st.Groups[0].Paused {
		t.Fatalf("status while paused: %+v %v", st, err)
	}
	rec, err := r.Record("g")
	if err != nil {
		t.Fatal(err)
	}
	r2 := newTestRegistry(0)
	if err := r2.Restore(t0, time.Second, rec); err != nil {
		t.Fatal(err)
	}
	if st, _ := r2.Status(t0, api.StatusRequest{Group: "g"}); !st.Groups[0].Paused {
		t.Fatal("a restored record lost the pause")
	}
	fx = &Effects{}
	if resp, err := r.Pause(t0, api.PauseRequest{Group: "g"}, fx); err != nil || resp.Paused || !resp.Changed ||
		!slices.Equal(kinds(fx), []string{api.EventGroupResumed}) || fx.Triggers[0].Notify.Paused {
		t.Fatalf("resume: %+v %v %v", resp, err, kinds(fx))
	}
}
