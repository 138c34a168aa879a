package core

import "testing"

// HandoverDue, the rule that both the agents (HandoverCandidate) and the
// convergence checker (recover.CheckConverged) apply, case by case: each
// condition alone turns a due handover off.
func TestHandoverDue(t *testing.T) {
	peer := func(id uint64, prio int) Peer { return Peer{ID: id, Priority: prio, Alive: true} }
	// Back-up 2 (priority 5) of master 1 (priority 3); 3 (priority 4)
	// ranks below 2.
	due := func() HandoverView {
		return HandoverView{Self: peer(2, 5), Master: peer(1, 3), CaughtUp: true,
			Peers: []Peer{peer(1, 3), peer(3, 4)}}
	}
	if !HandoverDue(due()) {
		t.Fatal("the best-ranked, caught-up back-up above its master's priority is not due to ask")
	}
	for name, change := range map[string]func(v *HandoverView){
		"no master":             func(v *HandoverView) { v.Master = Peer{} },
		"master dead":           func(v *HandoverView) { v.Master.Alive = false },
		"not caught up":         func(v *HandoverView) { v.CaughtUp = false },
		"master pinned":         func(v *HandoverView) { v.MasterPinned = true },
		"held":                  func(v *HandoverView) { v.Held = true },
		"its service unhealthy": func(v *HandoverView) { v.Self.Unhealthy = true },
		"equal priorities":      func(v *HandoverView) { v.Self.Priority = 3 },
		"below the master":      func(v *HandoverView) { v.Self.Priority = 2; v.Peers[1].Priority = 1 },
		"another ranks first":   func(v *HandoverView) { v.Peers[1].Priority = 6 },
		"a tie to a lower ID":   func(v *HandoverView) { v.Peers = append(v.Peers, peer(0, 5)) },
	} {
		v := due()
		change(&v)
		if HandoverDue(v) {
			t.Errorf("%s: due", name)
		}
	}
	// Who ranks above it but is dead, unhealthy or the master itself does
	// not stop it; nor does a tie it wins by its lower ID.
	for name, change := range map[string]func(v *HandoverView){
		"a better one dead":      func(v *HandoverView) { v.Peers[1] = Peer{ID: 3, Priority: 9} },
		"a better one unhealthy": func(v *HandoverView) { v.Peers[1] = Peer{ID: 3, Priority: 9, Alive: true, Unhealthy: true} },
		"a tie to a higher ID":   func(v *HandoverView) { v.Peers[1].Priority = 5 },
		"itself among the peers": func(v *HandoverView) { v.Peers = append(v.Peers, v.Self) },
		"the master unhealthy":   func(v *HandoverView) { v.Master.Unhealthy = true; v.Peers[0].Unhealthy = true },
	} {
		v := due()
		change(&v)
		if !HandoverDue(v) {
			t.Errorf("%s: not due", name)
		}
	}
}
