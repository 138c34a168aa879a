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
		if l.open.Add(1) > l.max {
			l.open.Add(-1)
			if l.refused != nil {
				l.refused(c.RemoteAddr())
			}
			c.Close()
			continue
		}
		select {
		case l.ch <- &limitedConn{Conn: c, l: l}:
		case <-l.stop:
			l.open.Add(-1)
			c.Close()
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

// Open is the number of stream connections held now.
func (l *streamLimit) Open() int { return int(l.open.Load()) }

type limitedConn struct {
	net.Conn
	l    *streamLimit
	once sync.Once
}

func (c *limitedConn) Close() error {
	c.once.Do(func() { c.l.open.Add(-1) })
	return c.Conn.Close()
}
