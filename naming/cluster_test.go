package naming

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"github.com/mastership/mastership/config"
	"github.com/mastership/mastership/gossip/faulty"
	"github.com/mastership/mastership/naming/api"
	"github.com/mastership/mastership/naming/client"
)

// testCluster is a naming cluster of real nodes in this process, each on
// its own loopback address, raft between them over their listeners. Each
// node dials through its own fault dialer, so that a test can cut links.
type testCluster struct {
	t      *testing.T
	addrs  []string
	dirs   []string
	nodes  []*Node
	lns    []net.Listener
	faults []*faulty.Faults
	done   []chan error
}

// newTestCluster starts size nodes on 127.0.base.(1..size).
func newTestCluster(t *testing.T, size, base int) *testCluster {
	t.Helper()
	c := &testCluster{t: t}
	for i := 0; i < size; i++ {
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.%d.%d:0", base, i+1))
		if err != nil {
			t.Fatal(err)
		}
		c.addrs = append(c.addrs, ln.Addr().String())
		c.lns = append(c.lns, ln)
		c.dirs = append(c.dirs, t.TempDir())
		c.faults = append(c.faults, faulty.New(rand.New(rand.NewSource(int64(i)))))
	}
	c.nodes = make([]*Node, size)
	c.done = make([]chan error, size)
	for i := range c.nodes {
		c.start(i, c.config(i))
	}
	t.Cleanup(func() {
		for i := range c.nodes {
			c.stop(i)
		}
	})
	return c
}

func (c *testCluster) config(i int) config.Naming {
	cfg := testConfig(c.t, c.dirs[i])
	cfg.Bind = c.addrs[i]
	cfg.Peers = c.addrs
	cfg.Dial = faulty.NewDialer(c.faults[i]).DialContext
	return cfg
}

// start runs node i with cfg; its listener is made anew when it was stopped.
func (c *testCluster) start(i int, cfg config.Naming) {
	c.t.Helper()
	if c.lns[i] == nil {
		ln, err := net.Listen("tcp", c.addrs[i])
		if err != nil {
			c.t.Fatal(err)
		}
		c.lns[i] = ln
	}
	n, err := New(cfg)
	if err != nil {
		c.t.Fatalf("node %d: %v", i, err)
	}
	c.nodes[i] = n
	c.done[i] = make(chan error, 1)
	ln := c.lns[i]
	go func() { c.done[i] <- n.Serve(ln) }()
}

func (c *testCluster) stop(i int) {
	if c.nodes[i] == nil {
		return
	}
	c.nodes[i].Close()
	<-c.done[i]
	c.nodes[i], c.lns[i] = nil, nil
}

// leader waits for one node to lead, and returns its index.
func (c *testCluster) leader() int {
	c.t.Helper()
	idx := -1
	waitFor(c.t, 20*time.Second, "a naming leader", func() bool {
		idx = -1
		for i, n := range c.nodes {
			if n != nil && n.IsLeader() {
				if idx >= 0 {
					return false // two claim it: wait for the old one to hear
				}
				idx = i
			}
		}
		return idx >= 0
	})
	return idx
}

// cut isolates node i from the others (both directions).
func (c *testCluster) cut(i int) {
	for j := range c.faults {
		if j == i {
			c.faults[j].Partition(c.others(i)...)
		} else {
			c.faults[j].Partition(c.addrs[i])
		}
	}
}

func (c *testCluster) heal() {
	for _, f := range c.faults {
		f.Heal()
	}
}

func (c *testCluster) others(i int) []string {
	var out []string
	for j, a := range c.addrs {
		if j != i {
			out = append(out, a)
		}
	}
	return out
}

func (c *testCluster) client(idx ...int) *client.Client {
	c.t.Helper()
	var addrs []string
	for _, i := range idx {
		addrs = append(addrs, c.addrs[i])
	}
	if len(idx) == 0 {
		addrs = c.addrs
	}
	cl, err := client.New(strings.Join(addrs, ","), client.WithTimeout(10*time.Second))
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(cl.Close)
	return cl
}

