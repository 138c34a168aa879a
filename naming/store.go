package naming

import (
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	"github.com/mastership/mastership/naming/api"
	"github.com/mastership/mastership/naming/boltfile"
	bolt "go.etcd.io/bbolt"
)

// Store is a naming node's materialized state, in a bbolt file: one record
// per group, each group's bounded event history, and the outbox of
// triggers to deliver.
//
// The state store (state.db) is the raft state machine's: it is made anew
// at every start and filled from the latest snapshot and the log after it,
// so it is written without fsync (the raft log is what is durable). The
// store of a node from before raft (naming.db) is opened the same way, read
// once and imported.
type Store struct {
	mu        sync.RWMutex // guards db against a restore's swap
	db        *bolt.DB
	path      string
	maxEvents uint64 // per group
	maxTotal  uint64 // over all groups (0: no bound, the legacy store)

	changedMu sync.Mutex
	changed   chan struct{} // closed, and replaced, at every change

	countMu sync.Mutex
	applied map[string]uint64 // events applied since start, by kind (metrics)
}

// maxEventKinds bounds the event kinds AppliedEvents tells apart; past it
// they count as "other".
const maxEventKinds = 32

// countEvents counts the events of an applied batch by kind.
func (s *Store) countEvents(cmds []*command) {
	s.countMu.Lock()
	defer s.countMu.Unlock()
	if s.applied == nil {
		s.applied = map[string]uint64{}
	}
	for _, c := range cmds {
		for _, ge := range c.Events {
			k := ge.Event.Kind
			if _, ok := s.applied[k]; !ok && len(s.applied) >= maxEventKinds {
				k = "other"
			}
			s.applied[k]++
		}
	}
}

// AppliedEvents returns how many events of each kind this node applied
// since it started (a restart replays its log: those count again).
func (s *Store) AppliedEvents() map[string]uint64 {
	s.countMu.Lock()
	defer s.countMu.Unlock()
	return maps.Clone(s.applied)
}

// countMembers counts the groups, their members and their registered
// masters.
func (s *Store) countMembers() (groups, members, masters int, err error) {
	err = s.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketGroups).ForEach(func(k, v []byte) error {
			var g groupRecord
			if err := api.Decode(v, &g); err != nil {
				return fmt.Errorf("naming: stored group %q: %w", k, err)
			}
			groups++
			members += len(g.Members)
			if g.Master != nil {
				masters++
			}
			return nil
		})
	})
	return groups, members, masters, err
}

// Changed returns a channel closed at the next change of the store (an
// applied batch, a restore): blocking reads wait on it.
func (s *Store) Changed() <-chan struct{} {
	s.changedMu.Lock()
	defer s.changedMu.Unlock()
	if s.changed == nil {
		s.changed = make(chan struct{})
	}
	return s.changed
}

func (s *Store) notifyChanged() {
	s.changedMu.Lock()
	defer s.changedMu.Unlock()
	if s.changed != nil {
		close(s.changed)
		s.changed = nil
	}
}

// LastEventSeq is the sequence of group's newest event (0: none): the
// index of a blocking read of the group, since every change of its master
// or members records an event. It is read from the group's record, which
// every command that records an event writes, so that it stays when the
// history bound has dropped every event of the group.
func (s *Store) LastEventSeq(group string) (uint64, error) {
	rec, err := s.groupRecord(group)
	if err != nil || rec == nil {
		return 0, err
	}
	var g groupRecord
	if err := api.Decode(rec, &g); err != nil {
		return 0, fmt.Errorf("naming: stored group %q: %w", group, err)
	}
	return g.Seq, nil
}

var (
	bucketGroups = []byte("groups")
	bucketEvents = []byte("events")
	bucketOutbox = []byte("outbox")
	// bucketEventOrder indexes every stored event by (time, group, seq),
	// oldest first, for the bound over all groups; bucketMeta holds how
	// many it indexes.
	bucketEventOrder = []byte("event-order")
	bucketMeta       = []byte("meta")
)

// keyEventCount is the number of events bucketEventOrder indexes.
var keyEventCount = []byte("events")

