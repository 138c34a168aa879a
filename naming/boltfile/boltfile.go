// Package boltfile opens the bbolt files of Mastership (an agent's agent.db,
// a naming node's naming.db) so that a damaged file is an error, never a
// crash. bbolt maps the file into memory: a truncated file faults when a
// page past its end is read, and corrupt pages make bbolt panic. Open turns
// both into ErrDamaged, naming the file, and checks the whole file before
// anyone uses it: every page reachable from the root is read under the
// same guard, then bbolt's own consistency check runs.
//
// Usage:
//
//	db, err := boltfile.Open(path, &bolt.Options{Timeout: time.Second})
//	if errors.Is(err, boltfile.ErrDamaged) {
//		// tell the operator which file, and what to do about it
//	}
package boltfile

import (
	"errors"
	"fmt"
	"io/fs"
	"runtime/debug"

	bolt "go.etcd.io/bbolt"
)

// ErrDamaged means the file is truncated or corrupt.
var ErrDamaged = errors.New("damaged data file")

// Open opens and checks the bbolt file at path. A damaged file gives an
// error wrapping ErrDamaged; other errors (a lock held by another process,
// permissions) are returned as bbolt gives them.
func Open(path string, opts *bolt.Options) (db *bolt.DB, err error) {
	old := debug.SetPanicOnFault(true)
	defer debug.SetPanicOnFault(old)
	defer guard(path, &err, func() {
		if db != nil {
			db.Close()
			db = nil
		}
	})
	db, err = bolt.Open(path, 0o600, opts)
	if err != nil {
		if isDamage(err) {
			return nil, fmt.Errorf("%w %s: %v", ErrDamaged, path, err)
		}
		return nil, err
	}
	if err := walk(db); err != nil {
		db.Close()
		return nil, fmt.Errorf("%w %s: %v", ErrDamaged, path, err)
	}
	if err := db.View(func(tx *bolt.Tx) error {
		var errs []error
		for e := range tx.Check() {
			errs = append(errs, e)
			if len(errs) == 5 {
				break
			}
		}
		return errors.Join(errs...)
	}); err != nil {
		db.Close()
		return nil, fmt.Errorf("%w %s: consistency check: %v", ErrDamaged, path, err)
	}
	return db, nil
}

// guard runs at the end of Open: a panic or a memory fault while bbolt
// read the file becomes ErrDamaged (fault is called to release what was
// opened). Faults become panics only on this goroutine, for this call.
func guard(path string, err *error, fault func()) {
	if r := recover(); r != nil {
		fault()
		*err = fmt.Errorf("%w %s: a page could not be read, the file is cut short or corrupt (%v)", ErrDamaged, path, r)
	}
}

// walk reads every bucket, key and value of the file, so that a page that
// faults or does not decode does so here, under the guard.
func walk(db *bolt.DB) error {
	return db.View(func(tx *bolt.Tx) error {
		return tx.ForEach(func(name []byte, b *bolt.Bucket) error { return walkBucket(b) })
	})
}

func walkBucket(b *bolt.Bucket) error {
	return b.ForEach(func(k, v []byte) error {
		if v == nil {
			if nb := b.Bucket(k); nb != nil {
				return walkBucket(nb)
			}
			return nil
		}
		var sum byte
		for _, c := range v {
			sum ^= c // touch every byte of the value
		}
		_ = sum
		return nil
	})
}

// isDamage tells bbolt's errors about a file's content (bad meta pages, a
// checksum, a file shorter than two pages) from the others: a lock held
// elsewhere, or the file system refusing access.
func isDamage(err error) bool {
	var pe *fs.PathError
	return !errors.Is(err, bolt.ErrTimeout) && !errors.As(err, &pe)
}
