package core

// The roles: each has its tick and its step, set when the role is taken
// (setRole, called by every becomeX), so that Tick and Step do not switch
// on the role.

import (
	"fmt"

	"github.com/mastership/mastership/naming/api"
)

func (n *Node) setRole(r api.Role) {
	if n.role != r {
		n.logger.Info("role change", "from", n.role, "to", r, "epoch", n.epoch, "master", n.master)
	}
	n.role = r
	n.rd.RoleChanged = true
	switch r {
	case api.RoleMaster:
		n.tick, n.step = n.tickMaster, n.stepMaster
	case api.RoleCandidate:
		n.tick, n.step = n.tickCandidate, n.stepCandidate
	case api.RoleBackup:
		n.tick, n.step = n.tickBackup, n.stepBackup
	default:
		// Recovering, syncing and quarantined agents do not campaign and
		// take nothing until a recovery installs a master's state.
		n.tick, n.step = n.tickPassive, n.stepPassive
	}
}

func (n *Node) tickPassive() { n.silent++ }

// stepMaster: the answers to our appends, handover requests, and appends
// of a newer master of our group (older ones were refused in Step).
func (n *Node) stepMaster(m Message) {
	switch m.Type {
	case MsgAppendResp:
		n.handleAppendResp(m)
	case MsgTransferReq:
		n.handleTransferReq(m)
	case MsgAppend:
		if m.Epoch == n.epoch {
			panic(fmt.Sprintf("core: two masters at epoch %s", n.epoch))
		}
		if m.From == n.transferTo {
			// The handover completed: follow the new master.
			n.becomeBackup(m.From, m.Epoch)
			n.acceptAppend(m)
			return
		}
		// A newer master of our group: strict masters step down; available
		// ones leave the decision to the naming node (the self-monitor).
		n.rd.Events = append(n.rd.Events, Event{Kind: EventForeignEpoch, From: m.From, Epoch: m.Epoch})
		if !n.rules.yieldsToNewer() {
			n.send(Message{Type: MsgAppendResp, To: m.From, Reject: true, Busy: true, LastIndex: n.log.LastIndex(), Sent: m.Sent})
			return
		}
		n.rd.Events = append(n.rd.Events, Event{Kind: EventDeposed, From: m.From, Epoch: m.Epoch})
		n.becomeBackup(m.From, m.Epoch)
		n.acceptAppend(m)
	}
}

// stepCandidate: the votes, and a master's append, which ends the campaign.
func (n *Node) stepCandidate(m Message) {
	switch m.Type {
	case MsgVoteResp:
		n.handleVoteResp(m)
	case MsgAppend:
		if n.transferring && m.From == n.replacing && m.Epoch == n.epoch {
			// The master handing over to us still heartbeats until our
			// epoch reaches it: not a reason to give up.
			return
		}
		n.becomeBackup(m.From, m.Epoch)
		n.acceptAppend(m)
	}
}

// stepBackup: our master's appends (or a newer master's), and the master's
// word to take mastership over in a planned handover.
func (n *Node) stepBackup(m Message) {
	switch m.Type {
	case MsgAppend:
		if m.Epoch != n.epoch || m.From != n.master {
			if n.rules.keepsLiveMaster() && m.From != n.master && n.master != 0 && !n.masterSilent() {
				// Available: our master is alive, so another master means
				// inconsistent mastership; the naming node decides whom
				// to follow (the self-monitor), not the larger epoch.
				n.rd.Events = append(n.rd.Events, Event{Kind: EventForeignEpoch, From: m.From, Epoch: m.Epoch})
				n.send(Message{Type: MsgAppendResp, To: m.From, Reject: true, Busy: true, LastIndex: n.log.LastIndex(), Sent: m.Sent})
				return
			}
			n.becomeBackup(m.From, m.Epoch)
		}
		n.acceptAppend(m)
	case MsgTimeoutNow:
		if m.From == n.master && m.Epoch == n.epoch && !n.unhealthy && !n.leaving {
			n.logger.Info("taking mastership over from the master", "master", m.From, "switchover", m.Pinned)
			n.transferring, n.transferPin = true, m.Pinned // before: the campaign may win at once
			n.becomeCandidate()
		}
	}
}

// stepPassive: recovering, syncing or quarantined, an agent notes the
// master that appends, and takes nothing until a recovery installs its
// state.
func (n *Node) stepPassive(m Message) {
	if m.Type != MsgAppend {
		return
	}
	if m.Epoch != n.epoch || m.From != n.master {
		n.epoch, n.master = m.Epoch, m.From
		n.hsChanged = true
		n.rd.RoleChanged = true
	}
	n.silent = 0
	n.send(Message{Type: MsgAppendResp, To: m.From, Reject: true, Busy: true, LastIndex: n.log.LastIndex(), Sent: m.Sent})
}
