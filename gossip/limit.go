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
		ch: make(chan net.Conn), stop: make(chan struct{}), done: make(chan struct{})}
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
	stop    chan struct{} // closed at Shutdown: nothing more is handed on
	done    chan struct{} // closed once the wrapped transport is shut down
	once    sync.Once
	wg      sync.WaitGroup
}

func (l *streamLimit) StreamCh() <-chan net.Conn { return l.ch }

func (l *streamLimit) pump() {
	defer l.wg.Done()
	in := l.NodeAwareTransport.StreamCh()
	for {
		var c net.Conn
		ok := true
		select {
		case <-l.stop:
			l.drain(in)
			return
		case c, ok = <-in:
		}
		if !ok {
			return // the wrapped transport closed its channel: nothing more comes
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
			l.drain(in)
			return
		}
	}
}

// drain closes every stream the wrapped transport still hands over until
// its Shutdown returned: a NetTransport's listener blocks on its channel
// with the connection it accepted, and its Shutdown waits for the
// listener, so a pump that stopped reading would hold Shutdown forever.
func (l *streamLimit) drain(in <-chan net.Conn) {
	for {
		select {
		case <-l.done:
			return
		case c, ok := <-in:
			if !ok {
				<-l.done
				return
			}
			c.Close()
		}
	}
}

// Shutdown stops handing streams on, shuts the wrapped transport down
// while the pump drains it, then waits for the pump.
func (l *streamLimit) Shutdown() error {
	var err error
	l.once.Do(func() {
		close(l.stop)
		err = l.NodeAwareTransport.Shutdown()
		close(l.done)
		l.wg.Wait()
	})
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
