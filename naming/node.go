package naming

import (
	"bytes"
	"context"
	cryptorand "crypto/rand"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"github.com/prometheus/client_golang/prometheus"
	"math/rand"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	aclient "github.com/mastership/mastership/agent/client"
	"github.com/mastership/mastership/agent/wire"
	"github.com/mastership/mastership/config"
	"github.com/mastership/mastership/naming/api"
	"github.com/mastership/mastership/naming/auth"
)

// Node is the naming node's runtime: one member of the naming cluster (a
// one-voter cluster when it runs alone). The raft state machine (fsm) holds
// the committed state on every node; the leader alone decides: it owns the
// live Registry (built from the committed state when it takes office, with
// every session and registration re-armed for the restart grace), turns its
// Effects into raft commands, arms the conflict-window timers, expires
// sessions and delivers triggers. Followers forward what they are asked to
// the leader (http.go), and answer stale reads from their own state.
//
// Goroutines (each stops on Close):
//   - raft's own, and its transport's readers and writers;
//   - the mux: sorts each connection of the listener into HTTP or raft;
//   - the committer: waits for each command's commit in log order, then
//     runs its post-commit actions (answers to waiting registrants,
//     trigger deliveries);
//   - the leadership watcher: takes office (barrier, live registry,
//     resumed deliveries) and leaves it;
//   - the sweeper: calls Registry.Sweep every SweepInterval while leader;
//   - one conflict-window timer per group with an open window (leader);
//   - one delivery goroutine per trigger target, alive while it retries
//     and the node leads;
//   - the HTTP server's goroutines, which call into the Registry under mu.
type Node struct {
	cfg    config.Naming
	logger hclog.Logger
	clock  Clock

	metricsExtra prometheus.Gatherer // served at /metrics beside the node's
	uiStreams    chan struct{}       // the dashboard streams open (dashMaxStreams)
	dash         dashCache           // the dashboard's shared state
	// uiWriteTimeout bounds each write of a dashboard stream
	// (dashWriteTimeout; tests shorten it).
	uiWriteTimeout time.Duration

	mu       sync.Mutex
	reg      *Registry // the live registry: set while leading
	leading  bool
	office   uint64 // counts the terms of office; work of an older one stops
	waiters  map[string][]chan Decision
	timers   map[string]func() bool
	delivery map[deliveryKey]uint64 // newest trigger seq per target
	active   atomic.Int64           // delivery goroutines running

	fsm      *fsm
	store    *Store
	raft     *raft.Raft
	rstores  *raftStores
	mux      *mux
	blockers api.Semaphore      // blocking reads held at once
	propCh   chan *pendingWrite // to the proposer, in the order decided
	commitCh chan *pendingWrite // to the committer, in the order proposed
	http     *http.Client       // to agents: triggers and probes
	fwd      *http.Client       // to the leader: forwarded calls
	server   auth.Server        // the ACL and TLS the node requires of callers
	creds    auth.Creds         // what the node presents to agents and peers
	rand     *rand.Rand         // jitter of trigger retries; guarded by mu
	regCfg   RegistryConfig
	legacy   bool // a store from before raft waits to be imported
	dialer   func(ctx context.Context, network, addr string) (net.Conn, error)

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	srv    *http.Server
	ln     net.Listener
}

type deliveryKey struct {
	group string
	id    uint64
}

type pendingWrite struct {
	cmd       *command
	future    raft.ApplyFuture
	decisions []decisionWaiters
	triggers  []Trigger
	done      chan error
}

type decisionWaiters struct {
	d       Decision
	waiters []chan Decision
}

// cryptoSource draws from crypto/rand: session IDs are the secrets that
// bind registrations to members, so they must not be predictable from the
// ones a client has seen, as math/rand's would be.
type cryptoSource struct{}

func (cryptoSource) Uint64() uint64 {
	var b [8]byte
	if _, err := cryptorand.Read(b[:]); err != nil {
		panic(fmt.Sprintf("naming: crypto/rand: %v", err))
	}
	return binary.LittleEndian.Uint64(b[:])
}

func (s cryptoSource) Int63() int64 { return int64(s.Uint64() >> 1) }
func (cryptoSource) Seed(int64)     {}

