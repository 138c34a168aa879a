package rlog

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"testing"

	"github.com/mastership/mastership/naming/api"
)

var (
	e1 = api.Epoch{Term: 1, ID: 1}
	e2 = api.Epoch{Term: 2, ID: 1}
)

// build returns a log with n entries at epoch ep.
func build(t *testing.T, n int, ep api.Epoch) *Log {
	t.Helper()
	l := New()
	for i := range n {
		if _, err := l.AppendNew(ep, 1, uint64(i+1), []byte(fmt.Sprint("op", i))); err != nil {
			t.Fatal(err)
		}
	}
	return l
}

// next returns a correctly chained entry after l's last.
func next(l *Log, ep api.Epoch, op string) Entry {
	p := l.Last()
	e := Entry{Epoch: ep, Index: p.Index + 1, Op: []byte(op)}
	e.Hash = ChainHash(p.Hash, e)
	return e
}

func TestChainHashCoversEveryField(t *testing.T) {
	base := Entry{Epoch: e1, Index: 3, Client: 4, Seq: 5, Op: []byte("op")}
	h := ChainHash([32]byte{}, base)
	variants := map[string]Entry{}
	for name, f := range map[string]func(*Entry){
		"term":   func(e *Entry) { e.Epoch.Term++ },
		"id":     func(e *Entry) { e.Epoch.ID++ },
		"index":  func(e *Entry) { e.Index++ },
		"client": func(e *Entry) { e.Client++ },
		"seq":    func(e *Entry) { e.Seq++ },
		"op":     func(e *Entry) { e.Op = []byte("oq") },
		"no op":  func(e *Entry) { e.Op = nil },
	} {
		v := base
		f(&v)
		variants[name] = v
	}
	for name, v := range variants {
		if ChainHash([32]byte{}, v) == h {
			t.Errorf("changing %s keeps the hash", name)
		}
	}
	if ChainHash([32]byte{1}, base) == h {
		t.Error("changing the previous hash keeps the hash")
	}
	base.Hash = [32]byte{9}
	if ChainHash([32]byte{}, base) != h {
		t.Error("the entry's own Hash field changes the hash")
	}
}

func TestAppendChecks(t *testing.T) {
	cases := []struct {
		name string
		mod  func(l *Log) []Entry
		want error
	}{
		{"next", func(l *Log) []Entry { return []Entry{next(l, e1, "x")} }, nil},
		{"newer epoch", func(l *Log) []Entry { return []Entry{next(l, e2, "x")} }, nil},
		{"gap", func(l *Log) []Entry {
			e := next(l, e1, "x")
			e.Index++
			e.Hash = ChainHash(l.Last().Hash, e)
			return []Entry{e}
		}, ErrGap},
		{"repeat index", func(l *Log) []Entry {
			e := next(l, e1, "x")
			e.Index--
			return []Entry{e}
		}, ErrGap},
		{"older epoch", func(l *Log) []Entry {
			l.AppendNew(e2, 0, 0, nil)
			return []Entry{next(l, e1, "x")}
		}, ErrEpoch},
		{"same term lower id", func(l *Log) []Entry {
			l.AppendNew(api.Epoch{Term: 1, ID: 5}, 0, 0, nil)
			return []Entry{next(l, api.Epoch{Term: 1, ID: 4}, "x")}
		}, ErrEpoch},
		{"zero epoch", func(l *Log) []Entry { return []Entry{next(l, api.Epoch{}, "x")} }, ErrEpoch},
		{"bad hash", func(l *Log) []Entry {
			e := next(l, e1, "x")
			e.Op = []byte("y")
			return []Entry{e}
		}, ErrChain},
		{"second of batch bad", func(l *Log) []Entry {
			a := next(l, e1, "x")
			b := Entry{Epoch: e1, Index: a.Index + 1, Op: []byte("y")} // no hash
			return []Entry{a, b}
		}, ErrChain},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			l := build(t, 3, e1)
			es := c.mod(l)
			before := l.Last()
			err := l.Append(es...)
			if !errors.Is(err, c.want) || (c.want == nil) != (err == nil) {
				t.Fatalf("Append = %v, want %v", err, c.want)
			}
			if err != nil && l.Last() != before {
				t.Fatalf("failed Append changed the log: last %s, was %s", l.Last(), before)
			}
		})
	}
}

