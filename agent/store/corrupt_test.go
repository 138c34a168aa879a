package store

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/mastership/mastership/agent/rlog"
	"github.com/mastership/mastership/naming/api"
	"github.com/mastership/mastership/naming/boltfile"
	bolt "go.etcd.io/bbolt"
)

// slot is a place in the file where the corruption tests write a value.
type slot struct {
	b bucket
	k []byte
}

// slots are the keys of fixture's file, and a few keys it does not have.
var slots = []slot{
	{bucketMeta, []byte(keyHardState)},
	{bucketMeta, []byte(keyBase)},
	{bucketMeta, []byte(keySnapshot)},
	{bucketLog, key(3)},
	{bucketLog, key(4)},
	{bucketLog, key(5)},
	{bucketLog, key(6)}, // past the last entry
	{bucketLog, key(1)}, // below the base
	{bucketLog, []byte("x")},
	{bucketLog, key(8)}, // past the last entry, leaving a gap
	{bucketRecords, key(1)},
	{bucketRecords, key(2)},
	{bucketRecords, key(9)},
	{bucketRecords, []byte("x")},
}

// fixture returns the bytes of a Bolt file holding a hard state, a snapshot
// at 2, entries 3 to 5 and records 1 and 2. The entries are in the log
// bucket, as stores kept them before the write-ahead log: opening the file
// alone moves them to segments, so the slots in the log bucket test what
// that move checks.
func fixture(t testing.TB) []byte {
	dir := t.TempDir()
	s := mustOpen(t, dir)
	es := chain(rlog.Pos{}, ep(1, 1), 5)
	for _, err := range []error{
		s.SaveHardState(HardState{Epoch: ep(1, 1), MaxTerm: 1}),
		s.Append(es),
		s.SaveSnapshot(rlog.PosOf(es[1]), []byte("snap")),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.AddRecords([]Record{record("g", 4), record("g", 5)}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	db, err := bolt.Open(filepath.Join(dir, FileName), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		// What only stores with a write-ahead log have.
		for _, k := range []string{keyWalSeg, keySalt} {
			if err := tx.Bucket([]byte(bucketMeta)).Delete([]byte(k)); err != nil {
				return err
			}
		}
		for _, e := range es[2:] {
			v, err := api.Encode(&e)
			if err != nil {
				return err
			}
			if err := tx.Bucket([]byte(bucketLog)).Put(key(e.Index), v); err != nil {
				return err
			}
		}
		return nil
	})
	if err == nil {
		err = db.Close()
	}
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, FileName))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// corrupt writes the fixture to a fresh directory, puts v under sl through
// bbolt directly, and returns the directory.
func corrupt(t testing.TB, file []byte, sl slot, v []byte) string {
	dir := t.TempDir()
	path := filepath.Join(dir, FileName)
	if err := os.WriteFile(path, file, 0o600); err != nil {
		t.Fatal(err)
	}
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error { return tx.Bucket([]byte(sl.b)).Put(sl.k, v) })
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestCorruptValues writes values that cannot be right and expects Load or
// the record readers to say which key holds them.
func TestCorruptValues(t *testing.T) {
	file := fixture(t)
	es := chain(rlog.Pos{}, ep(1, 1), 5)
	entry := func(e rlog.Entry) []byte {
		b, err := api.Encode(&e)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	badHash := es[3]
	badHash.Hash[0] ^= 1
	zeroBase, _ := api.Encode(&rlog.Pos{Epoch: ep(1, 1)})
	wrongID, _ := api.Encode(&Record{ID: 2, Group: "g", Index: 4})
	garbage := []byte{0xc1} // never used in msgpack
	cases := []struct {
		name string
		at   slot
		v    []byte
		want string
		is   error
	}{
		{"hard state", slots[0], garbage, "meta key hardstate", nil},
		{"hard state with trailing bytes", slots[0], append(entry(es[0]), 0), "meta key hardstate", nil},
		{"base", slots[1], garbage, "meta key base", nil},
		{"base at index 0 with an epoch", slots[1], zeroBase, "meta key base", ErrInvalid},
		{"entry", slots[4], garbage, "log key 4", nil},
		{"empty entry", slots[4], []byte{}, "log key 4", nil},
		{"entry under the wrong key", slots[4], entry(es[4]), "log key 4 holds entry 5", nil},
		{"broken hash", slots[4], entry(badHash), "log key 4", rlog.ErrChain},
		{"chains to another entry", slots[6], entry(chain(rlog.PosOf(badHash), ep(1, 1), 2)[1]), "log key 6", rlog.ErrChain},
		{"gap", slots[9], entry(chain(rlog.PosOf(es[4]), ep(1, 1), 3)[2]), "log key 8", rlog.ErrGap},
		{"entry below the base", slots[7], entry(es[0]), "log key 1", rlog.ErrGap},
		{"short key", slots[8], entry(es[0]), "log key x holds entry 1", nil},
		{"record", slots[10], garbage, "records key 1", nil},
		{"record under the wrong key", slots[10], wrongID, "records key 1 holds record 2", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := mustOpen(t, corrupt(t, file, tc.at, tc.v))
			defer s.Close()
			var err error
			if tc.at.b == bucketRecords {
				_, err = s.Records()
			} else {
				_, _, _, _, err = s.Load()
			}
			if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want ErrCorrupt naming %q", err, tc.want)
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Fatalf("error %v, want it to wrap %v", err, tc.is)
			}
		})
	}
	// The snapshot is opaque: any bytes load.
	s := mustOpen(t, corrupt(t, file, slots[2], garbage))
	defer s.Close()
	if _, snap, _, _, err := s.Load(); err != nil || string(snap) != string(garbage) {
		t.Fatalf("Load with an arbitrary snapshot: %q, %v", snap, err)
	}
}

