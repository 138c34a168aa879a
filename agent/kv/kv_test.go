package kv

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/mastership/mastership/agent/rlog"
	"github.com/mastership/mastership/naming/api"
)

// feeder applies ops to a store at consecutive indices.
type feeder struct {
	t testing.TB
	s *Store
}

func newFeeder(t testing.TB) *feeder { return &feeder{t: t, s: NewStore()} }

// apply encodes op without validation (so tests can smuggle bad ops past
// ValidateOp) and applies it as the next entry.
func (f *feeder) apply(client, seq uint64, op Op) Result {
	f.t.Helper()
	b, err := api.Encode(op)
	if err != nil {
		f.t.Fatalf("encode %+v: %v", op, err)
	}
	return f.raw(client, seq, b)
}

func (f *feeder) raw(client, seq uint64, b []byte) Result {
	return f.s.Apply(rlog.Entry{Index: f.s.Index() + 1, Client: client, Seq: seq, Op: b})
}

func put(k, v string) Op { return Op{Kind: KindPut, Key: k, Value: []byte(v)} }
func get(k string) Op    { return Op{Kind: KindGet, Key: k} }
func del(k string) Op    { return Op{Kind: KindDel, Key: k} }
func cas(k, expect, v string) Op {
	return Op{Kind: KindCAS, Key: k, Expect: []byte(expect), Value: []byte(v)}
}
func casAbsent(k, v string) Op {
	return Op{Kind: KindCAS, Key: k, ExpectAbsent: true, Value: []byte(v)}
}

func TestValidateOp(t *testing.T) {
	long := func(n int) string { return strings.Repeat("k", n) }
	big := func(n int) []byte { return bytes.Repeat([]byte("v"), n) }
	cases := []struct {
		name string
		op   Op
		want error
	}{
		{"put", put("a", "1"), nil},
		{"put empty value", put("a", ""), nil},
		{"get", get("a"), nil},
		{"del", del("a"), nil},
		{"cas value", cas("a", "1", "2"), nil},
		{"cas absent", casAbsent("a", "1"), nil},
		{"cas expect empty value", cas("a", "", "1"), nil},
		{"key at limit", put(long(MaxKeyBytes), "1"), nil},
		{"key over limit", put(long(MaxKeyBytes+1), "1"), ErrKeyTooLong},
		{"get key over limit", get(long(MaxKeyBytes + 1)), ErrKeyTooLong},
		{"value at limit", Op{Kind: KindPut, Key: "a", Value: big(MaxValueBytes)}, nil},
		{"value over limit", Op{Kind: KindPut, Key: "a", Value: big(MaxValueBytes + 1)}, ErrValueTooLong},
		{"expect over limit", Op{Kind: KindCAS, Key: "a", Expect: big(MaxValueBytes + 1)}, ErrValueTooLong},
		{"empty key put", put("", "1"), ErrEmptyKey},
		{"empty key get", get(""), ErrEmptyKey},
		{"unknown kind", Op{Kind: "incr", Key: "a"}, ErrKind},
		{"empty kind", Op{Key: "a"}, ErrKind},
		{"put with expect", Op{Kind: KindPut, Key: "a", Expect: []byte("x")}, ErrMalformed},
		{"put with absent", Op{Kind: KindPut, Key: "a", ExpectAbsent: true}, ErrMalformed},
		{"get with value", Op{Kind: KindGet, Key: "a", Value: []byte("x")}, ErrMalformed},
		{"del with expect", Op{Kind: KindDel, Key: "a", Expect: []byte("x")}, ErrMalformed},
		{"cas absent and value", Op{Kind: KindCAS, Key: "a", Expect: []byte("x"), ExpectAbsent: true}, ErrMalformed},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := ValidateOp(c.op)
			if !errors.Is(err, c.want) || (c.want == nil) != (err == nil) {
				t.Fatalf("ValidateOp = %v, want %v", err, c.want)
			}
			b, err := EncodeOp(c.op)
			if (c.want == nil) != (err == nil) {
				t.Fatalf("EncodeOp error %v, want %v", err, c.want)
			}
			if err != nil {
				return
			}
			got, err := DecodeOp(b)
			if err != nil {
				t.Fatalf("DecodeOp(EncodeOp(op)): %v", err)
			}
			if got.Kind != c.op.Kind || got.Key != c.op.Key || !bytes.Equal(got.Value, c.op.Value) ||
				!bytes.Equal(got.Expect, c.op.Expect) || got.ExpectAbsent != c.op.ExpectAbsent {
				t.Fatalf("round trip: got %+v, want %+v", got, c.op)
			}
		})
	}
}

