// Package transport carries agent-to-agent messages: persistent TCP
// streams, length-prefixed frames of core's binary message form
// (core.AppendWire), sent in order and pipelined (a sender never waits for
// a reply). It shares the agent's API port with HTTP: a connection that
// starts with the stream magic is a message stream, anything else goes to
// the HTTP server (see Mux).
//
// Two agents share one stream both ways: the one with the higher ID sends
// on the stream the lower one opened to it (once the lower one has sent on
// it), and dials only while there is none. An append and its answer then
// travel on one TCP connection, and each carries the acknowledgement of
// the other: two streams, one each way, cost every message a bare TCP ACK
// as well (on loopback about a quarter of the CPU of a round trip). The
// opener names the address it is reached at in its hello, and its stream
// serves the messages sent to that address: a peer that comes back at
// another address is dialed there, and one that opens a stream from the
// wrong group does not take another's messages. With TLS the opener's
// certificate must cover that address's host (Config.Vouch): an agent
// cannot claim the address of one on another host and take the messages
// meant for it (a certificate names no port: processes of one host can).
//
// Goroutines: one writer per peer address (owns that peer's queue, the
// connection it dialed and the peer's stream it writes on) and one reader
// of the dialed connection, one reader per inbound connection, and Mux's
// accept loop. One writer per address keeps the messages to a peer in one
// queue: none is lost when a stream ends (the writer takes the other way),
// and they stay in order but for those in flight on the old stream at a
// change of stream, which the receiver's two readers may hand over after
// the first ones of the new (the protocol resends what does not fit).
//
// Usage:
//
//	httpLn, streams := transport.Mux(ln)
//	t := transport.New(transport.Config{Handler: func(m core.Message) { inbound <- m }})
//	go t.Accept(streams)
//	go http.Serve(httpLn, handler)
//	t.Send("127.0.0.2:8946", msg) // queued; dropped if the peer is unreachable
package transport

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/mastership/mastership/agent/core"
	"github.com/mastership/mastership/naming/auth"
)

// Magic opens every message stream. It is followed by the hello: a 4-byte
// length and the sender's token (up to MaxTokenBytes, possibly empty),
// which the receiver checks against its ACL before it reads a message,
// then a 2-byte length and the address the sender is reached at (up to
// MaxAddrBytes, empty when it does not take messages on the stream). The
// receiver may send on the stream too (see the package comment): its
// first bytes are then a hello of its own (length and token, no magic, no
// address), which the opener checks the same way before it reads a reply.
// The 4 is the stream format's: since 3, frames carry core's binary form
// of a message (core.AppendWire), no longer msgpack; since 4, a stream
// carries messages both ways.
var Magic = [4]byte{'M', 'S', 'H', '4'}

// MaxTokenBytes bounds the token of a stream's hello.
const MaxTokenBytes = 1024

// MaxAddrBytes bounds the address of a stream's hello.
const MaxAddrBytes = 255

// maxBackoff caps the wait between dials of an unreachable peer.
const maxBackoff = 100 * time.Millisecond

// writeTimeout bounds the writing of one batch to a peer.
const writeTimeout = 2 * time.Second

// MaxFrameBytes caps one encoded message.
const MaxFrameBytes = 8 << 20

// ErrFrameTooLarge is returned for a frame over MaxFrameBytes.
var ErrFrameTooLarge = errors.New("transport: frame too large")

// Config configures a Transport.
type Config struct {
	// ID is this agent's; it decides which of two agents sends on the
	// other's stream (the higher ID does). 0 never does.
	ID uint64
	// Addr is the address peers send to this agent at (its advertised
	// API address), named in the hello of every stream it opens: the
	// peer sends what it has for Addr on that stream. Empty: the peer
	// dials as for a stream of MSH3.
	Addr string
	// Dial opens connections; nil means a net.Dialer with a 1s timeout.
	// Tests pass a fault-injecting dialer.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// Vouch, when set, checks that the opener of an inbound stream may
	// claim the address its hello names (auth.CoversAddr: its TLS
	// certificate is valid for it). A stream it refuses is closed unread:
	// its opener would otherwise take the messages meant for the agent at
	// that address.
	Vouch func(c net.Conn, addr string) error

	// Accepted, when set, wraps every inbound stream before it is read
	// (tests inject faults with it).
	Accepted func(net.Conn) net.Conn
	// Handler receives every inbound message, from reader goroutines.
	Handler func(core.Message)
	// Token is presented in the hello of every stream this transport
	// opens.
	Token string
	// Authorize, when set, vets the token of every inbound stream's
	// hello; a stream it refuses is closed before any message is read.
	Authorize func(token string) error
	// Closed, when set, is called when a peer closes a stream it sent
	// messages on (an exiting process closes its streams at once, a
	// SIGKILL too): from is the sender its messages named. A stream this
	// side closes (idle, too slow, refused) calls nothing.
	Closed func(from uint64)
	// QueueLen bounds each peer's send queue; a full queue drops the
	// message (the protocol resends). Default 1024.
	QueueLen int
	// FrameTimeout bounds the time from a frame's length (or a stream's
	// opening) to its last byte; StreamIdleTimeout bounds the silence of
	// an inbound stream between frames. Zero means the defaults of the
	// same name; tests shorten them.
	FrameTimeout      time.Duration
	StreamIdleTimeout time.Duration
	Logger            hclog.Logger
}

