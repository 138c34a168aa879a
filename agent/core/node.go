package core

import (
	"cmp"
	"errors"
	"fmt"
	"math/rand"
	"slices"

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
	// whose registration could have lapsed, whose lease lapsed, or that
	// heard no majority for an election timeout; or any master holding
	// MaxPendingWrites or MaxPendingBytes of writes that wait to commit.
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
	// StartGraceTicks holds off the first campaign at start, until
	// EndGrace or this many ticks: an agent started together with others
	// first meets them (and the group's master, if there is one) rather
	// than elect itself alone.
	StartGraceTicks int
	// Gate makes every promotion wait for the runtime's promotion gate
	// (pre-promote): a new master neither serves nor registers until
	// Promote says it may; a veto makes it a back-up that campaigns for
	// nothing during GateBackoffTicks.
	Gate             bool
	GateBackoffTicks int
	// GateTimeoutTicks bounds the wait for Promote: past it the gate
	// counts as a veto (a runtime that never answers leaves no master
	// that serves nothing for ever). 0 means twice the election timeout.
	GateTimeoutTicks int
	// Expect is the group's intended size: a strict quorum is a majority
	// of at least this many members, whatever the view holds, so that an
	// agent that knows only itself (at start, or cut off) never makes a
	// majority of its own. Required (at least 1) in strict mode; 0 counts
	// the members in the view (available mode).
	Expect int
	// SnapshotEntries and SnapshotBytes schedule snapshots: once this
	// many entries, or this many bytes of operations, were applied since
	// the last snapshot, the core takes one of the state machine (Ready
	// Snapshot) and compacts its log behind it, keeping SnapshotWindow
	// entries for back-ups a little behind. 0 never snapshots on that
	// count.
	SnapshotEntries int
	SnapshotBytes   int
	// SnapshotWindow is how many applied entries the log keeps behind a
	// snapshot; 0 means SyncThreshold (a back-up further behind downloads
	// the state anyway).
	SnapshotWindow int
	// RetainEntries bounds what an available master keeps in its log,
	// behind the window, for members that may lack it: a master cut off
	// from part of its group commits without them, and should the other
	// side elect its own master, those entries are the divergent writes
	// that recovery turns into divergence records. Past the bound the
	// log is compacted anyway, and a recovery that finds the fork
	// compacted says so in its records. 0 means 16 x SnapshotEntries (at
	// least 10000).
	RetainEntries int
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
	// Unhealthy: the peer's service fails its health checks; it does not
	// campaign, and nobody ranks behind it or hands over to it.
	Unhealthy bool
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
	// Gate asks the runtime to run the promotion gate for this new
	// mastership and answer Promote (Config.Gate).
	Gate *api.Epoch
	// Sync asks the runtime to download the state of this master (a
	// lagging or divergent log).
	Sync   uint64
	Events []Event
	// Snapshot, when set, is a snapshot of the state machine the core
	// took on its schedule (Config.SnapshotEntries): the runtime stores
	// it, after this Ready's entries, as the new base of the stored log.
	Snapshot *Snapshot
}

// Snapshot is the state machine's state at Pos, the entry it applied
// last.
type Snapshot struct {
	Pos  rlog.Pos
	Data []byte
}

type progress struct {
	next, match uint64
	acked       uint64 // the latest Sent tick this peer echoed
	last        uint64 // the tick we last heard from it
	// inflight holds the last index of each append with entries sent to
	// this peer and not answered yet, ascending; at most maxInflight.
	inflight []uint64
}

// answered frees the in-flight appends that match covers.
func (pr *progress) answered(match uint64) {
	i := 0
	for i < len(pr.inflight) && pr.inflight[i] <= match {
		i++
	}
	pr.inflight = append(pr.inflight[:0], pr.inflight[i:]...)
}

type proposal struct {
	ref   uint64
	index uint64
	epoch api.Epoch // of its entry: the entry at index is this one only if its epoch is this
	tick  uint64
	size  int // bytes of the operation
}

