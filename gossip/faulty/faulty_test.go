package faulty

import (
	"context"
	"errors"
	"io"
	"math/rand"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
)

func TestMatches(t *testing.T) {
	tests := []struct {
		entry, addr string
		want        bool
	}{
		{"127.0.0.3:7946", "127.0.0.3:7946", true},
		{"127.0.0.3:7946", "127.0.0.3:7947", false},
		{"127.0.0.3", "127.0.0.3:7946", true},
		{"127.0.0.3", "127.0.0.4:7946", false},
		{"127.0.0.3", "127.0.0.3", true},
		{"127.0.0.3:7946", "127.0.0.3", false},
	}
	for _, tt := range tests {
		if got := matches(tt.entry, tt.addr); got != tt.want {
			t.Errorf("matches(%q, %q) = %v, want %v", tt.entry, tt.addr, got, tt.want)
		}
	}
}

func TestFaultsStatusAndHeal(t *testing.T) {
	f := New(rand.New(rand.NewSource(1)))
	f.Partition("b:1", "a:1")
	f.Drop(1.5)
	f.Delay(time.Second)
	s := f.Status()
	if strings.Join(s.Partitioned, ",") != "a:1,b:1" || s.Drop != 1 || s.Delay != time.Second {
		t.Fatalf("status %+v", s)
	}
	if _, err := f.outgoing("a:1"); !errors.Is(err, ErrPartitioned) || err.Error() != "faulty: partitioned from a:1" {
		t.Fatalf("partitioned: %v", err)
	}
	if _, err := f.outgoing("c:1"); !errors.Is(err, ErrDropped) {
		t.Fatalf("drop 1: %v", err)
	}
	f.Heal()
	if d, err := f.outgoing("a:1"); err != nil || d != 0 {
		t.Fatalf("after heal: %v %v", d, err)
	}
	s = f.Status()
	if len(s.Partitioned) != 0 || s.Drop != 0 || s.Blocked != 1 || s.Dropped != 1 || s.Sent != 1 {
		t.Fatalf("status after heal %+v", s)
	}
}

// TestDropIsSeeded: the same seed drops the same packets.
func TestDropIsSeeded(t *testing.T) {
	run := func() []bool {
		f := New(rand.New(rand.NewSource(42)))
		f.Drop(0.5)
		var out []bool
		for i := 0; i < 64; i++ {
			_, err := f.outgoing("x:1")
			out = append(out, err != nil)
		}
		return out
	}
	a, b := run(), run()
	n := 0
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("drop %d differs between runs of one seed", i)
		}
		if a[i] {
			n++
		}
	}
	if n == 0 || n == 64 {
		t.Fatalf("%d of 64 dropped at p=0.5", n)
	}
}

