package rlog_test

import (
	"errors"
	"fmt"
	"math/bits"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/mastership/mastership/agent/kv"
	"github.com/mastership/mastership/agent/rlog"
	"github.com/mastership/mastership/naming/api"
)

// side is one replica in the reference model: its full log (never
// compacted, the model's ground truth), the log under test (possibly
// compacted), and the state snapshot at that log's base.
type side struct {
	full     []rlog.Entry
	log      *rlog.Log
	baseSnap []byte
}

// randomOp returns an encoded kv op over a few keys so that sides collide.
func randomOp(rng *rand.Rand) []byte {
	k := string(rune('a' + rng.IntN(4)))
	v := []byte{byte(rng.IntN(3))}
	var op kv.Op
	switch rng.IntN(4) {
	case 0:
		op = kv.Op{Kind: kv.KindDel, Key: k}
	case 1:
		op = kv.Op{Kind: kv.KindCAS, Key: k, ExpectAbsent: true, Value: v}
	default:
		op = kv.Op{Kind: kv.KindPut, Key: k, Value: v}
	}
	b, err := kv.EncodeOp(op)
	if err != nil {
		panic(err)
	}
	return b
}

// grow appends n random entries to l at epochs from ep on, sometimes moving
// to a newer term, and returns them.
func grow(t *testing.T, rng *rand.Rand, l *rlog.Log, ep api.Epoch, n int) []rlog.Entry {
	t.Helper()
	var out []rlog.Entry
	for range n {
		if rng.IntN(5) == 0 {
			ep.Term++
		}
		client := uint64(rng.IntN(3))
		e, err := l.AppendNew(ep, client, uint64(l.LastIndex()+1), randomOp(rng))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, e)
	}
	return out
}

// bruteFork is the model's answer: the longest common prefix of the two
// full logs, entry by entry.
func bruteFork(a, b []rlog.Entry) uint64 {
	var i int
	for i < len(a) && i < len(b) && a[i].Hash == b[i].Hash {
		i++
	}
	return uint64(i)
}

// digestAt applies full[:n] to a fresh store.
func storeAt(t *testing.T, full []rlog.Entry, n uint64) *kv.Store {
	t.Helper()
	s := kv.NewStore()
	for _, e := range full[:n] {
		s.Apply(e)
	}
	return s
}

// newSide builds a replica from its full log, compacting at a random index
// (or not at all) and keeping the snapshot at the base.
func newSide(t *testing.T, rng *rand.Rand, full []rlog.Entry) *side {
	t.Helper()
	l := rlog.New()
	if err := l.Append(full...); err != nil {
		t.Fatal(err)
	}
	var base uint64
	if rng.IntN(3) == 0 && len(full) > 0 {
		base = uint64(rng.IntN(len(full) + 1))
		if err := l.Compact(base); err != nil {
			t.Fatal(err)
		}
	}
	snap, err := storeAt(t, full, base).Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	return &side{full: full, log: l, baseSnap: snap}
}

// counting wraps a Prober and counts HashAt calls: the remote side's
// round trips.
type counting struct {
	rlog.Prober
	n int
}

func (c *counting) HashAt(i uint64) ([32]byte, bool, error) {
	c.n++
	return c.Prober.HashAt(i)
}

