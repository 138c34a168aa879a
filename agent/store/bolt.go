package store

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/mastership/mastership/naming/boltfile"
	bolt "go.etcd.io/bbolt"
)

// FileName is the name of the bbolt file Open keeps in the data directory.
const FileName = "agent.db"

// lockTimeout bounds how long Open waits for another holder of the file to
// let go before it returns ErrLocked.
const lockTimeout = 500 * time.Millisecond

// Bolt is a Storage in a data directory: a bbolt file, FileName, for the
// hard state, snapshot and records, and the log in segment files under
// wal/. Every method that changes something has synced it before it
// returns; bbolt commits are copy-on-write and log frames are checksummed,
// so a kill -9 at any moment leaves either the state before a call or the
// state after it (for Persist, see Storage).
//
// A Bolt is safe for concurrent use. Writers take turns; readers (Records,
// Record) run beside each other and wait only for a writer's commit. After
// Close every method returns ErrClosed.
type Bolt struct {
	core
	dir string
}

// Dir is the data directory the store was opened in.
func (b *Bolt) Dir() string { return b.dir }

// DirBytes sums the sizes of the regular files under dir (a data
// directory: agent.db and the write-ahead log's segments); 0 for "" or a
// directory that cannot be read.
func DirBytes(dir string) int64 {
	if dir == "" {
		return 0
	}
	var n int64
	filepath.WalkDir(dir, func(_ string, e fs.DirEntry, err error) error {
		if err == nil && e.Type().IsRegular() {
			if fi, err := e.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}

// Open opens the store in dir, creating dir (0700) and the file (0600) if
// needed. The file is locked for the life of the Bolt: while another process,
// or another Bolt in this one, holds it, Open returns an error wrapping
// ErrLocked within about half a second.
func Open(dir string) (*Bolt, error) {
	if dir == "" {
		return nil, errors.New("store: open: no data directory")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("store: create data directory: %w", err)
	}
	path := filepath.Join(dir, FileName)
	_, statErr := os.Stat(path)
	created := errors.Is(statErr, os.ErrNotExist)
	db, err := boltfile.Open(path, &bolt.Options{Timeout: lockTimeout})
	if err != nil {
		if errors.Is(err, bolt.ErrTimeout) {
			return nil, fmt.Errorf("%w: %s", ErrLocked, dir)
		}
		if errors.Is(err, boltfile.ErrDamaged) {
			return nil, fmt.Errorf("store: %w; restore the data dir from a backup, or move it away and start the agent "+
				"with an empty -data-dir to download the state from the master (divergence records in it are lost)", err)
		}
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range buckets() {
			if _, err := tx.CreateBucketIfNotExists([]byte(b)); err != nil {
				return fmt.Errorf("create bucket %s: %w", b, err)
			}
		}
		return nil
	})
	if err == nil && created {
		// The file's directory entry must survive a power loss too, not
		// only a crash of the process.
		err = syncDir(dir)
	}
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("store: initialise %s: %w", path, err)
	}
	walDir := filepath.Join(dir, walDirName)
	if err := os.MkdirAll(walDir, 0o700); err != nil {
		db.Close()
		return nil, fmt.Errorf("store: create %s: %w", walDir, err)
	}
	if err := syncDir(dir); err != nil {
		db.Close()
		return nil, fmt.Errorf("store: initialise %s: %w", walDir, err)
	}
	b := &Bolt{dir: dir}
	b.eng = &boltEngine{db: db}
	b.fs = dirFS{walDir}
	b.segBytes = DefaultSegmentBytes
	b.now = time.Now
	return b, nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// boltEngine runs core's transactions as bbolt transactions.
type boltEngine struct {
	db     *bolt.DB
	closed bool
}

func (e *boltEngine) view(fn func(txn) error) error {
	if e.closed {
		return ErrClosed
	}
	return e.db.View(func(tx *bolt.Tx) error { return fn(boltTxn{tx}) })
}

func (e *boltEngine) update(fn func(txn) error) error {
	if e.closed {
		return ErrClosed
	}
	return e.db.Update(func(tx *bolt.Tx) error { return fn(boltTxn{tx}) })
}

// close closes the file; closing twice is not an error.
func (e *boltEngine) close() error {
	if e.closed {
		return nil
	}
	e.closed = true
	if err := e.db.Close(); err != nil {
		return fmt.Errorf("store: close: %w", err)
	}
	return nil
}

type boltTxn struct{ tx *bolt.Tx }

// bucket returns b; Open created every bucket, so a missing one is a broken
// invariant.
func (t boltTxn) bucket(b bucket) *bolt.Bucket {
	bb := t.tx.Bucket([]byte(b))
	if bb == nil {
		panic("store: bucket " + string(b) + " missing from an opened file")
	}
	return bb
}

func (t boltTxn) get(b bucket, k []byte) []byte { return t.bucket(b).Get(k) }

func (t boltTxn) put(b bucket, k, v []byte) error { return t.bucket(b).Put(k, v) }

func (t boltTxn) delete(b bucket, k []byte) error { return t.bucket(b).Delete(k) }

func (t boltTxn) deleteRange(b bucket, from, to []byte) error {
	bb := t.bucket(b)
	// Collect, then delete: deleting under a moving cursor can skip keys.
	var ks [][]byte
	c := bb.Cursor()
	k, _ := c.First()
	if from != nil {
		k, _ = c.Seek(from)
	}
	for ; k != nil && (to == nil || bytes.Compare(k, to) < 0); k, _ = c.Next() {
		ks = append(ks, bytes.Clone(k))
	}
	for _, k := range ks {
		if err := bb.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

func (t boltTxn) last(b bucket) (k, v []byte) { return t.bucket(b).Cursor().Last() }

func (t boltTxn) scan(b bucket, from []byte, fn func(k, v []byte) error) error {
	c := t.bucket(b).Cursor()
	k, v := c.First()
	if from != nil {
		k, v = c.Seek(from)
	}
	for ; k != nil; k, v = c.Next() {
		if err := fn(k, v); err != nil {
			return err
		}
	}
	return nil
}

func (t boltTxn) nextSeq(b bucket) (uint64, error) { return t.bucket(b).NextSequence() }
