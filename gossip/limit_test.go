package gossip

import (
	"net"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
)

// listenerTransport is a NodeAwareTransport whose Shutdown behaves as a
// NetTransport's does when its listener accepted a connection just before:
// it hands that connection to the stream channel and returns only once
// someone took it.
type listenerTransport struct {
	memberlist.NodeAwareTransport
	streams  chan net.Conn
	accepted net.Conn
}

func (t *listenerTransport) StreamCh() <-chan net.Conn { return t.streams }

func (t *listenerTransport) Shutdown() error {
	t.streams <- t.accepted
	return nil
}

// A stream accepted while the agent shuts down is closed, and Shutdown
// returns: a limiter that stopped reading its transport's channel held
// the transport's Shutdown (and with it the agent's) forever.
func TestStreamLimitShutdownDrainsTheListener(t *testing.T) {
	near, far := net.Pipe()
	defer far.Close()
	inner := &listenerTransport{streams: make(chan net.Conn), accepted: near}
	l := limitStreams(inner, 4, nil)
	done := make(chan error, 1)
	go func() { done <- l.Shutdown() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("shutdown: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Shutdown held by the connection the listener accepted during it")
	}
	far.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := far.Read(make([]byte, 1)); err == nil {
		t.Fatal("the connection accepted during shutdown was not closed")
	}
	if n := l.Open(); n != 0 {
		t.Fatalf("%d streams counted open after shutdown", n)
	}
	if err := l.Shutdown(); err != nil {
		t.Fatalf("second shutdown: %v", err)
	}
}
