package agent

import (
	"context"
	crand "crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"github.com/prometheus/client_golang/prometheus"
	"math/rand"
	"net"
	"net/http"
	"runtime/debug"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/memberlist"
	"github.com/mastership/mastership/agent/catchup"
	"github.com/mastership/mastership/agent/core"
	"github.com/mastership/mastership/agent/hook"
	"github.com/mastership/mastership/agent/kv"
	"github.com/mastership/mastership/agent/rlog"
	"github.com/mastership/mastership/agent/store"
	"github.com/mastership/mastership/agent/transport"
	"github.com/mastership/mastership/agent/wire"
	"github.com/mastership/mastership/config"
	"github.com/mastership/mastership/gossip"
	"github.com/mastership/mastership/gossip/faulty"
	"github.com/mastership/mastership/naming/api"
	"github.com/mastership/mastership/naming/auth"
	"github.com/mastership/mastership/naming/client"
)

// Options are the parts of an agent that embedders and tests choose.
type Options struct {
	// StateMachine is the replicated service; nil means a kv.Store. It
	// must be fresh: the agent restores it from Storage. The kv API
	// (POST /v1/kv, Execute, Replay, Get) needs a KVStateMachine.
	StateMachine rlog.StateMachine
	// Storage keeps the log, hard state and divergence records; nil means
	// store.Open(DataDir), or memory when DataDir is empty.
	Storage store.Storage
	// Faults, when set, injects faults into gossip, agent RPC and naming
	// traffic (tests and -fault-control).
	Faults *faulty.Faults
	// GossipTune adjusts memberlist timers (tests).
	GossipTune func(*gossip.Config)
	// Monitor is the self-monitor plugged into the agent; nil means none.
	Monitor Monitor
	// Seed seeds the agent's random source; 0 draws one.
	Seed int64
	// OnRoleChange, when set, is called as the on-role-change executable
	// is run (package hook): on every change of role, epoch or followed
	// master and once at start, one call at a time, with the latest state,
	// before the executable. It must return promptly.
	OnRoleChange func(hook.State)
	// PrePromote, when set, is the promotion gate as a Go callback: called
	// after the agent wins an election and before it serves or registers
	// as master (before the -pre-promote executable, if any). An error
	// vetoes the promotion (Config.PrePromote says what follows).
	PrePromote func(hook.State) error
	// Metrics, when set, is served at GET /metrics beside the agent's own
	// metrics: the process's (memberlist's and raft's through go-metrics,
	// the Go runtime's), which one process has once for all its agents.
	Metrics prometheus.Gatherer
}

// Monitor is the self-monitor's side of the agent (package recover). The
// agent calls Event from its loop goroutine; it must not block.
type Monitor interface {
	// Event raises the external event trigger (figure 6).
	Event(kind, detail string)
	// Start runs the monitor until ctx ends; a is the agent it watches.
	Start(ctx context.Context, a *Agent)
}