func TestApplyOps(t *testing.T) {
	type step struct {
		op   Op
		want Result
		// after is the value of op.Key after the step; "-" for absent.
		after string
	}
	res := func(v string, found, ok bool) Result {
		r := Result{Found: found, OK: ok}
		if v != "-" {
			r.Value = []byte(v)
		}
		return r
	}
	cases := []struct {
		name  string
		steps []step
	}{
		{"get absent", []step{{get("a"), res("-", false, false), "-"}}},
		{"put then get", []step{
			{put("a", "1"), res("-", false, true), "1"},
			{get("a"), res("1", true, false), "1"},
		}},
		{"put overwrites", []step{
			{put("a", "1"), res("-", false, true), "1"},
			{put("a", "2"), res("-", true, true), "2"},
		}},
		{"put empty value is present", []step{
			{put("a", ""), res("-", false, true), ""},
			{get("a"), res("", true, false), ""},
		}},
		{"del missing", []step{{del("a"), res("-", false, false), "-"}}},
		{"del present", []step{
			{put("a", "1"), res("-", false, true), "1"},
			{del("a"), res("-", true, true), "-"},
			{get("a"), res("-", false, false), "-"},
		}},
		{"cas absent on absent key", []step{{casAbsent("a", "1"), res("-", false, true), "1"}}},
		{"cas absent on present key", []step{
			{put("a", "1"), res("-", false, true), "1"},
			{casAbsent("a", "2"), res("1", true, false), "1"},
		}},
		{"cas value on absent key", []step{{cas("a", "1", "2"), res("-", false, false), "-"}}},
		{"cas empty expect on absent key", []step{{cas("a", "", "2"), res("-", false, false), "-"}}},
		{"cas match", []step{
			{put("a", "1"), res("-", false, true), "1"},
			{cas("a", "1", "2"), res("-", true, true), "2"},
		}},
		{"cas mismatch returns current", []step{
			{put("a", "1"), res("-", false, true), "1"},
			{cas("a", "x", "2"), res("1", true, false), "1"},
		}},
		{"cas empty expect matches empty value", []step{
			{put("a", ""), res("-", false, true), ""},
			{cas("a", "", "2"), res("-", true, true), "2"},
		}},
		{"cas after del", []step{
			{put("a", "1"), res("-", false, true), "1"},
			{del("a"), res("-", true, true), "-"},
			{casAbsent("a", "3"), res("-", false, true), "3"},
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := newFeeder(t)
			for i, st := range c.steps {
				got := f.apply(0, 0, st.op)
				if !resultEqual(got, st.want) {
					t.Fatalf("step %d %+v: got %+v, want %+v", i, st.op, got, st.want)
				}
				v, ok := f.s.Get(st.op.Key)
				if (st.after == "-") == ok || (ok && string(v) != st.after) {
					t.Fatalf("step %d: %q holds %q (present %t), want %q", i, st.op.Key, v, ok, st.after)
				}
				checkDigest(t, f.s)
			}
			if f.s.Index() != uint64(len(c.steps)) {
				t.Fatalf("index %d after %d steps", f.s.Index(), len(c.steps))
			}
		})
	}
}

// resultEqual compares results treating nil and empty values alike only
// when Found says there is a value.
func resultEqual(a, b Result) bool {
	return a.Found == b.Found && a.OK == b.OK && a.Err == b.Err &&
		bytes.Equal(a.Value, b.Value) && (a.Value == nil) == (b.Value == nil)
}

func checkDigest(t testing.TB, s *Store) {
	t.Helper()
	if got, want := s.Digest(), s.RecomputeDigest(); got != want {
		t.Fatalf("incremental digest %s (index %d), full recompute %s (index %d)", got, got.Index, want, want.Index)
	}
}

