package store

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/mastership/mastership/agent/rlog"
)

// A fault-injecting segFS and engine for crash tests of the store's logic:
// every create and remove is durable when it returns (as dirFS makes
// them), a write is durable once its file is synced, and a crash (a power
// loss at a chosen step) lets each unsynced write land sector by sector,
// any subset of them.

// crashPanic unwinds the store from the step where the crash comes.
type crashPanic struct{}

type crashCtl struct {
	ops, at int // crash when ops reaches at (0: never)
	rng     *rand.Rand
}

func (c *crashCtl) step() {
	c.ops++
	if c.at != 0 && c.ops == c.at {
		panic(crashPanic{})
	}
}

type pendingWrite struct {
	off int64
	b   []byte
}

type cFile struct {
	ctl     *crashCtl
	durable []byte
	cur     []byte
	pending []pendingWrite
}

type cFS struct {
	ctl   *crashCtl
	files map[string]*cFile
}

func (f *cFS) list() ([]string, error) {
	var ns []string
	for n := range f.files {
		ns = append(ns, n)
	}
	slices.Sort(ns)
	return ns, nil
}
func (f *cFS) create(name string, size int64) (segFile, error) {
	f.ctl.step()
	cf := &cFile{ctl: f.ctl, durable: make([]byte, size), cur: make([]byte, size)}
	f.files[name] = cf
	return cf, nil
}
func (f *cFS) open(name string) (segFile, error) {
	cf, ok := f.files[name]
	if !ok {
		return nil, errors.New("no file " + name)
	}
	return cf, nil
}
func (f *cFS) remove(names ...string) error {
	for _, n := range names {
		f.ctl.step()
		delete(f.files, n)
	}
	return nil
}
func (f *cFS) path(name string) string { return name }

func (c *cFile) ReadAt(p []byte, off int64) (int, error) {
	if off > int64(len(c.cur)) {
		return 0, errors.New("eof")
	}
	n := copy(p, c.cur[off:])
	if n < len(p) {
		return n, errors.New("eof")
	}
	return n, nil
}
func (c *cFile) WriteAt(p []byte, off int64) (int, error) {
	c.ctl.step()
	copy(c.cur[off:], p)
	c.pending = append(c.pending, pendingWrite{off, slices.Clone(p)})
	return len(p), nil
}
func (c *cFile) sync() error {
	c.ctl.step()
	copy(c.durable, c.cur)
	c.pending = nil
	return nil
}
func (c *cFile) size() (int64, error) { return int64(len(c.cur)), nil }
func (c *cFile) close() error         { return nil }

// afterCrash is what the disk holds after a power loss now.
func (f *cFS) afterCrash(rng *rand.Rand) *cFS {
	out := &cFS{ctl: &crashCtl{}, files: map[string]*cFile{}}
	for n, cf := range f.files {
		img := slices.Clone(cf.durable)
		for _, w := range cf.pending {
			const sector = 512
			for s := w.off &^ (sector - 1); s < w.off+int64(len(w.b)); s += sector {
				if rng.IntN(2) == 0 {
					continue
				}
				lo, hi := max(s, w.off), min(s+sector, w.off+int64(len(w.b)))
				copy(img[lo:hi], w.b[lo-w.off:hi-w.off])
			}
		}
		out.files[n] = &cFile{ctl: out.ctl, durable: img, cur: slices.Clone(img)}
	}
	return out
}

type cEngine struct {
	ctl   *crashCtl
	inner *memEngine
}

func (e *cEngine) view(fn func(txn) error) error { return e.inner.view(fn) }
func (e *cEngine) update(fn func(txn) error) error {
	e.ctl.step()
	return e.inner.update(fn)
}
func (e *cEngine) close() error { return nil }

func newCrashStore(ctl *crashCtl, inner *memEngine, fs *cFS, segBytes int64) *Memory {
	fs.ctl = ctl
	for _, f := range fs.files {
		f.ctl = ctl
	}
	m := &Memory{}
	m.eng = &cEngine{ctl: ctl, inner: inner}
	m.fs = fs
	m.segBytes = segBytes
	m.now = func() time.Time { return time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC) }
	return m
}

func newMemEngine() *memEngine {
	e := &memEngine{buckets: map[bucket]*memBucket{}}
	for _, b := range buckets() {
		e.buckets[b] = &memBucket{}
	}
	return e
}