// Agent is one replica: the runtime around core.Node. One goroutine (run)
// owns the core, the state machine and the log; every other goroutine asks
// it through do.
//
// Goroutines:
//   - run: owns core, log, state machine, proposals and the peer table;
//   - the publisher: pushes role changes to gossip metadata and claims;
//   - the naming loop: drives the member machine (session and
//     registration), with the naming node's calls on goroutines of their own;
//   - a sync goroutine while a state download runs;
//   - the HTTP server, the transport's readers and writers, gossip's own.
type Agent struct {
	cfg     config.Agent
	opts    Options
	metrics *metrics
	logger  hclog.Logger
	rand    *rand.Rand
	storage store.Storage
	sm      rlog.StateMachine

	node    *core.Node
	ops     chan func()
	inbound chan core.Message

	gossip    *gossip.Gossip
	transport *transport.Transport
	naming    *client.Client
	dial      func(ctx context.Context, network, addr string) (net.Conn, error)
	server    auth.Server // the ACL and TLS the agent requires of callers
	creds     auth.Creds  // what the agent presents to peers and the naming node
	httpSrv   *http.Server
	ln        net.Listener
	peerOnce  sync.Once
	peerHTTP  *http.Client // see peerClient

	keyringMu   sync.Mutex // serializes keyring operations and the keyring file
	keyringOnce sync.Once
	keyringHTTP *http.Client

	// Owned by run.
	waiters map[uint64]chan core.Result
	nextRef uint64
	peerAPI map[uint64]string
	// graceOver: every join address was met (the start-up grace ended).
	graceOver bool
	// expectWarned: the view outgrew -expect and the operator was told.
	expectWarned bool
	// joinAddrs are the addresses each join entry resolved to.
	joinAddrs [][]string
	sync      *syncJob        // the catch-up download in flight, if any
	catchup   catchup.Machine // decides when it runs
	// storageErr is set once a write to the storage failed: the agent
	// sends nothing more (see handleReady).
	storageErr error
	storageBad atomic.Bool // storageErr != nil, for other goroutines
	// onSend, when set (tests, through export_test.go), sees every
	// message the loop hands to the transport.
	onSend func(core.Message)
	// compactWanted is what the storage last asked a snapshot to reach
	// to free a log segment, as told to the core (owned by run).
	compactWanted uint64

	hooks     *hook.Runner
	hookState hook.Tracker // owned by run

	publishCh chan struct{} // wakes the publisher
	fatal     chan error
	lastRole  api.Role // owned by the publisher

	checkHTTP *http.Client  // -check-http's
	blockers  api.Semaphore // blocking reads held at once

	mu      sync.Mutex         // guards the fields below, read by other goroutines
	service wire.ServiceHealth // the managed service's checks
	status  core.Status
	roles   roleStats // role changes, for the metrics
	// changed is closed, and replaced, when the role, epoch, master or
	// serving in status changes: waiters for a role change wait on it.
	// index counts those changes (the index of a blocking GET /v1/info).
	changed chan struct{}
	index   uint64
	view    []gossip.Member
	session uint64
	// regWant is an epoch to register that the naming loop has not taken
	// up yet; registering is the member machine's Registering.
	regWant        *api.Epoch
	registering    bool
	namingWake     chan struct{}          // wakes the naming loop
	leaveNaming    chan chan error        // asks the naming loop to leave and stop
	leaving        atomic.Bool            // Leave under way: ask for no handover
	refusedOutside atomic.Uint64          // inputs refused outside the core (noteRefused)
	joinProof      atomic.Pointer[string] // the hash of the last naming join's proof (wire.Info.JoinProof)
	// paused: the group is in maintenance, as the naming node said in
	// the answer to one of our own calls (a trigger only makes us ask).
	paused atomic.Bool

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// Errors of the agent's life.
var (
	// ErrStopped is returned by calls on a stopped agent.
	ErrStopped = errors.New("agent: stopped")
	// ErrIDTaken means another live agent holds this agent's group and ID
	// (gossip or the naming node says so): Start refuses to run, before
	// any campaign, and a running agent that learns it stops.
	ErrIDTaken = errors.New("agent: ID taken")
	// ErrStorage means a write to the agent's storage failed: the agent
	// stopped before sending anything that depended on it.
	ErrStorage = errors.New("agent: storage failed")
	// ErrNotKV means a kv operation reached an agent whose state machine
	// is not a KVStateMachine (501 on the API).
	ErrNotKV = errors.New("agent: the state machine is not a kv store")
)

// KVStateMachine is a state machine the agent's kv API can drive: it
// applies the operations kv.EncodeOp encodes as kv.Store does, and Get
// reads a key of its applied state (called from the agent's goroutine).
// kv.Store is one, and so is a type that embeds a *kv.Store. Over any
// other state machine POST /v1/kv, divergence replay and Execute refuse
// with ErrNotKV, and Get finds nothing; Propose takes any operation.
type KVStateMachine interface {
	rlog.StateMachine
	Get(key string) ([]byte, bool)
}

var _ KVStateMachine = (*kv.Store)(nil)

// New builds an agent; Start runs it.
func New(cfg config.Agent, opts Options) (*Agent, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	logger := cfg.Logger
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	logger = logger.Named("agent").With("group", cfg.Group, "agent", cfg.ID)
	seed := opts.Seed
	if seed == 0 {
		var b [8]byte
		crand.Read(b[:])
		seed = int64(binary.LittleEndian.Uint64(b[:]))
	}
	a := &Agent{cfg: cfg, opts: opts, logger: logger, rand: rand.New(rand.NewSource(seed)),
		ops: make(chan func(), 256), inbound: make(chan core.Message, 4096),
		waiters: map[uint64]chan core.Result{}, peerAPI: map[uint64]string{}, publishCh: make(chan struct{}, 1), namingWake: make(chan struct{}, 1),
		fatal: make(chan error, 1), changed: make(chan struct{}), leaveNaming: make(chan chan error),
		blockers: api.NewSemaphore(api.MaxBlockingReads)}
	a.metrics, a.roles = newMetrics(a), newRoleStats()
	if opts.Faults != nil {
		opts.Faults.SetCrash(a.crash)
	}
	for _, h := range []struct{ field, path string }{{"on-role-change", cfg.OnRoleChange}, {"pre-promote", cfg.PrePromote},
		{"check", cfg.Check}} {
		if h.path == "" {
			continue
		}
		if err := hook.CheckExecutable(h.path); err != nil {
			return nil, &config.FieldError{Field: h.field, Value: h.path, Reason: err.Error()}
		}
	}
	a.service.Check = cfg.Check + cfg.CheckHTTP
	a.checkHTTP = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	a.hooks = hook.NewRunner(hook.Config{Path: cfg.OnRoleChange, PrePromote: cfg.PrePromote, Timeout: cfg.HookTimeout, Callback: opts.OnRoleChange,
		Logger: logger.Named("hook")})
	a.dial = (&net.Dialer{Timeout: time.Second}).DialContext
	if opts.Faults != nil {
		a.dial = faulty.NewDialer(opts.Faults).DialContext
	}
	a.sm = opts.StateMachine
	if a.sm == nil {
		a.sm = kv.NewStore()
	}
	a.storage = opts.Storage
	if a.storage == nil {
		if cfg.DataDir == "" {
			a.storage = store.NewMemory()
		} else {
			s, err := store.Open(cfg.DataDir)
			if err != nil {
				return nil, err
			}
			a.storage = s
		}
	}
	var err error
	a.server, a.creds, err = auth.Load(cfg.ACL, cfg.Token, cfg.TokenFile, auth.TLSFiles{CA: cfg.TLSCA, Cert: cfg.TLSCert, Key: cfg.TLSKey})
	if err != nil {
		a.storage.Close()
		return nil, fmt.Errorf("agent: %w", err)
	}
	nc, err := client.New(cfg.Naming, client.WithDialer(a.dial), client.WithTimeout(2*time.Second), client.WithCreds(a.creds))
	if err != nil {
		a.storage.Close()
		return nil, err
	}
	a.naming = nc
	return a, nil
}

// restore builds the core from storage.
func (a *Agent) restore() error {
	hs, snap, base, entries, err := a.storage.Load()
	if err != nil {
		return fmt.Errorf("agent: load storage: %w", err)
	}
	if snap != nil {
		if err := a.sm.Restore(snap); err != nil {
			return fmt.Errorf("agent: restore snapshot: %w", err)
		}
	}
	l := rlog.NewAt(base)
	if err := l.Append(entries...); err != nil {
		return fmt.Errorf("agent: restore log: %w", err)
	}
	a.node = core.NewNode(core.Config{
		ID: a.cfg.ID, Group: a.cfg.Group, Priority: a.cfg.Priority, Mode: mustMode(a.cfg.Mode),
		HeartbeatTicks: a.cfg.HeartbeatTicks, ElectionTicks: a.cfg.ElectionTicks,
		StaggerTicks: a.cfg.ElectionStaggerTicks, Expect: a.cfg.Expect,
		WriteTicks: max(1, int(a.cfg.WriteTimeout/a.cfg.TickUnit)),
		Gate:       a.gated(), GateBackoffTicks: int(ticksOf(a.cfg.PromoteBackoff, a.cfg.TickUnit)),
		StartGraceTicks: a.startGraceTicks(),
		// The gate's own timeout (the executable is killed at HookTimeout)
		// and an election timeout more; then the core counts it a veto.
		GateTimeoutTicks: int(ticksOf(a.cfg.HookTimeout, a.cfg.TickUnit)) + a.cfg.ElectionTicks,
		SnapshotEntries:  a.cfg.SnapshotEntries, SnapshotBytes: a.cfg.SnapshotBytes, RetainEntries: a.cfg.RetainEntries,
		Rand: rand.New(rand.NewSource(a.rand.Int63())), Logger: a.logger.Named("core"),
	}, a.sm, l, core.HardState{Epoch: hs.Epoch, Vote: hs.Vote, Master: hs.Master, MaxTerm: hs.MaxTerm})
	if a.dataDir() != "" {
		// Loading read whole segment files and decoded every stored
		// entry; only the log's entries and the state stay. Hand the
		// rest back to the system now, so that a restarted agent's
		// resident memory is what it holds, not what it once read.
		debug.FreeOSMemory()
	}
	return nil
}

func mustMode(s string) api.Mode {
	m, _ := api.ParseMode(s)
	return m
}

// Start listens on the API address, joins gossip and the naming node, and
// starts the loop.
func (a *Agent) Start() error {
	if err := a.restore(); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", a.cfg.APIAddr())
	if err != nil {
		return fmt.Errorf("agent: listen on %s: %w", a.cfg.APIAddr(), err)
	}
	a.ln = ln
	limited := api.LimitListener(ln, a.cfg.MaxConns, func(addr net.Addr) {
		a.logger.Debug("connection refused: at the cap of open connections", "remote", addr, "max_conns", a.cfg.MaxConns)
	})
	httpLn, streams := transport.Mux(a.server.Listen(limited))
	var accepted func(net.Conn) net.Conn
	if a.opts.Faults != nil {
		accepted = a.opts.Faults.Accepted
	}
	var vouch func(net.Conn, string) error
	if a.server.TLS != nil {
		vouch = auth.CoversAddr
	}
	a.transport = transport.New(transport.Config{ID: a.cfg.ID, Addr: a.advertisedAPI(), Dial: a.creds.Dial(a.dial), Accepted: accepted, Vouch: vouch,
		Logger: a.logger, Token: a.creds.Token,
		Authorize: func(token string) error {
			_, err := a.server.ACL.Check(token, auth.Agent)
			return err
		},
		Handler: func(m core.Message) {
			select {
			case a.inbound <- m:
			default: // overloaded: the protocol resends
			}
		},
		Closed: func(from uint64) {
			select {
			case a.ops <- func() { a.node.PeerStreamClosed(from) }:
			default: // busy: the election timeout still runs
			}
		}})
	if a.server.ACL.Open() {
		a.logger.Warn("no -acl: the agent is open; any caller that reaches its API can write, read its state and send it messages")
	}
	if a.server.TLS == nil {
		a.logger.Warn("no TLS: the agent's API and streams travel in clear text (set -tls-ca, -tls-cert, -tls-key)")
	}
	a.ctx, a.cancel = context.WithCancel(context.Background())

	key, extraKeys, err := a.loadKeys()
	if err != nil {
		ln.Close()
		return err
	}
	if a.startGraceTicks() > 0 {
		a.joinAddrs = resolveJoin(a.ctx, a.cfg.Join)
	}
	gcfg := gossip.DefaultConfig(a.cfg.GossipProfile)
	gcfg.Group, gcfg.ID = a.cfg.Group, a.cfg.ID
	gcfg.BindAddr = a.cfg.Bind
	gcfg.AdvertiseAddr = a.cfg.Advertise
	gcfg.Join = a.cfg.Join
	gcfg.SecretKey, gcfg.ExtraKeys = key, extraKeys
	gcfg.CheckEpoch = func(e api.Epoch) error {
		err := api.CheckTerm(e.Term, a.Status().MaxTerm)
		if err != nil {
			a.noteRefused("gossip claim", err)
		}
		return err
	}
	gcfg.ReconnectInterval = a.cfg.ReconnectInterval
	gcfg.Logger = a.logger
	gcfg.Rand = rand.New(rand.NewSource(a.rand.Int63()))
	gcfg.Meta = a.meta()
	if a.opts.Faults != nil {
		f := a.opts.Faults
		gcfg.WrapTransport = func(t memberlist.NodeAwareTransport) memberlist.Transport { return faulty.NewTransport(t, f) }
	}
	if a.opts.GossipTune != nil {
		a.opts.GossipTune(&gcfg)
	}
	g, err := gossip.New(gcfg, gossipEvents{a})
	if err != nil {
		ln.Close()
		return fmt.Errorf("agent: gossip: %w", err)
	}
	a.gossip = g
	a.publish()

	// One agent per ID: before the loop runs (so before any campaign),
	// ask gossip and the naming node whether another agent holds our ID.
	if len(a.cfg.Join) > 0 {
		if _, err := g.Join(); errors.Is(err, gossip.ErrDuplicateID) {
			a.abortStart()
			return fmt.Errorf("%w: %v", ErrIDTaken, err)
		} else if err != nil {
			a.logger.Warn("join failed; the reconnect loop keeps trying", "error", err)
		}
	}
	if a.checking() {
		a.node.SetHealthy(false) // until the first check passes; the loop does not run yet
	}
	// The API serves before the naming join: a rejoin within our old
	// session's TTL is taken once the naming node read our join proof
	// from /v1/info (calls that need the loop wait for it to start).
	a.httpSrv = &http.Server{Handler: a.handler(), ReadHeaderTimeout: api.ReadHeaderTimeout, ReadTimeout: api.ReadTimeout,
		IdleTimeout: api.IdleTimeout, ErrorLog: a.logger.StandardLogger(nil)}
	a.wg.Add(1)
	go func() { defer a.wg.Done(); a.httpSrv.Serve(httpLn) }()
	first, joinErr := a.joinNaming(a.ctx, startJoinTimeout)
	if first != nil && first.Paused {
		a.paused.Store(true)
		a.node.SetPaused(true) // the loop does not run yet
		a.logger.Warn("group paused: no automatic election, handover or recovery until it is resumed")
	}
	if errors.Is(joinErr, api.ErrIDTaken) {
		a.abortStart()
		return fmt.Errorf("%w: %v", ErrIDTaken, joinErr)
	} else if joinErr != nil {
		a.logger.Warn("naming node not reached at start; the naming loop keeps trying", "naming", a.cfg.Naming, "error", joinErr)
	}

	a.wg.Add(5)
	go func() { defer a.wg.Done(); a.hooks.Run(a.ctx) }()
	go func() { defer a.wg.Done(); a.runPublisher() }()
	go func() { defer a.wg.Done(); a.transport.Accept(streams) }()
	go func() { defer a.wg.Done(); a.run() }()
	go func() { defer a.wg.Done(); a.runNaming(first, joinErr) }()
	if a.opts.Monitor != nil {
		a.wg.Add(1)
		go func() { defer a.wg.Done(); a.opts.Monitor.Start(a.ctx, a) }()
	}
	if a.checking() {
		a.wg.Add(1)
		go func() { defer a.wg.Done(); a.runHealth() }()
	}
	a.logger.Info("agent started", "api", ln.Addr().String(), "gossip", g.LocalAddr(), "mode", a.cfg.Mode, "priority", a.cfg.Priority)
	return nil
}

// startJoinTimeout bounds the naming node join at start.
const startJoinTimeout = 2 * time.Second

// abortStart undoes a Start that found its ID taken: nothing ran but the
// listener, the API server, the transport and gossip.
func (a *Agent) abortStart() {
	a.cancel()
	a.gossip.Shutdown()
	if a.httpSrv != nil {
		a.httpSrv.Close()
	}
	a.ln.Close()
	a.transport.Close()
	a.naming.Close()
	a.wg.Wait()    // the API server, closed above
	a.cancel = nil // Close only closes the storage now
}

// Fatal delivers the error that ended the agent's right to run, if one
// does: another agent holds its ID. The owner of the agent closes it (the
// command exits with ExitIDTaken).
func (a *Agent) Fatal() <-chan error { return a.fatal }

// noteRefused counts an input refused outside the core (a gossip claim, a
// naming node trigger) for an epoch out of range; it logs the 1st, 2nd,
// 4th, 8th... so that a flood of forged input does not flood the log.
func (a *Agent) noteRefused(what string, err error) {
	n := a.refusedOutside.Add(1)
	if n&(n-1) == 0 {
		a.logger.Warn("refused an epoch out of range", "input", what, "error", err, "refused_so_far", n)
	}
}

func (a *Agent) failFatal(err error) {
	select {
	case a.fatal <- err:
	default:
	}
}

// Close leaves gossip, stops every goroutine and closes the storage.
func (a *Agent) Close() error {
	if a.cancel == nil {
		return a.storage.Close()
	}
	a.cancel()
	if a.gossip != nil {
		a.gossip.Leave(200 * time.Millisecond)
		a.gossip.Shutdown()
	}
	if a.httpSrv != nil {
		a.httpSrv.Close()
	}
	a.ln.Close()
	a.transport.Close()
	a.wg.Wait()
	// The service hears last that the agent stopped (after any run under
	// way, within the hook timeout).
	st := a.Status()
	a.hooks.RunNow(context.Background(), hook.State{Role: hook.RoleStopped, Group: a.cfg.Group, ID: a.cfg.ID, Epoch: st.Epoch})
	a.closePeerClient()
	a.naming.Close()
	return a.storage.Close()
}

// Leave stops the agent cleanly, as SIGTERM does: a master first hands
// mastership over to the best-ranked back-up that qualifies (waiting at
// most timeout; 0 skips it), then the agent ends its member session at
// the naming node (member-left; its registration goes at once, so the new
// master registers without waiting out a TTL), leaves gossip, runs the
// on-role-change hook with "stopped", and closes. A handover or a naming
// node that fails is logged: the agent leaves anyway.
func (a *Agent) Leave(timeout time.Duration) error {
	if a.cancel == nil || a.ctx.Err() != nil {
		return a.Close()
	}
	a.leaving.Store(true)
	a.do(func() { a.node.SetLeaving() })
	if timeout > 0 && a.Status().Role == api.RoleMaster {
		ctx, cancel := context.WithTimeout(a.ctx, timeout)
		sw, err := a.HandOver(ctx, 0, false)
		cancel()
		if err != nil {
			a.logger.Warn("leaving without a handover", "error", err)
		} else {
			a.logger.Info("handed mastership over before leaving", "to", sw.To, "epoch", sw.Epoch, "gap_ms", sw.GapMS)
		}
	}
	done := make(chan error, 1)
	wait := time.NewTimer(2 * namingCallWait)
	defer wait.Stop()
	select {
	case a.leaveNaming <- done:
		select {
		case err := <-done:
			if err != nil {
				a.logger.Warn("leaving the naming node failed; the session expires at its TTL", "error", err)
			} else {
				a.logger.Info("left the naming node")
			}
		case <-wait.C:
		}
	case <-a.ctx.Done():
	case <-wait.C: // the naming loop has stopped (another agent holds our ID)
	}
	return a.Close()
}

// crash stops the agent without leaving gossip or closing storage cleanly,
// as a SIGKILL would. Tests reach it through the agent's faults
// (Options.Faults, faulty.Faults.Crash); a crashed agent is not restarted:
// a new one starts on the same storage.
func (a *Agent) crash() {
	a.cancel()
	a.gossip.Shutdown()
	a.httpSrv.Close()
	a.ln.Close()
	a.transport.Close()
	a.wg.Wait()
	a.closePeerClient()
	a.naming.Close()
}

// closePeerClient drops idle agent-to-agent connections; every goroutine
// that used them has ended.
func (a *Agent) closePeerClient() {
	a.peerOnce.Do(func() {})
	if a.peerHTTP != nil {
		a.peerHTTP.CloseIdleConnections()
	}
}

// ID is the agent's ID.
func (a *Agent) ID() uint64 { return a.cfg.ID }

// Config is the agent's configuration.
func (a *Agent) Config() config.Agent { return a.cfg }

// APIAddr is the address the API serves on.
func (a *Agent) APIAddr() string { return a.ln.Addr().String() }

// GossipAddr is the gossip address.
func (a *Agent) GossipAddr() string { return a.gossip.LocalAddr() }

// Logger is the agent's logger.
func (a *Agent) Logger() hclog.Logger { return a.logger }

// Naming is the agent's naming client.
func (a *Agent) Naming() *client.Client { return a.naming }

// Dial is the agent's dialer (fault-injected when faults are on).
func (a *Agent) Dial() func(ctx context.Context, network, addr string) (net.Conn, error) {
	return a.dial
}

// Storage is the agent's storage.
func (a *Agent) Storage() store.Storage { return a.storage }

// do runs f on the loop goroutine and waits for it.
//
// When the agent stops meanwhile, do returns ErrStopped only if f will never
// run; if the loop already took f, do waits for it to finish (f does not
// block), so a caller never reads what f writes while f runs.
func (a *Agent) do(f func()) error { return a.doWithin(context.Background(), f) }

// doWithin is do bounded by ctx: when ctx ends before the loop took f, f
// never runs and doWithin returns ctx's error (the self-monitor's commands
// wait for a busy loop at most a period). Once the loop took f, it waits
// for f to finish, which does not block.
func (a *Agent) doWithin(ctx context.Context, f func()) error {
	done := make(chan struct{})
	var claimed atomic.Bool
	op := func() {
		if claimed.CompareAndSwap(false, true) {
			f()
			close(done)
		}
	}
	select {
	case a.ops <- op:
	case <-a.ctx.Done():
		return ErrStopped
	case <-ctx.Done():
		return fmt.Errorf("agent loop busy: %w", ctx.Err())
	}
	select {
	case <-done:
		return nil
	case <-a.ctx.Done():
		if claimed.CompareAndSwap(false, true) {
			return ErrStopped // the loop will never run it
		}
		<-done
		return nil
	case <-ctx.Done():
		if claimed.CompareAndSwap(false, true) {
			return fmt.Errorf("agent loop busy: %w", ctx.Err()) // the loop will never run it
		}
		<-done
		return nil
	}
}

// Entry reads entry index of the agent's log, on the loop goroutine.
func (a *Agent) Entry(index uint64) (rlog.Entry, error) {
	var e rlog.Entry
	var err error
	if derr := a.do(func() { e, err = a.node.Log().Entry(index) }); derr != nil {
		return rlog.Entry{}, derr
	}
	return e, err
}

// The self-monitor's commands. Each runs on the loop goroutine, and none
// waits for a busy loop past its ctx (it then never runs).

// BeginRecovery aligns the agent to the retained master (figure 10, act
// 1010): it stops acting as master and follows master, serving nothing
// until the recovery installs the master's state. A catch-up download in
// flight is abandoned: the recovery replaces it.
func (a *Agent) BeginRecovery(ctx context.Context, master uint64) error {
	return a.doWithin(ctx, func() {
		a.cancelSync()
		a.node.BeginRecovery(master)
		a.handleReady()
	})
}

// RequestHandover asks the master for a planned handover if this agent is
// the one that should hold mastership (core.Node.HandoverCandidate); it
// reports whether it asked.
func (a *Agent) RequestHandover(ctx context.Context) (bool, error) {
	if a.leaving.Load() {
		return false, nil
	}
	var asked bool
	err := a.doWithin(ctx, func() {
		asked = a.node.RequestHandover()
		a.handleReady()
	})
	return asked, err
}

// Reassert moves a retained master above every epoch seen, registered
// included (core.Node.Reassert).
func (a *Agent) Reassert(ctx context.Context, registered api.Epoch) error {
	return a.doWithin(ctx, func() {
		a.node.SeeEpoch(registered)
		a.node.Reassert()
		a.handleReady()
	})
}

// Release makes a quarantined agent a back-up of nobody again, so the group
// can elect.
func (a *Agent) Release(ctx context.Context) error {
	return a.doWithin(ctx, func() {
		a.node.EndRecovery(0, a.node.Epoch())
		a.handleReady()
	})
}

// Quarantine stops serving after a failed recovery (figure 10, act 1050).
func (a *Agent) Quarantine(ctx context.Context) error {
	return a.doWithin(ctx, func() {
		a.cancelSync()
		a.node.Quarantine()
		a.handleReady()
	})
}

// run is the loop: it owns the core.
func (a *Agent) run() {
	t := time.NewTicker(a.cfg.TickUnit)
	defer t.Stop()
	clock := tickClock{base: time.Now(), unit: a.cfg.TickUnit}
	for {
		select {
		case <-a.ctx.Done():
			a.node.Ready()
			for ref, w := range a.waiters {
				w <- core.Result{Ref: ref, Err: ErrStopped}
				delete(a.waiters, ref)
			}
			return
		case <-t.C:
		case m := <-a.inbound:
			// Ticks first: a message must not be judged by a clock that
			// stood still (a paused process, a busy loop).
			clock.catchUp(a.node, time.Now())
			a.node.Step(m)
			a.takePending(&clock)
		case f := <-a.ops:
			clock.catchUp(a.node, time.Now())
			f()
			a.takePending(&clock)
		}
		clock.catchUp(a.node, time.Now())
		a.handleReady()
	}
}

// maxPending bounds the events the loop takes before one Ready, and a tick
// unit the time it spends taking them.
const maxPending = 512

// takePending steps the messages and runs the calls already waiting, up
// to maxPending or for a tick unit, before the loop carries out one Ready
// for all of them: group commit. Many writes and acknowledgements then
// share one persist (one storage commit and fsync) and one append per
// back-up, while persist-before-send and answer-after-commit stay as they
// are: the Ready is persisted before any of it is sent or answered. The
// core's clock is caught up before each event, as before the first: a
// lease or a registration is never judged by a clock that stood still
// while the loop worked. Reads flush what is pending first (flushForRead).
// Run only.
func (a *Agent) takePending(clock *tickClock) {
	until := time.Now().Add(a.cfg.TickUnit)
	for i := 0; i < maxPending; i++ {
		select {
		case m := <-a.inbound:
			now := time.Now()
			clock.catchUp(a.node, now)
			a.node.Step(m)
			if now.After(until) {
				return
			}
		case f := <-a.ops:
			now := time.Now()
			clock.catchUp(a.node, now)
			f()
			if now.After(until) {
				return
			}
		default:
			return
		}
	}
}

// flushForRead carries out the pending Ready before a read: a write
// committed in this batch (a group of one commits at once) is then durable
// before a read may show it. Run only.
func (a *Agent) flushForRead() { a.handleReady() }

// tickClock keeps the core's ticks in step with wall time. A ticker drops
// ticks while the loop is busy, and none at all while the process is
// paused (SIGSTOP, a long GC, a suspended VM); a lease or a registration
// counted in ticks would then outlive its wall-clock length, and a paused
// strict master would serve stale reads when it resumes. Before every
// event the core is ticked for all the wall time that passed.
type tickClock struct {
	base time.Time
	unit time.Duration
	done uint64
}

// maxCatchUp bounds the ticks replayed at once; beyond it the rest are
// skipped (every timer of the core has long expired by then).
const maxCatchUp = 10000

func (c *tickClock) catchUp(n *core.Node, now time.Time) {
	due := uint64(now.Sub(c.base) / c.unit)
	for i := 0; c.done < due; i++ {
		if i == maxCatchUp {
			c.done = due
			break
		}
		n.Tick()
		c.done++
	}
}

// handleReady carries out what the core asked: persist, then send, answer,
// and act.
//
// Persist before send: when a write to the storage fails, nothing of this
// Ready (nor of any later one) is sent or answered, since the core's state
// is then ahead of the disk (a vote or an epoch could be forgotten at the
// next start). The agent stops: every waiting request fails with
// ErrStorage, and Fatal delivers the error so that the owner closes it.
func (a *Agent) handleReady() {
	rd := a.node.Ready()
	if a.storageErr == nil {
		if err := a.persist(rd); err != nil {
			a.failStorage(err)
		}
	}
	if a.storageErr != nil {
		for ref, w := range a.waiters {
			w <- core.Result{Ref: ref, Err: a.storageErr}
			delete(a.waiters, ref)
		}
		return
	}
	a.send(rd)
}

// failStorage records the first failed write to the storage: from then
// on the agent sends nothing (handleReady), and its owner stops it. Run
// only.
func (a *Agent) failStorage(err error) {
	if a.storageErr != nil {
		return
	}
	if !errors.Is(err, ErrStorage) {
		err = fmt.Errorf("%w: %v", ErrStorage, err)
	}
	a.storageErr = err
	a.storageBad.Store(true)
	a.logger.Error("storage failed; the agent stops and sends nothing more", "error", err)
	a.failFatal(err)
}

// persist writes what the Ready asks to keep.
func (a *Agent) persist(rd core.Ready) error {
	u := store.Update{TruncateAfter: rd.Truncated, Entries: rd.Entries}
	if hs := rd.HardState; hs != nil {
		u.HardState = &store.HardState{Epoch: hs.Epoch, Vote: hs.Vote, Master: hs.Master, MaxTerm: hs.MaxTerm}
	}
	// Divergence records go in the commit of the truncation that removed
	// their entries from the log: a crash between the two would lose them.
	master := a.node.Master()
	for _, e := range rd.Divergent {
		u.Records = append(u.Records, store.Record{Group: a.cfg.Group, Epoch: e.Epoch, Index: e.Index, Client: e.Client,
			Seq: e.Seq, Op: e.Op, Acked: e.Epoch.ID == a.cfg.ID, Retained: master})
	}
	var start time.Time
	if len(u.Entries) > 0 {
		start = time.Now() // a store of log entries, for the metrics
	}
	if err := a.storage.Persist(u); err != nil {
		return fmt.Errorf("%w: %v", ErrStorage, err)
	}
	if !start.IsZero() {
		a.metrics.observeLogWrite(time.Since(start), len(u.Entries))
	}
	if len(u.Records) > 0 {
		a.logger.Warn("divergent writes kept for replay", "count", len(u.Records), "master", master)
	}
	if sn := rd.Snapshot; sn != nil {
		// After the entries: the snapshot's base is one of them or
		// before, and the stored log is cut at it.
		if err := a.storage.SaveSnapshot(sn.Pos, sn.Data); err != nil {
			return fmt.Errorf("%w: snapshot at %s: %v", ErrStorage, sn.Pos, err)
		}
		a.logger.Debug("snapshot stored; log compacted", "index", sn.Pos.Index, "bytes", len(sn.Data))
	}
	// A log that spans two segments asks for the snapshot that frees the
	// first one (the core takes it once it applied that far).
	if cw, ok := a.storage.(interface{ CompactWanted() uint64 }); ok && (len(rd.Entries) > 0 || rd.Snapshot != nil) {
		if i := cw.CompactWanted(); i != a.compactWanted {
			a.compactWanted = i
			a.node.CompactWanted(i)
		}
	}
	return nil
}

// send carries out the rest of a persisted Ready: messages, answers,
// status, and the requests of the core.
func (a *Agent) send(rd core.Ready) {
	// The status first: what a peer hears from us next (a new master's
	// first append, say) must never be ahead of what our API says.
	st := a.node.Status()
	a.mu.Lock()
	changed := a.status.Role != st.Role || a.status.Epoch != st.Epoch || a.status.Master != st.Master ||
		a.status.Serving != st.Serving
	if changed {
		a.roles.note(a.status, st, time.Now())
	}
	a.status = st
	if changed {
		close(a.changed)
		a.changed = make(chan struct{})
		a.index++
	}
	if rd.Register != nil {
		e := *rd.Register
		a.regWant, a.registering = &e, false
	}
	a.mu.Unlock()
	for _, m := range rd.Messages {
		if a.onSend != nil {
			a.onSend(m)
		}
		if addr := a.peerAPI[m.To]; addr != "" {
			a.transport.Send(addr, m)
		} else {
			a.logger.Trace("no address for peer; message dropped", "to", m.To, "type", m.Type)
		}
	}
	for _, r := range rd.Results {
		if w := a.waiters[r.Ref]; w != nil {
			w <- r
			delete(a.waiters, r.Ref)
		}
	}
	if changed || rd.RoleChanged {
		select {
		case a.publishCh <- struct{}{}:
		default: // a publish is pending; it will read the latest status
		}
	}
	if rd.Register != nil {
		select {
		case a.namingWake <- struct{}{}:
		default:
		}
	}
	a.maybeSync()
	if rd.Gate != nil {
		a.runGate(*rd.Gate)
	}
	if a.hooks.Enabled() && !st.Gated { // a gated master is no master yet
		addr := ""
		if st.Master == a.cfg.ID {
			addr = a.advertisedAPI()
		} else if st.Master != 0 {
			addr = a.peerAPI[st.Master]
		}
		if s, ok := a.hookState.Next(st.Role, hook.State{Group: a.cfg.Group, ID: a.cfg.ID, Epoch: st.Epoch,
			Master: st.Master, MasterAddr: addr}); ok {
			a.hooks.Notify(s)
		}
	}
	for _, ev := range rd.Events {
		a.logger.Debug("event", "kind", ev.Kind, "from", ev.From, "epoch", ev.Epoch)
		if a.opts.Monitor != nil {
			a.opts.Monitor.Event(ev.Kind.String(), fmt.Sprintf("agent %d at epoch %s", ev.From, ev.Epoch))
		}
	}
}

// meta is what gossip announces about us.
func (a *Agent) meta() gossip.Meta {
	a.mu.Lock()
	st := a.status
	a.mu.Unlock()
	role := st.Role
	if role == api.RoleUnknown {
		role = api.RoleBackup
	}
	return gossip.Meta{Group: a.cfg.Group, ID: a.cfg.ID, Priority: a.cfg.Priority, Role: role,
		Epoch: st.Epoch, Master: st.Master, API: a.advertisedAPI(), Mode: a.cfg.Mode, Service: a.serviceHealth()}
}

func (a *Agent) advertisedAPI() string {
	if a.ln != nil {
		return a.cfg.AnnouncedAPI(a.ln.Addr().String())
	}
	return a.cfg.AnnouncedAPI(a.cfg.APIAddr())
}

// runPublisher pushes role changes to gossip off the loop goroutine:
// memberlist may wait for a broadcast, and the loop must never wait.
func (a *Agent) runPublisher() {
	for {
		select {
		case <-a.ctx.Done():
			return
		case <-a.publishCh:
			a.publish()
		}
	}
}

// publish pushes our role to gossip: metadata always, and the master claim
// while master.
func (a *Agent) publish() {
	if a.gossip == nil {
		return
	}
	m := a.meta()
	if err := a.gossip.UpdateMeta(m); err != nil {
		a.logger.Warn("update gossip metadata", "error", err)
	}
	if m.Role == api.RoleMaster {
		if err := a.gossip.Claim(gossip.Claim{Group: a.cfg.Group, ID: a.cfg.ID, Epoch: m.Epoch, API: m.API}); err != nil {
			a.logger.Warn("broadcast claim", "error", err)
		}
	} else if a.lastRole == api.RoleMaster {
		a.gossip.Withdraw()
	}
	a.lastRole = m.Role
}

// updateView feeds the gossip view of our group to the core; run only.
func (a *Agent) updateView() {
	members := a.gossip.Members()
	var peers []core.Peer
	for _, m := range members {
		if m.Meta.Group != a.cfg.Group || m.Self {
			continue
		}
		peers = append(peers, core.Peer{ID: m.Meta.ID, Priority: m.Meta.Priority,
			Alive: m.Health != gossip.HealthDead, Epoch: m.Meta.Epoch, Unhealthy: m.Meta.Service == gossip.ServiceUnhealthy})
		if m.Meta.API != "" {
			a.peerAPI[m.Meta.ID] = m.Meta.API
		}
	}
	sort.Slice(peers, func(i, j int) bool { return peers[i].ID < peers[j].ID })
	a.node.SetView(peers)
	if a.Strict() && len(peers)+1 > a.cfg.Expect && !a.expectWarned {
		// Safe (the quorum counts every member known), but the operator's
		// -expect is wrong: a restart that meets fewer members counts its
		// quorum from -expect alone.
		a.expectWarned = true
		a.logger.Warn("the group has more members than -expect; the quorum counts them all, but fix -expect",
			"members", len(peers)+1, "expect", a.cfg.Expect)
	}
	if !a.graceOver && metJoin(members, a.joinAddrs) {
		a.graceOver = true
		a.node.EndGrace()
	}
	a.mu.Lock()
	a.view = members
	a.mu.Unlock()
}

// Paused tells whether the group is in maintenance (mastership pause): no
// automatic election, handover or recovery changes this agent's role.
func (a *Agent) Paused() bool { return a.paused.Load() }

// setPaused records the group's maintenance state the naming node gave.
// The flag and the core change together on the loop, so that answers
// racing each other leave both saying the same.
func (a *Agent) setPaused(p bool) {
	a.do(func() {
		if a.paused.Load() == p {
			return
		}
		a.paused.Store(p)
		if p {
			a.logger.Warn("group paused: no automatic election, handover or recovery until it is resumed")
		} else {
			a.logger.Info("group resumed")
		}
		a.node.SetPaused(p)
		a.handleReady()
	})
}

// storageFailed tells whether a write to the storage failed.
func (a *Agent) storageFailed() bool { return a.storageBad.Load() }

// statusAndChange returns the status and a channel closed at its next
// change of role, epoch or master.
func (a *Agent) statusAndChange() (core.Status, <-chan struct{}) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.status, a.changed
}