// Transport sends and receives core messages.
type Transport struct {
	cfg    Config
	logger hclog.Logger
	ctx    context.Context
	cancel context.CancelFunc
	mu     sync.Mutex
	peers  map[string]*peer
	conns  map[net.Conn]struct{}
	wg     sync.WaitGroup
}

type peer struct {
	addr  string
	queue chan core.Message
	// offer is the inbound stream whose opener named addr in its hello,
	// the one the writer sends on while it lasts (see the package
	// comment); nil while there is none. Under Transport.mu.
	offer net.Conn
}

// New returns a transport; call Close to stop it.
func New(cfg Config) *Transport {
	if cfg.Dial == nil {
		cfg.Dial = (&net.Dialer{Timeout: time.Second}).DialContext
	}
	if cfg.QueueLen == 0 {
		cfg.QueueLen = 1024
	}
	if cfg.FrameTimeout <= 0 {
		cfg.FrameTimeout = FrameTimeout
	}
	if cfg.StreamIdleTimeout <= 0 {
		cfg.StreamIdleTimeout = StreamIdleTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	if len(cfg.Addr) > MaxAddrBytes {
		cfg.Logger.Warn("transport: address too long to name in a hello; peers dial this agent", "addr", cfg.Addr)
		cfg.Addr = ""
	}
	t := &Transport{cfg: cfg, logger: cfg.Logger.Named("transport"), peers: map[string]*peer{}, conns: map[net.Conn]struct{}{}}
	t.ctx, t.cancel = context.WithCancel(context.Background())
	return t
}

// Send queues m for the peer at addr (whose ID is m.To). It never blocks.
func (t *Transport) Send(addr string, m core.Message) {
	t.mu.Lock()
	if t.ctx.Err() != nil {
		t.mu.Unlock()
		return
	}
	p := t.peerLocked(addr)
	t.mu.Unlock()
	select {
	case p.queue <- m:
	default:
		t.logger.Trace("send queue full; message dropped", "peer", addr, "type", m.Type)
	}
}

// peerLocked returns the peer at addr, starting its writer if it has none.
// Under t.mu, with the transport open.
func (t *Transport) peerLocked(addr string) *peer {
	p := t.peers[addr]
	if p == nil {
		p = &peer{addr: addr, queue: make(chan core.Message, t.cfg.QueueLen)}
		t.peers[addr] = p
		t.wg.Add(1)
		go t.runPeer(p)
	}
	return p
}

// runPeer owns one peer's connections: it writes frames in order on the
// stream the peer opened to it if there is one (offerReplies), else on one
// it dials on demand, and on error drops the connection and backs off. A
// connection that was idle may have died with its peer (a restart): a
// batch that fails on it is sent once more on a fresh connection, so a
// reply to a restarted peer is not lost to the stale one; a batch that
// fails on the peer's stream goes the dialed way.
func (t *Transport) runPeer(p *peer) {
	defer t.wg.Done()
	var (
		conn    net.Conn
		w       *bufio.Writer
		backoff = 10 * time.Millisecond
		retryAt time.Time
	)
	closeConn := func() {
		if conn != nil {
			t.untrack(conn)
			conn.Close()
			conn, w = nil, nil
		}
	}
	defer closeConn()
	dial := func() bool {
		ctx, cancel := context.WithTimeout(t.ctx, time.Second)
		c, err := t.cfg.Dial(ctx, "tcp", p.addr)
		cancel()
		if err == nil {
			if !t.track(c) {
				c.Close() // closing
				return false
			}
			c.SetWriteDeadline(time.Now().Add(writeTimeout))
			if _, err = c.Write(t.hello()); err != nil {
				t.untrack(c)
				c.Close()
			} else {
				t.wg.Add(1)
				go t.readReplies(c)
			}
		}
		if err != nil {
			t.logger.Trace("dial failed", "peer", p.addr, "error", err)
			// Short cap: a peer that comes back must hear us within a
			// heartbeat or two (its votes and appends depend on it).
			retryAt = time.Now().Add(backoff)
			backoff = min(2*backoff, maxBackoff)
			return false
		}
		conn, w = c, bufio.NewWriterSize(c, 64<<10)
		backoff = 10 * time.Millisecond
		return true
	}
	var frame []byte // reused from frame to frame
	send := func(batch []core.Message) error {
		var err error
		frame, err = writeBatch(conn, w, batch, frame)
		return err
	}
	// The peer's own stream, while it offers one: its writer, and when
	// its read deadline was last pushed back.
	var (
		offer    net.Conn
		ow       *bufio.Writer
		extended time.Time
	)
	sendOffered := func(batch []core.Message) bool {
		t.mu.Lock()
		c := p.offer
		t.mu.Unlock()
		if c != offer {
			offer, ow, extended = c, nil, time.Time{}
			if c != nil {
				// This side's hello first: its token, for the opener's ACL.
				ow = bufio.NewWriterSize(c, 64<<10)
				ow.Write(t.replyHello())
			}
		}
		if offer == nil {
			return false
		}
		var err error
		if frame, err = writeBatch(offer, ow, batch, frame); err != nil {
			t.logger.Debug("the peer's stream broken; dialing", "peer", p.addr, "error", err)
			offer.Close() // its reader ends and withdraws it
			t.mu.Lock()
			if p.offer == offer {
				p.offer = nil
			}
			t.mu.Unlock()
			offer, ow = nil, nil
			return false
		}
		// The stream is in use while this side writes on it, whatever its
		// opener sends: its reader's idle timeout must not end it.
		if now := time.Now(); now.Sub(extended) > t.cfg.StreamIdleTimeout/4 {
			offer.SetReadDeadline(now.Add(t.cfg.StreamIdleTimeout))
			extended = now
		}
		return true
	}
	batch := make([]core.Message, 0, 64)
	for {
		var m core.Message
		select {
		case <-t.ctx.Done():
			return
		case m = <-p.queue:
		}
		batch = append(batch[:0], m)
		for len(p.queue) > 0 && len(batch) < cap(batch) {
			batch = append(batch, <-p.queue)
		}
		if sendOffered(batch) {
			continue
		}
		fresh := false
		if conn == nil {
			if time.Now().Before(retryAt) {
				t.logger.Trace("peer in backoff; messages dropped", "peer", p.addr, "count", len(batch))
				continue // unreachable: drop until the backoff ends
			}
			if !dial() {
				continue
			}
			fresh = true
		}
		err := send(batch)
		if err != nil && !fresh {
			t.logger.Debug("stream to peer broken; redialing", "peer", p.addr, "error", err)
			closeConn()
			if dial() {
				err = send(batch)
			}
		}
		if err != nil {
			t.logger.Debug("stream to peer broken", "peer", p.addr, "error", err)
			closeConn()
		}
	}
}

// readReplies reads an outbound stream: the peer's hello once it sends on
// it (see the package comment), then its messages, until the stream ends.
// A peer that exits (a restart, a SIGKILL) closes its end, and the kernel
// accepts the next write on ours anyway: that message would be lost, and
// with it a vote or an append answer to the restarted peer. Dropping the
// stream as soon as its end is closed makes the next message dial afresh.
// A peer that sends a bad frame or a second sender's loses the stream
// too; one whose token is refused is not heard.
func (t *Transport) readReplies(c net.Conn) {
	defer t.wg.Done()
	defer func() {
		t.untrack(c)
		c.Close()
	}()
	r := bufio.NewReaderSize(c, 16<<10)
	// The peer may never send: no deadline before its first byte.
	if _, err := r.Peek(1); err != nil {
		return
	}
	if _, err := t.readHello(c, r, false); errors.Is(err, errRefused) {
		// Not a reason to drop our stream, on which the peer takes our
		// messages: an ACL rolled out to one side before the other
		// would cost a dial and a false Closed on the peer at every
		// answer. What it sends is read and thrown away.
		t.logger.Warn("messages from a peer refused: its token is not in this agent's ACL", "remote", c.RemoteAddr(), "error", err)
		c.SetReadDeadline(time.Time{})
		io.Copy(io.Discard, r)
		return
	} else if err != nil {
		t.logger.Debug("replies on an outbound stream refused", "remote", c.RemoteAddr(), "error", err)
		return
	}
	t.readMessages(c, r, 0, 0, "")
}

// readMessages reads frames until the stream ends and hands each to the
// handler. Every frame of a stream must name one sender; the first names
// it. first and idle bound the silence before the first frame and between
// later ones (0: none). An inbound stream whose opener named the address
// addr is offered for the messages to addr (offerReplies). It returns the
// sender (0 if no frame came).
func (t *Transport) readMessages(c net.Conn, r *bufio.Reader, first, idle time.Duration, addr string) uint64 {
	var from uint64
	wait := first
	for {
		m, err := readFrame(c, r, wait, t.cfg.FrameTimeout)
		if err == nil && from != 0 && m.From != from {
			err = fmt.Errorf("transport: a stream of sender %d carries a message from %d", from, m.From)
		}
		if err != nil {
			if !errors.Is(err, io.EOF) && t.ctx.Err() == nil {
				t.logger.Debug("stream closed", "remote", c.RemoteAddr(), "error", err)
			}
			if peerClosed(err) && from != 0 && t.ctx.Err() == nil && t.cfg.Closed != nil {
				t.cfg.Closed(from)
			}
			return from
		}
		if from == 0 {
			from = m.From
			if addr != "" {
				t.offerReplies(c, from, addr)
			}
		}
		wait = idle
		t.cfg.Handler(m)
	}
}

// hello is the opening of a stream: the magic, the token and the address
// this side is reached at.
func (t *Transport) hello() []byte {
	b := make([]byte, 0, 10+len(t.cfg.Token)+len(t.cfg.Addr))
	b = append(b, Magic[:]...)
	b = append(b, t.replyHello()...)
	b = binary.BigEndian.AppendUint16(b, uint16(len(t.cfg.Addr)))
	return append(b, t.cfg.Addr...)
}

// replyHello opens what this side sends on a stream the peer opened: the
// token alone.
func (t *Transport) replyHello() []byte {
	b := binary.BigEndian.AppendUint32(make([]byte, 0, 4+len(t.cfg.Token)), uint32(len(t.cfg.Token)))
	return append(b, t.cfg.Token...)
}

// errRefused wraps Authorize's refusal of a hello's token.
var errRefused = errors.New("transport: token refused")

// readHello reads and vets a hello's token, and with addr (the opener's
// hello) the address that follows it.
func (t *Transport) readHello(c net.Conn, r *bufio.Reader, addr bool) (string, error) {
	c.SetReadDeadline(time.Now().Add(t.cfg.FrameTimeout))
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return "", fmt.Errorf("transport: hello: %w", err)
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n > MaxTokenBytes {
		return "", fmt.Errorf("transport: hello announces a token of %d bytes, limit %d", n, MaxTokenBytes)
	}
	tok := make([]byte, n)
	if _, err := io.ReadFull(r, tok); err != nil {
		return "", fmt.Errorf("transport: hello: %w", err)
	}
	if t.cfg.Authorize != nil {
		if err := t.cfg.Authorize(string(tok)); err != nil {
			return "", fmt.Errorf("%w: %w", errRefused, err)
		}
	}
	if !addr {
		return "", nil
	}
	if _, err := io.ReadFull(r, hdr[:2]); err != nil {
		return "", fmt.Errorf("transport: hello: %w", err)
	}
	n = uint32(binary.BigEndian.Uint16(hdr[:2]))
	if n > MaxAddrBytes {
		return "", fmt.Errorf("transport: hello announces an address of %d bytes, limit %d", n, MaxAddrBytes)
	}
	a := make([]byte, n)
	if _, err := io.ReadFull(r, a); err != nil {
		return "", fmt.Errorf("transport: hello: %w", err)
	}
	return string(a), nil
}

// writeBatch writes batch's frames to c through w, encoded into frame
// (returned for reuse), and flushes. The deadline covers every write of
// the batch: the buffer flushes by itself when it fills, and a peer that
// stopped reading must not hold the writer (or Close) forever.
func writeBatch(c net.Conn, w *bufio.Writer, batch []core.Message, frame []byte) ([]byte, error) {
	c.SetWriteDeadline(time.Now().Add(writeTimeout))
	var err error
	for i := range batch {
		if frame, err = writeFrame(w, &batch[i], frame); err != nil {
			return frame, err
		}
	}
	return frame, w.Flush()
}

// writeFrame writes m as one frame, encoded into buf (returned for reuse).
func writeFrame(w *bufio.Writer, m *core.Message, buf []byte) ([]byte, error) {
	buf = core.AppendWire(append(buf[:0], 0, 0, 0, 0), m)
	n := len(buf) - 4
	if n > MaxFrameBytes {
		return buf, fmt.Errorf("%w: %d bytes", ErrFrameTooLarge, n)
	}
	binary.BigEndian.PutUint32(buf[:4], uint32(n))
	_, err := w.Write(buf)
	if cap(buf) > 1<<20 {
		buf = nil // one huge frame does not pin its buffer
	}
	return buf, err
}

// Accept serves every stream connection from conns until Close.
func (t *Transport) Accept(conns <-chan net.Conn) {
	for {
		select {
		case <-t.ctx.Done():
			return
		case c, ok := <-conns:
			if !ok {
				return
			}
			t.mu.Lock()
			if t.ctx.Err() != nil {
				t.mu.Unlock()
				c.Close()
				return
			}
			t.conns[c] = struct{}{}
			t.wg.Add(1)
			t.mu.Unlock()
			go t.serve(c)
		}
	}
}

// serve reads frames from one inbound stream (the magic already consumed).
func (t *Transport) serve(raw net.Conn) {
	defer t.wg.Done()
	defer func() {
		raw.Close()
		t.mu.Lock()
		delete(t.conns, raw)
		t.mu.Unlock()
	}()
	c := raw
	if t.cfg.Accepted != nil {
		c = t.cfg.Accepted(raw)
	}
	r := bufio.NewReaderSize(c, 16<<10)
	addr, err := t.readHello(c, r, true)
	if err != nil {
		t.logger.Debug("inbound stream refused", "remote", c.RemoteAddr(), "error", err)
		return
	}
	if t.cfg.Vouch != nil && addr != "" {
		if err := t.cfg.Vouch(raw, addr); err != nil {
			t.logger.Warn("inbound stream refused: its opener claims an address its certificate does not cover", "remote", c.RemoteAddr(), "error", err)
			return
		}
	}
	// A sender opens a stream to send a message: its first frame comes
	// with the hello, so a stream silent after its hello is held for the
	// frame timeout only, not the idle timeout of a stream in use.
	t.readMessages(c, r, t.cfg.FrameTimeout, t.cfg.StreamIdleTimeout, addr)
	t.mu.Lock()
	if p := t.peers[addr]; p != nil && p.offer == c {
		p.offer = nil // the writer dials from now on
	}
	t.mu.Unlock()
}

// offerReplies makes the inbound stream c, whose opener named addr and
// whose first message came from sender from, the way to send to addr, if
// this side is the one that sends on the other's stream (the higher ID).
// The latest stream wins: a restarted peer opens a new one before the old
// one times out. A sender's ID is claimed, not proven, as every
// message's sender is: only a holder of an agent token opens a stream,
// and the ACL trusts it as an agent of the group. Its address, with TLS,
// is vouched for by its certificate (Config.Vouch, in serve).
func (t *Transport) offerReplies(c net.Conn, from uint64, addr string) {
	if t.cfg.ID == 0 || from == 0 || from >= t.cfg.ID {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.ctx.Err() != nil {
		return
	}
	t.peerLocked(addr).offer = c
}

// peerClosed tells whether a read ended because the peer closed its end
// (FIN or reset), not a deadline of ours or a bad frame.
func peerClosed(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET)
}

// Read deadlines of inbound streams, by default: a stream may stay idle
// between frames for StreamIdleTimeout (the sender redials on its next
// message), and a frame whose length has arrived must arrive whole within
// FrameTimeout, as must a stream's hello from its opening.
const (
	StreamIdleTimeout = 2 * time.Minute
	FrameTimeout      = 10 * time.Second
)

// smallFrame is the largest frame read into a buffer of its announced size
// before its bytes arrived.
const smallFrame = 4 << 10

// readFrame reads one frame. The body is read as it arrives, into a buffer
// that grows with the bytes received, allocated at the announced length
// first only up to smallFrame: a peer that announces 8 MiB and sends
// nothing costs a few hundred bytes until the frame timeout closes it.
// The stream may be silent for idle before a frame's length arrives (0:
// for as long as it likes).
func readFrame(c net.Conn, r *bufio.Reader, idle, frame time.Duration) (core.Message, error) {
	var m core.Message
	var hdr [4]byte
	// A deadline matters only to a read that waits: bytes already
	// buffered are taken without one (a deadline costs a clock read and
	// a timer change, twice a frame otherwise).
	if r.Buffered() < len(hdr) {
		var d time.Time
		if idle > 0 {
			d = time.Now().Add(idle)
		}
		c.SetReadDeadline(d)
	}
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return m, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n > MaxFrameBytes {
		return m, fmt.Errorf("%w: %d bytes announced", ErrFrameTooLarge, n)
	}
	if r.Buffered() < int(n) {
		c.SetReadDeadline(time.Now().Add(frame))
	}
	var body []byte
	if n <= smallFrame {
		// Small frames, nearly all of them, are read into their size at
		// once: a stalled one holds at most smallFrame bytes.
		body = make([]byte, n)
		if got, err := io.ReadFull(r, body); err != nil {
			return m, fmt.Errorf("transport: frame of %d bytes cut after %d: %w", n, got, err)
		}
	} else {
		var buf bytes.Buffer
		if got, err := buf.ReadFrom(io.LimitReader(r, int64(n))); err != nil {
			return m, err
		} else if got != int64(n) {
			return m, fmt.Errorf("transport: frame of %d bytes cut after %d: %w", n, got, io.ErrUnexpectedEOF)
		}
		body = buf.Bytes()
	}
	// The body is this frame's own buffer: the message may keep it.
	if err := core.DecodeWireOwned(body, &m); err != nil {
		return m, err
	}
	return m, nil
}

// track registers an outbound connection so that Close closes it (a write
// blocked on it then returns); it reports false once the transport closes.
func (t *Transport) track(c net.Conn) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.ctx.Err() != nil {
		return false
	}
	t.conns[c] = struct{}{}
	return true
}