// Errors of a node's life.
var (
	// ErrClosed is returned by calls on a closed node.
	ErrClosed = errors.New("naming: node closed")
	// ErrNotLeader means this node does not lead the naming cluster; the
	// HTTP layer forwards such calls to the leader.
	ErrNotLeader = errors.New("naming: not the leader")
	// ErrForeignCluster means the data dir holds a cluster that does not
	// match the configuration (-peers), or that no longer counts this node.
	ErrForeignCluster = errors.New("naming: the data dir holds another cluster")
)

// New opens the node's raft log and state in cfg.DataDir, bootstraps a new
// cluster (this node alone, or cfg.Peers) when the data dir is empty and
// cfg.Join is not set, and starts the node's goroutines. A node that forms
// a one-voter cluster returns once it leads, so that it answers at once,
// as a single naming node does. Call Serve or ListenAndServe to answer
// requests, and Close to stop.
func New(cfg config.Naming) (*Node, error) { return newNode(cfg, realClock{}) }

func newNode(cfg config.Naming, clock Clock) (*Node, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	policy, _ := api.ParsePolicy(cfg.DefaultPolicy)
	logger := cfg.Logger
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	logger = logger.Named("naming")
	var seed [8]byte
	if _, err := cryptorand.Read(seed[:]); err != nil {
		return nil, fmt.Errorf("naming: seed: %w", err)
	}
	rnd := rand.New(rand.NewSource(int64(binary.LittleEndian.Uint64(seed[:]))))
	dial := cfg.Dial
	if dial == nil {
		dial = (&net.Dialer{Timeout: cfg.TriggerTimeout}).DialContext
	}
	server, creds, err := auth.Load(cfg.ACL, cfg.Token, cfg.TokenFile, auth.TLSFiles{CA: cfg.TLSCA, Cert: cfg.TLSCert, Key: cfg.TLSKey})
	if err != nil {
		return nil, fmt.Errorf("naming: %w", err)
	}
	n := &Node{metricsExtra: cfg.Metrics, uiStreams: make(chan struct{}, dashMaxStreams), uiWriteTimeout: dashWriteTimeout,
		cfg:    cfg,
		logger: logger,
		clock:  clock,
		regCfg: RegistryConfig{
			DefaultPolicy:   policy,
			SessionTTL:      cfg.SessionTTL,
			RegistrationTTL: cfg.RegistrationTTL,
			MaxTTL:          cfg.MaxTTL,
			ConflictWindow:  cfg.ConflictWindow,
			MaxGroups:       cfg.MaxGroups,
		},
		waiters:  make(map[string][]chan Decision),
		timers:   make(map[string]func() bool),
		delivery: make(map[deliveryKey]uint64),
		propCh:   make(chan *pendingWrite, 4096),
		blockers: api.NewSemaphore(api.MaxBlockingReads),
		commitCh: make(chan *pendingWrite, 4096),
		rand:     rnd,
		server:   server,
		creds:    creds,
		mux:      newMux(server, logger),
		http: &http.Client{Transport: creds.Transport(&http.Transport{
			MaxIdleConnsPerHost: 4,
			IdleConnTimeout:     30 * time.Second,
			DialContext:         dial,
		})},
	}
	n.dialer = dial
	n.fwd = newForwarder(n)
	n.ctx, n.cancel = context.WithCancel(context.Background())
	alone, err := n.startRaft(dial)
	if err != nil {
		n.cancel()
		return nil, err
	}
	n.mux.allowRaft = n.raftPeerAllowed
	if server.ACL.Open() {
		logger.Warn("no -acl: the node is open; any caller that reaches it can join groups and register their members")
	}
	if server.TLS == nil {
		logger.Warn("no TLS: calls to and from the node travel in clear text (set -tls-ca, -tls-cert, -tls-key)")
	}
	n.wg.Add(4)
	go n.runProposer()
	go n.runCommitter()
	go n.runSweeper()
	go n.runLeadership()
	if len(cfg.Join) > 0 {
		n.wg.Add(1)
		go n.runJoin()
	}
	if alone {
		if err := n.awaitOffice(startupWait(cfg)); err != nil {
			n.Close()
			return nil, err
		}
	}
	return n, nil
}

