package recover

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/mastership/mastership/agent"
	"github.com/mastership/mastership/agent/rlog"
	"github.com/mastership/mastership/naming/api"
)

func kinds(fx []Effect) string {
	var s []string
	for _, e := range fx {
		s = append(s, e.Kind.String())
	}
	return strings.Join(s, ",")
}

func wantKinds(t *testing.T, what string, fx []Effect, want string) {
	t.Helper()
	if got := kinds(fx); got != want {
		t.Fatalf("%s: effects %q, want %q (%v)", what, got, want, fx)
	}
}

var (
	reg1 = &api.Registration{ID: 1, Addr: "a1", Epoch: api.Epoch{Term: 4, ID: 1}}
	reg2 = &api.Registration{ID: 2, Addr: "a2", Epoch: api.Epoch{Term: 5, ID: 2}}
)

// a quarantined agent 3 whose naming node retains r, reachable at its
// gossip address.
func quarantined(r *api.Registration) Input {
	return Input{Self: 3, Role: api.RoleQuarantined, Epoch: api.Epoch{Term: 3, ID: 3}, Retained: r, RetainedAlive: true,
		RetainedAPI: r.Addr}
}

var rules = Rules{CheckTicks: 100, RecoveryTicks: 1000, OlderEpochTicks: 50, RetryTicks: 5}

// The timer fires on boundaries of its period and is reset after every
// check (figure 5, acts 835 and 855); an event overrides it (figure 6).
func TestMachineTimer(t *testing.T) {
	m := NewMachine(rules, 1234)
	if d := m.Deadline(); d != 1300 {
		t.Fatalf("first expiry %d, want the boundary 1300", d)
	}
	wantKinds(t, "before the boundary", m.Tick(1299), "")
	fx := m.Tick(1300)
	wantKinds(t, "at the boundary", fx, "lookup")
	if fx[0].Trigger != "timer" {
		t.Fatalf("trigger %q", fx[0].Trigger)
	}
	wantKinds(t, "while the lookup is out", m.Tick(1500), "")
	m.Looked(1342, Input{Self: 3, Role: api.RoleBackup, Master: 1, Retained: reg1})
	if d := m.Deadline(); d != 1400 {
		t.Fatalf("after a check at 1342 the timer expires at %d, want 1400", d)
	}
	m.Event("naming-conflict-resolved", "retained 1")
	if d := m.Deadline(); d != 0 {
		t.Fatalf("with an event pending the deadline is %d, want 0", d)
	}
	fx = m.Tick(1350)
	wantKinds(t, "an event", fx, "lookup")
	if fx[0].Trigger != "naming-conflict-resolved: retained 1" {
		t.Fatalf("trigger %q", fx[0].Trigger)
	}
}

// Events arriving while a check runs coalesce into one more check, however
// many arrive; none is lost from the count.
func TestMachineEventsCoalesce(t *testing.T) {
	m := NewMachine(rules, 0)
	wantKinds(t, "first", m.Tick(100), "lookup")
	for i := 0; i < 40; i++ {
		m.Event("competing-claim", fmt.Sprint(i))
	}
	wantKinds(t, "while looking", m.Tick(101), "")
	m.Looked(102, Input{Self: 3, Role: api.RoleBackup, Master: 1, Retained: reg1})
	fx := m.Tick(103)
	wantKinds(t, "after the check", fx, "lookup")
	if fx[0].Trigger != "competing-claim: 0 (+39 more)" {
		t.Fatalf("trigger %q", fx[0].Trigger)
	}
	m.Looked(104, Input{Self: 3, Role: api.RoleBackup, Master: 1, Retained: reg1})
	wantKinds(t, "nothing left", m.Tick(105), "")

	off := NewMachine(Rules{CheckTicks: 100, EventsOff: true}, 0)
	off.Event("competing-claim", "x")
	wantKinds(t, "events off", off.Tick(1), "")
}

