package gossip

import (
	"errors"
	"fmt"
	"log"
	"math/rand"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/memberlist"

	"github.com/mastership/mastership/naming/api"
)

// Gossip is one agent's membership layer: a memberlist node with its
// delegates, the membership view, the claims known, and the reconnect loop.
// Its methods are safe for concurrent use.
type Gossip struct {
	cfg   Config
	log   hclog.Logger
	clock Clock
	rand  *rand.Rand // owned by the reconnect goroutine
	name  string
	selfK agentKey
	disp  *dispatcher
	// keyring holds the gossip keys (nil: no encryption); memberlist locks
	// it itself.
	keyring *memberlist.Keyring
	queue   *memberlist.TransmitLimitedQueue
	// streams caps the inbound gossip TCP connections (nil with a
	// Config.Transport of the caller's).
	streams *streamLimit
	ml      atomic.Pointer[memberlist.Memberlist]
	alive   atomic.Int64 // members alive, for the broadcast queue
	left    atomic.Bool
	closed  atomic.Bool
	joined  atomic.Bool // Join was called: the reconnect loop may run

	probeInterval time.Duration
	probeTimeout  time.Duration
	pollInterval  time.Duration

	// mu guards the fields below. It is a leaf lock: nothing is called
	// while it is held but the pure view and claim code, the dispatcher
	// queue and the broadcast queue. memberlist calls our delegates with
	// its own locks held, so calling memberlist under mu could deadlock.
	mu        sync.Mutex
	meta      Meta
	metaBytes []byte
	leaving   bool
	boot      uint64
	intents   map[string]intentEntry // leave intents seen, by node name
	view      *view
	claims    map[agentKey]claimEntry
	conflict  string // address of another node using our name, if seen
	selfAddr  string

	stop     chan struct{}
	wg       sync.WaitGroup
	shutOnce sync.Once
	shutErr  error
}

