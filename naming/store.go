package naming

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/mastership/mastership/naming/api"
	"github.com/mastership/mastership/naming/boltfile"
	bolt "go.etcd.io/bbolt"
)

// Store keeps what the naming node acknowledged in a bbolt file in the data
// directory: one record per group and each group's bounded event history.
// bbolt commits are copy-on-write with fsync, so a kill -9 leaves either the
// old or the new state, never a torn one.
type Store struct {
	db        *bolt.DB
	maxEvents uint64
}

var (
	bucketGroups = []byte("groups")
	bucketEvents = []byte("events")
)

// ErrStoreLocked is returned when another process holds the data directory.
var ErrStoreLocked = errors.New("naming: data directory is in use by another process")

// OpenStore opens (creating if needed) the store in dir.
func OpenStore(dir string, maxEvents int) (*Store, error) {
	if dir == "" {
		return nil, errors.New("naming: no data directory")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("naming: create data directory: %w", err)
	}
	db, err := boltfile.Open(filepath.Join(dir, "naming.db"), &bolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		if errors.Is(err, bolt.ErrTimeout) {
			return nil, fmt.Errorf("%w: %s", ErrStoreLocked, dir)
		}
		if errors.Is(err, boltfile.ErrDamaged) {
			return nil, fmt.Errorf("naming: %w; restore the data dir from a backup (with an empty -data-dir the node "+
				"starts with no groups, and agents join and register again)", err)
		}
		return nil, fmt.Errorf("naming: open store in %s: %w", dir, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketGroups, bucketEvents} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("naming: initialise store: %w", err)
	}
	return &Store{db: db, maxEvents: uint64(maxEvents)}, nil
}

// Close closes the store.
func (s *Store) Close() error { return s.db.Close() }

// write is one unit of durable change: group records to put and events to
// append.
type write struct {
	groups map[string][]byte
	events []GroupEvent
}

func seqKey(seq uint64) []byte {
	var k [8]byte
	binary.BigEndian.PutUint64(k[:], seq)
	return k[:]
}

// commit applies writes in order in one transaction (one fsync for all).
func (s *Store) commit(ws []*write) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		groups := tx.Bucket(bucketGroups)
		events := tx.Bucket(bucketEvents)
		for _, w := range ws {
			for name, rec := range w.groups {
				if err := groups.Put([]byte(name), rec); err != nil {
					return err
				}
			}
			for _, ge := range w.events {
				b, err := events.CreateBucketIfNotExists([]byte(ge.Group))
				if err != nil {
					return err
				}
				v, err := api.Encode(&ge.Event)
				if err != nil {
					return err
				}
				if err := b.Put(seqKey(ge.Event.Seq), v); err != nil {
					return err
				}
				if ge.Event.Seq > s.maxEvents {
					if err := b.Delete(seqKey(ge.Event.Seq - s.maxEvents)); err != nil {
						return err
					}
				}
			}
		}
		return nil
	})
}

// loadGroups calls fn with every stored group record.
func (s *Store) loadGroups(fn func(rec []byte) error) error {
	return s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketGroups).ForEach(func(_, v []byte) error { return fn(v) })
	})
}

// Events returns up to limit events of group with Seq > after.
func (s *Store) Events(group string, after uint64, limit int) (api.EventsResponse, error) {
	out := api.EventsResponse{Events: []api.Event{}, Next: after}
	err := s.db.View(func(tx *bolt.Tx) error {
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
