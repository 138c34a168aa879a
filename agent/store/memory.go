package store

import (
	"bytes"
	"errors"
	"slices"
	"time"
)

// Memory is a Storage that keeps everything in memory, for tests and agents
// run without a data directory. It runs the same logic and stores the same
// msgpack bytes as Bolt, so it behaves exactly as Bolt does: same
// validation, same errors, same values back (copies, with times in UTC).
//
// Close does nothing: the contents stay and every method keeps working, so a
// test harness can hand the same *Memory to an agent it restarts, as a
// restarted process would reopen its data directory. Whatever a method
// returned is "durable" in that sense.
//
// A Memory is safe for concurrent use.
type Memory struct {
	core
}

// NewMemory returns an empty Memory.
func NewMemory() *Memory {
	e := &memEngine{buckets: map[bucket]*memBucket{}}
	for _, b := range buckets() {
		e.buckets[b] = &memBucket{}
	}
	m := &Memory{}
	m.eng = e
	m.fs = newMemFS()
	m.segBytes = DefaultSegmentBytes
	m.now = time.Now
	return m
}

// errReadOnly is returned by a write inside a view; core never does one.
var errReadOnly = errors.New("store: write in a read-only transaction")

// memEngine holds each bucket as a key-sorted slice. The log's keys arrive
// in increasing order and leave from either end, so the slice needs no
// fancier structure.
type memEngine struct {
	buckets map[bucket]*memBucket
}

type memBucket struct {
	kvs []memKV // sorted by key
	seq uint64
}

type memKV struct{ k, v []byte }

func (e *memEngine) view(fn func(txn) error) error {
	return fn(&memTxn{e: e, readOnly: true})
}

// update runs fn and, if it fails, undoes its writes in reverse order, which
// is what a bbolt rollback amounts to.
func (e *memEngine) update(fn func(txn) error) error {
	t := &memTxn{e: e}
	if err := fn(t); err != nil {
		for i := len(t.undo) - 1; i >= 0; i-- {
			t.undo[i]()
		}
		return err
	}
	return nil
}

func (e *memEngine) close() error { return nil }

// memTxn is a transaction on a memEngine. undo collects the inverse of every
// write made so far.
type memTxn struct {
	e        *memEngine
	readOnly bool
	undo     []func()
}

// bucket returns b's contents. The map is filled by NewMemory and only read
// afterwards, so concurrent views may share it.
func (t *memTxn) bucket(b bucket) *memBucket {
	mb := t.e.buckets[b]
	if mb == nil {
		panic("store: unknown bucket " + string(b))
	}
	return mb
}

// search returns where k is or would be inserted in mb, and whether it is
// there.
func (mb *memBucket) search(k []byte) (int, bool) {
	return slices.BinarySearchFunc(mb.kvs, k, func(kv memKV, k []byte) int { return bytes.Compare(kv.k, k) })
}

func (t *memTxn) get(b bucket, k []byte) []byte {
	mb := t.bucket(b)
	if i, ok := mb.search(k); ok {
		return mb.kvs[i].v
	}
	return nil
}

func (t *memTxn) put(b bucket, k, v []byte) error {
	if t.readOnly {
		return errReadOnly
	}
	mb := t.bucket(b)
	// Copy both: the caller may reuse its buffers, and bbolt copies too.
	kv := memKV{k: bytes.Clone(k), v: append([]byte{}, v...)}
	i, ok := mb.search(k)
	if ok {
		old := mb.kvs[i]
		mb.kvs[i] = kv
		t.undo = append(t.undo, func() { mb.kvs[i] = old })
		return nil
	}
	mb.kvs = slices.Insert(mb.kvs, i, kv)
	t.undo = append(t.undo, func() { mb.kvs = slices.Delete(mb.kvs, i, i+1) })
	return nil
}

func (t *memTxn) delete(b bucket, k []byte) error {
	return t.deleteRange(b, k, append(bytes.Clone(k), 0))
}

func (t *memTxn) deleteRange(b bucket, from, to []byte) error {
	if t.readOnly {
		return errReadOnly
	}
	mb := t.bucket(b)
	lo, hi := 0, len(mb.kvs)
	if from != nil {
		lo, _ = mb.search(from)
	}
	if to != nil {
		hi, _ = mb.search(to)
	}
	if lo >= hi {
		return nil
	}
	removed := slices.Clone(mb.kvs[lo:hi])
	mb.kvs = slices.Delete(mb.kvs, lo, hi)
	t.undo = append(t.undo, func() { mb.kvs = slices.Insert(mb.kvs, lo, removed...) })
	return nil
}

func (t *memTxn) last(b bucket) (k, v []byte) {
	mb := t.bucket(b)
	if n := len(mb.kvs); n > 0 {
		return mb.kvs[n-1].k, mb.kvs[n-1].v
	}
	return nil, nil
}

func (t *memTxn) scan(b bucket, from []byte, fn func(k, v []byte) error) error {
	mb := t.bucket(b)
	i := 0
	if from != nil {
		i, _ = mb.search(from)
	}
	for ; i < len(mb.kvs); i++ {
		if err := fn(mb.kvs[i].k, mb.kvs[i].v); err != nil {
			return err
		}
	}
	return nil
}

func (t *memTxn) nextSeq(b bucket) (uint64, error) {
	if t.readOnly {
		return 0, errReadOnly
	}
	mb := t.bucket(b)
	mb.seq++
	t.undo = append(t.undo, func() { mb.seq-- })
	return mb.seq, nil
}