// New validates cfg, starts memberlist on its address and the package's
// goroutines (doc.go), and returns without joining anyone: call Join.
// events may be nil.
func New(cfg Config, events Events) (*Gossip, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	logger := cfg.Logger
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	logger = logger.Named("gossip").With("group", cfg.Group, "agent", cfg.ID)
	meta := cfg.Meta
	meta.Group, meta.ID = cfg.Group, cfg.ID
	clock := cfg.Clock
	if clock == nil {
		clock = systemClock{}
	}
	r := cfg.Rand
	if r == nil {
		r = rand.New(rand.NewSource(time.Now().UnixNano()))
	}
	boot := r.Uint64()
	metaBytes, err := encodeMeta(meta, false, boot)
	if err != nil {
		return nil, fmt.Errorf("gossip: initial meta: %w", err)
	}
	g := &Gossip{
		cfg:       cfg,
		log:       logger,
		clock:     clock,
		rand:      r,
		name:      NodeName(cfg.Group, cfg.ID),
		selfK:     agentKey{cfg.Group, cfg.ID},
		disp:      newDispatcher(events),
		meta:      meta,
		metaBytes: metaBytes,
		boot:      boot,
		intents:   make(map[string]intentEntry),
		claims:    make(map[agentKey]claimEntry),
		stop:      make(chan struct{}),
	}
	g.view = newView(g.name)

	mc := profileConfig(cfg.Profile)
	mc.Name = g.name
	stdlog := logger.StandardLogger(&hclog.StandardLoggerOptions{InferLevels: true})
	mc.Logger = stdlog
	var keyring *memberlist.Keyring
	if len(cfg.SecretKey) > 0 {
		keys := [][]byte{append([]byte(nil), cfg.SecretKey...)}
		for _, k := range cfg.ExtraKeys {
			keys = append(keys, append([]byte(nil), k...))
		}
		if keyring, err = memberlist.NewKeyring(keys, keys[0]); err != nil {
			return nil, fmt.Errorf("gossip: keyring: %w", err)
		}
		mc.Keyring = keyring
	}
	g.keyring = keyring
	d := &delegate{g: g}
	mc.Delegate, mc.Events, mc.Conflict, mc.Alive, mc.Ping = d, d, d, d, d

	transport := cfg.Transport
	ownTransport := false
	if transport == nil {
		nt, port, err := newNetTransport(cfg.BindAddr, stdlog)
		if err != nil {
			return nil, err
		}
		host, _, _ := net.SplitHostPort(cfg.BindAddr)
		mc.BindAddr, mc.BindPort, mc.AdvertisePort = host, port, port
		max := cfg.MaxStreams
		if max <= 0 {
			max = DefaultMaxStreams
		}
		limited := limitStreams(nt, max, func(addr net.Addr) {
			logger.Debug("gossip connection refused: at the cap of open streams", "remote", addr, "max_streams", max)
		})
		g.streams = limited
		transport = limited
		if cfg.WrapTransport != nil {
			transport = cfg.WrapTransport(limited)
		}
		ownTransport = true
	}
	if cfg.AdvertiseAddr != "" {
		host, port, _ := splitAdvertise(cfg.AdvertiseAddr)
		mc.AdvertiseAddr = host
		if port != 0 {
			mc.AdvertisePort = port
		}
	}
	mc.Transport = transport
	if cfg.Tune != nil {
		cfg.Tune(mc)
	}
	g.probeInterval, g.probeTimeout = mc.ProbeInterval, mc.ProbeTimeout
	g.pollInterval = cfg.PollInterval
	if g.pollInterval == 0 {
		g.pollInterval = mc.ProbeInterval
	}
	g.queue = &memberlist.TransmitLimitedQueue{
		NumNodes: func() int {
			if n := int(g.alive.Load()); n > 0 {
				return n
			}
			return 1
		},
		RetransmitMult: mc.RetransmitMult,
	}

	ml, err := memberlist.Create(mc)
	if err != nil {
		if ownTransport {
			_ = transport.Shutdown()
		}
		return nil, fmt.Errorf("gossip: start memberlist %s: %w", g.name, err)
	}
	g.ml.Store(ml)
	self := ml.LocalNode()
	g.mu.Lock()
	g.selfAddr = self.Address()
	g.mu.Unlock()
	logger.Info("started", "node", g.name, "addr", self.Address(), "profile", cfg.Profile, "encrypted", len(cfg.SecretKey) > 0)

	g.wg.Add(2)
	go g.disp.run()
	go g.maintain()
	go g.reconnect()
	return g, nil
}

// newNetTransport binds memberlist's NetTransport to bind ("host:port"),
// retrying a few times when port 0 races with another bind as memberlist
// itself does. It returns the bound port.
func newNetTransport(bind string, stdlog *log.Logger) (*memberlist.NetTransport, int, error) {
	host, portS, err := net.SplitHostPort(bind)
	if err != nil {
		return nil, 0, fmt.Errorf("gossip: bind %q: %w", bind, err)
	}
	port, _ := strconv.Atoi(portS)
	tries := 1
	if port == 0 {
		tries = 10
	}
	var lastErr error
	for range tries {
		nc := &memberlist.NetTransportConfig{BindAddrs: []string{host}, BindPort: port, Logger: stdlog}
		nt, err := memberlist.NewNetTransport(nc)
		if err == nil {
			return nt, nt.GetAutoBindPort(), nil
		}
		lastErr = err
		if !strings.Contains(err.Error(), "address already in use") {
			break
		}
	}
	return nil, 0, fmt.Errorf("gossip: bind %s: %w", bind, lastErr)
}

func (g *Gossip) memberlist() (*memberlist.Memberlist, error) {
	if g.closed.Load() {
		return nil, ErrShutdown
	}
	return g.ml.Load(), nil
}

// Name returns this agent's memberlist node name, NodeName(group, ID).
func (g *Gossip) Name() string { return g.name }

// LocalAddr returns the gossip address (host:port) this agent advertises;
// with a bind port of 0 it tells which port was picked.
func (g *Gossip) LocalAddr() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.selfAddr
}