// Each decision of the detector becomes its effects.
func TestMachineDecisions(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   Input
		want string
	}{
		{"back-up of the retained master asks for a handover", Input{Self: 3, Role: api.RoleBackup, Master: 1, Retained: reg1}, "handover"},
		{"retained master", Input{Self: 1, Role: api.RoleMaster, Master: 1, Epoch: reg1.Epoch, MaxEpoch: reg1.Epoch, MaxTerm: 4, Retained: reg1}, ""},
		{"reassert", Input{Self: 1, Role: api.RoleMaster, Master: 1, Epoch: reg1.Epoch, MaxTerm: 9, Retained: reg1}, "reassert"},
		{"release", Input{Self: 3, Role: api.RoleQuarantined}, "release"},
		{"recover", quarantined(reg1), "align"},
		{"naming node unreachable: a back-up still asks for a handover", Input{Self: 3, Role: api.RoleBackup, Master: 1, NamingErr: errors.New("down")}, "handover"},
		{"no master registered: a back-up still asks for a handover", Input{Self: 3, Role: api.RoleBackup, Master: 1}, "handover"},
		{"naming node unreachable: a candidate waits", Input{Self: 3, Role: api.RoleCandidate, NamingErr: errors.New("down")}, ""},
		{"naming node unreachable: a master waits", Input{Self: 1, Role: api.RoleMaster, Master: 1, NamingErr: errors.New("down")}, ""},
		{"a back-up syncing with the retained master waits", Input{Self: 3, Role: api.RoleSyncing, Master: 1, Retained: reg1}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := NewMachine(rules, 0)
			m.Tick(100)
			_, fx := m.Looked(100, tc.in)
			wantKinds(t, tc.name, fx, tc.want)
			if tc.want == "reassert" && fx[0].Epoch != reg1.Epoch {
				t.Fatalf("reassert above %s, want the registered %s", fx[0].Epoch, reg1.Epoch)
			}
		})
	}
}

// A paused group (maintenance): the detector still decides, and the
// verdict says so, but no decision becomes an effect.
func TestMachinePausedActsOnNothing(t *testing.T) {
	for _, in := range []Input{
		{Self: 3, Role: api.RoleBackup, Master: 1, Retained: reg1},
		{Self: 1, Role: api.RoleMaster, Master: 1, Epoch: reg1.Epoch, MaxTerm: 9, Retained: reg1},
		{Self: 3, Role: api.RoleQuarantined},
		quarantined(reg1),
	} {
		in.Paused = true
		m := NewMachine(rules, 0)
		m.Tick(100)
		v, fx := m.Looked(100, in)
		if len(fx) != 0 || m.Recovering() != 0 {
			t.Errorf("paused %+v: effects %v", in, fx)
		}
		if v.Decision != Consistent && v.Decision != Wait && !strings.Contains(v.Reason, "paused") {
			t.Errorf("paused %+v: verdict %+v does not say so", in, v)
		}
	}
}

// recoverTo runs a check that starts a recovery towards in.Retained and
// returns the job.
func recoverTo(t *testing.T, m *Machine, now uint64, in Input) uint64 {
	t.Helper()
	m.Event("test", "")
	wantKinds(t, "check", m.Tick(now), "lookup")
	_, fx := m.Looked(now, in)
	if n := len(fx); n == 0 || fx[n-1].Kind != DoAlign || fx[n-1].Target.ID != in.Retained.ID {
		t.Fatalf("check: effects %v, want an alignment to %d", fx, in.Retained.ID)
	}
	return fx[len(fx)-1].Job
}

