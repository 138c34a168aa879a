package store

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/mastership/mastership/agent/rlog"
	"github.com/mastership/mastership/agent/wire"
	"github.com/mastership/mastership/naming/api"
)

// Errors returned by Storage methods, wrapped with the action and the
// indices or IDs involved. Test with errors.Is.
var (
	// ErrNotFound means no divergence record has the ID asked for.
	ErrNotFound = errors.New("store: not found")
	// ErrInvalid means the call's arguments were refused (a log batch that
	// does not extend the stored log, a truncation below the snapshot base,
	// a record carrying its own ID); nothing was changed.
	ErrInvalid = errors.New("store: invalid input")
	// ErrCorrupt means stored data failed to decode or breaks an invariant
	// of the store (an entry under the wrong key, a log that does not
	// chain). The error names the bucket and key.
	ErrCorrupt = errors.New("store: corrupt data")
	// ErrLocked means another process (or another handle in this process)
	// holds the data directory.
	ErrLocked = errors.New("store: data directory is in use by another process")
	// ErrClosed means the Bolt store was closed.
	ErrClosed = errors.New("store: closed")
)

// HardState is what an agent must not forget across a restart: forgetting a
// vote or an epoch would let it vote twice or follow an older mastership.
type HardState struct {
	// Epoch is the mastership epoch the agent follows or holds.
	Epoch api.Epoch `json:"epoch" codec:"e"`
	// Vote is the highest epoch it voted for.
	Vote api.Epoch `json:"vote" codec:"v"`
	// Master is the ID of the master it follows, 0 for none.
	Master uint64 `json:"master" codec:"m"`
	// MaxTerm is the highest term it has seen anywhere.
	MaxTerm uint64 `json:"max_term" codec:"t"`
}

// Record is one divergent write (wire.Record: the API serves records as
// they are stored).
type Record = wire.Record

// Storage is the agent's durable state: hard state, the replication log above
// a snapshot, and divergence records. The agent's owning goroutine calls every
// method; the HTTP API may call Records and Record from its own goroutines.
// Every method that returns without error has made its change durable, and a
// method that returns an error has changed nothing.
type Storage interface {
	// Load returns what was saved: the hard state, the snapshot and its
	// base position (zero Pos and nil snapshot if none), and the log
	// entries after the base, oldest first. The agent calls it once at
	// start, before any other method.
	Load() (hs HardState, snap []byte, base rlog.Pos, entries []rlog.Entry, err error)
	// SaveHardState replaces the hard state.
	SaveHardState(hs HardState) error
	// Persist saves, in one commit, what one step of the agent asks: the
	// hard state (if set), the truncation of the log after an index (if
	// set), then entries that extend what is left, as Append requires.
	// Nothing is stored when any part is refused.
	Persist(u Update) error
	// Append stores entries that extend the stored log: the first follows
	// the last stored entry (or the base if none) and each chains to its
	// predecessor, as rlog.Log.Append requires. The batch is one commit.
	Append(entries []rlog.Entry) error
	// TruncateAfter drops stored entries with Index > i. i may not be below
	// the snapshot base.
	TruncateAfter(i uint64) error
	// SaveSnapshot replaces the snapshot and its base, and drops stored
	// entries with Index <= base.Index. Entries after the base are kept
	// only if they chain to it; otherwise they are dropped and the caller
	// appends the new suffix.
	SaveSnapshot(base rlog.Pos, snap []byte) error
	// AddRecords stores divergence records, assigning each an ID (the
	// records must come with ID 0) and Recorded if zero, and returns them
	// as stored. The batch is one commit.
	AddRecords(rs []Record) ([]Record, error)
	// Records returns every divergence record, sorted by ID.
	Records() ([]Record, error)
	// Record returns the record with the given ID, or an error wrapping
	// ErrNotFound that names the ID.
	Record(id uint64) (Record, error)
	// MarkReplayed sets Replayed on the record with the given ID.
	MarkReplayed(id uint64) error
	// DeleteRecord removes the record with the given ID; its ID is never
	// given out again.
	DeleteRecord(id uint64) error
	// Close releases the store.
	Close() error
}