// Node is one agent's replica core: roles, replication and elections. It is
// pure: no goroutines, clocks, sockets or disk; the runtime calls it from
// one goroutine and carries out its Ready.
type Node struct {
	cfg    Config
	rules  rules // the mode's, chosen in NewNode
	logger hclog.Logger
	sm     rlog.StateMachine
	log    *rlog.Log

	role api.Role
	// tick and step are the role's, set by setRole.
	tick    func()
	step    func(Message)
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

	peers map[uint64]*Peer
	// peerOrder is peers sorted by ID, nil until sortedPeers needs it.
	peerOrder []*Peer
	progress  map[uint64]*progress
	proposals []proposal
	// pendingBytes sums the operations of proposals (MaxPendingBytes).
	pendingBytes int
	// noQuorumSaid: a strict master refused a write for want of a
	// majority and said so once; it says when one answers again.
	noQuorumSaid bool

	registeredUntil uint64 // strict: tick until which the registration holds

	refused uint64 // messages and view epochs refused as out of range

	transferTo       uint64 // master: handing over to this back-up
	transferDeadline uint64
	// timeoutSent: master: the target was told to campaign (MsgTimeoutNow).
	// From then on its voters grant although they still hear us, so our
	// lease no longer fences anything: we serve nothing, and if the
	// handover times out we step down rather than serve again.
	timeoutSent  bool
	transferring bool // candidate: campaign started by MsgTimeoutNow
	// transferPin: master: the handover under way was asked by an
	// operator (a switchover); candidate: the MsgTimeoutNow that started
	// the campaign said so. pinned: master: in office through such a
	// handover. masterPinned: back-up: our master's appends say pinned.
	// Nobody asks a pinned master to hand over by priority: the operator's
	// choice holds until the next election.
	transferPin  bool
	pinned       bool
	masterPinned bool
	// gated: master: elected, waiting for the promotion gate; neither
	// serving nor registering. blockedUntil: a vetoed promotion campaigns
	// for nothing before this tick.
	gated        bool
	gateDeadline uint64
	blockedUntil uint64
	// leaving: the agent is stopping (SetLeaving): no campaign, no
	// handover asked or taken.
	leaving bool
	// unhealthy: our own service fails its health checks (SetHealthy).
	unhealthy bool
	// graceUntil: no campaign before this tick (the start-up grace).
	graceUntil uint64
	// paused: the group is in maintenance (SetPaused).
	paused bool
	// streamLost: back-up: our master's stream closed and nothing came
	// from it since (PeerStreamClosed).
	streamLost bool
	// caughtUp: back-up: the master's last append found our log equal to
	// its own, committed as far; only then do we ask for a handover.
	caughtUp bool

	rd        Ready
	hsChanged bool
	// snapIndex is where the last snapshot was taken (or the log's base at
	// start); sinceBytes counts the bytes of operations applied after it.
	snapIndex  uint64
	sinceBytes int
	// compactWanted is the index a snapshot must reach for the storage
	// to free a whole log segment (CompactWanted); 0 when none.
	compactWanted uint64
	snapshots     uint64
	// masterHeld is the Held of our master's latest append (available
	// mode): what every member holds, by its account.
	masterHeld uint64
	// scratch is reused by the quorum computations (commit, lease), which
	// run at every answer.
	scratch []uint64
	// appendPending: proposals were appended since the last Ready; it
	// sends them to every back-up in one append each.
	appendPending bool
}