// Figure 10 step by step, with the master at an older epoch for a while.
func TestMachineRecovery(t *testing.T) {
	m := NewMachine(rules, 0)
	job := recoverTo(t, m, 10, quarantined(reg1))
	wantKinds(t, "aligned", m.Aligned(11, job, nil), "keep-divergence")
	wantKinds(t, "diverged", m.Diverged(12, job, 7, 2, nil), "fetch-state")
	wantKinds(t, "older epoch", m.Fetched(13, job, fmt.Errorf("x: %w", agent.ErrOlderEpoch)), "")
	if d := m.Deadline(); d != 18 {
		t.Fatalf("retry at %d, want 18", d)
	}
	wantKinds(t, "before the retry", m.Tick(17), "")
	wantKinds(t, "the retry", m.Tick(18), "fetch-state")
	// A check meanwhile waits for the recovery towards the same master.
	m.Event("test", "")
	m.Tick(19)
	v, fx := m.Looked(19, Input{Self: 3, Role: api.RoleRecovering, Master: 1, Retained: reg1, RetainedAlive: true, RetainedAPI: "a1"})
	if v.Decision != Wait || len(fx) != 0 {
		t.Fatalf("check during the recovery: %s %v, want a wait", v.Decision, fx)
	}
	wantKinds(t, "an install answer before the download's", m.Installed(20, job, rlog.Digest{Index: 9}, nil), "")
	wantKinds(t, "fetched", m.Fetched(20, job, nil), "install")
	wantKinds(t, "installed", m.Installed(20, job, rlog.Digest{Index: 9}, nil), "handover")
	fx = m.HandedOver(21, job, false)
	wantKinds(t, "done", fx, "report")
	if fx[0].Err != nil || fx[0].Steps != "aligned to 1 > fork at 7, 2 divergent kept > state of 1 downloaded and verified > synchronized at 9, digest 000000000000 > back-up of 1" {
		t.Fatalf("report %q err %v", fx[0].Steps, fx[0].Err)
	}
	if m.Recovering() != 0 {
		t.Fatal("still recovering after the report")
	}
	if _, n := m.Counters(); n != 1 {
		t.Fatalf("%d recoveries counted", n)
	}
}

// Every way a recovery fails ends in act 1050, quarantine or terminate.
func TestMachineRecoveryFails(t *testing.T) {
	older := fmt.Errorf("x: %w", agent.ErrOlderEpoch)
	for _, tc := range []struct {
		name   string
		in     Input
		run    func(m *Machine, job uint64) []Effect
		want   string
		reason string
	}{
		{"align fails", quarantined(reg1), func(m *Machine, job uint64) []Effect {
			return m.Aligned(11, job, agent.ErrStopped)
		}, "report,quarantine", "align"},
		{"not in gossip", Input{Self: 3, Role: api.RoleQuarantined, Retained: reg1, RetainedAlive: true}, func(m *Machine, job uint64) []Effect {
			return m.Aligned(11, job, nil)
		}, "report,quarantine", "not a member of the group's gossip view"},
		{"another gossip address", Input{Self: 3, Role: api.RoleQuarantined, Retained: reg1, RetainedAlive: true, RetainedAPI: "elsewhere"}, func(m *Machine, job uint64) []Effect {
			return m.Aligned(11, job, nil)
		}, "report,quarantine", "announces elsewhere"},
		{"fork search fails", quarantined(reg1), func(m *Machine, job uint64) []Effect {
			m.Aligned(11, job, nil)
			return m.Diverged(12, job, 0, 0, errors.New("unreachable"))
		}, "report,quarantine", "keep divergence"},
		{"download does not verify", quarantined(reg1), func(m *Machine, job uint64) []Effect {
			m.Aligned(11, job, nil)
			m.Diverged(12, job, 0, 0, nil)
			return m.Fetched(13, job, fmt.Errorf("x: %w", agent.ErrDigestMismatch))
		}, "report,quarantine", "digest mismatch"},
		{"install fails", quarantined(reg1), func(m *Machine, job uint64) []Effect {
			m.Aligned(11, job, nil)
			m.Diverged(12, job, 0, 0, nil)
			m.Fetched(13, job, nil)
			return m.Installed(14, job, rlog.Digest{}, fmt.Errorf("x: %w", agent.ErrStorage))
		}, "report,quarantine", "install the state of 1"},
		{"older epoch too long", quarantined(reg1), func(m *Machine, job uint64) []Effect {
			m.Aligned(11, job, nil)
			m.Diverged(12, job, 0, 0, nil)
			for now := uint64(13); ; now++ {
				fx := m.Tick(now)
				if len(fx) > 0 && fx[0].Kind == DoFetchState {
					if fx := m.Fetched(now, job, older); len(fx) > 0 {
						return fx
					}
				} else if now == 13 {
					m.Fetched(now, job, older)
				}
			}
		}, "report,quarantine", "older epoch"},
		{"a hung step times out", quarantined(reg1), func(m *Machine, job uint64) []Effect {
			m.Aligned(11, job, nil)
			// The checks go on while the fork search hangs.
			before := 10 + rules.RecoveryTicks - 1
			if fx := m.Tick(before); kinds(fx) != "lookup" {
				return fx
			}
			in := quarantined(reg1)
			in.Role, in.Master = api.RoleRecovering, 1
			if v, fx := m.Looked(before, in); v.Decision != Wait || len(fx) != 0 {
				return fx
			}
			return m.Tick(10 + rules.RecoveryTicks)
		}, "abandon,quarantine", "timed out"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := NewMachine(rules, 0)
			job := recoverTo(t, m, 10, tc.in)
			fx := tc.run(m, job)
			wantKinds(t, tc.name, fx, tc.want)
			if fx[0].Err == nil || !strings.Contains(fx[0].Err.Error(), tc.reason) {
				t.Fatalf("error %v, want it to say %q", fx[0].Err, tc.reason)
			}
			if m.Recovering() != 0 {
				t.Fatal("still recovering after the failure")
			}
			// The failed recovery's late answers change nothing.
			wantKinds(t, "late answer", m.Diverged(20, job, 0, 0, nil), "")
			wantKinds(t, "late answer", m.Fetched(20, job, nil), "")
			wantKinds(t, "late answer", m.Installed(20, job, rlog.Digest{}, nil), "")

			term := NewMachine(Rules{CheckTicks: 100, RecoveryTicks: 1000, OlderEpochTicks: 50, RetryTicks: 5, Terminate: true}, 0)
			job = recoverTo(t, term, 10, tc.in)
			fx = tc.run(term, job)
			if k := fx[len(fx)-1].Kind; k != DoTerminate {
				t.Fatalf("with on-failure=terminate the last effect is %s", k)
			}
		})
	}
}

