package naming

import (
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mastership/mastership/naming/api"
	"github.com/mastership/mastership/naming/boltfile"
	bolt "go.etcd.io/bbolt"
)

// A raft.db whole as a bbolt file but holding what raft cannot read (a
// log entry that does not decode, a gap, a term of the wrong size, a log
// that starts after what any snapshot holds), or a snapshot whose bytes
// changed: New refuses it with ErrDamaged naming the file, never a panic
// inside raft. The undamaged copy opens and keeps its registration.
func TestDamagedRaftStores(t *testing.T) {
	pristine := t.TempDir()
	n, err := New(testConfig(t, pristine))
	if err != nil {
		t.Fatal(err)
	}
	for id := uint64(1); id <= 20; id++ {
		jr, err := n.Join(api.JoinRequest{Group: "g", ID: id, Addr: addr(id)})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := n.Register(t.Context(), api.RegisterRequest{Group: "g", ID: id, Addr: addr(id), Session: jr.Session,
			Epoch: api.Epoch{Term: id, ID: id}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := n.raft.Snapshot().Error(); err != nil {
		t.Fatal(err)
	}
	before, err := n.Lookup(api.LookupRequest{Group: "g"})
	if err != nil || before.Master == nil {
		t.Fatalf("lookup: %+v, %v", before, err)
	}
	n.Close()

	logKey := func(i uint64) []byte { return binary.BigEndian.AppendUint64(nil, i) }
	inBucket := func(bucket string, change func(t *testing.T, b *bolt.Bucket)) func(t *testing.T, dir string) {
		return func(t *testing.T, dir string) {
			db, err := bolt.Open(filepath.Join(dir, "raft", "raft.db"), 0o600, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			if err := db.Update(func(tx *bolt.Tx) error {
				change(t, tx.Bucket([]byte(bucket)))
				return nil
			}); err != nil {
				t.Fatal(err)
			}
		}
	}
	middle := func(t *testing.T, b *bolt.Bucket) []byte {
		t.Helper()
		var keys [][]byte
		b.ForEach(func(k, _ []byte) error { keys = append(keys, append([]byte(nil), k...)); return nil })
		if len(keys) < 3 {
			t.Fatalf("%d log entries, want a few", len(keys))
		}
		return keys[len(keys)/2]
	}
	for _, tc := range []struct {
		name   string
		damage func(t *testing.T, dir string)
		file   string
		want   string
	}{
		{"entry that does not decode", inBucket("logs", func(t *testing.T, b *bolt.Bucket) {
			b.Put(middle(t, b), []byte{0xc1, 0xff, 0x00})
		}), "raft.db", "log entry"},
		{"entry of another index", inBucket("logs", func(t *testing.T, b *bolt.Bucket) {
			k := middle(t, b)
			v := append([]byte(nil), b.Get(logKey(1))...)
			b.Put(k, v)
		}), "raft.db", "says it is entry 1"},
		{"gap in the log", inBucket("logs", func(t *testing.T, b *bolt.Bucket) {
			b.Delete(middle(t, b))
		}), "raft.db", "not found"},
		{"log cut at its start, no snapshot", func(t *testing.T, dir string) {
			if err := os.RemoveAll(filepath.Join(dir, "raft", "snapshots")); err != nil {
				t.Fatal(err)
			}
			inBucket("logs", func(t *testing.T, b *bolt.Bucket) {
				b.Delete(logKey(1))
				b.Delete(logKey(2))
			})(t, dir)
		}, "snapshots", "entries between are lost"},
		{"short term", inBucket("conf", func(t *testing.T, b *bolt.Bucket) {
			b.Put([]byte("CurrentTerm"), []byte{1, 2, 3})
		}), "raft.db", "CurrentTerm is 3 bytes"},
		{"snapshot byte changed", func(t *testing.T, dir string) {
			states, err := filepath.Glob(filepath.Join(dir, "raft", "snapshots", "*", "state.bin"))
			if err != nil || len(states) == 0 {
				t.Fatalf("snapshots %v, %v", states, err)
			}
			b, err := os.ReadFile(states[0])
			if err != nil {
				t.Fatal(err)
			}
			b[len(b)/2] ^= 0x40
			if err := os.WriteFile(states[0], b, 0o600); err != nil {
				t.Fatal(err)
			}
		}, "snapshots", "CRC"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.CopyFS(dir, os.DirFS(pristine)); err != nil {
				t.Fatal(err)
			}
			tc.damage(t, dir)
			n, err := New(testConfig(t, dir))
			if err == nil {
				n.Close()
				t.Fatal("a damaged raft store opened")
			}
			if !errors.Is(err, boltfile.ErrDamaged) || !strings.Contains(err.Error(), tc.file) ||
				!strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "restore the data dir") {
				t.Fatalf("error %q: want ErrDamaged naming %s, saying %q and what to do", err, tc.file, tc.want)
			}
		})
	}

	t.Run("undamaged copy", func(t *testing.T) {
		dir := t.TempDir()
		if err := os.CopyFS(dir, os.DirFS(pristine)); err != nil {
			t.Fatal(err)
		}
		n, err := New(testConfig(t, dir))
		if err != nil {
			t.Fatal(err)
		}
		defer n.Close()
		waitFor(t, 10*time.Second, "the restarted node leading", func() bool {
			look, err := n.Lookup(api.LookupRequest{Group: "g"})
			return err == nil && look.Master != nil && look.Master.ID == before.Master.ID && look.Master.Epoch == before.Master.Epoch
		})
	})
}
