package store

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/mastership/mastership/agent/rlog"
	"github.com/mastership/mastership/naming/api"
	"github.com/mastership/mastership/naming/boltfile"
)

// core is the storage logic, written once so that Memory and Bolt cannot
// disagree: they differ only in where the bytes go. The hard state, the
// snapshot and the records are in a key-value engine (txn), msgpack-encoded
// (api.Encode) except the snapshot, which is stored as given; the log is in
// a write-ahead log of segment files (wal).
//
// The two are kept in step by the order of writes: a step's hard state and
// records are committed before its log change is written; a snapshot is
// committed before the log behind it is deleted; and a snapshot that
// replaces the log raises the log's generation in the same commit, so that
// after a crash between the two the old segments are deleted at open. A
// truncation whose entries became divergence records leaves a mark (keyCut)
// in the records' commit, and Load finishes the truncation if a crash came
// before it.
type core struct {
	// mu serialises writers and lets readers (the HTTP API listing
	// records) run beside each other. bbolt would serialise writers by
	// itself; the lock is for the memory engine, the log and Close.
	mu  sync.RWMutex
	eng engine
	fs  segFS
	// segBytes is the size of a new segment file.
	segBytes int64
	// log is open from the first call that needs it until Close.
	log *wal
	// now stamps records whose Recorded is zero; time.Now outside tests.
	now func() time.Time
	// enc encodes the entries of a persist, under mu.
	enc scratch
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

// cut is the mark a truncation leaves in the commit of the divergence
// records made from the entries it removes.
type cut struct {
	After   uint64   `codec:"a"`
	Removed rlog.Pos `codec:"r"`
}

// segMark names the newest segment made (keyWalSeg).
type segMark struct {
	Gen uint64 `codec:"g"`
	Seq uint64 `codec:"s"`
}

// meta is what the key-value engine holds about the log.
type meta struct {
	base    rlog.Pos
	gen     uint64
	cut     *cut
	salt    uint64
	hasSalt bool
	newest  segMark
}

func readMeta(t txn) (meta, error) {
	var m meta
	var err error
	if m.base, _, err = readBase(t); err != nil {
		return m, err
	}
	if v := t.get(bucketMeta, []byte(keyGen)); v != nil {
		if err := decode(bucketMeta, []byte(keyGen), v, &m.gen); err != nil {
			return m, err
		}
	}
	if v := t.get(bucketMeta, []byte(keyCut)); v != nil {
		m.cut = &cut{}
		if err := decode(bucketMeta, []byte(keyCut), v, m.cut); err != nil {
			return m, err
		}
	}
	if v := t.get(bucketMeta, []byte(keySalt)); v != nil {
		if err := decode(bucketMeta, []byte(keySalt), v, &m.salt); err != nil {
			return m, err
		}
		m.hasSalt = true
	}
	if v := t.get(bucketMeta, []byte(keyWalSeg)); v != nil {
		if err := decode(bucketMeta, []byte(keyWalSeg), v, &m.newest); err != nil {
			return m, err
		}
	}
	return m, nil
}

// newSalt returns a random salt for a new store's log frames.
func newSalt() (uint64, error) {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return 0, fmt.Errorf("make log salt: %w", err)
	}
	return binary.LittleEndian.Uint64(b[:]), nil
}

// markSegment commits the name of a segment made, before anything is
// written to it. c.mu is held (the log calls it from a write).
func (c *core) markSegment(gen, seq uint64) error {
	v, err := api.Encode(&segMark{Gen: gen, Seq: seq})
	if err != nil {
		return err
	}
	return c.eng.update(func(t txn) error { return t.put(bucketMeta, []byte(keyWalSeg), v) })
}

