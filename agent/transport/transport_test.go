package transport

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math/rand"
	"net"
	"net/http"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/mastership/mastership/agent/core"
	"github.com/mastership/mastership/agent/rlog"
	"github.com/mastership/mastership/gossip/faulty"
	"github.com/mastership/mastership/naming/api"
)

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

type inbox struct {
	mu  sync.Mutex
	got []core.Message
}

func (b *inbox) add(m core.Message) { b.mu.Lock(); b.got = append(b.got, m); b.mu.Unlock() }
func (b *inbox) len() int           { b.mu.Lock(); defer b.mu.Unlock(); return len(b.got) }

// One port serves HTTP and message streams; messages arrive in order.
func TestMuxAndOrderedDelivery(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	httpLn, streams := Mux(ln)
	var box inbox
	recv := New(Config{Handler: box.add})
	defer recv.Close()
	go recv.Accept(streams)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hello") })}
	go srv.Serve(httpLn)
	defer srv.Close()

	send := New(Config{})
	defer send.Close()
	const n = 2000
	for i := 1; i <= n; i++ {
		send.Send(ln.Addr().String(), core.Message{Type: core.MsgAppend, From: 1, To: 2, Commit: uint64(i)})
		if i%500 == 0 {
			// Let the writer drain so the bounded queue does not drop.
			waitFor(t, "delivery", func() bool { return box.len() >= i-100 })
		}
	}
	waitFor(t, "all messages", func() bool { return box.len() == n })
	box.mu.Lock()
	for i, m := range box.got {
		if m.Commit != uint64(i+1) {
			t.Fatalf("message %d has commit %d: out of order", i, m.Commit)
		}
	}
	box.mu.Unlock()

	resp, err := http.Get("http://" + ln.Addr().String() + "/")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "hello" {
		t.Fatalf("http through the mux: %q", b)
	}

	// A frame over the cap closes that stream; the receiver keeps serving.
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	var hdr [4]byte
	binary.BigEndian.PutUint32(hdr[:], MaxFrameBytes+1)
	c.Write(emptyHello())
	c.Write(hdr[:])
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("oversized frame did not close the stream")
	}
	c.Close()
	// Malformed msgpack in a well-sized frame too.
	c, _ = net.Dial("tcp", ln.Addr().String())
	binary.BigEndian.PutUint32(hdr[:], 2)
	c.Write(emptyHello())
	c.Write(hdr[:])
	c.Write([]byte{0xc1, 0xc1})
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("malformed frame did not close the stream")
	}
	c.Close()
	send.Send(ln.Addr().String(), core.Message{Type: core.MsgTrigger, From: 1})
	waitFor(t, "delivery after bad frames", func() bool { return box.len() == n+1 })
}

// An unreachable peer costs nothing but dropped messages; it is reached once
// it listens.
func TestUnreachablePeer(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	send := New(Config{})
	defer send.Close()
	for i := 0; i < 10; i++ {
		send.Send(addr, core.Message{Type: core.MsgAppend})
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("port reused: %v", err)
	}
	_, streams := Mux(ln)
	var box inbox
	recv := New(Config{Handler: box.add})
	defer recv.Close()
	go recv.Accept(streams)
	defer ln.Close()
	waitFor(t, "reconnect", func() bool {
		send.Send(addr, core.Message{Type: core.MsgAppend})
		return box.len() > 0
	})
}

// A peer that accepts the stream and never reads (a hung process) holds
// neither the writer for ever nor Close: the stream's writes have a
// deadline and Close closes the outbound connection.
func TestHungPeerHoldsNothing(t *testing.T) {
	f := faulty.New(rand.New(rand.NewSource(1)))
	f.Stall("127.0.0.1:1")
	tr := New(Config{Dial: faulty.NewDialer(f).DialContext})
	big := core.Message{Type: core.MsgAppend, Entries: []rlog.Entry{{Index: 1, Op: make([]byte, 256<<10)}}}
	for i := 0; i < 8; i++ {
		tr.Send("127.0.0.1:1", big)
	}
	// The writer has dialed: it now blocks on the stalled stream.
	waitFor(t, "the dial to the hung peer", func() bool { return f.Status().Sent >= 1 })
	closed := make(chan struct{})
	go func() { tr.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not return with a stream to a hung peer")
	}
}

