package gossip

import (
	"fmt"
	"io"
	"math/rand"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/memberlist"

	"github.com/mastership/mastership/gossip/faulty"
	"github.com/mastership/mastership/naming/api"
)

// waitFor polls cond until it holds or timeout passes, then fails with what.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// recorder is an Events that keeps everything it is told.
type recorder struct {
	mu        sync.Mutex
	events    []MemberEvent
	competing []Claim
}

func (r *recorder) MemberEvent(e MemberEvent) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
}

func (r *recorder) CompetingClaim(c Claim) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.competing = append(r.competing, c)
}

func (r *recorder) competingClaims() []Claim {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Claim(nil), r.competing...)
}

func (r *recorder) count(k EventKind, name string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, e := range r.events {
		if e.Kind == k && (name == "" || e.Member.Name == name) {
			n++
		}
	}
	return n
}

// tuneFast shortens memberlist's timers so the package tests run in seconds
// even with -race on two cores.
func tuneFast(c *memberlist.Config) {
	c.ProbeInterval = 150 * time.Millisecond
	c.ProbeTimeout = 80 * time.Millisecond
	c.GossipInterval = 30 * time.Millisecond
	c.PushPullInterval = time.Second
	c.TCPTimeout = 500 * time.Millisecond
	c.SuspicionMult = 3
	c.GossipToTheDeadTime = 2 * time.Second
}

type testNode struct {
	g      *Gossip
	faults *faulty.Faults
	ev     *recorder
	ip     string
}

func (n *testNode) addr() string { return n.g.LocalAddr() }

type nodeOpt func(*Config)

// startNode starts agent id of group on 127.0.0.(10+ip) with a free port,
// a faulty transport and the local profile with fast timers.
func startNode(t testing.TB, group string, id uint64, ip int, join []string, opts ...nodeOpt) (*testNode, error) {
	t.Helper()
	seed := int64(id)*1000 + int64(ip)
	f := faulty.New(rand.New(rand.NewSource(seed)))
	ev := &recorder{}
	cfg := DefaultConfig(ProfileLocal)
	cfg.Group, cfg.ID = group, id
	cfg.BindAddr = fmt.Sprintf("127.0.0.%d:0", 10+ip)
	cfg.Join = join
	cfg.Meta = Meta{Role: api.RoleBackup, Priority: int(id), API: fmt.Sprintf("127.0.0.%d:9000", 10+ip)}
	cfg.ReconnectInterval = 150 * time.Millisecond
	cfg.Rand = rand.New(rand.NewSource(seed))
	cfg.Tune = tuneFast
	cfg.WrapTransport = func(nt memberlist.NodeAwareTransport) memberlist.Transport {
		return faulty.NewTransport(nt, f)
	}
	if os.Getenv("GOSSIP_TEST_LOG") != "" {
		cfg.Logger = hclog.New(&hclog.LoggerOptions{Name: NodeName(group, id), Level: hclog.Debug})
	}
	for _, o := range opts {
		o(&cfg)
	}
	g, err := New(cfg, ev)
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { _ = g.Shutdown() })
	return &testNode{g: g, faults: f, ev: ev, ip: fmt.Sprintf("127.0.0.%d", 10+ip)}, nil
}

// startCluster starts n agents of group "g" (IDs 1..n on 127.0.0.11..), the
// others joining the first, and waits until every one sees all alive.
func startCluster(t *testing.T, n int) []*testNode {
	t.Helper()
	var nodes []*testNode
	for i := 1; i <= n; i++ {
		var join []string
		if i > 1 {
			join = []string{nodes[0].addr()}
		}
		nd, err := startNode(t, "g", uint64(i), i, join)
		if err != nil {
			t.Fatalf("start node %d: %v", i, err)
		}
		if _, err := nd.g.Join(); err != nil {
			t.Fatalf("join node %d: %v", i, err)
		}
		nodes = append(nodes, nd)
	}
	waitFor(t, 10*time.Second, fmt.Sprintf("%d members alive everywhere", n), func() bool {
		for _, nd := range nodes {
			if countHealth(nd.g.Members(), HealthAlive) != n {
				return false
			}
		}
		return true
	})
	return nodes
}