// Every node answers every call: a follower forwards changes and default
// reads to the leader; a stale read is answered where it arrives and says
// so. The leader's death elects another, which keeps every acknowledged
// registration and event, and re-arms the sessions.
func TestClusterForwardsAndSurvivesLeaderLoss(t *testing.T) {
	c := newTestCluster(t, 3, 81)
	ctx := context.Background()
	lead := c.leader()
	follower := (lead + 1) % 3
	fcl := c.client(follower)
	jr, err := fcl.Join(ctx, api.JoinRequest{Group: "g", ID: 1, Addr: addr(1)})
	if err != nil {
		t.Fatalf("join through a follower: %v", err)
	}
	if _, err := fcl.Register(ctx, api.RegisterRequest{Group: "g", ID: 1, Addr: addr(1), Session: jr.Session, Epoch: api.Epoch{Term: 3}}); err != nil {
		t.Fatalf("register through a follower: %v", err)
	}
	look, err := fcl.Lookup(ctx, api.LookupRequest{Group: "g"})
	if err != nil || look.Master == nil || look.Master.ID != 1 || look.Stale {
		t.Fatalf("default lookup through a follower: %+v %v", look, err)
	}
	look, err = fcl.Lookup(ctx, api.LookupRequest{Group: "g", Read: api.ReadConsistent})
	if err != nil || look.Master == nil || look.Master.ID != 1 {
		t.Fatalf("consistent lookup: %+v %v", look, err)
	}
	waitFor(t, 10*time.Second, "the follower applied the registration", func() bool {
		look, err = fcl.Lookup(ctx, api.LookupRequest{Group: "g", Read: api.ReadStale})
		return err == nil && look.Master != nil && look.Master.ID == 1
	})
	if !look.Stale || look.LastContactMS < 0 {
		t.Fatalf("a stale answer does not say so: %+v", look.ReadMeta)
	}
	h, err := fcl.Health(ctx)
	if err != nil || h.Role != "follower" || h.Leader != c.addrs[lead] {
		t.Fatalf("health of a follower: %+v %v", h, err)
	}
	peers, err := fcl.Peers(ctx)
	if err != nil || len(peers.Peers) != 3 {
		t.Fatalf("peers: %+v %v", peers, err)
	}

	// The leader dies: another takes office within a few election
	// timeouts, with the state and the session.
	killed := time.Now()
	c.stop(lead)
	next := c.leader()
	t.Logf("new naming leader %s %s after the old one stopped", c.addrs[next], time.Since(killed).Round(time.Millisecond))
	all := c.client()
	if _, err := all.Renew(ctx, api.RenewRequest{Group: "g", ID: 1, Session: jr.Session}); err != nil {
		t.Fatalf("renew after the failover: %v", err)
	}
	look, err = all.Lookup(ctx, api.LookupRequest{Group: "g", Read: api.ReadConsistent})
	if err != nil || look.Master == nil || look.Master.ID != 1 || look.Master.Epoch.Term != 3 {
		t.Fatalf("lookup after the failover: %+v %v", look, err)
	}
	evs, err := all.AllEvents(ctx, "g", 0, api.ReadConsistent)
	if err != nil || countKind(evs, api.EventMemberJoined) != 1 || countKind(evs, api.EventMasterRegistered) != 1 {
		t.Fatalf("events after the failover: %+v %v", evs, err)
	}
	// The old leader comes back as a follower and catches up.
	c.start(lead, c.config(lead))
	waitFor(t, 10*time.Second, "the old leader caught up", func() bool {
		look, err := c.client(lead).Lookup(ctx, api.LookupRequest{Group: "g", Read: api.ReadStale})
		return err == nil && look.Master != nil && look.Master.ID == 1
	})
}

// A node cut off from the others refuses changes (after a bounded wait, a
// clear error), serves stale reads marked as such, and the two others
// carry on.
func TestClusterMinorityRefusesWrites(t *testing.T) {
	c := newTestCluster(t, 3, 82)
	ctx := context.Background()
	lead := c.leader()
	cl := c.client()
	if _, err := cl.Join(ctx, api.JoinRequest{Group: "g", ID: 1, Addr: addr(1)}); err != nil {
		t.Fatal(err)
	}
	cutoff := (lead + 1) % 3
	waitFor(t, 10*time.Second, "the cut-off node applied the join", func() bool {
		st, err := c.client(cutoff).Status(ctx, api.StatusRequest{Group: "g", Read: api.ReadStale})
		return err == nil && len(st.Groups) == 1
	})
	c.cut(cutoff)
	start := time.Now()
	_, err := c.client(cutoff).Join(ctx, api.JoinRequest{Group: "g", ID: 2, Addr: addr(2)})
	if !errors.Is(err, api.ErrUnavailable) {
		t.Fatalf("a join on the cut-off node: %v, want unavailable", err)
	}
	t.Logf("the cut-off node refused a join after %s: %v", time.Since(start).Round(time.Millisecond), err)
	st, err := c.client(cutoff).Status(ctx, api.StatusRequest{Group: "g", Read: api.ReadStale})
	if err != nil || !st.Stale || len(st.Groups) != 1 {
		t.Fatalf("stale status on the cut-off node: %+v %v", st, err)
	}
	var majority []int
	for i := range c.addrs {
		if i != cutoff {
			majority = append(majority, i)
		}
	}
	if _, err := c.client(majority...).Join(ctx, api.JoinRequest{Group: "g", ID: 3, Addr: addr(3)}); err != nil {
		t.Fatalf("the majority stopped taking joins: %v", err)
	}
	c.heal()
	waitFor(t, 10*time.Second, "the healed node caught up", func() bool {
		st, err := c.client(cutoff).Status(ctx, api.StatusRequest{Group: "g", Read: api.ReadStale})
		return err == nil && len(st.Groups) == 1 && len(st.Groups[0].Members) == 2
	})
}