var (
	_ Storage = (*Memory)(nil)
	_ Storage = (*Bolt)(nil)
)

// core is the storage logic, written once over the txn interface so that
// Memory and Bolt cannot disagree: they differ only in where the bytes go.
// Values are msgpack (api.Encode), except the snapshot, which is stored as
// given.
type core struct {
	// mu serialises writers and lets readers (the HTTP API listing
	// records) run beside each other. bbolt would serialise writers by
	// itself; the lock is for the memory engine and for Close.
	mu  sync.RWMutex
	eng engine
	// now stamps records whose Recorded is zero; time.Now outside tests.
	now func() time.Time
}

func (c *core) view(fn func(txn) error) error {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.eng.view(fn)
}

func (c *core) update(fn func(txn) error) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.eng.update(fn)
}

// Load returns the hard state, the snapshot and its base (zero Pos and nil
// snapshot if none), and the log entries after the base. It checks that the
// stored log chains from the base; stored data that fails to decode or to
// chain is an error wrapping ErrCorrupt that names the key.
func (c *core) Load() (hs HardState, snap []byte, base rlog.Pos, entries []rlog.Entry, err error) {
	err = c.view(func(t txn) error {
		if v := t.get(bucketMeta, []byte(keyHardState)); v != nil {
			if err := decode(bucketMeta, []byte(keyHardState), v, &hs); err != nil {
				return err
			}
		}
		var ok bool
		if base, ok, err = readBase(t); err != nil {
			return err
		}
		if ok {
			// Non-nil even when empty: a snapshot was saved.
			snap = append([]byte{}, t.get(bucketMeta, []byte(keySnapshot))...)
		}
		l := rlog.NewAt(base)
		return t.scan(bucketLog, nil, func(k, v []byte) error {
			e, err := decodeEntry(k, v)
			if err != nil {
				return err
			}
			if err := l.Append(e); err != nil {
				return fmt.Errorf("%w: %s key %s: %w", ErrCorrupt, bucketLog, keyString(k), err)
			}
			entries = append(entries, e)
			return nil
		})
	})
	if err != nil {
		return HardState{}, nil, rlog.Pos{}, nil, fmt.Errorf("load: %w", err)
	}
	return hs, snap, base, entries, nil
}

// Update is what Persist saves in one commit.
type Update struct {
	HardState     *HardState
	TruncateAfter *uint64
	Entries       []rlog.Entry
	// Records are divergence records (ID 0), stored in the same commit as
	// the truncation that removed their entries from the log: a crash
	// between the two would lose writes a losing master acknowledged.
	Records []Record
}