// startupWait bounds how long a one-voter node waits to lead at start.
func startupWait(cfg config.Naming) time.Duration { return 10*cfg.ElectionTimeout + 10*time.Second }

// awaitOffice waits until this node leads with its live registry built.
func (n *Node) awaitOffice(d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		n.mu.Lock()
		leading := n.leading
		n.mu.Unlock()
		if leading {
			return nil
		}
		if err := n.fsm.Failed(); err != nil {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("naming: not leading %s after start", d)
		}
		select {
		case <-n.ctx.Done():
			return ErrClosed
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// Close stops serving, stops every goroutine, raft included, and closes the
// stores.
func (n *Node) Close() error {
	n.mu.Lock()
	if n.ctx.Err() != nil {
		n.mu.Unlock()
		return nil
	}
	n.cancel()
	n.leaveOfficeLocked()
	n.mu.Unlock()
	if n.srv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		n.srv.Shutdown(ctx)
		cancel()
	}
	n.mux.close()
	err := n.stopRaft()
	n.mu.Lock()
	close(n.propCh) // the proposer closes commitCh once it drained it
	n.mu.Unlock()
	n.wg.Wait()
	if cerr := n.store.Close(); err == nil {
		err = cerr
	}
	return err
}

// leaderError says who leads instead of this node.
func (n *Node) leaderError() error {
	addr, _ := n.raft.LeaderWithID()
	if addr == "" {
		return api.Errorf(api.CodeUnavailable, "%v, and the naming cluster has no leader now", ErrNotLeader)
	}
	return api.Errorf(api.CodeUnavailable, "%v; the leader is %s", ErrNotLeader, addr)
}

// do runs fn on the live registry under the lock, proposes what it changed
// to the cluster, and waits until that is committed. It is the one path of
// every change; only the leader takes it.
func (n *Node) do(fn func(now time.Time, fx *Effects) error) error {
	n.mu.Lock()
	if n.ctx.Err() != nil {
		n.mu.Unlock()
		return api.Errorf(api.CodeUnavailable, "naming node is shutting down")
	}
	if err := n.fsm.Failed(); err != nil {
		n.mu.Unlock()
		return api.Errorf(api.CodeUnavailable, "naming node stopped accepting changes after a store failure: %v", err)
	}
	if !n.leading {
		n.mu.Unlock()
		return n.leaderError()
	}
	fx := &Effects{}
	err := fn(n.clock.Now(), fx)
	done := n.submitLocked(fx)
	n.mu.Unlock()
	if done != nil {
		if cerr := <-done; cerr != nil {
			return api.Errorf(api.CodeUnavailable, "commit: %v", cerr)
		}
	}
	return err
}

// applyTimeout bounds how long a proposal waits to enter raft's queue.
const applyTimeout = 10 * time.Second

func (n *Node) submitLocked(fx *Effects) chan error {
	for _, t := range fx.Timers {
		n.armTimerLocked(t)
	}
	cmd := &command{Events: fx.Events, Done: fx.Delivered}
	for _, g := range fx.Persist {
		rec, err := n.reg.Record(g)
		if err != nil {
			// Encoding our own record cannot fail but for a broken invariant.
			panic(fmt.Sprintf("naming: encode group %q: %v", g, err))
		}
		cmd.Groups = append(cmd.Groups, groupPut{Name: g, Record: rec})
	}
	for _, t := range fx.Triggers {
		for _, tg := range t.Targets {
			cmd.Notices = append(cmd.Notices, Notice{Notify: t.Notify, Target: tg})
		}
	}
	if cmd.empty() && len(fx.Decisions) == 0 {
		return nil
	}
	pw := &pendingWrite{cmd: cmd, triggers: fx.Triggers, done: make(chan error, 1)}
	for _, d := range fx.Decisions {
		pw.decisions = append(pw.decisions, decisionWaiters{d: d, waiters: n.waiters[d.Group]})
		delete(n.waiters, d.Group)
	}
	n.propCh <- pw
	return pw.done
}

// maxMerge bounds the changes the proposer merges into one log entry.
const maxMerge = 256

// runProposer proposes the changes in the order they were decided,
// merging those that queued up meanwhile into one log entry: the state
// machine applies a merged entry as it would the changes one by one, and
// each change costs the log, and every voter, one entry less.
func (n *Node) runProposer() {
	defer n.wg.Done()
	defer close(n.commitCh)
	batch := make([]*pendingWrite, 0, maxMerge)
	for pw := range n.propCh {
		batch = append(batch[:0], pw)
	drain:
		for len(batch) < maxMerge {
			select {
			case more, ok := <-n.propCh:
				if !ok {
					break drain
				}
				batch = append(batch, more)
			default:
				break drain
			}
		}
		merged := batch[0].cmd
		if len(batch) > 1 {
			merged = &command{}
			for _, p := range batch {
				merged.Groups = append(merged.Groups, p.cmd.Groups...)
				merged.Events = append(merged.Events, p.cmd.Events...)
				merged.Notices = append(merged.Notices, p.cmd.Notices...)
				merged.Done = append(merged.Done, p.cmd.Done...)
			}
		}
		b, err := api.Encode(merged)
		if err != nil {
			panic(fmt.Sprintf("naming: encode command: %v", err))
		}
		f := n.raft.Apply(b, applyTimeout)
		for _, p := range batch {
			p.future = f
			n.commitCh <- p
		}
	}
}

func (n *Node) armTimerLocked(t Timer) {
	if stop := n.timers[t.Group]; stop != nil {
		stop()
	}
	group, office := t.Group, n.office
	n.timers[group] = n.clock.AfterFunc(t.At.Sub(n.clock.Now()), func() { n.decide(group, office) })
}

// decide probes the candidates of a group's closing conflict window, then
// lets the registry decide with what answered.
func (n *Node) decide(group string, office uint64) {
	n.mu.Lock()
	if n.office != office || !n.leading {
		n.mu.Unlock()
		return
	}
	delete(n.timers, group)
	cands := n.reg.Candidates(group)
	n.mu.Unlock()
	alive := make(map[uint64]bool, len(cands))
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, c := range cands {
		wg.Add(1)
		go func(c api.Registration) {
			defer wg.Done()
			ok := n.probe(c)
			mu.Lock()
			alive[c.ID] = ok
			mu.Unlock()
		}(c)
	}
	wg.Wait()
	n.do(func(now time.Time, fx *Effects) error {
		n.reg.Decide(now, group, func(id uint64) bool { return alive[id] }, fx)
		return nil
	})
}

// probe asks a registrant's API whether it still acts as master.
func (n *Node) probe(r api.Registration) bool { return n.probeAt(r, nil) }

// probeAt is probe that, given an epoch, also wants the agent at it.
func (n *Node) probeAt(r api.Registration, epoch *api.Epoch) bool {
	info, err := n.agentInfo(r.Addr)
	if err != nil {
		return false
	}
	if epoch != nil && info.Epoch != *epoch {
		return false
	}
	return info.ID == r.ID && info.Group == r.Group && info.Role == api.RoleMaster.String()
}

// proveJoin asks the agent serving req's address whether it sent req: it
// must be that member and serve the hash of req's proof.
func (n *Node) proveJoin(req api.JoinRequest) bool {
	want := api.JoinProofOf(req.Proof)
	if want == "" {
		return false
	}
	info, err := n.agentInfo(req.Addr)
	if err != nil {
		n.logger.Debug("join proof not fetched", "group", req.Group, "id", req.ID, "addr", req.Addr, "error", err)
		return false
	}
	return info.ID == req.ID && info.Group == req.Group && subtle.ConstantTimeCompare([]byte(info.JoinProof), []byte(want)) == 1
}

// agentInfo reads the /v1/info of the agent at addr, within the trigger
// timeout.
func (n *Node) agentInfo(addr string) (wire.Info, error) {
	ctx, cancel := context.WithTimeout(n.ctx, n.cfg.TriggerTimeout)
	defer cancel()
	return n.agentInfoCtx(ctx, addr)
}

// agentInfoCtx reads the /v1/info of the agent at addr within ctx, with the
// node's credentials.
func (n *Node) agentInfoCtx(ctx context.Context, addr string) (wire.Info, error) {
	ag, err := aclient.NewAPI(aclient.APIConfig{Addr: addr, Creds: n.creds, HTTP: n.http, MaxReply: 64 << 10})
	if err != nil {
		return wire.Info{}, err
	}
	info, _, err := ag.Info(ctx)
	return info, err
}

// runCommitter waits for each proposal's commit, in the order proposed,
// then answers the registrants that waited on its decisions and starts its
// trigger deliveries.
func (n *Node) runCommitter() {
	defer n.wg.Done()
	// Proposals merged into one raft entry share its future: it is waited
	// for once. A second wait would call Error from a second goroutine
	// while the first may still be in it (after the node closed), and
	// raft's futures are not safe for that.
	var last raft.ApplyFuture
	var lastErr error
	for pw := range n.commitCh {
		err := lastErr
		if pw.future != last {
			err = n.waitCommit(pw.future)
			last, lastErr = pw.future, err
		}
		if err == nil {
			if r, ok := pw.future.Response().(error); ok && r != nil {
				err = r
			}
		}
		pw.done <- err
		if err != nil {
			if !errors.Is(err, raft.ErrRaftShutdown) {
				n.logger.Warn("proposal not committed", "error", err)
			}
			continue
		}
		for _, dw := range pw.decisions {
			for _, w := range dw.waiters {
				w <- dw.d
			}
		}
		for _, t := range pw.triggers {
			n.startTrigger(t)
		}
	}
}

// waitCommit waits for a proposal's outcome, or for the node to close: a
// proposal still in raft's queue when raft shuts down is never answered.
func (n *Node) waitCommit(f raft.ApplyFuture) error {
	done := make(chan error, 1)
	go func() { done <- f.Error() }()
	select {
	case err := <-done:
		return err
	case <-n.ctx.Done():
		select {
		case err := <-done:
			return err
		default:
			return ErrClosed
		}
	}
}

func (n *Node) runSweeper() {
	defer n.wg.Done()
	t := time.NewTicker(n.cfg.SweepInterval)
	defer t.Stop()
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-t.C:
			n.mu.Lock()
			leading := n.leading
			n.mu.Unlock()
			if leading {
				n.do(func(now time.Time, fx *Effects) error {
					n.reg.Sweep(now, fx)
					return nil
				})
			}
		}
	}
}

