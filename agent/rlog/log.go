package rlog

import (
	"errors"
	"fmt"

	"github.com/mastership/mastership/naming/api"
)

// Errors returned by Log methods, wrapped with the indices involved.
var (
	// ErrGap means an appended entry's index does not follow the last one.
	ErrGap = errors.New("rlog: index not contiguous")
	// ErrEpoch means an appended entry's epoch is zero or older than the
	// last entry's: a log never goes back to an older mastership.
	ErrEpoch = errors.New("rlog: epoch goes back")
	// ErrChain means an appended entry's hash does not chain to its
	// predecessor: the sender's log differs from ours before this index.
	ErrChain = errors.New("rlog: hash chain broken")
	// ErrCompacted means the index is below the snapshot base: the entry
	// is gone, only the base's hash remains.
	ErrCompacted = errors.New("rlog: index compacted")
	// ErrUnavailable means the index is past the last entry.
	ErrUnavailable = errors.New("rlog: index past last entry")
)

// Log is an in-memory replication log above a snapshot base. Entries at or
// below the base are gone, but the base keeps the index, epoch and hash of
// the last of them so the chain continues across compaction.
//
// A Log is owned by one goroutine; it does no locking.
type Log struct {
	base Pos
	// ents[k] has index base.Index+1+k.
	ents []Entry
}

// New returns an empty log: base at index 0 with the zero hash.
func New() *Log { return &Log{} }

// NewAt returns an empty log whose base is p, as after installing a
// snapshot taken at p; the next entry must have index p.Index+1 and chain
// to p.Hash.
func NewAt(p Pos) *Log { return &Log{base: p} }

// Base returns the snapshot base: the last point whose entry is no longer held.
func (l *Log) Base() Pos { return l.base }

// Last returns the point of the last entry, or the base if there is none.
func (l *Log) Last() Pos {
	if n := len(l.ents); n > 0 {
		return PosOf(l.ents[n-1])
	}
	return l.base
}

// LastIndex returns the index of the last entry, or of the base.
func (l *Log) LastIndex() uint64 { return l.base.Index + uint64(len(l.ents)) }

// Len returns how many entries the log holds above its base.
func (l *Log) Len() int { return len(l.ents) }

// check returns an error unless i is an entry held above the base.
func (l *Log) check(i uint64) error {
	switch {
	case i <= l.base.Index:
		return fmt.Errorf("%w: index %d, base %d", ErrCompacted, i, l.base.Index)
	case i > l.LastIndex():
		return fmt.Errorf("%w: index %d, last %d", ErrUnavailable, i, l.LastIndex())
	}
	return nil
}

// Entry returns the entry at index i.
func (l *Log) Entry(i uint64) (Entry, error) {
	if err := l.check(i); err != nil {
		return Entry{}, err
	}
	return l.ents[i-l.base.Index-1], nil
}

// PosAt returns the point at index i: the base, index 0 (the empty prefix),
// or a held entry.
func (l *Log) PosAt(i uint64) (Pos, error) {
	switch {
	case i == l.base.Index:
		return l.base, nil
	case i == 0:
		return Pos{}, nil
	}
	e, err := l.Entry(i)
	if err != nil {
		return Pos{}, err
	}
	return PosOf(e), nil
}

// EpochAt returns the epoch of the entry at i (or of the base, or the zero
// epoch at index 0).
func (l *Log) EpochAt(i uint64) (api.Epoch, error) {
	p, err := l.PosAt(i)
	return p.Epoch, err
}

// Span returns the lowest and highest index whose hash the log can give:
// the base index and the last index. Log implements Prober; its error is
// always nil.
func (l *Log) Span() (first, last uint64, err error) {
	return l.base.Index, l.LastIndex(), nil
}

// HashAt returns the chain hash at index i, and false when the log holds
// neither the entry nor the base there. Every log holds index 0, the empty
// prefix with the zero hash. Its error is always nil.
func (l *Log) HashAt(i uint64) (hash [32]byte, ok bool, err error) {
	p, err := l.PosAt(i)
	if err != nil {
		return [32]byte{}, false, nil
	}
	return p.Hash, true, nil
}

// BasePos returns the base, for BaseProber. Its error is always nil.
func (l *Log) BasePos() (Pos, error) { return l.base, nil }

var _ BaseProber = (*Log)(nil)

// Slice returns the entries with indices in [lo, hi), as etcd's
// Storage.Entries and Go slices count. The result shares the log's memory
// and must not be changed; it stays valid, and may be read from other
// goroutines, whatever the log does next: the log never writes over an
// entry it gave out (appends go past every slice's end, a truncation
// makes the next append move to new memory, compaction copies).
func (l *Log) Slice(lo, hi uint64) ([]Entry, error) {
	if lo > hi {
		return nil, fmt.Errorf("rlog: slice [%d, %d): lo above hi", lo, hi)
	}
	if lo == hi {
		return nil, nil
	}
	if err := l.check(lo); err != nil {
		return nil, err
	}
	if err := l.check(hi - 1); err != nil {
		return nil, err
	}
	b := l.base.Index + 1
	return l.ents[lo-b : hi-b : hi-b], nil
}