// FuzzLoad writes arbitrary bytes under one key of a valid file and calls
// every reader and a few writers: errors are expected, panics are not, and a
// Load that succeeds returns a log that chains.
func FuzzLoad(f *testing.F) {
	file := fixture(f)
	for i := range slots {
		f.Add(uint8(i), []byte{0xc1})
		f.Add(uint8(i), []byte{})
		f.Add(uint8(i), []byte{0x80})                   // empty map: decodes to zero values
		f.Add(uint8(i), []byte{0x81, 0xa1, 0x69, 0x04}) // {"i": 4}
		// Lengths far beyond the input: a decoder must not believe them.
		f.Add(uint8(i), []byte{0xc6, 0xff, 0xff, 0xff, 0xff})
		f.Add(uint8(i), []byte{0xdf, 0xff, 0xff, 0xff, 0xff})
		f.Add(uint8(i), []byte{0x81, 0xa1, 0x6f, 0xdd, 0xff, 0xff, 0xff, 0xff}) // {"o": array of 4G}
		f.Add(uint8(i), []byte{0x81, 0xa1, 0x6f, 0xc6, 0x7f, 0xff, 0xff, 0xff}) // {"o": bin of 2G}
	}
	f.Fuzz(func(t *testing.T, at uint8, v []byte) {
		sl := slots[int(at)%len(slots)]
		s := mustOpen(t, corrupt(t, file, sl, v))
		defer s.Close()
		_, _, base, es, err := s.Load()
		if err == nil {
			if err := rlog.NewAt(base).Append(es...); err != nil {
				t.Fatalf("Load succeeded with a log that does not chain: %v", err)
			}
		}
		s.Records()
		s.Record(1)
		s.Record(2)
		s.MarkReplayed(1)
		s.DeleteRecord(2)
		s.AddRecords([]Record{record("g", 7)})
		s.Append(chain(last(base, es), ep(2, 1), 1))
		s.TruncateAfter(4)
		s.SaveSnapshot(rlog.PosOf(chain(rlog.Pos{}, ep(1, 1), 5)[3]), nil)
	})
}

// A truncated agent.db is refused at Open with an error that names the
// file and what to do, never a panic.
func TestOpenTruncatedFile(t *testing.T) {
	file := fixture(t)
	for _, size := range []int{1, len(file) / 2, len(file) - os.Getpagesize()} {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, FileName), file[:size], 0o600); err != nil {
			t.Fatal(err)
		}
		s, err := Open(dir)
		if err == nil {
			// Bytes past the pages in use may go without loss.
			if _, _, _, _, lerr := s.Load(); lerr != nil {
				t.Errorf("size %d: opened, then Load: %v", size, lerr)
			}
			s.Close()
			continue
		}
		if !errors.Is(err, boltfile.ErrDamaged) || !strings.Contains(err.Error(), filepath.Join(dir, FileName)) ||
			!strings.Contains(err.Error(), "empty -data-dir") {
			t.Errorf("size %d: %v", size, err)
		}
	}
	// One size that surely cuts pages in use.
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, FileName), file[:2*os.Getpagesize()+1], 0o600)
	if s, err := Open(dir); err == nil {
		s.Close()
		t.Fatal("a file cut after its meta pages opened")
	}
}

// Entries are stored in their binary form; the msgpack form entries had
// before it still reads, and a binary value with bytes after the entry,
// or cut short, is refused.
func TestStoredEntryForms(t *testing.T) {
	e := rlog.Entry{Epoch: api.Epoch{Term: 3, ID: 2}, Index: 9, Client: 7, Seq: 4, Op: []byte("op"), Hash: [32]byte{1, 2, 3}}
	bin, err := encodeEntry(&e)
	if err != nil {
		t.Fatal(err)
	}
	old, err := api.Encode(&e)
	if err != nil {
		t.Fatal(err)
	}
	for name, v := range map[string][]byte{"binary": bin, "msgpack": old} {
		got, err := decodeStoredEntry(v)
		if err != nil || !reflect.DeepEqual(got, e) {
			t.Fatalf("%s: %+v, %v; want %+v", name, got, err, e)
		}
	}
	got, _ := decodeStoredEntry(bin)
	bin[len(bin)-33] = 'X' // the op's last byte, in the value read
	if got.Op[1] != 'p' {
		t.Fatal("a decoded op aliases the stored value")
	}
	for name, v := range map[string][]byte{"trailing": append(bytes.Clone(bin), 0), "cut": bin[:len(bin)-1], "format only": {entryFormat}} {
		if _, err := decodeStoredEntry(v); err == nil {
			t.Errorf("%s: decoded", name)
		}
	}
}