func TestDedup(t *testing.T) {
	f := newFeeder(t)
	first := f.apply(7, 1, casAbsent("a", "1"))
	if !first.OK {
		t.Fatalf("first cas: %+v", first)
	}
	// Another client changes the key; a retry of client 7's request must
	// neither apply again nor see the change.
	f.apply(8, 1, put("a", "2"))
	before := f.s.RecomputeDigest()
	retry := f.apply(7, 1, casAbsent("a", "1"))
	if !resultEqual(retry, first) {
		t.Fatalf("retry: got %+v, want the first result %+v", retry, first)
	}
	if v, _ := f.s.Get("a"); string(v) != "2" {
		t.Fatalf("retry applied again: a = %q", v)
	}
	// Only the index moved.
	if after := f.s.Digest(); after == before || after.Index != before.Index+1 {
		t.Fatalf("digest after retry %v, before %v", after, before)
	}
	checkDigest(t, f.s)

	// A retried get returns the value first read, not the current one.
	got := f.apply(9, 5, get("a"))
	f.apply(8, 2, put("a", "3"))
	if r := f.apply(9, 5, get("a")); string(r.Value) != string(got.Value) || string(r.Value) != "2" {
		t.Fatalf("retried get: %q, first %q", r.Value, got.Value)
	}

	// Newer sequence applies; an older one is refused and changes nothing.
	if r := f.apply(7, 3, put("a", "4")); r.Err != "" || !r.OK {
		t.Fatalf("seq 3: %+v", r)
	}
	snap, _ := f.s.Snapshot()
	r := f.apply(7, 2, put("a", "stale"))
	if !strings.Contains(r.Err, "stale sequence") || !strings.HasPrefix(r.Err, ErrStaleSeq.Error()) {
		t.Fatalf("seq 2 after 3: %+v", r)
	}
	if v, _ := f.s.Get("a"); string(v) != "4" {
		t.Fatalf("stale request applied: a = %q", v)
	}
	assertOnlyIndexMoved(t, f.s, snap)

	// A sequence far past the client's last (2^64-1 locked the client
	// out before) is refused and not stored; the client goes on.
	for _, seq := range []uint64{^uint64(0), 3 + MaxSeqLead + 1} {
		snap, _ = f.s.Snapshot()
		r = f.apply(7, seq, put("a", "far"))
		if !strings.HasPrefix(r.Err, ErrSeqRange.Error()) {
			t.Fatalf("seq %d after 3: %+v", seq, r)
		}
		assertOnlyIndexMoved(t, f.s, snap)
	}
	if r := f.apply(7, 3+MaxSeqLead, put("a", "5")); r.Err != "" || !r.OK {
		t.Fatalf("seq within the bound after refusals: %+v", r)
	}
	// A new client starting far out is refused too.
	if r := f.apply(8, ^uint64(0), put("b", "x")); !strings.HasPrefix(r.Err, ErrSeqRange.Error()) {
		t.Fatalf("new client at 2^64-1: %+v", r)
	}

	// Client 0 has no session: every request applies.
	f.apply(0, 0, put("z", "1"))
	if r := f.apply(0, 0, put("z", "2")); !r.Found {
		t.Fatalf("client 0 request deduplicated: %+v", r)
	}
	checkDigest(t, f.s)
}

// assertOnlyIndexMoved checks that s equals the state in snap except for an
// applied index one higher.
func assertOnlyIndexMoved(t *testing.T, s *Store, snap []byte) {
	t.Helper()
	ref := NewStore()
	if err := ref.Restore(snap); err != nil {
		t.Fatal(err)
	}
	ref.Apply(rlog.Entry{Index: ref.Index() + 1}) // no-op
	if ref.Digest() != s.Digest() {
		t.Fatalf("state changed beyond the index: %s, want %s", s.Digest(), ref.Digest())
	}
}

func TestApplyRefusesBadOp(t *testing.T) {
	cases := []struct {
		name string
		b    func() []byte
		want error
	}{
		{"garbage", func() []byte { return []byte{0xc1, 0x00} }, ErrMalformed},
		{"not a map", func() []byte { b, _ := api.Encode("put"); return b }, ErrMalformed},
		{"trailing bytes", func() []byte { b, _ := api.Encode(put("a", "1")); return append(b, 0) }, ErrMalformed},
		{"empty key", func() []byte { b, _ := api.Encode(put("", "1")); return b }, ErrEmptyKey},
		{"key over cap", func() []byte { b, _ := api.Encode(put(strings.Repeat("k", MaxKeyBytes+1), "1")); return b }, ErrKeyTooLong},
		{"value over cap", func() []byte { b, _ := api.Encode(put("a", strings.Repeat("v", MaxValueBytes+1))); return b }, ErrValueTooLong},
		{"unknown kind", func() []byte { b, _ := api.Encode(Op{Kind: "incr", Key: "a"}); return b }, ErrKind},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := newFeeder(t)
			f.apply(3, 1, put("a", "0"))
			snap, _ := f.s.Snapshot()
			r := f.raw(3, 2, c.b())
			if !strings.HasPrefix(r.Err, c.want.Error()) || r.OK || r.Found || r.Value != nil {
				t.Fatalf("got %+v, want Err starting %q", r, c.want)
			}
			assertOnlyIndexMoved(t, f.s, snap)
			checkDigest(t, f.s)
			// The refused request left no client record: seq 2 can still be
			// sent, with a good op.
			if r := f.apply(3, 2, put("a", "1")); r.Err != "" {
				t.Fatalf("seq 2 after refusal: %+v", r)
			}
		})
	}
}

func TestApplyPanicsOutOfOrder(t *testing.T) {
	s := NewStore()
	defer func() {
		if recover() == nil {
			t.Fatal("no panic applying index 2 first")
		}
	}()
	s.Apply(rlog.Entry{Index: 2})
}

