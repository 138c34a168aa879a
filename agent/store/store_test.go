package store

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/mastership/mastership/agent/rlog"
	"github.com/mastership/mastership/naming/api"
)

// harness is one implementation under test, with a way to "restart": Bolt
// closes and reopens its directory, Memory is closed and used again, as a
// test harness restarting an agent would.
type harness struct {
	t    *testing.T
	s    Storage
	dir  string // Bolt only
	bolt bool
}

// impls is the table every test runs through: each test runs once against
// Memory and once against Bolt.
var impls = []struct {
	name string
	open func(t *testing.T) *harness
}{
	{"memory", func(t *testing.T) *harness { return &harness{t: t, s: NewMemory()} }},
	{"bolt", func(t *testing.T) *harness {
		h := &harness{t: t, dir: t.TempDir(), bolt: true}
		h.s = mustOpen(t, h.dir)
		t.Cleanup(func() { h.s.Close() })
		return h
	}},
}

func eachImpl(t *testing.T, fn func(t *testing.T, h *harness)) {
	t.Helper()
	for _, im := range impls {
		t.Run(im.name, func(t *testing.T) { fn(t, im.open(t)) })
	}
}

func mustOpen(t testing.TB, dir string) *Bolt {
	t.Helper()
	b, err := Open(dir)
	if err != nil {
		t.Fatalf("Open(%s): %v", dir, err)
	}
	return b
}

// reopen simulates a restart.
func (h *harness) reopen() {
	h.t.Helper()
	if err := h.s.Close(); err != nil {
		h.t.Fatalf("Close: %v", err)
	}
	if h.bolt {
		h.s = mustOpen(h.t, h.dir)
	}
}

// setNow replaces the store's clock for AddRecords.
func (h *harness) setNow(now func() time.Time) {
	switch s := h.s.(type) {
	case *Memory:
		s.now = now
	case *Bolt:
		s.now = now
	}
}

// loaded is everything Load returns, comparable as a whole.
type loaded struct {
	HS      HardState
	Snap    []byte
	Base    rlog.Pos
	Entries []rlog.Entry
}

func (h *harness) load() loaded {
	h.t.Helper()
	hs, snap, base, es, err := h.s.Load()
	if err != nil {
		h.t.Fatalf("Load: %v", err)
	}
	return loaded{hs, snap, base, es}
}

// indices returns the indices of es.
func indices(es []rlog.Entry) []uint64 {
	out := []uint64{}
	for _, e := range es {
		out = append(out, e.Index)
	}
	return out
}

func ep(term, id uint64) api.Epoch { return api.Epoch{Term: term, ID: id} }

// chain returns n entries that extend p at epoch e, with ops that name
// their index. It stamps them as AppendNew would but checks nothing, so it
// can make entries a log must refuse (an older or zero epoch).
func chain(p rlog.Pos, e api.Epoch, n int) []rlog.Entry {
	es := make([]rlog.Entry, 0, n)
	for range n {
		i := p.Index + 1
		x := rlog.Entry{Epoch: e, Index: i, Client: 7, Seq: i, Op: fmt.Appendf(nil, "op %d at %s", i, e)}
		x.Hash = rlog.ChainHash(p.Hash, x)
		es = append(es, x)
		p = rlog.PosOf(x)
	}
	return es
}

// last returns the point that es ends, or p if es is empty.
func last(p rlog.Pos, es []rlog.Entry) rlog.Pos {
	if len(es) == 0 {
		return p
	}
	return rlog.PosOf(es[len(es)-1])
}

func TestHardStateRoundTrip(t *testing.T) {
	cases := []HardState{
		{},
		{Epoch: ep(1, 1), Vote: ep(1, 1), Master: 1, MaxTerm: 1},
		{Epoch: ep(3, 2), Vote: ep(4, 5), Master: 0, MaxTerm: 9},
		{Epoch: ep(^uint64(0), ^uint64(0)), Vote: ep(^uint64(0), 1), Master: ^uint64(0), MaxTerm: ^uint64(0)},
	}
	eachImpl(t, func(t *testing.T, h *harness) {
		if got := h.load(); !reflect.DeepEqual(got, loaded{}) {
			t.Fatalf("empty store loads %+v, want zero values", got)
		}
		for _, hs := range cases {
			if err := h.s.SaveHardState(hs); err != nil {
				t.Fatalf("SaveHardState(%+v): %v", hs, err)
			}
			h.reopen()
			if got := h.load().HS; got != hs {
				t.Fatalf("after reopen hard state = %+v, want %+v", got, hs)
			}
		}
	})
}