// TestFindForkModel forks random logs at random points, compacts them at
// random points, and checks FindFork against the brute-force answer, then
// that recovery (truncate, take the other side's suffix, replay) converges
// to the other side's digest.
func TestFindForkModel(t *testing.T) {
	for seed := range uint64(400) {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 42))
			common := rlog.New()
			prefix := grow(t, rng, common, api.Epoch{Term: 1, ID: 1}, rng.IntN(40))
			last := common.Last().Epoch.Max(api.Epoch{Term: 1, ID: 1})

			// Two masters, one per side of a partition, at the same term:
			// their epochs differ by master ID.
			fa, fb := rlog.NewAt(common.Last()), rlog.NewAt(common.Last())
			sufA := grow(t, rng, fa, api.Epoch{Term: last.Term + 1, ID: 2}, rng.IntN(20))
			sufB := grow(t, rng, fb, api.Epoch{Term: last.Term + 1, ID: 3}, rng.IntN(20))
			// Now and then local is no other master but a back-up of
			// remote's, behind it.
			lagging := rng.IntN(4) == 0
			if lagging {
				sufA = slices.Clone(sufB[:rng.IntN(len(sufB)+1)])
				// remote's master goes on in its epoch, as one does
				// while a back-up is down.
				if len(sufB) > 0 {
					for range rng.IntN(20) {
						e, err := fb.AppendNew(fb.Last().Epoch, 1, fb.LastIndex()+1, randomOp(rng))
						if err != nil {
							t.Fatal(err)
						}
						sufB = append(sufB, e)
					}
				}
			}
			local := newSide(t, rng, append(slices.Clone(prefix), sufA...))
			remote := newSide(t, rng, append(slices.Clone(prefix), sufB...))

			want := bruteFork(local.full, remote.full)
			if !lagging && len(sufA) > 0 && len(sufB) > 0 && want != uint64(len(prefix)) {
				t.Fatalf("model: fork %d, prefix %d", want, len(prefix))
			}
			lo := max(local.log.Base().Index, remote.log.Base().Index)
			hi := min(local.log.LastIndex(), remote.log.LastIndex())
			rp := &counting{Prober: remote.log}
			got, err := rlog.FindFork(local.log, rp)
			if lo > hi || want < lo {
				if !errors.Is(err, rlog.ErrForkUnknown) {
					t.Fatalf("fork %d below the held window [%d, %d]: got %d, %v", want, lo, hi, got, err)
				}
				// Where hashes cannot tell, the epoch of the remote base
				// may; what it proves is the fork itself.
				if byEpoch, ok := rlog.ForkByEpoch(local.log, remote.log.Base()); ok && byEpoch != want {
					t.Fatalf("ForkByEpoch = %d with remote base %s; brute force %d", byEpoch, remote.log.Base(), want)
				}
				return
			}
			if err != nil || got != want {
				t.Fatalf("FindFork = %d, %v; brute force %d", got, err, want)
			}
			// One probe to check the low end, then a binary search.
			if limit := 1 + bits.Len64(hi-lo); rp.n > limit {
				t.Fatalf("%d remote probes for a window of %d, limit %d", rp.n, hi-lo, limit)
			}

			// Divergent and TruncateAfter give local's entries after the fork.
			div, err := rlog.Divergent(local.log, got)
			if err != nil {
				t.Fatal(err)
			}
			removed, err := local.log.TruncateAfter(got)
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(div) != fmt.Sprint(removed) || fmt.Sprint(removed) != fmt.Sprint(nonNil(local.full[got:])) {
				t.Fatalf("divergent %v, removed %v, model %v", div, removed, local.full[got:])
			}

			// Both states agree at the fork.
			if a, b := storeAt(t, local.full, got).Digest(), storeAt(t, remote.full, got).Digest(); a != b {
				t.Fatalf("digests differ at the fork %d: %s vs %s", got, a, b)
			}

			// Take the remote suffix and replay from local's snapshot base.
			suffix, err := remote.log.Slice(got+1, remote.log.LastIndex()+1)
			if err != nil {
				t.Fatal(err)
			}
			if err := local.log.Append(suffix...); err != nil {
				t.Fatalf("append remote suffix: %v", err)
			}
			s := kv.NewStore()
			if err := s.Restore(local.baseSnap); err != nil {
				t.Fatal(err)
			}
			if _, err := rlog.ApplyTo(s, local.log, s.Index(), local.log.LastIndex()); err != nil {
				t.Fatal(err)
			}
			want2 := storeAt(t, remote.full, uint64(len(remote.full))).Digest()
			if s.Digest() != want2 || local.log.Last() != remote.log.Last() {
				t.Fatalf("after recovery: digest %s at %d, remote %s at %d", s.Digest(), s.Index(), want2, want2.Index)
			}
		})
	}
}

