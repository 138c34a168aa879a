package boltfile

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// file makes a bbolt file with a few buckets and enough data to span many
// pages, and returns its bytes and the size its pages in use span.
func file(t *testing.T) ([]byte, int) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "x.db")
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, name := range []string{"a", "b"} {
			b, err := tx.CreateBucketIfNotExists([]byte(name))
			if err != nil {
				return err
			}
			for i := 0; i < 2000; i++ {
				if err := b.Put([]byte(fmt.Sprintf("key-%06d", i)), []byte(strings.Repeat("v", 100))); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var used int64
	db.View(func(tx *bolt.Tx) error { used = tx.Size(); return nil })
	db.Close()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b, int(used)
}

// Truncated and corrupted files give ErrDamaged naming the file, never a
// panic or a fault; a sound file opens.
func TestDamagedFiles(t *testing.T) {
	good, used := file(t)
	page := os.Getpagesize()
	cases := map[string][]byte{
		"one byte":           good[:1],
		"one page":           good[:page],
		"meta pages only":    good[:2*page],
		"half the data":      good[:used/2],
		"last data page cut": good[:used-page],
	}
	flipped := append([]byte(nil), good...)
	for i := 4 * page; i < used; i += 97 {
		flipped[i] ^= 0xff
	}
	cases["bytes flipped after the meta pages"] = flipped
	zeroMeta := append([]byte(nil), good...)
	copy(zeroMeta[:2*page], make([]byte, 2*page))
	cases["meta pages zeroed"] = zeroMeta
	for name, b := range cases {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "x.db")
			if err := os.WriteFile(path, b, 0o600); err != nil {
				t.Fatal(err)
			}
			db, err := Open(path, nil)
			if err == nil {
				db.Close()
				t.Fatalf("a damaged file (%d of %d bytes in use) opened", len(b), used)
			}
			if !errors.Is(err, ErrDamaged) || !strings.Contains(err.Error(), path) {
				t.Fatalf("error %v: want ErrDamaged naming %s", err, path)
			}
		})
	}
	path := filepath.Join(t.TempDir(), "x.db")
	if err := os.WriteFile(path, good, 0o600); err != nil {
		t.Fatal(err)
	}
	db, err := Open(path, nil)
	if err != nil {
		t.Fatalf("a sound file: %v", err)
	}
	db.Close()
}
