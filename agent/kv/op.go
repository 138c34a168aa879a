package kv

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/hashicorp/go-msgpack/v2/codec"

	"github.com/mastership/mastership/naming/api"
)

// Limits on operations, checked by ValidateOp before an op enters the log
// and again by Apply. They bound what one entry can cost every replica in
// memory and in replication traffic; a 64 KiB value keeps an entry well
// under api.MaxMessageBytes.
const (
	// MaxKeyBytes is the longest key, in bytes.
	MaxKeyBytes = 1024
	// MaxValueBytes is the longest value (and cas expected value), in bytes.
	MaxValueBytes = 64 << 10
	// MaxSeqLead bounds how far past a client's last applied sequence (0
	// for a new client) a request's sequence may be: 2^20 requests.
	MaxSeqLead = 1 << 20
)

// Operation kinds, the values of Op.Kind.
const (
	KindPut = "put"
	KindGet = "get"
	KindCAS = "cas"
	KindDel = "del"
)

// Errors of validation and application. Apply reports them in Result.Err as
// their text (wrapped with details), since results travel as data.
var (
	// ErrEmptyKey refuses an operation without a key.
	ErrEmptyKey = errors.New("kv: empty key")
	// ErrKeyTooLong refuses a key over MaxKeyBytes.
	ErrKeyTooLong = errors.New("kv: key too long")
	// ErrValueTooLong refuses a value or expected value over MaxValueBytes.
	ErrValueTooLong = errors.New("kv: value too long")
	// ErrKind refuses an unknown Op.Kind.
	ErrKind = errors.New("kv: unknown op kind")
	// ErrMalformed refuses an op whose encoding cannot be decoded or whose
	// fields contradict its kind.
	ErrMalformed = errors.New("kv: malformed op")
	// ErrStaleSeq answers a request older than the last one applied for
	// its client: the client has moved on, so applying it now would reorder
	// its writes.
	ErrStaleSeq = errors.New("kv: stale sequence")
	// ErrSeqRange answers a request whose sequence is more than MaxSeqLead
	// past the client's last applied one: it is refused, not stored.
	ErrSeqRange = errors.New("kv: sequence out of range")
	// ErrClientExpired answers a request of a client the table no longer
	// holds (MaxClients): it is not applied, since it may be a retry of
	// one that was; the client starts again with a new ID.
	ErrClientExpired = errors.New("kv: client expired")
	// ErrSnapshot refuses a snapshot that does not decode or validate.
	ErrSnapshot = errors.New("kv: bad snapshot")
)

// Op is one key-value operation, carried in rlog.Entry.Op (EncodeOp).
type Op struct {
	// Kind is KindPut, KindGet, KindCAS or KindDel.
	Kind string `json:"kind" codec:"kind"`
	// Key is 1 to MaxKeyBytes bytes, any bytes.
	Key string `json:"key" codec:"key"`
	// Value is the value to store (put, cas); empty is a valid value.
	Value []byte `json:"value,omitempty" codec:"value"`
	// Expect is the value cas requires the key to hold now.
	Expect []byte `json:"expect,omitempty" codec:"expect"`
	// ExpectAbsent makes cas require the key to be absent instead.
	ExpectAbsent bool `json:"expect_absent,omitempty" codec:"absent"`
}

// ValidateOp checks an op before it enters the log, so that a client hears
// about a bad request at once instead of through a replicated error. It
// refuses fields that the kind does not use, rather than ignoring them,
// because a client that sets them has misunderstood the operation.
func ValidateOp(op Op) error {
	if op.Key == "" {
		return fmt.Errorf("%w (op %q)", ErrEmptyKey, op.Kind)
	}
	if len(op.Key) > MaxKeyBytes {
		return fmt.Errorf("%w: %d bytes, limit %d", ErrKeyTooLong, len(op.Key), MaxKeyBytes)
	}
	if len(op.Value) > MaxValueBytes {
		return fmt.Errorf("%w: value of %d bytes, limit %d", ErrValueTooLong, len(op.Value), MaxValueBytes)
	}
	if len(op.Expect) > MaxValueBytes {
		return fmt.Errorf("%w: expected value of %d bytes, limit %d", ErrValueTooLong, len(op.Expect), MaxValueBytes)
	}
	switch op.Kind {
	case KindPut:
		if len(op.Expect) > 0 || op.ExpectAbsent {
			return fmt.Errorf("%w: put with an expected value (use cas)", ErrMalformed)
		}
	case KindGet, KindDel:
		if len(op.Value) > 0 || len(op.Expect) > 0 || op.ExpectAbsent {
			return fmt.Errorf("%w: %s takes only a key", ErrMalformed, op.Kind)
		}
	case KindCAS:
		if op.ExpectAbsent && len(op.Expect) > 0 {
			return fmt.Errorf("%w: cas expects both absence and a value", ErrMalformed)
		}
	default:
		return fmt.Errorf("%w %q: want put, get, cas or del", ErrKind, op.Kind)
	}
	return nil
}

// EncodeOp validates op and returns it encoded for rlog.Entry.Op, in the
// binary form (see opMagic).
func EncodeOp(op Op) ([]byte, error) {
	if err := ValidateOp(op); err != nil {
		return nil, err
	}
	return appendOp(make([]byte, 0, 3+3*binary.MaxVarintLen32+len(op.Key)+len(op.Value)+len(op.Expect)), op), nil
}