// ErrStoreLocked is returned when another process holds the data directory.
var ErrStoreLocked = errors.New("naming: data directory is in use by another process")

// legacyStoreFile is the store of a naming node from before raft.
const legacyStoreFile = "naming.db"

// stateStoreFile is the raft state machine's store.
const stateStoreFile = "state.db"

// OpenStore opens (creating if needed) the legacy store naming.db in dir.
// It is read once, to be imported: its history has no bound over all
// groups.
func OpenStore(dir string, maxEvents int) (*Store, error) {
	if dir == "" {
		return nil, errors.New("naming: no data directory")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("naming: create data directory: %w", err)
	}
	return openStore(filepath.Join(dir, legacyStoreFile), maxEvents, 0, false)
}

// openStateStore makes the state store anew in dir. It keeps at most
// maxEvents events of each group and maxTotal events in all.
func openStateStore(dir string, maxEvents, maxTotal int) (*Store, error) {
	path := filepath.Join(dir, stateStoreFile)
	if err := os.Remove(path); err != nil && !os.IsNotExist(err) {
		return nil, fmt.Errorf("naming: remove the old state store: %w", err)
	}
	return openStore(path, maxEvents, maxTotal, true)
}

func openStore(path string, maxEvents, maxTotal int, noSync bool) (*Store, error) {
	db, err := boltfile.Open(path, &bolt.Options{Timeout: 2 * time.Second, NoSync: noSync, NoFreelistSync: noSync})
	if err != nil {
		if errors.Is(err, bolt.ErrTimeout) {
			return nil, fmt.Errorf("%w: %s", ErrStoreLocked, filepath.Dir(path))
		}
		if errors.Is(err, boltfile.ErrDamaged) {
			return nil, fmt.Errorf("naming: %w; restore the data dir from a backup (with an empty -data-dir the node "+
				"starts with no groups, and agents join and register again)", err)
		}
		return nil, fmt.Errorf("naming: open store %s: %w", path, err)
	}
	if err := initBuckets(db); err != nil {
		db.Close()
		return nil, fmt.Errorf("naming: initialise store: %w", err)
	}
	return &Store{db: db, path: path, maxEvents: uint64(maxEvents), maxTotal: uint64(maxTotal)}, nil
}

func initBuckets(db *bolt.DB) error {
	return db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketGroups, bucketEvents, bucketOutbox, bucketEventOrder, bucketMeta} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
}

// Close closes the store.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.db.Close()
}

func (s *Store) view(fn func(tx *bolt.Tx) error) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.db.View(fn)
}

func seqKey(seq uint64) []byte {
	var k [8]byte
	binary.BigEndian.PutUint64(k[:], seq)
	return k[:]
}

func outboxKey(group string, id uint64) []byte {
	k := make([]byte, 0, len(group)+9)
	k = append(k, group...)
	k = append(k, 0)
	return binary.BigEndian.AppendUint64(k, id)
}

// apply applies commands in order in one transaction. Applying a command
// twice leaves what applying it once left (events are keyed by their
// sequence), as a replay after a restart does.
func (s *Store) apply(cmds []*command) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	err := s.db.Update(func(tx *bolt.Tx) error {
		for _, c := range cmds {
			if err := s.applyTx(tx, c); err != nil {
				return err
			}
		}
		return nil
	})
	if err == nil {
		s.countEvents(cmds)
		s.notifyChanged()
	}
	return err
}

func (s *Store) applyTx(tx *bolt.Tx, c *command) error {
	groups, outbox := tx.Bucket(bucketGroups), tx.Bucket(bucketOutbox)
	for _, g := range c.Groups {
		if err := groups.Put([]byte(g.Name), g.Record); err != nil {
			return err
		}
	}
	for _, ge := range c.Events {
		if err := s.putEvent(tx, ge); err != nil {
			return err
		}
	}
	for _, nt := range c.Notices {
		v, err := api.Encode(&nt)
		if err != nil {
			return err
		}
		if err := outbox.Put(outboxKey(nt.Notify.Group, nt.Target.ID), v); err != nil {
			return err
		}
	}
	for _, d := range c.Done {
		k := outboxKey(d.Group, d.ID)
		v := outbox.Get(k)
		if v == nil {
			continue
		}
		var nt Notice
		if err := api.Decode(v, &nt); err != nil || nt.Notify.Seq == d.Seq {
			if err := outbox.Delete(k); err != nil {
				return err
			}
		}
	}
	return nil
}