// WaitChange waits until the agent's change index passes index (a change
// of role, epoch or master), for at most wait or until ctx ends, and
// returns the index then.
//
// An index above the agent's (it restarted, and counts from 0 again)
// answers at once: the caller starts over from the index returned. Past
// api.MaxBlockingReads reads waiting at once, it answers at once too.
func (a *Agent) WaitChange(ctx context.Context, index uint64, wait time.Duration) uint64 {
	if !a.blockers.TryAcquire() {
		a.mu.Lock()
		defer a.mu.Unlock()
		return a.index
	}
	defer a.blockers.Release()
	t := time.NewTimer(wait)
	defer t.Stop()
	for {
		a.mu.Lock()
		now, changed := a.index, a.changed
		a.mu.Unlock()
		if now != index {
			return now
		}
		select {
		case <-changed:
		case <-t.C:
			return now
		case <-ctx.Done():
			return now
		case <-a.ctx.Done():
			return now
		}
	}
}

// startGraceTicks is the core's start-up grace: StartGrace for an agent
// with join addresses, none for the first of a group.
func (a *Agent) startGraceTicks() int {
	if len(a.cfg.Join) == 0 || a.cfg.StartGrace == 0 {
		return 0
	}
	return int(ticksOf(a.cfg.StartGrace, a.cfg.TickUnit))
}

