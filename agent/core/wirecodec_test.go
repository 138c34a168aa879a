package core

import (
	"bytes"
	"errors"
	"math/rand"
	"reflect"
	"runtime"
	"testing"

	"github.com/mastership/mastership/agent/rlog"
	"github.com/mastership/mastership/naming/api"
)

func randomMessage(rng *rand.Rand) Message {
	u := func() uint64 {
		switch rng.Intn(4) {
		case 0:
			return 0
		case 1:
			return ^uint64(0) - uint64(rng.Intn(3))
		}
		return rng.Uint64() >> rng.Intn(64)
	}
	h := func() (x [32]byte) {
		if rng.Intn(3) > 0 {
			rng.Read(x[:])
		}
		return x
	}
	m := Message{Type: MsgType(rng.Intn(12)), Group: "group-" + string(rune('a'+rng.Intn(26))), From: u(), To: u(),
		Epoch: api.Epoch{Term: u(), ID: u()}, PrevIndex: u(), PrevHash: h(), Commit: u(), Sent: u(), Base: u(),
		Reject: rng.Intn(2) == 0, Match: u(), LastIndex: u(), LastEpoch: api.Epoch{Term: u(), ID: u()},
		Priority: rng.Intn(2001) - 1000, Busy: rng.Intn(2) == 0, Transfer: rng.Intn(2) == 0, Pinned: rng.Intn(2) == 0}
	if rng.Intn(2) == 0 {
		m.Held = u()
	}
	if rng.Intn(4) == 0 {
		m.Reason = "why not"
	}
	for i := rng.Intn(5); i > 0; i-- {
		e := rlog.Entry{Epoch: api.Epoch{Term: u(), ID: u()}, Index: u(), Client: u(), Seq: u(), Hash: h()}
		if n := rng.Intn(100); n > 0 {
			e.Op = make([]byte, n)
			rng.Read(e.Op)
		}
		m.Entries = append(m.Entries, e)
	}
	return m
}

// Every message survives its binary form, field for field.
func TestWireRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	for i := 0; i < 5000; i++ {
		m := randomMessage(rng)
		b := AppendWire(nil, &m)
		var got Message
		if err := DecodeWire(b, &got); err != nil {
			t.Fatalf("message %d (%s): %v", i, m, err)
		}
		if !reflect.DeepEqual(got, m) {
			t.Fatalf("message %d:\n got %+v\nwant %+v", i, got, m)
		}
		// Every prefix of it is refused, and so is a byte more.
		for _, cut := range []int{0, 1, len(b) / 2, len(b) - 1} {
			if err := DecodeWire(b[:cut], &got); !errors.Is(err, ErrWire) {
				t.Fatalf("message %d cut at %d of %d: %v", i, cut, len(b), err)
			}
		}
		if err := DecodeWire(append(b, 0), &got); !errors.Is(err, ErrWire) {
			t.Fatalf("message %d with a trailing byte: %v", i, err)
		}
	}
}

// Hostile lengths are checked against the bytes that arrived before
// anything is allocated.
func TestWireHostileLengths(t *testing.T) {
	m := Message{Type: MsgAppend, Group: "g", From: 1, To: 2, Entries: []rlog.Entry{{Index: 1, Op: []byte("x")}}}
	good := AppendWire(nil, &m)
	empty := AppendWire(nil, &Message{Type: MsgAppend, Group: "g"})
	// The entry count is the last field: announce 2^32-1 entries.
	huge := append(bytes.Clone(empty[:len(empty)-1]), 0xff, 0xff, 0xff, 0xff, 0x0f)
	for _, tc := range []struct {
		name string
		b    []byte
	}{
		{"version 2", append([]byte{2}, good[1:]...)},
		{"unknown flag", append([]byte{good[0], good[1], 0x80}, good[3:]...)},
		{"a huge entry count", huge},
		{"a huge group", append(bytes.Clone(good[:15]), 0xff, 0xff, 0xff, 0xff, 0x0f)},
		{"a varint past 64 bits", append([]byte{1, 1, 0}, bytes.Repeat([]byte{0xff}, 11)...)},
	} {
		var got Message
		if err := DecodeWire(tc.b, &got); !errors.Is(err, ErrWire) {
			t.Errorf("%s: %v, want ErrWire", tc.name, err)
		}
		if !reflect.DeepEqual(got, Message{}) {
			t.Errorf("%s: a refused message left %+v", tc.name, got)
		}
	}
	var got Message
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for i := 0; i < 100; i++ {
		DecodeWire(huge, &got)
	}
	runtime.ReadMemStats(&after)
	if per := (after.TotalAlloc - before.TotalAlloc) / 100; per > 4096 {
		t.Fatalf("%d bytes allocated to refuse a message announcing 2^32 entries", per)
	}
}

// Any bytes: no panic, and whatever decodes encodes back to the same bytes.
func FuzzDecodeWire(f *testing.F) {
	rng := rand.New(rand.NewSource(2))
	for i := 0; i < 8; i++ {
		m := randomMessage(rng)
		f.Add(AppendWire(nil, &m))
	}
	f.Add([]byte{1, 1, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		var m Message
		if err := DecodeWire(b, &m); err != nil {
			return
		}
		again := AppendWire(nil, &m)
		var m2 Message
		if err := DecodeWire(again, &m2); err != nil || !reflect.DeepEqual(m, m2) {
			t.Fatalf("a decoded message does not survive its encoding: %v", err)
		}
	})
}
