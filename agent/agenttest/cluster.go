// Package agenttest runs an in-process Mastership cluster for tests: a real
// naming node and real agents (memberlist gossip over UDP and TCP, agent
// streams and HTTP over TCP), each agent on its own 127.0.0.x address, all
// traffic through fault-injecting transports so that tests can partition,
// heal, drop, delay, kill and restart by agent.
//
// Usage:
//
//	c := agenttest.New(t, agenttest.Options{Agents: 5, Mode: "available"})
//	c.WaitStable(10 * time.Second)
//	c.Partition([]uint64{1, 2, 3}, []uint64{4, 5})
//	c.PartitionNaming(1, 2, 3) // the naming node reachable from these only
//	c.Heal()
package agenttest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"net"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/memberlist"
	"github.com/mastership/mastership/agent"
	"github.com/mastership/mastership/agent/core"
	"github.com/mastership/mastership/agent/kv"
	"github.com/mastership/mastership/agent/rlog"
	"github.com/mastership/mastership/agent/store"
	"github.com/mastership/mastership/agent/wire"
	"github.com/mastership/mastership/config"
	"github.com/mastership/mastership/gossip"
	"github.com/mastership/mastership/gossip/faulty"
	"github.com/mastership/mastership/naming"
	"github.com/mastership/mastership/naming/api"
	"github.com/mastership/mastership/naming/client"
	"github.com/mastership/mastership/recover"
)

// Options shape a cluster.
type Options struct {
	Agents     int
	Mode       string // "strict" or "available"
	Group      string // default "g"
	Priorities []int  // per agent (index 0 is agent 1); default all 0
	Policy     string
	// Monitor builds each agent's self-monitor; nil means none.
	Monitor func(id uint64) agent.Monitor
	// Seed seeds the fault injection; 0 means 1.
	Seed int64
	// Tune adjusts each agent's configuration.
	Tune func(cfg *config.Agent)
	// Base is the third octet range start: agents are on 127.0.Base.(10+id).
	// Tests running side by side in one process use different bases.
	Base int
	// Isolated starts every agent cut off from every other (the naming
	// node still reachable), as agents started before their network is
	// up; Heal joins them.
	Isolated bool
	// WrapStorage, when set, wraps each agent's storage (to inject
	// storage faults).
	WrapStorage func(id uint64, s store.Storage) store.Storage
	// StateMachine, when set, makes each start of an agent's state
	// machine (a fresh one each time); nil means a kv.Store.
	StateMachine func(id uint64) rlog.StateMachine
	// AgentOptions, when set, adjusts each start's agent.Options (role
	// callbacks, for example).
	AgentOptions func(id uint64, o *agent.Options)
	// Durable keeps each agent's log in a data directory (a write-ahead log and bbolt, synced)
	// instead of memory: for benchmarks of the durable write path. An
	// agent killed in such a cluster is not restarted.
	Durable bool
}

// Member is one agent of the cluster with what survives its restarts.
type Member struct {
	ID      uint64
	IP      string
	Agent   *agent.Agent
	Faults  *faulty.Faults
	Storage *store.Memory
	Config  config.Agent
	Running bool
}

// Cluster is a naming node and a group of agents in this process.
type Cluster struct {
	t            testing.TB
	opts         Options
	mu           sync.Mutex
	Naming       *naming.Node
	NamingAddr   string
	NamingIP     string
	namingFaults *faulty.Faults
	Members      map[uint64]*Member
	Client       *client.Client
	logger       hclog.Logger
	rand         *rand.Rand
	cut          map[[2]string]bool  // IP pairs cut both ways
	stalled      map[uint64][]string // agent -> API addresses its calls hang on
	namingCut    map[uint64]bool     // agents cut from the naming node
	ports        map[string]bool     // addresses given out (freePort)
}

// freePort returns a host:port on ip free for TCP and UDP (memberlist binds
// both) a moment ago, and never one this cluster was already given: a port
// freed a moment ago is often the next the kernel picks.
func (c *Cluster) freePort(ip string) string {
	for {
		ln, err := net.Listen("tcp", ip+":0")
		if err != nil {
			c.t.Fatalf("listen on %s: %v", ip, err)
		}
		addr := ln.Addr().String()
		ln.Close()
		if c.ports[addr] {
			continue
		}
		pc, err := net.ListenPacket("udp", addr)
		if err != nil {
			continue
		}
		pc.Close()
		c.ports[addr] = true
		return addr
	}
}

