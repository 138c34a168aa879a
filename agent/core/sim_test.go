package core

import (
	"fmt"
	"math/rand"
	"sort"
	"strings"
	"testing"

	"github.com/mastership/mastership/agent/kv"
	"github.com/mastership/mastership/agent/rlog"
	"github.com/mastership/mastership/naming/api"
)

// simNet is a simulated group for the pure core: delivery happens when the
// test says so, membership views follow the cuts (as gossip would), and
// state downloads copy the master's state as the runtime would.
type simNet struct {
	t    *testing.T
	mode api.Mode
	gate bool // every promotion waits for a promote command
	sick map[uint64]bool
	// ghost: nodes every view still holds alive whatever (gossip has not
	// noticed them down yet).
	ghost   map[uint64]bool
	grace   int // StartGraceTicks of every node
	nodes   map[uint64]*Node
	stores  map[uint64]*kv.Store
	prio    map[uint64]int
	down    map[uint64]bool
	cut     map[[2]uint64]bool
	queue   []Message
	counts  map[MsgType]int
	results map[uint64]Result
	nextRef uint64
	events  map[uint64][]Event
	expect  int

	// trace, when set, receives what happens, for scenario files: role
	// changes, events, results, downloads, and (while traceMsgs) every
	// message delivered or dropped.
	trace func(string)
	// snapEntries and snapWindow configure the nodes' snapshots; snaps
	// keeps the snapshots each node's Ready asked to store.
	snapEntries, snapWindow, retain int
	snaps                           map[uint64][]Snapshot
	traceMsgs                       bool
	last                            map[uint64]string // the last role line traced per agent
	// holdDownloads keeps each download a node asks for pending (pending:
	// node to master) until the test installs or fails it, as a runtime
	// whose download takes a while: the node stays syncing meanwhile.
	// Otherwise a download installs the master's state at once.
	holdDownloads bool
	pending       map[uint64]uint64
	// stored is each node's last stored index, as the runtime's storage
	// would hold it after each Ready (checkStored).
	stored map[uint64]uint64
}

func (s *simNet) tracef(format string, args ...any) {
	if s.trace != nil {
		s.trace(fmt.Sprintf(format, args...))
	}
}

// noteRole traces id's role, epoch and master when they changed.
func (s *simNet) noteRole(id uint64) {
	if s.trace == nil {
		return
	}
	n := s.nodes[id]
	line := fmt.Sprintf("%d: %s epoch=%s master=%d", id, n.Role(), n.Epoch(), n.Master())
	if s.last[id] != line {
		s.last[id] = line
		s.tracef("%s", line)
	}
}

func newSim(t *testing.T, mode api.Mode, prios ...int) *simNet {
	return newSimGated(t, mode, false, prios...)
}

func newSimGated(t *testing.T, mode api.Mode, gate bool, prios ...int) *simNet {
	return newSimWith(t, mode, gate, 0, prios...)
}

func newSimWith(t *testing.T, mode api.Mode, gate bool, grace int, prios ...int) *simNet {
	return newSimSnap(t, mode, gate, grace, 0, 0, prios...)
}

// newSimSnap is newSimWith with snapshots every snapEntries entries, the
// log keeping window entries behind each.
func newSimSnap(t *testing.T, mode api.Mode, gate bool, grace, snapEntries, window int, prios ...int) *simNet {
	s := &simNet{snapEntries: snapEntries, snapWindow: window, snaps: map[uint64][]Snapshot{}, t: t, mode: mode, gate: gate, sick: map[uint64]bool{}, ghost: map[uint64]bool{}, grace: grace, nodes: map[uint64]*Node{}, stores: map[uint64]*kv.Store{}, prio: map[uint64]int{},
		down: map[uint64]bool{}, cut: map[[2]uint64]bool{}, counts: map[MsgType]int{}, results: map[uint64]Result{},
		events: map[uint64][]Event{}, last: map[uint64]string{}, pending: map[uint64]uint64{}, stored: map[uint64]uint64{}}
	if mode == api.ModeStrict {
		// As the configuration requires: a strict group's size is fixed.
		s.expect = len(prios)
	}
	for i, p := range prios {
		s.add(uint64(i+1), p)
	}
	s.updateViews()
	return s
}

func (s *simNet) add(id uint64, prio int) {
	st := kv.NewStore()
	s.stores[id] = st
	s.prio[id] = prio
	s.nodes[id] = NewNode(Config{ID: id, Group: "g", Priority: prio, Mode: s.mode, HeartbeatTicks: 2, ElectionTicks: 10,
		StaggerTicks: 5, WriteTicks: 20, Expect: s.expect, Rand: rand.New(rand.NewSource(int64(id))),
		Gate: s.gate, GateBackoffTicks: 100, GateTimeoutTicks: 1000, StartGraceTicks: s.grace,
		SnapshotEntries: s.snapEntries, SnapshotWindow: s.snapWindow, RetainEntries: s.retain}, st, rlog.New(), HardState{})
}

func (s *simNet) linked(a, b uint64) bool {
	return !s.down[a] && !s.down[b] && !s.cut[[2]uint64{a, b}] && !s.cut[[2]uint64{b, a}]
}