// NewNode returns a back-up core over a state machine and a log restored
// from storage. applied is the state machine's applied index.
func NewNode(cfg Config, sm rlog.StateMachine, log *rlog.Log, hs HardState) *Node {
	if cfg.Rand == nil {
		panic("core: Config.Rand is required")
	}
	if cfg.Mode == api.ModeStrict && cfg.Expect < 1 {
		// A strict quorum counted from the view alone is one of one at
		// start-up: every agent would elect itself (config refuses it).
		panic("core: a strict node needs Config.Expect, the group's fixed size")
	}
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	n := &Node{
		cfg:        cfg,
		rules:      rulesFor(cfg.Mode),
		role:       api.RoleBackup,
		logger:     cfg.Logger,
		sm:         sm,
		log:        log,
		epoch:      hs.Epoch,
		master:     hs.Master,
		vote:       hs.Vote,
		maxTerm:    max(hs.MaxTerm, hs.Epoch.Term, hs.Vote.Term),
		peers:      make(map[uint64]*Peer),
		progress:   make(map[uint64]*progress),
		graceUntil: uint64(max(cfg.StartGraceTicks, 0)),
	}
	n.setRole(api.RoleBackup) // the role's tick and step
	n.rd.RoleChanged = false
	n.applied = sm.Digest().Index
	n.commit = n.applied
	n.snapIndex = log.Base().Index
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
	// Pinned: a master in office through an operator's switchover; nobody
	// asks it to hand over by priority until the next election.
	Pinned bool
	// Unhealthy: our own service fails its health checks (SetHealthy).
	Unhealthy bool
	// HandoverHeld: we ask for no handover now, whatever our rank: a
	// vetoed promotion's back-off runs, the group is paused, or the agent
	// is stopping.
	HandoverHeld bool
	// Refused counts messages and view entries refused for an epoch out of
	// range or inconsistent with their sender.
	Refused uint64
	// Gated: a master elected but waiting for its promotion gate; it
	// serves nothing yet and has not registered.
	Gated bool
	// SnapshotIndex is the index of the latest snapshot (taken on the
	// schedule, installed, or loaded at start); Snapshots counts those
	// taken on the schedule since start. LogBase is the index the
	// in-memory log starts after, LogEntries how many entries it holds.
	// PendingWrites and PendingBytes: the proposals a master holds
	// unanswered, and the bytes of their operations (MaxPendingWrites,
	// MaxPendingBytes).
	PendingWrites int
	PendingBytes  int
	SnapshotIndex uint64
	Snapshots     uint64
	LogBase       uint64
	LogEntries    int
}

// Match is how far one back-up's log is known to agree with its master's.
type Match struct {
	ID    uint64
	Match uint64
}