// metJoin tells whether every join entry is an alive member of the gossip
// view, at one of the addresses it resolved to.
func metJoin(members []gossip.Member, join [][]string) bool {
	alive := map[string]bool{}
	for _, m := range members {
		if m.Health == gossip.HealthAlive {
			alive[m.Addr] = true
		}
	}
next:
	for _, addrs := range join {
		for _, j := range addrs {
			if alive[j] {
				continue next
			}
		}
		return false
	}
	return true
}

// resolveJoin gives each join entry the host:port forms gossip may show
// it under: itself, and for a host name the addresses it resolves to (at
// most a second for them all; an entry that does not resolve keeps its
// own form, and the grace then runs out rather than end early).
func resolveJoin(ctx context.Context, join []string) [][]string {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	out := make([][]string, 0, len(join))
	for _, j := range join {
		addrs := []string{j}
		if host, port, err := net.SplitHostPort(j); err == nil && net.ParseIP(host) == nil {
			if ips, err := net.DefaultResolver.LookupHost(ctx, host); err == nil {
				for _, ip := range ips {
					addrs = append(addrs, net.JoinHostPort(ip, port))
				}
			}
		}
		out = append(out, addrs)
	}
	return out
}

// Status is a snapshot of the core.
func (a *Agent) Status() core.Status {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.status
}

