package recover

import (
	"errors"
	"fmt"

	"github.com/mastership/mastership/agent/core"
	"github.com/mastership/mastership/naming/api"
)

// Decision is what the detector (figure 8) concludes.
type Decision uint8

// Decisions.
const (
	// Consistent: nothing to do; the timer is reset (act 855).
	Consistent Decision = iota + 1
	// Reassert: this master is the retained one but has seen a newer
	// epoch; it takes an epoch above every one seen and registers it, so
	// that agents that followed a competing master accept it.
	Reassert
	// Recover: this agent is part of an inconsistent mastership (exception
	// handling E): run the recovery of figure 10 towards the retained master.
	Recover
	// Wait: no decision can be taken now (naming node unreachable, an
	// election or a recovery in progress); try again on the next trigger.
	Wait
	// Release: a quarantined agent whose retained master is gone from the
	// naming node becomes a back-up again, so the group can elect.
	Release
)

var decisionNames = [...]string{"", "consistent", "reassert", "recover", "wait", "release"}

func (d Decision) String() string {
	if int(d) < len(decisionNames) && d != 0 {
		return decisionNames[d]
	}
	return fmt.Sprintf("decision(%d)", d)
}

// Input is what the detector looks at: this agent's state and the naming
// node's answer.
type Input struct {
	Self     uint64
	Role     api.Role
	Master   uint64 // the master followed (Self when master)
	Epoch    api.Epoch
	MaxTerm  uint64    // the newest term seen anywhere
	MaxEpoch api.Epoch // the newest epoch seen anywhere
	// Retained is the naming node's registered master; nil when none is.
	Retained *api.Registration
	// NamingErr is set when the naming node could not be asked.
	NamingErr error
	// Strict is set for a strict group.
	Strict bool
	// Registering is set while this master's own registration has not been
	// answered yet.
	Registering bool
	// RetainedAlive tells whether the retained master is alive in this
	// agent's gossip view. A registration outlives its holder by up to its
	// TTL; nobody recovers towards a master it cannot reach.
	RetainedAlive bool
	// RetainedAPI is the API address the retained master announces in
	// this agent's gossip view ("" when gossip does not know it): a
	// recovery downloads only from a member of its own group, at that
	// address.
	RetainedAPI string
	// Recovering is the retained master a recovery in flight aligns this
	// agent to (0: none). A newer decision of the naming node abandons it.
	// Machine fills it in.
	Recovering uint64
	// Paused: the group is in maintenance (mastership pause): the
	// detector still decides, and Machine reports, but acts on nothing.
	Paused bool
}

// Verdict is the detector's decision with the reason, for logs and status.
type Verdict struct {
	Decision Decision
	Reason   string
}