func nonNil(es []rlog.Entry) []rlog.Entry {
	if len(es) == 0 {
		return nil
	}
	return es
}

// failing is a remote that fails after n probes, as an RPC would.
type failing struct {
	rlog.Prober
	n int
}

var errDown = errors.New("remote down")

func (f *failing) HashAt(i uint64) ([32]byte, bool, error) {
	if f.n == 0 {
		return [32]byte{}, false, errDown
	}
	f.n--
	return f.Prober.HashAt(i)
}

func TestFindForkCases(t *testing.T) {
	ep := api.Epoch{Term: 1, ID: 1}
	mk := func(ops ...string) *rlog.Log {
		l := rlog.New()
		for _, op := range ops {
			if _, err := l.AppendNew(ep, 0, 0, []byte(op)); err != nil {
				t.Fatal(err)
			}
		}
		return l
	}
	cases := []struct {
		name       string
		local, rem *rlog.Log
		want       uint64
		wantErr    error
	}{
		{"both empty", mk(), mk(), 0, nil},
		{"local empty", mk(), mk("a", "b"), 0, nil},
		{"remote empty", mk("a"), mk(), 0, nil},
		{"equal", mk("a", "b", "c"), mk("a", "b", "c"), 3, nil},
		{"local behind", mk("a"), mk("a", "b", "c"), 1, nil},
		{"local ahead", mk("a", "b", "c"), mk("a"), 1, nil},
		{"differ at 1", mk("x", "b"), mk("a", "b"), 0, nil},
		{"differ at 3", mk("a", "b", "x", "d"), mk("a", "b", "c", "d"), 2, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := rlog.FindFork(c.local, c.rem)
			if got != c.want || !errors.Is(err, c.wantErr) {
				t.Fatalf("FindFork = %d, %v; want %d, %v", got, err, c.want, c.wantErr)
			}
			back, err := rlog.FindFork(c.rem, c.local)
			if back != got || err != nil {
				t.Fatalf("FindFork is not symmetric: %d, %v", back, err)
			}
		})
	}

	// The low end of the window differs, below which local has compacted.
	l, r := mk("x", "b", "c"), mk("a", "b", "c")
	if err := l.Compact(2); err != nil {
		t.Fatal(err)
	}
	if _, err := rlog.FindFork(l, r); !errors.Is(err, rlog.ErrForkUnknown) {
		t.Fatalf("fork below compaction: %v", err)
	}
	// Windows that do not overlap.
	l, r = mk("a", "b", "c", "d"), mk("a")
	l.Compact(3)
	if _, err := rlog.FindFork(l, r); !errors.Is(err, rlog.ErrForkUnknown) {
		t.Fatalf("disjoint windows: %v", err)
	}
	// Remote failures surface, wrapped.
	for n := range 3 { // FindFork makes 3 remote probes here
		_, err := rlog.FindFork(mk("a", "b", "c", "d"), &failing{Prober: mk("a", "b", "x", "d"), n: n})
		if !errors.Is(err, errDown) {
			t.Fatalf("failure after %d probes: %v", n, err)
		}
	}
}

func TestApplyTo(t *testing.T) {
	l := rlog.New()
	ep := api.Epoch{Term: 1, ID: 1}
	for i := range 5 {
		op, _ := kv.EncodeOp(kv.Op{Kind: kv.KindPut, Key: "k", Value: []byte{byte(i)}})
		l.AppendNew(ep, 1, uint64(i+1), op)
	}
	s := kv.NewStore()
	if rs, err := rlog.ApplyTo(s, l, 0, 0); err != nil || rs != nil {
		t.Fatalf("empty range: %v, %v", rs, err)
	}
	rs, err := rlog.ApplyTo(s, l, 0, 3)
	if err != nil || len(rs) != 3 || s.Index() != 3 || !rs[1].Found || rs[0].Found {
		t.Fatalf("ApplyTo(0, 3) = %+v, %v; index %d", rs, err, s.Index())
	}
	if _, err := rlog.ApplyTo(s, l, 2, 5); !errors.Is(err, rlog.ErrApplyOrder) || s.Index() != 3 {
		t.Fatalf("re-apply from 2: %v, index %d", err, s.Index())
	}
	if _, err := rlog.ApplyTo(s, l, 3, 6); !errors.Is(err, rlog.ErrUnavailable) || s.Index() != 3 {
		t.Fatalf("past last: %v, index %d", err, s.Index())
	}
	if v, _ := s.Get("k"); len(v) != 1 || v[0] != 2 {
		t.Fatalf("k = %v", v)
	}
	rs, err = rlog.ApplyTo(s, l, 3, 5)
	if err != nil || len(rs) != 2 || s.Index() != 5 {
		t.Fatalf("ApplyTo(3, 5) = %+v, %v", rs, err)
	}
}