// A single node grows to three with -join: every registration and event is
// kept, and each new node serves them.
func TestClusterGrowsFromOneNode(t *testing.T) {
	ctx := context.Background()
	var addrs []string
	var lns []net.Listener
	for i := 1; i <= 3; i++ {
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.83.%d:0", i))
		if err != nil {
			t.Fatal(err)
		}
		addrs, lns = append(addrs, ln.Addr().String()), append(lns, ln)
	}
	start := func(i int, join []string) *Node {
		cfg := testConfig(t, t.TempDir())
		cfg.Bind, cfg.Join = addrs[i], join
		n, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- n.Serve(lns[i]) }()
		t.Cleanup(func() { n.Close(); <-done })
		return n
	}
	start(0, nil)
	cl, err := client.New(addrs[0])
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var sessions []uint64
	for g := 0; g < 20; g++ {
		group := fmt.Sprintf("grow-%d", g)
		jr, err := cl.Join(ctx, api.JoinRequest{Group: group, ID: 1, Addr: addr(1)})
		if err != nil {
			t.Fatal(err)
		}
		sessions = append(sessions, jr.Session)
		if _, err := cl.Register(ctx, api.RegisterRequest{Group: group, ID: 1, Addr: addr(1), Session: jr.Session, Epoch: api.Epoch{Term: uint64(g + 1)}}); err != nil {
			t.Fatal(err)
		}
	}
	before, err := cl.AllEvents(ctx, "grow-7", 0)
	if err != nil {
		t.Fatal(err)
	}
	start(1, addrs[:1])
	start(2, addrs[:1])
	waitFor(t, 20*time.Second, "three voters", func() bool {
		ps, err := cl.Peers(ctx)
		return err == nil && len(ps.Peers) == 3
	})
	for i := 1; i < 3; i++ {
		one, err := client.New(addrs[i])
		if err != nil {
			t.Fatal(err)
		}
		defer one.Close()
		waitFor(t, 20*time.Second, "node "+addrs[i]+" holding every group", func() bool {
			all, err := one.AllStatus(ctx, api.ReadStale)
			return err == nil && len(all) == 20
		})
		for g := 0; g < 20; g++ {
			look, err := one.Lookup(ctx, api.LookupRequest{Group: fmt.Sprintf("grow-%d", g), Read: api.ReadStale})
			if err != nil || look.Master == nil || look.Master.Epoch.Term != uint64(g+1) {
				t.Fatalf("node %s, group %d: %+v %v", addrs[i], g, look, err)
			}
		}
		after, err := one.AllEvents(ctx, "grow-7", 0, api.ReadStale)
		if err != nil || len(after) != len(before) {
			t.Fatalf("node %s: %d events of grow-7, the first node had %d (%v)", addrs[i], len(after), len(before), err)
		}
	}
}