// state is a loaded log.
type state struct {
	base rlog.Pos
	es   []rlog.Entry
}

func (s state) tip() rlog.Pos { return last(s.base, s.es) }
func (s state) String() string {
	return fmt.Sprintf("base %d@%s last %s (%d entries)", s.base.Index, s.base.Epoch, s.tip(), len(s.es))
}
func sameState(a, b state) bool {
	if a.base != b.base || len(a.es) != len(b.es) {
		return false
	}
	for i := range a.es {
		if rlog.PosOf(a.es[i]) != rlog.PosOf(b.es[i]) {
			return false
		}
	}
	return true
}

type op struct {
	name string
	do   func(s *Memory) error
	// outcomes the op may leave after a crash in its middle, besides the
	// state before it
	after []state
}

// genOp draws an op that is valid on st, and the states it may leave.
func genOp(rng *rand.Rand, st state, step int) op {
	tip := st.tip()
	switch k := rng.IntN(10); {
	case k < 5:
		e := tip.Epoch
		if e.IsZero() || rng.IntN(2) == 0 {
			e = ep(tip.Epoch.Term+1, 1)
		}
		b := chain(tip, e, 1+rng.IntN(8))
		return op{fmt.Sprintf("Append %d from %d", len(b), tip.Index), func(s *Memory) error { return s.Append(b) },
			[]state{{st.base, slices.Concat(st.es, b)}}}
	case k < 7 && len(st.es) > 0:
		n := rng.IntN(len(st.es))
		i := st.base.Index + uint64(n)
		tp := st.base
		if n > 0 {
			tp = rlog.PosOf(st.es[n-1])
		}
		b := chain(tp, ep(tip.Epoch.Term+1, 2), rng.IntN(5))
		cutOnly := state{st.base, slices.Clone(st.es[:n])}
		var recs []Record
		if rng.IntN(2) == 0 {
			recs = []Record{record("g", i+1)}
		}
		return op{fmt.Sprintf("Persist trunc %d + %d (recs %d)", i, len(b), len(recs)), func(s *Memory) error {
			return s.Persist(Update{HardState: &HardState{MaxTerm: uint64(step)}, TruncateAfter: &i, Entries: b, Records: recs})
		}, []state{cutOnly, {st.base, slices.Concat(st.es[:n], b)}}}
	case k < 9 && len(st.es) > 0:
		n := rng.IntN(len(st.es))
		p := rlog.PosOf(st.es[n])
		return op{fmt.Sprintf("SaveSnapshot keep %d", p.Index), func(s *Memory) error { return s.SaveSnapshot(p, []byte("s")) },
			[]state{{p, slices.Clone(st.es[n+1:])}}}
	default:
		p := last(tip, chain(tip, ep(tip.Epoch.Term+2, 3), 1+rng.IntN(3)))
		return op{fmt.Sprintf("SaveSnapshot reset %d", p.Index), func(s *Memory) error { return s.SaveSnapshot(p, []byte("r")) },
			[]state{{p, nil}}}
	}
}

func runOps(t *testing.T, s *Memory, ops []op) (crashedAt int, err error) {
	defer func() {
		if r := recover(); r != nil {
			if _, ok := r.(crashPanic); !ok {
				panic(r)
			}
		}
	}()
	for k, o := range ops {
		crashedAt = k
		if err := o.do(s); err != nil {
			return k, fmt.Errorf("%s: %w", o.name, err)
		}
	}
	return -1, nil
}

// crashSeedsEnv sets how many seeds TestCrashEverywhere runs (default
// 25). Run it with 400 or more after a change to the store.
const crashSeedsEnv = "MASTERSHIP_STORE_CRASH_SEEDS"

