package kv

import (
	"crypto/sha256"
	"encoding/binary"
	"strings"
	"testing"

	"github.com/mastership/mastership/agent/rlog"
)

// The pair and client hashes are part of every digest that members
// compare, across versions: their layout is pinned here, written out
// byte by byte, for inputs on both sides of the stack buffer's size.
func TestHashLayout(t *testing.T) {
	for _, n := range []int{0, 3, smallHashed - 5, smallHashed, 4 * smallHashed} {
		key, value := strings.Repeat("k", n/2+1), []byte(strings.Repeat("v", n))
		h := sha256.New()
		h.Write([]byte{'k'})
		binary.Write(h, binary.BigEndian, uint32(len(key)))
		h.Write([]byte(key))
		h.Write(value)
		if got, want := pairHash(key, value), [32]byte(h.Sum(nil)); got != want {
			t.Errorf("pair hash of a %d-byte key and %d-byte value changed: %x, want %x", len(key), len(value), got, want)
		}
		r := rlog.Result{Found: n%2 == 0, OK: true, Value: value, Err: strings.Repeat("e", n/3)}
		h = sha256.New()
		h.Write([]byte{'c'})
		binary.Write(h, binary.BigEndian, uint64(7))
		binary.Write(h, binary.BigEndian, uint64(1<<40+n))
		h.Write([]byte{map[bool]byte{true: 1}[r.Found], 1})
		binary.Write(h, binary.BigEndian, uint32(len(r.Value)))
		h.Write(r.Value)
		h.Write([]byte(r.Err))
		if got, want := clientHash(7, 1<<40+uint64(n), r), [32]byte(h.Sum(nil)); got != want {
			t.Errorf("client hash with a %d-byte value changed: %x, want %x", len(value), got, want)
		}
	}
}
