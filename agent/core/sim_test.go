package core

import (
	"fmt"
	"math/rand"
	"sort"
	"testing"

	"github.com/mastership/mastership/agent/kv"
	"github.com/mastership/mastership/agent/rlog"
	"github.com/mastership/mastership/naming/api"
)

// simNet is a simulated group for the pure core: delivery happens when the
// test says so, membership views follow the cuts (as gossip would), and
// state downloads copy the master's state as the runtime would.
type simNet struct {
	t       *testing.T
	mode    api.Mode
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
}

func newSim(t *testing.T, mode api.Mode, prios ...int) *simNet {
	s := &simNet{t: t, mode: mode, nodes: map[uint64]*Node{}, stores: map[uint64]*kv.Store{}, prio: map[uint64]int{},
		down: map[uint64]bool{}, cut: map[[2]uint64]bool{}, counts: map[MsgType]int{}, results: map[uint64]Result{},
		events: map[uint64][]Event{}}
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
		StaggerTicks: 5, WriteTicks: 20, Rand: rand.New(rand.NewSource(int64(id)))}, st, rlog.New(), HardState{})
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
			view = append(view, Peer{ID: o, Priority: s.prio[o], Alive: s.linked(id, o), Epoch: s.nodes[o].Epoch()})
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
	for _, m := range rd.Messages {
		s.counts[m.Type]++
		s.queue = append(s.queue, m)
	}
	for _, r := range rd.Results {
		s.results[r.Ref] = r
	}
	s.events[id] = append(s.events[id], rd.Events...)
	if rd.Sync != 0 {
		s.sync(id, rd.Sync)
	}
}

// sync installs the master's state on id, as the runtime's download does.
func (s *simNet) sync(id, master uint64) {
	m := s.nodes[master]
	if !s.linked(id, master) || m.Role() != api.RoleMaster {
		return
	}
	snap, err := m.StateMachine().Snapshot()
	if err != nil {
		s.t.Fatal(err)
	}
	base, _ := m.Log().PosAt(m.applied)
	ents, _ := m.Log().Slice(m.applied+1, m.Log().LastIndex()+1)
	if err := s.nodes[id].InstallState(snap, base, ents, master, m.Epoch(), m.commit); err != nil {
		s.t.Logf("sync %d from %d: %v", id, master, err)
	}
	if got, want := s.stores[id].Digest(), s.stores[master].Digest(); got != want {
		s.t.Fatalf("digest after sync %v != master's %v", got, want)
	}
}

// deliver sends every queued message that can cross, until none is left.
func (s *simNet) deliver() {
	for steps := 0; len(s.queue) > 0; steps++ {
		if steps > 100000 {
			s.t.Fatal("messages never stop")
		}
		m := s.queue[0]
		s.queue = s.queue[1:]
		if !s.linked(m.From, m.To) || s.nodes[m.To] == nil {
			continue
		}
		s.nodes[m.To].Step(m)
		s.drain(m.To)
	}
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
			s := newSim(t, mode, 5, 4, 3)
			s.tick(30)
			for i := 0; i < 5; i++ {
				s.put(1, fmt.Sprintf("k%d", i), "v")
				s.deliver()
			}
			s.nodes[3].RequestHandover()
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