// Join joins the cluster through Config.Join and returns how many addresses
// answered. It is not an error to have no join addresses (the first agent).
// When no address answers it returns an error wrapping ErrJoin, and the
// reconnect loop keeps trying. When another live member already uses this
// agent's group and ID, Join shuts the Gossip down and returns an error
// wrapping ErrDuplicateID.
func (g *Gossip) Join() (int, error) {
	ml, err := g.memberlist()
	if err != nil {
		return 0, err
	}
	targets := g.joinTargets()
	defer g.joined.Store(true)
	if len(targets) == 0 {
		return 0, nil
	}
	g.mu.Lock()
	g.conflict = ""
	g.mu.Unlock()
	n, err := ml.Join(targets)
	g.mu.Lock()
	other := g.conflict
	g.mu.Unlock()
	if other != "" {
		_ = g.Shutdown()
		return n, fmt.Errorf("join %s: %w: %s is already used by the member at %s", strings.Join(targets, ","), ErrDuplicateID, g.name, other)
	}
	if n == 0 && err != nil {
		return 0, fmt.Errorf("join %s: %w: %v", strings.Join(targets, ","), ErrJoin, err)
	}
	if err != nil {
		g.log.Warn("some join addresses did not answer", "joined", n, "error", err)
	}
	g.log.Info("joined", "contacted", n, "members", len(ml.Members()))
	return n, nil
}

func (g *Gossip) joinTargets() []string {
	self := g.LocalAddr()
	var out []string
	for _, j := range g.cfg.Join {
		if j != self && j != g.cfg.BindAddr {
			out = append(out, j)
		}
	}
	return out
}

// Leave tells the others that this agent leaves on purpose (so they forget
// it instead of retrying it as dead), waits up to timeout for that to be
// sent, and stops the reconnect loop. Call Shutdown afterwards.
func (g *Gossip) Leave(timeout time.Duration) error {
	ml, err := g.memberlist()
	if err != nil {
		return err
	}
	g.left.Store(true)
	g.mu.Lock()
	g.leaving = true
	if b, err := encodeMeta(g.meta, true, g.boot); err == nil {
		g.metaBytes = b
	}
	g.broadcastIntentLocked(leaveIntent{Name: g.name, Boot: g.boot})
	g.mu.Unlock()
	start := g.clock.Now()
	if err := ml.UpdateNode(timeout / 2); err != nil {
		g.log.Warn("leave: announcing the leave", "error", err)
	}
	rest := timeout - g.clock.Now().Sub(start)
	if rest < 0 {
		rest = 0
	}
	if err := ml.Leave(rest); err != nil {
		return fmt.Errorf("gossip: leave: %w", err)
	}
	g.log.Info("left")
	return nil
}

// Shutdown stops the package's goroutines and memberlist, without telling
// the others (they will see this agent dead; call Leave first to be
// forgotten). Safe to call more than once.
func (g *Gossip) Shutdown() error {
	g.shutOnce.Do(func() {
		g.closed.Store(true)
		close(g.stop)
		g.wg.Wait() // the reconnect loop may be inside ml.Join
		close(g.disp.stop)
		<-g.disp.done
		if ml := g.ml.Load(); ml != nil {
			if err := ml.Shutdown(); err != nil {
				g.shutErr = fmt.Errorf("gossip: shutdown: %w", err)
			}
		}
		g.log.Info("shut down")
	})
	return g.shutErr
}

