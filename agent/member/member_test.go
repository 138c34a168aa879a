package member

import (
	"errors"
	"strings"
	"testing"

	"github.com/mastership/mastership/naming/api"
)

func kinds(fx []Effect) string {
	var s []string
	for _, e := range fx {
		s = append(s, e.Kind.String())
	}
	return strings.Join(s, ",")
}

func want(t *testing.T, what string, fx []Effect, k string) {
	t.Helper()
	if got := kinds(fx); got != k {
		t.Fatalf("%s: effects %q, want %q (%v)", what, got, k, fx)
	}
}

var cfg = Config{RegistrationTTL: 200, RetryTicks: 2, JoinRetryTicks: 5, MaxJoinRetryTicks: 100}

var e7 = api.Epoch{Term: 7, ID: 1}

// joined returns a machine with session 9 (TTL 30 ticks) opened at tick 0.
func joined(t *testing.T) *Machine {
	t.Helper()
	m := New(cfg)
	want(t, "first tick", m.Tick(0), "join")
	want(t, "joined", m.Joined(0, Session{ID: 9, TTL: 30}, nil), "see-master")
	return m
}

// The session: renewed every third of its TTL, joined again when lost, the
// join retried with a doubling pause.
func TestSession(t *testing.T) {
	m := New(cfg)
	want(t, "first tick", m.Tick(0), "join")
	want(t, "join in flight", m.Tick(1), "")
	want(t, "unreachable", m.Joined(1, Session{}, errors.New("connection refused")), "")
	for i, at := range []uint64{6, 16, 36, 76, 156, 256} {
		if d := m.Deadline(); d != at {
			t.Fatalf("retry %d at %d, want %d", i, d, at)
		}
		want(t, "retry", m.Tick(at), "join")
		m.Joined(at, Session{}, errors.New("timeout"))
	}
	m.Tick(356)
	fx := m.Joined(356, Session{ID: 9, TTL: 30, Master: &api.Registration{ID: 2, Epoch: e7}}, nil)
	want(t, "joined", fx, "see-master")
	if fx[0].Master.ID != 2 || m.Session() != 9 {
		t.Fatalf("see %v, session %d", fx[0].Master, m.Session())
	}
	if d := m.Deadline(); d != 366 {
		t.Fatalf("renewal at %d, want 366", d)
	}
	fx = m.Tick(366)
	want(t, "renew", fx, "renew")
	if fx[0].Session != 9 {
		t.Fatalf("renews session %d", fx[0].Session)
	}
	want(t, "renewed", m.Renewed(367, 9, Session{ID: 9, TTL: 30}, nil), "see-master")
	want(t, "a stale session's answer", m.Renewed(368, 4, Session{}, api.ErrSessionExpired), "")
	m.Tick(377)
	want(t, "lost", m.Renewed(377, 9, Session{}, api.ErrSessionExpired), "")
	if m.Session() != 0 {
		t.Fatal("session kept after it expired")
	}
	want(t, "join again at once", m.Tick(377), "join")
	// A failed renewal keeps the session and renews again a third later.
	m.Joined(378, Session{ID: 10, TTL: 30}, nil)
	m.Tick(388)
	want(t, "renewal unreachable", m.Renewed(388, 10, Session{}, errors.New("timeout")), "")
	if m.Session() != 10 || m.Deadline() != 398 {
		t.Fatalf("session %d, next renewal %d", m.Session(), m.Deadline())
	}
}

// Another agent holding our ID ends the agent, and nothing more is asked.
func TestIDTaken(t *testing.T) {
	m := New(cfg)
	m.Joining()
	fx := m.Joined(0, Session{}, api.ErrIDTaken)
	want(t, "id taken", fx, "fatal")
	if !errors.Is(fx[0].Err, api.ErrIDTaken) {
		t.Fatalf("fatal error %v", fx[0].Err)
	}
	want(t, "afterwards", m.Tick(1<<40), "")
}

// A registration: asked at once, renewed every quarter of its TTL while
// master at its epoch, valid for the TTL less a tenth from when it was
// asked; the answer for an earlier epoch is ignored.
func TestRegistration(t *testing.T) {
	m := joined(t)
	m.Campaigned(3, e7)
	if !m.Registering() {
		t.Fatal("not registering before the first attempt")
	}
	fx := m.Tick(3)
	want(t, "campaigned", fx, "register")
	if fx[0].Epoch != e7 || fx[0].Session != 9 {
		t.Fatalf("register %v", fx[0])
	}
	if !m.Registering() {
		t.Fatal("not registering while the register call is out")
	}
	fx = m.RegisterDone(8, e7, true, nil, nil)
	want(t, "accepted", fx, "registered")
	if !fx[0].Accepted || fx[0].ValidTicks != 180-5 {
		t.Fatalf("registered %v, want accepted and valid for 175 ticks", fx[0])
	}
	if m.Registering() {
		t.Fatal("registering after the acceptance")
	}
	if d := m.Deadline(); d != 8+50 && d != 10 {
		t.Fatalf("deadline %d", d)
	}
	want(t, "renewal", m.Tick(58)[1:], "register")
	want(t, "a stale epoch's answer", m.RegisterDone(59, api.Epoch{Term: 6, ID: 1}, true, nil, nil), "")
	// Deposed: no renewal, and the answer in flight changes nothing.
	m.Status(api.RoleBackup, api.Epoch{Term: 8, ID: 2})
	want(t, "deposed", m.RegisterDone(60, e7, true, nil, nil), "")
	if fx := m.Tick(200); strings.Contains(kinds(fx), "register") {
		t.Fatalf("deposed master registers: %v", fx)
	}
}