// Matches lists, on a master, each back-up it replicates to with the last
// index known to match its own log, by ID; nil on any other role. For the
// runtime's metrics: the lag of a back-up is Status().Last minus its match.
func (n *Node) Matches() []Match {
	if n.role != api.RoleMaster {
		return nil
	}
	out := make([]Match, 0, len(n.progress))
	for id, pr := range n.progress {
		out = append(out, Match{ID: id, Match: pr.match})
	}
	slices.SortFunc(out, func(a, b Match) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

// Status describes the core now.
func (n *Node) Status() Status {
	return Status{ID: n.cfg.ID, Role: n.role, Epoch: n.epoch, Master: n.master, Commit: n.commit,
		Applied: n.applied, Last: n.log.LastIndex(), Digest: n.sm.Digest(), MaxTerm: n.maxTerm, MaxEpoch: n.maxEpoch.Max(n.epoch),
		Serving: n.serving(), Priority: n.cfg.Priority, Transfer: n.transferTo, CaughtUp: n.role == api.RoleBackup && n.caughtUp, Refused: n.refused,
		Pinned: n.role == api.RoleMaster && n.pinned, Unhealthy: n.unhealthy, HandoverHeld: n.handoverHeld(),
		Gated: n.role == api.RoleMaster && n.gated, SnapshotIndex: n.snapIndex, Snapshots: n.snapshots,
		LogBase: n.log.Base().Index, LogEntries: n.log.Len(), PendingWrites: len(n.proposals), PendingBytes: n.pendingBytes}
}

// Ready returns what the runtime must do and clears it.
//
// A master's new entries that nothing in this Ready needs stay for a later
// one: no message carries them (every back-up that could take them has
// them, or its flow control holds them) and none is committed. They are
// stored in the Ready that first sends or commits them, before it is sent
// or answered, so persist-before-send and answer-after-commit hold as
// before; until then no copy of them exists outside this node's memory,
// and a crash loses only proposals that were never answered. Under load
// the master thus stores each round's writes with one fsync when a
// back-up's answer lets them go out, instead of one fsync per proposal
// that then waits in memory for that answer anyway.
func (n *Node) Ready() Ready {
	if n.appendPending {
		n.appendPending = false
		if n.role == api.RoleMaster {
			n.broadcastEntries()
		}
	}
	if n.hsChanged {
		hs := n.hardState()
		n.rd.HardState = &hs
		n.hsChanged = false
	}
	rd := n.rd
	n.rd = Ready{}
	if n.role == api.RoleMaster && rd.Truncated == nil && len(rd.Entries) > 0 {
		need := n.commit
		for _, m := range rd.Messages {
			if k := len(m.Entries); k > 0 {
				need = max(need, m.Entries[k-1].Index)
			}
		}
		i, _ := slices.BinarySearchFunc(rd.Entries, need+1, func(e rlog.Entry, idx uint64) int { return cmp.Compare(e.Index, idx) })
		if i < len(rd.Entries) {
			// No copy (a long hold would copy its tail at every Ready):
			// the runtime's part is capped at i, and what the core appends
			// or filters in place lies past it.
			n.rd.Entries = rd.Entries[i:]
			rd.Entries = rd.Entries[:i:i]
		}
	}
	return rd
}

// Stored is the last index of the log handed to the runtime to store: the
// entries after it wait in the next Ready (see Ready).
func (n *Node) Stored() uint64 {
	last := n.log.LastIndex()
	if t := n.rd.Truncated; t != nil {
		last = min(last, *t)
	}
	if len(n.rd.Entries) > 0 {
		last = min(last, n.rd.Entries[0].Index-1)
	}
	return last
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
	n.peerOrder = nil
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

// Tick advances the core's clock by one tick.
func (n *Node) Tick() {
	n.now++
	n.tick()
}

// sortedPeers returns the peers by ID. It is kept until the view changes
// (SetView): the master walks it at every batch it sends. The caller must
// not modify it.
func (n *Node) sortedPeers() []*Peer {
	if n.peerOrder == nil {
		ps := make([]*Peer, 0, len(n.peers))
		for _, p := range n.peers {
			ps = append(ps, p)
		}
		slices.SortFunc(ps, func(a, b *Peer) int { return cmp.Compare(a.ID, b.ID) })
		n.peerOrder = ps
	}
	return n.peerOrder
}

// SeeEpoch tells the core of an epoch learnt outside the group's messages
// (the naming node's registration), so that its next campaign or
// reassertion is above it.
func (n *Node) SeeEpoch(e api.Epoch) { n.seeEpoch(e) }

// Now is the core's tick count.
func (n *Node) Now() uint64 { return n.now }

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
	case MsgTrigger:
		n.rd.Events = append(n.rd.Events, Event{Kind: EventTriggered, From: m.From, Epoch: m.Epoch})
	case MsgAppend:
		if m.Epoch.Less(n.epoch) {
			// Fencing: refuse an older epoch and tell the sender the newer one.
			n.send(Message{Type: MsgAppendResp, To: m.From, Reject: true, LastIndex: n.log.LastIndex(), Sent: m.Sent})
			n.rd.Events = append(n.rd.Events, Event{Kind: EventForeignEpoch, From: m.From, Epoch: m.Epoch})
			return
		}
		n.step(m)
	default:
		n.step(m)
	}
}

// Trigger sends a trigger to another agent (a competing claimant).
func (n *Node) Trigger(to uint64, reason string) {
	n.send(Message{Type: MsgTrigger, To: to, Reason: reason})
}

// Log gives the runtime read access to the log (state download and fork
// search), from the owning goroutine only.
func (n *Node) Log() *rlog.Log { return n.log }

// StateMachine gives the runtime read access to the state machine.
func (n *Node) StateMachine() rlog.StateMachine { return n.sm }

// Role is the current role.
func (n *Node) Role() api.Role { return n.role }

// Epoch is the epoch followed or held.
func (n *Node) Epoch() api.Epoch { return n.epoch }

// Master is the master followed (ourselves when master).
func (n *Node) Master() uint64 { return n.master }