func TestTransportOverMock(t *testing.T) {
	var mn memberlist.MockNetwork
	ma, mb := mn.NewTransport("a"), mn.NewTransport("b")
	fa := New(rand.New(rand.NewSource(1)))
	fb := New(rand.New(rand.NewSource(2)))
	ta, tb := NewTransport(ma, fa), NewTransport(mb, fb)
	defer ta.Shutdown()
	defer tb.Shutdown()
	if _, ok := ta.(memberlist.NodeAwareTransport); !ok {
		t.Fatalf("wrapper of a NodeAwareTransport is not one")
	}
	ipA, portA, _ := ta.FinalAdvertiseAddr("", 0)
	ipB, portB, _ := tb.FinalAdvertiseAddr("", 0)
	addrA := net.JoinHostPort(ipA.String(), strconv.Itoa(portA))
	addrB := net.JoinHostPort(ipB.String(), strconv.Itoa(portB))

	recv := func(tr memberlist.Transport) (string, bool) {
		select {
		case p := <-tr.PacketCh():
			return string(p.Buf), true
		case <-time.After(200 * time.Millisecond):
			return "", false
		}
	}
	// Whole network: a packet goes through.
	go func() { _, _ = ta.WriteTo([]byte("hello"), addrB) }()
	if got, ok := recv(tb); !ok || got != "hello" {
		t.Fatalf("whole network: %q %v", got, ok)
	}
	// a partitions b: a's packets to b vanish, b's packets to a are dropped
	// on arrival at a.
	fa.Partition(addrB)
	if _, err := ta.WriteTo([]byte("lost"), addrB); err != nil {
		t.Fatalf("partitioned write reports %v; packets vanish silently", err)
	}
	if got, ok := recv(tb); ok {
		t.Fatalf("b got %q through the partition", got)
	}
	go func() { _, _ = tb.WriteTo([]byte("in"), addrA) }()
	if got, ok := recv(ta); ok {
		t.Fatalf("a got %q from a partitioned peer", got)
	}
	if _, err := ta.DialTimeout(addrB, time.Second); !errors.Is(err, ErrPartitioned) || !strings.Contains(err.Error(), addrB) {
		t.Fatalf("dial through partition: %v", err)
	}
	fa.Heal()
	go func() { _, _ = tb.WriteTo([]byte("back"), addrA) }()
	if got, ok := recv(ta); !ok || got != "back" {
		t.Fatalf("after heal: %q %v", got, ok)
	}
	// Delay: the packet arrives, later.
	fa.Delay(50 * time.Millisecond)
	start := time.Now()
	if _, err := ta.WriteTo([]byte("slow"), addrB); err != nil {
		t.Fatal(err)
	}
	if got, ok := recv(tb); !ok || got != "slow" || time.Since(start) < 50*time.Millisecond {
		t.Fatalf("delayed packet %q %v after %v", got, ok, time.Since(start))
	}
}

func TestDialer(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() { _, _ = io.Copy(c, c); c.Close() }()
		}
	}()
	addr := l.Addr().String()
	f := New(rand.New(rand.NewSource(1)))
	d := NewDialer(f)
	ctx := context.Background()

	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("echo %q %v", buf, err)
	}
	// Partition by host: new dials fail with a clear error, and the open
	// connection fails on its next write.
	f.Partition("127.0.0.1")
	if _, err := d.DialContext(ctx, "tcp", addr); !errors.Is(err, ErrPartitioned) || err.Error() != "faulty: partitioned from "+addr {
		t.Fatalf("dial: %v", err)
	}
	if _, err := c.Write([]byte("x")); !errors.Is(err, ErrPartitioned) {
		t.Fatalf("write on an open connection: %v", err)
	}
	f.Heal()
	f.Drop(1)
	if _, err := d.DialContext(ctx, "tcp", addr); !errors.Is(err, ErrDropped) {
		t.Fatalf("dropped dial: %v", err)
	}
	f.Heal()
	f.Delay(time.Second)
	cctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if _, err := d.DialContext(cctx, "tcp", addr); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("delayed dial past its deadline: %v", err)
	}
}

func TestNetworkPartitionBothSides(t *testing.T) {
	n := NewNetwork(3)
	for _, a := range []string{"127.0.0.11", "127.0.0.12", "127.0.0.13", "127.0.0.14", "127.0.0.15"} {
		n.Node(a)
	}
	n.Partition([]string{"127.0.0.11", "127.0.0.12", "127.0.0.13"}, []string{"127.0.0.14", "127.0.0.15"})
	st := n.Status()
	if got := strings.Join(st["127.0.0.11"].Partitioned, ","); got != "127.0.0.14,127.0.0.15" {
		t.Errorf("node 11 cut from %q", got)
	}
	if got := strings.Join(st["127.0.0.15"].Partitioned, ","); got != "127.0.0.11,127.0.0.12,127.0.0.13" {
		t.Errorf("node 15 cut from %q", got)
	}
	// A node alone: cut from everyone, and everyone from it.
	n.Heal()
	n.Partition([]string{"127.0.0.13"})
	st = n.Status()
	if got := strings.Join(st["127.0.0.13"].Partitioned, ","); got != "127.0.0.11,127.0.0.12,127.0.0.14,127.0.0.15" {
		t.Errorf("node 13 alone cut from %q", got)
	}
	if got := strings.Join(st["127.0.0.12"].Partitioned, ","); got != "127.0.0.13" {
		t.Errorf("node 12 cut from %q", got)
	}
	if n.Node("127.0.0.11") != n.Node("127.0.0.11") || len(n.Addrs()) != 5 || n.Seed() != 3 {
		t.Errorf("nodes")
	}
}