// Join makes an agent a member of a group.
//
// A join that would replace the live session of the same ID and address
// (an agent restarted within its session's TTL) is taken only once the
// agent serving that address shows the join's proof: an outsider naming a
// running agent's address cannot take its session, and with it its right
// to register and to leave.
func (n *Node) Join(req api.JoinRequest) (resp api.JoinResponse, err error) {
	n.mu.Lock()
	var replaces uint64
	if n.leading && len(req.Proof) <= api.MaxJoinProof {
		replaces = n.reg.JoinReplaces(n.clock.Now(), req)
	}
	n.mu.Unlock()
	var proven uint64 // the session the proof was checked against
	if replaces != 0 && n.proveJoin(req) {
		proven = replaces
	}
	err = n.do(func(now time.Time, fx *Effects) error {
		var e error
		resp, e = n.reg.Join(now, req, proven, fx)
		return e
	})
	if err == nil {
		n.logger.Debug("member joined", "group", req.Group, "id", req.ID, "addr", req.Addr)
	}
	return resp, err
}

// Renew extends a member session. It writes nothing to the log: the leader
// alone keeps expiry times, and a new leader re-arms every session with
// the restart grace.
func (n *Node) Renew(req api.RenewRequest) (api.RenewResponse, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if !n.leading {
		return api.RenewResponse{}, n.leaderError()
	}
	return n.reg.Renew(n.clock.Now(), req)
}

