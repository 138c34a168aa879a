package core

// Elections: the election timer by priority rank, campaigns, votes, and
// the vote hold of strict groups.

import (
	"fmt"

	"github.com/mastership/mastership/naming/api"
)

// canWin reports whether a campaign could gather the votes it needs from
// the members alive in the view: a strict candidate needs a quorum of
// them. A strict agent that sees fewer does not campaign (it would only
// raise the term), and campaigns rank by rank once they appear.
func (n *Node) canWin() bool {
	return n.rules.mayCampaign(n)
}

// better reports whether agent a (priority pa) ranks before agent b (pb):
// higher priority first, then lower ID. Elections, handovers and
// candidates' votes all use this one order, so ties resolve to one agent.
func better(a uint64, pa int, b uint64, pb int) bool {
	return pa > pb || (pa == pb && a < b)
}

// bestLive is the best-ranked agent among us and the live members of the
// view, but skip (0 skips nobody).
func (n *Node) bestLive(skip uint64) (uint64, int) {
	id, prio := n.cfg.ID, n.cfg.Priority
	if id == skip {
		id = 0
	}
	for _, p := range n.peers {
		if !p.Alive || p.Unhealthy || p.ID == skip {
			continue
		}
		if id == 0 || better(p.ID, p.Priority, id, prio) {
			id, prio = p.ID, p.Priority
		}
	}
	return id, prio
}

// rank is our position among the live back-ups that could campaign, by
// priority (highest first) then ID (lowest first): 0 fires first.
func (n *Node) rank() int {
	r := 0
	for _, p := range n.peers {
		if !p.Alive || p.Unhealthy || p.ID == n.master {
			continue
		}
		if better(p.ID, p.Priority, n.cfg.ID, n.cfg.Priority) {
			r++
		}
	}
	return r
}

// masterSilent is the voters' test: a voter grants only once its master has
// been silent for half the election timeout (or is dead in the view), so a
// live master is not disrupted, while back-ups whose clocks tick a little
// apart still agree that the master is gone.
func (n *Node) masterSilent() bool {
	if n.master == 0 {
		return !n.rules.holdsVote(n)
	}
	if n.masterGone() {
		return true
	}
	return n.silent >= n.cfg.ElectionTicks/2
}

// masterGone reports whether gossip counts our master dead while we have
// not heard from it for two heartbeats: appends we still receive prove it
// alive whatever gossip says (just after a heal its view lags).
func (n *Node) masterGone() bool {
	p := n.peers[n.master]
	return p != nil && !p.Alive && n.silent >= 2*n.cfg.HeartbeatTicks
}

// PeerStreamClosed tells the core that a peer closed the stream it sent
// us messages on: a process that exits, or is killed, closes its streams at
// once. When that peer is our master, this back-up campaigns as soon as the
// others can have stopped counting on the master, rather than after a whole
// election timeout: at half the election timeout (what voters wait before
// they grant, which outlasts the master's lease) and a heartbeat more, by
// rank. It changes no voter's rule: a voter grants only once it has not
// heard the master for half the election timeout itself, so a live master
// (one behind a single broken link, one that redialled after a stall) keeps
// its lease and is not deposed. Anything the master sends clears it.
func (n *Node) PeerStreamClosed(id uint64) {
	if n.role != api.RoleBackup || id == 0 || id != n.master {
		return
	}
	if !n.streamLost {
		n.logger.Debug("the master's stream closed: campaigning early if it stays silent", "master", id)
	}
	n.streamLost = true
}

func (n *Node) tickBackup() {
	n.silent++
	if n.master != 0 {
		if n.masterGone() && n.silent < n.cfg.ElectionTicks {
			// Gossip says the master is gone: skip the rest of the wait.
			n.silent = n.cfg.ElectionTicks
		}
	}
	if !n.canWin() {
		// Hold the timer at the election timeout: once a quorum is seen
		// the agents campaign by rank, not all at once.
		n.silent = min(n.silent, n.cfg.ElectionTicks)
		return
	}
	if n.now < n.blockedUntil || n.unhealthy || n.now < n.graceUntil || n.paused || n.leaving {
		// A vetoed promotion, or a service failing its checks: the
		// next-ranked agent takes over. The start-up grace: the others
		// are met first. A paused group elects nobody.
		n.silent = min(n.silent, n.cfg.ElectionTicks)
		return
	}
	due := n.cfg.ElectionTicks + n.rank()*n.cfg.StaggerTicks
	if n.streamLost {
		due = min(due, n.cfg.ElectionTicks/2+n.cfg.HeartbeatTicks+n.rank()*n.cfg.StaggerTicks)
	}
	if n.silent >= due {
		n.becomeCandidate()
	}
}

func (n *Node) tickCandidate() {
	n.campaignAge++
	if n.rules.winsUnopposed(n) {
		n.logger.Debug("campaign won by every member that answered", "epoch", n.campaign, "votes", len(n.votes))
		n.becomeMaster(n.campaign)
		return
	}
	if n.campaignAge >= n.cfg.ElectionTicks {
		n.logger.Debug("campaign timed out", "epoch", n.campaign, "votes", len(n.votes))
		n.becomeBackup(0, n.epoch)
		// Wait a full stagger round, jittered, before trying again.
		n.silent = n.cfg.ElectionTicks - n.cfg.Rand.Intn(n.cfg.StaggerTicks+1)
	}
}

