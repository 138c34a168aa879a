package store

import (
	"bytes"
	"errors"
	"fmt"
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
	// Persist saves what one step of the agent asks: the hard state (if
	// set) and records, then the truncation of the log after an index (if
	// set) and entries that extend what is left, as Append requires. A
	// crash in the middle keeps the hard state and records and maybe not
	// the log change; records are never lost with their entries still
	// cut. Nothing is stored when any part is refused.
	Persist(u Update) error
	// Append stores entries that extend the stored log: the first follows
	// the last stored entry (or the base if none) and each chains to its
	// predecessor, as rlog.Log.Append requires. The batch is one write.
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
	// RecordState returns the state a state record keeps (Record.State):
	// the record itself comes without it.
	RecordState(id uint64) ([]byte, error)
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
		if r.State {
			// The state goes apart, as given; the record says its size.
			if err := t.put(bucketStates, key(id), r.Op); err != nil {
				return err
			}
			r.Op, r.StateBytes = nil, len(r.Op)
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
		var err error
		r, err = getRecord(t, id)
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
		r, err := getRecord(t, id)
		if err != nil {
			return err
		}
		if r.Replayed {
			return nil
		}
		r.Replayed = true
		v, err := api.Encode(&r)
		if err != nil {
			return err
		}
		return t.put(bucketRecords, key(id), v)
	})
	if err != nil {
		return fmt.Errorf("mark record %d replayed: %w", id, err)
	}
	return nil
}

// RecordState returns the state a state record keeps (Record.State), or
// an error wrapping ErrNotFound when there is no record id, ErrInvalid
// when it is not a state record.
func (c *core) RecordState(id uint64) ([]byte, error) {
	var out []byte
	err := c.view(func(t txn) error {
		r, err := getRecord(t, id)
		if err != nil {
			return err
		}
		if !r.State {
			return fmt.Errorf("%w: record %d is one write, not a state", ErrInvalid, id)
		}
		b := t.get(bucketStates, key(id))
		if len(b) != r.StateBytes {
			return fmt.Errorf("%w: state of record %d is %d bytes, the record says %d", ErrCorrupt, id, len(b), r.StateBytes)
		}
		out = bytes.Clone(b)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("state of record %d: %w", id, err)
	}
	return out, nil
}

// DeleteRecord removes record id (and the state it keeps, if any), or
// returns an error wrapping ErrNotFound.
func (c *core) DeleteRecord(id uint64) error {
	err := c.update(func(t txn) error {
		if t.get(bucketRecords, key(id)) == nil {
			return ErrNotFound
		}
		if t.get(bucketStates, key(id)) != nil {
			if err := t.delete(bucketStates, key(id)); err != nil {
				return err
			}
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
	if c.log != nil {
		c.log.closeFiles()
		c.log = nil
	}
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
// MaxStateBytes bounds the state a state record keeps (Record.State).
const MaxStateBytes = 64 << 20

func validRecord(r Record) error {
	switch {
	case r.ID != 0:
		return fmt.Errorf("%w: record has ID %d; the store assigns IDs", ErrInvalid, r.ID)
	case r.Group == "":
		return fmt.Errorf("%w: record of entry %d@%s has no group", ErrInvalid, r.Index, r.Epoch)
	case r.Index == 0:
		return fmt.Errorf("%w: record in group %q has index 0", ErrInvalid, r.Group)
	case r.StateBytes != 0:
		return fmt.Errorf("%w: record of entry %d@%s gives its state size; the store sets it", ErrInvalid, r.Index, r.Epoch)
	case r.State && len(r.Op) == 0:
		return fmt.Errorf("%w: state record at %d keeps no state", ErrInvalid, r.Index)
	case r.State && len(r.Op) > MaxStateBytes:
		return fmt.Errorf("%w: state record at %d keeps %d bytes, limit %d", ErrInvalid, r.Index, len(r.Op), MaxStateBytes)
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

// entryFormat opens an entry stored in its binary form (rlog.AppendEntry).
// Entries stored before it are msgpack maps, whose first byte is never 1.
const entryFormat = 1

// encodeEntry is an entry's stored form, refused past the size Load reads.
func encodeEntry(e *rlog.Entry) ([]byte, error) {
	b := rlog.AppendEntry([]byte{entryFormat}, e)
	if len(b) > api.MaxMessageBytes {
		return nil, fmt.Errorf("%w: encoded entry is %d bytes, limit %d", ErrInvalid, len(b), api.MaxMessageBytes)
	}
	return b, nil
}

// decodeStoredEntry decodes an entry in either stored form. Nothing in it
// aliases v.
func decodeStoredEntry(v []byte) (rlog.Entry, error) {
	if len(v) == 0 || v[0] != entryFormat {
		var e rlog.Entry
		err := api.Decode(v, &e)
		return e, err
	}
	e, n, err := rlog.ReadEntry(v[1:])
	if err != nil {
		return rlog.Entry{}, err
	}
	if n != len(v)-1 {
		return rlog.Entry{}, fmt.Errorf("%w: %d bytes after the entry", rlog.ErrEntryWire, len(v)-1-n)
	}
	e.Op = bytes.Clone(e.Op)
	return e, nil
}

// decodeEntry decodes a log value and checks it is stored under its index.
func decodeEntry(k, v []byte) (rlog.Entry, error) {
	e, err := decodeStoredEntry(v)
	if err != nil {
		return rlog.Entry{}, fmt.Errorf("%w: %s key %s: %w", ErrCorrupt, bucketLog, keyString(k), err)
	}
	if len(k) != 8 || fromKey(k) != e.Index {
		return rlog.Entry{}, fmt.Errorf("%w: %s key %s holds %s", ErrCorrupt, bucketLog, keyString(k), e)
	}
	return e, nil
}

// getRecord reads record id, or fails with ErrNotFound.
func getRecord(t txn, id uint64) (Record, error) {
	v := t.get(bucketRecords, key(id))
	if v == nil {
		return Record{}, ErrNotFound
	}
	return decodeRecord(key(id), v)
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