// openLog (re)opens the log from the segment files and returns its entries
// above the base. It moves a log still kept in the engine's log bucket (as
// stores before the write-ahead log kept it) into segments, and finishes a
// truncation a crash interrupted. c.mu is held.
func (c *core) openLog() ([]rlog.Entry, error) {
	if c.log != nil {
		c.log.closeFiles()
		c.log = nil
	}
	var m meta
	var legacy []rlog.Entry
	err := c.eng.view(func(t txn) error {
		var err error
		if m, err = readMeta(t); err != nil {
			return err
		}
		l := rlog.NewAt(m.base)
		return t.scan(bucketLog, nil, func(k, v []byte) error {
			e, err := decodeEntry(k, v)
			if err != nil {
				return err
			}
			if err := l.Append(e); err != nil {
				return fmt.Errorf("%w: %s key %s: %w", ErrCorrupt, bucketLog, keyString(k), err)
			}
			legacy = append(legacy, e)
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	if !m.hasSalt {
		if m.salt, err = newSalt(); err != nil {
			return nil, err
		}
		sv, err := api.Encode(m.salt)
		if err != nil {
			return nil, err
		}
		if err := c.eng.update(func(t txn) error { return t.put(bucketMeta, []byte(keySalt), sv) }); err != nil {
			return nil, err
		}
	}
	cfg := walConfig{gen: m.gen, base: m.base, segBytes: c.segBytes, salt: m.salt, legacy: legacy != nil, made: c.markSegment}
	if m.newest.Gen == m.gen {
		cfg.newest = m.newest.Seq
	}
	w, entries, err := openWAL(c.fs, cfg)
	if err != nil {
		return nil, err
	}
	if legacy != nil {
		if err := c.migrate(w, m, legacy); err != nil {
			w.closeFiles()
			return nil, err
		}
		entries = legacy
	}
	if m.cut != nil {
		if entries, err = c.finishCut(w, *m.cut, entries); err != nil {
			w.closeFiles()
			return nil, err
		}
	}
	c.log = w
	return entries, nil
}

// migrate writes a log kept in the log bucket to segments of a new
// generation, then commits the generation and empties the bucket. A crash
// before the commit leaves the bucket to move again; the segments written
// are then of another generation, which openWAL deletes.
func (c *core) migrate(w *wal, m meta, legacy []rlog.Entry) error {
	gen := m.gen + 1
	if err := w.reset(gen, m.base); err != nil {
		return fmt.Errorf("move log to segments: %w", err)
	}
	vals, err := encodeEntries(legacy)
	if err != nil {
		return fmt.Errorf("move log to segments: %w", err)
	}
	if err := w.write(nil, rlog.Pos{}, legacy, vals); err != nil {
		return fmt.Errorf("move log to segments: %w", err)
	}
	gv, err := api.Encode(gen)
	if err != nil {
		return err
	}
	return c.eng.update(func(t txn) error {
		if err := t.put(bucketMeta, []byte(keyGen), gv); err != nil {
			return err
		}
		return t.deleteRange(bucketLog, nil, nil)
	})
}

// finishCut truncates the log after cu.After if it still holds the entry
// the truncation removed, then clears the mark.
func (c *core) finishCut(w *wal, cu cut, entries []rlog.Entry) ([]rlog.Entry, error) {
	if cu.After >= w.base.Index && cu.After < w.last.Index {
		p, err := w.posAt(cu.After + 1)
		if err != nil {
			return nil, fmt.Errorf("finish truncation after %d: %w", cu.After, err)
		}
		if p == cu.Removed {
			tp, err := w.posAt(cu.After)
			if err != nil {
				return nil, err
			}
			if err := w.write(&cu.After, tp, nil, nil); err != nil {
				return nil, fmt.Errorf("finish truncation after %d: %w", cu.After, err)
			}
			n := len(entries)
			for n > 0 && entries[n-1].Index > cu.After {
				n--
			}
			entries = entries[:n]
		}
	}
	err := c.eng.update(func(t txn) error { return t.delete(bucketMeta, []byte(keyCut)) })
	return entries, err
}

// ensureLog opens the log if no call has yet. c.mu is held.
func (c *core) ensureLog() error {
	if c.log != nil {
		return nil
	}
	_, err := c.openLog()
	return err
}

// Load returns the hard state, the snapshot and its base (zero Pos and nil
// snapshot if none), and the log entries after the base, reading the log
// afresh from its segments. It checks that the stored log chains from the
// base; stored data that fails to decode or to chain is an error wrapping
// ErrCorrupt that names the key, or the segment file and offset.
func (c *core) Load() (hs HardState, snap []byte, base rlog.Pos, entries []rlog.Entry, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	err = c.eng.view(func(t txn) error {
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
		return nil
	})
	if err == nil {
		entries, err = c.openLog()
	}
	if errors.Is(err, ErrCorrupt) {
		return HardState{}, nil, rlog.Pos{}, nil, fmt.Errorf("load: %w: %w; restore the data dir from a backup, or move it "+
			"away and start the agent with an empty -data-dir to download the state from the master (divergence records "+
			"in it are lost)", boltfile.ErrDamaged, err)
	}
	if err != nil {
		return HardState{}, nil, rlog.Pos{}, nil, fmt.Errorf("load: %w", err)
	}
	return hs, snap, base, entries, nil
}

// Update is what Persist saves in one step.
type Update struct {
	HardState     *HardState
	TruncateAfter *uint64
	Entries       []rlog.Entry
	// Records are divergence records (ID 0), stored with the truncation
	// that removed their entries from the log: a crash between the two
	// would lose writes a losing master acknowledged.
	Records []Record
}

// Persist saves u: the hard state and records in one commit of the engine
// (skipped when there are none), then the truncation and entries in one
// write to the log. A step that only appends costs the disk one write and
// one fdatasync.
func (c *core) Persist(u Update) error {
	var hv []byte
	if u.HardState != nil {
		var err error
		if hv, err = api.Encode(u.HardState); err != nil {
			return fmt.Errorf("persist: hard state: %w", err)
		}
	}
	for i, r := range u.Records {
		if err := validRecord(r); err != nil {
			return fmt.Errorf("persist: record %d of %d: %w", i+1, len(u.Records), err)
		}
	}
	if hv == nil && u.TruncateAfter == nil && len(u.Entries) == 0 && len(u.Records) == 0 {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	vals, err := c.enc.encode(u.Entries)
	if err != nil {
		return fmt.Errorf("persist: %w", err)
	}
	if err := c.persist(hv, u.TruncateAfter, u.Entries, vals, u.Records); err != nil {
		return fmt.Errorf("persist: %w", err)
	}
	return nil
}

// persist is Persist with its values encoded and c.mu held. Everything is
// checked before anything is written, so a refused update changes nothing.
// A failed write to the log after the engine's commit leaves the hard
// state and records stored; the log refuses every write from then on.
func (c *core) persist(hv []byte, truncate *uint64, es []rlog.Entry, vals [][]byte, recs []Record) error {
	if err := c.ensureLog(); err != nil {
		return err
	}
	w := c.log
	tip := w.last
	var cutMark []byte
	var truncPos rlog.Pos
	if truncate != nil {
		i := *truncate
		switch {
		case i < w.base.Index:
			return fmt.Errorf("truncate after %d: %w: %w: base %d", i, ErrInvalid, rlog.ErrCompacted, w.base.Index)
		case i >= w.last.Index:
			truncate = nil // nothing after i
		default:
			var err error
			if truncPos, err = w.posAt(i); err != nil {
				return fmt.Errorf("truncate after %d: %w", i, err)
			}
			tip = truncPos
			if len(recs) > 0 {
				removed, err := w.posAt(i + 1)
				if err != nil {
					return fmt.Errorf("truncate after %d: %w", i, err)
				}
				if cutMark, err = api.Encode(&cut{After: i, Removed: removed}); err != nil {
					return err
				}
			}
		}
	}
	if len(es) > 0 {
		// rlog.Extends is the one definition of "extends" (rlog.Log.Append
		// checks by it): index, epoch order and hash chain.
		if err := rlog.Extends(tip, es); err != nil {
			return fmt.Errorf("append %d entries from index %d: %w: %w", len(es), es[0].Index, ErrInvalid, err)
		}
	}
	if hv != nil || len(recs) > 0 {
		err := c.eng.update(func(t txn) error {
			if hv != nil {
				if err := t.put(bucketMeta, []byte(keyHardState), hv); err != nil {
					return err
				}
			}
			if len(recs) > 0 {
				if err := addRecordsTx(t, recs, make([]Record, len(recs)), c.now()); err != nil {
					return err
				}
			}
			if cutMark != nil {
				return t.put(bucketMeta, []byte(keyCut), cutMark)
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	if truncate != nil || len(es) > 0 {
		if err := w.write(truncate, truncPos, es, vals); err != nil {
			return err
		}
	}
	if cutMark != nil {
		return c.eng.update(func(t txn) error { return t.delete(bucketMeta, []byte(keyCut)) })
	}
	return nil
}

// encodeEntries encodes each entry, refusing one Load could not read back.
// encodeEntries encodes es (encodeEntry), in one new buffer.
func encodeEntries(es []rlog.Entry) ([][]byte, error) {
	var sc scratch
	return sc.encode(es)
}

// scratch holds the buffers one persist encodes its entries in, kept for
// the next (a batch then costs no allocation once they have grown to its
// size). Its values are valid until the next encode.
type scratch struct {
	buf  []byte
	vals [][]byte
}

// maxScratch is the most a scratch keeps between persists: a huge batch
// does not pin its buffer.
const maxScratch = 1 << 20

// encode encodes es (encodeEntry) into the scratch's buffer.
func (sc *scratch) encode(es []rlog.Entry) ([][]byte, error) {
	if len(es) == 0 {
		return nil, nil
	}
	size := 0
	for i := range es {
		size += 1 + rlog.MaxEntryWire(&es[i])
	}
	if cap(sc.buf) < size {
		sc.buf = make([]byte, 0, size)
	}
	buf := sc.buf[:0]
	vals := sc.vals[:0]
	for i := range es {
		start := len(buf)
		buf = rlog.AppendEntry(append(buf, entryFormat), &es[i])
		if n := len(buf) - start; n > api.MaxMessageBytes {
			return nil, fmt.Errorf("append %s: %w: encoded entry is %d bytes, limit %d", es[i], ErrInvalid, n, api.MaxMessageBytes)
		}
		vals = append(vals, buf[start:len(buf):len(buf)])
	}
	sc.buf, sc.vals = buf, vals
	if cap(sc.buf) > maxScratch {
		sc.buf, sc.vals = nil, nil
	}
	return vals, nil
}

// CompactWanted is the index a snapshot must reach for the log to lose a
// whole segment: the last entry of its first segment when a newer one
// exists, else 0. An agent that takes a snapshot there as soon as it has
// applied that far keeps its log in one segment (and its data dir at one
// segment's size) in a steady load, instead of two for a whole snapshot
// interval after each rollover.
func (c *core) CompactWanted() uint64 {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.log == nil || len(c.log.segs) < 2 {
		return 0
	}
	return max(c.log.segs[0].endIndex, c.log.base.Index+1)
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
// write. A batch that leaves a gap, overlaps, goes back in epoch or breaks
// the hash chain is refused with ErrInvalid naming both indices, and nothing
// is stored.
func (c *core) Append(es []rlog.Entry) error {
	if len(es) == 0 {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	vals, err := c.enc.encode(es)
	if err != nil {
		return err
	}
	return c.persist(nil, nil, es, vals, nil)
}

// TruncateAfter drops stored entries with Index > i. Truncating at or past
// the last entry does nothing; truncating below the snapshot base is refused
// with ErrInvalid, since compacted entries are applied state.
func (c *core) TruncateAfter(i uint64) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.persist(nil, &i, nil, nil, nil)
}

// SaveSnapshot replaces the snapshot and its base, drops stored entries up
// to base.Index, and keeps those after it only if the log holds base itself
// (so that they chain to it). A base that cannot be a point of a log (index
// 0 with an epoch or hash, or a later index with the zero epoch) is refused
// with ErrInvalid. The snapshot is committed before any segment goes.
func (c *core) SaveSnapshot(base rlog.Pos, snap []byte) error {
	if err := validBase(base); err != nil {
		return fmt.Errorf("save snapshot at %s: %w", base, err)
	}
	bv, err := api.Encode(&base)
	if err != nil {
		return fmt.Errorf("save snapshot at %s: %w", base, err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.saveSnapshot(base, bv, snap); err != nil {
		return fmt.Errorf("save snapshot at %s: %w", base, err)
	}
	return nil
}

func (c *core) saveSnapshot(base rlog.Pos, bv, snap []byte) error {
	if err := c.ensureLog(); err != nil {
		return err
	}
	w := c.log
	keep := base == w.last
	if !keep && base.Index >= w.base.Index && base.Index < w.last.Index {
		p, err := w.posAt(base.Index)
		if err != nil {
			return err
		}
		keep = p == base
	}
	gen := w.gen + 1
	gv, err := api.Encode(gen)
	if err != nil {
		return err
	}
	err = c.eng.update(func(t txn) error {
		if err := t.put(bucketMeta, []byte(keyBase), bv); err != nil {
			return err
		}
		if err := t.put(bucketMeta, []byte(keySnapshot), snap); err != nil {
			return err
		}
		if keep {
			return nil
		}
		return t.put(bucketMeta, []byte(keyGen), gv)
	})
	if err != nil {
		return err
	}
	if keep {
		return w.compact(base)
	}
	return w.reset(gen, base)
}
