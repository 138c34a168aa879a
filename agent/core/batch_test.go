package core

import (
	"fmt"
	"math/rand"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/mastership/mastership/agent/kv"
	"github.com/mastership/mastership/agent/rlog"
	"github.com/mastership/mastership/agent/store"
	"github.com/mastership/mastership/naming/api"
)

// persistReady stores a Ready as the runtime does.
func persistReady(s store.Storage, rd Ready) error {
	u := store.Update{TruncateAfter: rd.Truncated, Entries: rd.Entries}
	if hs := rd.HardState; hs != nil {
		u.HardState = &store.HardState{Epoch: hs.Epoch, Vote: hs.Vote, Master: hs.Master, MaxTerm: hs.MaxTerm}
	}
	return s.Persist(u)
}

// Steps batched into one Ready (the runtime's group commit): an append of
// the old master and one of the new master that cuts its last entry. The
// Ready keeps the entries up to the cut that were not stored yet, and
// persists; step by step and batched end in the same stored log.
func TestBatchedTruncationPersists(t *testing.T) {
	e1, e2 := api.Epoch{Term: 1, ID: 1}, api.Epoch{Term: 2, ID: 2}
	old := rlog.New()
	op, _ := kv.EncodeOp(kv.Op{Kind: kv.KindPut, Key: "k", Value: []byte("v")})
	a, _ := old.AppendNew(e1, 1, 1, op)
	b, _ := old.AppendNew(e1, 1, 2, op)
	c, _ := old.AppendNew(e1, 1, 3, op)
	cur := rlog.New()
	if err := cur.Append(a, b); err != nil {
		t.Fatal(err)
	}
	c2, _ := cur.AppendNew(e2, 0, 0, nil)
	var logs [][]rlog.Entry
	for _, batched := range []bool{false, true} {
		n := NewNode(Config{ID: 3, Group: "g", Priority: 1, Mode: api.ModeStrict, HeartbeatTicks: 2, ElectionTicks: 10,
			StaggerTicks: 5, WriteTicks: 20, Expect: 3, Rand: rand.New(rand.NewSource(1))}, kv.NewStore(), rlog.New(), HardState{})
		n.SetView([]Peer{{ID: 1, Priority: 3, Alive: true}, {ID: 2, Priority: 2, Alive: true}})
		s := store.NewMemory()
		if err := persistReady(s, n.Ready()); err != nil {
			t.Fatal(err)
		}
		p0, _ := old.PosAt(0)
		n.Step(Message{Type: MsgAppend, Group: "g", From: 1, To: 3, Epoch: e1, PrevHash: p0.Hash, Entries: []rlog.Entry{a, b, c}, LastIndex: 3})
		if !batched {
			if err := persistReady(s, n.Ready()); err != nil {
				t.Fatalf("step by step, the old master's append: %v", err)
			}
		}
		pb, _ := cur.PosAt(2)
		n.Step(Message{Type: MsgAppend, Group: "g", From: 2, To: 3, Epoch: e2, PrevIndex: 2, PrevHash: pb.Hash, Entries: []rlog.Entry{c2}, LastIndex: 3})
		if err := persistReady(s, n.Ready()); err != nil {
			t.Fatalf("batched=%t: the Ready with the cut does not persist: %v", batched, err)
		}
		_, _, _, es, err := s.Load()
		if err != nil {
			t.Fatal(err)
		}
		logs = append(logs, es)
	}
	for _, es := range logs {
		if len(es) != 3 || es[2].Epoch != e2 || es[2].Hash != c2.Hash {
			t.Fatalf("stored log %v, want a, b and the new master's entry", es)
		}
	}
}

// A closed stream of a master that is alive and still heard by everyone
// deposes nobody: every back-up saw the close, and still no one campaigns,
// because the master keeps speaking.
func TestStreamCloseOfALiveMasterDeposesNobody(t *testing.T) {
	for _, mode := range []api.Mode{api.ModeStrict, api.ModeAvailable} {
		s := newSim(t, mode, 3, 2, 1)
		s.tick(60)
		if ms := s.masters(); len(ms) != 1 || ms[0] != 1 {
			t.Fatalf("%s: masters %v", mode, ms)
		}
		epoch := s.nodes[1].Epoch()
		s.nodes[2].PeerStreamClosed(1)
		s.nodes[3].PeerStreamClosed(1)
		s.tick(40)
		if ms := s.masters(); len(ms) != 1 || ms[0] != 1 || s.nodes[1].Epoch() != epoch || s.nodes[2].maxTerm != epoch.Term {
			t.Fatalf("%s: masters %v, 1 at %s (was %s), 2's max term %d", mode, s.masters(), s.nodes[1].Epoch(), epoch, s.nodes[2].maxTerm)
		}
	}
}