func TestResultsDoNotAliasState(t *testing.T) {
	f := newFeeder(t)
	f.apply(1, 1, put("a", "abc"))
	r := f.apply(1, 2, get("a"))
	r.Value[0] = 'X'
	r2 := f.apply(1, 2, get("a")) // retry: cached result
	r2.Value[1] = 'Y'
	if v, _ := f.s.Get("a"); string(v) != "abc" {
		t.Fatalf("state modified through a result: %q", v)
	}
	if r3 := f.apply(1, 2, get("a")); string(r3.Value) != "abc" {
		t.Fatalf("cached result modified through a result: %q", r3.Value)
	}
	checkDigest(t, f.s)
}

// randomOps returns n random valid ops from a small key and client space,
// so that overwrites, cas hits and retries all happen.
type randomReq struct {
	client, seq uint64
	op          Op
}

func randomReqs(rng *rand.Rand, n int) []randomReq {
	keys := []string{"a", "b", "c", "d", "e"}
	vals := []string{"", "1", "2", "3"}
	seqs := map[uint64]uint64{}
	var out []randomReq
	for range n {
		k := keys[rng.IntN(len(keys))]
		v := vals[rng.IntN(len(vals))]
		var op Op
		switch rng.IntN(5) {
		case 0:
			op = get(k)
		case 1:
			op = del(k)
		case 2:
			op = cas(k, vals[rng.IntN(len(vals))], v)
		case 3:
			op = casAbsent(k, v)
		default:
			op = put(k, v)
		}
		c := uint64(rng.IntN(4)) // 0: no session
		if c != 0 {
			switch rng.IntN(4) {
			case 0: // retry or stale
				if s := seqs[c]; s > 0 {
					out = append(out, randomReq{c, s - uint64(rng.IntN(2)), op})
					continue
				}
			}
			seqs[c]++
		}
		out = append(out, randomReq{c, seqs[c], op})
	}
	return out
}

func TestDigestDeterminism(t *testing.T) {
	for seed := range uint64(50) {
		rng := rand.New(rand.NewPCG(seed, 1))
		reqs := randomReqs(rng, 200)
		a, b := newFeeder(t), newFeeder(t)
		for i, r := range reqs {
			ra := a.apply(r.client, r.seq, r.op)
			rb := b.apply(r.client, r.seq, r.op)
			if !resultEqual(ra, rb) {
				t.Fatalf("seed %d step %d: results differ %+v %+v", seed, i, ra, rb)
			}
			if a.s.Digest() != b.s.Digest() {
				t.Fatalf("seed %d step %d: digests differ", seed, i)
			}
			checkDigest(t, a.s)
		}
		sa, _ := a.s.Snapshot()
		sb, _ := b.s.Snapshot()
		if !bytes.Equal(sa, sb) {
			t.Fatalf("seed %d: equal states gave different snapshots", seed)
		}
	}
}

func TestDigestDiffers(t *testing.T) {
	base := []Op{put("a", "1"), put("b", "2"), casAbsent("c", "3")}
	cases := []struct {
		name string
		last Op
		// client of the last request
		client uint64
	}{
		{"other value", put("a", "9"), 0},
		{"other key", put("z", "1"), 0},
		{"del instead of put", del("a"), 0},
		{"read by another client", get("a"), 2},
	}
	ref := newFeeder(t)
	for _, op := range base {
		ref.apply(1, ref.s.Index()+1, op)
	}
	ref.apply(1, ref.s.Index()+1, get("a"))
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := newFeeder(t)
			for _, op := range base {
				f.apply(1, f.s.Index()+1, op)
			}
			if c.client == 0 {
				c.client = 1
			}
			f.apply(c.client, f.s.Index()+1, c.last)
			if f.s.Digest() == ref.s.Digest() {
				t.Fatalf("same digest after a different last op")
			}
			checkDigest(t, f.s)
		})
	}
	// Equal maps at different indices also differ.
	a, b := newFeeder(t), newFeeder(t)
	a.apply(0, 0, put("a", "1"))
	b.apply(0, 0, put("a", "1"))
	b.raw(0, 0, nil)
	if a.s.Digest() == b.s.Digest() {
		t.Fatal("same digest at different indices")
	}
}

func TestSnapshotRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	f := newFeeder(t)
	f.apply(5, 1, Op{Kind: KindPut, Key: strings.Repeat("k", MaxKeyBytes), Value: bytes.Repeat([]byte{0xff}, MaxValueBytes)})
	for _, r := range randomReqs(rng, 300) {
		f.apply(r.client, r.seq, r.op)
	}
	snap, err := f.s.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	g := NewStore()
	g.apply(put("junk", "x")) // replaced by Restore
	if err := g.Restore(snap); err != nil {
		t.Fatal(err)
	}
	if g.Digest() != f.s.Digest() || g.Index() != f.s.Index() {
		t.Fatalf("restored digest %s at %d, want %s at %d", g.Digest(), g.Index(), f.s.Digest(), f.s.Index())
	}
	checkDigest(t, g)
	again, _ := g.Snapshot()
	if !bytes.Equal(again, snap) {
		t.Fatal("snapshot of the restored store differs")
	}
	// The client table came along: the same requests give the same results.
	for _, r := range randomReqs(rng, 100) {
		ra := f.apply(r.client, r.seq, r.op)
		rb := (&feeder{t, g}).apply(r.client, r.seq, r.op)
		if !resultEqual(ra, rb) || f.s.Digest() != g.Digest() {
			t.Fatalf("after restore, %+v: %+v vs %+v", r, ra, rb)
		}
	}
}

