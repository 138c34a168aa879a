package core

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/mastership/mastership/agent/rlog"
)

// The binary form of a Message on a stream: what the agents exchange at
// every append, so it is a fixed sequence of varints and byte strings
// instead of reflection-driven msgpack (which took a third of a back-up's
// CPU). Version 1:
//
//	version byte (1), type byte, flags byte
//	uvarint From, To, Epoch.Term, Epoch.ID, PrevIndex, Commit, Sent, Base,
//	        Match, LastIndex, LastEpoch.Term, LastEpoch.ID
//	varint  Priority
//	string  Group, Reason        (uvarint length, bytes)
//	[32]    PrevHash             (only with flagPrevHash)
//	uvarint len(Entries), then each entry:
//	        uvarint Epoch.Term, Epoch.ID, Index, Client, Seq
//	        string Op, [32] Hash
//
// Decoding checks every length and count against the bytes left, so what
// it allocates is bounded by a small multiple of its input (an entry
// decoded takes at most about 3 times its smallest encoding), and refuses
// trailing bytes.
const wireVersion = 1

const (
	flagReject = 1 << iota
	flagBusy
	flagTransfer
	flagPinned
	flagPrevHash
	flagHeld
)

// MaxWireString bounds a Message's Group and Reason on the wire.
const MaxWireString = 1024

// ErrWire wraps every refusal of a malformed binary message.
var ErrWire = errors.New("core: malformed message")

// AppendWire appends m's binary form to b.
func AppendWire(b []byte, m *Message) []byte {
	var flags byte
	if m.Reject {
		flags |= flagReject
	}
	if m.Busy {
		flags |= flagBusy
	}
	if m.Transfer {
		flags |= flagTransfer
	}
	if m.Pinned {
		flags |= flagPinned
	}
	if m.PrevHash != ([32]byte{}) {
		flags |= flagPrevHash
	}
	if m.Held != 0 {
		flags |= flagHeld
	}
	b = append(b, wireVersion, byte(m.Type), flags)
	for _, v := range [...]uint64{m.From, m.To, m.Epoch.Term, m.Epoch.ID, m.PrevIndex, m.Commit, m.Sent, m.Base,
		m.Match, m.LastIndex, m.LastEpoch.Term, m.LastEpoch.ID} {
		b = binary.AppendUvarint(b, v)
	}
	b = binary.AppendVarint(b, int64(m.Priority))
	b = appendString(b, m.Group)
	b = appendString(b, m.Reason)
	if flags&flagPrevHash != 0 {
		b = append(b, m.PrevHash[:]...)
	}
	if flags&flagHeld != 0 {
		b = binary.AppendUvarint(b, m.Held)
	}
	b = binary.AppendUvarint(b, uint64(len(m.Entries)))
	for i := range m.Entries {
		b = rlog.AppendEntry(b, &m.Entries[i])
	}
	return b
}

func appendString[T string | []byte](b []byte, s T) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// wireReader reads a binary message, remembering the first error.
type wireReader struct {
	b   []byte
	err error
}

func (r *wireReader) fail(format string, args ...any) {
	if r.err == nil {
		r.err = fmt.Errorf("%w: %s", ErrWire, fmt.Sprintf(format, args...))
	}
}

func (r *wireReader) byte() byte {
	if r.err != nil || len(r.b) == 0 {
		r.fail("cut short")
		return 0
	}
	v := r.b[0]
	r.b = r.b[1:]
	return v
}

func (r *wireReader) uvarint() uint64 { return readVarint(r, binary.Uvarint) }

func (r *wireReader) varint() int64 { return readVarint(r, binary.Varint) }

// readVarint reads one varint with dec (binary.Uvarint or binary.Varint).
func readVarint[T uint64 | int64](r *wireReader, dec func([]byte) (T, int)) T {
	if r.err != nil {
		return 0
	}
	v, n := dec(r.b)
	if n <= 0 {
		r.fail("bad varint")
		return 0
	}
	r.b = r.b[n:]
	return v
}

// bytes reads a length-prefixed byte string of at most limit bytes; the
// result aliases the reader's buffer (DecodeWire's own copy).
func (r *wireReader) bytes(limit int) []byte {
	n := r.uvarint()
	if r.err != nil {
		return nil
	}
	if n > uint64(limit) || n > uint64(len(r.b)) {
		r.fail("a string of %d bytes, %d left (at most %d)", n, len(r.b), limit)
		return nil
	}
	if n == 0 {
		return nil
	}
	v := r.b[:n:n]
	r.b = r.b[n:]
	return v
}

func (r *wireReader) hash() (h [32]byte) {
	if r.err != nil {
		return h
	}
	if len(r.b) < len(h) {
		r.fail("cut short in a hash")
		return h
	}
	copy(h[:], r.b)
	r.b = r.b[len(h):]
	return h
}

// DecodeWire decodes a binary message from b into m. Nothing decoded
// aliases b: the entries' ops share one copy of it.
func DecodeWire(b []byte, m *Message) error { return DecodeWireOwned(append([]byte(nil), b...), m) }

// DecodeWireOwned is DecodeWire for a b the caller hands over: the
// entries' ops alias it, so it must not be changed or reused afterwards.
func DecodeWireOwned(b []byte, m *Message) error {
	r := &wireReader{b: b}
	if v := r.byte(); r.err == nil && v != wireVersion {
		return fmt.Errorf("%w: version %d, want %d", ErrWire, v, wireVersion)
	}
	*m = Message{Type: MsgType(r.byte())}
	flags := r.byte()
	vals := [...]*uint64{&m.From, &m.To, &m.Epoch.Term, &m.Epoch.ID, &m.PrevIndex, &m.Commit, &m.Sent, &m.Base,
		&m.Match, &m.LastIndex, &m.LastEpoch.Term, &m.LastEpoch.ID}
	for _, p := range vals {
		*p = r.uvarint()
	}
	prio := r.varint()
	if prio < -1<<31 || prio > 1<<31-1 {
		r.fail("priority %d", prio)
	}
	m.Priority = int(prio)
	m.Group = string(r.bytes(MaxWireString))
	m.Reason = string(r.bytes(MaxWireString))
	m.Reject, m.Busy, m.Transfer, m.Pinned = flags&flagReject != 0, flags&flagBusy != 0, flags&flagTransfer != 0, flags&flagPinned != 0
	if flags&flagPrevHash != 0 {
		m.PrevHash = r.hash()
	}
	if flags&flagHeld != 0 {
		m.Held = r.uvarint()
	}
	if flags&^(flagReject|flagBusy|flagTransfer|flagPinned|flagPrevHash|flagHeld) != 0 {
		r.fail("unknown flags %#x", flags)
	}
	n := r.uvarint()
	if r.err == nil && n > uint64(len(r.b)/rlog.MinEntryWire) {
		r.fail("%d entries in %d bytes", n, len(r.b))
	}
	if r.err == nil && n > 0 {
		m.Entries = make([]rlog.Entry, n)
		for i := range m.Entries {
			e, used, err := rlog.ReadEntry(r.b)
			if err != nil {
				r.fail("entry %d: %v", i, err)
				break
			}
			m.Entries[i], r.b = e, r.b[used:]
		}
	}
	if r.err == nil && len(r.b) != 0 {
		r.fail("%d trailing bytes", len(r.b))
	}
	if r.err != nil {
		*m = Message{}
	}
	return r.err
}