// TestCrashEverywhere runs seeded random sequences of appends, truncations
// (with and without divergence records), and snapshots that keep or
// replace the log, on segments small enough to roll over and compact
// often, and crashes at every step of the store's files and engine. After
// each crash Load must succeed with the state before the step's call,
// after it, or (for a truncation with entries) after the cut alone; the
// store must go on; and no cut mark may be left.
func TestCrashEverywhere(t *testing.T) {
	seeds := uint64(25)
	if v := os.Getenv(crashSeedsEnv); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("%s=%q: %v", crashSeedsEnv, v, err)
		}
		seeds = n
	}
	for seed := uint64(1); seed <= seeds; seed++ {
		rng := rand.New(rand.NewPCG(seed, 1))
		segBytes := int64(256 + rng.IntN(2048))
		// Plan the ops against a model.
		var ops []op
		var states []state // states[k] before ops[k]
		st := state{}
		for step := range 80 {
			o := genOp(rng, st, step)
			ops = append(ops, o)
			states = append(states, st)
			st = o.after[len(o.after)-1]
		}
		states = append(states, st)
		// Count the steps.
		ctl := &crashCtl{}
		s := newCrashStore(ctl, newMemEngine(), &cFS{files: map[string]*cFile{}}, segBytes)
		if _, err := runOps(t, s, ops); err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
		total := ctl.ops
		for at := 1; at <= total; at++ {
			ctl := &crashCtl{at: at}
			eng := newMemEngine()
			fs := &cFS{files: map[string]*cFile{}}
			s := newCrashStore(ctl, eng, fs, segBytes)
			k, err := runOps(t, s, ops)
			if err != nil {
				t.Fatalf("seed %d at %d: %v", seed, at, err)
			}
			for try := range 3 {
				crng := rand.New(rand.NewPCG(seed, uint64(at*10+try)))
				r := newCrashStore(&crashCtl{}, cloneEngine(eng), fs.afterCrash(crng), segBytes)
				_, _, base, es, err := r.Load()
				if err != nil {
					t.Fatalf("seed %d crash at step %d during op %d %q: Load: %v", seed, at, k, ops[k].name, err)
				}
				got := state{base, es}
				ok := sameState(got, states[k])
				for _, a := range ops[k].after {
					ok = ok || sameState(got, a)
				}
				if !ok {
					t.Fatalf("seed %d crash at step %d during op %d %q: loaded %s; before %s, after %v",
						seed, at, k, ops[k].name, got, states[k], ops[k].after)
				}
				// And it goes on.
				nb := chain(got.tip(), ep(got.tip().Epoch.Term+5, 9), 3)
				if err := r.Append(nb); err != nil {
					t.Fatalf("seed %d crash at %d: Append after recovery: %v", seed, at, err)
				}
				_, _, base2, es2, err := r.Load()
				if err != nil || !sameState(state{base2, es2}, state{got.base, slices.Concat(got.es, nb)}) {
					t.Fatalf("seed %d crash at %d: reload after recovery: %v %s", seed, at, err, state{base2, es2})
				}
				// Crash-free invariant: records and cut mark.
				var cutLeft bool
				r.view(func(t txn) error { cutLeft = t.get(bucketMeta, []byte(keyCut)) != nil; return nil })
				if cutLeft {
					t.Fatalf("seed %d: cut mark left after Load", seed)
				}
			}
		}
	}
}

// TestCrashMigration crashes at every step of moving a legacy log
// bucket to segments.
func TestCrashMigration(t *testing.T) {
	es := chain(rlog.Pos{}, ep(1, 1), 30)
	fill := func(e *memEngine) {
		e.update(func(t txn) error {
			for _, x := range es {
				v, _ := encodeEntries([]rlog.Entry{x})
				t.put(bucketLog, key(x.Index), v[0])
			}
			return nil
		})
	}
	for at := 1; at < 40; at++ {
		eng := newMemEngine()
		fill(eng)
		fs := &cFS{files: map[string]*cFile{}}
		s := newCrashStore(&crashCtl{at: at}, eng, fs, 300)
		func() {
			defer func() {
				if r := recover(); r != nil {
					if _, ok := r.(crashPanic); !ok {
						panic(r)
					}
				}
			}()
			s.Load()
		}()
		for try := range 3 {
			r := newCrashStore(&crashCtl{}, cloneEngine(eng), fs.afterCrash(rand.New(rand.NewPCG(uint64(at), uint64(try)))), 300)
			_, _, base, got, err := r.Load()
			if err != nil || !sameState(state{base, got}, state{rlog.Pos{}, es}) {
				t.Fatalf("crash at %d: %v, %d entries", at, err, len(got))
			}
		}
	}
}

func cloneEngine(e *memEngine) *memEngine {
	out := &memEngine{buckets: map[bucket]*memBucket{}}
	for n, b := range e.buckets {
		nb := &memBucket{seq: b.seq}
		for _, kv := range b.kvs {
			nb.kvs = append(nb.kvs, memKV{slices.Clone(kv.k), slices.Clone(kv.v)})
		}
		out.buckets[n] = nb
	}
	return out
}