// ForkByEpoch, case by case: what the epoch of the remote base proves
// about a local log that hashes cannot compare with it.
func TestForkByEpoch(t *testing.T) {
	e1, e2, e3 := api.Epoch{Term: 1, ID: 1}, api.Epoch{Term: 2, ID: 2}, api.Epoch{Term: 2, ID: 3}
	// build returns a log of the given epochs, one entry each, the same
	// ops for the same index whatever the epochs.
	build := func(eps ...api.Epoch) *rlog.Log {
		l := rlog.New()
		for i, ep := range eps {
			op, _ := kv.EncodeOp(kv.Op{Kind: kv.KindPut, Key: "k", Value: []byte{byte(i)}})
			if _, err := l.AppendNew(ep, 1, uint64(i+1), op); err != nil {
				t.Fatal(err)
			}
		}
		return l
	}
	at := func(l *rlog.Log, i uint64) rlog.Pos {
		p, err := l.PosAt(i)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	compacted := func(l *rlog.Log, upTo uint64) *rlog.Log {
		if err := l.Compact(upTo); err != nil {
			t.Fatal(err)
		}
		return l
	}
	master := build(e1, e1, e2, e2, e2, e2)
	for _, c := range []struct {
		name   string
		local  *rlog.Log
		remote rlog.Pos
		fork   uint64
		ok     bool
	}{
		// A back-up behind the master's snapshot, in the master's own
		// epoch: its whole log is the master's prefix.
		{"behind, same epoch", compacted(build(e1, e1, e2, e2), 2), at(master, 6), 4, true},
		// Behind, but the master's snapshot ends in a later epoch:
		// whether the back-up's entries are the master's is unknown.
		{"behind, older epoch", compacted(build(e1, e1, e2), 1), at(build(e1, e1, e3, e3, e3), 5), 0, false},
		// A losing side's entries of a newer epoch after the master's
		// base epoch: the fork is its last entry of that epoch.
		{"divergent after", compacted(build(e1, e1, e2, e3, e3, e3), 3), at(master, 4), 3, true},
		// The same, its snapshot past the last entry of that epoch: its
		// base is the only local point, and it is of e3.
		{"divergent, base past it", compacted(build(e1, e1, e2, e3, e3, e3), 4), at(master, 4), 0, false},
		// Local's snapshot is above the remote base: nothing to compare.
		{"local base above", compacted(build(e1, e1, e2, e2, e2, e2), 5), at(master, 4), 0, false},
		// A remote base of the right epoch and index but another hash is
		// no proof (a forged or corrupt answer).
		{"forged base", compacted(build(e1, e1, e2, e2), 1), rlog.Pos{Index: 4, Epoch: e2, Hash: [32]byte{1}}, 0, false},
		// A remote that never compacted has the zero base: nothing.
		{"remote never compacted", compacted(build(e1, e2), 1), rlog.Pos{}, 0, false},
	} {
		fork, ok := rlog.ForkByEpoch(c.local, c.remote)
		if fork != c.fork || ok != c.ok {
			t.Errorf("%s: ForkByEpoch = %d, %v; want %d, %v", c.name, fork, ok, c.fork, c.ok)
		}
	}
}