// New starts the naming node and the agents, and stops them at cleanup.
func New(t testing.TB, opts Options) *Cluster {
	t.Helper()
	if opts.Group == "" {
		opts.Group = "g"
	}
	if opts.Seed == 0 {
		opts.Seed = 1
	}
	if opts.Base == 0 {
		opts.Base = 1
	}
	// Logs go to stderr at the level MASTERSHIP_TEST_LOG names; otherwise
	// the last lines at info level are kept and printed if the test fails.
	level, out := hclog.Info, io.Writer(nil)
	tail := &logTail{max: 256 << 10}
	if os.Getenv("MASTERSHIP_TEST_LOG") != "" {
		level, out = hclog.LevelFromString(os.Getenv("MASTERSHIP_TEST_LOG")), os.Stderr
	} else {
		out = tail
		t.Cleanup(func() {
			if t.Failed() {
				t.Logf("the cluster's last log lines:\n%s", tail.String())
			}
		})
	}
	c := &Cluster{t: t, opts: opts, Members: map[uint64]*Member{}, rand: rand.New(rand.NewSource(opts.Seed)),
		cut: map[[2]string]bool{}, namingCut: map[uint64]bool{}, ports: map[string]bool{}, stalled: map[uint64][]string{},
		logger: hclog.New(&hclog.LoggerOptions{Name: "test", Level: level, Output: out})}
	c.NamingIP = fmt.Sprintf("127.0.%d.9", opts.Base)
	c.namingFaults = faulty.New(rand.New(rand.NewSource(c.rand.Int63())))
	ncfg, _ := config.DefaultNaming("local")
	ncfg.DataDir = t.TempDir()
	ncfg.Bind = c.freePort(c.NamingIP)
	ncfg.Logger = c.logger
	ncfg.Dial = faulty.NewDialer(c.namingFaults).DialContext
	n, err := naming.New(ncfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", ncfg.Bind)
	if err != nil {
		t.Fatal(err)
	}
	go n.Serve(ln)
	c.Naming, c.NamingAddr = n, ln.Addr().String()
	c.Client, _ = client.New(c.NamingAddr)
	t.Cleanup(c.Close)
	var first string
	for i := 1; i <= opts.Agents; i++ {
		m := c.add(uint64(i))
		if first == "" {
			first = m.Config.Bind
		}
	}
	if opts.Isolated {
		var sides [][]uint64
		for _, id := range c.IDs() {
			sides = append(sides, []uint64{id})
		}
		c.Partition(sides...)
	}
	for _, id := range c.IDs() {
		c.start(c.Members[id])
	}
	return c
}

func (c *Cluster) add(id uint64) *Member {
	ip := fmt.Sprintf("127.0.%d.%d", c.opts.Base, 10+id)
	cfg, _ := config.DefaultAgent("local")
	cfg.Group, cfg.ID = c.opts.Group, id
	cfg.Mode, cfg.Policy = c.opts.Mode, c.opts.Policy
	if cfg.Mode == "strict" {
		cfg.Expect = c.opts.Agents
	}
	if int(id) <= len(c.opts.Priorities) {
		cfg.Priority = c.opts.Priorities[id-1]
	}
	cfg.Bind = c.freePort(ip)
	cfg.API = c.freePort(ip)
	cfg.Naming = c.NamingAddr
	cfg.FaultControl = true
	cfg.Logger = c.logger
	for _, o := range c.Members {
		cfg.Join = append(cfg.Join, o.Config.Bind)
	}
	if c.opts.Tune != nil {
		c.opts.Tune(&cfg)
	}
	m := &Member{ID: id, IP: ip, Storage: store.NewMemory(), Config: cfg,
		Faults: faulty.New(rand.New(rand.NewSource(c.rand.Int63())))}
	c.Members[id] = m
	return m
}

// fastGossip shortens memberlist's timers for tests on two cores.
func fastGossip(g *gossip.Config) {
	g.Tune = func(c *memberlist.Config) {
		c.ProbeInterval = 100 * time.Millisecond
		c.ProbeTimeout = 60 * time.Millisecond
		c.GossipInterval = 20 * time.Millisecond
		c.PushPullInterval = 500 * time.Millisecond
		c.TCPTimeout = 300 * time.Millisecond
		c.SuspicionMult = 2
		c.GossipToTheDeadTime = time.Second
	}
	g.ReconnectInterval = 100 * time.Millisecond
}

func (c *Cluster) start(m *Member) {
	c.t.Helper()
	var mon agent.Monitor
	if c.opts.Monitor != nil {
		mon = c.opts.Monitor(m.ID)
	}
	var st store.Storage = m.Storage
	if c.opts.Durable {
		if m.Running || m.Agent != nil {
			c.t.Fatalf("agent %d: a durable cluster does not restart agents", m.ID)
		}
		ds, err := store.Open(c.t.TempDir())
		if err != nil {
			c.t.Fatal(err)
		}
		st = ds
	}
	if c.opts.WrapStorage != nil {
		st = c.opts.WrapStorage(m.ID, st)
	}
	var sm rlog.StateMachine
	if c.opts.StateMachine != nil {
		sm = c.opts.StateMachine(m.ID)
	}
	o := agent.Options{Storage: st, Faults: m.Faults, GossipTune: fastGossip,
		Monitor: mon, Seed: c.rand.Int63(), StateMachine: sm}
	if c.opts.AgentOptions != nil {
		c.opts.AgentOptions(m.ID, &o)
	}
	a, err := agent.New(m.Config, o)
	if err != nil {
		c.t.Fatalf("agent %d: %v", m.ID, err)
	}
	if err := a.Start(); err != nil {
		c.t.Fatalf("agent %d: %v", m.ID, err)
	}
	m.Agent, m.Running = a, true
}

// AddAgent starts a new agent that joins the others.
func (c *Cluster) AddAgent(id uint64, priority int) *Member {
	c.t.Helper()
	m := c.add(id)
	m.Config.Priority = priority
	c.applyFaults()
	c.start(m)
	return m
}

// IDs lists the agents, sorted.
func (c *Cluster) IDs() []uint64 {
	var ids []uint64
	for id := range c.Members {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// Running lists the running agents, sorted.
func (c *Cluster) Running() []uint64 {
	var ids []uint64
	for _, id := range c.IDs() {
		if c.Members[id].Running {
			ids = append(ids, id)
		}
	}
	return ids
}

// Partition cuts every link between agents of different sides; agents not
// named keep their links. It replaces earlier cuts between agents.
func (c *Cluster) Partition(sides ...[]uint64) {
	c.cut = map[[2]string]bool{}
	for i, a := range sides {
		for _, b := range sides[i+1:] {
			for _, x := range a {
				for _, y := range b {
					c.cut[[2]string{c.Members[x].IP, c.Members[y].IP}] = true
				}
			}
		}
	}
	c.applyFaults()
}

// PartitionNaming makes the naming node reachable from the named agents
// only (none named: from no agent).
func (c *Cluster) PartitionNaming(reachable ...uint64) {
	c.namingCut = map[uint64]bool{}
	for _, id := range c.IDs() {
		if !slices.Contains(reachable, id) {
			c.namingCut[id] = true
		}
	}
	c.applyFaults()
}

// StallAPI makes every call the agents from make to agent to's API hang
// (accepted, never answered), the message streams they open included,
// while gossip still sees to alive: a peer whose API is hung for them.
// Messages an agent of from sends on a stream to opened to it (the higher
// ID answers on the lower one's stream, package transport) still arrive:
// that stream is to's, not a call to its API.
func (c *Cluster) StallAPI(to uint64, from ...uint64) {
	for _, id := range from {
		c.stalled[id] = append(c.stalled[id], c.Members[to].Config.API)
	}
	c.applyFaults()
}

// Heal removes every cut and stall.
func (c *Cluster) Heal() {
	c.cut = map[[2]string]bool{}
	c.namingCut = map[uint64]bool{}
	c.stalled = map[uint64][]string{}
	c.applyFaults()
}

func (c *Cluster) applyFaults() {
	var namingPeers []string
	for _, id := range c.IDs() {
		m := c.Members[id]
		var peers []string
		for _, o := range c.Members {
			if c.cut[[2]string{m.IP, o.IP}] || c.cut[[2]string{o.IP, m.IP}] {
				peers = append(peers, o.IP)
			}
		}
		if c.namingCut[id] {
			peers = append(peers, c.NamingIP)
			namingPeers = append(namingPeers, m.IP)
		}
		m.Faults.Heal()
		if len(peers) > 0 {
			m.Faults.Partition(peers...)
		}
		if s := c.stalled[id]; len(s) > 0 {
			m.Faults.Stall(s...)
		}
	}
	c.namingFaults.Heal()
	if len(namingPeers) > 0 {
		c.namingFaults.Partition(namingPeers...)
	}
}

// Kill stops an agent as a crash would: no leave, storage kept as it was.
func (c *Cluster) Kill(id uint64) {
	m := c.Members[id]
	if !m.Running {
		return
	}
	m.Faults.Crash()
	m.Running = false
}

// Stop closes an agent as a clean shutdown would (it leaves gossip); its
// storage survives for Restart.
func (c *Cluster) Stop(id uint64) {
	m := c.Members[id]
	if !m.Running {
		return
	}
	m.Agent.Close()
	m.Running = false
}

// Restart starts a killed agent again on its addresses and storage.
func (c *Cluster) Restart(id uint64) {
	c.t.Helper()
	m := c.Members[id]
	if m.Running {
		return
	}
	c.start(m)
}

// Close stops everything.
func (c *Cluster) Close() {
	for _, m := range c.Members {
		if m.Running {
			m.Faults.Crash()
			m.Running = false
		}
	}
	c.Client.Close()
	c.Naming.Close()
}

// Masters lists the running agents that act as master.
func (c *Cluster) Masters() []uint64 {
	var ms []uint64
	for _, id := range c.Running() {
		if c.Members[id].Agent.Status().Role == api.RoleMaster {
			ms = append(ms, id)
		}
	}
	return ms
}

// Registered returns the naming node's retained master, or 0.
func (c *Cluster) Registered() uint64 {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	look, err := c.Client.Lookup(ctx, api.LookupRequest{Group: c.opts.Group})
	if err != nil || look.Master == nil {
		return 0
	}
	return look.Master.ID
}

// Describe prints every running agent's role, for failure messages.
func (c *Cluster) Describe() string {
	var b strings.Builder
	for _, id := range c.Running() {
		st := c.Members[id].Agent.Status()
		var alive []uint64
		for _, p := range c.Running() {
			if p != id && c.Members[id].Agent.PeerAlive(p) {
				alive = append(alive, p)
			}
		}
		fmt.Fprintf(&b, "  %d: %s epoch=%s master=%d applied=%d digest=%.8s priority=%d caught-up=%t transfer=%d sees-alive=%v\n",
			id, st.Role, st.Epoch, st.Master, st.Applied, st.Digest.String(), st.Priority, st.CaughtUp, st.Transfer, alive)
	}
	fmt.Fprintf(&b, "  naming: registered %d\n", c.Registered())
	return b.String()
}

// Stable reports whether the running agents have converged
// (recover.CheckConverged): one master that the naming node registered and
// that applied its whole log, every running agent its back-up with the
// master's digest, and no handover pending or due.
func (c *Cluster) Stable() bool {
	var states []recover.MemberState
	for _, id := range c.Running() {
		states = append(states, recover.StateOfStatus(c.Members[id].Agent.Status()))
	}
	return recover.CheckConverged(states, c.Registered()) == nil
}

// WaitFor polls cond until it holds or the timeout passes, then fails the
// test with the cluster's state.
func (c *Cluster) WaitFor(timeout time.Duration, what string, cond func() bool) {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			c.t.Fatalf("timed out after %s waiting for %s:\n%s", timeout, what, c.Describe())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// WaitStable waits for Stable.
func (c *Cluster) WaitStable(timeout time.Duration) uint64 {
	c.t.Helper()
	c.WaitFor(timeout, "one registered master followed by all with equal digests", c.Stable)
	return c.Masters()[0]
}

// Put writes key=value through the agent id (its master must be id). As a
// client would, it retries while the master is not serving yet (a strict
// master between its election and its registration's answer).
func (c *Cluster) Put(id uint64, key, value string) (wire.KVResponse, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	for {
		resp, err := c.Members[id].Agent.Execute(ctx, kvPut(key, value), 0, 0)
		if !errors.Is(err, core.ErrNotServing) || ctx.Err() != nil {
			return resp, err
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// SortedIDs returns ids sorted (helper for messages).
func SortedIDs(ids []uint64) []uint64 {
	out := slices.Clone(ids)
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

func kvPut(key, value string) kv.Op {
	return kv.Op{Kind: kv.KindPut, Key: key, Value: []byte(value)}
}

// logTail keeps the last max bytes written to it, from a line's start.
type logTail struct {
	mu  sync.Mutex
	max int
	buf []byte
}

func (l *logTail) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf = append(l.buf, p...)
	if len(l.buf) > l.max {
		cut := len(l.buf) - l.max/2
		if i := bytes.IndexByte(l.buf[cut:], '\n'); i >= 0 {
			cut += i + 1
		}
		l.buf = append(l.buf[:0], l.buf[cut:]...)
	}
	return len(p), nil
}

func (l *logTail) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return string(l.buf)
}