// TestLogOps runs sequences of appends, truncations and snapshots and checks
// the indices and base that Load returns after each sequence, before and
// after a reopen.
func TestLogOps(t *testing.T) {
	e1, e2 := ep(1, 1), ep(2, 3)
	type op func(t *testing.T, s Storage, tip *rlog.Pos)
	app := func(e api.Epoch, n int) op {
		return func(t *testing.T, s Storage, tip *rlog.Pos) {
			es := chain(*tip, e, n)
			if err := s.Append(es); err != nil {
				t.Fatalf("Append %d after %s: %v", n, tip, err)
			}
			*tip = last(*tip, es)
		}
	}
	// trunc cuts the log at i; tip follows from the loaded log.
	trunc := func(i uint64) op {
		return func(t *testing.T, s Storage, tip *rlog.Pos) {
			if err := s.TruncateAfter(i); err != nil {
				t.Fatalf("TruncateAfter(%d): %v", i, err)
			}
			_, _, base, es, err := s.Load()
			if err != nil {
				t.Fatal(err)
			}
			*tip = last(base, es)
		}
	}
	cases := []struct {
		name     string
		ops      []op
		want     []uint64
		wantBase uint64
	}{
		{"one batch", []op{app(e1, 5)}, []uint64{1, 2, 3, 4, 5}, 0},
		{"single appends", []op{app(e1, 1), app(e1, 1), app(e2, 1)}, []uint64{1, 2, 3}, 0},
		{"append truncate append", []op{app(e1, 5), trunc(2), app(e2, 3)}, []uint64{1, 2, 3, 4, 5}, 0},
		{"truncate to empty then append", []op{app(e1, 3), trunc(0), app(e2, 2)}, []uint64{1, 2}, 0},
		{"truncate past the end", []op{app(e1, 3), trunc(10)}, []uint64{1, 2, 3}, 0},
		{"truncate max index", []op{app(e1, 3), trunc(^uint64(0))}, []uint64{1, 2, 3}, 0},
		{"truncate at the last", []op{app(e1, 3), trunc(3), app(e1, 1)}, []uint64{1, 2, 3, 4}, 0},
		{"twice", []op{app(e1, 4), trunc(1), app(e1, 2), trunc(2), app(e2, 4)}, []uint64{1, 2, 3, 4, 5, 6}, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			eachImpl(t, func(t *testing.T, h *harness) {
				var tip rlog.Pos
				for _, o := range tc.ops {
					o(t, h.s, &tip)
				}
				before := h.load()
				h.reopen()
				got := h.load()
				if !reflect.DeepEqual(got, before) {
					t.Fatalf("reopen changed the state:\n got  %+v\n want %+v", got, before)
				}
				if !reflect.DeepEqual(indices(got.Entries), tc.want) || got.Base.Index != tc.wantBase {
					t.Fatalf("log = base %d, %v; want base %d, %v", got.Base.Index, indices(got.Entries), tc.wantBase, tc.want)
				}
				if l := last(got.Base, got.Entries); l != tip {
					t.Fatalf("last stored point %s, want %s", l, tip)
				}
			})
		})
	}
}

func TestEntriesRoundTrip(t *testing.T) {
	eachImpl(t, func(t *testing.T, h *harness) {
		es := chain(rlog.Pos{}, ep(1, 2), 3)
		// Ops of every shape: empty (a no-op), binary, large.
		l := rlog.NewAt(rlog.PosOf(es[2]))
		for _, op := range [][]byte{nil, {0, 0xff, 0xc1}, make([]byte, 64<<10)} {
			e, err := l.AppendNew(ep(2, 1), 0, 0, op)
			if err != nil {
				t.Fatal(err)
			}
			es = append(es, e)
		}
		if err := h.s.Append(es); err != nil {
			t.Fatal(err)
		}
		h.reopen()
		got := h.load().Entries
		if len(got) != len(es) {
			t.Fatalf("loaded %d entries, want %d", len(got), len(es))
		}
		for i := range es {
			// nil and empty ops both mean no-op and chain alike.
			if len(es[i].Op) == 0 && len(got[i].Op) == 0 {
				got[i].Op = es[i].Op
			}
			if !reflect.DeepEqual(got[i], es[i]) {
				t.Fatalf("entry %d = %+v, want %+v", i, got[i], es[i])
			}
		}
	})
}

