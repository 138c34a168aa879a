package core

import (
	"errors"
	"fmt"
	"math/rand"
	"slices"
	"sort"

	"github.com/hashicorp/go-hclog"
	"github.com/mastership/mastership/agent/rlog"
	"github.com/mastership/mastership/naming/api"
)

// Errors returned to callers of Propose and Read.
var (
	// ErrNotMaster means this agent does not take client requests; Status
	// names the master it follows, if any.
	ErrNotMaster = errors.New("agent: not master")
	// ErrNotServing means the master may not serve now: a strict master
	// whose registration could have lapsed, or whose lease lapsed.
	ErrNotServing = errors.New("agent: master not serving")
)

// Config is the core's configuration. Every duration is in ticks; only the
// runtime knows how long a tick is.
type Config struct {
	ID       uint64
	Group    string
	Priority int
	Mode     api.Mode
	// HeartbeatTicks is the master's heartbeat period.
	HeartbeatTicks int
	// ElectionTicks is how long a back-up hears nothing from its master
	// before it counts it silent. Also a candidate's campaign deadline.
	ElectionTicks int
	// StaggerTicks is the delay per priority rank before a silent master's
	// back-up campaigns (the election periodic timer).
	StaggerTicks int
	// WriteTicks bounds how long an available master waits for a reachable
	// back-up to hold a write before it commits without it.
	WriteTicks int
	// Expect is the group's intended size: a strict quorum is a majority
	// of at least this many members, whatever the view holds, so that an
	// agent that knows only itself (at start, or cut off) never makes a
	// majority of its own. Required (at least 1) in strict mode; 0 counts
	// the members in the view (available mode).
	Expect int
	// Rand draws jitter; required.
	Rand *rand.Rand
	// Logger; nil means none.
	Logger hclog.Logger
}

// HardState is what the runtime must persist before it sends the messages
// of the Ready that carries it.
type HardState struct {
	Epoch   api.Epoch `codec:"e"`
	Vote    api.Epoch `codec:"v"`
	Master  uint64    `codec:"m"`
	MaxTerm uint64    `codec:"t"`
}

// Peer is one member of the group in the membership view the runtime feeds
// from gossip.
type Peer struct {
	ID       uint64
	Priority int
	Alive    bool
	// Epoch is the epoch the peer announces; the core learns terms from it
	// so that its next campaign or reassertion is newer than all of them.
	Epoch api.Epoch
}

// Result answers one client proposal.
type Result struct {
	Ref    uint64
	Index  uint64
	Epoch  api.Epoch
	Result rlog.Result
	Err    error
}

// EventKind is an event for the self-monitor (figure 6: external events).
type EventKind uint8

// Event kinds raised by the core.
const (
	// EventForeignEpoch: a message from the group carried an epoch newer
	// than ours from an agent that is not our master.
	EventForeignEpoch EventKind = iota + 1
	// EventTriggered: another master sent us a trigger.
	EventTriggered
	// EventDeposed: a strict master stepped down for a newer epoch.
	EventDeposed
)

func (k EventKind) String() string {
	switch k {
	case EventForeignEpoch:
		return "foreign-epoch"
	case EventTriggered:
		return "competing-master-trigger"
	case EventDeposed:
		return "deposed"
	}
	return fmt.Sprintf("event(%d)", k)
}

// Event is raised for the self-monitor.
type Event struct {
	Kind  EventKind
	From  uint64
	Epoch api.Epoch
}

// Ready is what the runtime must do after a call into the core: persist the
// hard state and entries, then send the messages, answer the results, and
// act on the requests.
type Ready struct {
	HardState *HardState
	// Truncated, if not nil, drops stored entries after this index; then
	// Entries are appended.
	Truncated *uint64
	Entries   []rlog.Entry
	// Divergent are client entries removed from the log that another
	// master's log does not hold: they become divergence records.
	Divergent []rlog.Entry
	Messages  []Message
	Results   []Result
	// RoleChanged is set when the role, epoch or master changed.
	RoleChanged bool
	// Register asks the runtime to register this master at the naming node
	// with this epoch.
	Register *api.Epoch
	// Sync asks the runtime to download the state of this master (a
	// lagging or divergent log).
	Sync   uint64
	Events []Event
}

type progress struct {
	next, match uint64
	acked       uint64 // the latest Sent tick this peer echoed
	last        uint64 // the tick we last heard from it
}

type proposal struct {
	ref   uint64
	index uint64
	tick  uint64
}