// UpdateMeta replaces this agent's metadata and pushes it to the others
// (memberlist UpdateNode, without waiting). Group and ID may be left zero.
// When m makes this agent master, or gives it a new epoch as master, every
// live competing claim already known is handed to Events.CompetingClaim.
// When m ends its mastership, its live claim is withdrawn.
func (g *Gossip) UpdateMeta(m Meta) error {
	ml, err := g.memberlist()
	if err != nil {
		return err
	}
	if m.Group == "" {
		m.Group = g.cfg.Group
	}
	if m.ID == 0 {
		m.ID = g.cfg.ID
	}
	if m.Group != g.cfg.Group || m.ID != g.cfg.ID {
		return fmt.Errorf("gossip: update meta: %w: %s is not this agent (%s)", ErrBadMeta, NodeName(m.Group, m.ID), g.name)
	}
	g.mu.Lock()
	b, err := encodeMeta(m, g.leaving, g.boot)
	if err != nil {
		g.mu.Unlock()
		return fmt.Errorf("gossip: update meta: %w", err)
	}
	old := g.meta
	g.meta, g.metaBytes = m, b
	if s, ok := g.view.members[g.name]; ok {
		s.Meta = m
	}
	if m.Role == api.RoleMaster && (old.Role != api.RoleMaster || old.Epoch != m.Epoch) {
		for _, c := range liveClaims(g.claims, m.Group) {
			if theirs, ok := Compete(m, c); ok {
				g.log.Warn("competing claim known on becoming master", "theirs", theirs.String(), "epoch", m.Epoch.String())
				g.disp.competing(theirs)
			}
		}
	}
	if old.Role == api.RoleMaster && m.Role != api.RoleMaster {
		if e, ok := g.claims[g.selfK]; ok && e.live() {
			w := e.claim
			w.Withdrawn = true
			g.claims[g.selfK] = claimEntry{claim: w}
			g.broadcastLocked(w)
			g.log.Info("claim withdrawn", "claim", w.String(), "role", m.Role.String())
		}
	}
	g.mu.Unlock()
	// memberlist waits for the update to be broadcast; with peers that are
	// unreachable that can take long. The update is queued either way, so a
	// bounded wait that times out is not an error.
	if err := ml.UpdateNode(updateWait); err != nil && !strings.Contains(err.Error(), "timeout") {
		return fmt.Errorf("gossip: update meta: %w", err)
	}
	return nil
}

// updateWait bounds how long UpdateMeta waits for memberlist to broadcast.
const updateWait = 500 * time.Millisecond

// Meta returns this agent's current metadata.
func (g *Gossip) Meta() Meta {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.meta
}