// Persist saves u in one commit (one fsync with bbolt): a step that
// changed the vote, cut a conflicting suffix and appended entries costs
// the disk one write, not three.
func (c *core) Persist(u Update) error {
	var hv []byte
	if u.HardState != nil {
		var err error
		if hv, err = api.Encode(u.HardState); err != nil {
			return fmt.Errorf("persist: hard state: %w", err)
		}
	}
	vals := make([][]byte, len(u.Entries))
	for i := range u.Entries {
		v, err := encodeBounded(&u.Entries[i])
		if err != nil {
			return fmt.Errorf("persist: append %s: %w", u.Entries[i], err)
		}
		vals[i] = v
	}
	for i, r := range u.Records {
		if err := validRecord(r); err != nil {
			return fmt.Errorf("persist: record %d of %d: %w", i+1, len(u.Records), err)
		}
	}
	if hv == nil && u.TruncateAfter == nil && len(u.Entries) == 0 && len(u.Records) == 0 {
		return nil
	}
	err := c.update(func(t txn) error {
		if hv != nil {
			if err := t.put(bucketMeta, []byte(keyHardState), hv); err != nil {
				return err
			}
		}
		if u.TruncateAfter != nil {
			if err := truncateTx(t, *u.TruncateAfter); err != nil {
				return err
			}
		}
		if len(u.Records) > 0 {
			if err := addRecordsTx(t, u.Records, make([]Record, len(u.Records)), c.now()); err != nil {
				return err
			}
		}
		if len(u.Entries) > 0 {
			return appendTx(t, u.Entries, vals)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("persist: %w", err)
	}
	return nil
}

// SaveHardState replaces the hard state.
func (c *core) SaveHardState(hs HardState) error {
	v, err := api.Encode(&hs)
	if err != nil {
		return fmt.Errorf("save hard state: %w", err)
	}
	if err := c.update(func(t txn) error { return t.put(bucketMeta, []byte(keyHardState), v) }); err != nil {
		return fmt.Errorf("save hard state: %w", err)
	}
	return nil
}

// Append stores entries after the last stored one (or the base), in one
// commit. A batch that leaves a gap, overlaps, goes back in epoch or breaks
// the hash chain is refused with ErrInvalid naming both indices, and nothing
// is stored.
func (c *core) Append(es []rlog.Entry) error {
	if len(es) == 0 {
		return nil
	}
	vals := make([][]byte, len(es))
	for i := range es {
		v, err := encodeBounded(&es[i])
		if err != nil {
			return fmt.Errorf("append %s: %w", es[i], err)
		}
		vals[i] = v
	}
	err := c.update(func(t txn) error { return appendTx(t, es, vals) })
	if err != nil {
		return fmt.Errorf("append %d entries from index %d: %w", len(es), es[0].Index, err)
	}
	return nil
}

// appendTx stores es (encoded as vals) after the last stored entry.
func appendTx(t txn, es []rlog.Entry, vals [][]byte) error {
	last, err := lastPos(t)
	if err != nil {
		return err
	}
	// rlog.Log.Append is the one definition of "extends": index, epoch
	// order and hash chain. The scratch log holds no entries, only the
	// point to continue from.
	if err := rlog.NewAt(last).Append(es...); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	for i, e := range es {
		if err := t.put(bucketLog, key(e.Index), vals[i]); err != nil {
			return err
		}
	}
	return nil
}

// TruncateAfter drops stored entries with Index > i. Truncating at or past
// the last entry does nothing; truncating below the snapshot base is refused
// with ErrInvalid, since compacted entries are applied state.
func (c *core) TruncateAfter(i uint64) error {
	err := c.update(func(t txn) error { return truncateTx(t, i) })
	if err != nil {
		return fmt.Errorf("truncate after %d: %w", i, err)
	}
	return nil
}

func truncateTx(t txn, i uint64) error {
	base, _, err := readBase(t)
	if err != nil {
		return err
	}
	if i < base.Index {
		return fmt.Errorf("%w: %w: base %d", ErrInvalid, rlog.ErrCompacted, base.Index)
	}
	if i == maxIndex {
		return nil
	}
	return t.deleteRange(bucketLog, key(i+1), nil)
}

// addRecordsTx stores rs with the next IDs, stamped now when unstamped,
// and fills out with them as stored.
func addRecordsTx(t txn, rs, out []Record, now time.Time) error {
	for i, r := range rs {
		id, err := t.nextSeq(bucketRecords)
		if err != nil {
			return err
		}
		r.ID = id
		if r.Recorded.IsZero() {
			r.Recorded = now
		}
		v, err := encodeBounded(&r)
		if err != nil {
			return fmt.Errorf("record %d of %d: %w", i+1, len(rs), err)
		}
		// Decode what is stored rather than return r, so the caller sees
		// exactly what a later Records will (UTC time, no monotonic
		// reading, a copy of Op).
		if err := decode(bucketRecords, key(id), v, &out[i]); err != nil {
			return err
		}
		if err := t.put(bucketRecords, key(id), v); err != nil {
			return err
		}
	}
	return nil
}

// SaveSnapshot replaces the snapshot and its base, drops stored entries up
// to base.Index, and keeps those after it only if the first of them chains to
// base. A base that cannot be a point of a log (index 0 with an epoch or
// hash, or a later index with the zero epoch) is refused with ErrInvalid.
func (c *core) SaveSnapshot(base rlog.Pos, snap []byte) error {
	if err := validBase(base); err != nil {
		return fmt.Errorf("save snapshot at %s: %w", base, err)
	}
	bv, err := api.Encode(&base)
	if err != nil {
		return fmt.Errorf("save snapshot at %s: %w", base, err)
	}
	err = c.update(func(t txn) error {
		if err := t.put(bucketMeta, []byte(keyBase), bv); err != nil {
			return err
		}
		if err := t.put(bucketMeta, []byte(keySnapshot), snap); err != nil {
			return err
		}
		if base.Index == maxIndex {
			return t.deleteRange(bucketLog, nil, nil)
		}
		next := key(base.Index + 1)
		if err := t.deleteRange(bucketLog, nil, next); err != nil {
			return err
		}
		// The stored log chains, so if its first remaining entry chains
		// to base, all of it does.
		keep := false
		if v := t.get(bucketLog, next); v != nil {
			e, err := decodeEntry(next, v)
			if err != nil {
				return err
			}
			keep = rlog.NewAt(base).Append(e) == nil
		}
		if keep {
			return nil
		}
		return t.deleteRange(bucketLog, nil, nil)
	})
	if err != nil {
		return fmt.Errorf("save snapshot at %s: %w", base, err)
	}
	return nil
}

// AddRecords stores rs in one commit, assigning IDs in order and Recorded
// where zero, and returns them as stored (as Records would return them).
// A record with an ID, an empty group or index 0 is refused with ErrInvalid
// and nothing is stored.
func (c *core) AddRecords(rs []Record) ([]Record, error) {
	if len(rs) == 0 {
		return nil, nil
	}
	for i, r := range rs {
		if err := validRecord(r); err != nil {
			return nil, fmt.Errorf("add records: record %d of %d: %w", i+1, len(rs), err)
		}
	}
	out := make([]Record, len(rs))
	if err := c.update(func(t txn) error { return addRecordsTx(t, rs, out, c.now()) }); err != nil {
		return nil, fmt.Errorf("add records: %w", err)
	}
	return out, nil
}

// Records returns every divergence record, sorted by ID.
func (c *core) Records() ([]Record, error) {
	rs := []Record{}
	err := c.view(func(t txn) error {
		return t.scan(bucketRecords, nil, func(k, v []byte) error {
			r, err := decodeRecord(k, v)
			if err != nil {
				return err
			}
			rs = append(rs, r)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("list records: %w", err)
	}
	return rs, nil
}

// Record returns the record with ID id, or an error wrapping ErrNotFound.
func (c *core) Record(id uint64) (Record, error) {
	var r Record
	err := c.view(func(t txn) error {
		v := t.get(bucketRecords, key(id))
		if v == nil {
			return ErrNotFound
		}
		var err error
		r, err = decodeRecord(key(id), v)
		return err
	})
	if err != nil {
		return Record{}, fmt.Errorf("record %d: %w", id, err)
	}
	return r, nil
}

// MarkReplayed sets Replayed on record id; marking it twice is not an error.
func (c *core) MarkReplayed(id uint64) error {
	err := c.update(func(t txn) error {
		v := t.get(bucketRecords, key(id))
		if v == nil {
			return ErrNotFound
		}
		r, err := decodeRecord(key(id), v)
		if err != nil {
			return err
		}
		if r.Replayed {
			return nil
		}
		r.Replayed = true
		if v, err = api.Encode(&r); err != nil {
			return err
		}
		return t.put(bucketRecords, key(id), v)
	})
	if err != nil {
		return fmt.Errorf("mark record %d replayed: %w", id, err)
	}
	return nil
}

// DeleteRecord removes record id, or returns an error wrapping ErrNotFound.
func (c *core) DeleteRecord(id uint64) error {
	err := c.update(func(t txn) error {
		if t.get(bucketRecords, key(id)) == nil {
			return ErrNotFound
		}
		return t.delete(bucketRecords, key(id))
	})
	if err != nil {
		return fmt.Errorf("delete record %d: %w", id, err)
	}
	return nil
}

// Close releases the engine. The Bolt engine refuses calls afterwards; the
// memory engine keeps serving (see Memory).
func (c *core) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.eng.close()
}

// maxIndex is the largest index; i+1 past it would wrap to 0.
const maxIndex = ^uint64(0)

// readBase returns the stored snapshot base and whether a snapshot exists.
func readBase(t txn) (rlog.Pos, bool, error) {
	v := t.get(bucketMeta, []byte(keyBase))
	if v == nil {
		return rlog.Pos{}, false, nil
	}
	var p rlog.Pos
	if err := decode(bucketMeta, []byte(keyBase), v, &p); err != nil {
		return rlog.Pos{}, false, err
	}
	if err := validBase(p); err != nil {
		return rlog.Pos{}, false, fmt.Errorf("%w: %s key %s: %w", ErrCorrupt, bucketMeta, keyBase, err)
	}
	return p, true, nil
}

// lastPos returns the point of the last stored entry, or the base.
func lastPos(t txn) (rlog.Pos, error) {
	k, v := t.last(bucketLog)
	if k == nil {
		p, _, err := readBase(t)
		return p, err
	}
	e, err := decodeEntry(k, v)
	if err != nil {
		return rlog.Pos{}, err
	}
	return rlog.PosOf(e), nil
}

// validBase checks that p can be a point of a log.
func validBase(p rlog.Pos) error {
	if p.Index == 0 && p != (rlog.Pos{}) {
		return fmt.Errorf("%w: base %s at index 0 must be the empty prefix", ErrInvalid, p)
	}
	if p.Index != 0 && p.Epoch.IsZero() {
		return fmt.Errorf("%w: base %s has the zero epoch", ErrInvalid, p)
	}
	return nil
}

// validRecord checks a record handed to AddRecords.
func validRecord(r Record) error {
	switch {
	case r.ID != 0:
		return fmt.Errorf("%w: record has ID %d; the store assigns IDs", ErrInvalid, r.ID)
	case r.Group == "":
		return fmt.Errorf("%w: record of entry %d@%s has no group", ErrInvalid, r.Index, r.Epoch)
	case r.Index == 0:
		return fmt.Errorf("%w: record in group %q has index 0", ErrInvalid, r.Group)
	}
	return nil
}

// encodeBounded encodes v and refuses a value that Load could not read back:
// api.Decode caps every value at api.MaxMessageBytes.
func encodeBounded(v any) ([]byte, error) {
	b, err := api.Encode(v)
	if err != nil {
		return nil, err
	}
	if len(b) > api.MaxMessageBytes {
		return nil, fmt.Errorf("%w: encoded %T is %d bytes, limit %d", ErrInvalid, v, len(b), api.MaxMessageBytes)
	}
	return b, nil
}

// decode decodes a stored value, naming the bucket and key on failure.
func decode(b bucket, k, v []byte, out any) error {
	if err := api.Decode(v, out); err != nil {
		return fmt.Errorf("%w: %s key %s: %w", ErrCorrupt, b, keyString(k), err)
	}
	return nil
}

// decodeEntry decodes a log value and checks it is stored under its index.
func decodeEntry(k, v []byte) (rlog.Entry, error) {
	var e rlog.Entry
	if err := decode(bucketLog, k, v, &e); err != nil {
		return rlog.Entry{}, err
	}
	if len(k) != 8 || fromKey(k) != e.Index {
		return rlog.Entry{}, fmt.Errorf("%w: %s key %s holds %s", ErrCorrupt, bucketLog, keyString(k), e)
	}
	return e, nil
}

// decodeRecord decodes a record value and checks it is stored under its ID.
func decodeRecord(k, v []byte) (Record, error) {
	var r Record
	if err := decode(bucketRecords, k, v, &r); err != nil {
		return Record{}, err
	}
	if len(k) != 8 || fromKey(k) != r.ID {
		return Record{}, fmt.Errorf("%w: %s key %s holds record %d", ErrCorrupt, bucketRecords, keyString(k), r.ID)
	}
	return r, nil
}