// A frame that announces the maximum length and sends a few bytes costs
// memory in proportion to the bytes received, not to the announcement.
func TestStalledFrameCostsWhatArrived(t *testing.T) {
	client, server := net.Pipe()
	defer client.Close()
	defer server.Close()
	go func() {
		var hdr [4]byte
		binary.BigEndian.PutUint32(hdr[:], MaxFrameBytes)
		client.Write(hdr[:])
		client.Write(make([]byte, 1000))
		client.Close() // the rest never comes
	}()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	_, err := readFrame(server, bufio.NewReader(server), StreamIdleTimeout, FrameTimeout)
	runtime.ReadMemStats(&after)
	if err == nil {
		t.Fatal("a cut frame decoded")
	}
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 1<<20 {
		t.Fatalf("reading 1000 bytes of an announced %d allocated %d bytes", MaxFrameBytes, grew)
	}
}

// emptyHello opens a stream with no token and no address.
func emptyHello() []byte { return append(Magic[:], 0, 0, 0, 0, 0, 0) }

// oneFrame is a length-prefixed frame of a small message.
func oneFrame() []byte {
	f := core.AppendWire(nil, &core.Message{Type: core.MsgAppend, From: 1, To: 2, Commit: 1})
	return append(binary.BigEndian.AppendUint32(nil, uint32(len(f))), f...)
}

// A stream is read only after its hello's token passes Authorize: a
// stream without the right token, or with a hello announcing a huge token,
// is closed before any message is handled.
func TestStreamHelloAuthorized(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, streams := Mux(ln)
	var box inbox
	recv := New(Config{Handler: box.add, Authorize: func(tok string) error {
		if tok != "right-token" {
			return errors.New("wrong token")
		}
		return nil
	}})
	defer recv.Close()
	go recv.Accept(streams)
	frame := core.AppendWire(nil, &core.Message{Type: core.MsgAppend, From: 1, To: 2, Commit: 7})
	for _, tok := range []string{"", "wrong", "right-token-but-longer"} {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		b := append(Magic[:], binary.BigEndian.AppendUint32(nil, uint32(len(tok)))...)
		b = append(b, tok...)
		b = append(b, 0, 0) // no address
		b = binary.BigEndian.AppendUint32(b, uint32(len(frame)))
		c.Write(append(b, frame...))
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Read(make([]byte, 1)); err == nil || isTimeout(err) {
			t.Fatalf("token %q: the stream stayed open (%v)", tok, err)
		}
		c.Close()
	}
	c, _ := net.Dial("tcp", ln.Addr().String())
	var hdr [4]byte
	binary.BigEndian.PutUint32(hdr[:], 1<<30)
	c.Write(Magic[:])
	c.Write(hdr[:])
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil || isTimeout(err) {
		t.Fatal("a hello announcing a 1 GiB token did not close the stream")
	}
	c.Close()
	good := New(Config{Token: "right-token"})
	defer good.Close()
	good.Send(ln.Addr().String(), core.Message{Type: core.MsgAppend, From: 1, To: 2, Commit: 8})
	waitFor(t, "the authorized message", func() bool { return box.len() == 1 })
	box.mu.Lock()
	defer box.mu.Unlock()
	if box.got[0].Commit != 8 {
		t.Fatalf("delivered %+v: a refused stream's message got through", box.got)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// openConns counts the connections the transport holds.
func (t *Transport) openConns() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.conns)
}

// A peer that restarts on its address hears the first message sent after
// it: the stream to its old process is dropped when that process closes
// its end, rather than taking one more write that nobody reads.
func TestRestartedPeerHearsTheFirstMessage(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_, streams := Mux(ln)
	var old inbox
	recv := New(Config{Handler: old.add})
	go recv.Accept(streams)
	send := New(Config{})
	defer send.Close()
	send.Send(addr, core.Message{Type: core.MsgAppend, Commit: 1})
	waitFor(t, "the first message", func() bool { return old.len() == 1 })

	// The peer's process ends: its streams and its listener close.
	recv.Close()
	ln.Close()
	waitFor(t, "the sender to drop its stream to the old process", func() bool { return send.openConns() == 0 })
	ln, err = net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listen again on %s: %v", addr, err)
	}
	defer ln.Close()
	_, streams = Mux(ln)
	var fresh inbox
	recv = New(Config{Handler: fresh.add})
	defer recv.Close()
	go recv.Accept(streams)
	send.Send(addr, core.Message{Type: core.MsgVoteResp, Commit: 2})
	waitFor(t, "the one message sent after the restart", func() bool { return fresh.len() == 1 })
}

