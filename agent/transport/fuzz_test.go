package transport

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"testing"

	"github.com/mastership/mastership/agent/core"
	"github.com/mastership/mastership/naming/api"
)

// Any bytes on a stream, after its hello, are read frame by frame without
// a panic and without allocating more than arrived: each frame is a
// message or an error, and a message that decodes encodes again to a
// frame that decodes to the same message.
func FuzzReadFrame(f *testing.F) {
	frame := func(m core.Message) []byte {
		b := core.AppendWire(nil, &m)
		return append(binary.BigEndian.AppendUint32(nil, uint32(len(b))), b...)
	}
	f.Add(frame(core.Message{Type: core.MsgAppend, Group: "g", From: 2, To: 1, Epoch: api.Epoch{Term: 3, ID: 2}}))
	f.Add(frame(core.Message{Type: core.MsgTrigger, Group: "g", From: 2, To: 1, Epoch: api.Epoch{Term: ^uint64(0), ID: 2}}))
	f.Add(binary.BigEndian.AppendUint32(nil, MaxFrameBytes+1))
	f.Add(binary.BigEndian.AppendUint32(nil, 8<<20))
	f.Add([]byte{0, 0, 0, 3, 0xc1, 0xc1, 0xc1})
	f.Fuzz(func(t *testing.T, data []byte) {
		a, b := net.Pipe()
		defer a.Close()
		go func() {
			b.Write(data)
			b.Close()
		}()
		r := bufio.NewReader(a)
		for i := 0; i < 64; i++ {
			m, err := readFrame(a, r, StreamIdleTimeout, FrameTimeout)
			if err != nil {
				if errors.Is(err, io.EOF) {
					return
				}
				continue
			}
			enc := core.AppendWire(nil, &m)
			var again core.Message
			if err := core.DecodeWire(enc, &again); err != nil {
				t.Fatalf("a decoded frame does not decode again: %v", err)
			}
			if !bytes.Equal(core.AppendWire(nil, &again), enc) {
				t.Fatalf("a frame changed across encode and decode")
			}
		}
	})
}
