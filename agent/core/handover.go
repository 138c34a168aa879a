package core

// Planned handover (figure 10, acts 1060 to 1080) and reassertion.

import (
	"github.com/mastership/mastership/naming/api"
)

// Reassert moves a master that the naming node retained to an epoch above
// every epoch it has seen, so that agents that followed a competing master
// with a newer epoch accept it (epochs never go backwards for anyone).
// An available master takes the new epoch at once. A strict master may
// hold a new term only with a majority's votes: it steps down and
// campaigns at once, as a handover to itself, so voters grant although
// they still hear it; if it loses, the group elects as after any failure.
func (n *Node) Reassert() {
	if n.role != api.RoleMaster {
		return
	}
	n.rules.reassert(n)
}

// HandoverCandidate reports whether this back-up should take mastership
// over from its master (figure 10, act 1060): it is the best-ranked agent
// alive in its view (priority, then lowest ID, so ties resolve to one
// agent), its priority is above its live master's, and it has caught up
// (the master stops taking writes while it hands over, so a back-up that
// still lags would only pause the group). Equal priorities never hand
// over: the master already has the highest priority.
func (n *Node) HandoverCandidate() bool {
	if n.role != api.RoleBackup || n.master == 0 || !n.alive(n.master) || !n.caughtUp {
		return false
	}
	if best, _ := n.bestLive(n.master); best != n.cfg.ID {
		return false
	}
	return n.cfg.Priority > n.peers[n.master].Priority
}

// RequestHandover asks our master to hand mastership over to us: figure 10's
// act 1080, for the agent HandoverCandidate names. It reports whether it
// asked.
func (n *Node) RequestHandover() bool {
	if !n.HandoverCandidate() {
		return false
	}
	n.send(Message{Type: MsgTransferReq, To: n.master})
	return true
}

// handleTransferReq starts a planned handover: the master stops taking
// writes, and once the back-up holds every entry, tells it to campaign.
// It steps down only when the new master's epoch reaches it. The master
// hands over only to the best-ranked live agent of its own view, and only
// if that agent's priority is above its own; a handover under way is not
// redirected to another back-up before it times out.
func (n *Node) handleTransferReq(m Message) {
	if n.role != api.RoleMaster || n.peers[m.From] == nil || !n.alive(m.From) {
		return
	}
	if n.transferTo != 0 && n.transferTo != m.From {
		return
	}
	p := n.peers[m.From]
	if best, _ := n.bestLive(0); best != m.From || p.Priority <= n.cfg.Priority {
		n.logger.Debug("handover request refused", "from", m.From, "priority", p.Priority, "best", best)
		return
	}
	if n.transferTo == 0 {
		n.logger.Info("handing mastership over", "to", m.From)
		n.transferDeadline = n.now + uint64(n.cfg.ElectionTicks)
	}
	n.transferTo = m.From
	n.maybeTimeoutNow()
	n.sendAppend(m.From)
}

func (n *Node) maybeTimeoutNow() {
	if n.transferTo == 0 {
		return
	}
	if pr := n.progress[n.transferTo]; pr != nil && pr.match == n.log.LastIndex() && n.commit == n.log.LastIndex() {
		n.send(Message{Type: MsgTimeoutNow, To: n.transferTo})
	}
}
