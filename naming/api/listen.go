package api

import (
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Timeouts of every HTTP server of Mastership (agents and naming nodes):
// a client has ReadHeaderTimeout to send its request line and headers,
// ReadTimeout for the whole request, body included, and a keep-alive
// connection is closed after IdleTimeout without a request. A body that
// trickles in is cut at ReadTimeout, so slow clients cannot pile up.
const (
	ReadHeaderTimeout = 5 * time.Second
	ReadTimeout       = 10 * time.Second
	IdleTimeout       = 60 * time.Second
)

// DefaultMaxConns is the default cap on the connections one listener of
// an agent or a naming node holds open at once (HTTP, RPC and message
// streams together).
const DefaultMaxConns = 1024

// LimitListener caps the connections accepted from ln that are open at
// once: past max in all, or past a host's share (PerHostShare of max, at
// least 16) from one source address, a new connection is closed at once
// (the caller learns it from a reset), so that a flood of idle
// connections cannot exhaust memory or descriptors, nor one host take
// every slot from the others, while existing ones are served. onRefuse,
// if not nil, is called for each refused connection (from the accepting
// goroutine).
func LimitListener(ln net.Listener, limit int, onRefuse func(net.Addr)) *Limited {
	n := int64(limit)
	return &Limited{Listener: ln, max: n, perHost: max(n/PerHostShare, min(16, n)), hosts: map[string]int64{}, onRefuse: onRefuse}
}

// PerHostShare: one source address holds at most 1/PerHostShare of a
// listener's connections (256 of the default 1024).
const PerHostShare = 4

// Limited is a listener with a cap on its open connections.
type Limited struct {
	net.Listener
	max      int64
	perHost  int64
	open     atomic.Int64
	refused  atomic.Uint64
	onRefuse func(net.Addr)
	mu       sync.Mutex
	hosts    map[string]int64 // open connections by source address
}

func (l *Limited) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		host := hostOf(c.RemoteAddr())
		if !l.take(host) {
			l.refused.Add(1)
			if l.onRefuse != nil {
				l.onRefuse(c.RemoteAddr())
			}
			c.Close()
			continue
		}
		return &limitConn{Conn: c, l: l, host: host}, nil
	}
}

// take counts a connection from host in, if the caps allow it.
func (l *Limited) take(host string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.open.Load() >= l.max || l.hosts[host] >= l.perHost {
		return false
	}
	l.open.Add(1)
	l.hosts[host]++
	return true
}

// drop counts a connection from host out.
func (l *Limited) drop(host string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.open.Add(-1)
	if l.hosts[host]--; l.hosts[host] <= 0 {
		delete(l.hosts, host)
	}
}

// hostOf is the source address of a connection without its port.
func hostOf(a net.Addr) string {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.IP.String()
	}
	host, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	return host
}

// Open reports the connections open now and refused so far, for status.
func (l *Limited) Open() (open int64, refused uint64) { return l.open.Load(), l.refused.Load() }

type limitConn struct {
	net.Conn
	l    *Limited
	host string
	once sync.Once
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.l.drop(c.host) })
	return err
}

// Semaphore bounds how many of something run at once (blocking reads).
type Semaphore chan struct{}

// NewSemaphore allows n at once.
func NewSemaphore(n int) Semaphore { return make(Semaphore, n) }

// TryAcquire takes a slot if one is free.
func (s Semaphore) TryAcquire() bool {
	select {
	case s <- struct{}{}:
		return true
	default:
		return false
	}
}

// Release frees a slot TryAcquire took.
func (s Semaphore) Release() { <-s }

// MaxBlockingReads bounds the blocking reads a node or an agent holds at
// once (a quarter of the default connection cap): past it a blocking read
// answers at once, so long polls never take the connections peers need.
const MaxBlockingReads = DefaultMaxConns / 4
