package api

import (
	"bytes"
	"fmt"
	"io"

	"github.com/hashicorp/go-msgpack/v2/codec"
)

// msgpackHandle is read-only configuration shared by every encoder; it holds
// no state that changes behaviour, only go-msgpack's per-type cache.
var msgpackHandle = func() *codec.MsgpackHandle {
	h := &codec.MsgpackHandle{}
	h.RawToString = true
	h.WriteExt = true
	return h
}()

// Encode returns v in msgpack.
func Encode(v any) ([]byte, error) {
	var buf bytes.Buffer
	if err := codec.NewEncoder(&buf, msgpackHandle).Encode(v); err != nil {
		return nil, fmt.Errorf("api: encode %T: %w", v, err)
	}
	return buf.Bytes(), nil
}

// Decode reads one msgpack value from b into v. It refuses inputs over
// MaxMessageBytes and trailing bytes.
func Decode(b []byte, v any) error {
	if len(b) > MaxMessageBytes {
		return fmt.Errorf("%w message: %d bytes, limit %d", ErrInvalid, len(b), MaxMessageBytes)
	}
	r := bytes.NewReader(b)
	if err := codec.NewDecoder(r, msgpackHandle).Decode(v); err != nil {
		return fmt.Errorf("%w message: malformed msgpack for %T: %v", ErrInvalid, v, err)
	}
	if r.Len() != 0 {
		return fmt.Errorf("%w message: %d trailing bytes after %T", ErrInvalid, r.Len(), v)
	}
	return nil
}

// NewEncoder returns a streaming msgpack encoder on w, for connections that
// carry many messages.
func NewEncoder(w io.Writer) *codec.Encoder { return codec.NewEncoder(w, msgpackHandle) }

// NewDecoder returns a streaming msgpack decoder on r.
func NewDecoder(r io.Reader) *codec.Decoder { return codec.NewDecoder(r, msgpackHandle) }