// Leave ends a member session.
func (n *Node) Leave(req api.LeaveRequest) error {
	return n.do(func(now time.Time, fx *Effects) error { return n.reg.Leave(now, req, fx) })
}

// Register registers or renews a master. When the registration competes with
// another, it returns once the conflict window's decision is committed.
func (n *Node) Register(ctx context.Context, req api.RegisterRequest) (resp api.RegisterResponse, err error) {
	probed := false // the candidate answered as master at its epoch
	if req.Manual {
		// A registration by hand names a member that must answer as the
		// master of its group, like any candidate of a decision: nobody
		// makes a back-up, or an address that is no agent, the master.
		n.mu.Lock()
		if !n.leading {
			n.mu.Unlock()
			return resp, n.leaderError()
		}
		err := n.reg.CheckRegister(n.clock.Now(), req)
		n.mu.Unlock()
		if err != nil {
			return resp, err
		}
		if !n.probe(api.Registration{Group: req.Group, ID: req.ID, Addr: req.Addr}) {
			reason := fmt.Sprintf("manual registration: agent %d at %s did not answer as master of %q", req.ID, req.Addr, req.Group)
			n.do(func(now time.Time, fx *Effects) error {
				e := req.Epoch
				n.reg.RecordEvent(now, req.Group, api.Event{Kind: api.EventRegistrationRefused, ID: req.ID, Addr: req.Addr,
					Epoch: &e, Reason: reason, Manual: true}, fx)
				return nil
			})
			return resp, api.Errorf(api.CodeRefused, "%s", reason)
		}
	}
	if !req.Manual {
		// A strict registration that makes its agent master at once (a
		// newer epoch, the group vacant or held by another) is taken only
		// once the candidate answers, at the address it registers, as
		// that master at that epoch. Two calls of an outsider that joined
		// as a member (a join, then a register at a made-up epoch) would
		// otherwise fence the group behind an agent that does not exist.
		n.mu.Lock()
		supersedes := n.leading && n.reg.Supersedes(n.clock.Now(), req)
		n.mu.Unlock()
		probed = supersedes
		if supersedes && !n.probeAt(api.Registration{Group: req.Group, ID: req.ID, Addr: req.Addr}, &req.Epoch) {
			reason := fmt.Sprintf("agent %d at %s did not answer as master of %q at epoch %s", req.ID, req.Addr, req.Group, req.Epoch)
			n.do(func(now time.Time, fx *Effects) error {
				e := req.Epoch
				n.reg.RecordEvent(now, req.Group, api.Event{Kind: api.EventRegistrationRefused, ID: req.ID, Addr: req.Addr,
					Epoch: &e, Reason: reason}, fx)
				return nil
			})
			return resp, api.Errorf(api.CodeRefused, "%s", reason)
		}
	}
	var wait chan Decision
	err = n.do(func(now time.Time, fx *Effects) error {
		if !req.Manual && !probed && n.reg.Supersedes(now, req) {
			// The group changed since the check above (its master left
			// or lapsed meanwhile): the candidate was not probed.
			return api.Errorf(api.CodeUnavailable, "group %q changed while agent %d registered; register again", req.Group, req.ID)
		}
		var pending bool
		var e error
		resp, pending, e = n.reg.Register(now, req, fx)
		if pending {
			wait = make(chan Decision, 1)
			n.waiters[req.Group] = append(n.waiters[req.Group], wait)
		}
		return e
	})
	if err != nil || wait == nil {
		n.logRegistration(req, resp, err)
		return resp, err
	}
	select {
	case d, ok := <-wait:
		if !ok {
			return resp, api.Errorf(api.CodeUnavailable, "naming node left office or is shutting down before the decision")
		}
		resp = ResponseFor(d, req.ID)
		n.logRegistration(req, resp, nil)
		return resp, nil
	case <-ctx.Done():
		return resp, api.Errorf(api.CodeUnavailable, "registration of %d in %q: %v", req.ID, req.Group, ctx.Err())
	}
}