// Node is one agent's replica core: roles, replication and elections. It is
// pure: no goroutines, clocks, sockets or disk; the runtime calls it from
// one goroutine and carries out its Ready.
type Node struct {
	cfg    Config
	logger hclog.Logger
	sm     rlog.StateMachine
	log    *rlog.Log

	role    api.Role
	epoch   api.Epoch // the mastership followed or held
	master  uint64
	vote    api.Epoch
	maxTerm uint64
	// maxEpoch is the newest epoch seen anywhere (messages, views): a
	// retained master older than it reasserts, even at the same term.
	maxEpoch api.Epoch

	commit, applied uint64
	now             uint64
	silent          int // ticks since our master was heard
	heartbeat       int
	campaign        api.Epoch
	campaignAge     int
	replacing       uint64 // the silent master a campaign replaces
	votes           map[uint64]bool
	refusals        map[uint64]bool
	// votedAt is the tick (plus one) at which we last granted a vote: in
	// strict mode the candidate we voted for is given half an election
	// timeout to win and be heard before we count "no master" as silence
	// again.
	votedAt uint64

	peers     map[uint64]*Peer
	progress  map[uint64]*progress
	proposals []proposal

	registeredUntil uint64 // strict: tick until which the registration holds

	refused uint64 // messages and view epochs refused as out of range

	transferTo       uint64 // master: handing over to this back-up
	transferDeadline uint64
	transferring     bool // candidate: campaign started by MsgTimeoutNow
	// caughtUp: back-up: the master's last append found our log equal to
	// its own, committed as far; only then do we ask for a handover.
	caughtUp bool

	rd        Ready
	hsChanged bool
}