// OpBytes is the size of the operations of the entries in [lo, hi), the
// indexes the log does not hold counting nothing; it stops counting past
// limit.
func (l *Log) OpBytes(lo, hi uint64, limit int) int {
	b := l.base.Index + 1
	lo, hi = max(lo, b), min(hi, l.LastIndex()+1)
	n := 0
	for i := lo; i < hi && n <= limit; i++ {
		n += len(l.ents[i-b].Op)
	}
	return n
}

// validNext checks that e may follow p.
func validNext(p Pos, e *Entry) error {
	if err := validOrder(p, e); err != nil {
		return err
	}
	if want := ChainHash(p.Hash, *e); e.Hash != want {
		return invalidNext(p, *e, want)
	}
	return nil
}

// validOrder checks e's place after p, all of validNext but the hash:
// the next index and an epoch no older than p's.
func validOrder(p Pos, e *Entry) error {
	if e.Index != p.Index+1 || e.Epoch.IsZero() || e.Epoch.Less(p.Epoch) {
		return invalidNext(p, *e, [32]byte{})
	}
	return nil
}

// invalidNext says why e may not follow p (want: the hash e should have).
// Apart from validNext, so that the entries of the path taken by every
// append do not escape to the heap with the error's arguments.
//
//go:noinline
func invalidNext(p Pos, e Entry, want [32]byte) error {
	switch {
	case e.Index != p.Index+1:
		return fmt.Errorf("%w: %s after index %d", ErrGap, e, p.Index)
	case e.Epoch.IsZero() || e.Epoch.Less(p.Epoch):
		return fmt.Errorf("%w: %s after epoch %s", ErrEpoch, e, p.Epoch)
	}
	return fmt.Errorf("%w: %s has hash %x, want %x", ErrChain, e, e.Hash[:8], want[:8])
}

// Extends reports whether es may follow p, as Append checks them: each
// with the next index, an epoch no older than its predecessor's, and a
// hash chaining to it. It keeps nothing.
func Extends(p Pos, es []Entry) error {
	for i := range es {
		if err := validNext(p, &es[i]); err != nil {
			return fmt.Errorf("append: %w", err)
		}
		p = PosOf(es[i])
	}
	return nil
}

// Append adds entries after the last one. Each must have the next index, an
// epoch no older than its predecessor's, and a hash chaining to it. The
// batch is all or nothing: on error the log is unchanged.
func (l *Log) Append(es ...Entry) error {
	if err := Extends(l.Last(), es); err != nil {
		return err
	}
	l.ents = append(l.ents, es...)
	return nil
}

// AppendNew stamps a request with the next index and the chain hash, as the
// master does when it takes a request, appends it and returns it. op is kept
// as is, not copied.
func (l *Log) AppendNew(epoch api.Epoch, client, seq uint64, op []byte) (Entry, error) {
	p := l.Last()
	e := Entry{Epoch: epoch, Index: p.Index + 1, Client: client, Seq: seq, Op: op}
	if err := validOrder(p, &e); err != nil {
		return Entry{}, fmt.Errorf("append: %w", err)
	}
	// The hash is computed here from the last entry's: it chains by
	// construction, and Append's check would only compute it again.
	e.Hash = ChainHash(p.Hash, e)
	l.ents = append(l.ents, e)
	return e, nil
}

// TruncateAfter removes the entries after index i and returns them, oldest
// first; in recovery they become divergence records. Truncating at or past
// the last index removes nothing. i may not be below the base: compacted
// entries are applied state and cannot be taken back.
func (l *Log) TruncateAfter(i uint64) ([]Entry, error) {
	if i < l.base.Index {
		return nil, fmt.Errorf("truncate after %d: %w: base %d", i, ErrCompacted, l.base.Index)
	}
	if i >= l.LastIndex() {
		return nil, nil
	}
	k := i - l.base.Index
	removed := l.ents[k:len(l.ents):len(l.ents)]
	// No capacity left: the next append moves the log to new memory
	// instead of writing over the removed entries, which a slice given out
	// before (Slice, the removed ones returned here) may still read. The
	// old memory goes when the last of them does.
	l.ents = l.ents[:k:k]
	return removed, nil
}

// Compact drops the entries up to and including upTo, typically once a
// snapshot of the state machine at upTo is stored, and makes upTo the base.
// It takes no hash: the log already knows the chain hash at upTo, and a
// second copy could only disagree. Compacting at or below the base does
// nothing.
func (l *Log) Compact(upTo uint64) error {
	if upTo <= l.base.Index {
		return nil
	}
	e, err := l.Entry(upTo)
	if err != nil {
		return fmt.Errorf("compact to %d: %w", upTo, err)
	}
	k := upTo - l.base.Index
	// Copy rather than reslice so the dropped prefix's memory is released;
	// with room for as many entries as the log held, so that it does not
	// grow again from nothing, copying at every doubling, until the next
	// compaction (which sizes it by what it holds then).
	kept := make([]Entry, len(l.ents)-int(k), len(l.ents))
	copy(kept, l.ents[k:])
	l.ents = kept
	l.base = PosOf(e)
	return nil
}
