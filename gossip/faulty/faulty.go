package faulty

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"net"
	"sort"
	"sync"
	"time"
)

// Sentinel errors of failed dials and cut connections.
var (
	// ErrPartitioned: the peer is behind a partition.
	ErrPartitioned = errors.New("faulty: partitioned")
	// ErrDropped: the dial was lost to random drops.
	ErrDropped = errors.New("faulty: dropped")
)

// Faults is the fault schedule shared by a node's Transport and Dialer. Its
// methods are safe for concurrent use; the random source is used under its
// lock only.
type Faults struct {
	mu          sync.Mutex
	rand        *rand.Rand
	partitioned map[string]bool
	stalled     map[string]bool
	drop        float64
	delay       time.Duration
	sent        uint64
	dropped     uint64
	blocked     uint64
	crash       func() // the process under test's, set by SetCrash
}

// SetCrash registers how the process these faults are injected into
// crashes: an agent given Faults registers its own at construction.
func (f *Faults) SetCrash(crash func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.crash = crash
}

// Crash stops the process under test as a SIGKILL would: no leave, no
// clean close of its storage (tests). It returns once the process has
// stopped; without a registered crash it does nothing.
func (f *Faults) Crash() {
	f.mu.Lock()
	crash := f.crash
	f.mu.Unlock()
	if crash != nil {
		crash()
	}
}

// New returns a Faults with no fault; r draws the random drops (seed it and
// print the seed, so a failing run replays).
func New(r *rand.Rand) *Faults {
	if r == nil {
		panic("faulty: New needs a *rand.Rand")
	}
	return &Faults{rand: r, partitioned: make(map[string]bool), stalled: make(map[string]bool)}
}

// Stall makes the RPC dialer's connections to peers (as for Partition:
// "host:port" or "host") hang, as with a process that accepts connections
// and never answers: the dial succeeds, reads never return and writes
// block, until the caller's deadline or Close. Gossip is not touched, so
// the peer still looks alive.
func (f *Faults) Stall(peers ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, p := range peers {
		f.stalled[p] = true
	}
}

// Partition cuts this node from peers, given as "host:port" (one memberlist
// or RPC address) or "host" (every port of that host). Packets to and from
// them are discarded; dials to them fail; open connections to them fail on
// their next read or write. Accepted streams are matched on their remote
// address, whose port is the dialer's ephemeral one: only "host" entries
// match them, so with "host:port" entries partition both sides (the test
// harness always does).
func (f *Faults) Partition(peers ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, p := range peers {
		f.partitioned[p] = true
	}
}

// Heal removes every fault: partitions, drops and delay.
func (f *Faults) Heal() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.partitioned = make(map[string]bool)
	f.stalled = make(map[string]bool)
	f.drop = 0
	f.delay = 0
}