// putEvent stores one event of a group, then drops the group's oldest
// past the per-group bound and the oldest of all groups past the bound
// over all groups. Storing an event again (a replay) changes nothing.
func (s *Store) putEvent(tx *bolt.Tx, ge GroupEvent) error {
	b, err := tx.Bucket(bucketEvents).CreateBucketIfNotExists([]byte(ge.Group))
	if err != nil {
		return err
	}
	v, err := api.Encode(&ge.Event)
	if err != nil {
		return err
	}
	return s.putEventValue(tx, b, ge.Group, ge.Event.Seq, ge.Event.Time, v)
}

func (s *Store) putEventValue(tx *bolt.Tx, b *bolt.Bucket, group string, seq uint64, at time.Time, v []byte) error {
	order, meta := tx.Bucket(bucketEventOrder), tx.Bucket(bucketMeta)
	count := eventCount(meta)
	if b.Get(seqKey(seq)) == nil {
		if err := order.Put(orderKey(at, group, seq), nil); err != nil {
			return err
		}
		count++
	}
	if err := b.Put(seqKey(seq), v); err != nil {
		return err
	}
	if seq > s.maxEvents {
		dropped, err := dropEvent(tx, b, group, seq-s.maxEvents)
		if err != nil {
			return err
		}
		if dropped {
			count--
		}
	}
	for s.maxTotal > 0 && count > s.maxTotal {
		k, _ := order.Cursor().First()
		g, q, ok := parseOrderKey(k)
		if !ok {
			return fmt.Errorf("naming: event index key %x", k)
		}
		if err := order.Delete(k); err != nil {
			return err
		}
		if gb := tx.Bucket(bucketEvents).Bucket([]byte(g)); gb != nil {
			if err := gb.Delete(seqKey(q)); err != nil {
				return err
			}
		}
		count--
	}
	return meta.Put(keyEventCount, binary.BigEndian.AppendUint64(nil, count))
}

// dropEvent removes event seq of group (bucket b) and its index entry; it
// reports whether there was one.
func dropEvent(tx *bolt.Tx, b *bolt.Bucket, group string, seq uint64) (bool, error) {
	v := b.Get(seqKey(seq))
	if v == nil {
		return false, nil
	}
	var ev api.Event
	if err := api.Decode(v, &ev); err != nil {
		return false, fmt.Errorf("naming: stored event %d of %q: %w", seq, group, err)
	}
	if err := tx.Bucket(bucketEventOrder).Delete(orderKey(ev.Time, group, seq)); err != nil {
		return false, err
	}
	return true, b.Delete(seqKey(seq))
}

func eventCount(meta *bolt.Bucket) uint64 {
	if v := meta.Get(keyEventCount); len(v) == 8 {
		return binary.BigEndian.Uint64(v)
	}
	return 0
}

// orderKey is an event's key in bucketEventOrder: its time (Unix seconds
// with the sign bit flipped, so that times before 1970 sort first, then
// nanoseconds), the group, a zero byte, and the sequence. Group names hold
// no zero byte (api.ValidateGroup). Any time has a key, the zero time of
// an event restored from a forged snapshot too.
func orderKey(at time.Time, group string, seq uint64) []byte {
	k := make([]byte, 0, 12+len(group)+1+8)
	k = binary.BigEndian.AppendUint64(k, uint64(at.Unix())^(1<<63))
	k = binary.BigEndian.AppendUint32(k, uint32(at.Nanosecond()))
	k = append(k, group...)
	k = append(k, 0)
	return binary.BigEndian.AppendUint64(k, seq)
}

