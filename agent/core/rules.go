package core

// The mode's rules: what strict and available groups decide differently.
// NewNode picks one value; nothing else in the core looks at Config.Mode.

import (
	"fmt"

	"github.com/mastership/mastership/naming/api"
)

// rules is one mode's decisions.
type rules interface {
	// mayCampaign tells whether a back-up's election timer may fire with
	// the view it has.
	mayCampaign(n *Node) bool
	// holdsVote tells whether a voter that follows no master still waits
	// for the candidate it last voted for to be heard.
	holdsVote(n *Node) bool
	// winsUnopposed tells whether the campaign is won by every member that
	// answered in time, none refusing.
	winsUnopposed(n *Node) bool
	// won tells whether the votes so far win the campaign.
	won(n *Node) bool
	// refused is a candidate's answer to a refusal: it may lose.
	refused(n *Node)
	// commitIndex is the index up to which entries commit now.
	commitIndex(n *Node) uint64
	// commitsOnTick tells whether the master re-evaluates the commit index
	// at every tick (a write past a silent back-up commits on a timer).
	commitsOnTick() bool
	// serving tells whether the master may serve reads and writes.
	serving(n *Node) bool
	// mayPropose is an error when the master must not take a write now.
	mayPropose(n *Node) error
	// yieldsToNewer tells whether a master steps down for a newer epoch of
	// its group (else the naming node decides, through the self-monitor).
	yieldsToNewer() bool
	// keepsLiveMaster tells whether a back-up refuses another master while
	// its own is alive (else the larger epoch wins).
	keepsLiveMaster() bool
	// reassert moves a retained master above every epoch seen.
	reassert(n *Node)
	// heldForAppend is the Message.Held a master's append carries.
	heldForAppend(n *Node) uint64
	// snapshotWaits tells whether a due snapshot waits because some member
	// may lack entries it would compact away.
	snapshotWaits(n *Node) bool
	// compactionPoint is how far the in-memory log may be compacted after
	// a snapshot, upTo being the point the window behind the applied
	// index allows.
	compactionPoint(n *Node, upTo uint64) uint64
}

func rulesFor(m api.Mode) rules {
	if m == api.ModeStrict {
		return strictRules{}
	}
	return availableRules{}
}

// strictRules: a majority elects, commits and holds a lease; a master
// serves only while registered.
type strictRules struct{}

// availableRules: every reachable member elects and holds each write; a
// cut-off side elects its own master, and the naming node decides.
type availableRules struct{}

// A strict back-up campaigns only with a quorum in sight: once one is seen
// the agents campaign by rank, not all at once.
func (strictRules) mayCampaign(n *Node) bool    { return n.liveCount() >= n.quorum() }
func (availableRules) mayCampaign(n *Node) bool { return true }

// Strict: the candidate we last voted for may have won and not be heard
// yet; a vote for a later term now could make a second master. (Available
// groups may elect on both sides anyway, and a lost available campaign
// must not hold the next one.)
func (strictRules) holdsVote(n *Node) bool {
	return n.votedAt != 0 && n.now+1 < n.votedAt+uint64(n.cfg.ElectionTicks/2)
}
func (availableRules) holdsVote(n *Node) bool { return false }

func (strictRules) winsUnopposed(n *Node) bool { return false }

// Available: the members we can reach are the ones that answered within two
// heartbeats; gossip may take longer to see the others gone. Every one that
// answered granted.
func (availableRules) winsUnopposed(n *Node) bool {
	return n.campaignAge >= 2*n.cfg.HeartbeatTicks && len(n.refusals) == 0
}

// Strict needs a majority of the known members.
func (strictRules) won(n *Node) bool { return len(n.votes) >= n.quorum() }

// Available needs every member it can reach, but the master whose silence
// it is replacing: that one is not expected to answer.
func (availableRules) won(n *Node) bool {
	if len(n.refusals) != 0 {
		return false
	}
	for _, p := range n.peers {
		if p.Alive && !n.votes[p.ID] && p.ID != n.replacing {
			return false
		}
	}
	return true
}

// A strict campaign is lost once a majority is out of reach.
func (strictRules) refused(n *Node) {
	if len(n.refusals) > max(n.groupSize(), n.cfg.Expect)-n.quorum() {
		n.becomeBackup(0, n.epoch)
	}
}

// An available campaign is lost at the first refusal (it needs every member
// it reaches; a voter that still heard the master a moment ago refuses).
// The candidate tries again within one stagger step, jittered: sooner than
// any lower-ranked back-up can fire (one step after its own timeout), so
// the ranking holds when the voters' clocks or gossip views lag; and two
// candidates that keep losing to each other's votes in lockstep (one
// granted by the voters, the other the only up-to-date member) drift
// apart, so that one campaigns at a term the voters have not voted in.
func (availableRules) refused(n *Node) {
	n.becomeBackup(0, n.epoch)
	step := max(n.cfg.StaggerTicks, 1)
	wait := max(step/2, 1) + n.cfg.Rand.Intn(max(step-step/2, 1))
	n.silent = n.cfg.ElectionTicks + n.rank()*step - min(wait, step)
}