func (n *Node) logRegistration(req api.RegisterRequest, resp api.RegisterResponse, err error) {
	switch {
	case err != nil:
		n.logger.Debug("registration failed", "group", req.Group, "id", req.ID, "error", err)
	case resp.Conflict:
		n.logger.Warn("several masters registered; one retained", "group", req.Group,
			"retained", resp.Master.ID, "removed", resp.Removed, "epoch", resp.Master.Epoch)
	}
}

// Pause puts a group in maintenance or takes it out (Registry.Pause).
func (n *Node) Pause(req api.PauseRequest) (resp api.PauseResponse, err error) {
	err = n.do(func(now time.Time, fx *Effects) error {
		var e error
		resp, e = n.reg.Pause(now, req, fx)
		return e
	})
	return resp, err
}

// Recheck re-checks a group and triggers its members.
func (n *Node) Recheck(req api.RecheckRequest) (resp api.RecheckResponse, err error) {
	err = n.do(func(now time.Time, fx *Effects) error {
		var e error
		resp, e = n.reg.Recheck(now, req, fx)
		return e
	})
	return resp, err
}

// startTrigger delivers a notification to every target at once (act 1240:
// the members are triggered concurrently, not one after another).
func (n *Node) startTrigger(t Trigger) {
	body, err := api.Encode(&t.Notify)
	if err != nil {
		panic(fmt.Sprintf("naming: encode notify: %v", err))
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.ctx.Err() != nil || !n.leading {
		return
	}
	for _, tg := range t.Targets {
		n.startDeliveryLocked(t.Notify, tg, body)
	}
}

func (n *Node) startDeliveryLocked(nt api.Notify, tg Target, body []byte) {
	k := deliveryKey{nt.Group, tg.ID}
	if n.delivery[k] > nt.Seq {
		return // a newer trigger to this target is on its way
	}
	n.delivery[k] = nt.Seq
	n.wg.Add(1)
	n.active.Add(1)
	go n.deliver(nt, tg, body, n.office)
}

// deliver retries one trigger with doubling backoff while the target's
// session lives (a few attempts for a target that is not a member), until a
// newer trigger to the same target replaces it, or this node leaves
// office (the next leader resumes it from the outbox).
func (n *Node) deliver(nt api.Notify, tg Target, body []byte, office uint64) {
	defer n.wg.Done()
	defer n.active.Add(-1)
	key := NoticeKey{Group: nt.Group, ID: tg.ID, Seq: nt.Seq}
	backoff := n.cfg.TriggerBackoffMin
	for attempt := 1; ; attempt++ {
		err := n.post(tg.Addr, body)
		ev := api.Event{Kind: api.EventTriggerSent, Target: tg.ID, Addr: tg.Addr, Attempt: attempt, Reason: nt.Reason}
		if err != nil {
			ev.Kind, ev.Error = api.EventTriggerFailed, err.Error()
		}
		n.mu.Lock()
		stale := n.delivery[deliveryKey{nt.Group, tg.ID}] != nt.Seq
		current := n.office == office && n.leading
		live := current && n.reg.SessionLive(n.clock.Now(), nt.Group, tg.ID, tg.Session)
		wait := backoff/2 + time.Duration(n.rand.Int63n(int64(backoff/2)+1))
		n.mu.Unlock()
		if !current {
			return
		}
		final := DeliveryEnds(err == nil, attempt, stale, tg.Session != 0, live)
		if final || RecordsAttempt(attempt) {
			n.do(func(now time.Time, fx *Effects) error {
				n.reg.RecordEvent(now, nt.Group, ev, fx)
				if final {
					fx.Delivered = append(fx.Delivered, key)
				}
				return nil
			})
		}
		if final {
			return
		}
		select {
		case <-n.ctx.Done():
			return
		case <-time.After(wait):
		}
		backoff = NextDeliveryBackoff(backoff, n.cfg.TriggerBackoffMax)
	}
}

func (n *Node) activeDeliveries() int64 { return n.active.Load() }

// RecordsAttempt reports whether a delivery attempt that did not end the
// delivery goes in the group's history: the first, then attempts 2, 4, 8
// and so on. Every recorded event is a replicated write, and a trigger to
// a live member that does not answer is retried for as long as its
// session lasts; the history still shows that it is retried, and the last
// attempt is always recorded with its outcome.
func RecordsAttempt(attempt int) bool { return attempt > 0 && attempt&(attempt-1) == 0 }

// NotifyPath is where agents receive triggers on their API address.
const NotifyPath = "/rpc/notify"

func (n *Node) post(addr string, body []byte) error {
	ctx, cancel := context.WithTimeout(n.ctx, n.cfg.TriggerTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, n.creds.URL(addr, NotifyPath), bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", ContentTypeMsgpack)
	resp, err := n.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("agent %s answered %s", addr, resp.Status)
	}
	return nil
}
