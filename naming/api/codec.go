package api

import (
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
	var out []byte
	if err := codec.NewEncoderBytes(&out, msgpackHandle).Encode(v); err != nil {
		return nil, fmt.Errorf("api: encode %T: %w", v, err)
	}
	return out, nil
}

// Decode reads one msgpack value from b into v. It refuses inputs over
// MaxMessageBytes and trailing bytes.
func Decode(b []byte, v any) error {
	if len(b) > MaxMessageBytes {
		return fmt.Errorf("%w message: %d bytes, limit %d", ErrInvalid, len(b), MaxMessageBytes)
	}
	// The bytes decoder copies what it decodes: nothing decoded aliases b.
	d := codec.NewDecoderBytes(b, msgpackHandle)
	if err := d.Decode(v); err != nil {
		return fmt.Errorf("%w message: malformed msgpack for %T: %v", ErrInvalid, v, err)
	}
	if n := len(b) - d.NumBytesRead(); n != 0 {
		return fmt.Errorf("%w message: %d trailing bytes after %T", ErrInvalid, n, v)
	}
	return nil
}

// NewEncoder returns a streaming msgpack encoder on w, for connections that
// carry many messages.
func NewEncoder(w io.Writer) *codec.Encoder { return codec.NewEncoder(w, msgpackHandle) }

// NewDecoder returns a streaming msgpack decoder on r.
func NewDecoder(r io.Reader) *codec.Decoder { return codec.NewDecoder(r, msgpackHandle) }