func TestRestoreRefusesBadSnapshots(t *testing.T) {
	good := func() snapshot {
		f := newFeeder(t)
		f.apply(1, 1, put("a", "1"))
		f.apply(2, 1, put("b", "2"))
		b, _ := f.s.Snapshot()
		s := decodeSnap(t, b)
		s.Version = 2 // what the msgpack form carries; the binary one has none
		return s
	}
	resum := func(s snapshot) snapshot {
		// Give a structurally bad snapshot a matching digest so the
		// structural check, not the digest, must catch it.
		n := NewStore()
		n.index = s.Index
		for _, p := range s.Pairs {
			n.set(p.Key, item{}, false, p.Value)
		}
		for _, c := range s.Clients {
			n.sum.add(clientHash(c.ID, c.Seq, c.Result))
		}
		s.Sum = n.Digest().Sum
		return s
	}
	cases := []struct {
		name        string
		b           func(enc func(snapshot) []byte) []byte
		msgpackOnly bool // the binary layout has no version field
	}{
		{"empty", func(func(snapshot) []byte) []byte { return nil }, false},
		{"garbage", func(func(snapshot) []byte) []byte { return []byte("not msgpack") }, false},
		{"truncated", func(enc func(snapshot) []byte) []byte { b := enc(good()); return b[:len(b)-3] }, false},
		{"trailing", func(enc func(snapshot) []byte) []byte { return append(enc(good()), 0) }, false},
		{"version 3 in msgpack", func(enc func(snapshot) []byte) []byte { s := good(); s.Version = 3; return enc(s) }, true},
		{"version 0", func(enc func(snapshot) []byte) []byte { s := good(); s.Version = 0; return enc(s) }, true},
		{"too many clients", func(enc func(snapshot) []byte) []byte {
			s := good()
			s.Clients = nil
			for i := range MaxClients + 1 {
				s.Clients = append(s.Clients, snapClient{ID: uint64(i + 1), Seq: 1})
			}
			return enc(s)
		}, false},
		{"client used after the index", func(enc func(snapshot) []byte) []byte { s := good(); s.Clients[0].Used = s.Index + 1; return enc(s) }, false},
		{"digest", func(enc func(snapshot) []byte) []byte { s := good(); s.Index++; return enc(s) }, false},
		{"value changed", func(enc func(snapshot) []byte) []byte { s := good(); s.Pairs[0].Value = []byte("9"); return enc(s) }, false},
		{"unsorted keys", func(enc func(snapshot) []byte) []byte {
			s := good()
			s.Pairs[0], s.Pairs[1] = s.Pairs[1], s.Pairs[0]
			return enc(resum(s))
		}, false},
		{"duplicate key", func(enc func(snapshot) []byte) []byte {
			s := good()
			s.Pairs[1].Key = s.Pairs[0].Key
			return enc(resum(s))
		}, false},
		{"empty key", func(enc func(snapshot) []byte) []byte { s := good(); s.Pairs[0].Key = ""; return enc(resum(s)) }, false},
		{"key over cap", func(enc func(snapshot) []byte) []byte {
			s := good()
			s.Pairs[1].Key = strings.Repeat("z", MaxKeyBytes+1)
			return enc(resum(s))
		}, false},
		{"value over cap", func(enc func(snapshot) []byte) []byte {
			s := good()
			s.Pairs[0].Value = make([]byte, MaxValueBytes+1)
			return enc(resum(s))
		}, false},
		{"client 0", func(enc func(snapshot) []byte) []byte { s := good(); s.Clients[0].ID = 0; return enc(resum(s)) }, false},
		{"unsorted clients", func(enc func(snapshot) []byte) []byte {
			s := good()
			s.Clients[0], s.Clients[1] = s.Clients[1], s.Clients[0]
			return enc(resum(s))
		}, false},
	}
	forms := []struct {
		name string
		enc  func(snapshot) []byte
	}{
		{"binary", func(s snapshot) []byte { return appendSnapshot(nil, &s) }},
		{"msgpack", func(s snapshot) []byte { b, _ := api.Encode(&s); return b }},
	}
	for _, form := range forms {
		if err := NewStore().Restore(form.enc(good())); err != nil {
			t.Fatalf("%s: the good snapshot: %v", form.name, err)
		}
		for _, c := range cases {
			if c.msgpackOnly && form.name != "msgpack" {
				continue
			}
			t.Run(form.name+"/"+c.name, func(t *testing.T) {
				refuses(t, c.b(form.enc))
			})
		}
	}
}

