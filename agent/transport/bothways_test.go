package transport

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mastership/mastership/agent/core"
)

// end is one agent's transport on a listener of its own, counting its
// dials and the streams its peers closed.
type end struct {
	addr   string
	tr     *Transport
	box    inbox
	dials  atomic.Int64
	mu     sync.Mutex
	closed []uint64
}

func newEnd(t *testing.T, id uint64, token string, authorize func(string) error) *end {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, streams := Mux(ln)
	e := &end{addr: ln.Addr().String()}
	var d net.Dialer
	e.tr = New(Config{ID: id, Token: token, Authorize: authorize, Handler: e.box.add,
		Dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
			e.dials.Add(1)
			return d.DialContext(ctx, network, addr)
		},
		Closed: func(from uint64) { e.mu.Lock(); e.closed = append(e.closed, from); e.mu.Unlock() }})
	go e.tr.Accept(streams)
	t.Cleanup(func() { e.tr.Close(); ln.Close() })
	return e
}

func (e *end) closedBy() []uint64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]uint64(nil), e.closed...)
}

func (e *end) commits() []uint64 {
	e.box.mu.Lock()
	defer e.box.mu.Unlock()
	var c []uint64
	for _, m := range e.box.got {
		c = append(c, m.Commit)
	}
	return c
}

// The higher ID answers on the stream the lower one opened: one TCP
// connection carries both ways, in order, and the higher one never dials.
func TestAnswersRideTheOpenersStream(t *testing.T) {
	low, high := newEnd(t, 1, "", nil), newEnd(t, 2, "", nil)
	low.tr.Send(high.addr, core.Message{Type: core.MsgAppend, From: 1, To: 2, Commit: 1})
	waitFor(t, "the lower one's message", func() bool { return high.box.len() == 1 })
	const n = 500
	for i := 1; i <= n; i++ {
		high.tr.Send(low.addr, core.Message{Type: core.MsgAppendResp, From: 2, To: 1, Commit: uint64(i)})
	}
	waitFor(t, "the answers", func() bool { return low.box.len() == n })
	for i, c := range low.commits() {
		if c != uint64(i+1) {
			t.Fatalf("answer %d has commit %d: out of order", i, c)
		}
	}
	low.tr.Send(high.addr, core.Message{Type: core.MsgAppend, From: 1, To: 2, Commit: 2})
	waitFor(t, "the lower one's second message", func() bool { return high.box.len() == 2 })
	if d := high.dials.Load(); d != 0 {
		t.Fatalf("the higher ID dialed %d times; it should answer on the lower one's stream", d)
	}
	if d := low.dials.Load(); d != 1 {
		t.Fatalf("the lower ID dialed %d times, want 1", d)
	}
	if c := low.tr.openConns() + high.tr.openConns(); c != 2 {
		t.Fatalf("%d connection ends open, want the two ends of one stream", c)
	}
}

// The lower ID does not answer on the higher one's stream: it dials, and
// from then on the higher one sends on that stream.
func TestTheLowerIDDials(t *testing.T) {
	low, high := newEnd(t, 1, "", nil), newEnd(t, 2, "", nil)
	high.tr.Send(low.addr, core.Message{Type: core.MsgAppend, From: 2, To: 1, Commit: 1})
	waitFor(t, "the higher one's message", func() bool { return low.box.len() == 1 })
	low.tr.Send(high.addr, core.Message{Type: core.MsgAppendResp, From: 1, To: 2, Commit: 1})
	waitFor(t, "the lower one's answer", func() bool { return high.box.len() == 1 })
	if d := low.dials.Load(); d != 1 {
		t.Fatalf("the lower ID dialed %d times, want 1", d)
	}
	// The higher one now sends on the lower one's stream; its own goes
	// idle. Every message arrives.
	for i := 2; i <= 50; i++ {
		high.tr.Send(low.addr, core.Message{Type: core.MsgAppend, From: 2, To: 1, Commit: uint64(i)})
	}
	waitFor(t, "the higher one's later messages", func() bool { return low.box.len() == 50 })
	if d := high.dials.Load(); d != 1 {
		t.Fatalf("the higher ID dialed %d times, want its first only", d)
	}
}

// A peer that answers on a stream and then ends is noticed on that
// stream (Closed names it), and the next message to its address, a
// restarted process, is dialed afresh and heard.
func TestAnswersFallBackToADial(t *testing.T) {
	high := newEnd(t, 2, "", nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_, streams := Mux(ln)
	var lowBox inbox
	low := New(Config{ID: 1, Handler: lowBox.add})
	go low.Accept(streams)
	low.Send(high.addr, core.Message{Type: core.MsgAppend, From: 1, To: 2, Commit: 1})
	waitFor(t, "the lower one's message", func() bool { return high.box.len() == 1 })
	high.tr.Send(addr, core.Message{Type: core.MsgAppendResp, From: 2, To: 1, Commit: 1})
	waitFor(t, "the answer", func() bool { return lowBox.len() == 1 })

	low.Close() // the process ends
	ln.Close()
	waitFor(t, "the higher one to see the stream end", func() bool {
		high.tr.mu.Lock()
		defer high.tr.mu.Unlock()
		return high.tr.replies[1] == nil
	})
	if got := high.closedBy(); len(got) != 1 || got[0] != 1 {
		t.Fatalf("Closed named %v, want [1]", got)
	}
	ln, err = net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listen again on %s: %v", addr, err)
	}
	defer ln.Close()
	_, streams = Mux(ln)
	var fresh inbox
	low = New(Config{ID: 1, Handler: fresh.add})
	defer low.Close()
	go low.Accept(streams)
	high.tr.Send(addr, core.Message{Type: core.MsgAppendResp, From: 2, To: 1, Commit: 2})
	waitFor(t, "the message after the restart", func() bool { return fresh.len() == 1 })
	if d := high.dials.Load(); d != 1 {
		t.Fatalf("the higher ID dialed %d times, want 1 (after the restart)", d)
	}
}