func parseOrderKey(k []byte) (group string, seq uint64, ok bool) {
	if len(k) < 12+1+8 || k[len(k)-9] != 0 {
		return "", 0, false
	}
	return string(k[12 : len(k)-9]), binary.BigEndian.Uint64(k[len(k)-8:]), true
}

// loadGroups calls fn with every stored group record.
func (s *Store) loadGroups(fn func(rec []byte) error) error {
	return s.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketGroups).ForEach(func(_, v []byte) error { return fn(v) })
	})
}

// groupRecord returns the record of one group (nil: unknown).
func (s *Store) groupRecord(name string) ([]byte, error) {
	var out []byte
	err := s.view(func(tx *bolt.Tx) error {
		if v := tx.Bucket(bucketGroups).Get([]byte(name)); v != nil {
			out = append([]byte(nil), v...)
		}
		return nil
	})
	return out, err
}

// groupRecords returns up to limit records of the groups named after
// after, in name order, and whether more follow.
func (s *Store) groupRecords(after string, limit int) ([][]byte, bool, error) {
	var out [][]byte
	more := false
	err := s.view(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketGroups).Cursor()
		k, v := c.Seek([]byte(after))
		if k != nil && string(k) == after {
			k, v = c.Next()
		}
		for ; k != nil; k, v = c.Next() {
			if len(out) == limit {
				more = true
				return nil
			}
			out = append(out, append([]byte(nil), v...))
		}
		return nil
	})
	return out, more, err
}

// countGroups counts the stored groups.
func (s *Store) countGroups() (int, error) {
	n := 0
	err := s.view(func(tx *bolt.Tx) error {
		n = tx.Bucket(bucketGroups).Stats().KeyN
		return nil
	})
	return n, err
}

// loadOutbox calls fn with every notice not yet delivered.
func (s *Store) loadOutbox(fn func(Notice) error) error {
	return s.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketOutbox).ForEach(func(k, v []byte) error {
			var nt Notice
			if err := api.Decode(v, &nt); err != nil {
				return fmt.Errorf("naming: stored notice %x: %w", k, err)
			}
			return fn(nt)
		})
	})
}

// allEvents calls fn with every stored event of every group.
func (s *Store) allEvents(fn func(GroupEvent) error) error {
	return s.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketEvents).ForEach(func(g, _ []byte) error {
			b := tx.Bucket(bucketEvents).Bucket(g)
			if b == nil {
				return nil
			}
			return b.ForEach(func(k, v []byte) error {
				var ev api.Event
				if err := api.Decode(v, &ev); err != nil {
					return fmt.Errorf("naming: stored event %x of %q: %w", k, g, err)
				}
				return fn(GroupEvent{Group: string(g), Event: ev})
			})
		})
	})
}

// Events returns up to limit events of group with Seq > after.
func (s *Store) Events(group string, after uint64, limit int) (api.EventsResponse, error) {
	out := api.EventsResponse{Events: []api.Event{}, Next: after}
	err := s.view(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketEvents).Bucket([]byte(group))
		if b == nil {
			return nil
		}
		c := b.Cursor()
		for k, v := c.Seek(seqKey(after + 1)); k != nil; k, v = c.Next() {
			if len(out.Events) == limit {
				out.More = true
				return nil
			}
			var ev api.Event
			if err := api.Decode(v, &ev); err != nil {
				return fmt.Errorf("naming: stored event %x of %q: %w", k, group, err)
			}
			out.Events = append(out.Events, ev)
			out.Next = ev.Seq
		}
		return nil
	})
	return out, err
}

// fsmSnapshot streams the store as of one read transaction.
type fsmSnapshot struct {
	store *Store
	tx    *bolt.Tx
}

// Persist writes the snapshot to sink.
func (sn *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	if err := sn.writeTo(sink); err != nil {
		sink.Cancel()
		return fmt.Errorf("naming: persist snapshot: %w", err)
	}
	return sink.Close()
}