// Members is the gossip view.
func (a *Agent) Members() []gossip.Member {
	if a.gossip == nil {
		return nil
	}
	return a.gossip.Members()
}

// Strict tells whether the group is in strict mode.
func (a *Agent) Strict() bool { return a.cfg.Mode == string(api.ModeStrict) }

// LookupMaster asks the naming node for the group's retained master: nil
// with no error when none is registered or the group is not known yet.
func (a *Agent) LookupMaster(ctx context.Context) (*api.Registration, error) {
	look, err := a.naming.Lookup(ctx, api.LookupRequest{Group: a.cfg.Group})
	if errors.Is(err, api.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	a.setPaused(look.Paused)
	return look.Master, nil
}

// PeerAlive tells whether a member of our group is alive (or suspect, not
// yet dead) in the gossip view.
func (a *Agent) PeerAlive(id uint64) bool {
	for _, m := range a.Members() {
		if m.Meta.Group == a.cfg.Group && m.Meta.ID == id {
			return m.Health != gossip.HealthDead
		}
	}
	return false
}

// PeerAPI returns the API address of a member of our group, from gossip.
func (a *Agent) PeerAPI(id uint64) string {
	for _, m := range a.Members() {
		if m.Meta.Group == a.cfg.Group && m.Meta.ID == id {
			return m.Meta.API
		}
	}
	return ""
}

// gossipEvents adapts gossip's delegate to the agent.
type gossipEvents struct{ a *Agent }

func (e gossipEvents) MemberEvent(ev gossip.MemberEvent) {
	a := e.a
	if ev.Kind == gossip.EventConflict && ev.Member.Meta.ID == a.cfg.ID && ev.Member.Meta.Group == a.cfg.Group {
		a.logger.Error("another agent announces our ID at another address", "addr", ev.Member.Addr)
	}
	select {
	case a.ops <- a.updateView:
	case <-a.ctx.Done():
	}
}

func (e gossipEvents) CompetingClaim(c gossip.Claim) {
	a := e.a
	a.logger.Warn("competing master claim", "theirs", c.ID, "epoch", c.Epoch)
	ans := AnswerClaim(a.cfg.Group, a.cfg.ID, c)
	a.do(func() {
		if a.opts.Monitor != nil {
			a.opts.Monitor.Event(ans.Event, ans.Detail)
		}
		if c.API != "" {
			a.peerAPI[c.ID] = c.API
		}
		a.node.Trigger(ans.Trigger, ans.TriggerReason)
		a.handleReady()
	})
	ctx, cancel := context.WithTimeout(a.ctx, 2*time.Second)
	defer cancel()
	if _, err := a.naming.Recheck(ctx, ans.Recheck); err != nil {
		a.logger.Debug("recheck at naming node", "error", err)
	}
}