// Bad cluster input is refused with a clear error and changes nothing: a
// data dir of another cluster, peers that are not voters, bad addresses.
func TestClusterBadInput(t *testing.T) {
	c := newTestCluster(t, 3, 84)
	ctx := context.Background()
	c.leader()
	cl := c.client()
	if err := cl.RemovePeer(ctx, "127.0.84.9:7400"); !errors.Is(err, api.ErrNotFound) {
		t.Fatalf("remove a node that is no voter: %v", err)
	}
	if err := cl.AddPeer(ctx, "no-port"); !errors.Is(err, api.ErrInvalid) {
		t.Fatalf("add a bad address: %v", err)
	}
	if ps, err := cl.Peers(ctx); err != nil || len(ps.Peers) != 3 {
		t.Fatalf("peers after bad input: %+v %v", ps, err)
	}
	// Node 2 restarted on its data dir with another peer list.
	c.stop(2)
	cfg := c.config(2)
	cfg.Peers = []string{c.addrs[2], "127.0.84.9:7400"}
	if _, err := New(cfg); !errors.Is(err, ErrForeignCluster) || !strings.Contains(err.Error(), c.addrs[0]) {
		t.Fatalf("restart with other peers: %v, want ErrForeignCluster naming the voters", err)
	}
	// Its data dir given to a node of another address.
	cfg = c.config(2)
	cfg.Bind, cfg.Peers = "127.0.84.8:7400", nil
	if _, err := New(cfg); !errors.Is(err, ErrForeignCluster) {
		t.Fatalf("another node on the data dir: %v, want ErrForeignCluster", err)
	}
	c.start(2, c.config(2))
}

// A snapshot saved from the cluster restores it whole; a damaged one is
// refused and changes nothing.
func TestClusterSnapshotSaveRestore(t *testing.T) {
	c := newTestCluster(t, 3, 85)
	ctx := context.Background()
	c.leader()
	cl := c.client()
	for i := uint64(1); i <= 5; i++ {
		if _, err := cl.Join(ctx, api.JoinRequest{Group: fmt.Sprintf("s-%d", i), ID: i, Addr: addr(i)}); err != nil {
			t.Fatal(err)
		}
	}
	var snap bytes.Buffer
	if _, err := cl.SaveSnapshot(ctx, &snap, MaxSnapshotBytes); err != nil {
		t.Fatal(err)
	}
	if err := CheckSnapshot(bytes.NewReader(snap.Bytes())); err != nil {
		t.Fatalf("saved snapshot: %v", err)
	}
	if _, err := cl.Join(ctx, api.JoinRequest{Group: "after-save", ID: 9, Addr: addr(9)}); err != nil {
		t.Fatal(err)
	}
	for _, bad := range [][]byte{snap.Bytes()[:snap.Len()/2], append(bytes.Clone(snap.Bytes()[:snap.Len()-3]), 'x', 'y', 'z'), []byte("not a snapshot")} {
		if err := cl.RestoreSnapshot(ctx, bad); !errors.Is(err, api.ErrInvalid) {
			t.Fatalf("restore of a damaged snapshot: %v, want invalid", err)
		}
	}
	if all, err := cl.AllStatus(ctx, api.ReadConsistent); err != nil || len(all) != 6 {
		t.Fatalf("after refused restores: %d groups, %v; want 6", len(all), err)
	}
	if err := cl.RestoreSnapshot(ctx, snap.Bytes()); err != nil {
		t.Fatal(err)
	}
	all, err := cl.AllStatus(ctx, api.ReadConsistent)
	if err != nil || len(all) != 5 {
		t.Fatalf("after the restore: %d groups, %v; want the 5 saved", len(all), err)
	}
	for i := range c.nodes {
		waitFor(t, 10*time.Second, "node "+c.addrs[i]+" restored", func() bool {
			all, err := c.client(i).AllStatus(ctx, api.ReadStale)
			return err == nil && len(all) == 5
		})
	}
}

// A data dir of a naming node from before raft (naming.db) is imported at
// the first start: every group and event is kept, and the old file is
// renamed so that it is not imported twice.
func TestLegacyStoreImported(t *testing.T) {
	dir := t.TempDir()
	reg := newTestRegistry(0)
	fx := &Effects{}
	jr, err := reg.Join(t0, api.JoinRequest{Group: "old", ID: 2, Addr: addr(2)}, 0, fx)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := reg.Register(t0, api.RegisterRequest{Group: "old", ID: 2, Addr: addr(2), Session: jr.Session, Epoch: api.Epoch{Term: 7}}, fx); err != nil {
		t.Fatal(err)
	}
	rec, err := reg.Record("old")
	if err != nil {
		t.Fatal(err)
	}
	old, err := OpenStore(dir, 100)
	if err != nil {
		t.Fatal(err)
	}
	if err := old.apply([]*command{{Groups: []groupPut{{Name: "old", Record: rec}}, Events: fx.Events}}); err != nil {
		t.Fatal(err)
	}
	old.Close()

	cfg := testConfig(t, dir)
	cfg.RestartGrace = time.Minute
	n, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	look, err := n.Lookup(api.LookupRequest{Group: "old"})
	if err != nil || look.Master == nil || look.Master.ID != 2 || look.Master.Epoch.Term != 7 {
		t.Fatalf("imported registration: %+v %v", look, err)
	}
	if _, err := n.Renew(api.RenewRequest{Group: "old", ID: 2, Session: jr.Session}); err != nil {
		t.Fatalf("imported session: %v", err)
	}
	evs, err := n.Events(api.EventsRequest{Group: "old"})
	if err != nil || len(evs.Events) != 2 {
		t.Fatalf("imported events: %+v %v", evs, err)
	}
	n.Close()
	if _, err := os.Stat(filepath.Join(dir, legacyStoreFile+".imported")); err != nil {
		t.Fatalf("the old store was not renamed: %v", err)
	}
	// Restarted: the state comes from raft, once.
	n, err = New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	if evs, err := n.Events(api.EventsRequest{Group: "old"}); err != nil || len(evs.Events) != 2 {
		t.Fatalf("after a restart: %+v %v", evs, err)
	}
}

