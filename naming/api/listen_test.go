package api

import (
	"errors"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"
)

// Past the cap a new connection is closed at once; closing one makes room
// for the next, and closing twice counts once.
func TestLimitListener(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := LimitListener(inner, 2, nil)
	defer ln.Close()
	accepted := make(chan net.Conn, 8)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				close(accepted)
				return
			}
			accepted <- c
		}
	}()
	dial := func() net.Conn {
		c, err := net.Dial("tcp", inner.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	a, b := dial(), dial()
	s1, s2 := <-accepted, <-accepted
	third := dial()
	third.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := third.Read(make([]byte, 1)); err != io.EOF && !isReset(err) {
		t.Fatalf("third connection past the cap: %v, want it closed", err)
	}
	if open, refused := ln.Open(); open != 2 || refused != 1 {
		t.Fatalf("open %d refused %d", open, refused)
	}
	s1.Close()
	s1.Close()
	if open, _ := ln.Open(); open != 1 {
		t.Fatalf("open %d after one close (twice)", open)
	}
	d := dial()
	select {
	case c := <-accepted:
		c.Close()
	case <-time.After(5 * time.Second):
		t.Fatal("no room after a close")
	}
	for _, c := range []net.Conn{a, b, third, d, s2} {
		c.Close()
	}
}

func isReset(err error) bool {
	return errors.Is(err, syscall.ECONNRESET) && !os.IsTimeout(err)
}

// One source address holds at most its share of the cap (a quarter, at
// least 16): past it, its next connection is closed at accept while
// another host's is still taken.
func TestLimitListenerPerHost(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := LimitListener(inner, 64, nil)
	defer ln.Close()
	accepted := make(chan net.Conn, 64)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	dialFrom := func(ip string) net.Conn {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
		c, err := d.Dial("tcp", inner.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	for i := 0; i < 16; i++ {
		dialFrom("127.0.0.1")
		<-accepted
	}
	over := dialFrom("127.0.0.1")
	over.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := over.Read(make([]byte, 1)); err != io.EOF && !isReset(err) {
		t.Fatalf("17th connection of one host (cap 64): %v, want it closed", err)
	}
	dialFrom("127.0.0.2")
	select {
	case <-accepted:
	case <-time.After(5 * time.Second):
		t.Fatal("another host's connection was not taken")
	}
	if open, refused := ln.Open(); open != 17 || refused != 1 {
		t.Fatalf("open %d refused %d, want 17 and 1", open, refused)
	}
}