// Detect is the determiner of figure 8. It is pure.
//
//	master, retained            -> consistent (act 860 yes, 865)
//	master, not retained        -> recover    (act 860 no)
//	back-up of the retained one -> consistent (act 850 yes)
//	back-up of another master   -> recover    (act 850 no)
//
// Beyond the patent: a retained master that has seen a newer epoch
// reasserts; a quarantined agent retries recovery once the retained master
// is reachable, and is released when no master is registered; an
// unreachable naming node, a registration in flight, or an election or
// recovery in progress waits. A recovery towards a master this agent cannot
// reach fails and quarantines it: a cut-off side stops serving.
func Detect(in Input) Verdict {
	if in.NamingErr != nil {
		return Verdict{Wait, "naming node unreachable: " + in.NamingErr.Error()}
	}
	r := in.Retained
	if in.Recovering != 0 {
		// The self-monitor never waits on its own recovery: a newer
		// decision of the naming node abandons it and aligns again.
		if r != nil && r.ID != in.Recovering && r.ID != in.Self {
			return Verdict{Recover, fmt.Sprintf("recovering towards %d, but the naming node now retains %d", in.Recovering, r.ID)}
		}
		return Verdict{Wait, fmt.Sprintf("recovery towards %d in progress", in.Recovering)}
	}
	switch in.Role {
	case api.RoleCandidate:
		return Verdict{Wait, "election in progress"}
	case api.RoleSyncing:
		if r != nil && in.Master == r.ID {
			return Verdict{Wait, fmt.Sprintf("synchronizing with the retained master %d", r.ID)}
		}
	}
	if r == nil {
		if in.Role == api.RoleQuarantined {
			return Verdict{Release, "quarantined, and no master is registered any more"}
		}
		if in.Role == api.RoleMaster {
			return Verdict{Consistent, "no master registered yet; this master is registering"}
		}
		return Verdict{Wait, "no master registered"}
	}
	switch in.Role {
	case api.RoleMaster:
		if r.ID != in.Self {
			if in.Registering {
				return Verdict{Wait, fmt.Sprintf("registering; the naming node still names %d", r.ID)}
			}
			return Verdict{Recover, fmt.Sprintf("acting as master, but the naming node retained %d", r.ID)}
		}
		if in.Epoch.Less(r.Epoch) {
			// The naming node holds a newer epoch in our name (a repair by
			// hand): move above it.
			return Verdict{Reassert, fmt.Sprintf("master at epoch %s, but registered at %s", in.Epoch, r.Epoch)}
		}
		if !in.Strict && (in.MaxTerm > in.Epoch.Term || in.Epoch.Less(in.MaxEpoch)) {
			// Agents that followed a newer epoch (even of the same term,
			// from a higher ID) would refuse us: move above all of them.
			// A strict master never takes a term without votes: a newer
			// master deposes it when they meet, and a failed candidate's
			// term changes nothing.
			return Verdict{Reassert, fmt.Sprintf("retained at epoch %s, but %s (term %d) was seen", in.Epoch, in.MaxEpoch, in.MaxTerm)}
		}
		return Verdict{Consistent, "master and retained"}
	case api.RoleQuarantined:
		if r.ID == in.Self {
			// Our own registration outlived our mastership: let the
			// group elect; nothing to align to.
			return Verdict{Wait, "quarantined, and the naming node still names us"}
		}
		if !in.RetainedAlive {
			return Verdict{Wait, fmt.Sprintf("quarantined; the retained %d is unreachable", r.ID)}
		}
		return Verdict{Recover, fmt.Sprintf("quarantined; retrying recovery towards %d", r.ID)}
	case api.RoleRecovering:
		// Aligned by a recovery that is no longer running (the runtime
		// abandoned it): align again.
		if r.ID == in.Self {
			return Verdict{Wait, "recovering, and the naming node names us"}
		}
		if !in.RetainedAlive {
			return Verdict{Wait, fmt.Sprintf("recovering; the retained %d is unreachable", r.ID)}
		}
		return Verdict{Recover, fmt.Sprintf("recovery towards %d not running; aligning again", r.ID)}
	default:
		if r.ID == in.Self {
			return Verdict{Wait, "the naming node names us, but we are not master"}
		}
		if in.Master == r.ID {
			return Verdict{Consistent, fmt.Sprintf("back-up of the retained master %d", r.ID)}
		}
		if in.Strict && in.Master != 0 && r.Epoch.Less(in.Epoch) {
			// A strict master newer than the registration was elected by a
			// majority and is registering: it supersedes the old one.
			return Verdict{Wait, fmt.Sprintf("following %d at %s, newer than the registered %s", in.Master, in.Epoch, r.Epoch)}
		}
		if in.Master == 0 {
			return Verdict{Recover, fmt.Sprintf("following no master while %d is retained", r.ID)}
		}
		return Verdict{Recover, fmt.Sprintf("following %d, but the naming node retained %d", in.Master, r.ID)}
	}
}

// NewInput starts the detector's input from an agent's core status, as the
// monitor and the simulator both build it.
func NewInput(self uint64, st core.Status, strict, registering bool) Input {
	return Input{Self: self, Role: st.Role, Master: st.Master, Epoch: st.Epoch, MaxTerm: st.MaxTerm, MaxEpoch: st.MaxEpoch,
		Strict: strict, Registering: registering}
}

// Retain adds the naming node's answer: the retained master (nil: none; a
// group the node does not know yet is none too) or the error of the
// lookup, and what this agent's gossip view says of that master (alive,
// and the API address it announces, "" when unknown).
func (in *Input) Retain(r *api.Registration, err error, alive func(id uint64) bool, apiOf func(id uint64) string) {
	if err != nil && !errors.Is(err, api.ErrNotFound) {
		in.NamingErr = err
		return
	}
	in.Retained = r
	if r != nil {
		in.RetainedAlive = r.ID == in.Self || alive(r.ID)
		in.RetainedAPI = apiOf(r.ID)
	}
}
