package recover

import (
	"fmt"
	"strings"

	"github.com/mastership/mastership/agent/core"
	"github.com/mastership/mastership/agent/wire"
	"github.com/mastership/mastership/naming/api"
)

// MemberState is what the convergence check reads of one running agent,
// from its core (StateOfStatus) or its API (StateOfInfo).
type MemberState struct {
	ID     uint64
	Role   api.Role
	Epoch  api.Epoch
	Master uint64
	// Applied and Digest are the state machine's applied index and digest;
	// Last is the last index of the log.
	Applied, Last uint64
	Digest        string
	// Transfer is the back-up a master hands over to (0: none).
	Transfer uint64
	// Priority, Unhealthy (its service fails its checks), Pinned (a
	// master in office through a switchover) and HandoverHeld (it asks
	// for no handover now) are what the handover rule reads
	// (core.HandoverDue).
	Priority     int
	Unhealthy    bool
	Pinned       bool
	HandoverHeld bool
}

// StateOfStatus reads a core's status.
func StateOfStatus(st core.Status) MemberState {
	return MemberState{ID: st.ID, Role: st.Role, Epoch: st.Epoch, Master: st.Master, Applied: st.Digest.Index,
		Last: st.Last, Digest: st.Digest.String(), Transfer: st.Transfer,
		Priority: st.Priority, Unhealthy: st.Unhealthy, Pinned: st.Pinned, HandoverHeld: st.HandoverHeld}
}

// StateOfInfo reads an agent's /v1/info.
func StateOfInfo(in wire.Info) MemberState {
	role, _ := api.ParseRole(in.Role)
	return MemberState{ID: in.ID, Role: role, Epoch: in.Epoch, Master: in.Master,
		Applied: in.Applied, Last: in.Last, Digest: in.Digest, Transfer: in.Transfer,
		Priority: in.Priority, Unhealthy: in.Service != nil && !in.Service.Healthy, Pinned: in.Pinned, HandoverHeld: in.HandoverHeld}
}

// CheckFollowed checks the roles of a settled group: one master, every
// other agent its back-up at its epoch, and no planned handover pending:
// neither a master handing over nor a back-up that the handover rule
// (core.HandoverDue) has ask for mastership: either is about to change
// the master. It returns the master.
func CheckFollowed(states []MemberState) (uint64, error) {
	var masters []uint64
	var m MemberState
	for _, s := range states {
		if s.Role == api.RoleMaster {
			masters = append(masters, s.ID)
			m = s
		}
	}
	if len(masters) != 1 {
		return 0, fmt.Errorf("%d masters %v, want 1", len(masters), masters)
	}
	if m.Transfer != 0 {
		return 0, fmt.Errorf("master %d is handing mastership over to %d", m.ID, m.Transfer)
	}
	var bad []string
	for _, s := range states {
		if s.ID != m.ID && (s.Role != api.RoleBackup || s.Master != m.ID || s.Epoch != m.Epoch) {
			bad = append(bad, fmt.Sprintf("%d is %s of %d at %s", s.ID, s.Role, s.Master, s.Epoch))
		}
	}
	if len(bad) > 0 {
		return 0, fmt.Errorf("master %d at %s: %s", m.ID, m.Epoch, strings.Join(bad, "; "))
	}
	if b, ok := dueHandover(states, m); ok {
		return 0, fmt.Errorf("back-up %d of priority %d outranks master %d of priority %d: a planned handover is due",
			b.ID, b.Priority, m.ID, m.Priority)
	}
	return m.ID, nil
}

// dueHandover finds the back-up of m that asks it for mastership at its
// next check, by the agents' own rule (core.HandoverDue) on the group's
// states: every member given is alive and sees the others so. A back-up
// that follows m but has not caught up yet counts as one that has: its
// self-monitor asks at each consistent check, so it asks once it has, and
// the master is about to change all the same.
func dueHandover(states []MemberState, m MemberState) (MemberState, bool) {
	peers := make([]core.Peer, 0, len(states))
	for _, s := range states {
		peers = append(peers, core.Peer{ID: s.ID, Priority: s.Priority, Alive: true, Unhealthy: s.Unhealthy})
	}
	master := core.Peer{ID: m.ID, Priority: m.Priority, Alive: true, Unhealthy: m.Unhealthy}
	for _, s := range states {
		if s.ID == m.ID || s.Role != api.RoleBackup || s.Master != m.ID {
			continue
		}
		v := core.HandoverView{Self: core.Peer{ID: s.ID, Priority: s.Priority, Alive: true, Unhealthy: s.Unhealthy},
			Master: master, CaughtUp: true, MasterPinned: m.Pinned, Held: s.HandoverHeld, Peers: peers}
		if core.HandoverDue(v) {
			return s, true
		}
	}
	return MemberState{}, false
}

// CheckConverged checks invariant 1 on the running agents: the roles of
// CheckFollowed with no handover pending or due, the master the one the
// naming node registers, having applied its whole log, and every digest
// equal to the master's. One checker for the simulator, the in-process
// cluster, the demo and the end-to-end tests.
func CheckConverged(states []MemberState, registered uint64) error {
	master, err := CheckFollowed(states)
	if err != nil {
		return err
	}
	if registered != master {
		return fmt.Errorf("master %d, but the naming node registers %d", master, registered)
	}
	var m MemberState
	for _, s := range states {
		if s.ID == master {
			m = s
		}
	}
	if m.Applied < m.Last {
		// A master restarted from storage applies its log only as its new
		// epoch commits: just after its election every state synced from
		// it can be equal and yet hold none of its log.
		return fmt.Errorf("master %d at %s applied %d of its log's %d entries", m.ID, m.Epoch, m.Applied, m.Last)
	}
	var bad []string
	for _, s := range states {
		if s.Digest != m.Digest {
			bad = append(bad, fmt.Sprintf("%d digest %.8s at %d, master %.8s at %d", s.ID, s.Digest, s.Applied, m.Digest, m.Applied))
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("master %d at %s: %s", m.ID, m.Epoch, strings.Join(bad, "; "))
	}
	return nil
}