// TestAppendRefused checks that a batch that does not extend the stored log
// is refused with both indices named and nothing stored.
func TestAppendRefused(t *testing.T) {
	base := chain(rlog.Pos{}, ep(2, 1), 3) // stored: 1..3 at epoch 2.1
	tip := rlog.PosOf(base[2])
	badHash := chain(tip, ep(2, 1), 2)
	badHash[1].Hash[0] ^= 1
	badIndexInBatch := chain(tip, ep(2, 1), 3)
	badIndexInBatch[2] = chain(rlog.PosOf(badIndexInBatch[1]), ep(2, 1), 2)[1] // index 7 after 5
	cases := []struct {
		name  string
		batch []rlog.Entry
		want  []string // in the error text
		is    error
	}{
		{"gap", chain(rlog.PosOf(base[2]), ep(2, 1), 3)[1:], []string{"entry 5@2.1", "index 3"}, rlog.ErrGap},
		{"overlap", chain(rlog.PosOf(base[0]), ep(2, 1), 2), []string{"entry 2@2.1", "index 3"}, rlog.ErrGap},
		{"from scratch", chain(rlog.Pos{}, ep(2, 1), 1), []string{"entry 1@2.1", "index 3"}, rlog.ErrGap},
		{"gap inside the batch", badIndexInBatch, []string{"entry 7@2.1", "index 5"}, rlog.ErrGap},
		{"older epoch", chain(tip, ep(1, 9), 1), []string{"entry 4@1.9", "epoch 2.1"}, rlog.ErrEpoch},
		{"zero epoch", chain(tip, api.Epoch{}, 1), []string{"entry 4@0.0"}, rlog.ErrEpoch},
		{"broken chain", badHash, []string{"entry 5@2.1"}, rlog.ErrChain},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			eachImpl(t, func(t *testing.T, h *harness) {
				if err := h.s.Append(base); err != nil {
					t.Fatal(err)
				}
				before := h.load()
				err := h.s.Append(tc.batch)
				if !errors.Is(err, ErrInvalid) || !errors.Is(err, tc.is) {
					t.Fatalf("Append: %v, want %v and %v", err, ErrInvalid, tc.is)
				}
				for _, w := range tc.want {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q does not name %q", err, w)
					}
				}
				h.reopen()
				if got := h.load(); !reflect.DeepEqual(got, before) {
					t.Fatalf("refused Append changed the store: %v, want %v", indices(got.Entries), indices(before.Entries))
				}
			})
		})
	}
	eachImpl(t, func(t *testing.T, h *harness) {
		big := chain(rlog.Pos{}, ep(1, 1), 1)[0]
		big.Op = make([]byte, api.MaxMessageBytes)
		big.Hash = rlog.ChainHash([32]byte{}, big)
		if err := h.s.Append([]rlog.Entry{big}); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "limit") {
			t.Fatalf("Append of an entry too large to load back: %v", err)
		}
		if err := h.s.Append(nil); err != nil {
			t.Fatalf("empty Append: %v", err)
		}
	})
}

func TestTruncateBelowBase(t *testing.T) {
	eachImpl(t, func(t *testing.T, h *harness) {
		es := chain(rlog.Pos{}, ep(1, 1), 6)
		if err := h.s.Append(es); err != nil {
			t.Fatal(err)
		}
		if err := h.s.SaveSnapshot(rlog.PosOf(es[3]), []byte("state at 4")); err != nil {
			t.Fatal(err)
		}
		before := h.load()
		err := h.s.TruncateAfter(2)
		if !errors.Is(err, ErrInvalid) || !errors.Is(err, rlog.ErrCompacted) || !strings.Contains(err.Error(), "base 4") {
			t.Fatalf("TruncateAfter(2) below base 4: %v", err)
		}
		if got := h.load(); !reflect.DeepEqual(got, before) {
			t.Fatal("refused TruncateAfter changed the store")
		}
		// At the base: drops every entry, keeps the snapshot.
		if err := h.s.TruncateAfter(4); err != nil {
			t.Fatal(err)
		}
		if got := h.load(); len(got.Entries) != 0 || got.Base != rlog.PosOf(es[3]) {
			t.Fatalf("after TruncateAfter(base): base %s, %v", got.Base, indices(got.Entries))
		}
	})
}

