package rlog

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/mastership/mastership/naming/api"
)

// The binary form of an Entry, shared by the agents' message frames and
// the log's storage: uvarint Epoch.Term, Epoch.ID, Index, Client, Seq, then
// uvarint len(Op), Op, and the 32-byte Hash.

// MinEntryWire is the size of the smallest encoded entry (one-byte varints,
// an empty op): a count of entries is checked against it before any slice
// is made.
const MinEntryWire = 5 + 1 + 32

// ErrEntryWire wraps every refusal of a malformed binary entry.
var ErrEntryWire = errors.New("rlog: malformed entry")

// MaxEntryWire bounds the length of e's binary form (AppendEntry).
func MaxEntryWire(e *Entry) int { return 6*binary.MaxVarintLen64 + len(e.Op) + len(e.Hash) }

// AppendEntry appends e's binary form to b.
func AppendEntry(b []byte, e *Entry) []byte {
	for _, v := range [...]uint64{e.Epoch.Term, e.Epoch.ID, e.Index, e.Client, e.Seq} {
		b = binary.AppendUvarint(b, v)
	}
	b = binary.AppendUvarint(b, uint64(len(e.Op)))
	b = append(b, e.Op...)
	return append(b, e.Hash[:]...)
}

// ReadEntry decodes the entry at the front of b and reports how many bytes
// it took. Its Op aliases b (nil when empty).
func ReadEntry(b []byte) (Entry, int, error) {
	var e Entry
	off := 0
	next := func() (uint64, error) {
		v, n := binary.Uvarint(b[off:])
		if n <= 0 {
			return 0, fmt.Errorf("%w: bad varint at byte %d", ErrEntryWire, off)
		}
		off += n
		return v, nil
	}
	var vals [6]uint64
	for i := range vals {
		v, err := next()
		if err != nil {
			return Entry{}, 0, err
		}
		vals[i] = v
	}
	e.Epoch = api.Epoch{Term: vals[0], ID: vals[1]}
	e.Index, e.Client, e.Seq = vals[2], vals[3], vals[4]
	n := vals[5]
	if n > uint64(len(b)-off) {
		return Entry{}, 0, fmt.Errorf("%w: an op of %d bytes, %d left", ErrEntryWire, n, len(b)-off)
	}
	if n > 0 {
		e.Op = b[off : off+int(n) : off+int(n)]
	}
	off += int(n)
	if len(b)-off < len(e.Hash) {
		return Entry{}, 0, fmt.Errorf("%w: cut short in its hash", ErrEntryWire)
	}
	copy(e.Hash[:], b[off:])
	return e, off + len(e.Hash), nil
}