// A refusal or a registration not retained tells the core and raises the
// event trigger once; the machine does not ask again.
func TestRegistrationRefused(t *testing.T) {
	for _, tc := range []struct {
		name     string
		accepted bool
		retained *api.Registration
		err      error
		reason   string
	}{
		{"not retained", false, &api.Registration{ID: 2, Epoch: api.Epoch{Term: 8, ID: 2}}, nil, "registration not retained: master is 8.2"},
		{"refused", false, nil, api.ErrRefused, "registration refused"},
		{"mismatch", false, nil, api.ErrMismatch, "registration refused"},
		{"invalid", false, nil, api.ErrInvalid, "registration refused"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := joined(t)
			m.Campaigned(1, e7)
			m.Tick(1)
			fx := m.RegisterDone(2, e7, tc.accepted, tc.retained, tc.err)
			want(t, tc.name, fx, "registered,refused")
			if fx[0].Accepted || fx[0].Epoch != e7 || !strings.HasPrefix(fx[1].Reason, tc.reason) {
				t.Fatalf("effects %v, want a refusal saying %q", fx, tc.reason)
			}
			if m.Registering() {
				t.Fatal("registering after a refusal")
			}
			if fx := m.Tick(1000); strings.Contains(kinds(fx), "register") {
				t.Fatalf("asks again after a refusal: %v", fx)
			}
		})
	}
}

// Without a session a registration waits for one, with a doubling pause
// capped at a third of the TTL; an unreachable naming node is retried the
// same way, and is not "registering".
func TestRegistrationWaitsAndRetries(t *testing.T) {
	m := New(cfg)
	m.Campaigned(0, e7)
	fx := m.Tick(0)
	want(t, "no session", fx, "join")
	if m.Registering() {
		t.Fatal("registering without a session")
	}
	m.Joined(1, Session{ID: 9, TTL: 30000}, nil)
	want(t, "session open", m.Tick(2), "register")
	m.RegisterDone(3, e7, false, nil, errors.New("timeout"))
	if m.Registering() {
		t.Fatal("a failing registration counts as registering")
	}
	next := m.Deadline()
	for i := 0; i < 10; i++ {
		want(t, "retry", m.Tick(next), "register")
		m.RegisterDone(next, e7, false, nil, errors.New("timeout"))
		gap := m.Deadline() - next
		if gap > cfg.RegistrationTTL/3 {
			t.Fatalf("retry %d after %d ticks, above a third of the TTL", i, gap)
		}
		next = m.Deadline()
	}
}

// Hostile answers: a huge TTL from the naming node does not wrap the
// renewal time round to the past.
func TestHugeTTL(t *testing.T) {
	m := New(cfg)
	m.Tick(10)
	m.Joined(10, Session{ID: 9, TTL: ^uint64(0)}, nil)
	if d := m.Deadline(); d < 10 {
		t.Fatalf("renewal at %d, before now", d)
	}
	want(t, "no renewal storm", m.Tick(11), "")
}

// SeeMaster's rule: the core learns the registered master's epoch only
// when its term is above every term the agent knows.
func TestNewTerm(t *testing.T) {
	reg := func(term uint64) *api.Registration {
		return &api.Registration{ID: 2, Epoch: api.Epoch{Term: term, ID: 2}}
	}
	for _, tc := range []struct {
		name    string
		master  *api.Registration
		maxTerm uint64
		want    bool
	}{
		{"no master", nil, 0, false},
		{"a newer term", reg(8), 7, true},
		{"far above", reg(1 << 30), 3, true},
		{"the known term", reg(7), 7, false},
		{"an older term", reg(6), 7, false},
		{"a new agent's first master", reg(1), 0, true},
		{"the last term", reg(^uint64(0)), 3, false},
		{"at the end of the term space", reg(api.MaxLearnedTerm + 1), 3, false},
		{"just below the end", reg(api.MaxLearnedTerm), 3, true},
	} {
		e, ok := NewTerm(tc.master, tc.maxTerm)
		if ok != tc.want || (ok && e != tc.master.Epoch) || (!ok && e != (api.Epoch{})) {
			t.Errorf("%s: NewTerm = %s, %t; want %t", tc.name, e, ok, tc.want)
		}
	}
}