// Drop makes every outgoing packet and dial lost with probability p (0 to
// 1; values outside are clamped).
func (f *Faults) Drop(p float64) {
	if p < 0 {
		p = 0
	}
	if p > 1 {
		p = 1
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.drop = p
}

// Delay holds every outgoing packet, dial and stream write for d (user
// space: a timer per packet, a sleep per dial and write). 0 removes it.
func (f *Faults) Delay(d time.Duration) {
	if d < 0 {
		d = 0
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.delay = d
}

// Status is a snapshot of a Faults.
type Status struct {
	Partitioned []string      `json:"partitioned"`
	Stalled     []string      `json:"stalled,omitempty"`
	Drop        float64       `json:"drop"`
	Delay       time.Duration `json:"delay"`
	// Sent counts packets and dials let through, Dropped those lost to
	// Drop, Blocked those stopped by a partition (both directions).
	Sent    uint64 `json:"sent"`
	Dropped uint64 `json:"dropped"`
	Blocked uint64 `json:"blocked"`
}

// Status returns the current faults and counters, peers sorted.
func (f *Faults) Status() Status {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := Status{Drop: f.drop, Delay: f.delay, Sent: f.sent, Dropped: f.dropped, Blocked: f.blocked}
	for p := range f.partitioned {
		s.Partitioned = append(s.Partitioned, p)
	}
	sort.Strings(s.Partitioned)
	for p := range f.stalled {
		s.Stalled = append(s.Stalled, p)
	}
	sort.Strings(s.Stalled)
	return s
}

// matches reports whether partition entry e covers addr: the same
// host:port, or e is a bare host and addr is on it.
func matches(e, addr string) bool {
	if e == addr {
		return true
	}
	if _, _, err := net.SplitHostPort(e); err == nil {
		return false
	}
	host, _, err := net.SplitHostPort(addr)
	return err == nil && host == e
}

func (f *Faults) partitionedLocked(addr string) bool { return coveredLocked(f.partitioned, addr) }

func coveredLocked(set map[string]bool, addr string) bool {
	for e := range set {
		if matches(e, addr) {
			return true
		}
	}
	return false
}

func (f *Faults) isStalled(addr string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return coveredLocked(f.stalled, addr)
}

// isPartitioned reports whether addr is cut off, counting a blocked one.
func (f *Faults) isPartitioned(addr string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.partitionedLocked(addr) {
		f.blocked++
		return true
	}
	return false
}

// outgoing decides the fate of one packet or dial to addr: an error
// (ErrPartitioned or ErrDropped) when it is lost, else the delay to apply.
func (f *Faults) outgoing(addr string) (time.Duration, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.partitionedLocked(addr) {
		f.blocked++
		return 0, fmt.Errorf("%w from %s", ErrPartitioned, addr)
	}
	if f.drop > 0 && f.rand.Float64() < f.drop {
		f.dropped++
		return 0, fmt.Errorf("%w dial to %s", ErrDropped, addr)
	}
	f.sent++
	return f.delay, nil
}

func (f *Faults) currentDelay() time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.delay
}

// conn applies the faults to an open connection with peer: it fails (and
// closes) once peer is partitioned, delays writes, and once peer is
// stalled takes every write without delivering it (a hung process reads
// nothing, and answers nothing).
type conn struct {
	net.Conn
	f    *Faults
	peer string
}

func (c *conn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if c.f.isPartitioned(c.peer) {
		_ = c.Conn.Close()
		return 0, fmt.Errorf("%w from %s", ErrPartitioned, c.peer)
	}
	return n, err
}

func (c *conn) Write(b []byte) (int, error) {
	if c.f.isPartitioned(c.peer) {
		_ = c.Conn.Close()
		return 0, fmt.Errorf("%w from %s", ErrPartitioned, c.peer)
	}
	if c.f.isStalled(c.peer) {
		return len(b), nil
	}
	if d := c.f.currentDelay(); d > 0 {
		time.Sleep(d)
	}
	return c.Conn.Write(b)
}

// Accepted applies f to a connection this node accepted, as Dialer does
// to one it dialed, matched on the connection's remote address: the
// dialer's host and ephemeral port, so that only "host" entries of
// Partition and Stall match it, while the delay applies to all. A stream
// that carries messages both ways is then delayed both ways.
func (f *Faults) Accepted(c net.Conn) net.Conn {
	return &conn{Conn: c, f: f, peer: c.RemoteAddr().String()}
}

// ContextDialer is what Dialer wraps; *net.Dialer is one.
type ContextDialer interface {
	DialContext(ctx context.Context, network, addr string) (net.Conn, error)
}

// Dialer applies Faults to the agents' RPC connections. Partitions apply on
// the dialing side only (the RPC server is not wrapped), so partition both
// sides. The zero Forward is a plain net.Dialer.
type Dialer struct {
	Faults  *Faults
	Forward ContextDialer
}

// NewDialer returns a Dialer over a plain net.Dialer.
func NewDialer(f *Faults) *Dialer { return &Dialer{Faults: f} }

// DialContext dials addr unless it is partitioned or the dial is dropped,
// after the current delay.
func (d *Dialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	delay, err := d.Faults.outgoing(addr)
	if err != nil {
		return nil, err
	}
	if delay > 0 {
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-t.C:
		}
	}
	if d.Faults.isStalled(addr) {
		// One end of an in-memory pipe whose other end nobody serves:
		// reads and writes wait for a deadline or Close, as on a
		// connection to a hung process.
		c, far := net.Pipe()
		return &stalledConn{Conn: c, far: far, peer: addr}, nil
	}
	fwd := d.Forward
	if fwd == nil {
		fwd = &net.Dialer{}
	}
	c, err := fwd.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	return &conn{Conn: c, f: d.Faults, peer: addr}, nil
}

// stalledConn is a connection to a stalled peer: nobody reads or writes
// the far end of its pipe.
type stalledConn struct {
	net.Conn
	far  net.Conn
	peer string
}

func (c *stalledConn) RemoteAddr() net.Addr { return stalledAddr(c.peer) }

func (c *stalledConn) Close() error {
	c.far.Close()
	return c.Conn.Close()
}

type stalledAddr string

func (a stalledAddr) Network() string { return "tcp" }
func (a stalledAddr) String() string  { return string(a) }