// The opener of a stream closes it when the peer answers on it with a
// SIGKILL of its own: Closed names the peer, as for an inbound stream.
func TestClosedOnAnOpenedStream(t *testing.T) {
	low, high := newEnd(t, 1, "", nil), newEnd(t, 2, "", nil)
	low.tr.Send(high.addr, core.Message{Type: core.MsgAppend, From: 1, To: 2, Commit: 1})
	waitFor(t, "the lower one's message", func() bool { return high.box.len() == 1 })
	high.tr.Send(low.addr, core.Message{Type: core.MsgAppendResp, From: 2, To: 1, Commit: 1})
	waitFor(t, "the answer", func() bool { return low.box.len() == 1 })
	high.tr.Close()
	waitFor(t, "Closed on the opened stream", func() bool { return len(low.closedBy()) > 0 })
	if got := low.closedBy(); len(got) != 1 || got[0] != 2 {
		t.Fatalf("Closed named %v, want [2]", got)
	}
}

// Answers on an opened stream pass the opener's Authorize: a peer with a
// refused token is not heard, and its stream is dropped.
func TestAnswersNeedTheToken(t *testing.T) {
	low := newEnd(t, 1, "low", func(tok string) error {
		if tok != "good" {
			return errors.New("wrong token")
		}
		return nil
	})
	for _, tok := range []string{"bad", "good"} {
		high := newEnd(t, 2, tok, nil)
		low.tr.Send(high.addr, core.Message{Type: core.MsgAppend, From: 1, To: 2, Commit: 1})
		waitFor(t, "the lower one's message", func() bool { return high.box.len() == 1 })
		high.tr.Send(low.addr, core.Message{Type: core.MsgAppendResp, From: 2, To: 1, Commit: 1})
		if tok == "bad" {
			// Refused: low drops its stream to high (and dials anew on
			// its next message), having handled nothing.
			waitFor(t, "the refused stream to close", func() bool { return low.tr.openConns() == 0 })
			if n := low.box.len(); n != 0 {
				t.Fatalf("a refused token's answer was handled (%d messages)", n)
			}
			continue
		}
		waitFor(t, "the authorized answer", func() bool { return low.box.len() == 1 })
	}
}

// A peer that answers on an opened stream with hostile bytes loses the
// stream; nothing it sent after the fault is handled, and the opener
// dials anew on its next message.
func TestHostileAnswers(t *testing.T) {
	frame := func(from uint64) []byte {
		f := core.AppendWire(nil, &core.Message{Type: core.MsgAppendResp, From: from, To: 1, Commit: 9})
		return append(binary.BigEndian.AppendUint32(nil, uint32(len(f))), f...)
	}
	hello := []byte{0, 0, 0, 0}
	huge := binary.BigEndian.AppendUint32(nil, 1<<30)
	cases := []struct {
		name    string
		answer  []byte
		handled int
	}{
		{"hello announcing 1 GiB", huge, 0},
		{"hello cut", []byte{0, 0, 0, 9, 'a'}, 0},
		{"frame over the cap", append(append([]byte{}, hello...), binary.BigEndian.AppendUint32(nil, MaxFrameBytes+1)...), 0},
		{"frame of garbage", append(append([]byte{}, hello...), 0, 0, 0, 2, 0xc1, 0xc1), 0},
		{"frame cut", append(append([]byte{}, hello...), frame(2)[:9]...), 0},
		{"two senders", append(append(append([]byte{}, hello...), frame(2)...), frame(3)...), 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			low := newEnd(t, 1, "", nil)
			low.tr.Send(ln.Addr().String(), core.Message{Type: core.MsgAppend, From: 1, To: 2, Commit: 1})
			c, err := ln.Accept()
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			opening := make([]byte, len(Magic)+4)
			if _, err := io.ReadFull(c, opening); err != nil {
				t.Fatal(err)
			}
			c.Write(tc.answer)
			if tc.name == "frame cut" || tc.name == "hello cut" {
				c.(*net.TCPConn).CloseWrite()
			}
			// The opener closes the stream: reading it ends.
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			if _, err := io.Copy(io.Discard, c); err != nil {
				t.Fatalf("the stream stayed open: %v", err)
			}
			if n := low.box.len(); n != tc.handled {
				t.Fatalf("%d messages handled, want %d", n, tc.handled)
			}
			// The next message dials anew.
			low.tr.Send(ln.Addr().String(), core.Message{Type: core.MsgAppend, From: 1, To: 2, Commit: 2})
			c2, err := ln.Accept()
			if err != nil {
				t.Fatal(err)
			}
			c2.Close()
			if d := low.dials.Load(); d != 2 {
				t.Fatalf("%d dials, want 2", d)
			}
		})
	}
}

// An inbound stream whose frames name two senders is closed at the
// second: a stream speaks for one agent.
func TestAStreamHasOneSender(t *testing.T) {
	high := newEnd(t, 2, "", nil)
	c, err := net.Dial("tcp", high.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	f := func(from uint64) []byte {
		b := core.AppendWire(nil, &core.Message{Type: core.MsgAppend, From: from, To: 2, Commit: from})
		return append(binary.BigEndian.AppendUint32(nil, uint32(len(b))), b...)
	}
	c.Write(append(append(emptyHello(), f(1)...), f(3)...))
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.Copy(io.Discard, c); err != nil {
		t.Fatalf("the stream stayed open: %v", err)
	}
	if got := high.commits(); len(got) != 1 || got[0] != 1 {
		t.Fatalf("handled %v, want the first sender's message only", got)
	}
}