func (s *simNet) ids() []uint64 {
	var ids []uint64
	for id := range s.nodes {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	return ids
}

func (s *simNet) updateViews() {
	for _, id := range s.ids() {
		var view []Peer
		for _, o := range s.ids() {
			view = append(view, Peer{ID: o, Priority: s.prio[o], Alive: s.linked(id, o) || s.ghost[o], Epoch: s.nodes[o].Epoch(), Unhealthy: s.sick[o]})
		}
		s.nodes[id].SetView(view)
		s.drain(id)
	}
}

// partition cuts every link between the two sides.
func (s *simNet) partition(a, b []uint64) {
	for _, x := range a {
		for _, y := range b {
			s.cut[[2]uint64{x, y}] = true
		}
	}
	s.updateViews()
}

func (s *simNet) heal() {
	s.cut = map[[2]uint64]bool{}
	s.updateViews()
}

func (s *simNet) drain(id uint64) {
	n := s.nodes[id]
	rd := n.Ready()
	s.checkStored(id, rd)
	s.checkProposals(id, rd)
	for _, m := range rd.Messages {
		s.counts[m.Type]++
		s.queue = append(s.queue, m)
	}
	for i := 0; i < len(rd.Results); i++ {
		r := rd.Results[i]
		s.results[r.Ref] = r
		if r.Err != nil {
			s.tracef("%d: ref %d failed: %v", id, r.Ref, r.Err)
			continue
		}
		// A run of writes applied in order, one line.
		j := i
		for j+1 < len(rd.Results) {
			q := rd.Results[j+1]
			if q.Err != nil || q.Ref != rd.Results[j].Ref+1 || q.Index != rd.Results[j].Index+1 || q.Epoch != r.Epoch {
				break
			}
			j++
			s.results[q.Ref] = q
		}
		if j == i {
			s.tracef("%d: ref %d applied at %d (epoch %s)", id, r.Ref, r.Index, r.Epoch)
		} else {
			s.tracef("%d: refs %d..%d applied at %d..%d (epoch %s)", id, r.Ref, rd.Results[j].Ref, r.Index, rd.Results[j].Index, r.Epoch)
		}
		i = j
	}
	s.events[id] = append(s.events[id], rd.Events...)
	for _, e := range rd.Events {
		s.tracef("%d: event %s from %d at %s", id, e.Kind, e.From, e.Epoch)
	}
	if rd.Gate != nil {
		s.tracef("%d: promotion gate for epoch %s", id, *rd.Gate)
	}
	if rd.Register != nil && s.gate {
		s.tracef("%d: registers at epoch %s", id, *rd.Register)
	}
	if rd.Snapshot != nil {
		s.snaps[id] = append(s.snaps[id], *rd.Snapshot)
		s.tracef("%d: snapshot at %d", id, rd.Snapshot.Pos.Index)
	}
	s.noteRole(id)
	if rd.Sync != 0 {
		if s.holdDownloads {
			s.pending[id] = rd.Sync
			s.tracef("%d: starts downloading the state of %d", id, rd.Sync)
		} else {
			s.tracef("%d: downloads the state of %d", id, rd.Sync)
			s.sync(id, rd.Sync)
			s.noteRole(id)
		}
	}
}

// checkProposals fails the test when a node holds proposals it can no
// longer answer for (it is no master, nor a candidate re-electing itself,
// that is replacing itself), when its pending bytes are not those of its
// proposals, or when it answers a write as done with an entry that is not
// that write (the simulator's writes carry client 1 and their ref as
// sequence).
func (s *simNet) checkProposals(id uint64, rd Ready) {
	n := s.nodes[id]
	if len(n.proposals) > 0 && n.role != api.RoleMaster && (n.role != api.RoleCandidate || n.replacing != id) {
		s.t.Fatalf("%d is %s (replacing %d) and holds %d proposals", id, n.role, n.replacing, len(n.proposals))
	}
	sum := 0
	for _, p := range n.proposals {
		sum += p.size
	}
	if sum != n.pendingBytes {
		s.t.Fatalf("%d: pending bytes %d, its proposals hold %d", id, n.pendingBytes, sum)
	}
	for _, r := range rd.Results {
		if r.Err != nil {
			continue
		}
		if e, err := n.log.Entry(r.Index); err == nil && (e.Client != 1 || e.Seq != r.Ref || e.Epoch != r.Epoch) {
			s.t.Fatalf("%d answered write %d as done at %d, whose entry is client %d seq %d at %s", id, r.Ref, r.Index, e.Client, e.Seq, e.Epoch)
		}
	}
}

// checkStored stores rd's entries in s.stored as the runtime would, and
// fails the test when rd sends, acknowledges or answers an entry that is
// not stored once rd is (persist before send, answer after commit), hands
// mastership over with entries unstored, or stores entries that do not
// extend what is stored.
func (s *simNet) checkStored(id uint64, rd Ready) {
	st := s.stored[id]
	if rd.Truncated != nil {
		st = min(st, *rd.Truncated)
	}
	if len(rd.Entries) > 0 {
		if rd.Entries[0].Index != st+1 {
			s.t.Fatalf("%d: Ready stores entries from %d, but the stored log ends at %d", id, rd.Entries[0].Index, st)
		}
		st = rd.Entries[len(rd.Entries)-1].Index
	}
	s.stored[id] = st
	for _, m := range rd.Messages {
		if k := len(m.Entries); k > 0 && m.Entries[k-1].Index > st {
			s.t.Fatalf("%d: sends entries up to %d to %d, stored only up to %d", id, m.Entries[k-1].Index, m.To, st)
		}
		if m.Type == MsgAppendResp && !m.Reject && m.Match > st {
			s.t.Fatalf("%d: acknowledges entries up to %d to %d, stored only up to %d", id, m.Match, m.To, st)
		}
		if m.Type == MsgTimeoutNow && s.nodes[id].Log().LastIndex() > st {
			s.t.Fatalf("%d: tells %d to campaign with its log at %d, stored only up to %d", id, m.To, s.nodes[id].Log().LastIndex(), st)
		}
	}
	for _, r := range rd.Results {
		if r.Err == nil && r.Index > st {
			s.t.Fatalf("%d: answers the write at %d, stored only up to %d", id, r.Index, st)
		}
	}
	if got := s.nodes[id].Stored(); got != st {
		s.t.Fatalf("%d: Stored() = %d, the runtime stored up to %d", id, got, st)
	}
}

// sync installs the master's state on id, as the runtime's download does,
// and says whether it did.
func (s *simNet) sync(id, master uint64) bool {
	m := s.nodes[master]
	if !s.linked(id, master) || m.Role() != api.RoleMaster {
		return false
	}
	snap, err := m.StateMachine().Snapshot()
	if err != nil {
		s.t.Fatal(err)
	}
	base, _ := m.Log().PosAt(m.applied)
	// What the master stored, as the runtime serves it (CaptureState).
	ents, _ := m.Log().Slice(m.applied+1, max(m.Stored(), m.applied)+1)
	err = s.nodes[id].InstallState(snap, base, ents, master, m.Epoch(), m.commit)
	if err != nil {
		s.t.Logf("sync %d from %d: %v", id, master, err)
	} else {
		s.stored[id] = s.nodes[id].Log().LastIndex() // the runtime stores the installed log itself
	}
	if got, want := s.stores[id].Digest(), s.stores[master].Digest(); got != want {
		s.t.Fatalf("digest after sync %v != master's %v", got, want)
	}
	return err == nil
}

// deliver sends every queued message that can cross, until none is left.
func (s *simNet) deliver() {
	for steps := 0; len(s.queue) > 0; steps++ {
		m := s.queue[0]
		if steps > 100000 {
			s.t.Fatalf("messages never stop: %s", m)
		}
		s.queue = s.queue[1:]
		s.deliverOne(m)
	}
}

// deliverFirst delivers the first n queued messages only; what they cause
// stays queued.
func (s *simNet) deliverFirst(n int) {
	batch := s.queue[:min(n, len(s.queue))]
	s.queue = s.queue[len(batch):]
	for _, m := range batch {
		s.deliverOne(m)
	}
}

// deliverOne steps m's receiver if m can cross.
func (s *simNet) deliverOne(m Message) {
	if !s.linked(m.From, m.To) || s.nodes[m.To] == nil {
		if s.traceMsgs {
			s.tracef("dropped %s", m)
		}
		return
	}
	if s.traceMsgs {
		s.tracef("%s", m)
	}
	s.nodes[m.To].Step(m)
	s.drain(m.To)
}

func (s *simNet) tick(n int) {
	for i := 0; i < n; i++ {
		for _, id := range s.ids() {
			if s.down[id] {
				continue
			}
			s.nodes[id].Tick()
			s.drain(id)
		}
		s.deliver()
		s.updateViews()
	}
}

func (s *simNet) masters() []uint64 {
	var ms []uint64
	for _, id := range s.ids() {
		if !s.down[id] && s.nodes[id].Role() == api.RoleMaster {
			ms = append(ms, id)
		}
	}
	return ms
}

func (s *simNet) put(master uint64, key, val string) (uint64, error) {
	s.nextRef++
	op, _ := kv.EncodeOp(kv.Op{Kind: kv.KindPut, Key: key, Value: []byte(val)})
	n := s.nodes[master]
	if n.cfg.Mode == api.ModeStrict {
		n.Registered(n.Epoch(), true, n.Now()+1000)
	}
	err := n.Propose(s.nextRef, 1, s.nextRef, op)
	s.drain(master)
	return s.nextRef, err
}

func TestElectionPicksHighestPriorityWithLinearMessages(t *testing.T) {
	for _, mode := range []api.Mode{api.ModeStrict, api.ModeAvailable} {
		t.Run(string(mode), func(t *testing.T) {
			s := newSim(t, mode, 1, 5, 3, 2, 4)
			s.tick(60)
			if ms := s.masters(); len(ms) != 1 || ms[0] != 2 {
				t.Fatalf("masters %v, want [2] (highest priority)", ms)
			}
			n := len(s.nodes)
			if s.counts[MsgVote] != n-1 || s.counts[MsgVoteResp] != n-1 {
				t.Fatalf("election took %d votes and %d replies, want %d each (O(N))", s.counts[MsgVote], s.counts[MsgVoteResp], n-1)
			}
			for _, id := range s.ids() {
				if got := s.nodes[id].Master(); got != 2 {
					t.Errorf("agent %d follows %d", id, got)
				}
			}
		})
	}
}

func TestReplicationAndDigests(t *testing.T) {
	for _, mode := range []api.Mode{api.ModeStrict, api.ModeAvailable} {
		t.Run(string(mode), func(t *testing.T) {
			s := newSim(t, mode, 5, 4, 3, 2, 1)
			s.tick(30)
			for i := 0; i < 20; i++ {
				ref, err := s.put(1, fmt.Sprintf("k%d", i), "v")
				if err != nil {
					t.Fatal(err)
				}
				s.deliver()
				if r, ok := s.results[ref]; !ok || r.Err != nil {
					t.Fatalf("write %d not acknowledged: %+v", i, r)
				}
			}
			s.tick(5)
			want := s.stores[1].Digest()
			for _, id := range s.ids() {
				if got := s.stores[id].Digest(); got != want {
					t.Errorf("agent %d digest %v, master %v", id, got, want)
				}
			}
		})
	}
}

func TestFailoverKeepsAcknowledgedWrites(t *testing.T) {
	s := newSim(t, api.ModeStrict, 5, 4, 3, 2, 1)
	s.tick(30)
	var acked []uint64
	for i := 0; i < 10; i++ {
		ref, _ := s.put(1, fmt.Sprintf("k%d", i), "v")
		s.deliver()
		if r := s.results[ref]; r.Err == nil && r.Index > 0 {
			acked = append(acked, ref)
		}
	}
	s.down[1] = true
	s.updateViews()
	s.tick(40)
	if ms := s.masters(); len(ms) != 1 || ms[0] != 2 {
		t.Fatalf("after master kill: masters %v, want [2]", ms)
	}
	for i := 0; i < 10; i++ {
		if _, ok := s.stores[2].Get(fmt.Sprintf("k%d", i)); !ok {
			t.Fatalf("acknowledged write k%d lost", i)
		}
	}
	if !s.nodes[1].Epoch().Less(s.nodes[2].Epoch()) {
		t.Fatalf("new epoch %s not newer than %s", s.nodes[2].Epoch(), s.nodes[1].Epoch())
	}
}

func TestStrictMinorityCannotElect(t *testing.T) {
	s := newSim(t, api.ModeStrict, 5, 4, 3, 2, 1)
	s.tick(30)
	s.partition([]uint64{1, 2, 3}, []uint64{4, 5})
	s.tick(200)
	if ms := s.masters(); len(ms) != 1 || ms[0] != 1 {
		t.Fatalf("masters %v, want only 1", ms)
	}
	// Nor after the majority's master dies: {2,3} is not a majority of 5.
	s.down[1] = true
	s.updateViews()
	s.tick(200)
	if ms := s.masters(); len(ms) != 0 {
		t.Fatalf("masters %v with no majority", ms)
	}
}

func TestAvailableBothSidesElect(t *testing.T) {
	s := newSim(t, api.ModeAvailable, 5, 4, 3, 2, 1)
	s.tick(30)
	s.partition([]uint64{1, 2, 3}, []uint64{4, 5})
	s.tick(100)
	if ms := s.masters(); len(ms) != 2 || ms[0] != 1 || ms[1] != 4 {
		t.Fatalf("masters %v, want [1 4]: split brain", ms)
	}
	ref, err := s.put(4, "minority", "x")
	s.deliver()
	if err != nil || s.results[ref].Err != nil {
		t.Fatalf("minority write: %v %+v", err, s.results[ref])
	}
	// After the heal each master sees the other's epoch: the event trigger.
	s.heal()
	s.tick(10)
	if len(s.events[1]) == 0 || len(s.events[4]) == 0 {
		t.Fatalf("no foreign-epoch events: %v / %v", s.events[1], s.events[4])
	}
}

func TestNewAgentSyncsFromMaster(t *testing.T) {
	s := newSim(t, api.ModeAvailable, 5, 4, 3)
	s.tick(30)
	for i := 0; i < 600; i++ {
		s.put(1, fmt.Sprintf("k%d", i), "v")
		s.deliver()
	}
	s.add(9, 0)
	s.updateViews()
	s.tick(10)
	if got, want := s.stores[9].Digest(), s.stores[1].Digest(); got != want {
		t.Fatalf("new agent digest %v, master %v", got, want)
	}
	if s.nodes[9].Role() != api.RoleBackup || s.nodes[9].Master() != 1 {
		t.Fatalf("new agent is %s following %d", s.nodes[9].Role(), s.nodes[9].Master())
	}
}

func TestOlderEpochIsRefused(t *testing.T) {
	s := newSim(t, api.ModeStrict, 3, 2, 1)
	s.tick(30)
	old := s.nodes[1].Epoch()
	s.partition([]uint64{1}, []uint64{2, 3})
	s.tick(60)
	if ms := s.masters(); len(ms) != 2 {
		t.Fatalf("masters %v, want the stale 1 and the new 2", ms)
	}
	if s.nodes[1].serving() {
		t.Fatal("isolated strict master still serving after its lease")
	}
	// The stale master's append reaches a back-up of the new one.
	s.heal()
	s.nodes[3].Step(Message{Type: MsgAppend, Group: "g", From: 1, To: 3, Epoch: old, PrevIndex: 0})
	rd := s.nodes[3].Ready()
	if len(rd.Messages) != 1 || !rd.Messages[0].Reject || rd.Messages[0].Epoch != s.nodes[2].Epoch() {
		t.Fatalf("reply to stale append: %+v", rd.Messages)
	}
	s.queue = append(s.queue, rd.Messages...)
	s.deliver()
	s.tick(5)
	if s.nodes[1].Role() == api.RoleMaster {
		t.Fatal("stale strict master did not step down")
	}
}

// A planned handover (figure 10, act 1080): an in-sync back-up asks; the
// master stops taking writes, tells it to campaign once it holds every
// entry, and steps down when the new epoch reaches it. No write is lost.
func TestPlannedHandover(t *testing.T) {
	for _, mode := range []api.Mode{api.ModeStrict, api.ModeAvailable} {
		t.Run(string(mode), func(t *testing.T) {
			// 3 ranks first but is down while 1 is elected; once back and
			// in sync it asks for mastership.
			s := newSim(t, mode, 5, 4, 9)
			s.down[3] = true
			s.updateViews()
			s.tick(30)
			for i := 0; i < 5; i++ {
				s.put(1, fmt.Sprintf("k%d", i), "v")
				s.deliver()
			}
			s.down[3] = false
			s.updateViews()
			s.tick(1)
			if s.nodes[3].HandoverCandidate() {
				t.Fatal("a back-up that has not caught up is a handover candidate: the master would stop taking writes for it")
			}
			s.tick(12)
			if ms := s.masters(); len(ms) != 1 || ms[0] != 1 || s.nodes[3].Master() != 1 {
				t.Fatalf("masters %v, 3 follows %d; want 1", ms, s.nodes[3].Master())
			}
			if !s.nodes[3].RequestHandover() {
				t.Fatal("the best-ranked back-up did not ask for a handover")
			}
			s.drain(3)
			s.deliver()
			// While the handover runs, the old master takes no writes.
			if _, err := s.put(1, "during", "x"); err == nil && s.nodes[1].Role() == api.RoleMaster {
				t.Fatal("the handing-over master took a write")
			}
			s.tick(10)
			if ms := s.masters(); len(ms) != 1 || ms[0] != 3 {
				t.Fatalf("masters after handover %v, want [3]", ms)
			}
			for _, id := range s.ids() {
				if s.nodes[id].Master() != 3 {
					t.Errorf("agent %d follows %d", id, s.nodes[id].Master())
				}
			}
			for i := 0; i < 5; i++ {
				if _, ok := s.stores[3].Get(fmt.Sprintf("k%d", i)); !ok {
					t.Fatalf("write k%d lost in the handover", i)
				}
			}
			if !s.nodes[1].Epoch().Less(s.nodes[3].Epoch()) && s.nodes[1].Epoch() != s.nodes[3].Epoch() {
				t.Fatalf("epochs: old %s new %s", s.nodes[1].Epoch(), s.nodes[3].Epoch())
			}
		})
	}
}

// Who asks for a handover, and whom the master hands over to: the one
// best-ranked live agent, only above the master's priority; ties never
// hand over; a handover under way is not redirected.
// masterFirst elects 1 while 2 and 3 are down, then brings them back.
func masterFirst(t *testing.T, s *simNet) {
	t.Helper()
	s.down[2], s.down[3] = true, true
	s.updateViews()
	s.tick(30)
	s.down[2], s.down[3] = false, false
	s.updateViews()
	s.tick(12)
	if ms := s.masters(); len(ms) != 1 || ms[0] != 1 {
		t.Fatalf("masters %v, want [1]", ms)
	}
}

func TestHandoverRules(t *testing.T) {
	s := newSim(t, api.ModeAvailable, 5, 5, 5)
	s.tick(30)
	if ms := s.masters(); len(ms) != 1 || ms[0] != 1 {
		t.Fatalf("masters %v, want [1]", ms)
	}
	for _, id := range []uint64{2, 3} {
		if s.nodes[id].HandoverCandidate() || s.nodes[id].RequestHandover() {
			t.Errorf("agent %d asks for a handover at equal priorities", id)
		}
	}

	// 2 and 3 rank above the master: only the first of them (3, priority
	// 9) asks; a request from 2 is refused by the master.
	s = newSim(t, api.ModeAvailable, 5, 7, 9)
	masterFirst(t, s)
	if s.nodes[2].HandoverCandidate() {
		t.Error("agent 2 is a handover candidate although 3 ranks first")
	}
	if !s.nodes[3].HandoverCandidate() {
		t.Error("agent 3, first by priority, is no handover candidate")
	}
	// A forged request from 2 (it would not send one): refused.
	s.nodes[1].Step(Message{Type: MsgTransferReq, Group: "g", From: 2, To: 1, Epoch: s.nodes[2].Epoch(), Priority: 7})
	s.drain(1)
	if st := s.nodes[1].Status(); st.Transfer != 0 {
		t.Fatalf("the master hands over to %d, not the best-ranked 3", st.Transfer)
	}
	if _, err := s.put(1, "k", "v"); err != nil {
		t.Fatalf("the master stopped taking writes after a refused request: %v", err)
	}
	s.deliver()
	// 3 asks; while the handover runs, a request from 2 does not redirect it.
	s.cut[[2]uint64{1, 3}] = true // hold 3 out of sync: the handover stays pending
	if !s.nodes[3].RequestHandover() {
		t.Fatal("3 did not ask")
	}
	m := s.nodes[3].Ready().Messages
	if len(m) != 1 || m[0].Type != MsgTransferReq {
		t.Fatalf("3 sent %v", m)
	}
	s.nodes[1].Step(m[0])
	s.drain(1)
	if st := s.nodes[1].Status(); st.Transfer != 3 {
		t.Fatalf("handover target %d, want 3", st.Transfer)
	}
	s.nodes[1].Step(Message{Type: MsgTransferReq, Group: "g", From: 2, To: 1, Epoch: s.nodes[2].Epoch(), Priority: 7})
	s.drain(1)
	if st := s.nodes[1].Status(); st.Transfer != 3 {
		t.Fatalf("handover redirected to %d", st.Transfer)
	}
	delete(s.cut, [2]uint64{1, 3})
	s.tick(20)
	if ms := s.masters(); len(ms) != 1 || ms[0] != 3 {
		t.Fatalf("masters after the handover %v, want [3]", ms)
	}

	// The master's own view decides: a master that sees nobody above
	// itself refuses whatever the requester believes.
	s = newSim(t, api.ModeAvailable, 9, 5, 1)
	s.tick(30)
	s.nodes[1].Step(Message{Type: MsgTransferReq, Group: "g", From: 3, To: 1, Epoch: s.nodes[1].Epoch(), Priority: 100})
	s.drain(1)
	if st := s.nodes[1].Status(); st.Transfer != 0 {
		t.Fatalf("master of priority 9 hands over to 3 of priority 1")
	}

	// Two back-ups tie above the master: the tie goes to the lower ID, as
	// in the retention policy; exactly one asks, and the master takes it.
	s = newSim(t, api.ModeAvailable, 5, 9, 9)
	masterFirst(t, s)
	if !s.nodes[2].HandoverCandidate() || s.nodes[3].HandoverCandidate() {
		t.Fatalf("candidates at a tie: 2 %t, 3 %t; want only 2", s.nodes[2].HandoverCandidate(), s.nodes[3].HandoverCandidate())
	}
	s.nodes[1].Step(Message{Type: MsgTransferReq, Group: "g", From: 3, To: 1, Epoch: s.nodes[3].Epoch(), Priority: 9})
	s.drain(1)
	if st := s.nodes[1].Status(); st.Transfer != 0 {
		t.Fatalf("the master hands over to 3, which loses the tie to 2")
	}
}

// A strict group's quorum comes from its fixed size, never from the view:
// agents that start cut off from each other elect nobody (and do not even
// campaign, so terms do not grow); once they meet, one of them is elected.
func TestStrictStartIsolated(t *testing.T) {
	s := newSim(t, api.ModeStrict, 0, 0, 0)
	s.partition([]uint64{1}, []uint64{2, 3})
	s.partition([]uint64{2}, []uint64{3})
	s.tick(200)
	if ms := s.masters(); len(ms) != 0 {
		t.Fatalf("isolated strict agents elected %v", ms)
	}
	for _, id := range s.ids() {
		if st := s.nodes[id].Status(); st.MaxTerm != 0 || st.Role != api.RoleBackup {
			t.Fatalf("agent %d alone: %s at term %d, want a back-up that never campaigned", id, st.Role, st.MaxTerm)
		}
	}
	s.heal()
	for i := 0; i < 100; i++ {
		s.tick(1)
		if ms := s.masters(); len(ms) > 1 {
			t.Fatalf("tick %d after meeting: masters %v", i, ms)
		}
	}
	if ms := s.masters(); len(ms) != 1 || ms[0] != 1 {
		t.Fatalf("masters %v, want [1] (ties go to the lowest ID)", ms)
	}
}

// Seeded start-ups of strict groups: links come up at random ticks, and
// messages are delivered in random order after random delays. At no
// moment do two agents act as master, and every run elects one.
func TestStrictStartupNeverTwoMasters(t *testing.T) {
	for seed := int64(1); seed <= 300; seed++ {
		rng := rand.New(rand.NewSource(seed))
		n := 3 + 2*rng.Intn(2)
		nodes := map[uint64]*Node{}
		up := map[[2]uint64]int{} // tick at which a link comes up
		for i := uint64(1); i <= uint64(n); i++ {
			nodes[i] = NewNode(Config{ID: i, Group: "g", Priority: rng.Intn(2), Mode: api.ModeStrict, HeartbeatTicks: 2,
				ElectionTicks: 10, StaggerTicks: 3, WriteTicks: 20, Expect: n, Rand: rand.New(rand.NewSource(seed*10 + int64(i)))},
				kv.NewStore(), rlog.New(), HardState{})
			for j := uint64(1); j < i; j++ {
				up[[2]uint64{j, i}] = rng.Intn(40)
			}
		}
		linked := func(a, b uint64, now int) bool {
			if a > b {
				a, b = b, a
			}
			return now >= up[[2]uint64{a, b}]
		}
		type inflight struct {
			m  Message
			at int
		}
		var queue []inflight
		collect := func(id uint64, now int) {
			for _, m := range nodes[id].Ready().Messages {
				queue = append(queue, inflight{m, now + rng.Intn(4)})
			}
		}
		masters := func() []uint64 {
			var ms []uint64
			for i := uint64(1); i <= uint64(n); i++ {
				if nodes[i].Role() == api.RoleMaster {
					ms = append(ms, i)
				}
			}
			return ms
		}
		for now := 0; now < 200; now++ {
			for i := uint64(1); i <= uint64(n); i++ {
				var view []Peer
				for j := uint64(1); j <= uint64(n); j++ {
					if j != i && linked(i, j, now) {
						view = append(view, Peer{ID: j, Priority: nodes[j].cfg.Priority, Alive: true, Epoch: nodes[j].Epoch()})
					}
				}
				nodes[i].SetView(view)
				nodes[i].Tick()
				collect(i, now)
			}
			rng.Shuffle(len(queue), func(a, b int) { queue[a], queue[b] = queue[b], queue[a] })
			due := queue
			queue = nil // what the deliveries send goes here
			for _, f := range due {
				if f.at > now {
					queue = append(queue, f)
					continue
				}
				if linked(f.m.From, f.m.To, now) {
					nodes[f.m.To].Step(f.m)
					collect(f.m.To, now)
				}
				if ms := masters(); len(ms) > 1 {
					t.Fatalf("seed %d (%d agents): tick %d: masters %v", seed, n, now, ms)
				}
			}
		}
		if ms := masters(); len(ms) != 1 {
			var b strings.Builder
			for i := uint64(1); i <= uint64(n); i++ {
				st := nodes[i].Status()
				fmt.Fprintf(&b, " %d:%s/%s/t%d/v%s", i, st.Role, st.Epoch, st.MaxTerm, nodes[i].vote)
			}
			t.Fatalf("seed %d (%d agents): masters %v after 200 ticks, want one:%s", seed, n, ms, b.String())
		}
	}
}

// A voter that just granted a vote does not grant a later term before the
// candidate it voted for had half an election timeout to win and be
// heard: a second candidate cannot be elected beside the first.
func TestVoteHoldsUntilWinnerHeard(t *testing.T) {
	n := NewNode(Config{ID: 2, Group: "g", Mode: api.ModeStrict, HeartbeatTicks: 2, ElectionTicks: 10, StaggerTicks: 3,
		WriteTicks: 20, Expect: 3, Rand: rand.New(rand.NewSource(1))}, kv.NewStore(), rlog.New(), HardState{})
	n.SetView([]Peer{{ID: 1, Alive: true}, {ID: 3, Alive: true}})
	for i := 0; i < 3; i++ {
		n.Tick()
	}
	vote := func(from, term uint64) bool {
		n.Step(Message{Type: MsgVote, Group: "g", From: from, To: 2, Epoch: api.Epoch{Term: term, ID: from}})
		ms := n.Ready().Messages
		if len(ms) != 1 || ms[0].Type != MsgVoteResp {
			t.Fatalf("reply %v", ms)
		}
		return !ms[0].Reject
	}
	if !vote(1, 1) {
		t.Fatal("first candidate refused")
	}
	if vote(3, 2) {
		t.Fatal("a later term was granted at once after a vote: two masters possible")
	}
	for i := 0; i < 5; i++ {
		n.Tick()
	}
	if !vote(3, 3) {
		t.Fatal("the winner was never heard and half an election timeout passed: the vote must be free again")
	}
}

// Hostile epochs through every message type and the membership view: an
// epoch of 2^64-1, a term 2^40 above the known one, an epoch in another
// agent's name, an entry newer than its append. Each is refused and
// counted, nothing is learnt (terms, roles, logs unchanged, no reply), and
// the group still elects and commits afterwards.
func TestHostileEpochsRefused(t *testing.T) {
	for _, mode := range []api.Mode{api.ModeStrict, api.ModeAvailable} {
		t.Run(string(mode), func(t *testing.T) {
			s := newSim(t, mode, 3, 2, 1)
			s.tick(30)
			if ms := s.masters(); len(ms) != 1 || ms[0] != 1 {
				t.Fatalf("masters %v", ms)
			}
			known := s.nodes[1].Status().MaxTerm
			hostile := func(to uint64) []Message {
				from, other := uint64(1), uint64(2) // the sender, and a third agent
				for _, id := range s.ids() {
					if id != to {
						from = id
						break
					}
				}
				for _, id := range s.ids() {
					if id != to && id != from {
						other = id
					}
				}
				maxE := api.Epoch{Term: ^uint64(0), ID: from}
				far := api.Epoch{Term: known + 1<<40, ID: from}
				next := api.Epoch{Term: known + 1, ID: from}
				var msgs []Message
				for _, e := range []api.Epoch{maxE, far} {
					for _, typ := range []MsgType{MsgAppend, MsgAppendResp, MsgVote, MsgVoteResp, MsgTrigger, MsgTransferReq, MsgTimeoutNow} {
						msgs = append(msgs, Message{Type: typ, Epoch: e})
					}
					msgs = append(msgs, Message{Type: MsgVote, Epoch: next, LastEpoch: e})
				}
				msgs = append(msgs,
					Message{Type: MsgAppend, Epoch: api.Epoch{Term: known + 1, ID: other}},
					Message{Type: MsgVote, Epoch: api.Epoch{Term: known + 1, ID: other}},
					Message{Type: MsgTimeoutNow, Epoch: api.Epoch{Term: known + 1, ID: other}},
					Message{Type: MsgAppend, Epoch: next, Entries: []rlog.Entry{{Index: 99, Epoch: maxE}}},
					Message{Type: MsgAppend, Epoch: api.Epoch{}},
				)
				for i := range msgs {
					msgs[i].Group, msgs[i].From, msgs[i].To = "g", from, to
				}
				return msgs
			}
			for _, id := range s.ids() {
				before := s.nodes[id].Status()
				msgs := hostile(id)
				for _, m := range msgs {
					s.nodes[id].Step(m)
					rd := s.nodes[id].Ready()
					if len(rd.Messages) != 0 || rd.HardState != nil || len(rd.Entries) != 0 || len(rd.Events) != 0 {
						t.Fatalf("agent %d acted on %s: %+v", id, m, rd)
					}
				}
				after := s.nodes[id].Status()
				if after.MaxTerm != before.MaxTerm || after.Role != before.Role || after.Epoch != before.Epoch || after.Last != before.Last {
					t.Fatalf("agent %d changed: %+v -> %+v", id, before, after)
				}
				if after.Refused != before.Refused+uint64(len(msgs)) {
					t.Fatalf("agent %d counted %d refusals, want %d", id, after.Refused-before.Refused, len(msgs))
				}
			}
			maxE := api.Epoch{Term: ^uint64(0), ID: 2}
			// The same epochs in the membership view are not learnt either.
			for _, id := range s.ids() {
				var view []Peer
				for _, o := range s.ids() {
					view = append(view, Peer{ID: o, Priority: s.prio[o], Alive: true, Epoch: maxE})
				}
				s.nodes[id].SetView(view)
				if st := s.nodes[id].Status(); st.MaxTerm != known || st.MaxEpoch.Term != known {
					t.Fatalf("agent %d learnt term %d (max epoch %s) from the view", id, st.MaxTerm, st.MaxEpoch)
				}
			}
			// The group still works: the master dies, the next is elected
			// at the next term and commits.
			s.down[1] = true
			s.updateViews()
			s.tick(60)
			if ms := s.masters(); len(ms) != 1 || ms[0] != 2 {
				t.Fatalf("masters after the kill %v, want [2]", ms)
			}
			if e := s.nodes[2].Epoch(); e.Term != known+1 {
				t.Fatalf("new epoch %s, want term %d", e, known+1)
			}
			ref, err := s.put(2, "after", "v")
			s.deliver()
			if err != nil || s.results[ref].Err != nil {
				t.Fatalf("write after the attack: %v %+v", err, s.results[ref])
			}
		})
	}
}

// A term counter at its maximum (a store written before terms were
// bounded) does not overflow: the agent refuses to campaign and says so.
func TestTermAtMaximumDoesNotOverflow(t *testing.T) {
	n := NewNode(Config{ID: 1, Group: "g", Mode: api.ModeAvailable, HeartbeatTicks: 2, ElectionTicks: 10, StaggerTicks: 3,
		WriteTicks: 20, Rand: rand.New(rand.NewSource(1))}, kv.NewStore(), rlog.New(), HardState{MaxTerm: ^uint64(0)})
	for i := 0; i < 100; i++ {
		n.Tick()
		n.Ready()
	}
	if st := n.Status(); st.Role != api.RoleBackup || st.MaxTerm != ^uint64(0) {
		t.Fatalf("%s at term %d, want a back-up that never campaigned", st.Role, st.MaxTerm)
	}
}

// A back-up whose state was installed from another side's master (its
// snapshot base above the whole log of the master it now follows) cannot
// compare anything the master sends: it downloads the master's state
// rather than refusing every append for ever. A master whose log reaches
// past the base is only answered with where the back-up's log ends.
func TestAppendBelowSnapshotSyncs(t *testing.T) {
	for _, tc := range []struct {
		name       string
		masterLast uint64
		want       api.Role
	}{
		{"master's log ends below our snapshot", 10, api.RoleSyncing},
		{"master's log reaches past it", 40, api.RoleBackup},
	} {
		t.Run(tc.name, func(t *testing.T) {
			base := rlog.Pos{Index: 20, Epoch: api.Epoch{Term: 3, ID: 4}}
			n := NewNode(Config{ID: 2, Group: "g", Mode: api.ModeAvailable, HeartbeatTicks: 2, ElectionTicks: 10, StaggerTicks: 3,
				WriteTicks: 20, Rand: rand.New(rand.NewSource(1))}, kv.NewStore(), rlog.NewAt(base), HardState{Epoch: base.Epoch})
			n.SetView([]Peer{{ID: 5, Alive: true}})
			epoch := api.Epoch{Term: 8, ID: 5}
			n.Step(Message{Type: MsgAppend, Group: "g", From: 5, To: 2, Epoch: epoch, PrevIndex: 10, PrevHash: [32]byte{1},
				Commit: 10, LastIndex: tc.masterLast})
			rd := n.Ready()
			if n.Role() != tc.want {
				t.Fatalf("role %s, want %s", n.Role(), tc.want)
			}
			if tc.want == api.RoleSyncing && rd.Sync != 5 {
				t.Fatalf("sync from %d, want 5", rd.Sync)
			}
			if tc.want == api.RoleBackup && (len(rd.Messages) != 1 || !rd.Messages[0].Reject || rd.Messages[0].LastIndex != 20) {
				t.Fatalf("reply %v, want a rejection saying the log ends at 20", rd.Messages)
			}
		})
	}
}

// The ranking holds when the best-ranked back-up's first campaign is lost
// (available mode). Master 1 crashes; gossip tells both back-ups at once,
// but 3 heard 1's last heartbeat a little later than 2 did. 2 reaches
// two silent heartbeats first and campaigns; 3, not silent that long yet,
// refuses. Two ticks later 3's timer jumps to the timeout and fires one
// stagger step after it; 2 tries again within that step and is elected,
// not 3. (Timings of the local profile: heartbeat 5, election 30,
// stagger 10 ticks.)
func TestRankHoldsAfterALostCampaign(t *testing.T) {
	for seed := int64(1); seed <= 20; seed++ {
		s := newSim(t, api.ModeAvailable, 9, 5, 1)
		for id, n := range s.nodes {
			n.cfg.HeartbeatTicks, n.cfg.ElectionTicks, n.cfg.StaggerTicks = 5, 30, 10
			n.cfg.Rand = rand.New(rand.NewSource(seed*10 + int64(id)))
		}
		s.tick(60)
		if ms := s.masters(); len(ms) != 1 || ms[0] != 1 {
			t.Fatalf("masters %v, want [1]", ms)
		}
		s.down[1] = true
		for _, id := range []uint64{2, 3} {
			var peers []Peer
			for _, o := range s.ids() {
				peers = append(peers, Peer{ID: o, Priority: s.prio[o], Alive: o != 1, Epoch: s.nodes[o].Epoch()})
			}
			s.nodes[id].SetView(peers)
			s.drain(id)
		}
		s.nodes[2].silent, s.nodes[3].silent = 2*5-1, 2*5-3
		step := func() {
			for _, id := range []uint64{2, 3} {
				s.nodes[id].Tick()
				s.drain(id)
			}
			s.deliver()
		}
		step()
		if s.counts[MsgVote] == 0 || s.nodes[2].Role() != api.RoleBackup || s.nodes[3].Role() != api.RoleBackup {
			t.Fatalf("seed %d: 2 did not campaign and lose to 3's refusal (2 %s, 3 %s)", seed, s.nodes[2].Role(), s.nodes[3].Role())
		}
		for i := 0; i < 60 && len(s.masters()) == 0; i++ {
			step()
		}
		if ms := s.masters(); len(ms) != 1 || ms[0] != 2 {
			t.Fatalf("seed %d: masters %v after 2's lost campaign, want [2] (the best-ranked live back-up)", seed, ms)
		}
	}
}