func countHealth(ms []Member, h Health) int {
	c := 0
	for _, m := range ms {
		if m.Health == h {
			c++
		}
	}
	return c
}

func memberByID(ms []Member, id uint64) (Member, bool) {
	for _, m := range ms {
		if m.Meta.ID == id {
			return m, true
		}
	}
	return Member{}, false
}

func hasClaim(cs []Claim, id uint64, e api.Epoch) bool {
	for _, c := range cs {
		if c.ID == id && c.Epoch == e {
			return true
		}
	}
	return false
}

func TestClusterFormsMetaAndClaimsPropagate(t *testing.T) {
	nodes := startCluster(t, 5)

	// Members are sorted by ID and carry the metadata.
	ms := nodes[4].g.Members()
	for i, m := range ms {
		if m.Meta.ID != uint64(i+1) || m.Name != NodeName("g", uint64(i+1)) {
			t.Fatalf("member %d = %+v, want ID %d", i, m, i+1)
		}
	}

	// A metadata update reaches everyone.
	meta := nodes[2].g.Meta()
	meta.Priority = 42
	meta.Epoch = api.Epoch{Term: 7, ID: 1}
	meta.Master = 1
	if err := nodes[2].g.UpdateMeta(meta); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "priority 42 of agent 3 everywhere", func() bool {
		for _, nd := range nodes {
			m, ok := memberByID(nd.g.Members(), 3)
			if !ok || m.Meta.Priority != 42 || m.Meta.Master != 1 {
				return false
			}
		}
		return true
	})
	if nodes[0].ev.count(EventUpdate, "g/3") == 0 {
		t.Errorf("node 1 got no update event for g/3")
	}

	// A claim reaches every member.
	e := api.Epoch{Term: 7, ID: 1}
	if err := nodes[0].g.UpdateMeta(Meta{Role: api.RoleMaster, Epoch: e, Master: 1, API: "127.0.0.11:9000"}); err != nil {
		t.Fatal(err)
	}
	if err := nodes[0].g.Claim(Claim{Epoch: e, API: "127.0.0.11:9000"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "claim of agent 1 everywhere", func() bool {
		for _, nd := range nodes {
			if !hasClaim(nd.g.Claims("g"), 1, e) {
				return false
			}
		}
		return true
	})
	// One master, so nobody saw a competing claim.
	for i, nd := range nodes {
		if c := nd.ev.competingClaims(); len(c) != 0 {
			t.Errorf("node %d: competing claims %v", i+1, c)
		}
	}
	// An older claim of our own is refused.
	if err := nodes[0].g.Claim(Claim{Epoch: api.Epoch{Term: 6, ID: 1}}); err == nil {
		t.Errorf("older claim accepted")
	}

	// Stepping down withdraws the claim everywhere.
	if err := nodes[0].g.UpdateMeta(Meta{Role: api.RoleBackup, Epoch: e, Master: 0, API: "127.0.0.11:9000"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "claim of agent 1 withdrawn everywhere", func() bool {
		for _, nd := range nodes {
			if len(nd.g.Claims("g")) != 0 {
				return false
			}
		}
		return true
	})

	// A graceful leave is "leave" (forgotten), not "dead".
	if err := nodes[4].g.Leave(2 * time.Second); err != nil {
		t.Fatal(err)
	}
	defer func() {
		for i, nd := range nodes[:4] {
			t.Logf("node %d: members %v dead=%d leave=%d upd=%d", i+1, nd.g.Members(), nd.ev.count(EventDead, "g/5"), nd.ev.count(EventLeave, "g/5"), nd.ev.count(EventUpdate, "g/5"))
		}
	}()
	waitFor(t, 5*time.Second, "agent 5 forgotten after leaving", func() bool {
		for _, nd := range nodes[:4] {
			if _, ok := memberByID(nd.g.Members(), 5); ok {
				return false
			}
		}
		return true
	})
	// memberlist's leave may overtake the leave intent: a member can be
	// reported dead first, but it always ends as left, once. Events reach
	// the delegate after the view changed (the dispatcher's queue): wait
	// for the leave, then check there was one.
	waitFor(t, 5*time.Second, "a leave event for agent 5 everywhere", func() bool {
		for _, nd := range nodes[:4] {
			if nd.ev.count(EventLeave, "g/5") == 0 {
				return false
			}
		}
		return true
	})
	for i, nd := range nodes[:4] {
		if nd.ev.count(EventLeave, "g/5") != 1 {
			t.Errorf("node %d: dead=%d leave=%d for g/5, want one leave", i+1,
				nd.ev.count(EventDead, "g/5"), nd.ev.count(EventLeave, "g/5"))
		}
	}
}

func TestCompetingClaimHook(t *testing.T) {
	// 1 and 2 are masters of g, 3 a back-up of g, 4 a master of group h.
	var nodes []*testNode
	groups := []string{"g", "g", "g", "h"}
	for i, grp := range groups {
		var join []string
		if i > 0 {
			join = []string{nodes[0].addr()}
		}
		nd, err := startNode(t, grp, uint64(i+1), 20+i, join)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := nd.g.Join(); err != nil {
			t.Fatal(err)
		}
		nodes = append(nodes, nd)
	}
	waitFor(t, 10*time.Second, "4 members", func() bool {
		for _, nd := range nodes {
			if countHealth(nd.g.Members(), HealthAlive) != 4 {
				return false
			}
		}
		return true
	})
	e1 := api.Epoch{Term: 3, ID: 1}
	mustMaster(t, nodes[0], e1)
	mustMaster(t, nodes[3], api.Epoch{Term: 1, ID: 4})
	waitFor(t, 5*time.Second, "claims of 1 and 4 everywhere", func() bool {
		for _, nd := range nodes {
			if !hasClaim(nd.g.Claims(""), 1, e1) || !hasClaim(nd.g.Claims(""), 4, api.Epoch{Term: 1, ID: 4}) {
				return false
			}
		}
		return true
	})
	// Agent 2 becomes master of g at a newer epoch: both masters of g hear
	// the other's claim (2 on becoming master, since 1's was known).
	e2 := api.Epoch{Term: 4, ID: 2}
	mustMaster(t, nodes[1], e2)
	waitFor(t, 5*time.Second, "competing claim of 2 at 1", func() bool {
		return len(nodes[0].ev.competingClaims()) == 1
	})
	waitFor(t, 5*time.Second, "competing claim of 1 at 2", func() bool {
		return len(nodes[1].ev.competingClaims()) == 1
	})
	if c := nodes[0].ev.competingClaims()[0]; c.ID != 2 || c.Epoch != e2 || c.API != nodes[1].g.Meta().API {
		t.Errorf("node 1 got %+v", c)
	}
	if c := nodes[1].ev.competingClaims()[0]; c.ID != 1 || c.Epoch != e1 {
		t.Errorf("node 2 got %+v", c)
	}
	waitFor(t, 5*time.Second, "claim of 2 at the back-up and at group h", func() bool {
		return hasClaim(nodes[2].g.Claims("g"), 2, e2) && hasClaim(nodes[3].g.Claims("g"), 2, e2)
	})
	if c := nodes[2].ev.competingClaims(); len(c) != 0 {
		t.Errorf("back-up got competing claims %v", c)
	}
	if c := nodes[3].ev.competingClaims(); len(c) != 0 {
		t.Errorf("master of another group got competing claims %v", c)
	}

	// An older epoch of agent 2, and a duplicate, reach node 1 directly
	// through the delegate: no new hook.
	old := Claim{Group: "g", ID: 2, Epoch: api.Epoch{Term: 2, ID: 2}}
	msg, err := encodeClaimMsg(old)
	if err != nil {
		t.Fatal(err)
	}
	d := &delegate{g: nodes[0].g}
	d.NotifyMsg(msg)
	dup, _ := encodeClaimMsg(nodes[1].g.Claims("g")[1])
	d.NotifyMsg(dup)
	// A newer epoch of agent 2 is a new claim: the hook fires again.
	newer := Claim{Group: "g", ID: 2, Epoch: api.Epoch{Term: 5, ID: 2}}
	msg, _ = encodeClaimMsg(newer)
	d.NotifyMsg(msg)
	waitFor(t, 5*time.Second, "second competing claim at 1", func() bool {
		return len(nodes[0].ev.competingClaims()) >= 2
	})
	cs := nodes[0].ev.competingClaims()
	if len(cs) != 2 || cs[1].Epoch != newer.Epoch {
		t.Errorf("node 1 competing claims %v, want e2 then %v only", cs, newer.Epoch)
	}
}

func mustMaster(t *testing.T, nd *testNode, e api.Epoch) {
	t.Helper()
	m := nd.g.Meta()
	m.Role, m.Epoch, m.Master = api.RoleMaster, e, m.ID
	if err := nd.g.UpdateMeta(m); err != nil {
		t.Fatal(err)
	}
	if err := nd.g.Claim(Claim{Epoch: e, API: m.API}); err != nil {
		t.Fatal(err)
	}
}

func TestPartitionAndHealByReconnect(t *testing.T) {
	nodes := startCluster(t, 5)
	e1 := api.Epoch{Term: 1, ID: 1}
	mustMaster(t, nodes[0], e1)
	waitFor(t, 5*time.Second, "claim of 1 everywhere", func() bool {
		for _, nd := range nodes {
			if !hasClaim(nd.g.Claims("g"), 1, e1) {
				return false
			}
		}
		return true
	})

	sideA, sideB := nodes[:3], nodes[3:]
	partition := func(from, to []*testNode) {
		for _, a := range from {
			for _, b := range to {
				a.faults.Partition(b.addr())
			}
		}
	}
	partition(sideA, sideB)
	partition(sideB, sideA)
	seesOthersDown := func(side, others []*testNode) bool {
		for _, a := range side {
			ms := a.g.Members()
			for _, b := range others {
				m, ok := memberByID(ms, b.g.Meta().ID)
				if ok && m.Health == HealthAlive {
					return false
				}
			}
			if countHealth(ms, HealthAlive) != len(side) {
				return false
			}
		}
		return true
	}
	waitFor(t, 15*time.Second, "the view split {1,2,3}|{4,5}", func() bool {
		return seesOthersDown(sideA, sideB) && seesOthersDown(sideB, sideA)
	})
	waitFor(t, 15*time.Second, "the other side dead", func() bool {
		for _, a := range sideA {
			if countHealth(a.g.Members(), HealthDead) != 2 {
				return false
			}
		}
		for _, b := range sideB {
			if countHealth(b.g.Members(), HealthDead) != 3 {
				return false
			}
		}
		return true
	})
	if c := nodes[3].g.Claims("g"); len(c) != 0 {
		t.Errorf("side B still holds claims of dead members: %v", c)
	}

	// Side B elects 4 on its own: no competing claim in sight yet.
	e4 := api.Epoch{Term: 2, ID: 4}
	mustMaster(t, nodes[3], e4)
	waitFor(t, 5*time.Second, "claim of 4 on side B", func() bool {
		return hasClaim(nodes[4].g.Claims("g"), 4, e4)
	})
	if c := nodes[3].ev.competingClaims(); len(c) != 0 {
		t.Errorf("4 saw competing claims during the partition: %v", c)
	}

	// Heal: nobody calls Join; the reconnect loop merges the sides.
	for _, nd := range nodes {
		nd.faults.Heal()
	}
	waitFor(t, 20*time.Second, "5 members alive everywhere after heal", func() bool {
		for _, nd := range nodes {
			if countHealth(nd.g.Members(), HealthAlive) != 5 {
				return false
			}
		}
		return true
	})
	// Push/pull and broadcasts merged the claims: both masters hear of the
	// other.
	waitFor(t, 10*time.Second, "both claims everywhere", func() bool {
		for _, nd := range nodes {
			cs := nd.g.Claims("g")
			if !hasClaim(cs, 1, e1) || !hasClaim(cs, 4, e4) {
				return false
			}
		}
		return true
	})
	waitFor(t, 5*time.Second, "competing-claim hooks on 1 and 4", func() bool {
		return hasClaim(nodes[0].ev.competingClaims(), 4, e4) && hasClaim(nodes[3].ev.competingClaims(), 1, e1)
	})
	for _, nd := range []*testNode{nodes[1], nodes[2], nodes[4]} {
		if c := nd.ev.competingClaims(); len(c) != 0 {
			t.Errorf("back-up %s got competing claims %v", nd.g.Name(), c)
		}
	}
	if nodes[0].ev.count(EventDead, "g/4") == 0 || nodes[0].ev.count(EventJoin, "g/4") == 0 {
		t.Errorf("node 1 events for g/4: dead=%d join=%d", nodes[0].ev.count(EventDead, "g/4"), nodes[0].ev.count(EventJoin, "g/4"))
	}
	st := nodes[0].faults.Status()
	if st.Blocked == 0 || len(st.Partitioned) != 0 {
		t.Errorf("faults status after heal: %+v", st)
	}
	if gs := nodes[0].g.Status(); gs.Alive != 5 || gs.Dead != 0 || gs.Peak != 5 || gs.Claims != 2 || gs.Name != "g/1" {
		t.Errorf("gossip status after heal: %+v", gs)
	}
}

func TestDuplicateIDRefused(t *testing.T) {
	nodes := startCluster(t, 2)
	dup, err := startNode(t, "g", 2, 9, []string{nodes[0].addr()})
	if err != nil {
		t.Fatal(err)
	}
	_, err = dup.g.Join()
	if err == nil || !errorsIs(err, ErrDuplicateID) {
		t.Fatalf("join with a taken ID: err = %v, want ErrDuplicateID", err)
	}
	t.Logf("refused: %v", err)
	if _, err := dup.g.Join(); !errorsIs(err, ErrShutdown) {
		t.Errorf("join after refusal: %v, want ErrShutdown", err)
	}
	// The incumbent stays, at its own address.
	waitFor(t, 5*time.Second, "conflict event at node 1", func() bool {
		return nodes[0].ev.count(EventConflict, "g/2") > 0
	})
	m, ok := memberByID(nodes[0].g.Members(), 2)
	if !ok || m.Addr != nodes[1].addr() || m.Health != HealthAlive {
		t.Errorf("node 1 sees g/2 as %+v, want alive at %s", m, nodes[1].addr())
	}
	if len(nodes[0].g.Members()) != 2 {
		t.Errorf("members: %v", nodes[0].g.Members())
	}
}

func TestEncryption(t *testing.T) {
	key := []byte("0123456789abcdef")
	other := []byte("fedcba9876543210")
	withKey := func(k []byte) nodeOpt { return func(c *Config) { c.SecretKey = k } }
	a, err := startNode(t, "g", 1, 31, nil, withKey(key))
	if err != nil {
		t.Fatal(err)
	}
	b, err := startNode(t, "g", 2, 32, []string{a.addr()}, withKey(key))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.g.Join(); err != nil {
		t.Fatalf("join with the same key: %v", err)
	}
	waitFor(t, 5*time.Second, "two encrypted members", func() bool {
		return countHealth(a.g.Members(), HealthAlive) == 2 && countHealth(b.g.Members(), HealthAlive) == 2
	})
	c, err := startNode(t, "g", 3, 33, []string{a.addr()}, withKey(other))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.g.Join(); !errorsIs(err, ErrJoin) {
		t.Fatalf("join with another key: err = %v, want ErrJoin", err)
	}
	d, err := startNode(t, "g", 4, 34, []string{a.addr()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.g.Join(); !errorsIs(err, ErrJoin) {
		t.Fatalf("join in clear text: err = %v, want ErrJoin", err)
	}
	if n := len(a.g.Members()); n != 2 {
		t.Errorf("encrypted cluster has %d members: %v", n, a.g.Members())
	}
	if _, err := startNode(t, "g", 5, 35, nil, withKey([]byte("short"))); !errorsIs(err, ErrConfig) {
		t.Errorf("5-byte key: %v, want ErrConfig", err)
	}
}

// TestSuspectFromMissingAcks: memberlist does not report suspicion, so the
// view derives it from probe acks. memberlist's own suspicion is made long
// here so that the derived suspect shows before memberlist declares death,
// and a heal brings the member back to alive.
func TestSuspectFromMissingAcks(t *testing.T) {
	slowDeath := func(c *Config) {
		c.SuspectAfter = 500 * time.Millisecond
		c.Tune = func(mc *memberlist.Config) {
			tuneFast(mc)
			mc.SuspicionMult = 40 // at least 40 probe intervals (6s) before dead
		}
	}
	var nodes []*testNode
	for i := 1; i <= 3; i++ {
		var join []string
		if i > 1 {
			join = []string{nodes[0].addr()}
		}
		nd, err := startNode(t, "g", uint64(i), 40+i, join, slowDeath)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := nd.g.Join(); err != nil {
			t.Fatal(err)
		}
		nodes = append(nodes, nd)
	}
	waitFor(t, 10*time.Second, "3 members alive", func() bool {
		for _, nd := range nodes {
			if countHealth(nd.g.Members(), HealthAlive) != 3 {
				return false
			}
		}
		return true
	})
	nodes[0].faults.Partition(nodes[2].ip)
	nodes[1].faults.Partition(nodes[2].ip)
	nodes[2].faults.Partition(nodes[0].ip, nodes[1].ip)
	waitFor(t, 5*time.Second, "g/3 suspect at node 1", func() bool {
		m, ok := memberByID(nodes[0].g.Members(), 3)
		return ok && m.Health == HealthSuspect
	})
	// Events reach the delegate through the dispatcher, after the view
	// changed: wait for the delivery, do not race it.
	waitFor(t, 5*time.Second, "suspect event for g/3 at node 1", func() bool {
		return nodes[0].ev.count(EventSuspect, "g/3") > 0
	})
	for _, nd := range nodes {
		nd.faults.Heal()
	}
	waitFor(t, 10*time.Second, "g/3 alive again at node 1", func() bool {
		m, ok := memberByID(nodes[0].g.Members(), 3)
		return ok && m.Health == HealthAlive
	})
	waitFor(t, 5*time.Second, "an alive or join event for g/3 after the heal", func() bool {
		return nodes[0].ev.count(EventAlive, "g/3")+nodes[0].ev.count(EventJoin, "g/3") >= 2
	})
}

// Forged claims (an epoch not in the claimant's name, term 0, or one the
// agent's epoch check refuses, such as 2^64-1) arriving by broadcast or
// push/pull are dropped: they do not fence the real agent's next claim and
// raise no competing-claim event.
func TestForgedClaimsDropped(t *testing.T) {
	var checked int
	var mu sync.Mutex
	check := func(c *Config) {
		c.CheckEpoch = func(e api.Epoch) error {
			mu.Lock()
			checked++
			mu.Unlock()
			return api.CheckTerm(e.Term, 10)
		}
	}
	a, err := startNode(t, "g", 1, 71, nil, check)
	if err != nil {
		t.Fatal(err)
	}
	a.g.Join()
	mustMaster(t, a, api.Epoch{Term: 3, ID: 1})
	d := &delegate{g: a.g}
	forged := []Claim{
		{Group: "g", ID: 2, Epoch: api.Epoch{Term: ^uint64(0), ID: 2}},
		{Group: "g", ID: 2, Epoch: api.Epoch{Term: 10 + 1<<40, ID: 2}},
		{Group: "g", ID: 2, Epoch: api.Epoch{Term: 5, ID: 3}},
		{Group: "g", ID: 2, Epoch: api.Epoch{Term: 0, ID: 2}},
		{Group: "g", ID: 1, Epoch: api.Epoch{Term: ^uint64(0), ID: 1}},
	}
	for _, c := range forged {
		b, err := encodeClaimMsg(c)
		if err != nil {
			t.Fatal(err)
		}
		d.NotifyMsg(b)
		st, err := api.Encode(pushPullState{Version: 1, Claims: []Claim{c}})
		if err != nil {
			t.Fatal(err)
		}
		d.MergeRemoteState(st, false)
	}
	for _, c := range a.g.Claims("g") {
		if c.ID != 1 || c.Epoch != (api.Epoch{Term: 3, ID: 1}) {
			t.Fatalf("a forged claim was kept: %v", c)
		}
	}
	if cs := a.ev.competingClaims(); len(cs) != 0 {
		t.Fatalf("forged claims raised competing-claim events: %v", cs)
	}
	mu.Lock()
	n := checked
	mu.Unlock()
	if n == 0 {
		t.Fatal("the epoch check was never asked")
	}
	// The real agent's next claim is not fenced by the forged 2^64-1.
	mustMaster(t, a, api.Epoch{Term: 4, ID: 1})
}

// Key rotation through the keyring, as an operator runs it on every
// member: install the new key, use it, remove the old one. The members
// keep talking at every step; afterwards a newcomer with only the new key
// joins and one with only the old key cannot.
func TestKeyRotation(t *testing.T) {
	oldKey := []byte("0123456789abcdef0123456789abcdef")
	newKey := []byte("fedcba9876543210fedcba9876543210")
	withKey := func(k []byte) nodeOpt { return func(c *Config) { c.SecretKey = k } }
	a, err := startNode(t, "g", 1, 41, nil, withKey(oldKey))
	if err != nil {
		t.Fatal(err)
	}
	b, err := startNode(t, "g", 2, 42, []string{a.addr()}, withKey(oldKey))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.g.Join(); err != nil {
		t.Fatal(err)
	}
	// both proves that gossip flows both ways: each member announces a new
	// priority, and the other must hear it.
	prio := 100
	both := func(what string) {
		t.Helper()
		prio++
		for _, n := range []*testNode{a, b} {
			m := n.g.Meta()
			m.Priority = prio
			if err := n.g.UpdateMeta(m); err != nil {
				t.Fatal(err)
			}
		}
		waitFor(t, 10*time.Second, what, func() bool {
			ma, okA := memberByID(b.g.Members(), 1)
			mb, okB := memberByID(a.g.Members(), 2)
			return okA && okB && ma.Meta.Priority == prio && mb.Meta.Priority == prio && ma.Health == HealthAlive && mb.Health == HealthAlive
		})
	}
	both("two members with the old key")
	for _, step := range []struct {
		name string
		do   func(g *Gossip) error
	}{
		{"install", func(g *Gossip) error { return g.InstallKey(newKey) }},
		{"use", func(g *Gossip) error { return g.UseKey(newKey) }},
		{"remove", func(g *Gossip) error { return g.RemoveKey(oldKey) }},
	} {
		for _, n := range []*testNode{a, b} {
			if err := step.do(n.g); err != nil {
				t.Fatalf("%s: %v", step.name, err)
			}
		}
		both("two members after " + step.name)
	}
	primary, keys, err := a.g.Keys()
	if err != nil || string(primary) != string(newKey) || len(keys) != 1 {
		t.Fatalf("keys after the rotation: %x %d %v", primary, len(keys), err)
	}
	if err := a.g.RemoveKey(newKey); err == nil {
		t.Fatal("the primary key was removed")
	}
	if err := a.g.UseKey(oldKey); err == nil {
		t.Fatal("a removed key was made primary")
	}
	if err := a.g.RemoveKey(oldKey); err == nil {
		t.Fatal("removing a key that is not installed reported no error")
	}
	c, _ := startNode(t, "g", 3, 43, []string{a.addr()}, withKey(newKey))
	if _, err := c.g.Join(); err != nil {
		t.Fatalf("newcomer with the new key: %v", err)
	}
	d, _ := startNode(t, "g", 4, 44, []string{a.addr()}, withKey(oldKey))
	if _, err := d.g.Join(); !errorsIs(err, ErrJoin) {
		t.Fatalf("newcomer with the old key: %v, want ErrJoin", err)
	}
	e, _ := startNode(t, "g", 5, 45, nil)
	if _, _, err := e.g.Keys(); !errorsIs(err, ErrNoEncryption) {
		t.Fatalf("keyring of a clear-text member: %v", err)
	}
	if err := e.g.InstallKey(newKey); !errorsIs(err, ErrNoEncryption) {
		t.Fatalf("install on a clear-text member: %v", err)
	}
}

// Gossip connections that stall are capped: past MaxStreams a new one is
// closed at once, the ones held are released when they end, and gossip
// between the members goes on meanwhile.
func TestStalledStreamsCapped(t *testing.T) {
	const max = 4
	capped := func(c *Config) { c.MaxStreams = max }
	a, err := startNode(t, "g", 1, 90, nil, capped)
	if err != nil {
		t.Fatal(err)
	}
	var stalled []net.Conn
	defer func() {
		for _, c := range stalled {
			c.Close()
		}
	}()
	for i := 0; i < max; i++ {
		c, err := net.Dial("tcp", a.addr())
		if err != nil {
			t.Fatal(err)
		}
		stalled = append(stalled, c)
	}
	waitFor(t, 5*time.Second, "the stalled connections held", func() bool { return a.g.streams.Open() == max })
	extra, err := net.Dial("tcp", a.addr())
	if err != nil {
		t.Fatal(err)
	}
	defer extra.Close()
	extra.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := extra.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("a connection past the cap: read %v, want EOF (closed at once)", err)
	}
	for _, c := range stalled {
		c.Close()
	}
	stalled = nil
	waitFor(t, 5*time.Second, "the closed connections released", func() bool { return a.g.streams.Open() == 0 })
	// Streams work again: a member joins over one.
	b, err := startNode(t, "g", 2, 91, []string{a.addr()}, capped)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.g.Join(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "2 alive at 1", func() bool { return countHealth(a.g.Members(), HealthAlive) == 2 })
}

// One host that stalls gossip connections holds at most maxStreamsPerHost
// of them: another host still gets through.
func TestStalledStreamsCappedPerHost(t *testing.T) {
	a, err := startNode(t, "g", 1, 92, nil, func(c *Config) { c.MaxStreams = 4 * maxStreamsPerHost })
	if err != nil {
		t.Fatal(err)
	}
	dial := func(src string) net.Conn {
		t.Helper()
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
		c, err := d.Dial("tcp", a.addr())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	for i := 0; i < maxStreamsPerHost; i++ {
		dial("127.0.0.201")
	}
	waitFor(t, 5*time.Second, "one host's streams held", func() bool { return a.g.streams.Open() == maxStreamsPerHost })
	extra := dial("127.0.0.201")
	extra.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := extra.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("the host's stream past its cap: read %v, want EOF", err)
	}
	dial("127.0.0.202")
	waitFor(t, 5*time.Second, "another host's stream held", func() bool { return a.g.streams.Open() == maxStreamsPerHost+1 })
}