func (t *Transport) untrack(c net.Conn) {
	t.mu.Lock()
	delete(t.conns, c)
	t.mu.Unlock()
}

// Close stops every goroutine and closes every connection.
func (t *Transport) Close() {
	t.mu.Lock()
	t.cancel()
	for c := range t.conns {
		c.Close()
	}
	t.mu.Unlock()
	t.wg.Wait()
}

// Mux splits a listener: connections that open with Magic are delivered on
// streams (magic consumed); every other connection goes to the returned
// listener, for an HTTP server. Both end when ln is closed.
func Mux(ln net.Listener) (net.Listener, <-chan net.Conn) {
	m := &muxListener{ln: ln, conns: make(chan net.Conn, 64), done: make(chan struct{})}
	streams := make(chan net.Conn, 64)
	go func() {
		defer close(m.done)
		for {
			c, err := ln.Accept()
			if err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					continue
				}
				return
			}
			go route(c, m, streams)
		}
	}()
	return m, streams
}

func route(c net.Conn, m *muxListener, streams chan<- net.Conn) {
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	var head [4]byte
	n, err := io.ReadFull(c, head[:])
	c.SetReadDeadline(time.Time{})
	if err != nil && n == 0 {
		// A caller speaking clear text to a TLS agent learns why it fails.
		auth.AnswerClearText(err)
		c.Close()
		return
	}
	if n == 4 && head == Magic {
		select {
		case streams <- c:
		case <-m.done:
			c.Close()
		}
		return
	}
	pc := &prefixConn{Conn: c, prefix: head[:n]}
	select {
	case m.conns <- pc:
	case <-m.done:
		c.Close()
	}
}

type muxListener struct {
	ln    net.Listener
	conns chan net.Conn
	done  chan struct{}
}

func (m *muxListener) Accept() (net.Conn, error) {
	select {
	case c := <-m.conns:
		return c, nil
	case <-m.done:
		return nil, net.ErrClosed
	}
}

func (m *muxListener) Close() error   { return m.ln.Close() }
func (m *muxListener) Addr() net.Addr { return m.ln.Addr() }

// prefixConn replays the bytes read while routing.
type prefixConn struct {
	net.Conn
	prefix []byte
}

// NetConn is the routed connection (a *tls.Conn where TLS is on).
func (p *prefixConn) NetConn() net.Conn { return p.Conn }

func (p *prefixConn) Read(b []byte) (int, error) {
	if len(p.prefix) > 0 {
		n := copy(b, p.prefix)
		p.prefix = p.prefix[n:]
		return n, nil
	}
	return p.Conn.Read(b)
}