func TestSnapshot(t *testing.T) {
	stored := chain(rlog.Pos{}, ep(1, 1), 6) // 1..6
	other := chain(rlog.PosOf(stored[1]), ep(1, 2), 4)
	cases := []struct {
		name string
		base rlog.Pos
		snap []byte
		want []uint64 // entries kept
	}{
		{"inside the log keeps the suffix", rlog.PosOf(stored[3]), []byte("s4"), []uint64{5, 6}},
		{"at the first entry", rlog.PosOf(stored[0]), []byte("s1"), []uint64{2, 3, 4, 5, 6}},
		{"at the last entry", rlog.PosOf(stored[5]), []byte("s6"), []uint64{}},
		{"past the log", rlog.PosOf(other[3]), []byte("s6'"), []uint64{}},
		{"same index, other hash drops the suffix", rlog.PosOf(other[1]), []byte("s4'"), []uint64{}},
		{"empty prefix keeps everything", rlog.Pos{}, []byte("empty"), []uint64{1, 2, 3, 4, 5, 6}},
		{"empty snapshot", rlog.PosOf(stored[2]), []byte{}, []uint64{4, 5, 6}},
		{"nil snapshot", rlog.PosOf(stored[2]), nil, []uint64{4, 5, 6}},
		{"larger than a message", rlog.PosOf(stored[2]), make([]byte, 3*api.MaxMessageBytes), []uint64{4, 5, 6}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			eachImpl(t, func(t *testing.T, h *harness) {
				if err := h.s.Append(stored); err != nil {
					t.Fatal(err)
				}
				if err := h.s.SaveSnapshot(tc.base, tc.snap); err != nil {
					t.Fatalf("SaveSnapshot: %v", err)
				}
				h.reopen()
				got := h.load()
				if got.Base != tc.base || !reflect.DeepEqual(indices(got.Entries), tc.want) {
					t.Fatalf("loaded base %s, %v; want base %s, %v", got.Base, indices(got.Entries), tc.base, tc.want)
				}
				if got.Snap == nil || string(got.Snap) != string(tc.snap) {
					t.Fatalf("snapshot = %d bytes (nil %t), want %d bytes", len(got.Snap), got.Snap == nil, len(tc.snap))
				}
				// The caller can go on from what is stored.
				if err := h.s.Append(chain(last(got.Base, got.Entries), ep(3, 1), 2)); err != nil {
					t.Fatalf("Append after snapshot: %v", err)
				}
			})
		})
	}
}

func TestSnapshotReplacedAndOlder(t *testing.T) {
	eachImpl(t, func(t *testing.T, h *harness) {
		es := chain(rlog.Pos{}, ep(1, 1), 8)
		if err := h.s.Append(es); err != nil {
			t.Fatal(err)
		}
		if err := h.s.SaveSnapshot(rlog.PosOf(es[5]), []byte("s6")); err != nil {
			t.Fatal(err)
		}
		// A retained master's snapshot may sit below ours (recovery): it
		// replaces ours, and our entries no longer chain to it.
		theirs := chain(rlog.Pos{}, ep(1, 2), 3)
		if err := h.s.SaveSnapshot(rlog.PosOf(theirs[2]), []byte("t3")); err != nil {
			t.Fatal(err)
		}
		got := h.load()
		if got.Base != rlog.PosOf(theirs[2]) || len(got.Entries) != 0 || string(got.Snap) != "t3" {
			t.Fatalf("after older snapshot: base %s, snap %q, %v", got.Base, got.Snap, indices(got.Entries))
		}
	})
}

func TestSnapshotRefused(t *testing.T) {
	cases := []struct {
		name string
		base rlog.Pos
	}{
		{"index 0 with an epoch", rlog.Pos{Epoch: ep(1, 1)}},
		{"index 0 with a hash", rlog.Pos{Hash: [32]byte{1}}},
		{"zero epoch", rlog.Pos{Index: 3}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			eachImpl(t, func(t *testing.T, h *harness) {
				if err := h.s.Append(chain(rlog.Pos{}, ep(1, 1), 4)); err != nil {
					t.Fatal(err)
				}
				before := h.load()
				if err := h.s.SaveSnapshot(tc.base, []byte("x")); !errors.Is(err, ErrInvalid) {
					t.Fatalf("SaveSnapshot(%s): %v, want ErrInvalid", tc.base, err)
				}
				if got := h.load(); !reflect.DeepEqual(got, before) {
					t.Fatal("refused SaveSnapshot changed the store")
				}
			})
		})
	}
}