// A stalled peer accepts the dial and never answers: reads and writes wait
// for the caller's deadline, Close unblocks them, other peers are not
// touched, and Heal ends the stall.
func TestDialerStall(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(c, c); c.Close() }()
		}
	}()
	f := New(rand.New(rand.NewSource(1)))
	d := NewDialer(f)
	f.Stall(ln.Addr().String())
	if got := f.Status().Stalled; len(got) != 1 || got[0] != ln.Addr().String() {
		t.Fatalf("status stalled %v", got)
	}
	c, err := d.DialContext(context.Background(), "tcp", ln.Addr().String())
	if err != nil {
		t.Fatalf("dial a stalled peer: %v", err)
	}
	c.SetDeadline(time.Now().Add(50 * time.Millisecond))
	if _, err := c.Write([]byte("x")); !isTimeout(err) {
		t.Fatalf("write to a stalled peer: %v, want a timeout", err)
	}
	if _, err := c.Read(make([]byte, 1)); !isTimeout(err) {
		t.Fatalf("read from a stalled peer: %v, want a timeout", err)
	}
	c.SetDeadline(time.Time{})
	done := make(chan error, 1)
	go func() { _, err := c.Read(make([]byte, 1)); done <- err }()
	c.Close()
	if err := <-done; err == nil {
		t.Fatal("read after Close returned no error")
	}
	f.Heal()
	c, err = d.DialContext(context.Background(), "tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte("y")); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 1)
	if _, err := io.ReadFull(c, b); err != nil || b[0] != 'y' {
		t.Fatalf("after heal: %q %v", b, err)
	}

	// A stall reaches connections already open: what is written is never
	// delivered, so nothing comes back.
	f.Stall(ln.Addr().String())
	if _, err := c.Write([]byte("z")); err != nil {
		t.Fatalf("write on an open connection to a stalled peer: %v", err)
	}
	c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if _, err := c.Read(b); !isTimeout(err) {
		t.Fatalf("read on an open connection to a stalled peer: %q %v, want a timeout", b, err)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// Crash runs the crash the process under test registered, the latest one
// (a restarted agent registers its own), and nothing without one.
func TestCrash(t *testing.T) {
	f := New(rand.New(rand.NewSource(1)))
	f.Crash() // nothing registered: nothing happens
	var first, second int
	f.SetCrash(func() { first++ })
	f.Crash()
	f.SetCrash(func() { second++ })
	f.Crash()
	if first != 1 || second != 1 {
		t.Fatalf("crashes run: first %d, second %d; want 1 and 1", first, second)
	}
}

// An accepted connection takes the faults too: a partition of the
// dialer's host cuts it, on its next read or write, and a port-only entry
// (the listener's peers are named by their own listening ports) does not.
func TestAccepted(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	f := New(rand.New(rand.NewSource(1)))
	dialed, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer dialed.Close()
	raw, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	c := f.Accepted(raw)
	defer c.Close()
	f.Partition("127.0.0.1:1")
	if _, err := c.Write([]byte("x")); err != nil {
		t.Fatalf("a host:port entry of another port cut the accepted connection: %v", err)
	}
	b := make([]byte, 1)
	if _, err := io.ReadFull(dialed, b); err != nil {
		t.Fatal(err)
	}
	f.Partition("127.0.0.1")
	if _, err := c.Write([]byte("y")); !errors.Is(err, ErrPartitioned) {
		t.Fatalf("write after the dialer's host was cut: %v, want ErrPartitioned", err)
	}
	dialed.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := dialed.Read(b); err == nil {
		t.Fatal("the cut connection delivered after the partition")
	}
}