// becomeBackup follows master (0: none known) at epoch. Proposals still
// held fail, but for a strict master that steps down to campaign at once
// (master is ourselves: a re-election, strictRules.reassert): they wait
// for its outcome, and fail here when it is lost.
func (n *Node) becomeBackup(master uint64, epoch api.Epoch) {
	if master != n.cfg.ID {
		n.failProposals(ErrNotMaster)
	}
	if epoch.Less(n.epoch) {
		panic(fmt.Sprintf("core: becomeBackup at epoch %s older than %s", epoch, n.epoch))
	}
	if master != n.master || epoch != n.epoch {
		n.caughtUp = false
		n.masterPinned = false // the next append of that master says
		n.streamLost = false
	}
	n.epoch, n.master = epoch, master
	n.seeTerm(epoch.Term)
	n.silent = 0
	n.hsChanged = true
	n.transferring, n.transferPin, n.pinned, n.gated = false, false, false, false
	n.transferTo, n.timeoutSent = 0, false // a master handing over stops at once
	n.setRole(api.RoleBackup)
}

func (n *Node) becomeCandidate() {
	if n.role == api.RoleMaster {
		panic("core: becomeCandidate from master")
	}
	term, ok := api.NextTerm(n.maxTerm)
	if !ok {
		// Only a store written before terms were bounded can hold this.
		n.logger.Error("no term left to campaign at; the data dir holds a corrupted term", "max_term", n.maxTerm)
		n.silent = 0
		return
	}
	n.replacing = n.master
	n.campaign = api.Epoch{Term: term, ID: n.cfg.ID}
	n.seeTerm(n.campaign.Term)
	n.vote = n.campaign
	n.hsChanged = true
	n.campaignAge = 0
	n.votes = map[uint64]bool{n.cfg.ID: true}
	n.refusals = map[uint64]bool{}
	n.setRole(api.RoleCandidate)
	last := n.log.Last()
	for _, p := range n.sortedPeers() {
		if !p.Alive {
			continue
		}
		n.send(Message{Type: MsgVote, To: p.ID, Epoch: n.campaign, LastIndex: last.Index, LastEpoch: last.Epoch, Transfer: n.transferring})
	}
	n.maybeWin()
}

// maybeWin checks the votes: strict needs a majority of the known members;
// available needs every member it can reach.
func (n *Node) maybeWin() {
	if n.role != api.RoleCandidate {
		return
	}
	if n.rules.won(n) {
		n.becomeMaster(n.campaign)
	}
}

func (n *Node) handleVote(m Message) {
	last := n.log.Last()
	upToDate := last.Epoch.Less(m.LastEpoch) || (last.Epoch == m.LastEpoch && last.Index <= m.LastIndex)
	if n.role == api.RoleMaster && m.Transfer && m.From == n.transferTo && n.epoch.Less(m.Epoch) && upToDate {
		// Our own handover: step down and vote for it.
		n.becomeBackup(0, n.epoch)
	}
	grant := n.role != api.RoleMaster &&
		n.role != api.RoleQuarantined &&
		n.epoch.Less(m.Epoch) && n.vote.Term < m.Epoch.Term && // one vote per term

		(n.masterSilent() || n.role == api.RoleCandidate || m.Transfer) &&
		upToDate
	if n.role == api.RoleCandidate && grant {
		// A candidate grants only to a better-ranked candidate, or to one
		// whose log is ahead of its own: that one refuses our campaign
		// (its log is newer), as does every voter as far along, and were
		// we to refuse it in turn the two would refuse each other's
		// campaigns until one asked while the other was between two of
		// its own. The ranking comes back by a planned handover.
		ahead := last.Epoch.Less(m.LastEpoch) || (last.Epoch == m.LastEpoch && last.Index < m.LastIndex)
		grant = ahead || better(m.From, m.Priority, n.cfg.ID, n.cfg.Priority)
		if grant {
			n.becomeBackup(0, n.epoch)
		}
	}
	if !grant {
		n.logger.Debug("vote refused", "candidate", m.From, "epoch", m.Epoch, "ours", n.epoch, "voted", n.vote,
			"role", n.role, "silent", n.silent, "up_to_date", upToDate)
	}
	if grant {
		n.vote = m.Epoch
		n.votedAt = n.now + 1
		n.hsChanged = true
		// Disarm: give this candidate a full campaign before our timer.
		n.silent = 0
	}
	n.send(Message{Type: MsgVoteResp, To: m.From, Reject: !grant, Epoch: n.epoch, LastIndex: last.Index})
}

func (n *Node) handleVoteResp(m Message) {
	if n.role != api.RoleCandidate {
		return
	}
	if m.Reject {
		n.refusals[m.From] = true
		n.rules.refused(n)
		if n.epoch.Less(m.Epoch) {
			// Someone follows a newer mastership than we knew of.
			n.becomeBackup(0, m.Epoch)
		}
		return
	}
	n.votes[m.From] = true
	n.maybeWin()
}