// refuses checks that Restore refuses b with ErrSnapshot and changes
// nothing.
func refuses(t *testing.T, b []byte) {
	t.Helper()
	f := newFeeder(t)
	f.apply(9, 1, put("keep", "me"))
	before, _ := f.s.Snapshot()
	err := f.s.Restore(b)
	if !errors.Is(err, ErrSnapshot) {
		t.Fatalf("Restore = %v, want ErrSnapshot", err)
	}
	t.Log(err)
	after, _ := f.s.Snapshot()
	if !bytes.Equal(before, after) {
		t.Fatal("failed Restore changed the state")
	}
}

// decodeSnap reads back a snapshot Store.Snapshot took (the binary
// layout).
func decodeSnap(t testing.TB, b []byte) snapshot {
	t.Helper()
	if !bytes.HasPrefix(b, snapshotMagic[:]) {
		t.Fatalf("snapshot opens with %q, not the binary layout's magic", b[:min(len(b), 4)])
	}
	s, err := decodeSnapshot(b[len(snapshotMagic):])
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// Hostile binary snapshots: every cut of a good one, and lengths and
// counts forged to make Restore allocate what the bytes do not hold.
// Each is refused before it costs more than its own size, and changes
// nothing.
func TestRestoreRefusesHostileBinarySnapshots(t *testing.T) {
	f := newFeeder(t)
	f.apply(1, 1, put("a", "1"))
	f.apply(2, 1, cas("a", "1", "2"))
	f.apply(3, 1, get("zz"))
	good, _ := f.s.Snapshot()
	for n := range len(good) {
		t.Run(fmt.Sprintf("cut at %d", n), func(t *testing.T) { refuses(t, good[:n]) })
	}
	uv := func(v uint64) []byte { return binary.AppendUvarint(nil, v) }
	head := func(parts ...[]byte) []byte {
		b := snapshotMagic[:]
		for _, p := range parts {
			b = append(slices.Clone(b), p...)
		}
		return b
	}
	sum := make([]byte, 32)
	cases := map[string][]byte{
		"2^63 pairs":          head(uv(1), uv(0), uv(1<<63), sum),
		"a key of 2^40 bytes": head(uv(1), uv(0), uv(1), uv(1<<40), sum),
		"a key over the cap":  head(uv(1), uv(0), uv(1), uv(MaxKeyBytes+1), make([]byte, MaxKeyBytes+1), uv(0), uv(0), sum),
		"a value over the cap": head(uv(1), uv(0), uv(1), uv(1), []byte("k"), uv(MaxValueBytes+1),
			make([]byte, MaxValueBytes+1), uv(0), sum),
		"a varint of 11 bytes": head(bytes.Repeat([]byte{0xff}, 10), []byte{1}, sum),
		"2^40 clients":         head(uv(1), uv(0), uv(0), uv(1<<40), sum),
		"clients over the cap": head(uv(1), uv(0), uv(0), uv(MaxClients+1), make([]byte, 6*(MaxClients+1)), sum),
		"unknown client flags": head(uv(1), uv(0), uv(0), uv(1), uv(1), uv(1), uv(1), []byte{4}, uv(0), uv(0), sum),
		"an error over the cap": head(uv(1), uv(0), uv(0), uv(1), uv(1), uv(1), uv(1), []byte{0}, uv(0),
			uv(maxErrBytes+1), make([]byte, maxErrBytes+1), sum),
		"no digest": head(uv(0), uv(0), uv(0), uv(0)),
	}
	for name, b := range cases {
		t.Run(name, func(t *testing.T) { refuses(t, b) })
	}
}

// A Restore keeps none of the snapshot's memory: a caller that reuses its
// buffer (a download's) leaves the restored state as it was.
func TestRestoreCopiesTheSnapshot(t *testing.T) {
	f := newFeeder(t)
	f.apply(1, 1, put("a", "value-a"))
	f.apply(2, 1, get("a"))
	b, _ := f.s.Snapshot()
	r := NewStore()
	if err := r.Restore(b); err != nil {
		t.Fatal(err)
	}
	for i := range b {
		b[i] = 'x'
	}
	if v, _ := r.Get("a"); string(v) != "value-a" {
		t.Fatalf("a = %q after the snapshot's buffer was overwritten", v)
	}
	if res := r.Apply(rlog.Entry{Index: 3, Client: 2, Seq: 1, Op: mustEncode(t, get("a"))}); string(res.Value) != "value-a" {
		t.Fatalf("the client's recorded result = %+v after the buffer was overwritten", res)
	}
	if r.Digest() != r.RecomputeDigest() {
		t.Fatal("digest differs from a full recompute")
	}
}

// Ops in the msgpack form of earlier versions (logs written before the
// binary form) decode and apply exactly as their binary form does.
func TestLegacyMsgpackOpsApply(t *testing.T) {
	ops := []Op{put("a", "1"), cas("a", "1", "2"), casAbsent("b", "x"), get("a"), del("b"), put("c", "")}
	fresh, legacy := NewStore(), NewStore()
	for i, op := range ops {
		nb, err := EncodeOp(op)
		if err != nil {
			t.Fatal(err)
		}
		if nb[0] != opMagic {
			t.Fatalf("EncodeOp wrote %#x first, want the binary form", nb[0])
		}
		ob, err := api.Encode(op)
		if err != nil {
			t.Fatal(err)
		}
		if ob[0] == opMagic {
			t.Fatal("a msgpack op starts with the binary form's mark")
		}
		if got, err := DecodeOp(ob); err != nil || got.Kind != op.Kind || got.Key != op.Key || !bytes.Equal(got.Value, op.Value) {
			t.Fatalf("legacy %+v decoded as %+v, %v", op, got, err)
		}
		e := rlog.Entry{Index: uint64(i + 1), Client: 7, Seq: uint64(i + 1)}
		e.Op = nb
		rb := fresh.Apply(e)
		e.Op = ob
		rl := legacy.Apply(e)
		if rb.Err != "" || rl.Err != rb.Err || rl.OK != rb.OK || rl.Found != rb.Found || !bytes.Equal(rl.Value, rb.Value) {
			t.Fatalf("op %d %+v: binary %+v, legacy %+v", i, op, rb, rl)
		}
	}
	if fresh.Digest() != legacy.Digest() {
		t.Fatal("the two forms left different states")
	}
}

// Every cut, unknown code or inconsistent length of the binary form is an
// ErrMalformed or ErrKind error, never a panic nor a partial op.
func TestBinaryOpRefusals(t *testing.T) {
	good, err := EncodeOp(cas("key", "old", "new"))
	if err != nil {
		t.Fatal(err)
	}
	for n := 0; n < len(good); n++ {
		if _, err := DecodeOp(good[:n]); err == nil {
			t.Fatalf("the op cut to %d of %d bytes decoded", n, len(good))
		}
	}
	mut := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(good)) }
	huge := append([]byte{opMagic, 1, 0}, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01)
	for name, c := range map[string]struct {
		b    []byte
		want error
	}{
		"kind 0":           {mut(func(b []byte) []byte { b[1] = 0; return b }), ErrKind},
		"kind 9":           {mut(func(b []byte) []byte { b[1] = 9; return b }), ErrKind},
		"kind 255":         {mut(func(b []byte) []byte { b[1] = 255; return b }), ErrKind},
		"unknown flag":     {mut(func(b []byte) []byte { b[2] = 2; return b }), ErrMalformed},
		"trailing":         {append(bytes.Clone(good), 0), ErrMalformed},
		"key length 2^64":  {huge, ErrMalformed},
		"key too long":     {append(binaryHeader(1, 0), appendLen(MaxKeyBytes+1)...), ErrMalformed},
		"put with expect":  {appendOp(nil, Op{Kind: KindPut, Key: "a", Expect: []byte("x")}), ErrMalformed},
		"empty key":        {appendOp(nil, Op{Kind: KindGet}), ErrEmptyKey},
		"overlong uvarint": {append(binaryHeader(2, 0), 0x81, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00), ErrMalformed},
	} {
		if _, err := DecodeOp(c.b); !errors.Is(err, c.want) {
			t.Errorf("%s: DecodeOp = %v, want %v", name, err, c.want)
		}
		s := NewStore()
		if r := s.Apply(rlog.Entry{Index: 1, Client: 1, Seq: 1, Op: c.b}); r.Err == "" {
			t.Errorf("%s: applied", name)
		}
		ref := NewStore()
		ref.Apply(rlog.Entry{Index: 1})
		if s.Digest() != ref.Digest() {
			t.Errorf("%s: a refused op changed the state", name)
		}
	}
}