func record(group string, index uint64) Record {
	return Record{Group: group, Epoch: ep(2, 2), Index: index, Client: 9, Seq: index, Op: []byte("op"), Acked: index%2 == 0, Retained: 1}
}

func TestRecords(t *testing.T) {
	eachImpl(t, func(t *testing.T, h *harness) {
		at := time.Date(2024, 5, 6, 7, 8, 9, 123456789, time.FixedZone("X", 3600))
		h.setNow(func() time.Time { return at })
		given := time.Date(2020, 1, 2, 3, 4, 5, 6, time.UTC)
		in := []Record{record("g", 5), record("g", 6), record("h", 7)}
		in[2].Recorded = given
		in[1].Uncompared = 4 // made by a recovery whose log was compacted past the fork
		out, err := h.s.AddRecords(in)
		if err != nil {
			t.Fatal(err)
		}
		for i, r := range out {
			if r.ID != uint64(i+1) {
				t.Errorf("record %d got ID %d, want %d", i, r.ID, i+1)
			}
		}
		if !out[0].Recorded.Equal(at) || !out[2].Recorded.Equal(given) {
			t.Errorf("Recorded = %v, %v; want %v, %v", out[0].Recorded, out[2].Recorded, at, given)
		}
		if in[0].ID != 0 {
			t.Error("AddRecords changed its argument")
		}
		all, err := h.s.Records()
		if err != nil || !reflect.DeepEqual(all, out) {
			t.Fatalf("Records() = %+v, %v;\nwant what AddRecords returned %+v", all, err, out)
		}

		if err := h.s.DeleteRecord(3); err != nil {
			t.Fatal(err)
		}
		if err := h.s.MarkReplayed(2); err != nil {
			t.Fatal(err)
		}
		if err := h.s.MarkReplayed(2); err != nil {
			t.Fatalf("MarkReplayed twice: %v", err)
		}
		h.reopen()
		r2, err := h.s.Record(2)
		if err != nil || !r2.Replayed {
			t.Fatalf("Record(2) after reopen = %+v, %v; want replayed", r2, err)
		}
		// IDs go on from the highest ever given, not from what is left.
		more, err := h.s.AddRecords([]Record{record("g", 8)})
		if err != nil || more[0].ID != 4 {
			t.Fatalf("AddRecords after delete and reopen: %+v, %v; want ID 4", more, err)
		}
		if err := h.s.DeleteRecord(4); err != nil {
			t.Fatal(err)
		}
		h.reopen()
		more, err = h.s.AddRecords([]Record{record("g", 9)})
		if err != nil || more[0].ID != 5 {
			t.Fatalf("AddRecords after deleting the newest: %+v, %v; want ID 5", more, err)
		}
		all, err = h.s.Records()
		if err != nil {
			t.Fatal(err)
		}
		var ids []uint64
		for _, r := range all {
			ids = append(ids, r.ID)
		}
		if !reflect.DeepEqual(ids, []uint64{1, 2, 5}) {
			t.Fatalf("Records IDs = %v, want [1 2 5]", ids)
		}
	})
}