// A master that is gone and whose streams closed is replaced in about
// half an election timeout, not a whole one: the back-ups campaign early,
// and voters grant once they have not heard it for half the timeout.
func TestStreamCloseOfADeadMasterElectsEarly(t *testing.T) {
	for _, closed := range []bool{false, true} {
		s := newSim(t, api.ModeStrict, 3, 2, 1)
		s.tick(60)
		s.down[1] = true
		s.ghost[1] = true // gossip has not noticed yet
		if closed {
			s.nodes[2].PeerStreamClosed(1)
			s.nodes[3].PeerStreamClosed(1)
		}
		ticks := 0
		for ; ticks < 100; ticks++ {
			if ms := s.masters(); len(ms) == 1 && ms[0] == 2 {
				break
			}
			s.tick(1)
		}
		et := s.nodes[2].cfg.ElectionTicks
		if closed && ticks >= et {
			t.Fatalf("with the streams closed, 2 took %d ticks, want fewer than the election timeout (%d)", ticks, et)
		}
		if !closed && ticks < et {
			t.Fatalf("without a closed stream, 2 took %d ticks, under the election timeout (%d)", ticks, et)
		}
		t.Logf("closed=%t: 2 master after %d ticks (election timeout %d)", closed, ticks, et)
	}
}

// More proposals in one Ready than one append carries: the acknowledgements
// pull the rest through, without waiting for a heartbeat.
func TestAppendPipelineBeyondOneBatch(t *testing.T) {
	s := newSim(t, api.ModeStrict, 3, 2, 1)
	s.tick(60)
	s.deliver()
	n := s.nodes[1]
	n.Registered(n.Epoch(), true, n.Now()+1000)
	op, _ := kv.EncodeOp(kv.Op{Kind: kv.KindPut, Key: "k", Value: []byte("v")})
	for i := 0; i < 3*maxBatch/2; i++ {
		s.nextRef++
		if err := n.Propose(s.nextRef, 1, s.nextRef, op); err != nil {
			t.Fatal(err)
		}
	}
	s.drain(1)
	s.deliver() // no tick
	if n.commit != n.log.LastIndex() {
		t.Fatalf("commit %d of %d with no tick: the rest waited for a heartbeat", n.commit, n.log.LastIndex())
	}
}

// Appends of large writes stay under the transport's frame cap: 300 writes
// of 60 KiB (18 MB, 256 of which once went in one append the transport
// refused) travel in appends of at most MaxAppendBytes of operations, or
// one entry, and every back-up gets all of them.
func TestAppendsOfLargeWritesAreCapped(t *testing.T) {
	s := newSim(t, api.ModeStrict, 3, 2, 1)
	s.tick(30)
	if ms := s.masters(); len(ms) != 1 || ms[0] != 1 {
		t.Fatalf("masters %v", ms)
	}
	big := strings.Repeat("v", 60<<10)
	var refs []uint64
	for i := range 300 {
		ref, err := s.put(1, fmt.Sprintf("k%d", i), big)
		if err != nil {
			t.Fatal(err)
		}
		refs = append(refs, ref)
	}
	appends := 0
	for steps := 0; len(s.queue) > 0; steps++ {
		if steps > 100000 {
			t.Fatal("messages never stop")
		}
		m := s.queue[0]
		s.queue = s.queue[1:]
		if m.Type == MsgAppend && len(m.Entries) > 0 {
			appends++
			size := 0
			for _, e := range m.Entries {
				size += len(e.Op)
			}
			if len(m.Entries) > 1 && size > MaxAppendBytes {
				t.Fatalf("append of %d entries carries %d bytes of operations, cap %d", len(m.Entries), size, MaxAppendBytes)
			}
			if b := AppendWire(nil, &m); len(b) > 2*MaxAppendBytes {
				t.Fatalf("append encodes to %d bytes", len(b))
			}
		}
		s.deliverOne(m)
	}
	if appends < 2*18 {
		t.Fatalf("%d appends with entries for 2 back-ups and 18 MB: not capped", appends)
	}
	for _, ref := range refs {
		if r, ok := s.results[ref]; !ok || r.Err != nil {
			t.Fatalf("write %d: %+v", ref, r)
		}
	}
	for _, id := range []uint64{2, 3} {
		if got, want := s.nodes[id].Log().LastIndex(), s.nodes[1].Log().LastIndex(); got != want {
			t.Errorf("back-up %d at %d, master at %d", id, got, want)
		}
	}
}

