package agent_test

import (
	"errors"
	"fmt"
	"math/rand"
	"testing"

	"github.com/mastership/mastership/agent"
	"github.com/mastership/mastership/agent/core"
	"github.com/mastership/mastership/agent/kv"
	"github.com/mastership/mastership/agent/rlog"
	"github.com/mastership/mastership/naming/api"
)

// The divergence decision of recovery step 2: after the fork, writes we
// applied or stamped are kept; no-ops and writes of others we never
// applied are not.
func TestDivergentWrites(t *testing.T) {
	put := func(k string) []byte {
		b, err := kv.EncodeOp(kv.Op{Kind: kv.KindPut, Key: k, Value: []byte("v")})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	e1, mine, theirs := api.Epoch{Term: 1, ID: 1}, api.Epoch{Term: 2, ID: 3}, api.Epoch{Term: 2, ID: 2}
	shared := rlog.New()
	a, _ := shared.AppendNew(e1, 1, 1, put("a"))
	master := rlog.New()
	master.Append(a)
	master.AppendNew(theirs, 1, 9, put("m"))
	local := rlog.New()
	local.Append(a)
	applied, _ := local.AppendNew(mine, 1, 2, put("applied"))
	local.AppendNew(mine, 0, 0, nil)                         // a no-op
	local.AppendNew(mine, 1, 3, put("stamped, not applied")) // acknowledged maybe: ours
	local.AppendNew(theirs, 1, 4, put("theirs, not applied"))
	fork, kept, uncompared, err := agent.DivergentWrites(local, master, applied.Index, 3)
	if err != nil || uncompared != 0 {
		t.Fatal(err, uncompared)
	}
	if fork != a.Index {
		t.Fatalf("fork %d, want %d", fork, a.Index)
	}
	var seqs []uint64
	for _, e := range kept {
		seqs = append(seqs, e.Seq)
	}
	if len(seqs) != 2 || seqs[0] != 2 || seqs[1] != 3 {
		t.Fatalf("kept seqs %v, want [2 3]", seqs)
	}
	// Nothing in common to compare (the master starts past the fork): all
	// of ours counts as divergent.
	far := rlog.NewAt(rlog.Pos{Index: 10, Epoch: theirs, Hash: [32]byte{1}})
	fork, kept, uncompared, err = agent.DivergentWrites(local, far, applied.Index, 3)
	if err != nil || fork != 0 || len(kept) != 3 || uncompared != 0 {
		t.Fatalf("fork below both logs: fork %d, %d kept, uncompared %d, %v; want 0, 3, 0 (local holds its whole log)", fork, len(kept), uncompared, err)
	}
	// Local compacted past the fork (it starts after a snapshot at 2, the
	// fork is at 1): what it holds after its snapshot is kept, and the
	// range up to the snapshot is reported as not compared.
	compacted := rlog.NewAt(mustPos(t, local, 2))
	rest, _ := local.Slice(3, local.LastIndex()+1)
	if err := compacted.Append(rest...); err != nil {
		t.Fatal(err)
	}
	fork, kept, uncompared, err = agent.DivergentWrites(compacted, master, applied.Index, 3)
	if err != nil || fork != 2 || uncompared != 2 || len(kept) != 1 || kept[0].Seq != 3 {
		t.Fatalf("compacted past the fork: fork %d, kept %v, uncompared %d, %v; want 2, [seq 3], 2", fork, kept, uncompared, err)
	}
}

func mustPos(t *testing.T, l *rlog.Log, i uint64) rlog.Pos {
	t.Helper()
	p, err := l.PosAt(i)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// The verification of a download (figure 10, act 1040) and of its
// install, for the runtime and the simulator alike.
func TestCheckDownload(t *testing.T) {
	sm := kv.NewStore()
	op, _ := kv.EncodeOp(kv.Op{Kind: kv.KindPut, Key: "k", Value: []byte("v")})
	l := rlog.New()
	e, _ := l.AppendNew(api.Epoch{Term: 2, ID: 1}, 1, 1, op)
	sm.Apply(e)
	snap, err := sm.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	good := agent.State{Snapshot: snap, Digest: sm.Digest(), Epoch: api.Epoch{Term: 2, ID: 1}, Master: 1, Role: api.RoleMaster}
	cur := api.Epoch{Term: 2, ID: 1}
	if err := agent.CheckDownload(kv.NewStore(), good, 1, cur); err != nil {
		t.Fatalf("a good download: %v", err)
	}
	bad := func(f func(*agent.State)) agent.State { s := good; f(&s); return s }
	corrupt := append([]byte(nil), snap...)
	corrupt[len(corrupt)-1] ^= 0xff
	for _, tc := range []struct {
		name string
		st   agent.State
		want error
	}{
		{"a back-up", bad(func(s *agent.State) { s.Role = api.RoleBackup }), nil},
		{"another master", bad(func(s *agent.State) { s.Master = 2 }), nil},
		{"an older epoch", bad(func(s *agent.State) { s.Epoch = api.Epoch{Term: 1, ID: 1} }), agent.ErrOlderEpoch},
		{"a corrupted snapshot", bad(func(s *agent.State) { s.Snapshot = corrupt }), agent.ErrDigestMismatch},
		{"another digest", bad(func(s *agent.State) { s.Digest = rlog.Digest{Index: 1} }), agent.ErrDigestMismatch},
	} {
		err := agent.CheckDownload(kv.NewStore(), tc.st, 1, cur)
		if err == nil || (tc.want != nil && !errors.Is(err, tc.want)) {
			t.Errorf("%s: %v, want a refusal (%v)", tc.name, err, tc.want)
		}
	}
	if err := agent.CheckInstalled(sm.Digest(), sm.Digest()); err != nil {
		t.Fatal(err)
	}
	if err := agent.CheckInstalled(rlog.Digest{Index: sm.Digest().Index}, sm.Digest()); !errors.Is(err, agent.ErrDigestMismatch) {
		t.Fatalf("an install with another digest at the same index: %v", err)
	}
	if err := agent.CheckInstalled(rlog.Digest{Index: sm.Digest().Index + 1}, sm.Digest()); err != nil {
		t.Fatalf("an install past the master's index: %v", err)
	}
}

// The state an agent serves for download (CaptureState, for LocalState and
// the simulator): the snapshot at the state machine's applied index, the
// log after it, the digest, and the core's role, epoch and master; a
// download of it installs to the same digest. A log compacted past the
// applied index cannot serve one.
func TestCaptureState(t *testing.T) {
	ep := api.Epoch{Term: 3, ID: 2}
	for _, tc := range []struct {
		name          string
		base, applied uint64 // the log starts after base; the state machine applied up to applied
		err           bool
	}{
		{"nothing applied", 0, 0, false},
		{"half applied", 0, 3, false},
		{"all applied", 0, 6, false},
		{"a compacted log", 2, 4, false},
		{"applied at the log's base", 2, 2, false},
		{"applied below the log's base", 4, 2, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			full := rlog.New()
			for i := range 6 {
				op, _ := kv.EncodeOp(kv.Op{Kind: kv.KindPut, Key: fmt.Sprintf("k%d", i%4), Value: []byte(fmt.Sprint(i))})
				full.AppendNew(ep, 7, uint64(i+1), op)
			}
			sm := kv.NewStore()
			for i := uint64(1); i <= tc.applied; i++ {
				e, _ := full.Entry(i)
				sm.Apply(e)
			}
			log := rlog.NewAt(mustPos(t, full, tc.base))
			rest, _ := full.Slice(tc.base+1, full.LastIndex()+1)
			if err := log.Append(rest...); err != nil {
				t.Fatal(err)
			}
			n := core.NewNode(core.Config{ID: 1, Group: "g", Mode: api.ModeAvailable, HeartbeatTicks: 2, ElectionTicks: 10,
				StaggerTicks: 5, WriteTicks: 20, Rand: rand.New(rand.NewSource(1))}, sm, log, core.HardState{Epoch: ep, Master: 2})
			st, err := agent.CaptureState(n, sm)
			if tc.err {
				if err == nil {
					t.Fatalf("captured %+v from a log that starts after the applied index", st)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if st.Digest != sm.Digest() || st.Digest.Index != tc.applied || st.Base.Index != tc.applied ||
				len(st.Entries) != int(6-tc.applied) || st.Epoch != ep || st.Master != 2 || st.Role != api.RoleBackup {
				t.Fatalf("captured base %d, %d entries, digest %v, epoch %s, master %d, role %s; want base %d, %d entries, digest %v, %s, 2, back-up",
					st.Base.Index, len(st.Entries), st.Digest, st.Epoch, st.Master, st.Role, tc.applied, 6-tc.applied, sm.Digest(), ep)
			}
			if got, err := kv.NewStore().SnapshotDigest(st.Snapshot); err != nil || got != st.Digest {
				t.Fatalf("snapshot restores to %v (%v), reported %v", got, err, st.Digest)
			}
			// The download installs on an agent recovering towards 2 and
			// applies the whole log: the master's state.
			other := kv.NewStore()
			o := core.NewNode(core.Config{ID: 3, Group: "g", Mode: api.ModeAvailable, HeartbeatTicks: 2, ElectionTicks: 10,
				StaggerTicks: 5, WriteTicks: 20, Rand: rand.New(rand.NewSource(3))}, other, rlog.New(), core.HardState{})
			o.BeginRecovery(2)
			if err := o.InstallState(st.Snapshot, st.Base, st.Entries, 2, ep, full.LastIndex()); err != nil {
				t.Fatal(err)
			}
			want := kv.NewStore()
			for i := uint64(1); i <= full.LastIndex(); i++ {
				e, _ := full.Entry(i)
				want.Apply(e)
			}
			if other.Digest() != want.Digest() {
				t.Fatalf("installed digest %v, want %v", other.Digest(), want.Digest())
			}
		})
	}
}

// forgedBase answers as a master whose log starts after a snapshot past
// everything local holds, in an epoch it names: it holds no index local
// holds, so only its word on the base's epoch decides.
type forgedBase struct{ base rlog.Pos }

func (f forgedBase) Span() (uint64, uint64, error) { return f.base.Index, f.base.Index + 5, nil }
func (f forgedBase) HashAt(i uint64) ([32]byte, bool, error) {
	return [32]byte{byte(i)}, i >= f.base.Index, nil
}
func (f forgedBase) BasePos() (rlog.Pos, error) { return f.base, nil }

// A master's word on an epoch of our own proves nothing to us: our
// entries of it, which we stamped and may have acknowledged, are kept as
// records even when the remote base names that epoch past our log (a
// forged or mistaken answer would otherwise overwrite them unrecorded).
// On an epoch of another's, the proof stands: nothing is kept.
func TestDivergentWritesOwnEpochBase(t *testing.T) {
	put := func(k string) []byte {
		b, _ := kv.EncodeOp(kv.Op{Kind: kv.KindPut, Key: k, Value: []byte("v")})
		return b
	}
	e1, mine := api.Epoch{Term: 1, ID: 1}, api.Epoch{Term: 2, ID: 3}
	local := rlog.New()
	local.AppendNew(e1, 1, 1, put("a"))
	local.AppendNew(e1, 1, 2, put("b"))
	for i := range 4 {
		local.AppendNew(mine, 2, uint64(i+1), put(fmt.Sprint("mine", i)))
	}
	if err := local.Compact(1); err != nil {
		t.Fatal(err)
	}
	last := local.LastIndex()
	fork, kept, uncompared, err := agent.DivergentWrites(local, forgedBase{rlog.Pos{Index: last + 10, Epoch: mine, Hash: [32]byte{9}}}, last, 3)
	if err != nil || fork != 2 || len(kept) != 4 || uncompared != 0 {
		t.Fatalf("base in our own epoch: fork %d, %d kept, uncompared %d, %v; want 2, 4 (ours), 0", fork, len(kept), uncompared, err)
	}
	fork, kept, uncompared, err = agent.DivergentWrites(local, forgedBase{rlog.Pos{Index: last + 10, Epoch: mine, Hash: [32]byte{9}}}, last, 7)
	if err != nil || fork != last || len(kept) != 0 || uncompared != 0 {
		t.Fatalf("base in the master's epoch (we are 7): fork %d, %d kept, uncompared %d, %v; want %d, 0, 0", fork, len(kept), uncompared, err, last)
	}
}

// A download serves only what the master stored: a write it holds in
// memory until a back-up's answer lets it go out (core.Node.Ready) is not
// in the captured state, which a crash of the master could otherwise leave
// on the back-up alone.
func TestCaptureStateOnlyStored(t *testing.T) {
	nodes := map[uint64]*core.Node{}
	sms := map[uint64]*kv.Store{}
	for _, id := range []uint64{1, 2} {
		sms[id] = kv.NewStore()
		nodes[id] = core.NewNode(core.Config{ID: id, Group: "g", Priority: int(3 - id), Mode: api.ModeAvailable, HeartbeatTicks: 2,
			ElectionTicks: 10, StaggerTicks: 5, WriteTicks: 20, Rand: rand.New(rand.NewSource(int64(id)))}, sms[id], rlog.New(), core.HardState{})
	}
	for _, id := range []uint64{1, 2} {
		nodes[id].SetView([]core.Peer{{ID: 1, Priority: 2, Alive: true}, {ID: 2, Priority: 1, Alive: true}})
	}
	var queue []core.Message
	collect := func(id uint64) { queue = append(queue, nodes[id].Ready().Messages...) }
	deliver := func() {
		for len(queue) > 0 {
			m := queue[0]
			queue = queue[1:]
			nodes[m.To].Step(m)
			collect(m.To)
		}
	}
	for range 40 {
		for _, id := range []uint64{1, 2} {
			nodes[id].Tick()
			collect(id)
		}
		deliver()
	}
	m := nodes[1]
	if m.Role() != api.RoleMaster {
		t.Fatalf("1 is %s, want master", m.Role())
	}
	put := func(ref uint64, k string) {
		op, _ := kv.EncodeOp(kv.Op{Kind: kv.KindPut, Key: k, Value: []byte("v")})
		if err := m.Propose(ref, 7, ref, op); err != nil {
			t.Fatal(err)
		}
		collect(1)
	}
	put(1, "sent") // goes out at once; 2's answer waits in the queue
	put(2, "held") // 2 has an append in flight: held, unstored
	if m.Stored() != m.Log().LastIndex()-1 {
		t.Fatalf("stored %d, last %d: want the second write held", m.Stored(), m.Log().LastIndex())
	}
	st, err := agent.CaptureState(m, sms[1])
	if err != nil {
		t.Fatal(err)
	}
	if n := len(st.Entries); n == 0 || st.Entries[n-1].Index != m.Stored() {
		t.Fatalf("captured %d entries after %d, want them up to the stored %d, not to the last %d", n, st.Base.Index, m.Stored(), m.Log().LastIndex())
	}
	deliver()
	st, err = agent.CaptureState(m, sms[1])
	if err != nil {
		t.Fatal(err)
	}
	// Both writes went out, were answered and applied: all is captured.
	if last := m.Log().LastIndex(); m.Stored() != last || st.Digest.Index != last || len(st.Entries) != 0 {
		t.Fatalf("after the answers: stored %d, last %d, captured digest at %d and %d entries", m.Stored(), last, st.Digest.Index, len(st.Entries))
	}
}
