package transport

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/mastership/mastership/agent/core"
	"github.com/mastership/mastership/agent/rlog"
)

// syncBuffer is a bytes.Buffer safe for a logger's writes and a test's
// reads at once.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

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
	return newEndWith(t, id, func(c *Config) { c.Token, c.Authorize = token, authorize })
}

// newEndWith is newEnd with the configuration adjusted by mod (nil: as
// is): the dialer that counts stays unless mod replaces it.
func newEndWith(t *testing.T, id uint64, mod func(*Config)) *end {
	t.Helper()
	return newEndAt(t, "127.0.0.1", nil, id, mod)
}

// newEndAt is newEndWith listening on ip, through wrap when set (TLS).
func newEndAt(t *testing.T, ip string, wrap func(net.Listener) net.Listener, id uint64, mod func(*Config)) *end {
	t.Helper()
	ln, err := net.Listen("tcp", ip+":0")
	if err != nil {
		t.Fatal(err)
	}
	routed := ln
	if wrap != nil {
		routed = wrap(ln)
	}
	_, streams := Mux(routed)
	e := &end{addr: ln.Addr().String()}
	var d net.Dialer
	cfg := Config{ID: id, Addr: e.addr, Handler: e.box.add,
		Dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
			e.dials.Add(1)
			return d.DialContext(ctx, network, addr)
		},
		Closed: func(from uint64) { e.mu.Lock(); e.closed = append(e.closed, from); e.mu.Unlock() }}
	if mod != nil {
		mod(&cfg)
	}
	e.tr = New(cfg)
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
	var lowBox inbox
	low, ln := listenAt(t, "127.0.0.1:0", Config{ID: 1, Handler: lowBox.add})
	addr := ln.Addr().String()
	low.Send(high.addr, core.Message{Type: core.MsgAppend, From: 1, To: 2, Commit: 1})
	waitFor(t, "the lower one's message", func() bool { return high.box.len() == 1 })
	high.tr.Send(addr, core.Message{Type: core.MsgAppendResp, From: 2, To: 1, Commit: 1})
	waitFor(t, "the answer", func() bool { return lowBox.len() == 1 })

	low.Close() // the process ends
	ln.Close()
	waitFor(t, "the higher one to see the stream end", func() bool {
		high.tr.mu.Lock()
		defer high.tr.mu.Unlock()
		p := high.tr.peers[addr]
		return p == nil || p.offer == nil
	})
	if got := high.closedBy(); len(got) != 1 || got[0] != 1 {
		t.Fatalf("Closed named %v, want [1]", got)
	}
	var fresh inbox
	low, ln = listenAt(t, addr, Config{ID: 1, Handler: fresh.add})
	defer ln.Close()
	defer low.Close()
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
// refused token is not heard. The opener keeps its stream, on which the
// peer (whose ACL takes the opener's token) still hears it: an ACL rolled
// out to one side first costs no dial per answer, and no false Closed.
func TestAnswersNeedTheToken(t *testing.T) {
	var logs syncBuffer
	low := newEndWith(t, 1, func(c *Config) {
		c.Token = "low"
		c.Authorize = func(tok string) error {
			if tok != "good" {
				return errors.New("wrong token")
			}
			return nil
		}
		c.Logger = hclog.New(&hclog.LoggerOptions{Output: &logs, Level: hclog.Warn})
	})
	for _, tok := range []string{"bad", "good"} {
		high := newEnd(t, 2, tok, nil)
		low.tr.Send(high.addr, core.Message{Type: core.MsgAppend, From: 1, To: 2, Commit: 1})
		waitFor(t, "the lower one's message", func() bool { return high.box.len() == 1 })
		high.tr.Send(low.addr, core.Message{Type: core.MsgAppendResp, From: 2, To: 1, Commit: 1})
		if tok == "bad" {
			waitFor(t, "the refusal", func() bool { return strings.Contains(logs.String(), "messages from a peer refused") })
			high.tr.Send(low.addr, core.Message{Type: core.MsgAppendResp, From: 2, To: 1, Commit: 2})
			low.tr.Send(high.addr, core.Message{Type: core.MsgAppend, From: 1, To: 2, Commit: 2})
			waitFor(t, "low's next message, on its stream", func() bool { return high.box.len() == 2 })
			if d := low.dials.Load(); d != 1 {
				t.Fatalf("low dialed %d times, want its first dial only", d)
			}
			if got := high.closedBy(); len(got) != 0 {
				t.Fatalf("high was told %v closed a stream", got)
			}
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
			opening := make([]byte, len(Magic)+4+2+len(low.addr))
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

// listenAt starts a transport with cfg on a listener at addr (port 0: any),
// reached at that listener's address.
func listenAt(t *testing.T, addr string, cfg Config) (*Transport, net.Listener) {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listen on %s: %v", addr, err)
	}
	_, streams := Mux(ln)
	cfg.Addr = ln.Addr().String()
	tr := New(cfg)
	go tr.Accept(streams)
	return tr, ln
}

// openAs opens a raw stream to addr as agent from reached at self (its
// hello's address), sends one message on it, and waits until the peer
// handled it: the peer then sends what it has for self on this stream.
func openAs(t *testing.T, to *end, from uint64, self string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", to.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	before := to.box.len()
	f := core.AppendWire(nil, &core.Message{Type: core.MsgAppendResp, From: from, To: to.tr.cfg.ID})
	b := append(Magic[:], 0, 0, 0, 0)
	b = binary.BigEndian.AppendUint16(b, uint16(len(self)))
	b = append(b, self...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(f)))
	if _, err := c.Write(append(b, f...)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the opener's message", func() bool { return to.box.len() == before+1 })
	return c
}

// A peer that comes back at another address (a rescheduled host) while
// its old stream is still open, silent, is sent to at its new address at
// once: a stream serves the address its opener named, not its sender's ID.
func TestAMovedPeerIsDialedAtItsNewAddress(t *testing.T) {
	high := newEnd(t, 2, "", nil)
	openAs(t, high, 1, "10.0.0.1:8946") // agent 1's old process, gone silent
	moved := newEnd(t, 1, "", nil)
	high.tr.Send(moved.addr, core.Message{Type: core.MsgAppend, From: 2, To: 1, Commit: 1})
	waitFor(t, "the message at the new address", func() bool { return moved.box.len() == 1 })
}

// An agent of another group with the same ID (a stale address book sent
// it here) does not take the messages of this group's agent: it named
// another address.
func TestAStrayOpenerTakesNoOnesMessages(t *testing.T) {
	high, low := newEnd(t, 5, "", nil), newEnd(t, 1, "", nil)
	low.tr.Send(high.addr, core.Message{Type: core.MsgAppend, Group: "a", From: 1, To: 5})
	waitFor(t, "low's message", func() bool { return high.box.len() == 1 })
	stray := newEnd(t, 1, "", nil)
	stray.tr.Send(high.addr, core.Message{Type: core.MsgAppend, Group: "b", From: 1, To: 5})
	waitFor(t, "the stray message", func() bool { return high.box.len() == 2 })
	for i := 1; i <= 10; i++ {
		high.tr.Send(low.addr, core.Message{Type: core.MsgAppend, Group: "a", From: 5, To: 1, Commit: uint64(i)})
	}
	waitFor(t, "the ten messages to low", func() bool { return low.box.len() == 10 })
	if n := stray.box.len(); n != 0 {
		t.Fatalf("the stray opener got %d messages meant for %s", n, low.addr)
	}
}

// Messages waiting for a peer's stream when it ends are not lost with it:
// they go the dialed way. Here the old process of agent 1 holds the
// stream and reads nothing, so the writer blocks on it with most of the
// messages queued; it exits, and agent 1's new process at the same
// address hears them.
func TestMessagesOutliveTheirStream(t *testing.T) {
	high, low := newEnd(t, 2, "", nil), newEnd(t, 1, "", nil)
	old := openAs(t, high, 1, low.addr)
	big := []rlog.Entry{{Index: 1, Op: make([]byte, 32<<10)}}
	const n = 600 // 19 MB: more than the socket buffers hold
	for i := 1; i <= n; i++ {
		high.tr.Send(low.addr, core.Message{Type: core.MsgAppend, From: 2, To: 1, Commit: uint64(i), Entries: big})
	}
	old.(*net.TCPConn).SetLinger(0) // a reset: what it did not read is gone
	old.Close()
	// What sat in the old stream's socket buffers is lost; the rest,
	// most of it, arrives.
	waitFor(t, "the messages after the old stream", func() bool { return low.box.len() >= n/2 })
	waitFor(t, "the last message", func() bool { c := low.commits(); return c[len(c)-1] == n })
}

// A stream this side writes on is in use whatever its opener sends: its
// reader's idle timeout does not end it while messages go out, and the
// opener is not told its peer closed it.
func TestAStreamWrittenOnIsNotIdle(t *testing.T) {
	idle := func(c *Config) { c.StreamIdleTimeout = 300 * time.Millisecond }
	low, high := newEndWith(t, 1, idle), newEndWith(t, 2, idle)
	low.tr.Send(high.addr, core.Message{Type: core.MsgAppend, From: 1, To: 2, Commit: 1})
	waitFor(t, "the lower one's message", func() bool { return high.box.len() == 1 })
	const n = 50
	for i := 1; i <= n; i++ { // 1 s of traffic one way: three idle timeouts
		high.tr.Send(low.addr, core.Message{Type: core.MsgAppend, From: 2, To: 1, Commit: uint64(i)})
		time.Sleep(20 * time.Millisecond)
	}
	waitFor(t, "the messages", func() bool { return low.box.len() == n })
	if got := low.closedBy(); len(got) != 0 {
		t.Errorf("low was told its peer %v closed its stream while it sent", got)
	}
	if d := high.dials.Load(); d != 0 {
		t.Errorf("high dialed %d times with a live stream to 1", d)
	}
}

// A hello whose address is over MaxAddrBytes, or cut, closes the stream
// before any message is handled, and offers nothing.
func TestHostileHelloAddress(t *testing.T) {
	high := newEnd(t, 2, "", nil)
	f := core.AppendWire(nil, &core.Message{Type: core.MsgAppendResp, From: 1, To: 2})
	frame := append(binary.BigEndian.AppendUint32(nil, uint32(len(f))), f...)
	for name, hello := range map[string][]byte{
		"address of 65535 bytes": append(append(Magic[:], 0, 0, 0, 0, 0xff, 0xff), frame...),
		"address cut":            append(Magic[:], 0, 0, 0, 0, 0, 9, 'h', 'o'),
	} {
		t.Run(name, func(t *testing.T) {
			c, err := net.Dial("tcp", high.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.Write(hello)
			if name == "address cut" {
				c.(*net.TCPConn).CloseWrite()
			}
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			if _, err := io.Copy(io.Discard, c); err != nil {
				t.Fatalf("the stream stayed open: %v", err)
			}
			if n := high.box.len(); n != 0 {
				t.Fatalf("%d messages handled", n)
			}
			high.tr.mu.Lock()
			defer high.tr.mu.Unlock()
			for addr, p := range high.tr.peers {
				if p.offer != nil {
					t.Fatalf("a stream was offered for %q", addr)
				}
			}
		})
	}
}
