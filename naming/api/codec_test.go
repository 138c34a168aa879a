package api

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

type codecProbe struct {
	B []byte `codec:"b"`
	S string `codec:"s"`
	N uint64 `codec:"n"`
}

// Decode copies what it decodes: a caller may reuse its buffer (a stream
// reader does) without changing values decoded from it.
func TestDecodeDoesNotAlias(t *testing.T) {
	in := codecProbe{B: bytes.Repeat([]byte("x"), 300), S: strings.Repeat("y", 300), N: 7}
	b, err := Encode(&in)
	if err != nil {
		t.Fatal(err)
	}
	var out codecProbe
	if err := Decode(b, &out); err != nil {
		t.Fatal(err)
	}
	clear(b)
	if !bytes.Equal(out.B, in.B) || out.S != in.S || out.N != 7 {
		t.Fatalf("decoded value changed with its input: %q %q %d", out.B[:8], out.S[:8], out.N)
	}
}

// Trailing bytes, truncated input and inputs over MaxMessageBytes are
// refused with ErrInvalid.
func TestDecodeRefuses(t *testing.T) {
	b, err := Encode(&codecProbe{B: []byte("abc"), N: 1})
	if err != nil {
		t.Fatal(err)
	}
	for name, in := range map[string][]byte{
		"trailing":  append(b[:len(b):len(b)], 0x01),
		"truncated": b[:len(b)-2],
		"too large": make([]byte, MaxMessageBytes+1),
		// A bin header claiming 2 GiB in a 6-byte input.
		"huge length": {0x81, 0xa1, 0x62, 0xc6, 0x7f, 0xff},
	} {
		var out codecProbe
		if err := Decode(in, &out); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v", name, err)
		}
	}
}