// The largest append the core sends (its entries' operations fill
// core.MaxAppendBytes, or one entry of the largest request) fits a frame,
// and reads back whole.
func TestLargestAppendFitsAFrame(t *testing.T) {
	for _, shape := range []struct{ n, size int }{{256, core.MaxAppendBytes / 256}, {1, api.MaxMessageBytes}} {
		m := core.Message{Type: core.MsgAppend, Group: "g", From: 1, To: 2}
		for i := range shape.n {
			m.Entries = append(m.Entries, rlog.Entry{Index: uint64(i + 1), Client: 1<<64 - 1, Seq: 1<<64 - 1,
				Op: bytes.Repeat([]byte{byte(i)}, shape.size)})
		}
		client, server := net.Pipe()
		errc := make(chan error, 1)
		go func() {
			w := bufio.NewWriter(client)
			_, err := writeFrame(w, &m, nil)
			if err == nil {
				err = w.Flush()
			}
			errc <- err
			client.Close()
		}()
		got, err := readFrame(server, bufio.NewReader(server), StreamIdleTimeout, FrameTimeout)
		server.Close()
		if werr := <-errc; werr != nil {
			t.Fatalf("%d entries of %d bytes: write: %v", shape.n, shape.size, werr)
		}
		if err != nil {
			t.Fatalf("%d entries of %d bytes: read: %v", shape.n, shape.size, err)
		}
		if len(got.Entries) != shape.n || !bytes.Equal(got.Entries[shape.n-1].Op, m.Entries[shape.n-1].Op) {
			t.Fatalf("%d entries of %d bytes read back as %d", shape.n, shape.size, len(got.Entries))
		}
	}
}

// Every read of an inbound stream has a deadline: a stream that opens and
// never sends its hello, a frame that announces its length and stalls,
// and a stream silent between frames are each closed by this side, by the
// deadline of that step (the other one is set far out, so only the
// deadline under test can close it). A stream that keeps sending frames
// more often than the idle timeout stays open.
func TestStreamDeadlines(t *testing.T) {
	const short, long = 200 * time.Millisecond, time.Minute
	hello := emptyHello()
	stall := binary.BigEndian.AppendUint32(nil, MaxFrameBytes)
	stall = append(stall, make([]byte, 100)...)
	for _, tc := range []struct {
		name        string
		frame, idle time.Duration
		send        []byte
	}{
		{"hello never sent", short, long, Magic[:]},
		{"frame stalls after its length", short, long, append(append([]byte(nil), hello...), stall...)},
		{"silent after its hello", short, long, hello},
		{"silent between frames", long, short, append(append([]byte(nil), hello...), oneFrame()...)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			_, streams := Mux(ln)
			recv := New(Config{Handler: func(core.Message) {}, FrameTimeout: tc.frame, StreamIdleTimeout: tc.idle})
			defer recv.Close()
			go recv.Accept(streams)
			c, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if _, err := c.Write(tc.send); err != nil {
				t.Fatal(err)
			}
			c.SetReadDeadline(time.Now().Add(30 * time.Second))
			if _, err := c.Read(make([]byte, 1)); err == nil || isTimeout(err) {
				t.Fatalf("the stream stayed open (%v): the %s deadline did not close it", err, tc.name)
			}
		})
	}
	t.Run("frames more often than the idle timeout", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		_, streams := Mux(ln)
		var box inbox
		recv := New(Config{Handler: box.add, FrameTimeout: short, StreamIdleTimeout: 4 * short})
		defer recv.Close()
		go recv.Accept(streams)
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.Write(hello)
		const frames = 12 // 12 x short/2: longer than the idle timeout
		for i := 1; i <= frames; i++ {
			f := core.AppendWire(nil, &core.Message{Type: core.MsgAppend, From: 1, To: 2, Commit: uint64(i)})
			if _, err := c.Write(append(binary.BigEndian.AppendUint32(nil, uint32(len(f))), f...)); err != nil {
				t.Fatalf("frame %d: %v", i, err)
			}
			waitFor(t, "the frame delivered", func() bool { return box.len() == i })
			time.Sleep(short / 2) // the pace of the sender, not a synchronisation
		}
	})
}