func TestRecordsRefused(t *testing.T) {
	withID := record("g", 1)
	withID.ID = 3
	cases := []struct {
		name string
		call func(s Storage) error
		is   error
		want string
	}{
		{"Record unknown", func(s Storage) error { _, err := s.Record(42); return err }, ErrNotFound, "record 42"},
		{"Record zero", func(s Storage) error { _, err := s.Record(0); return err }, ErrNotFound, "record 0"},
		{"MarkReplayed unknown", func(s Storage) error { return s.MarkReplayed(42) }, ErrNotFound, "record 42"},
		{"DeleteRecord unknown", func(s Storage) error { return s.DeleteRecord(42) }, ErrNotFound, "record 42"},
		{"DeleteRecord twice", func(s Storage) error { s.DeleteRecord(1); return s.DeleteRecord(1) }, ErrNotFound, "record 1"},
		{"AddRecords with an ID", func(s Storage) error {
			_, err := s.AddRecords([]Record{record("g", 1), withID})
			return err
		}, ErrInvalid, "record 2 of 2"},
		// Refused after the first record was written: the transaction
		// rolls back, in Memory as in bbolt.
		{"AddRecords too large to load back", func(s Storage) error {
			big := record("g", 2)
			big.Op = make([]byte, api.MaxMessageBytes)
			_, err := s.AddRecords([]Record{record("g", 1), big})
			return err
		}, ErrInvalid, "record 2 of 2"},
		{"AddRecords with a state size", func(s Storage) error {
			r := record("g", 3)
			r.StateBytes = 2
			_, err := s.AddRecords([]Record{r})
			return err
		}, ErrInvalid, "the store sets it"},
		{"AddRecords empty state", func(s Storage) error {
			r := record("g", 3)
			r.State, r.Op = true, nil
			_, err := s.AddRecords([]Record{r})
			return err
		}, ErrInvalid, "keeps no state"},
		{"AddRecords state over the limit", func(s Storage) error {
			r := record("g", 3)
			r.State, r.Op = true, make([]byte, MaxStateBytes+1)
			_, err := s.AddRecords([]Record{r})
			return err
		}, ErrInvalid, "limit"},
		{"RecordState of a write", func(s Storage) error { _, err := s.RecordState(1); return err }, ErrInvalid, "not a state"},
		{"RecordState unknown", func(s Storage) error { _, err := s.RecordState(42); return err }, ErrNotFound, "record 42"},
		{"AddRecords without group", func(s Storage) error { _, err := s.AddRecords([]Record{record("", 4)}); return err }, ErrInvalid, "no group"},
		{"AddRecords index 0", func(s Storage) error { _, err := s.AddRecords([]Record{record("g", 0)}); return err }, ErrInvalid, "index 0"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			eachImpl(t, func(t *testing.T, h *harness) {
				if _, err := h.s.AddRecords([]Record{record("g", 1)}); err != nil {
					t.Fatal(err)
				}
				err := tc.call(h.s)
				if !errors.Is(err, tc.is) || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("error %v, want %v naming %q", err, tc.is, tc.want)
				}
				rs, err := h.s.Records()
				if err != nil {
					t.Fatal(err)
				}
				if tc.is == ErrInvalid && (len(rs) != 1 || rs[0].ID != 1) {
					t.Fatalf("refused AddRecords changed the records: %+v", rs)
				}
				// A refused batch uses up no ID.
				more, err := h.s.AddRecords([]Record{record("g", 2)})
				if err != nil || more[0].ID != 2 {
					t.Fatalf("next ID after refusal: %+v, %v; want 2", more, err)
				}
			})
		})
	}
}

// A state record keeps its state apart, of any size up to MaxStateBytes
// (past what bounds an encoded record): the record says how long it is,
// RecordState gives it back after a reopen, and deleting the record
// deletes it.
func TestStateRecords(t *testing.T) {
	eachImpl(t, func(t *testing.T, h *harness) {
		state := make([]byte, 3*api.MaxMessageBytes)
		for i := range state {
			state[i] = byte(i * 7)
		}
		st := record("g", 6)
		st.State, st.Op, st.Uncompared = true, state, 6
		out, err := h.s.AddRecords([]Record{record("g", 5), st, record("g", 7)})
		if err != nil {
			t.Fatal(err)
		}
		if out[1].Op != nil || out[1].StateBytes != len(state) || !out[1].State {
			t.Fatalf("state record as stored: state %v, %d bytes of op, state_bytes %d", out[1].State, len(out[1].Op), out[1].StateBytes)
		}
		if &st.Op[0] != &state[0] || len(st.Op) != len(state) {
			t.Fatal("AddRecords changed its argument")
		}
		h.reopen()
		got, err := h.s.RecordState(2)
		if err != nil || !bytes.Equal(got, state) {
			t.Fatalf("RecordState(2) after reopen: %d bytes, %v; want the %d given", len(got), err, len(state))
		}
		got[0]++ // a copy: the store keeps its own
		if again, _ := h.s.RecordState(2); !bytes.Equal(again, state) {
			t.Fatal("RecordState handed out the store's own bytes")
		}
		all, err := h.s.Records()
		if err != nil || len(all) != 3 || all[1].Op != nil || all[1].StateBytes != len(state) {
			t.Fatalf("Records() after reopen: %+v, %v", all, err)
		}
		if err := h.s.DeleteRecord(2); err != nil {
			t.Fatal(err)
		}
		if _, err := h.s.RecordState(2); !errors.Is(err, ErrNotFound) {
			t.Fatalf("RecordState of a deleted record: %v, want ErrNotFound", err)
		}
		if n := h.count(bucketStates); n != 0 {
			t.Fatalf("%d states left after their record was deleted", n)
		}
	})
}