func (sn *fsmSnapshot) writeTo(w interface{ Write([]byte) (int, error) }) error {
	sw, err := newSnapshotWriter(w)
	if err != nil {
		return err
	}
	err = sn.tx.Bucket(bucketGroups).ForEach(func(k, v []byte) error {
		return sw.item(&snapshotItem{Kind: 'g', Group: string(k), Record: v})
	})
	if err != nil {
		return err
	}
	events := sn.tx.Bucket(bucketEvents)
	err = events.ForEach(func(g, _ []byte) error {
		b := events.Bucket(g)
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			return sw.item(&snapshotItem{Kind: 'e', Group: string(g), Seq: binary.BigEndian.Uint64(k), Record: v})
		})
	})
	if err != nil {
		return err
	}
	err = sn.tx.Bucket(bucketOutbox).ForEach(func(k, v []byte) error {
		return sw.item(&snapshotItem{Kind: 'o', Record: v})
	})
	if err != nil {
		return err
	}
	return sw.close()
}

// Release ends the snapshot's read transaction.
func (sn *fsmSnapshot) Release() { sn.tx.Rollback() }

// restore fills a new store file from a snapshot and, once the snapshot
// checked whole, puts it in place of the current one. On any error the
// current state stays.
func (s *Store) restore(r interface{ Read([]byte) (int, error) }) error {
	tmp := s.path + ".restore"
	os.Remove(tmp)
	db, err := bolt.Open(tmp, 0o600, &bolt.Options{Timeout: 2 * time.Second, NoSync: true, NoFreelistSync: true})
	if err != nil {
		return err
	}
	ok := false
	defer func() {
		if !ok {
			db.Close()
			os.Remove(tmp)
		}
	}()
	if err := initBuckets(db); err != nil {
		return err
	}
	const batch = 4096
	var pending []*snapshotItem
	flush := func() error {
		err := db.Update(func(tx *bolt.Tx) error {
			for _, it := range pending {
				if err := s.putItem(tx, it); err != nil {
					return err
				}
			}
			return nil
		})
		pending = pending[:0]
		return err
	}
	scratch := NewRegistry(RegistryConfig{}, nil)
	err = readSnapshot(r, func(it *snapshotItem) error {
		if err := checkItem(scratch, it); err != nil {
			return err
		}
		pending = append(pending, it)
		if len(pending) == batch {
			return flush()
		}
		return nil
	})
	if err != nil {
		return err
	}
	if err := flush(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.db.Close(); err != nil {
		return err
	}
	if err := db.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, s.path); err != nil {
		return err
	}
	ok = true
	s.db, err = bolt.Open(s.path, 0o600, &bolt.Options{Timeout: 2 * time.Second, NoSync: true, NoFreelistSync: true})
	s.notifyChanged()
	return err
}

// putItem stores one item of a snapshot; events go through the history
// bounds of this node.
func (s *Store) putItem(tx *bolt.Tx, it *snapshotItem) error {
	switch it.Kind {
	case 'g':
		if err := api.ValidateGroup(it.Group); err != nil {
			return fmt.Errorf("%w: group %q: %v", ErrBadSnapshot, it.Group, err)
		}
		return tx.Bucket(bucketGroups).Put([]byte(it.Group), it.Record)
	case 'e':
		var ev api.Event
		if err := api.Decode(it.Record, &ev); err != nil {
			return fmt.Errorf("%w: event %d of %q: %v", ErrBadSnapshot, it.Seq, it.Group, err)
		}
		b, err := tx.Bucket(bucketEvents).CreateBucketIfNotExists([]byte(it.Group))
		if err != nil {
			return err
		}
		return s.putEventValue(tx, b, it.Group, it.Seq, ev.Time, it.Record)
	case 'o':
		var nt Notice
		if err := api.Decode(it.Record, &nt); err != nil {
			return fmt.Errorf("%w: notice: %v", ErrBadSnapshot, err)
		}
		return tx.Bucket(bucketOutbox).Put(outboxKey(nt.Notify.Group, nt.Target.ID), it.Record)
	}
	return fmt.Errorf("%w: item of kind %q", ErrBadSnapshot, it.Kind)
}
