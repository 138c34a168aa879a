package naming

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/mastership/mastership/naming/api"
)

// Raft streams are taken only from the cluster's own hosts, and with an
// ACL only with the operator's token: a forged or oversized hello, or a
// caller from elsewhere, is closed before raft sees a byte.
func TestRaftStreamsFromOutsidersRefused(t *testing.T) {
	dir := t.TempDir()
	acl := filepath.Join(dir, "acl.json")
	if err := os.WriteFile(acl, []byte(`{"tokens": [
		{"name": "ops", "secret": "ops-secret-0123456789", "capabilities": ["operator", "read", "agent"]},
		{"name": "reader", "secret": "read-secret-0123456789", "capabilities": ["read"]}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t, filepath.Join(dir, "data"))
	cfg.ACL, cfg.Token = acl, "ops-secret-0123456789"
	tn := startNode(t, cfg)
	addr := tn.client.Addr()

	hello := func(token []byte, size int) []byte {
		b := append([]byte(nil), raftMagic[:]...)
		b = binary.BigEndian.AppendUint16(b, uint16(size))
		return append(b, token...)
	}
	for _, tc := range []struct {
		name string
		send []byte
	}{
		{"no token", hello(nil, 0)},
		{"a token without the operator capability", hello([]byte("read-secret-0123456789"), 22)},
		{"an unknown token", hello([]byte("made-up-secret-0123456789"), 25)},
		{"an oversized token", hello(bytes.Repeat([]byte("x"), 100), 60000)},
		{"a truncated hello", hello([]byte("ops-secret"), 21)[:10]},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := net.DialTimeout("tcp", addr, time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.Write(tc.send)
			// Then what would be a raft RPC, which must never be read.
			c.Write(bytes.Repeat([]byte{0}, 64))
			c.SetReadDeadline(time.Now().Add(raftHelloTimeout + 2*time.Second))
			if _, err := io.ReadAll(c); err != nil {
				var ne net.Error
				if ok := asNetError(err, &ne); ok && ne.Timeout() {
					t.Fatal("the node kept the connection open")
				}
			}
		})
	}
	if h := tn.Health(); h.Role != "leader" || h.Status != "ok" {
		t.Fatalf("after the hostile streams: %+v", h)
	}

	// The decision on the caller's address: voters' hosts, -peers, -join;
	// loopback for loopback.
	if !tn.raftPeerAllowed(&net.TCPAddr{IP: net.ParseIP("127.0.0.1"), Port: 5}) {
		t.Error("a loopback caller refused by a node on loopback")
	}
	if tn.raftPeerAllowed(&net.TCPAddr{IP: net.ParseIP("10.9.9.9"), Port: 5}) {
		t.Error("a caller from a host of no voter allowed")
	}
}

func asNetError(err error, ne *net.Error) bool {
	e, ok := err.(net.Error)
	if ok {
		*ne = e
	}
	return ok
}

// A call marked as forwarded is never forwarded again: a follower that
// gets one answers "not the leader" itself (no loop between nodes that
// each believe the other leads).
func TestForwardedCallNotForwardedAgain(t *testing.T) {
	c := newTestCluster(t, 3, 87)
	lead := c.leader()
	follower := (lead + 1) % 3
	body, err := api.Encode(&api.JoinRequest{Group: "g", ID: 1, Addr: addr(1)})
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequestWithContext(context.Background(), http.MethodPost, "http://"+c.addrs[follower]+"/rpc/join", bytes.NewReader(body))
	req.Header.Set("Content-Type", ContentTypeMsgpack)
	req.Header.Set(ForwardedHeader, "127.0.0.9:1")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	var e api.Error
	if resp.StatusCode == http.StatusOK || api.Decode(out, &e) != nil || e.Code != api.CodeUnavailable {
		t.Fatalf("a forwarded join on a follower: %s %+v", resp.Status, e)
	}
	if st, err := c.client(lead).Status(context.Background(), api.StatusRequest{Read: api.ReadConsistent}); err != nil || len(st.Groups) != 0 {
		t.Fatalf("the refused join changed the state: %+v %v", st, err)
	}
}

// Snapshots from the wire are checked whole and item by item: no input
// makes the check panic, and only an intact snapshot of decodable items
// passes.
func FuzzCheckSnapshot(f *testing.F) {
	reg := newTestRegistry(0)
	fx := &Effects{}
	if _, err := reg.Join(t0, api.JoinRequest{Group: "g", ID: 1, Addr: addr(1)}, 0, fx); err != nil {
		f.Fatal(err)
	}
	rec, _ := reg.Record("g")
	var buf bytes.Buffer
	sw, _ := newSnapshotWriter(&buf)
	sw.item(&snapshotItem{Kind: 'g', Group: "g", Record: rec})
	ev, _ := api.Encode(&fx.Events[0].Event)
	sw.item(&snapshotItem{Kind: 'e', Group: "g", Seq: fx.Events[0].Event.Seq, Record: ev})
	sw.close()
	good := buf.Bytes()
	if err := CheckSnapshot(bytes.NewReader(good)); err != nil {
		f.Fatalf("a good snapshot: %v", err)
	}
	f.Add(good)
	f.Add(good[:len(good)/2])
	f.Add([]byte("MSHIPSN1"))
	f.Add(append(append([]byte(nil), good[:8]...), 0xff, 0xff, 0xff, 0xff))
	// A record under the name of another group, checksummed.
	buf.Reset()
	sw, _ = newSnapshotWriter(&buf)
	sw.item(&snapshotItem{Kind: 'g', Group: "other", Record: rec})
	sw.close()
	if err := CheckSnapshot(bytes.NewReader(buf.Bytes())); err == nil {
		f.Fatal("a record filed under another group's name passed")
	}
	f.Add(buf.Bytes())
	f.Fuzz(func(t *testing.T, b []byte) {
		CheckSnapshot(bytes.NewReader(b))
	})
}
