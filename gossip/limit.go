package gossip

import (
	"net"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/memberlist"
)

// DefaultMaxStreams caps the gossip TCP connections (push/pull exchanges,
// joins, fallback probes) handled at once when Config.MaxStreams is 0.
const DefaultMaxStreams = 256

// maxStreamsPerHost caps the streams of one source address within the
// cap, so that one host that stalls connections cannot hold them all.
const maxStreamsPerHost = 64

// limitStreams caps the inbound stream connections of a transport that
// memberlist handles at once: past max, a new one is closed at once.
// memberlist reads each under its TCP timeout and may allocate from what
// the peer announces before the bytes arrive, so without a cap stalled
// connections pile up.
func limitStreams(t memberlist.NodeAwareTransport, max int, refused func(net.Addr)) *streamLimit {
	l := &streamLimit{NodeAwareTransport: t, max: int64(max), refused: refused,
		ch: make(chan net.Conn), stop: make(chan struct{})}
	l.wg.Add(1)
	go l.pump()
	return l
}

type streamLimit struct {
	memberlist.NodeAwareTransport
	max     int64
	open    atomic.Int64
	mu      sync.Mutex
	perHost map[string]int // open streams by source host
	refused func(net.Addr)
	ch      chan net.Conn
	stop    chan struct{}
	once    sync.Once
	wg      sync.WaitGroup
}

func (l *streamLimit) StreamCh() <-chan net.Conn { return l.ch }

func (l *streamLimit) pump() {
	defer l.wg.Done()
	in := l.NodeAwareTransport.StreamCh()
	for {
		var c net.Conn
		select {
		case <-l.stop:
			return
		case c = <-in:
		}
		host := hostOf(c.RemoteAddr())
		if !l.take(host) {
			if l.refused != nil {
				l.refused(c.RemoteAddr())
			}
			c.Close()
			continue
		}
		lc := &limitedConn{Conn: c, l: l, host: host}
		select {
		case l.ch <- lc:
		case <-l.stop:
			lc.Close()
			return
		}
	}
}

// Shutdown stops the pump, then the transport.
func (l *streamLimit) Shutdown() error {
	l.once.Do(func() { close(l.stop) })
	err := l.NodeAwareTransport.Shutdown()
	l.wg.Wait()
	return err
}

// take counts a new stream from host, or reports false past a cap.
func (l *streamLimit) take(host string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.open.Load() >= l.max || l.perHost[host] >= maxStreamsPerHost {
		return false
	}
	if l.perHost == nil {
		l.perHost = map[string]int{}
	}
	l.perHost[host]++
	l.open.Add(1)
	return true
}

func (l *streamLimit) release(host string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.perHost[host]--; l.perHost[host] <= 0 {
		delete(l.perHost, host)
	}
	l.open.Add(-1)
}

func hostOf(a net.Addr) string {
	if h, _, err := net.SplitHostPort(a.String()); err == nil {
		return h
	}
	return a.String()
}

// Open is the number of stream connections held now.
func (l *streamLimit) Open() int { return int(l.open.Load()) }

type limitedConn struct {
	net.Conn
	l    *streamLimit
	host string
	once sync.Once
}

func (c *limitedConn) Close() error {
	c.once.Do(func() { c.l.release(c.host) })
	return c.Conn.Close()
}