// A check that finds the naming node retaining another master abandons the
// recovery in flight and aligns to the new one; the old recovery's answers
// are ignored.
func TestMachineAbandonsForNewerDecision(t *testing.T) {
	m := NewMachine(rules, 0)
	old := recoverTo(t, m, 10, quarantined(reg1))
	m.Aligned(11, old, nil)
	m.Event("naming-master-superseded", "retained 2")
	m.Tick(12)
	in := quarantined(reg2)
	in.Role, in.Master = api.RoleRecovering, 1
	_, fx := m.Looked(12, in)
	wantKinds(t, "superseded", fx, "abandon,align")
	if fx[0].Job != old || !strings.Contains(fx[0].Err.Error(), "retains 2") || fx[1].Target.ID != 2 || fx[1].Job == old {
		t.Fatalf("effects %v", fx)
	}
	wantKinds(t, "the old fork search answers", m.Diverged(13, old, 1, 1, nil), "")
	wantKinds(t, "the new one aligns", m.Aligned(13, fx[1].Job, nil), "keep-divergence")
	if m.Recovering() != 2 {
		t.Fatalf("recovering towards %d", m.Recovering())
	}
}

// A recovery of the agent that ranks first ends with its handover request.
func TestMachineRecoveryHandover(t *testing.T) {
	m := NewMachine(rules, 0)
	job := recoverTo(t, m, 10, quarantined(reg1))
	m.Aligned(11, job, nil)
	m.Diverged(12, job, 0, 0, nil)
	m.Fetched(13, job, nil)
	m.Installed(13, job, rlog.Digest{}, nil)
	fx := m.HandedOver(14, job, true)
	if !strings.HasSuffix(fx[0].Steps, "highest priority: handover from 1 requested") {
		t.Fatalf("steps %q", fx[0].Steps)
	}
}
