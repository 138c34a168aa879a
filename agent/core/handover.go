package core

// Planned handover (figure 10, acts 1060 to 1080) and reassertion.

import (
	"errors"
	"fmt"
	"sort"
	"strings"

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
// over from its master (figure 10, act 1060): HandoverDue on the core's
// own view.
//
// A master put in place by an operator's switchover (pinned) is asked by
// nobody: the operator's choice holds until the next election.
func (n *Node) HandoverCandidate() bool {
	if n.role != api.RoleBackup || n.master == 0 || n.peers[n.master] == nil {
		return false
	}
	v := HandoverView{Self: Peer{ID: n.cfg.ID, Priority: n.cfg.Priority, Alive: true, Unhealthy: n.unhealthy},
		Master: *n.peers[n.master], CaughtUp: n.caughtUp, MasterPinned: n.masterPinned, Held: n.handoverHeld(),
		Peers: make([]Peer, 0, len(n.peers))}
	for _, p := range n.peers {
		v.Peers = append(v.Peers, *p)
	}
	return HandoverDue(v)
}

// handoverHeld tells whether this agent asks for no handover now,
// whatever its rank: a vetoed promotion's back-off runs, the group is
// paused, or the agent is stopping.
func (n *Node) handoverHeld() bool {
	return n.now < n.blockedUntil || n.paused || n.leaving
}

// HandoverView is what the handover rule (HandoverDue) reads of one
// back-up. Node.HandoverCandidate fills it from the core's own view, and
// recover.CheckConverged from the states of a whole group: the agents and
// every convergence check judge by this one rule.
type HandoverView struct {
	// Self is the back-up (its Alive is not read).
	Self Peer
	// Master is the master it follows, as its view has it (ID 0: none).
	Master Peer
	// CaughtUp: the master's last append found the back-up's log equal to
	// its own, committed as far.
	CaughtUp bool
	// MasterPinned: the master holds office through an operator's
	// switchover.
	MasterPinned bool
	// Held: the back-up asks for nothing now (Status.HandoverHeld).
	Held bool
	// Peers are the members of its view (the master and the back-up
	// itself may be among them).
	Peers []Peer
}

// HandoverDue is the handover rule (figure 10, act 1060): a back-up asks
// its master for mastership when the master is alive, no live, healthy
// member ranks before the back-up (priority, then lowest ID, so ties
// resolve to one agent), its priority is above the master's, and it has
// caught up (the master stops taking writes while it hands over, so a
// back-up that still lags would only pause the group). Equal priorities
// never hand over: the master already has the highest priority. A back-up
// whose own service fails, or that is held, asks nothing; a pinned master
// is asked by nobody.
func HandoverDue(v HandoverView) bool {
	if v.Master.ID == 0 || !v.Master.Alive || !v.CaughtUp || v.MasterPinned || v.Held || v.Self.Unhealthy {
		return false
	}
	for _, p := range v.Peers {
		if p.Alive && !p.Unhealthy && better(p.ID, p.Priority, v.Self.ID, v.Self.Priority) {
			return false
		}
	}
	return v.Self.Priority > v.Master.Priority
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
	if n.role != api.RoleMaster || n.peers[m.From] == nil || !n.alive(m.From) || n.pinned {
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
		n.send(Message{Type: MsgTimeoutNow, To: n.transferTo, Pinned: n.transferPin})
		n.timeoutSent = true
	}
}

// Promote answers the promotion gate of the mastership at epoch
// (Ready.Gate): ok, the master registers and then serves; a veto makes it
// a back-up that campaigns for nothing and asks for no handover during
// GateBackoffTicks, so that the next-ranked agent takes over. An answer
// for a mastership that has ended meanwhile changes nothing.
func (n *Node) Promote(epoch api.Epoch, ok bool) {
	if n.role != api.RoleMaster || !n.gated || epoch != n.epoch {
		return
	}
	if ok {
		n.gated = false
		ep := epoch
		n.rd.Register = &ep
		n.rd.RoleChanged = true
		return
	}
	n.logger.Warn("promotion vetoed; stepping down", "epoch", epoch, "backoff_ticks", n.cfg.GateBackoffTicks)
	n.blockedUntil = n.now + uint64(n.cfg.GateBackoffTicks)
	n.becomeBackup(0, n.epoch)
}

// SetHealthy records whether this agent's service passes its health
// checks. An unhealthy agent does not campaign, asks for no handover and
// takes none over; a master that turns unhealthy keeps serving until the
// runtime hands mastership over (HandOver).
func (n *Node) SetHealthy(ok bool) {
	if n.unhealthy == !ok {
		return
	}
	n.unhealthy = !ok
	n.logger.Info("service health", "healthy", ok)
}

// SetPaused puts the group in maintenance or takes it out, as the naming
// node says: while paused this agent does not campaign and asks for no
// handover; a master keeps serving; an operator's switchover still runs.
func (n *Node) SetPaused(p bool) {
	n.paused = p
}

// SetLeaving marks the agent as stopping: it campaigns for nothing and
// neither asks for nor takes a handover in the moments before it leaves.
func (n *Node) SetLeaving() { n.leaving = true }

// EndGrace ends the start-up grace (Config.StartGraceTicks): the runtime
// met every member it was told to join.
func (n *Node) EndGrace() {
	if n.graceUntil > n.now {
		n.logger.Debug("start-up grace over: the join addresses are members")
	}
	n.graceUntil = 0
}

// ErrHandover is why HandOver refused: no handover was started.
var ErrHandover = errors.New("agent: no handover")

// HandOver starts a planned handover on the master's own initiative: an
// operator's switchover (pin) or a master that leaves. to is the back-up
// to take over, 0 for the best-ranked one that qualifies. A target must be
// a member alive and healthy in the master's view, that answered it
// within an election timeout, and whose log is within one append of the
// commit index (in sync).
// The master then stops taking writes, waits until the target holds every
// entry, and tells it to campaign (MsgTimeoutNow), as for a handover a
// back-up asked (figure 10, act 1080); it steps down when the new epoch
// reaches it, or serves again if the target has not taken over within an
// election timeout. It returns the target.
func (n *Node) HandOver(to uint64, pin bool) (uint64, error) {
	if n.role != api.RoleMaster {
		return 0, ErrNotMaster
	}
	if to == n.cfg.ID {
		return 0, fmt.Errorf("%w: %d is the master already", ErrHandover, to)
	}
	if n.transferTo != 0 && to != n.transferTo {
		return 0, fmt.Errorf("%w: handing over to %d already", ErrHandover, n.transferTo)
	}
	if to == 0 {
		var why []string
		for _, p := range n.ranked() {
			if err := n.handoverTarget(p.ID); err != nil {
				why = append(why, err.Error())
				continue
			}
			to = p.ID
			break
		}
		if to == 0 {
			if len(why) == 0 {
				why = append(why, "no other member is known")
			}
			return 0, fmt.Errorf("%w: no member qualifies (%s)", ErrHandover, strings.Join(why, "; "))
		}
	} else if err := n.handoverTarget(to); err != nil {
		return 0, fmt.Errorf("%w: %v", ErrHandover, err)
	}
	if n.transferTo == 0 {
		n.logger.Info("handing mastership over", "to", to, "switchover", pin)
		n.transferDeadline = n.now + uint64(n.cfg.ElectionTicks)
	}
	n.transferTo, n.transferPin = to, pin
	n.maybeTimeoutNow()
	n.sendAppend(to)
	return to, nil
}

// handoverTarget says why id may not take mastership over now, or nil.
func (n *Node) handoverTarget(id uint64) error {
	p := n.peers[id]
	switch {
	case p == nil:
		return fmt.Errorf("%d is not a member of the group", id)
	case !p.Alive:
		return fmt.Errorf("%d is not alive", id)
	case p.Unhealthy:
		return fmt.Errorf("%d is unhealthy (its service fails its checks)", id)
	}
	pr := n.progress[id]
	if pr == nil || n.now-pr.last > uint64(n.cfg.ElectionTicks) {
		return fmt.Errorf("%d has not answered the master for an election timeout", id)
	}
	if pr.match+maxBatch < n.commit {
		// In sync: within one append of the commit index (a back-up of a
		// master under load is always an append or so behind; the master
		// stops taking writes and waits for it to hold everything).
		return fmt.Errorf("%d is not in sync: it holds %d of %d committed entries", id, pr.match, n.commit)
	}
	return nil
}

// ranked lists the peers best first: priority, then lowest ID.
func (n *Node) ranked() []*Peer {
	ps := make([]*Peer, 0, len(n.peers))
	for _, p := range n.peers {
		ps = append(ps, p)
	}
	sort.Slice(ps, func(i, j int) bool { return better(ps[i].ID, ps[i].Priority, ps[j].ID, ps[j].Priority) })
	return ps
}
