package faulty

import (
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
)

// Transport is a memberlist.Transport that applies a Faults to the one it
// wraps. Outgoing: packets to a partitioned or dropped peer are silently
// discarded, delayed ones are sent by a timer; dials fail with
// ErrPartitioned or ErrDropped. Incoming: packets whose From is partitioned
// are discarded, and accepted streams from a partitioned "host" are closed.
// Open streams fail once their peer is partitioned.
type Transport struct {
	inner    memberlist.Transport
	f        *Faults
	packetCh chan *memberlist.Packet
	streamCh chan net.Conn
	stop     chan struct{} // closed when Shutdown starts: discard from now on
	done     chan struct{} // closed when the wrapped transport is shut down
	once     sync.Once
	wg       sync.WaitGroup
}

// nodeAwareTransport adds memberlist.NodeAwareTransport when the wrapped
// transport has it (NetTransport and MockTransport do), so that memberlist
// keeps passing node names down.
type nodeAwareTransport struct {
	*Transport
	na memberlist.NodeAwareTransport
}

var (
	_ memberlist.Transport          = (*Transport)(nil)
	_ memberlist.NodeAwareTransport = (*nodeAwareTransport)(nil)
)

// NewTransport wraps inner with f. It starts two goroutines that filter
// inner's packet and stream channels; they stop at Shutdown. The result
// implements memberlist.NodeAwareTransport when inner does.
func NewTransport(inner memberlist.Transport, f *Faults) memberlist.Transport {
	t := &Transport{
		inner:    inner,
		f:        f,
		packetCh: make(chan *memberlist.Packet),
		streamCh: make(chan net.Conn),
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
	}
	t.wg.Add(2)
	go t.filterPackets()
	go t.filterStreams()
	if na, ok := inner.(memberlist.NodeAwareTransport); ok {
		return &nodeAwareTransport{Transport: t, na: na}
	}
	return t
}

// Faults returns the controller of this transport.
func (t *Transport) Faults() *Faults { return t.f }

// The filters run until the wrapped transport is shut down, discarding
// once Shutdown has started: a NetTransport's listeners block on their
// channels, and its Shutdown waits for them.
func (t *Transport) filterPackets() {
	defer t.wg.Done()
	in := t.inner.PacketCh()
	for {
		select {
		case <-t.done:
			return
		case p := <-in:
			if p.From != nil && t.f.isPartitioned(p.From.String()) {
				continue
			}
			select {
			case t.packetCh <- p:
			case <-t.stop:
			}
		}
	}
}

func (t *Transport) filterStreams() {
	defer t.wg.Done()
	in := t.inner.StreamCh()
	for {
		select {
		case <-t.done:
			return
		case c := <-in:
			peer := c.RemoteAddr().String()
			if t.f.isPartitioned(peer) {
				_ = c.Close()
				continue
			}
			select {
			case t.streamCh <- &conn{Conn: c, f: t.f, peer: peer}:
			case <-t.stop:
				_ = c.Close()
			}
		}
	}
}

// FinalAdvertiseAddr passes through.
func (t *Transport) FinalAdvertiseAddr(ip string, port int) (net.IP, int, error) {
	return t.inner.FinalAdvertiseAddr(ip, port)
}

// WriteTo sends, discards or delays a packet.
func (t *Transport) WriteTo(b []byte, addr string) (time.Time, error) {
	return t.write(b, addr, func(b []byte) (time.Time, error) { return t.inner.WriteTo(b, addr) })
}

func (t *Transport) write(b []byte, addr string, send func([]byte) (time.Time, error)) (time.Time, error) {
	delay, err := t.f.outgoing(addr)
	if err != nil {
		return time.Now(), nil // lost on the wire: the sender cannot tell
	}
	if delay > 0 {
		cp := append([]byte(nil), b...)
		time.AfterFunc(delay, func() {
			select {
			case <-t.stop:
			default:
				_, _ = send(cp)
			}
		})
		return time.Now(), nil
	}
	return send(b)
}

// PacketCh returns the filtered incoming packets.
func (t *Transport) PacketCh() <-chan *memberlist.Packet { return t.packetCh }

// DialTimeout dials unless the peer is partitioned or the dial dropped.
func (t *Transport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	return t.dial(addr, timeout, t.inner.DialTimeout)
}

func (t *Transport) dial(addr string, timeout time.Duration, dial func(string, time.Duration) (net.Conn, error)) (net.Conn, error) {
	delay, err := t.f.outgoing(addr)
	if err != nil {
		return nil, err
	}
	if delay > 0 {
		if timeout > 0 && delay >= timeout {
			time.Sleep(timeout)
			return nil, fmt.Errorf("faulty: dial %s: timeout after %v (delay %v)", addr, timeout, delay)
		}
		time.Sleep(delay)
		if timeout > 0 {
			timeout -= delay
		}
	}
	c, err := dial(addr, timeout)
	if err != nil {
		return nil, err
	}
	return &conn{Conn: c, f: t.f, peer: addr}, nil
}

// StreamCh returns the filtered incoming streams.
func (t *Transport) StreamCh() <-chan net.Conn { return t.streamCh }

// Shutdown stops the filters and the wrapped transport.
func (t *Transport) Shutdown() error {
	var err error
	t.once.Do(func() {
		close(t.stop)
		err = t.inner.Shutdown()
		close(t.done)
		t.wg.Wait()
	})
	return err
}

// WriteToAddress is WriteTo for a node-aware transport.
func (t *nodeAwareTransport) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	return t.write(b, a.Addr, func(b []byte) (time.Time, error) { return t.na.WriteToAddress(b, a) })
}

// DialAddressTimeout is DialTimeout for a node-aware transport.
func (t *nodeAwareTransport) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	return t.dial(a.Addr, timeout, func(_ string, to time.Duration) (net.Conn, error) {
		return t.na.DialAddressTimeout(a, to)
	})
}
