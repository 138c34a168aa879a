package sim

import (
	"testing"

	"github.com/mastership/mastership/naming/api"
)

// A master restarted from storage rebuilds its state machine from its
// snapshot alone (none here: applied 0) and applies its log only as its new
// epoch commits. Back-ups that synchronize from it just after its election
// install that empty state and its uncommitted log, so for a moment every
// state machine is equal and empty. That is not convergence: the
// acknowledged writes are in the master's log, not yet in its state, and
// checking invariant 3 then reports them lost (available seeds 55, 199, 228
// and 296 of TestRandomSchedules). Convergence waits for the master to
// apply its log; the writes are then all there.
func TestConvergedWaitsForRestartedMasterToApplyItsLog(t *testing.T) {
	w := newWorld(Config{Seed: 7, Mode: api.ModeAvailable, Agents: 3})
	w.run(150)
	w.clientsOn = false
	for i := 0; i < 200 && !w.clientsIdle(); i++ {
		w.step()
	}
	if len(w.acked) == 0 || len(w.viol) > 0 {
		t.Fatalf("setup: %d writes acknowledged, violations %v", len(w.acked), w.viol)
	}

	// Every agent restarts from storage: state machines empty, logs kept.
	for _, a := range w.agents {
		w.kill(a)
	}
	for _, a := range w.agents {
		w.restart(a)
	}
	// Nothing gets through until one of them took mastership and the
	// naming node registered it; its peers, alive in the view, hold back
	// its commit meanwhile.
	w.dropP = 1
	var m *simAgent
	for i := 0; i < 200 && m == nil; i++ {
		w.step()
		if ms := w.masters(); len(ms) == 1 {
			look, err := w.reg.Lookup(w.at(), api.LookupRequest{Group: group})
			if err == nil && look.Master != nil && look.Master.ID == ms[0] {
				m = w.agent(ms[0])
			}
		}
	}
	if m == nil {
		t.Fatalf("no registered master after the restart:\n%s", w.describe())
	}
	if st := m.node.Status(); st.Applied >= st.Last {
		t.Fatalf("setup: master %d already applied its log (%d of %d)", m.id, st.Applied, st.Last)
	}
	// The back-ups download the master's state, as a recovery does: a
	// snapshot at its applied index 0 and its whole log.
	for _, a := range w.agents {
		if a != m {
			a.node.BeginRecovery(m.id)
			w.ready(a)
			if _, err := w.synchronize(a, m.id); err != nil {
				t.Fatalf("synchronize %d from %d: %v", a.id, m.id, err)
			}
		}
	}
	if err := w.converged(); err == nil {
		t.Fatalf("converged while master %d applied nothing of its log:\n%s", m.id, w.describe())
	}

	// Once messages flow, the master commits and applies its log.
	w.dropP = 0
	var err error
	for i := 0; i < 300; i++ {
		w.step()
		if err = w.converged(); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("not converged: %v\n%s", err, w.describe())
	}
	w.checkAcked()
	if len(w.viol) > 0 {
		t.Fatalf("violations after convergence: %v\n%s", w.viol, w.describe())
	}
}