// Claim broadcasts this agent's claim (or, with c.Withdrawn, its
// withdrawal) to every member, and keeps it in the push/pull state so that a
// healed partition learns it too. Group and ID may be left zero. An epoch
// older than one already claimed returns ErrStaleClaim; repeating the
// current claim broadcasts it again.
func (g *Gossip) Claim(c Claim) error {
	if _, err := g.memberlist(); err != nil {
		return err
	}
	if c.Group == "" {
		c.Group = g.cfg.Group
	}
	if c.ID == 0 {
		c.ID = g.cfg.ID
	}
	if c.key() != g.selfK {
		return fmt.Errorf("gossip: claim %s: %w: not this agent's (%s)", c, ErrBadClaim, g.name)
	}
	if err := c.Validate(); err != nil {
		return fmt.Errorf("gossip: claim %s: %w", c, err)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	old, ok := g.claims[g.selfK]
	next, accepted := mergeClaim(old, ok, c)
	if !accepted {
		if ok && old.claim == c {
			g.broadcastLocked(c)
			return nil
		}
		return fmt.Errorf("gossip: claim %s: %w: already at %s", c, ErrStaleClaim, old.claim)
	}
	g.claims[g.selfK] = next
	g.broadcastLocked(c)
	g.log.Info("claim", "claim", c.String())
	return nil
}

// Withdraw withdraws this agent's live claim, if any. UpdateMeta does it by
// itself when the role leaves master.
func (g *Gossip) Withdraw() error {
	g.mu.Lock()
	e, ok := g.claims[g.selfK]
	g.mu.Unlock()
	if !ok || !e.live() {
		return nil
	}
	w := e.claim
	w.Withdrawn = true
	return g.Claim(w)
}

// Claims returns the live claims known for group (every group for ""),
// this agent's own included, sorted by ID.
func (g *Gossip) Claims(group string) []Claim {
	g.mu.Lock()
	defer g.mu.Unlock()
	return liveClaims(g.claims, group)
}

// Members returns the membership view, this agent included, sorted by ID.
// Dead members stay in it until Config.ReconnectTimeout; members that left
// are not in it.
func (g *Gossip) Members() []Member {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.view.list()
}

// broadcastLocked queues c for gossip. Called with mu held (the queue has its
// own lock and calls nothing of ours but NumNodes, an atomic).
func (g *Gossip) broadcastLocked(c Claim) {
	msg, err := encodeClaimMsg(c)
	if err != nil {
		g.log.Error("encode claim", "claim", c.String(), "error", err)
		return
	}
	g.queue.QueueBroadcast(&claimBroadcast{name: "claim/" + NodeName(c.Group, c.ID), msg: msg})
}

// receiveClaim handles a claim from a broadcast or a push/pull exchange.
func (g *Gossip) receiveClaim(c Claim, via string) {
	if err := c.Validate(); err != nil {
		g.log.Warn("ignoring claim", "via", via, "error", err)
		return
	}
	if g.cfg.CheckEpoch != nil {
		if err := g.cfg.CheckEpoch(c.Epoch); err != nil {
			// CheckEpoch's owner counts and reports refusals (a flood of
			// forged claims must not flood the log).
			g.log.Debug("ignoring claim", "via", via, "claim", c.String(), "error", err)
			return
		}
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.view.gone(NodeName(c.Group, c.ID)) {
		return // claims of dead or left members are dropped
	}
	k := c.key()
	old, ok := g.claims[k]
	next, accepted := mergeClaim(old, ok, c)
	if !accepted {
		return
	}
	if k == g.selfK && !next.claim.Withdrawn &&
		!(g.meta.Role == api.RoleMaster && g.meta.Epoch == c.Epoch) {
		// A claim in our name that we do not hold (from before a
		// restart): refute it, as memberlist refutes a false suspicion.
		next.claim.Withdrawn = true
		g.log.Warn("refuting a claim in this agent's name", "claim", c.String())
	}
	g.claims[k] = next
	g.broadcastLocked(next.claim)
	g.log.Debug("claim accepted", "claim", next.claim.String(), "via", via)
	if theirs, ok := Compete(g.meta, next.claim); ok {
		g.log.Warn("competing claim", "theirs", theirs.String(), "ours", g.meta.Epoch.String(), "via", via)
		g.disp.competing(theirs)
	}
}

// intentEntry is a leave intent seen, kept until ReconnectTimeout so that
// it reaches members through push/pull too.
type intentEntry struct {
	boot uint64
	at   time.Time
}

// broadcastIntentLocked records and queues a leave intent.
func (g *Gossip) broadcastIntentLocked(li leaveIntent) {
	g.intents[li.Name] = intentEntry{boot: li.Boot, at: g.clock.Now()}
	b, err := api.Encode(li)
	if err != nil {
		g.log.Error("encode leave intent", "error", err)
		return
	}
	g.queue.QueueBroadcast(&claimBroadcast{name: "leave/" + li.Name, msg: append([]byte{msgLeave}, b...)})
}

// receiveIntent handles a leave intent from a broadcast or push/pull.
func (g *Gossip) receiveIntent(li leaveIntent) {
	if _, _, err := ParseNodeName(li.Name); err != nil || li.Name == g.name {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if ie, ok := g.intents[li.Name]; ok && ie.boot == li.Boot {
		return // known
	}
	g.broadcastIntentLocked(li)
	g.emitLocked(g.view.intent(li.Name, li.Boot, g.clock.Now()))
}

// dropClaimsLocked drops the claims of a member seen dead or left.
func (g *Gossip) dropClaimsLocked(name string) {
	group, id, err := ParseNodeName(name)
	if err != nil {
		return
	}
	k := agentKey{group, id}
	if e, ok := g.claims[k]; ok && !e.dropped {
		e.dropped = true
		g.claims[k] = e
	}
}

// emitLocked queues view events for the delegate and keeps the alive count.
func (g *Gossip) emitLocked(evs []MemberEvent) {
	g.alive.Store(int64(g.view.alive()))
	for _, e := range evs {
		switch e.Kind {
		case EventDead, EventLeave:
			g.dropClaimsLocked(e.Member.Name)
			g.log.Info("member "+e.Kind.String(), "member", e.Member.Name, "addr", e.Member.Addr)
		case EventJoin, EventSuspect, EventAlive:
			g.log.Debug("member "+e.Kind.String(), "member", e.Member.Name, "addr", e.Member.Addr)
		}
		if e.Member.Self {
			continue
		}
		g.disp.member(e)
	}
}

// maintain is the maintenance goroutine: every poll interval it derives
// suspect members and forgets dead members past ReconnectTimeout.
func (g *Gossip) maintain() {
	defer g.wg.Done()
	for {
		select {
		case <-g.stop:
			return
		case <-g.clock.After(g.pollInterval):
		}
		now := g.clock.Now()
		g.mu.Lock()
		sa := g.cfg.SuspectAfter
		if sa == 0 {
			sa = suspectAfter(g.probeInterval, g.probeTimeout, g.view.alive()-1)
		}
		evs, reaped := g.view.tick(now, sa, g.cfg.ReconnectTimeout)
		for name, ie := range g.intents {
			if now.Sub(ie.at) > g.cfg.ReconnectTimeout {
				delete(g.intents, name)
			}
		}
		for _, name := range reaped {
			g.log.Info("forgetting dead member", "member", name)
			group, id, err := ParseNodeName(name)
			if err == nil {
				delete(g.claims, agentKey{group, id})
			}
		}
		g.emitLocked(evs)
		g.mu.Unlock()
	}
}

// reconnect is the reconnect goroutine (serf's reconnect): every
// ReconnectInterval plus up to 50% jitter it joins the targets
// reconnectTargets picks, so the two sides of a healed partition merge with
// no operator action. It starts acting after the first Join (which refuses a
// taken ID) and stops at Leave. It owns g.rand.
func (g *Gossip) reconnect() {
	defer g.wg.Done()
	iv := g.cfg.ReconnectInterval
	for {
		wait := iv + time.Duration(g.rand.Int63n(int64(iv)/2+1))
		select {
		case <-g.stop:
			return
		case <-g.clock.After(wait):
		}
		if g.left.Load() || !g.joined.Load() {
			continue // not before the first Join, which checks the ID
		}
		g.mu.Lock()
		rv := g.view.reconnectView(g.selfAddr, g.cfg.Join)
		g.mu.Unlock()
		targets := reconnectTargets(rv, g.rand)
		if len(targets) == 0 {
			continue
		}
		ml := g.ml.Load()
		n, err := ml.Join(targets)
		if n > 0 {
			g.log.Debug("reconnect", "targets", targets, "contacted", n)
		} else {
			g.log.Debug("reconnect failed", "targets", targets, "error", err)
		}
	}
}

// delegate implements memberlist's delegate interfaces for a Gossip, so that
// they stay out of Gossip's exported method set. memberlist calls them from
// its own goroutines, several with its node lock held: they only take g.mu.
type delegate struct{ g *Gossip }

var (
	_ memberlist.Delegate         = (*delegate)(nil)
	_ memberlist.EventDelegate    = (*delegate)(nil)
	_ memberlist.ConflictDelegate = (*delegate)(nil)
	_ memberlist.AliveDelegate    = (*delegate)(nil)
	_ memberlist.PingDelegate     = (*delegate)(nil)
)

func (d *delegate) NodeMeta(limit int) []byte {
	d.g.mu.Lock()
	defer d.g.mu.Unlock()
	if len(d.g.metaBytes) > limit {
		// encodeMeta checked MetaMaxSize; memberlist never asks for less.
		panic(fmt.Sprintf("gossip: meta of %d bytes over memberlist limit %d", len(d.g.metaBytes), limit))
	}
	return d.g.metaBytes
}

func (d *delegate) NotifyMsg(b []byte) {
	if len(b) == 0 {
		return
	}
	switch b[0] {
	case msgClaim:
		var c Claim
		if err := api.Decode(b[1:], &c); err != nil {
			d.g.log.Warn("ignoring claim message", "error", err)
			return
		}
		d.g.receiveClaim(c, "broadcast")
	case msgLeave:
		var li leaveIntent
		if err := api.Decode(b[1:], &li); err != nil {
			d.g.log.Warn("ignoring leave message", "error", err)
			return
		}
		d.g.receiveIntent(li)
	default:
		d.g.log.Warn("ignoring message of unknown type", "type", b[0])
	}
}

func (d *delegate) GetBroadcasts(overhead, limit int) [][]byte {
	return d.g.queue.GetBroadcasts(overhead, limit)
}

func (d *delegate) LocalState(join bool) []byte {
	d.g.mu.Lock()
	st := pushPullState{Version: 1}
	for _, e := range d.g.claims {
		if !e.dropped {
			st.Claims = append(st.Claims, e.claim)
		}
	}
	for name, ie := range d.g.intents {
		st.Left = append(st.Left, leaveIntent{Name: name, Boot: ie.boot})
	}
	d.g.mu.Unlock()
	b, err := api.Encode(st)
	if err != nil {
		d.g.log.Error("encode push/pull state", "error", err)
		return nil
	}
	return b
}

func (d *delegate) MergeRemoteState(buf []byte, join bool) {
	if len(buf) == 0 {
		return
	}
	var st pushPullState
	if err := api.Decode(buf, &st); err != nil {
		d.g.log.Warn("ignoring push/pull state", "error", err)
		return
	}
	for _, c := range st.Claims {
		d.g.receiveClaim(c, "push/pull")
	}
	for _, li := range st.Left {
		d.g.receiveIntent(li)
	}
}

func (d *delegate) NotifyJoin(n *memberlist.Node) {
	meta, w, err := decodeMeta(n.Name, n.Meta)
	if err != nil {
		d.g.log.Warn("member with bad metadata", "member", n.Name, "error", err)
		return
	}
	now := d.g.clock.Now()
	d.g.mu.Lock()
	defer d.g.mu.Unlock()
	d.g.emitLocked(d.g.view.join(n.Name, n.Address(), meta, w.Leaving, w.Boot, now))
}

func (d *delegate) NotifyUpdate(n *memberlist.Node) {
	meta, w, err := decodeMeta(n.Name, n.Meta)
	if err != nil {
		d.g.log.Warn("member with bad metadata", "member", n.Name, "error", err)
		return
	}
	now := d.g.clock.Now()
	d.g.mu.Lock()
	defer d.g.mu.Unlock()
	d.g.emitLocked(d.g.view.update(n.Name, n.Address(), meta, w.Leaving, w.Boot, now))
}

func (d *delegate) NotifyLeave(n *memberlist.Node) {
	now := d.g.clock.Now()
	d.g.mu.Lock()
	defer d.g.mu.Unlock()
	d.g.emitLocked(d.g.view.leave(n.Name, now))
}

// NotifyConflict is called when a node announces a name memberlist already
// has, alive, at another address; memberlist then ignores the newcomer.
func (d *delegate) NotifyConflict(existing, other *memberlist.Node) {
	g := d.g
	m := Member{Name: other.Name, Addr: other.Address(), Health: HealthAlive, Since: g.clock.Now()}
	if meta, _, err := decodeMeta(other.Name, other.Meta); err == nil {
		m.Meta = meta
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if existing.Name == g.name {
		// Either we are the newcomer (Join refuses) or someone joined with
		// our ID: both mean two agents with one ID.
		addr := other.Address()
		g.conflict = addr
		g.log.Error("another agent uses this agent's ID", "node", g.name, "other", addr)
	} else {
		g.log.Warn("conflicting member refused", "node", other.Name, "existing", existing.Address(), "other", other.Address())
	}
	g.disp.member(MemberEvent{Kind: EventConflict, Member: m})
}

// NotifyAlive refuses members whose metadata is malformed or whose name does
// not match their metadata (another cluster, a bad build, a forged name).
func (d *delegate) NotifyAlive(peer *memberlist.Node) error {
	_, _, err := decodeMeta(peer.Name, peer.Meta)
	return err
}

func (d *delegate) AckPayload() []byte { return nil }

func (d *delegate) NotifyPingComplete(other *memberlist.Node, rtt time.Duration, payload []byte) {
	now := d.g.clock.Now()
	d.g.mu.Lock()
	defer d.g.mu.Unlock()
	d.g.emitLocked(d.g.view.ack(other.Name, now))
}

// Status is a snapshot of the membership layer, for the agent's info
// command and metrics.
type Status struct {
	Name    string `json:"name"`
	Addr    string `json:"addr"`
	Alive   int    `json:"alive"`
	Suspect int    `json:"suspect"`
	Dead    int    `json:"dead"`
	// Peak is the most members known alive at once, less those that left
	// or were forgotten: Alive+Suspect below it makes the reconnect loop
	// retry the join addresses.
	Peak int `json:"peak"`
	// Claims counts the live claims known, every group.
	Claims int `json:"claims"`
	// Queued counts the claim and leave broadcasts waiting to be sent.
	Queued int `json:"queued"`
	// HealthScore is memberlist's local health (0 is best).
	HealthScore int  `json:"health_score"`
	Left        bool `json:"left"`
}

// Status returns a snapshot of the view and the queues.
func (g *Gossip) Status() Status {
	g.mu.Lock()
	s := Status{Name: g.name, Addr: g.selfAddr, Peak: g.view.peak, Claims: len(liveClaims(g.claims, "")), Left: g.left.Load()}
	for _, m := range g.view.members {
		switch m.Health {
		case HealthAlive:
			s.Alive++
		case HealthSuspect:
			s.Suspect++
		case HealthDead:
			s.Dead++
		}
	}
	g.mu.Unlock()
	s.Queued = g.queue.NumQueued()
	if ml, err := g.memberlist(); err == nil {
		s.HealthScore = ml.GetHealthScore()
	}
	return s
}

// Keys returns the keyring: the primary key (the one that encrypts) and
// every installed key. ErrNoEncryption without encryption.
func (g *Gossip) Keys() (primary []byte, keys [][]byte, err error) {
	if g.keyring == nil {
		return nil, nil, ErrNoEncryption
	}
	return g.keyring.GetPrimaryKey(), g.keyring.GetKeys(), nil
}

// InstallKey adds a key the agent decrypts with, the first step of a
// rotation (install everywhere, then use everywhere, then remove the old).
func (g *Gossip) InstallKey(key []byte) error {
	if g.keyring == nil {
		return ErrNoEncryption
	}
	if err := g.keyring.AddKey(append([]byte(nil), key...)); err != nil {
		return fmt.Errorf("gossip: install key: %w", err)
	}
	return nil
}

// UseKey makes an installed key the one that encrypts.
func (g *Gossip) UseKey(key []byte) error {
	if g.keyring == nil {
		return ErrNoEncryption
	}
	if err := g.keyring.UseKey(key); err != nil {
		return fmt.Errorf("gossip: use key: %w", err)
	}
	return nil
}

// RemoveKey drops a key that is not the primary one.
func (g *Gossip) RemoveKey(key []byte) error {
	if g.keyring == nil {
		return ErrNoEncryption
	}
	installed := false
	for _, k := range g.keyring.GetKeys() {
		installed = installed || string(k) == string(key)
	}
	if !installed {
		return errors.New("gossip: remove key: the key is not installed")
	}
	if err := g.keyring.RemoveKey(key); err != nil {
		return fmt.Errorf("gossip: remove key: %w", err)
	}
	return nil
}