// TestReopenSameEverything fills every part of the store, restarts it and
// expects the same answers from every reader.
func TestReopenSameEverything(t *testing.T) {
	eachImpl(t, func(t *testing.T, h *harness) {
		es := chain(rlog.Pos{}, ep(1, 1), 10)
		steps := []error{
			h.s.SaveHardState(HardState{Epoch: ep(4, 2), Vote: ep(4, 2), Master: 2, MaxTerm: 5}),
			h.s.Append(es[:7]),
			h.s.TruncateAfter(5),
			h.s.Append(chain(rlog.PosOf(es[4]), ep(4, 2), 5)),
			h.s.SaveSnapshot(rlog.PosOf(es[2]), []byte("snapshot at 3")),
		}
		for i, err := range steps {
			if err != nil {
				t.Fatalf("step %d: %v", i, err)
			}
		}
		if _, err := h.s.AddRecords([]Record{record("g", 6), record("g", 7)}); err != nil {
			t.Fatal(err)
		}
		if err := h.s.MarkReplayed(1); err != nil {
			t.Fatal(err)
		}
		state := func() (loaded, []Record) {
			rs, err := h.s.Records()
			if err != nil {
				t.Fatal(err)
			}
			return h.load(), rs
		}
		l1, r1 := state()
		h.reopen()
		l2, r2 := state()
		if !reflect.DeepEqual(l1, l2) || !reflect.DeepEqual(r1, r2) {
			t.Fatalf("reopen changed the store:\n%+v\n%+v\nvs\n%+v\n%+v", l1, r1, l2, r2)
		}
		if len(l2.Entries) != 7 || l2.Base.Index != 3 || l2.HS.Master != 2 {
			t.Fatalf("unexpected state %+v", l2)
		}
	})
}

func TestMemoryCloseKeepsServing(t *testing.T) {
	m := NewMemory()
	if err := m.SaveHardState(HardState{MaxTerm: 3}); err != nil {
		t.Fatal(err)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	hs, _, _, _, err := m.Load()
	if err != nil || hs.MaxTerm != 3 {
		t.Fatalf("Load after Close: %+v, %v", hs, err)
	}
}

func TestBoltClosed(t *testing.T) {
	b := mustOpen(t, t.TempDir())
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, _, _, _, err := b.Load(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Load after Close: %v, want ErrClosed", err)
	}
	if err := b.Append(chain(rlog.Pos{}, ep(1, 1), 1)); !errors.Is(err, ErrClosed) {
		t.Fatalf("Append after Close: %v, want ErrClosed", err)
	}
}

// TestBoltLocked checks that a second handle on a held directory is refused
// quickly with ErrLocked, and that the directory is usable once released.
func TestBoltLocked(t *testing.T) {
	dir := t.TempDir()
	b := mustOpen(t, dir)
	start := time.Now()
	b2, err := Open(dir)
	if err == nil {
		b2.Close()
		t.Fatal("second Open of a held directory succeeded")
	}
	if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), dir) {
		t.Fatalf("second Open: %v, want ErrLocked naming %s", err, dir)
	}
	if d := time.Since(start); d > 1500*time.Millisecond {
		t.Fatalf("second Open took %v to fail", d)
	}
	b.Close()
	b3, err := Open(dir)
	if err != nil {
		t.Fatalf("Open after release: %v", err)
	}
	b3.Close()
}