// DecodeOp decodes and validates an op from rlog.Entry.Op, in the binary
// form or the msgpack form of earlier versions. Every op it returns passes
// ValidateOp and owns its byte slices; every bad input is an error, never
// a panic.
func DecodeOp(b []byte) (Op, error) {
	if len(b) > 0 && b[0] == opMagic {
		return decodeBinaryOp(b)
	}
	return decodeOp(api.NewDecoder(bytes.NewReader(nil)), b)
}

// The binary form of an op: opMagic, the kind's code, a flags byte
// (flagAbsent), then the key, the value and the expected value, each as a
// uvarint length and its bytes. opMagic is 0xc1, the one byte msgpack never
// uses, so that the msgpack ops that logs written by earlier versions hold
// (a map, 0x8N) still decode.
const (
	opMagic    = 0xc1
	flagAbsent = 1
)

var kindCodes = [...]string{1: KindPut, 2: KindGet, 3: KindCAS, 4: KindDel}

func kindCode(kind string) byte {
	for c, k := range kindCodes {
		if k != "" && k == kind {
			return byte(c)
		}
	}
	return 0
}

func appendOp(b []byte, op Op) []byte {
	var flags byte
	if op.ExpectAbsent {
		flags |= flagAbsent
	}
	b = append(b, opMagic, kindCode(op.Kind), flags)
	b = binary.AppendUvarint(b, uint64(len(op.Key)))
	b = append(b, op.Key...)
	b = binary.AppendUvarint(b, uint64(len(op.Value)))
	b = append(b, op.Value...)
	b = binary.AppendUvarint(b, uint64(len(op.Expect)))
	return append(b, op.Expect...)
}

func decodeBinaryOp(b []byte) (Op, error) {
	if len(b) > maxOpBytes {
		return Op{}, fmt.Errorf("%w: %d bytes, limit %d", ErrMalformed, len(b), maxOpBytes)
	}
	if len(b) < 3 {
		return Op{}, fmt.Errorf("%w: %d bytes, cut before its header ends", ErrMalformed, len(b))
	}
	code, flags := b[1], b[2]
	if int(code) >= len(kindCodes) || kindCodes[code] == "" {
		return Op{}, fmt.Errorf("%w code %d: want put, get, cas or del", ErrKind, code)
	}
	if flags&^flagAbsent != 0 {
		return Op{}, fmt.Errorf("%w: unknown flags %#x", ErrMalformed, flags)
	}
	rest := b[3:]
	field := func(name string, limit int) ([]byte, error) {
		n, w := binary.Uvarint(rest)
		if w <= 0 {
			return nil, fmt.Errorf("%w: %s length cut or overlong", ErrMalformed, name)
		}
		if n > uint64(limit) || n > uint64(len(rest)-w) {
			return nil, fmt.Errorf("%w: %s of %d bytes, %d left, limit %d", ErrMalformed, name, n, len(rest)-w, limit)
		}
		f := rest[w : w+int(n)]
		rest = rest[w+int(n):]
		return f, nil
	}
	key, err := field("key", MaxKeyBytes)
	if err != nil {
		return Op{}, err
	}
	value, err := field("value", MaxValueBytes)
	if err != nil {
		return Op{}, err
	}
	expect, err := field("expected value", MaxValueBytes)
	if err != nil {
		return Op{}, err
	}
	if len(rest) != 0 {
		return Op{}, fmt.Errorf("%w: %d trailing bytes", ErrMalformed, len(rest))
	}
	// The op owns its bytes: a stored value never aliases the log's.
	op := Op{Kind: kindCodes[code], Key: string(key), ExpectAbsent: flags&flagAbsent != 0}
	if len(value) > 0 {
		op.Value = bytes.Clone(value)
	}
	if len(expect) > 0 {
		op.Expect = bytes.Clone(expect)
	}
	if err := ValidateOp(op); err != nil {
		return Op{}, err
	}
	return op, nil
}

// maxOpBytes bounds an encoded op: the largest valid one is a cas with a
// key and two values at their caps, plus field names.
const maxOpBytes = MaxKeyBytes + 2*MaxValueBytes + 256

// decodeOp is DecodeOp with a decoder the caller may reuse across calls;
// Store keeps one, since building a go-msgpack decoder costs four
// allocations per entry.
func decodeOp(dec *codec.Decoder, b []byte) (Op, error) {
	if len(b) > maxOpBytes {
		return Op{}, fmt.Errorf("%w: %d bytes, limit %d", ErrMalformed, len(b), maxOpBytes)
	}
	if len(b) == 0 {
		return Op{}, fmt.Errorf("%w: empty", ErrMalformed)
	}
	// A fresh Op each time: go-msgpack decodes a []byte field into the
	// field's existing backing array, which must never be a stored value.
	// Decoding from bytes copies []byte fields (it never aliases b).
	var op Op
	dec.ResetBytes(b)
	if err := dec.Decode(&op); err != nil {
		return Op{}, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if n := dec.NumBytesRead(); n != len(b) {
		return Op{}, fmt.Errorf("%w: %d trailing bytes", ErrMalformed, len(b)-n)
	}
	if err := ValidateOp(op); err != nil {
		return Op{}, err
	}
	return op, nil
}