func TestAccessors(t *testing.T) {
	l := build(t, 5, e1)
	if got := l.Last(); got.Index != 5 || got.Epoch != e1 {
		t.Fatalf("Last = %s", got)
	}
	for i := uint64(1); i <= 5; i++ {
		e, err := l.Entry(i)
		if err != nil || e.Index != i {
			t.Fatalf("Entry(%d) = %v, %v", i, e, err)
		}
	}
	if _, err := l.Entry(0); !errors.Is(err, ErrCompacted) {
		t.Fatalf("Entry(0): %v", err)
	}
	if _, err := l.Entry(6); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Entry(6): %v", err)
	}
	if h, ok, _ := l.HashAt(0); !ok || h != ([32]byte{}) {
		t.Fatal("HashAt(0) is not the zero hash")
	}
	if _, ok, _ := l.HashAt(6); ok {
		t.Fatal("HashAt(6) held")
	}
	if ep, err := l.EpochAt(0); err != nil || !ep.IsZero() {
		t.Fatalf("EpochAt(0) = %v, %v", ep, err)
	}

	s, err := l.Slice(2, 4)
	if err != nil || len(s) != 2 || s[0].Index != 2 || s[1].Index != 3 {
		t.Fatalf("Slice(2, 4) = %v, %v", s, err)
	}
	if s, err := l.Slice(3, 3); err != nil || len(s) != 0 {
		t.Fatalf("empty Slice = %v, %v", s, err)
	}
	for _, r := range [][2]uint64{{0, 2}, {4, 7}, {4, 2}} {
		if _, err := l.Slice(r[0], r[1]); err == nil {
			t.Fatalf("Slice%v: no error", r)
		}
	}
}

func TestTruncateAfter(t *testing.T) {
	l := build(t, 5, e1)
	want, _ := l.Slice(3, 6)
	div, err := Divergent(l, 2)
	if err != nil || fmt.Sprint(div) != fmt.Sprint(want) {
		t.Fatalf("Divergent = %v, %v; want %v", div, err, want)
	}
	removed, err := l.TruncateAfter(2)
	if err != nil || fmt.Sprint(removed) != fmt.Sprint(want) {
		t.Fatalf("TruncateAfter(2) = %v, %v; want %v", removed, err, want)
	}
	if l.LastIndex() != 2 {
		t.Fatalf("last %d after truncate", l.LastIndex())
	}
	// The removed entries still chain, so they can be appended back.
	if err := l.Append(removed...); err != nil {
		t.Fatalf("re-append removed: %v", err)
	}
	if r, err := l.TruncateAfter(5); err != nil || r != nil {
		t.Fatalf("TruncateAfter(last) = %v, %v", r, err)
	}
	if r, err := l.TruncateAfter(9); err != nil || r != nil {
		t.Fatalf("TruncateAfter(past last) = %v, %v", r, err)
	}
	if d, err := Divergent(l, 5); err != nil || d != nil {
		t.Fatalf("Divergent(last) = %v, %v", d, err)
	}
	// A new epoch may overwrite the tail.
	l.TruncateAfter(3)
	if _, err := l.AppendNew(e2, 0, 0, []byte("new")); err != nil {
		t.Fatal(err)
	}
}

func TestCompact(t *testing.T) {
	l := build(t, 6, e1)
	p3, _ := l.PosAt(3)
	p4, _ := l.PosAt(4)
	if err := l.Compact(3); err != nil {
		t.Fatal(err)
	}
	if l.Base() != p3 || l.Len() != 3 || l.LastIndex() != 6 {
		t.Fatalf("base %s len %d last %d", l.Base(), l.Len(), l.LastIndex())
	}
	if _, err := l.Entry(3); !errors.Is(err, ErrCompacted) {
		t.Fatalf("Entry(3) after compact: %v", err)
	}
	if p, err := l.PosAt(3); err != nil || p != p3 {
		t.Fatalf("PosAt(base) = %v, %v", p, err)
	}
	if h, ok, _ := l.HashAt(3); !ok || h != p3.Hash {
		t.Fatal("HashAt(base) lost the base hash")
	}
	if h, ok, _ := l.HashAt(0); !ok || h != ([32]byte{}) {
		t.Fatal("compacted log lost the empty prefix at 0")
	}
	if _, ok, _ := l.HashAt(2); ok {
		t.Fatal("HashAt below base held")
	}
	if p, _ := l.PosAt(4); p != p4 {
		t.Fatal("entries above the base changed")
	}
	if f, last, _ := l.Span(); f != 3 || last != 6 {
		t.Fatalf("Span = %d, %d", f, last)
	}
	if err := l.Compact(2); err != nil {
		t.Fatalf("Compact below base: %v", err)
	}
	if err := l.Compact(7); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Compact past last: %v", err)
	}
	if _, err := l.TruncateAfter(2); !errors.Is(err, ErrCompacted) {
		t.Fatalf("TruncateAfter below base: %v", err)
	}
	if _, err := Divergent(l, 2); !errors.Is(err, ErrCompacted) {
		t.Fatalf("Divergent below base: %v", err)
	}
	// Compact everything, then the chain continues from the base.
	if err := l.Compact(6); err != nil || l.Len() != 0 || l.Last() != l.Base() {
		t.Fatalf("Compact(last): %v, len %d", err, l.Len())
	}
	if _, err := l.TruncateAfter(6); err != nil {
		t.Fatalf("TruncateAfter(base): %v", err)
	}
	full := build(t, 7, e1)
	e7, _ := full.Entry(7)
	if err := l.Append(e7); err != nil {
		t.Fatalf("append after full compaction: %v", err)
	}
	// And a log started from a snapshot base accepts the same entry.
	p6, _ := full.PosAt(6)
	if err := NewAt(p6).Append(e7); err != nil {
		t.Fatalf("NewAt: %v", err)
	}
}