func binaryHeader(kind, flags byte) []byte { return []byte{opMagic, kind, flags} }

func appendLen(n uint64) []byte { return binary.AppendUvarint(nil, n) }

// The client table keeps at most MaxClients clients, forgetting the one
// used longest ago: a forgotten client's retry is refused with
// ErrClientExpired, never applied twice; a remembered client's retry
// still answers its first result; new clients start at seq 1 as ever;
// and a store restored from a snapshot forgets the same clients next.
func TestClientTableBounded(t *testing.T) {
	f := newFeeder(t)
	f.apply(1, 1, put("a", "first"))
	f.apply(1, 2, put("a", "second")) // client 1 used at index 2
	f.apply(2, 1, put("b", "1"))      // client 2 used at index 3
	for id := uint64(3); id <= MaxClients; id++ {
		f.apply(id, 1, put("c", "x"))
	}
	if len(f.s.clients) != MaxClients || f.s.forgotten != 0 {
		t.Fatalf("%d clients, %d forgotten", len(f.s.clients), f.s.forgotten)
	}
	if r := f.apply(1, 2, put("a", "second")); r.Err != "" || !r.OK {
		t.Fatalf("a remembered client's retry: %+v", r)
	}
	snap, err := f.s.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	// One client more: client 1, used longest ago, is forgotten.
	f.apply(MaxClients+1, 1, put("d", "1"))
	if len(f.s.clients) != MaxClients || f.s.forgotten != 1 {
		t.Fatalf("%d clients, %d forgotten after one more", len(f.s.clients), f.s.forgotten)
	}
	if _, ok := f.s.clients[1]; ok {
		t.Fatal("client 1, used longest ago, still in the table")
	}
	before, _ := f.s.Snapshot()
	if r := f.apply(1, 2, put("a", "second")); !strings.Contains(r.Err, ErrClientExpired.Error()) {
		t.Fatalf("a forgotten client's retry: %+v, want %v", r, ErrClientExpired)
	}
	assertOnlyIndexMoved(t, f.s, before)
	if v, _ := f.s.Get("a"); string(v) != "second" {
		t.Fatalf("a = %q", v)
	}
	if r := f.apply(MaxClients+2, 1, put("e", "1")); r.Err != "" {
		t.Fatalf("a new client after forgetting: %+v", r)
	}
	checkDigest(t, f.s)

	// The same from the snapshot (taken after the retry, which is no
	// use of the client): the restored order forgets client 1 too, and
	// both end in the same state.
	r := NewStore()
	if err := r.Restore(snap); err != nil {
		t.Fatal(err)
	}
	g := &feeder{t: t, s: r}
	g.apply(MaxClients+1, 1, put("d", "1"))
	if _, ok := g.s.clients[1]; ok || g.s.forgotten != 1 {
		t.Fatal("the restored store forgot another client")
	}
	g.apply(1, 2, put("a", "second"))
	g.apply(MaxClients+2, 1, put("e", "1"))
	if g.s.Digest() != f.s.Digest() {
		t.Fatal("the restored store's state differs after the same entries")
	}
}