func TestOpenRefused(t *testing.T) {
	notDir := filepath.Join(t.TempDir(), "file")
	notDB := t.TempDir()
	for _, f := range []struct{ path, data string }{{notDir, "x"}, {filepath.Join(notDB, FileName), strings.Repeat("not a bbolt file ", 1000)}} {
		if err := os.WriteFile(f.path, []byte(f.data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, dir := range []string{"", notDir, notDB} {
		if b, err := Open(dir); err == nil {
			b.Close()
			t.Errorf("Open(%q) succeeded", dir)
		} else {
			t.Logf("Open(%q): %v", dir, err)
		}
	}
}

func TestOpenModes(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	mustOpen(t, dir).Close()
	for path, want := range map[string]os.FileMode{dir: 0o700 | os.ModeDir, filepath.Join(dir, FileName): 0o600} {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != want {
			t.Errorf("%s has mode %v, want %v", path, fi.Mode(), want)
		}
	}
}

// Persist saves the hard state, a truncation and the entries after it in
// one commit, as a replica's step asks; a part refused stores nothing.
func TestPersist(t *testing.T) {
	e1, e2 := ep(1, 1), ep(2, 2)
	eachImpl(t, func(t *testing.T, h *harness) {
		es := chain(rlog.Pos{}, e1, 5)
		hs := HardState{Epoch: e1, Vote: e1, Master: 1, MaxTerm: 1}
		if err := h.s.Persist(Update{HardState: &hs, Entries: es}); err != nil {
			t.Fatal(err)
		}
		// A new master's step: the vote, a cut after 2, its entries.
		two := uint64(2)
		hs2 := HardState{Epoch: e2, Vote: e2, Master: 2, MaxTerm: 2}
		fresh := chain(rlog.PosOf(es[1]), e2, 3)
		if err := h.s.Persist(Update{HardState: &hs2, TruncateAfter: &two, Entries: fresh}); err != nil {
			t.Fatal(err)
		}
		h.reopen()
		got := h.load()
		if got.HS != hs2 || !reflect.DeepEqual(indices(got.Entries), []uint64{1, 2, 3, 4, 5}) || got.Entries[2].Epoch != e2 {
			t.Fatalf("after persist: %+v, entries %v", got.HS, got.Entries)
		}
		// Refused: entries that do not extend the log after the cut. The
		// hard state and the cut of the same update are not stored.
		before := h.load()
		hs3 := HardState{Epoch: ep(3, 3), Vote: ep(3, 3), Master: 3, MaxTerm: 3}
		one := uint64(1)
		gap := chain(rlog.PosOf(got.Entries[3]), ep(3, 3), 1)
		if err := h.s.Persist(Update{HardState: &hs3, TruncateAfter: &one, Entries: gap}); !errors.Is(err, ErrInvalid) {
			t.Fatalf("a gap after the cut: %v, want ErrInvalid", err)
		}
		if after := h.load(); !reflect.DeepEqual(after, before) {
			t.Fatalf("a refused update changed the store:\n got  %+v\n want %+v", after, before)
		}
		if err := h.s.Persist(Update{}); err != nil {
			t.Fatalf("an empty update: %v", err)
		}
		// Divergence records in the commit of the cut that removed them;
		// a bad record refuses the whole update.
		three := uint64(3)
		before = h.load()
		if err := h.s.Persist(Update{TruncateAfter: &three, Records: []Record{record("g", 4), {Group: "g"}}}); !errors.Is(err, ErrInvalid) {
			t.Fatalf("a record with index 0: %v, want ErrInvalid", err)
		}
		if after := h.load(); !reflect.DeepEqual(after, before) {
			t.Fatal("a refused update with records changed the log")
		}
		if err := h.s.Persist(Update{TruncateAfter: &three, Records: []Record{record("g", 4), record("g", 5)}}); err != nil {
			t.Fatal(err)
		}
		h.reopen()
		recs, err := h.s.Records()
		if got := h.load(); err != nil || len(recs) != 2 || recs[0].Index != 4 || len(got.Entries) != 3 {
			t.Fatalf("after a cut with records: %d entries, records %+v %v", len(got.Entries), recs, err)
		}
	})
}

// count returns how many keys bucket b holds.
func (h *harness) count(b bucket) int {
	h.t.Helper()
	var c *core
	switch s := h.s.(type) {
	case *Memory:
		c = &s.core
	case *Bolt:
		c = &s.core
	default:
		h.t.Fatalf("count: store %T", h.s)
	}
	n := 0
	if err := c.view(func(t txn) error {
		return t.scan(b, nil, func(k, v []byte) error { n++; return nil })
	}); err != nil {
		h.t.Fatal(err)
	}
	return n
}