// ChainHash is SHA-256 of the documented layout, for ops hashed from the
// stack and from the heap alike: stored logs and peers depend on it.
func TestChainHashLayout(t *testing.T) {
	prev := sha256.Sum256([]byte("prev"))
	for _, n := range []int{0, 1, smallOp, smallOp + 1, 10000} {
		e := Entry{Epoch: api.Epoch{Term: 7, ID: 3}, Index: 42, Client: 1<<64 - 1, Seq: 9, Op: bytes.Repeat([]byte{0xab}, n)}
		var want bytes.Buffer
		want.Write(prev[:])
		for _, v := range []uint64{e.Epoch.Term, e.Epoch.ID, e.Index, e.Client, e.Seq} {
			binary.Write(&want, binary.BigEndian, v)
		}
		want.Write(e.Op)
		if got := ChainHash(prev, e); got != sha256.Sum256(want.Bytes()) {
			t.Fatalf("op of %d bytes: ChainHash differs from the layout's SHA-256", n)
		}
	}
}

// OpBytes counts the operations of the entries the log holds in [lo, hi),
// whatever the bounds asked, and stops past its limit.
func TestOpBytes(t *testing.T) {
	l := build(t, 6, e1) // ops "op0".."op5", 3 bytes each
	if err := l.Compact(2); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		lo, hi uint64
		limit  int
		want   int
	}{
		{3, 7, 100, 12},   // entries 3..6
		{0, 100, 100, 12}, // below the base and past the end: what is held
		{4, 4, 100, 0},
		{5, 3, 100, 0},
		{3, 7, 4, 6}, // past the limit after two entries
		{7, 9, 100, 0},
	} {
		if got := l.OpBytes(tc.lo, tc.hi, tc.limit); got != tc.want {
			t.Errorf("OpBytes(%d, %d, %d) = %d, want %d", tc.lo, tc.hi, tc.limit, got, tc.want)
		}
	}
}

// A slice the log gave out keeps its entries whatever the log does next:
// appends, a truncation followed by appends of other entries at the same
// indexes, a compaction. Read from another goroutine meanwhile, it gives
// the race detector a say.
func TestSliceStaysValid(t *testing.T) {
	l := build(t, 6, e1)
	got, err := l.Slice(2, 7)
	if err != nil {
		t.Fatal(err)
	}
	want := append([]Entry(nil), got...)
	done := make(chan []Entry)
	go func() {
		var seen []Entry
		for range 100 {
			seen = append(seen[:0], got...)
		}
		done <- seen
	}()
	for range 3 {
		l.Append(next(l, e1, "more"))
	}
	removed, err := l.TruncateAfter(3)
	if err != nil || len(removed) != 6 {
		t.Fatalf("TruncateAfter(3) = %d entries, %v", len(removed), err)
	}
	for range 5 {
		if err := l.Append(next(l, e2, "other")); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Compact(5); err != nil {
		t.Fatal(err)
	}
	seen := <-done
	for i := range want {
		if got[i].Hash != want[i].Hash || string(got[i].Op) != string(want[i].Op) || seen[i].Hash != want[i].Hash {
			t.Fatalf("entry %d of the slice changed: %s, want %s", i, got[i], want[i])
		}
	}
	if e, err := l.Entry(6); err != nil || e.Epoch != e2 {
		t.Fatalf("the log's entry 6 is %s (%v), want the one appended after the truncation", e, err)
	}
}

// AppendNew stamps without Append's check: what it makes must pass that
// check, after a base as well as from empty, and an epoch that may not
// follow is refused with the log unchanged.
func TestAppendNewChainsAndRefuses(t *testing.T) {
	for _, l := range []*Log{New(), NewAt(Pos{Index: 7, Epoch: e1, Hash: sha256.Sum256([]byte("base"))})} {
		base := l.Last()
		var made []Entry
		for i := range 5 {
			e, err := l.AppendNew(e1, 3, uint64(i+1), []byte(fmt.Sprint("op", i)))
			if err != nil {
				t.Fatal(err)
			}
			made = append(made, e)
		}
		if err := Extends(base, made); err != nil {
			t.Fatalf("entries made by AppendNew do not chain: %v", err)
		}
		if got, _ := l.Slice(base.Index+1, l.LastIndex()+1); len(got) != 5 || PosOf(got[4]) != PosOf(made[4]) {
			t.Fatalf("log holds %v, want what AppendNew returned", got)
		}
		l.AppendNew(e2, 0, 0, nil)
		before := l.Last()
		for _, ep := range []api.Epoch{{}, e1} {
			if _, err := l.AppendNew(ep, 0, 0, []byte("x")); !errors.Is(err, ErrEpoch) {
				t.Fatalf("AppendNew at epoch %v after %v: %v, want ErrEpoch", ep, e2, err)
			}
			if l.Last() != before {
				t.Fatalf("a refused AppendNew changed the log: last %v, was %v", l.Last(), before)
			}
		}
	}
}
