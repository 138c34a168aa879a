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
}

// StateOfStatus reads a core's status.
func StateOfStatus(st core.Status) MemberState {
	return MemberState{ID: st.ID, Role: st.Role, Epoch: st.Epoch, Master: st.Master, Applied: st.Digest.Index,
		Last: st.Last, Digest: st.Digest.String(), Transfer: st.Transfer}
}

// StateOfInfo reads an agent's /v1/info.
func StateOfInfo(in wire.Info) MemberState {
	role, _ := api.ParseRole(in.Role)
	return MemberState{ID: in.ID, Role: role, Epoch: api.Epoch{Term: in.Epoch, ID: in.EpochID}, Master: in.Master,
		Applied: in.Applied, Last: in.Last, Digest: in.Digest, Transfer: in.Transfer}
}

// CheckFollowed checks the roles of a settled group: one master, every
// other agent its back-up at its epoch, and no planned handover pending
// (a master handing over is about to change). It returns the master.
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
	return m.ID, nil
}

// CheckConverged checks invariant 1 on the running agents: the roles of
// CheckFollowed, the master the one the naming node registers, having
// applied its whole log, and every digest equal to the master's. One
// checker for the simulator, the in-process cluster, the demo and the
// end-to-end tests.
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