// With an append in flight to a back-up, the writes proposed before its
// answer wait and travel together, unless they make a whole append: many
// small writes wait, a few writes of more than MaxAppendBytes in all are
// sent at once (pipelined), as are maxBatch small ones
// (testdata/flowcontrol.txt).
func TestAppendsWaitForAnAnswerUnlessAWholeBatch(t *testing.T) {
	for _, tc := range []struct {
		name   string
		writes int
		size   int
		want   int // appends with entries per back-up before any answer
	}{
		{"small writes wait", 50, 10, 1},
		{"a whole append's bytes go", 20, 60 << 10, 2},
		{"bytes short of a whole append wait", 10, 60 << 10, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newSim(t, api.ModeStrict, 3, 2, 1)
			s.tick(30)
			s.deliver()
			if ms := s.masters(); len(ms) != 1 || ms[0] != 1 {
				t.Fatalf("masters %v", ms)
			}
			if _, err := s.put(1, "first", "v"); err != nil {
				t.Fatal(err)
			}
			val := strings.Repeat("v", tc.size)
			for i := range tc.writes {
				if _, err := s.put(1, fmt.Sprintf("k%d", i), val); err != nil {
					t.Fatal(err)
				}
			}
			sent := map[uint64]int{}
			for _, m := range s.queue {
				if m.Type == MsgAppend && len(m.Entries) > 0 {
					sent[m.To]++
				}
			}
			for _, id := range []uint64{2, 3} {
				if sent[id] != tc.want {
					t.Errorf("back-up %d was sent %d appends with entries before an answer, want %d", id, sent[id], tc.want)
				}
			}
			s.deliver()
			for _, id := range []uint64{2, 3} {
				if got, want := s.nodes[id].Log().LastIndex(), s.nodes[1].Log().LastIndex(); got != want {
					t.Errorf("back-up %d at %d, master at %d: what waited was never sent", id, got, want)
				}
			}
		})
	}
}

// A back-up that missed appends while the master's log ran more than
// SyncThreshold ahead downloads the state instead of reading the log
// (with flow control the gap it sees is one append, not the whole lead).
func TestFarBehindBackupDownloads(t *testing.T) {
	s := newSim(t, api.ModeStrict, 3, 2, 1)
	s.tick(30)
	s.down[3] = true
	s.updateViews()
	for i := range SyncThreshold + 10 {
		if _, err := s.put(1, fmt.Sprintf("k%d", i), "v"); err != nil {
			t.Fatal(err)
		}
		s.deliver()
	}
	s.down[3] = false
	s.updateViews()
	synced := false
	s.trace = func(line string) {
		if line == "3: downloads the state of 1" {
			synced = true
		}
	}
	s.tick(20)
	if !synced {
		t.Fatal("3 caught up from the log, not by download")
	}
	if got, want := s.stores[3].Digest(), s.stores[1].Digest(); got != want {
		t.Fatalf("3's digest %v, master's %v", got, want)
	}
}

func TestQuorumValue(t *testing.T) {
	for _, c := range []struct {
		vals []uint64
		q    int
		want uint64
		ok   bool
	}{
		{[]uint64{5}, 1, 5, true},
		{[]uint64{3, 9, 7}, 2, 7, true},
		{[]uint64{3, 9, 7}, 3, 3, true},
		{[]uint64{3, 9, 7}, 4, 0, false},
		{[]uint64{4, 4, 1, 8, 2}, 3, 4, true},
		{nil, 1, 0, false},
		{[]uint64{1}, 0, 0, false},
	} {
		got, ok := quorumValue(slices.Clone(c.vals), c.q)
		if got != c.want || ok != c.ok {
			t.Errorf("quorumValue(%v, %d) = %d, %t; want %d, %t", c.vals, c.q, got, ok, c.want, c.ok)
		}
	}
}