// Strict: the highest index a quorum holds; only an entry of our own epoch
// commits by counting (and the ones before it with it).
func (strictRules) commitIndex(n *Node) uint64 {
	matches := append(n.scratch[:0], n.log.LastIndex())
	for id, pr := range n.progress {
		if n.peers[id] != nil {
			matches = append(matches, pr.match)
		}
	}
	n.scratch = matches
	c, _ := quorumValue(matches, n.quorum())
	if ep, err := n.log.EpochAt(c); err != nil || ep != n.epoch {
		c = n.commit
	}
	return c
}

// Available: every reachable back-up holds it; a reachable back-up that
// does not answer within WriteTicks is left behind to catch up.
func (availableRules) commitIndex(n *Node) uint64 {
	c := n.log.LastIndex()
	for id, p := range n.peers {
		pr := n.progress[id]
		// Reachable: alive in the gossip view and heard from within half
		// the election timeout (gossip is slower to see a crash).
		if !p.Alive || pr.last+uint64(n.cfg.ElectionTicks/2) <= n.now {
			continue
		}
		if pr.match < c {
			c = pr.match
		}
	}
	for _, pp := range n.proposals {
		if pp.index > c && n.now-pp.tick >= uint64(n.cfg.WriteTicks) {
			c = pp.index
		}
	}
	return c
}

func (strictRules) commitsOnTick() bool    { return false }
func (availableRules) commitsOnTick() bool { return true }

func (strictRules) serving(n *Node) bool    { return n.registeredUntil > n.now && n.leaseHolds() }
func (availableRules) serving(n *Node) bool { return true }

// Strict: the registration holds, and a majority answered within an
// election timeout. A master cut off from its back-ups while it still
// reaches the naming node (so its registration holds) could commit
// nothing; it refuses at once rather than take writes that time out.
func (strictRules) mayPropose(n *Node) error {
	if n.registeredUntil <= n.now {
		return fmt.Errorf("%w: registration at the naming node not held", ErrNotServing)
	}
	if heard, ok := n.quorumHeard(); !ok || heard+uint64(n.cfg.ElectionTicks) <= n.now {
		if !n.noQuorumSaid {
			n.noQuorumSaid = true
			n.logger.Warn("no majority of the group answered for an election timeout: refusing writes", "epoch", n.epoch, "pending", len(n.proposals))
		}
		return fmt.Errorf("%w: no majority of the group answered for an election timeout", ErrNotServing)
	}
	if n.noQuorumSaid {
		n.noQuorumSaid = false
		n.logger.Info("a majority of the group answers again: taking writes", "epoch", n.epoch)
	}
	return nil
}
func (availableRules) mayPropose(n *Node) error { return nil }

func (strictRules) yieldsToNewer() bool    { return true }
func (availableRules) yieldsToNewer() bool { return false }

func (strictRules) keepsLiveMaster() bool    { return false }
func (availableRules) keepsLiveMaster() bool { return true }

// A strict master may hold a new term only with a majority's votes: it
// steps down and campaigns at once, as a handover to itself, so voters
// grant although they still hear it; if it loses, the group elects as
// after any failure.
func (strictRules) reassert(n *Node) {
	if _, ok := api.NextTerm(n.maxTerm); !ok {
		// Stepping down could not be followed by a campaign.
		n.logger.Error("no term left to reassert at; the data dir holds a corrupted term", "max_term", n.maxTerm)
		return
	}
	n.logger.Info("re-election at a new term", "epoch", n.epoch, "max_term", n.maxTerm)
	n.becomeBackup(n.cfg.ID, n.epoch)
	n.transferring = true
	n.becomeCandidate()
}

// An available master takes the new epoch at once.
func (availableRules) reassert(n *Node) {
	term, ok := api.NextTerm(n.maxTerm)
	if !ok {
		n.logger.Error("no term left to reassert at; the data dir holds a corrupted term", "max_term", n.maxTerm)
		return
	}
	n.becomeMaster(api.Epoch{Term: term, ID: n.cfg.ID})
}

// Strict: a master tells no Held, and snapshots and compaction follow the
// applied index alone (a cut-off minority elects no master of its own).
func (strictRules) heldForAppend(n *Node) uint64                { return 0 }
func (strictRules) snapshotWaits(n *Node) bool                  { return false }
func (strictRules) compactionPoint(n *Node, upTo uint64) uint64 { return upTo }

// Available: should the members that lack some entries elect their own
// master, those entries are the writes recovery keeps as divergence
// records; the master tells its back-ups what every member holds.
func (availableRules) heldForAppend(n *Node) uint64 { return n.heldByAll() }

// Available: a snapshot waits while some member may lack entries it would
// compact away, for RetainEntries entries at most.
func (availableRules) snapshotWaits(n *Node) bool {
	held := n.held()
	return held+n.window() < n.applied && n.applied-held <= n.retain()
}

// Available: no further than what every member holds, but for
// RetainEntries entries at most.
func (availableRules) compactionPoint(n *Node, upTo uint64) uint64 {
	held := min(upTo, n.held())
	if retain := n.retain(); upTo > retain {
		held = max(held, upTo-retain)
	}
	return held
}
