package core

// Serving: a strict master serves reads only while its registration at the
// naming node and its lease over a majority hold, and takes writes only
// while its registration holds and a majority answered it within an
// election timeout (quorumHeard).

import (
	"slices"

	"github.com/mastership/mastership/naming/api"
)

// Registered tells a master the outcome of its registration: accepted, the
// registration holds until tick until (a strict master serves only then).
func (n *Node) Registered(epoch api.Epoch, accepted bool, until uint64) {
	if n.role != api.RoleMaster || epoch != n.epoch {
		return
	}
	if accepted {
		n.registeredUntil = until
	} else {
		n.registeredUntil = 0
	}
}

func (n *Node) serving() bool {
	if n.role != api.RoleMaster || n.gated || n.timeoutSent {
		return false
	}
	return n.rules.serving(n)
}

// leaseHolds reports whether a majority heard from us within the election
// timeout: no one can have been elected meanwhile, since back-ups refuse
// votes while they hear their master.
func (n *Node) leaseHolds() bool {
	acks := append(n.scratch[:0], n.now)
	for id, pr := range n.progress {
		if n.peers[id] != nil {
			acks = append(acks, pr.acked)
		}
	}
	n.scratch = acks
	acked, ok := quorumValue(acks, n.quorum())
	if !ok {
		return false
	}
	// Voters refuse for half the election timeout after hearing us; a
	// lease of two fifths leaves a tenth for drift between tick clocks.
	lease := uint64(n.cfg.ElectionTicks * 2 / 5)
	return acked+lease > n.now
}

// quorumHeard is the latest tick by which a quorum (us included) was
// heard from, and false when the group knows fewer members than a quorum.
func (n *Node) quorumHeard() (uint64, bool) {
	heard := append(n.scratch[:0], n.now)
	for id, pr := range n.progress {
		if n.peers[id] != nil {
			heard = append(heard, pr.last)
		}
	}
	n.scratch = heard
	return quorumValue(heard, n.quorum())
}

// quorumValue is the q-th largest of vals: the value that q of them reach
// or pass. It reorders vals, and reports false when there are fewer than q.
func quorumValue(vals []uint64, q int) (uint64, bool) {
	if q < 1 || len(vals) < q {
		return 0, false
	}
	slices.Sort(vals)
	return vals[len(vals)-q], true
}