// NewNode returns a back-up core over a state machine and a log restored
// from storage. applied is the state machine's applied index.
func NewNode(cfg Config, sm rlog.StateMachine, log *rlog.Log, hs HardState) *Node {
	if cfg.Rand == nil {
		panic("core: Config.Rand is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	n := &Node{
		cfg:      cfg,
		logger:   cfg.Logger,
		sm:       sm,
		log:      log,
		role:     api.RoleBackup,
		epoch:    hs.Epoch,
		master:   hs.Master,
		vote:     hs.Vote,
		maxTerm:  max(hs.MaxTerm, hs.Epoch.Term, hs.Vote.Term),
		peers:    make(map[uint64]*Peer),
		progress: make(map[uint64]*progress),
	}
	n.applied = sm.Digest().Index
	n.commit = n.applied
	if n.master == cfg.ID {
		// A master that restarts does not resume mastership: it follows
		// nobody until it hears a master or wins an election.
		n.master = 0
	}
	return n
}

// Status is a snapshot of the core for the API and metrics.
type Status struct {
	ID       uint64
	Role     api.Role
	Epoch    api.Epoch
	Master   uint64
	Commit   uint64
	Applied  uint64
	Last     uint64
	Digest   rlog.Digest
	MaxTerm  uint64
	MaxEpoch api.Epoch
	Serving  bool
	Priority int
	// Transfer is the back-up a master is handing mastership over to (0:
	// none). A group with a handover pending has not settled.
	Transfer uint64
	// CaughtUp: a back-up whose log the master's last append found equal
	// to its own (only such a back-up asks for a handover).
	CaughtUp bool
	// Refused counts messages and view entries refused for an epoch out of
	// range or inconsistent with their sender.
	Refused uint64
}

// Status describes the core now.
func (n *Node) Status() Status {
	return Status{ID: n.cfg.ID, Role: n.role, Epoch: n.epoch, Master: n.master, Commit: n.commit,
		Applied: n.applied, Last: n.log.LastIndex(), Digest: n.sm.Digest(), MaxTerm: n.maxTerm, MaxEpoch: n.maxEpoch.Max(n.epoch),
		Serving: n.serving(), Priority: n.cfg.Priority, Transfer: n.transferTo, CaughtUp: n.role == api.RoleBackup && n.caughtUp, Refused: n.refused}
}

// Ready returns what the runtime must do and clears it.
func (n *Node) Ready() Ready {
	if n.hsChanged {
		hs := n.hardState()
		n.rd.HardState = &hs
		n.hsChanged = false
	}
	rd := n.rd
	n.rd = Ready{}
	return rd
}

func (n *Node) hardState() HardState {
	return HardState{Epoch: n.epoch, Vote: n.vote, Master: n.master, MaxTerm: n.maxTerm}
}

func (n *Node) send(m Message) {
	m.Group = n.cfg.Group
	m.From = n.cfg.ID
	if m.Epoch.IsZero() {
		m.Epoch = n.epoch
	}
	m.Priority = n.cfg.Priority
	n.rd.Messages = append(n.rd.Messages, m)
}

func (n *Node) seeEpoch(e api.Epoch) {
	n.maxEpoch = n.maxEpoch.Max(e)
	n.seeTerm(e.Term)
}

func (n *Node) seeTerm(t uint64) {
	if t > n.maxTerm {
		n.maxTerm = t
		n.hsChanged = true
	}
}

// SetView replaces the membership view (from gossip). Peers of other groups
// must not be passed. Our own entry is ignored.
func (n *Node) SetView(peers []Peer) {
	n.peers = make(map[uint64]*Peer, len(peers))
	for _, p := range peers {
		if p.ID == n.cfg.ID {
			continue
		}
		p := p
		if err := api.CheckTerm(p.Epoch.Term, n.maxTerm); err != nil {
			// A forged or corrupted announcement: the member counts, its
			// epoch is not learnt.
			n.noteRefused(fmt.Sprintf("view of agent %d", p.ID), err)
			p.Epoch = api.Epoch{}
		}
		n.peers[p.ID] = &p
		n.seeEpoch(p.Epoch)
		if n.progress[p.ID] == nil {
			n.progress[p.ID] = &progress{next: n.log.LastIndex() + 1}
		}
	}
	switch n.role {
	case api.RoleMaster:
		n.maybeCommit()
	case api.RoleCandidate:
		n.maybeWin() // a peer found dead no longer needs to vote
	}
}

// alive reports whether a peer is reachable according to the view.
func (n *Node) alive(id uint64) bool {
	p := n.peers[id]
	return p != nil && p.Alive
}

// groupSize counts the known members, dead or alive, and us.
func (n *Node) groupSize() int { return len(n.peers) + 1 }

func (n *Node) quorum() int { return max(n.groupSize(), n.cfg.Expect)/2 + 1 }

// liveCount counts us and the members alive in the view.
func (n *Node) liveCount() int {
	c := 1
	for _, p := range n.peers {
		if p.Alive {
			c++
		}
	}
	return c
}

// canWin reports whether a campaign could gather the votes it needs from
// the members alive in the view: a strict candidate needs a quorum of
// them. A strict agent that sees fewer does not campaign (it would only
// raise the term), and campaigns rank by rank once they appear.
func (n *Node) canWin() bool {
	return n.cfg.Mode != api.ModeStrict || n.liveCount() >= n.quorum()
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
		if !p.Alive || p.ID == skip {
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
		if !p.Alive || p.ID == n.master {
			continue
		}
		if better(p.ID, p.Priority, n.cfg.ID, n.cfg.Priority) {
			r++
		}
	}
	return r
}

// Tick advances the core's clock by one tick.
func (n *Node) Tick() {
	n.now++
	switch n.role {
	case api.RoleMaster:
		n.tickMaster()
	case api.RoleCandidate:
		n.tickCandidate()
	case api.RoleBackup:
		n.tickBackup()
	default:
		// Recovering, syncing and quarantined agents do not campaign.
		n.silent++
	}
}

// masterSilent is the voters' test: a voter grants only once its master has
// been silent for half the election timeout (or is dead in the view), so a
// live master is not disrupted, while back-ups whose clocks tick a little
// apart still agree that the master is gone.
func (n *Node) masterSilent() bool {
	if n.master == 0 {
		// Strict: the candidate we last voted for may have won and not be
		// heard yet; a vote for a later term now could make a second
		// master. (Available groups may elect on both sides anyway, and a
		// lost available campaign must not hold the next one.)
		if n.cfg.Mode == api.ModeStrict && n.votedAt != 0 {
			return n.now+1 >= n.votedAt+uint64(n.cfg.ElectionTicks/2)
		}
		return true
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
	if n.silent >= n.cfg.ElectionTicks+n.rank()*n.cfg.StaggerTicks {
		n.becomeCandidate()
	}
}

func (n *Node) tickCandidate() {
	n.campaignAge++
	if n.cfg.Mode != api.ModeStrict && n.campaignAge >= 2*n.cfg.HeartbeatTicks && len(n.refusals) == 0 {
		// Available: the members we can reach are the ones that answered
		// within two heartbeats; gossip may take longer to see the others
		// gone. Every one that answered granted.
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

func (n *Node) tickMaster() {
	if n.transferTo != 0 && n.now >= n.transferDeadline {
		n.logger.Info("handover timed out; serving again", "to", n.transferTo)
		n.transferTo = 0
	}
	n.heartbeat++
	if n.heartbeat >= n.cfg.HeartbeatTicks {
		n.heartbeat = 0
		n.broadcastAppend()
	}
	if n.cfg.Mode == api.ModeAvailable {
		n.maybeCommit()
	}
}

func (n *Node) setRole(r api.Role) {
	if n.role != r {
		n.logger.Info("role change", "from", n.role, "to", r, "epoch", n.epoch, "master", n.master)
	}
	n.role = r
	n.rd.RoleChanged = true
}

// becomeBackup follows master (0: none known) at epoch.
func (n *Node) becomeBackup(master uint64, epoch api.Epoch) {
	if n.role == api.RoleMaster && master != n.cfg.ID {
		n.failProposals(ErrNotMaster)
	}
	if epoch.Less(n.epoch) {
		panic(fmt.Sprintf("core: becomeBackup at epoch %s older than %s", epoch, n.epoch))
	}
	if master != n.master || epoch != n.epoch {
		n.caughtUp = false
	}
	n.epoch, n.master = epoch, master
	n.seeTerm(epoch.Term)
	n.silent = 0
	n.hsChanged = true
	n.transferring = false
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

func (n *Node) sortedPeers() []*Peer {
	ps := make([]*Peer, 0, len(n.peers))
	for _, p := range n.peers {
		ps = append(ps, p)
	}
	sort.Slice(ps, func(i, j int) bool { return ps[i].ID < ps[j].ID })
	return ps
}

// maybeWin checks the votes: strict needs a majority of the known members;
// available needs every member it can reach.
func (n *Node) maybeWin() {
	if n.role != api.RoleCandidate {
		return
	}
	won := false
	switch n.cfg.Mode {
	case api.ModeStrict:
		won = len(n.votes) >= n.quorum()
	default:
		// Every member we can reach, but the master whose silence we are
		// replacing: it is not expected to answer.
		won = len(n.refusals) == 0
		for _, p := range n.peers {
			if p.Alive && !n.votes[p.ID] && p.ID != n.replacing {
				won = false
			}
		}
	}
	if won {
		n.becomeMaster(n.campaign)
	}
}

// becomeMaster takes mastership at epoch: appends a no-op of the new epoch
// (so the epoch commits before reads), asks the runtime to register, and
// sends the first heartbeat.
func (n *Node) becomeMaster(epoch api.Epoch) {
	if epoch.ID != n.cfg.ID || epoch.Less(n.epoch) {
		panic(fmt.Sprintf("core: becomeMaster at %s from epoch %s", epoch, n.epoch))
	}
	n.epoch, n.master = epoch, n.cfg.ID
	n.seeTerm(epoch.Term)
	n.hsChanged = true
	n.heartbeat = 0
	n.registeredUntil = 0
	n.transferTo = 0
	n.transferring = false
	n.setRole(api.RoleMaster)
	last := n.log.LastIndex()
	// A peer has two heartbeats to answer a new master before an available
	// commit stops waiting for it (a crashed master still looks alive in
	// gossip for a while).
	heard := n.now + uint64(2*n.cfg.HeartbeatTicks)
	heard -= min(heard, uint64(n.cfg.ElectionTicks/2))
	for id := range n.peers {
		n.progress[id] = &progress{next: last + 1, last: heard}
	}
	e, err := n.log.AppendNew(epoch, 0, 0, nil)
	if err != nil {
		panic(fmt.Sprintf("core: append no-op: %v", err))
	}
	n.rd.Entries = append(n.rd.Entries, e)
	ep := epoch
	n.rd.Register = &ep
	n.broadcastAppend()
	n.maybeCommit()
}

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
	if n.cfg.Mode == api.ModeStrict {
		n.logger.Info("re-election at a new term", "epoch", n.epoch, "max_term", n.maxTerm)
		n.becomeBackup(n.cfg.ID, n.epoch)
		n.transferring = true
		n.becomeCandidate()
		return
	}
	term, ok := api.NextTerm(n.maxTerm)
	if !ok {
		n.logger.Error("no term left to reassert at; the data dir holds a corrupted term", "max_term", n.maxTerm)
		return
	}
	n.becomeMaster(api.Epoch{Term: term, ID: n.cfg.ID})
}

// SeeEpoch tells the core of an epoch learnt outside the group's messages
// (the naming node's registration), so that its next campaign or
// reassertion is above it.
func (n *Node) SeeEpoch(e api.Epoch) { n.seeEpoch(e) }

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

// Now is the core's tick count.
func (n *Node) Now() uint64 { return n.now }

func (n *Node) serving() bool {
	if n.role != api.RoleMaster {
		return false
	}
	if n.cfg.Mode == api.ModeStrict {
		return n.registeredUntil > n.now && n.leaseHolds()
	}
	return true
}

// leaseHolds reports whether a majority heard from us within the election
// timeout: no one can have been elected meanwhile, since back-ups refuse
// votes while they hear their master.
func (n *Node) leaseHolds() bool {
	acks := []uint64{n.now}
	for id, pr := range n.progress {
		if n.peers[id] != nil {
			acks = append(acks, pr.acked)
		}
	}
	slices.Sort(acks)
	slices.Reverse(acks)
	q := n.quorum()
	if len(acks) < q {
		return false
	}
	// Voters refuse for half the election timeout after hearing us; a
	// lease of two fifths leaves a tenth for drift between tick clocks.
	lease := uint64(n.cfg.ElectionTicks * 2 / 5)
	return acks[q-1]+lease > n.now
}

// Propose appends a client request. The result comes in a later Ready.
func (n *Node) Propose(ref, client, seq uint64, op []byte) error {
	if n.role != api.RoleMaster {
		return ErrNotMaster
	}
	if n.cfg.Mode == api.ModeStrict && n.registeredUntil <= n.now {
		return fmt.Errorf("%w: registration at the naming node not held", ErrNotServing)
	}
	if n.transferTo != 0 {
		return fmt.Errorf("%w: handing mastership over to %d", ErrNotServing, n.transferTo)
	}
	e, err := n.log.AppendNew(n.epoch, client, seq, op)
	if err != nil {
		return fmt.Errorf("append: %w", err)
	}
	n.rd.Entries = append(n.rd.Entries, e)
	n.proposals = append(n.proposals, proposal{ref: ref, index: e.Index, tick: n.now})
	n.broadcastAppend()
	n.maybeCommit()
	return nil
}

// ReadIndex tells whether a read may be served from the state machine now:
// on the master, with a committed entry of its epoch, and in strict mode
// while its lease and registration hold.
func (n *Node) ReadIndex() error {
	if n.role != api.RoleMaster {
		return ErrNotMaster
	}
	if !n.serving() {
		return ErrNotServing
	}
	if ep, err := n.log.EpochAt(n.commit); err != nil || ep != n.epoch {
		return fmt.Errorf("%w: no entry of epoch %s committed yet", ErrNotServing, n.epoch)
	}
	return nil
}

func (n *Node) broadcastAppend() {
	for _, p := range n.sortedPeers() {
		n.sendAppend(p.ID)
	}
}

// maxBatch bounds the entries of one append.
const maxBatch = 256

// SyncThreshold is how far behind a back-up may be and still catch up from
// the log; further behind (or new), it downloads the master's state.
const SyncThreshold = 2 * maxBatch

func (n *Node) sendAppend(to uint64) {
	pr := n.progress[to]
	if pr == nil {
		pr = &progress{next: n.log.LastIndex() + 1}
		n.progress[to] = pr
	}
	base := n.log.Base().Index
	if pr.next <= base {
		pr.next = base + 1
	}
	prev := pr.next - 1
	pos, err := n.log.PosAt(prev)
	if err != nil {
		pos = n.log.Base()
	}
	last := n.log.LastIndex()
	m := Message{Type: MsgAppend, To: to, PrevIndex: pos.Index, PrevHash: pos.Hash, Commit: n.commit, Sent: n.now, Base: base,
		LastIndex: last}
	if pr.next <= last {
		hi := min(last+1, pr.next+maxBatch)
		ents, err := n.log.Slice(pr.next, hi)
		if err == nil {
			m.Entries = ents
			pr.next = hi // pipelined: optimistic
		}
	}
	n.send(m)
}

// noteRefused counts an input refused for its epoch, logging the first
// and then every power of two so that a flood cannot flood the log.
func (n *Node) noteRefused(what string, err error) {
	n.refused++
	if n.refused&(n.refused-1) == 0 {
		n.logger.Warn("refused an epoch out of range", "input", what, "error", err, "refused_so_far", n.refused)
	}
}

// checkMessage validates the epochs a message carries before any of them is
// learnt: none more than api.MaxTermLead above our highest term, a master's
// or candidate's epoch in its own name, and no entry newer than the append
// that carries it.
func (n *Node) checkMessage(m Message) error {
	if err := api.CheckTerm(m.Epoch.Term, n.maxTerm); err != nil {
		return err
	}
	if err := api.CheckTerm(m.LastEpoch.Term, n.maxTerm); err != nil {
		return err
	}
	switch m.Type {
	case MsgAppend, MsgVote, MsgTimeoutNow:
		if m.Epoch.ID != m.From || m.Epoch.Term == 0 {
			return fmt.Errorf("%w: %s from %d at epoch %s, not in its own name", api.ErrInvalid, m.Type, m.From, m.Epoch)
		}
	}
	for _, e := range m.Entries {
		if m.Epoch.Less(e.Epoch) {
			return fmt.Errorf("%w: entry %d at epoch %s in an append of epoch %s", api.ErrInvalid, e.Index, e.Epoch, m.Epoch)
		}
	}
	return nil
}

// Step handles a message from another agent.
func (n *Node) Step(m Message) {
	if m.Group != n.cfg.Group || m.From == n.cfg.ID || m.From == 0 {
		return
	}
	if err := n.checkMessage(m); err != nil {
		n.noteRefused(fmt.Sprintf("%s from %d", m.Type, m.From), err)
		return
	}
	if m.Type != MsgVote {
		// A candidate's proposed epoch is not a mastership yet.
		n.seeEpoch(m.Epoch)
	} else {
		n.seeTerm(m.Epoch.Term)
	}
	switch m.Type {
	case MsgVote:
		n.handleVote(m)
	case MsgVoteResp:
		n.handleVoteResp(m)
	case MsgAppend:
		n.handleAppend(m)
	case MsgAppendResp:
		n.handleAppendResp(m)
	case MsgTrigger:
		n.rd.Events = append(n.rd.Events, Event{Kind: EventTriggered, From: m.From, Epoch: m.Epoch})
	case MsgTransferReq:
		n.handleTransferReq(m)
	case MsgTimeoutNow:
		if n.role == api.RoleBackup && m.From == n.master && m.Epoch == n.epoch {
			n.logger.Info("taking mastership over from the master", "master", m.From)
			n.transferring = true
			n.becomeCandidate()
		}
	}
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
		// A candidate grants only to a better-ranked candidate.
		grant = better(m.From, m.Priority, n.cfg.ID, n.cfg.Priority)
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
		if n.cfg.Mode == api.ModeStrict {
			// Lost once a majority is out of reach.
			if len(n.refusals) > max(n.groupSize(), n.cfg.Expect)-n.quorum() {
				n.becomeBackup(0, n.epoch)
			}
		} else {
			// Lost (available needs every member it reaches). Try again
			// after half a timeout, jittered: two candidates that keep
			// losing to each other's votes in lockstep (one granted by
			// the voters, the other the only up-to-date member) must drift
			// apart, so that one campaigns at a term the voters have not
			// voted in.
			n.becomeBackup(0, n.epoch)
			n.silent = n.cfg.ElectionTicks/2 - n.cfg.Rand.Intn(n.cfg.StaggerTicks/2+1)
		}
		if n.epoch.Less(m.Epoch) {
			// Someone follows a newer mastership than we knew of.
			n.becomeBackup(0, m.Epoch)
		}
		return
	}
	n.votes[m.From] = true
	n.maybeWin()
}

func (n *Node) handleAppend(m Message) {
	if m.Epoch.Less(n.epoch) {
		// Fencing: refuse an older epoch and tell the sender the newer one.
		n.send(Message{Type: MsgAppendResp, To: m.From, Reject: true, LastIndex: n.log.LastIndex(), Sent: m.Sent})
		n.rd.Events = append(n.rd.Events, Event{Kind: EventForeignEpoch, From: m.From, Epoch: m.Epoch})
		return
	}
	switch n.role {
	case api.RoleMaster:
		if m.Epoch == n.epoch {
			panic(fmt.Sprintf("core: two masters at epoch %s", n.epoch))
		}
		if m.From == n.transferTo {
			// The handover completed: follow the new master.
			n.becomeBackup(m.From, m.Epoch)
			break
		}
		// A newer master of our group: strict masters step down; available
		// ones leave the decision to the naming node (the self-monitor).
		n.rd.Events = append(n.rd.Events, Event{Kind: EventForeignEpoch, From: m.From, Epoch: m.Epoch})
		if n.cfg.Mode != api.ModeStrict {
			n.send(Message{Type: MsgAppendResp, To: m.From, Reject: true, Busy: true, LastIndex: n.log.LastIndex(), Sent: m.Sent})
			return
		}
		n.rd.Events = append(n.rd.Events, Event{Kind: EventDeposed, From: m.From, Epoch: m.Epoch})
		n.becomeBackup(m.From, m.Epoch)
	case api.RoleCandidate:
		if n.transferring && m.From == n.replacing && m.Epoch == n.epoch {
			// The master handing over to us still heartbeats until our
			// epoch reaches it: not a reason to give up.
			return
		}
		n.becomeBackup(m.From, m.Epoch)
	case api.RoleBackup:
		if m.Epoch != n.epoch || m.From != n.master {
			if n.cfg.Mode != api.ModeStrict && m.From != n.master && n.master != 0 && !n.masterSilent() {
				// Available: our master is alive, so another master means
				// inconsistent mastership; the naming node decides whom
				// to follow (the self-monitor), not the larger epoch.
				n.rd.Events = append(n.rd.Events, Event{Kind: EventForeignEpoch, From: m.From, Epoch: m.Epoch})
				n.send(Message{Type: MsgAppendResp, To: m.From, Reject: true, Busy: true, LastIndex: n.log.LastIndex(), Sent: m.Sent})
				return
			}
			n.becomeBackup(m.From, m.Epoch)
		}
	default:
		// Recovering, syncing or quarantined: note the master, take nothing
		// until recovery installs its state.
		if m.Epoch != n.epoch || m.From != n.master {
			n.epoch, n.master = m.Epoch, m.From
			n.hsChanged = true
			n.rd.RoleChanged = true
		}
		n.silent = 0
		n.send(Message{Type: MsgAppendResp, To: m.From, Reject: true, Busy: true, LastIndex: n.log.LastIndex(), Sent: m.Sent})
		return
	}
	n.silent = 0
	last := n.log.LastIndex()
	if m.PrevIndex > last && (last == 0 || m.PrevIndex-last > SyncThreshold || last < m.Base) {
		// New or far behind: download a snapshot rather than the log.
		n.needSync(m.From)
		return
	}
	if m.PrevIndex > last {
		// Behind: ask for what follows our last entry.
		n.send(Message{Type: MsgAppendResp, To: m.From, Reject: true, LastIndex: last, Sent: m.Sent})
		return
	}
	if h, ok, _ := n.log.HashAt(m.PrevIndex); !ok || h != m.PrevHash {
		if m.PrevIndex < n.log.Base().Index {
			if m.LastIndex < n.log.Base().Index {
				// The master's whole log ends below our snapshot: our
				// state holds entries it has not (a divergent side's,
				// installed from another master). Download its state.
				n.needSync(m.From)
				return
			}
			// Below our snapshot: only the part after it can be compared.
			n.send(Message{Type: MsgAppendResp, To: m.From, Reject: true, LastIndex: last, Sent: m.Sent})
			return
		}
		n.needSync(m.From)
		return
	}
	var fresh []rlog.Entry
	for i, e := range m.Entries {
		if e.Index <= n.log.LastIndex() {
			if h, ok, _ := n.log.HashAt(e.Index); ok && h == e.Hash {
				continue
			}
			// Our suffix from here differs from the master's.
			if e.Index <= n.applied {
				n.needSync(m.From)
				return
			}
			removed, err := n.log.TruncateAfter(e.Index - 1)
			if err != nil {
				n.needSync(m.From)
				return
			}
			t := e.Index - 1
			n.rd.Truncated = &t
			n.rd.Entries = nil
			// Not applied here, but this agent may have stamped and
			// acknowledged them as master before a restart: keep them.
			for _, r := range removed {
				if len(r.Op) > 0 {
					n.rd.Divergent = append(n.rd.Divergent, r)
				}
			}
		}
		fresh = m.Entries[i:]
		break
	}
	if len(fresh) > 0 {
		if err := n.log.Append(fresh...); err != nil {
			n.needSync(m.From)
			return
		}
		n.rd.Entries = append(n.rd.Entries, fresh...)
	}
	match := m.PrevIndex + uint64(len(m.Entries))
	if c := min(m.Commit, match); c > n.commit {
		n.commit = c
		n.apply()
	}
	n.caughtUp = match == m.LastIndex && n.commit >= m.Commit
	n.send(Message{Type: MsgAppendResp, To: m.From, Match: match, LastIndex: n.log.LastIndex(), Sent: m.Sent})
}

// needSync moves a back-up whose log left the master's to syncing: the
// runtime downloads the master's state (recovery steps 2 to 4, package
// recover).
func (n *Node) needSync(master uint64) {
	n.caughtUp = false
	n.setRole(api.RoleSyncing)
	n.rd.Sync = master
}

func (n *Node) handleAppendResp(m Message) {
	if n.role != api.RoleMaster {
		return
	}
	pr := n.progress[m.From]
	if pr == nil {
		return
	}
	pr.last = n.now
	if n.epoch.Less(m.Epoch) {
		n.rd.Events = append(n.rd.Events, Event{Kind: EventForeignEpoch, From: m.From, Epoch: m.Epoch})
		if n.cfg.Mode == api.ModeStrict {
			n.rd.Events = append(n.rd.Events, Event{Kind: EventDeposed, From: m.From, Epoch: m.Epoch})
			n.becomeBackup(0, m.Epoch)
		}
		return
	}
	if m.Epoch != n.epoch {
		return
	}
	if m.Reject {
		// Resume after the back-up's last entry, never past our own log.
		next := min(m.LastIndex, n.log.LastIndex()) + 1
		if pr.match > m.LastIndex {
			pr.match = m.LastIndex
		}
		back := next < pr.next && !m.Busy
		pr.next = next
		// Resend at once only when the back-up told us where to resume
		// from; one that keeps refusing (recovering, syncing, following
		// another master) hears from us at the next heartbeat, not in a
		// storm.
		if back {
			n.sendAppend(m.From)
		}
		return
	}
	pr.acked = max(pr.acked, m.Sent)
	if m.Match > pr.match {
		pr.match = m.Match
	}
	pr.next = max(pr.next, pr.match+1)
	n.maybeCommit()
	if m.From == n.transferTo {
		n.maybeTimeoutNow()
	}
}

// maybeCommit advances the commit index by the mode's rule, applies, and
// answers the proposals now applied.
func (n *Node) maybeCommit() {
	if n.role != api.RoleMaster {
		return
	}
	last := n.log.LastIndex()
	var c uint64
	switch n.cfg.Mode {
	case api.ModeStrict:
		matches := []uint64{last}
		for id, pr := range n.progress {
			if n.peers[id] != nil {
				matches = append(matches, pr.match)
			}
		}
		slices.Sort(matches)
		slices.Reverse(matches)
		q := n.quorum()
		if len(matches) >= q {
			c = matches[q-1]
		}
		// Only an entry of our own epoch commits by counting (and the ones
		// before it with it).
		if ep, err := n.log.EpochAt(c); err != nil || ep != n.epoch {
			c = n.commit
		}
	default:
		// Every reachable back-up holds it; a reachable back-up that does
		// not answer within WriteTicks is left behind to catch up.
		c = last
		for id, p := range n.peers {
			pr := n.progress[id]
			// Reachable: alive in the gossip view and heard from within
			// half the election timeout (gossip is slower to see a crash).
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
	}
	if c > n.commit {
		n.commit = c
		n.apply()
	}
}

func (n *Node) apply() {
	if n.commit <= n.applied {
		return
	}
	res, err := rlog.ApplyTo(n.sm, n.log, n.applied, n.commit)
	if err != nil {
		panic(fmt.Sprintf("core: apply %d..%d: %v", n.applied+1, n.commit, err))
	}
	from := n.applied + 1
	n.applied = n.commit
	if n.role != api.RoleMaster {
		return
	}
	keep := n.proposals[:0]
	for _, p := range n.proposals {
		if p.index <= n.applied {
			e, _ := n.log.Entry(p.index)
			n.rd.Results = append(n.rd.Results, Result{Ref: p.ref, Index: p.index, Epoch: e.Epoch, Result: res[p.index-from]})
		} else {
			keep = append(keep, p)
		}
	}
	n.proposals = keep
}

func (n *Node) failProposals(err error) {
	for _, p := range n.proposals {
		n.rd.Results = append(n.rd.Results, Result{Ref: p.ref, Index: p.index, Err: err})
	}
	n.proposals = nil
}

// Trigger sends a trigger to another agent (a competing claimant).
func (n *Node) Trigger(to uint64, reason string) {
	n.send(Message{Type: MsgTrigger, To: to, Reason: reason})
}

// BeginRecovery stops acting as master and follows the retained master
// (figure 10, act 1010: alignment). The agent serves nothing until
// InstallState or EndRecovery.
func (n *Node) BeginRecovery(master uint64) {
	if n.role == api.RoleMaster {
		n.failProposals(ErrNotMaster)
	}
	n.master = master
	n.hsChanged = true
	n.setRole(api.RoleRecovering)
}

// Quarantine stops serving after a failed recovery.
func (n *Node) Quarantine() {
	if n.role == api.RoleMaster {
		n.failProposals(ErrNotMaster)
	}
	n.setRole(api.RoleQuarantined)
}

// Log gives the runtime read access to the log (state download and fork
// search), from the owning goroutine only.
func (n *Node) Log() *rlog.Log { return n.log }

// StateMachine gives the runtime read access to the state machine.
func (n *Node) StateMachine() rlog.StateMachine { return n.sm }

// InstallState replaces the state machine and log with a master's state:
// snapshot at base, then the entries after it (figure 10, acts 1020-1030).
// The caller has verified the digest. The agent becomes a back-up of master
// at epoch, which must not be older than ours.
func (n *Node) InstallState(snapshot []byte, base rlog.Pos, entries []rlog.Entry, master uint64, epoch api.Epoch, commit uint64) error {
	if epoch.Less(n.epoch) {
		return fmt.Errorf("install state of epoch %s: older than ours %s", epoch, n.epoch)
	}
	if err := api.CheckTerm(epoch.Term, n.maxTerm); err != nil {
		return fmt.Errorf("install state of epoch %s: %w", epoch, err)
	}
	if epoch.ID != master {
		return fmt.Errorf("install state of epoch %s: not the epoch of master %d", epoch, master)
	}
	for _, e := range entries {
		if epoch.Less(e.Epoch) {
			return fmt.Errorf("install state of epoch %s: entry %d at the newer epoch %s", epoch, e.Index, e.Epoch)
		}
	}
	l := rlog.NewAt(base)
	if err := l.Append(entries...); err != nil {
		return fmt.Errorf("install log: %w", err)
	}
	if err := n.sm.Restore(snapshot); err != nil {
		return fmt.Errorf("restore snapshot: %w", err)
	}
	n.log = l
	n.applied = n.sm.Digest().Index
	n.commit = n.applied
	if c := min(commit, l.LastIndex()); c > n.commit {
		n.commit = c
		n.apply()
	}
	n.proposals = nil
	n.becomeBackup(master, epoch)
	return nil
}

// EndRecovery makes a recovering agent whose state already matches the
// master's a back-up of it.
func (n *Node) EndRecovery(master uint64, epoch api.Epoch) {
	if epoch.Less(n.epoch) {
		epoch = n.epoch
	}
	n.becomeBackup(master, epoch)
}

// Role is the current role.
func (n *Node) Role() api.Role { return n.role }

// Epoch is the epoch followed or held.
func (n *Node) Epoch() api.Epoch { return n.epoch }

// Master is the master followed (ourselves when master).
func (n *Node) Master() uint64 { return n.master }