// A trigger whose delivery is still being retried when the naming leader
// dies is delivered by the next leader, from the outbox: every member
// hears each decision.
func TestClusterResumesDeliveries(t *testing.T) {
	c := newTestCluster(t, 3, 88)
	ctx := context.Background()
	c.leader()
	cl := c.client()
	fa := newFakeAgent(t)
	fa.fail.Store(1 << 30) // refuse every delivery for now
	other := newFakeAgent(t)
	for id, a := range map[uint64]*fakeAgent{1: fa, 2: other} {
		if _, err := cl.Join(ctx, api.JoinRequest{Group: "g", ID: id, Addr: a.addr(), TTL: time.Minute}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := cl.Recheck(ctx, api.RecheckRequest{Group: "g", From: 2, Reason: "test"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "deliveries to member 1 failing", func() bool { return fa.calls.Load() >= 2 })
	if fa.notified("g", 0) {
		t.Fatal("delivered although refused")
	}
	lead := c.leader()
	c.stop(lead)
	fa.fail.Store(0)
	c.leader()
	waitFor(t, 20*time.Second, "the new leader delivering the pending trigger", func() bool {
		fa.mu.Lock()
		defer fa.mu.Unlock()
		for _, n := range fa.got {
			if n.Group == "g" && n.Reason == "recheck" {
				return true
			}
		}
		return false
	})
}

// A node that starts as the only voter campaigns sooner, but keeps the
// leader lease of its configured timeout: raft cannot change the lease on
// a running node, and a lease cut down with the election timeout made a
// node grown from one step down whenever a voter's heartbeat took longer
// than 10 ms. Both configurations are valid, and the one put back once the
// node leads is valid on top of the one it started with.
func TestRaftConfigOfALoneNode(t *testing.T) {
	for _, d := range []time.Duration{10 * time.Millisecond, 100 * time.Millisecond, time.Second, 3 * time.Second, time.Minute} {
		cfg, err := config.DefaultNaming("lan")
		if err != nil {
			t.Fatal(err)
		}
		cfg.ElectionTimeout = d
		n := &Node{cfg: cfg, logger: hclog.NewNullLogger()}
		lone, normal := n.raftConfig(true), n.raftConfig(false)
		for name, rc := range map[string]*raft.Config{"alone": lone, "normal": normal} {
			if err := raft.ValidateConfig(rc); err != nil {
				t.Errorf("timeout %s, %s: %v", d, name, err)
			}
		}
		if lone.LeaderLeaseTimeout != normal.LeaderLeaseTimeout {
			t.Errorf("timeout %s: lease %s alone, %s normally", d, lone.LeaderLeaseTimeout, normal.LeaderLeaseTimeout)
		}
		if lone.HeartbeatTimeout > normal.HeartbeatTimeout || lone.ElectionTimeout > normal.ElectionTimeout {
			t.Errorf("timeout %s: a lone node waits %s/%s, longer than %s/%s", d, lone.HeartbeatTimeout, lone.ElectionTimeout,
				normal.HeartbeatTimeout, normal.ElectionTimeout)
		}
		back := *lone
		back.HeartbeatTimeout, back.ElectionTimeout = normal.HeartbeatTimeout, normal.ElectionTimeout
		if err := raft.ValidateConfig(&back); err != nil {
			t.Errorf("timeout %s: the configuration put back is refused: %v", d, err)
		}
	}
}