// A snapshot of version 1 (before the table was bounded) restores: its
// clients count as used at 0, and none was forgotten.
func TestRestoreVersion1Snapshot(t *testing.T) {
	f := newFeeder(t)
	f.apply(5, 1, put("a", "1"))
	f.apply(6, 1, put("b", "2"))
	b, _ := f.s.Snapshot()
	s := decodeSnap(t, b)
	s.Version, s.Forgotten = 1, 0
	for i := range s.Clients {
		s.Clients[i].Used = 0
	}
	old, _ := api.Encode(&s)
	r := NewStore()
	if err := r.Restore(old); err != nil {
		t.Fatalf("version 1 snapshot: %v", err)
	}
	if r.Digest() != f.s.Digest() {
		t.Fatal("version 1 snapshot restores another state")
	}
	if res := r.Apply(rlog.Entry{Index: 3, Client: 5, Seq: 1, Op: mustEncode(t, put("a", "1"))}); res.Err != "" || !res.OK {
		t.Fatalf("retry after a version 1 restore: %+v", res)
	}
}

// Steady clients keep the table's order small: it holds each client once
// and a bounded number of stale entries, however many writes applied.
func TestClientOrderStaysSmall(t *testing.T) {
	f := newFeeder(t)
	for i := range 10000 {
		f.apply(uint64(i%16+1), uint64(i/16+1), put("k", "v"))
	}
	if n := len(f.s.order); n > 2*16+1024+1 {
		t.Fatalf("order holds %d entries for 16 clients", n)
	}
}

// Each visits every pair in key order, with copies of the values, and
// stops when told.
func TestEach(t *testing.T) {
	s := NewStore()
	for i, k := range []string{"b", "a", "c"} {
		op, _ := EncodeOp(Op{Kind: KindPut, Key: k, Value: []byte("v" + k)})
		s.Apply(rlog.Entry{Index: uint64(i + 1), Op: op})
	}
	var keys []string
	s.Each(func(k string, v []byte) bool {
		keys = append(keys, k+"="+string(v))
		v[0] = 'x' // a copy: the store keeps its value
		return true
	})
	if strings.Join(keys, ",") != "a=va,b=vb,c=vc" {
		t.Fatalf("Each visited %v", keys)
	}
	if v, _ := s.Get("a"); string(v) != "va" {
		t.Fatalf("Each handed out the store's own value: a=%q", v)
	}
	n := 0
	s.Each(func(string, []byte) bool { n++; return n < 2 })
	if n != 2 {
		t.Fatalf("Each went on after false: %d calls", n)
	}
}
