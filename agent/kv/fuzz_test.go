package kv

import (
	"bytes"
	"errors"
	"testing"

	"github.com/mastership/mastership/agent/rlog"
	"github.com/mastership/mastership/naming/api"
)

func FuzzDecodeOp(f *testing.F) {
	for _, op := range []Op{put("a", "1"), get("b"), del("c"), cas("d", "x", "y"), casAbsent("e", ""),
		{Kind: "incr", Key: "a"}, put("", "1")} {
		b, _ := api.Encode(op) // the msgpack form of earlier versions
		f.Add(b)
		f.Add(appendOp(nil, op)) // the binary form, unvalidated
	}
	f.Add([]byte{})
	f.Add([]byte{0xc1})
	f.Add([]byte{0xdf, 0xff, 0xff, 0xff, 0xff}) // map32 with a huge length
	f.Add([]byte{0x85, 0xc6, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		op, err := DecodeOp(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrKind) && !errors.Is(err, ErrEmptyKey) &&
				!errors.Is(err, ErrKeyTooLong) && !errors.Is(err, ErrValueTooLong) {
				t.Fatalf("DecodeOp error without a kv sentinel: %v", err)
			}
		} else {
			if err := ValidateOp(op); err != nil {
				t.Fatalf("DecodeOp returned an invalid op %+v: %v", op, err)
			}
			again, err := EncodeOp(op)
			if err != nil {
				t.Fatalf("re-encode %+v: %v", op, err)
			}
			if op2, err := DecodeOp(again); err != nil || op2.Key != op.Key || op2.Kind != op.Kind ||
				!bytes.Equal(op2.Value, op.Value) || !bytes.Equal(op2.Expect, op.Expect) {
				t.Fatalf("round trip %+v -> %+v, %v", op, op2, err)
			}
		}
		// Whatever the bytes, Apply answers and keeps the digest honest; a
		// refusal changes nothing but the index.
		s := NewStore()
		s.Apply(rlog.Entry{Index: 1, Client: 1, Seq: 1, Op: []byte(mustEncode(t, put("k", "v")))})
		before, _ := s.Snapshot()
		r := s.Apply(rlog.Entry{Index: 2, Client: 1, Seq: 2, Op: b})
		if (r.Err != "") != (err != nil && len(b) > 0) {
			t.Fatalf("Apply result %+v for decode error %v", r, err)
		}
		if r.Err != "" {
			ref := NewStore()
			ref.Restore(before)
			ref.Apply(rlog.Entry{Index: 2})
			if ref.Digest() != s.Digest() {
				t.Fatal("refused op changed the state")
			}
		}
		// The store's reused decoder still works after any input.
		r = s.Apply(rlog.Entry{Index: 3, Op: mustEncode(t, get("k"))})
		if v, ok := s.Get("k"); r.Err != "" || r.Found != ok || !bytes.Equal(r.Value, v) {
			t.Fatalf("get after %x: %+v", b, r)
		}
		if s.Digest() != s.RecomputeDigest() {
			t.Fatal("incremental digest drifted")
		}
	})
}

func mustEncode(t testing.TB, op Op) []byte {
	b, err := EncodeOp(op)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func FuzzRestore(f *testing.F) {
	s := NewStore()
	s.Apply(rlog.Entry{Index: 1, Client: 3, Seq: 1, Op: mustEncode(f, put("a", "1"))})
	s.Apply(rlog.Entry{Index: 2, Client: 4, Seq: 9, Op: mustEncode(f, get("a"))})
	s.Apply(rlog.Entry{Index: 3, Op: mustEncode(f, put("b", ""))})
	good, _ := s.Snapshot()
	f.Add(good)
	// The msgpack form of versions 1 and 2, which still restores.
	legacy := decodeSnap(f, good)
	legacy.Version = 2
	old, _ := api.Encode(&legacy)
	f.Add(old)
	f.Add(good[:len(good)/2])
	empty, _ := NewStore().Snapshot()
	f.Add(empty)
	f.Add([]byte{})
	f.Add([]byte{0x85, 0xa1, 'v', 0x01, 0xa1, 'p', 0xdd, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		st := NewStore()
		st.Apply(rlog.Entry{Index: 1, Client: 7, Seq: 1, Op: mustEncode(t, put("keep", "me"))})
		before, _ := st.Snapshot()
		d := st.Digest()
		if err := st.Restore(b); err != nil {
			if !errors.Is(err, ErrSnapshot) {
				t.Fatalf("Restore error without ErrSnapshot: %v", err)
			}
			after, _ := st.Snapshot()
			if !bytes.Equal(before, after) || st.Digest() != d {
				t.Fatal("failed Restore changed the state")
			}
			return
		}
		if st.Digest() != st.RecomputeDigest() {
			t.Fatal("restored digest differs from a full recompute")
		}
		// An accepted snapshot is canonical: taking it again gives a
		// snapshot that restores to the same digest.
		again, err := st.Snapshot()
		if err != nil {
			t.Fatal(err)
		}
		st2 := NewStore()
		if err := st2.Restore(again); err != nil || st2.Digest() != st.Digest() {
			t.Fatalf("re-snapshot: %v", err)
		}
	})
}