// A back-up that refuses an append and names a last entry more than
// SyncThreshold behind gets an append that starts at the master's last
// entry (so it downloads the state); one a little behind gets the entries
// after its last.
func TestFarBehindRejectLeadsToDownload(t *testing.T) {
	for _, c := range []struct {
		behind   uint64
		busy     bool
		download bool
	}{{5, false, false}, {SyncThreshold + 100, false, true}, {SyncThreshold + 100, true, true}} {
		s := newSim(t, api.ModeStrict, 3, 2, 1)
		s.tick(30)
		for i := range SyncThreshold + 200 {
			s.put(1, fmt.Sprintf("k%d", i), "v")
			s.deliver()
		}
		m := s.nodes[1]
		last := m.Log().LastIndex()
		m.Ready()
		// Busy: a back-up whose download just failed refuses the same way.
		m.Step(Message{Type: MsgAppendResp, Group: "g", From: 3, To: 1, Epoch: m.Epoch(), Reject: true, Busy: c.busy, LastIndex: last - c.behind})
		// At once, or at the next heartbeat.
		msgs := m.Ready().Messages
		m.Tick()
		m.Tick()
		msgs = append(msgs, m.Ready().Messages...)
		var sent *Message
		for _, msg := range msgs {
			if msg.Type == MsgAppend && msg.To == 3 && sent == nil {
				sent = &msg
			}
		}
		if sent == nil {
			t.Fatalf("behind %d: no append to 3 after its refusal", c.behind)
		}
		if got := sent.PrevIndex == last && len(sent.Entries) == 0; got != c.download {
			t.Fatalf("behind %d: append prev=%d with %d entries (master's last %d)", c.behind, sent.PrevIndex, len(sent.Entries), last)
		}
		if !c.download && sent.PrevIndex != last-c.behind {
			t.Fatalf("behind %d: append prev=%d, want %d", c.behind, sent.PrevIndex, last-c.behind)
		}
	}
}

// A master stores each new entry in the Ready that first sends or commits
// it (Ready): alone, at once with its answer; with back-ups, a write
// proposed while every back-up has an append in flight waits in memory,
// unstored, until an answer lets it go out, and is then stored in the
// Ready that sends it. simNet.checkStored fails the test if any Ready sends
// or answers what it does not store.
func TestMasterStoresWhatItSendsOrCommits(t *testing.T) {
	for _, mode := range []api.Mode{api.ModeStrict, api.ModeAvailable} {
		t.Run(string(mode)+"/alone", func(t *testing.T) {
			s := newSim(t, mode, 1)
			s.tick(40)
			if ms := s.masters(); len(ms) != 1 {
				t.Fatalf("masters %v, want [1]", ms)
			}
			ref, err := s.put(1, "k", "v")
			if err != nil {
				t.Fatal(err)
			}
			r, ok := s.results[ref]
			if !ok || r.Err != nil {
				t.Fatalf("the write of a group of one: result %+v (answered: %t), want it committed at once", r, ok)
			}
			if got := s.nodes[1].Stored(); got != r.Index {
				t.Fatalf("stored up to %d, want the answered write's index %d", got, r.Index)
			}
		})
		t.Run(string(mode)+"/held", func(t *testing.T) {
			s := newSim(t, mode, 3, 2, 1)
			s.tick(40)
			if ms := s.masters(); len(ms) != 1 || ms[0] != 1 {
				t.Fatalf("masters %v, want [1]", ms)
			}
			m := s.nodes[1]
			if _, err := s.put(1, "a", "1"); err != nil {
				t.Fatal(err)
			}
			s.deliver() // idle again: nothing in flight
			// Goes out at once, to both back-ups; their answers wait.
			first, err := s.put(1, "b", "2")
			if err != nil {
				t.Fatal(err)
			}
			sent := m.Log().LastIndex()
			if got := m.Stored(); got != sent {
				t.Fatalf("stored up to %d after sending %d", got, sent)
			}
			held, err := s.put(1, "c", "3")
			if err != nil {
				t.Fatal(err)
			}
			if got, last := m.Stored(), m.Log().LastIndex(); got != sent || last != sent+1 {
				t.Fatalf("with every back-up's append in flight: stored %d, last %d; want %d and %d (the new write held)", got, last, sent, sent+1)
			}
			s.deliver()
			for _, ref := range []uint64{first, held} {
				if r, ok := s.results[ref]; !ok || r.Err != nil {
					t.Fatalf("write %d: result %+v (answered: %t), want committed", ref, r, ok)
				}
			}
			if got, last := m.Stored(), m.Log().LastIndex(); got != last {
				t.Fatalf("after the answers: stored %d, last %d", got, last)
			}
		})
	}
}

