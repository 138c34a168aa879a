package naming

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	"github.com/mastership/mastership/naming/auth"
)

// Raft traffic between naming nodes shares the node's one listener: a
// connection that opens with raftMagic, then a hello (the caller's token),
// is a raft stream; anything else is HTTP. With TLS the magic is read
// inside the TLS session, so raft streams are encrypted and need a client
// certificate of the cluster's CA like every other call.
var raftMagic = [4]byte{'M', 'S', 'R', '1'}

// raftHelloTimeout bounds how long a new connection may take to show what
// it is.
const raftHelloTimeout = 5 * time.Second

// maxHelloToken bounds the token of a raft hello.
const maxHelloToken = 4096

// mux splits one listener into HTTP and raft streams.
type mux struct {
	inner  net.Listener
	server auth.Server
	logger hclog.Logger
	// allowRaft tells whether a raft stream may come from this remote
	// address (nil: any).
	allowRaft func(net.Addr) bool

	httpCh chan net.Conn
	raftCh chan net.Conn
	done   chan struct{}
	once   sync.Once
}

func newMux(server auth.Server, logger hclog.Logger) *mux {
	return &mux{server: server, logger: logger, httpCh: make(chan net.Conn), raftCh: make(chan net.Conn),
		done: make(chan struct{})}
}

// serve accepts from ln until it fails or close is called, and sorts each
// connection on a goroutine of its own (a slow hello holds nobody else).
func (m *mux) serve(ln net.Listener) error {
	m.inner = ln
	for {
		c, err := ln.Accept()
		if err != nil {
			select {
			case <-m.done:
				return nil
			default:
			}
			return err
		}
		go m.sort(c)
	}
}

func (m *mux) sort(c net.Conn) {
	c.SetReadDeadline(time.Now().Add(raftHelloTimeout))
	br := bufio.NewReaderSize(c, 512)
	head, err := br.Peek(len(raftMagic))
	if err != nil {
		// A caller speaking clear text to a TLS node learns why it fails.
		auth.AnswerClearText(err)
		c.Close()
		return
	}
	if [4]byte(head) != raftMagic {
		c.SetReadDeadline(time.Time{})
		m.hand(m.httpCh, &bufferedConn{Conn: c, r: br})
		return
	}
	br.Discard(len(raftMagic))
	if m.allowRaft != nil && !m.allowRaft(c.RemoteAddr()) {
		m.logger.Warn("raft stream refused: the caller is no naming node of this cluster", "remote", c.RemoteAddr())
		c.Close()
		return
	}
	if err := m.checkHello(br); err != nil {
		m.logger.Warn("raft stream refused", "remote", c.RemoteAddr(), "error", err)
		c.Close()
		return
	}
	c.SetReadDeadline(time.Time{})
	m.hand(m.raftCh, &bufferedConn{Conn: c, r: br})
}

func (m *mux) hand(ch chan net.Conn, c net.Conn) {
	select {
	case ch <- c:
	case <-m.done:
		c.Close()
	}
}

// checkHello reads the caller's token; with an ACL it must grant the
// operator capability (naming nodes of one cluster present the operator's
// token to each other).
func (m *mux) checkHello(r io.Reader) error {
	var n [2]byte
	if _, err := io.ReadFull(r, n[:]); err != nil {
		return fmt.Errorf("hello: %w", err)
	}
	size := binary.BigEndian.Uint16(n[:])
	if size > maxHelloToken {
		return fmt.Errorf("hello: token of %d bytes", size)
	}
	tok := make([]byte, size)
	if _, err := io.ReadFull(r, tok); err != nil {
		return fmt.Errorf("hello: %w", err)
	}
	if _, err := m.server.ACL.Check(string(tok), auth.Operator); err != nil {
		return fmt.Errorf("hello: %w", err)
	}
	return nil
}

func (m *mux) close() {
	m.once.Do(func() { close(m.done) })
}

// chanListener is one side of the mux, as a net.Listener.
type chanListener struct {
	m    *mux
	ch   chan net.Conn
	addr net.Addr
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.m.done:
		return nil, net.ErrClosed
	}
}

func (l *chanListener) Close() error {
	l.m.close()
	return nil
}

func (l *chanListener) Addr() net.Addr { return l.addr }

// bufferedConn replays what the mux peeked.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufferedConn) Read(b []byte) (int, error) { return c.r.Read(b) }

// streamLayer is raft's transport over the mux: it accepts the raft streams
// the mux sorted out, and dials peers at their one address, over TLS when
// the cluster uses it, with the magic and the node's token first.
type streamLayer struct {
	chanListener
	dial  func(ctx context.Context, network, addr string) (net.Conn, error)
	creds auth.Creds
}

var _ raft.StreamLayer = (*streamLayer)(nil)

func (s *streamLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	c, err := s.creds.Dial(s.dial)(ctx, "tcp", string(address))
	if err != nil {
		return nil, err
	}
	tok := []byte(s.creds.Token)
	hello := make([]byte, 0, len(raftMagic)+2+len(tok))
	hello = append(hello, raftMagic[:]...)
	hello = binary.BigEndian.AppendUint16(hello, uint16(len(tok)))
	hello = append(hello, tok...)
	c.SetWriteDeadline(time.Now().Add(timeout))
	if _, err := c.Write(hello); err != nil {
		c.Close()
		return nil, err
	}
	c.SetWriteDeadline(time.Time{})
	return c, nil
}