// An installed state replaces the log: entries a step of the same batch
// appended to the old one are not in the Ready (the runtime stores the
// installed log itself, and they would not extend it).
func TestInstallDropsTheOldLogsEntriesFromTheReady(t *testing.T) {
	e1 := api.Epoch{Term: 1, ID: 1}
	full := rlog.New()
	op, _ := kv.EncodeOp(kv.Op{Kind: kv.KindPut, Key: "k", Value: []byte("v")})
	a, _ := full.AppendNew(e1, 1, 1, op)
	b, _ := full.AppendNew(e1, 1, 2, op)
	for range 3 {
		full.AppendNew(e1, 1, 3, op)
	}
	n := NewNode(Config{ID: 3, Group: "g", Priority: 1, Mode: api.ModeAvailable, HeartbeatTicks: 2, ElectionTicks: 10,
		StaggerTicks: 5, WriteTicks: 20, Rand: rand.New(rand.NewSource(1))}, kv.NewStore(), rlog.New(), HardState{})
	n.SetView([]Peer{{ID: 1, Priority: 3, Alive: true}})
	n.Ready()
	p0, _ := full.PosAt(0)
	n.Step(Message{Type: MsgAppend, Group: "g", From: 1, To: 3, Epoch: e1, PrevHash: p0.Hash, Entries: []rlog.Entry{a, b}, LastIndex: 2})
	n.BeginRecovery(1)
	sm := kv.NewStore()
	for i := uint64(1); i <= 4; i++ {
		e, _ := full.Entry(i)
		sm.Apply(e)
	}
	snap, _ := sm.Snapshot()
	base, _ := full.PosAt(4)
	rest, _ := full.Slice(5, 6)
	if err := n.InstallState(snap, base, rest, 1, e1, 5); err != nil {
		t.Fatal(err)
	}
	rd := n.Ready()
	if len(rd.Entries) != 0 || rd.Truncated != nil {
		t.Fatalf("the Ready after the install stores %d entries (truncated %v) of the replaced log", len(rd.Entries), rd.Truncated)
	}
	if got := n.Stored(); got != 5 {
		t.Fatalf("stored %d, want the installed log's last 5", got)
	}
}

// A long hold costs each Ready only its own entries: a master cut off from
// every back-up keeps its new entries unstored, and the Ready after each
// proposal must not copy the whole held tail again (quadratic: 20,000
// writes took 11 s in the simulator that way). Measured in bytes allocated,
// not time.
func TestHeldEntriesAreNotCopiedAtEveryReady(t *testing.T) {
	s := newSim(t, api.ModeStrict, 3, 2, 1)
	s.tick(40)
	m := s.nodes[1]
	s.partition([]uint64{1}, []uint64{2, 3})
	put := func() {
		if _, err := s.put(1, "k", "v"); err != nil {
			t.Fatal(err)
		}
		s.queue = nil // nothing crosses the cut
	}
	for range 2000 {
		put()
	}
	if held := m.Log().LastIndex() - m.Stored(); held < 1000 {
		t.Fatalf("%d entries held, want the cut-off master to hold its new ones", held)
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	const n = 200
	for range n {
		put()
	}
	runtime.ReadMemStats(&after)
	// A copy of the held tail would be 2,000 entries (over 100 KB) a Ready.
	if per := (after.TotalAlloc - before.TotalAlloc) / n; per > 16<<10 {
		t.Fatalf("%d bytes allocated per proposal with %d entries held: the held tail is copied", per, m.Log().LastIndex()-m.Stored())
	}
}
