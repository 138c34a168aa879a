package naming

import (
	"bytes"
	"context"
	cryptorand "crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	aclient "github.com/mastership/mastership/agent/client"
	"github.com/mastership/mastership/config"
	"github.com/mastership/mastership/naming/api"
	"github.com/mastership/mastership/naming/auth"
)

// Node is the naming node's runtime: it owns the Registry behind one mutex,
// turns its Effects into durable writes, timers and trigger deliveries, and
// serves the RPC and HTTP API on one listener.
//
// Goroutines (each stops on Close):
//   - the committer: owns the store's write path; it batches queued writes
//     into one transaction, then runs their post-commit actions in order
//     (answers to waiting registrants, trigger deliveries);
//   - the sweeper: calls Registry.Sweep every SweepInterval;
//   - one conflict-window timer per group with an open window (time.AfterFunc);
//   - one delivery goroutine per trigger target, alive while it retries;
//   - the HTTP server's goroutines, which call into the Registry under mu.
type Node struct {
	cfg    config.Naming
	logger hclog.Logger
	clock  Clock

	mu       sync.Mutex
	reg      *Registry
	waiters  map[string][]chan Decision
	timers   map[string]func() bool
	delivery map[deliveryKey]uint64 // newest trigger seq per target
	failed   error                  // set when a commit failed: the node stops accepting changes
	active   atomic.Int64           // delivery goroutines running

	store    *Store
	commitCh chan *pendingWrite
	http     *http.Client
	server   auth.Server // the ACL and TLS the node requires of callers
	creds    auth.Creds  // what the node presents to agents
	rand     *rand.Rand  // jitter of trigger retries; guarded by mu

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
	w         *write
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

// ErrClosed is returned by calls on a closed node.
var ErrClosed = errors.New("naming: node closed")

// New opens the store in cfg.DataDir, loads what it holds (re-arming sessions
// with cfg.RestartGrace) and starts the committer and sweeper. Call Serve or
// ListenAndServe to answer requests, and Close to stop.
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
	store, err := OpenStore(cfg.DataDir, cfg.MaxEventsPerGroup)
	if err != nil {
		return nil, err
	}
	n := &Node{
		cfg:    cfg,
		logger: logger,
		clock:  clock,
		reg: NewRegistry(RegistryConfig{
			DefaultPolicy:   policy,
			SessionTTL:      cfg.SessionTTL,
			RegistrationTTL: cfg.RegistrationTTL,
			MaxTTL:          cfg.MaxTTL,
			ConflictWindow:  cfg.ConflictWindow,
			MaxGroups:       cfg.MaxGroups,
		}, rand.New(cryptoSource{})),
		waiters:  make(map[string][]chan Decision),
		timers:   make(map[string]func() bool),
		delivery: make(map[deliveryKey]uint64),
		store:    store,
		commitCh: make(chan *pendingWrite, 4096),
		rand:     rnd,
		server:   server,
		creds:    creds,
		http: &http.Client{Transport: creds.Transport(&http.Transport{
			MaxIdleConnsPerHost: 4,
			IdleConnTimeout:     30 * time.Second,
			DialContext:         dial,
		})},
	}
	now := n.clock.Now()
	loaded := 0
	err = store.loadGroups(func(rec []byte) error {
		loaded++
		return n.reg.Restore(now, cfg.RestartGrace, rec)
	})
	if err != nil {
		store.Close()
		return nil, fmt.Errorf("naming: load store: %w", err)
	}
	logger.Info("store loaded", "dir", cfg.DataDir, "groups", loaded, "grace", cfg.RestartGrace)
	if server.ACL.Open() {
		logger.Warn("no -acl: the node is open; any caller that reaches it can join groups and register their members")
	}
	if server.TLS == nil {
		logger.Warn("no TLS: calls to and from the node travel in clear text (set -tls-ca, -tls-cert, -tls-key)")
	}
	n.ctx, n.cancel = context.WithCancel(context.Background())
	n.wg.Add(2)
	go n.runCommitter()
	go n.runSweeper()
	return n, nil
}

// Close stops serving, stops every goroutine and closes the store. Writes
// already queued are committed first.
func (n *Node) Close() error {
	n.mu.Lock()
	if n.ctx.Err() != nil {
		n.mu.Unlock()
		return nil
	}
	n.cancel()
	for _, stop := range n.timers {
		stop()
	}
	for g, ws := range n.waiters {
		for _, w := range ws {
			close(w)
		}
		delete(n.waiters, g)
	}
	n.mu.Unlock()
	if n.srv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		n.srv.Shutdown(ctx)
		cancel()
	}
	n.mu.Lock()
	close(n.commitCh)
	n.mu.Unlock()
	n.wg.Wait()
	return n.store.Close()
}

// do runs fn on the registry under the lock, queues what it changed for the
// committer, and waits until that is durable. It is the one path of every
// change.
func (n *Node) do(fn func(now time.Time, fx *Effects) error) error {
	n.mu.Lock()
	if n.ctx.Err() != nil {
		n.mu.Unlock()
		return api.Errorf(api.CodeUnavailable, "naming node is shutting down")
	}
	if n.failed != nil {
		n.mu.Unlock()
		return api.Errorf(api.CodeUnavailable, "naming node stopped accepting changes after a store failure: %v", n.failed)
	}
	fx := &Effects{}
	err := fn(n.clock.Now(), fx)
	done := n.submitLocked(fx)
	n.mu.Unlock()
	if done != nil {
		if cerr := <-done; cerr != nil {
			return api.Errorf(api.CodeUnavailable, "store: %v", cerr)
		}
	}
	return err
}

func (n *Node) submitLocked(fx *Effects) chan error {
	for _, t := range fx.Timers {
		n.armTimerLocked(t)
	}
	if len(fx.Persist) == 0 && len(fx.Events) == 0 && len(fx.Decisions) == 0 && len(fx.Triggers) == 0 {
		return nil
	}
	pw := &pendingWrite{w: &write{groups: make(map[string][]byte, len(fx.Persist)), events: fx.Events},
		triggers: fx.Triggers, done: make(chan error, 1)}
	for _, g := range fx.Persist {
		rec, err := n.reg.Record(g)
		if err != nil {
			// Encoding our own record cannot fail but for a broken invariant.
			panic(fmt.Sprintf("naming: encode group %q: %v", g, err))
		}
		pw.w.groups[g] = rec
	}
	for _, d := range fx.Decisions {
		pw.decisions = append(pw.decisions, decisionWaiters{d: d, waiters: n.waiters[d.Group]})
		delete(n.waiters, d.Group)
	}
	n.commitCh <- pw
	return pw.done
}

func (n *Node) armTimerLocked(t Timer) {
	if stop := n.timers[t.Group]; stop != nil {
		stop()
	}
	group := t.Group
	n.timers[group] = n.clock.AfterFunc(t.At.Sub(n.clock.Now()), func() { n.decide(group) })
}

// decide probes the candidates of a group's closing conflict window, then
// lets the registry decide with what answered.
func (n *Node) decide(group string) {
	n.mu.Lock()
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
func (n *Node) probe(r api.Registration) bool {
	ctx, cancel := context.WithTimeout(n.ctx, n.cfg.TriggerTimeout)
	defer cancel()
	ag, err := aclient.NewAPI(aclient.APIConfig{Addr: r.Addr, Creds: n.creds, HTTP: n.http, MaxReply: 64 << 10})
	if err != nil {
		return false
	}
	info, _, err := ag.Info(ctx)
	if err != nil {
		return false
	}
	return info.ID == r.ID && info.Group == r.Group && info.Role == api.RoleMaster.String()
}

func (n *Node) runCommitter() {
	defer n.wg.Done()
	const maxBatch = 512
	batch := make([]*pendingWrite, 0, maxBatch)
	for pw := range n.commitCh {
		batch = append(batch[:0], pw)
	drain:
		for len(batch) < maxBatch {
			select {
			case more, ok := <-n.commitCh:
				if !ok {
					break drain
				}
				batch = append(batch, more)
			default:
				break drain
			}
		}
		ws := make([]*write, len(batch))
		for i, p := range batch {
			ws[i] = p.w
		}
		err := n.store.commit(ws)
		if err != nil {
			n.logger.Error("store commit failed; refusing further changes", "error", err)
			n.mu.Lock()
			n.failed = err
			n.mu.Unlock()
		}
		for _, p := range batch {
			p.done <- err
			if err != nil {
				continue
			}
			for _, dw := range p.decisions {
				for _, w := range dw.waiters {
					w <- dw.d
				}
			}
			for _, t := range p.triggers {
				n.startTrigger(t)
			}
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
			n.do(func(now time.Time, fx *Effects) error {
				n.reg.Sweep(now, fx)
				return nil
			})
		}
	}
}

// Join makes an agent a member of a group.
func (n *Node) Join(req api.JoinRequest) (resp api.JoinResponse, err error) {
	err = n.do(func(now time.Time, fx *Effects) error {
		var e error
		resp, e = n.reg.Join(now, req, fx)
		return e
	})
	if err == nil {
		n.logger.Debug("member joined", "group", req.Group, "id", req.ID, "addr", req.Addr)
	}
	return resp, err
}

// Renew extends a member session; it writes nothing to disk.
func (n *Node) Renew(req api.RenewRequest) (api.RenewResponse, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.reg.Renew(n.clock.Now(), req)
}

// Leave ends a member session.
func (n *Node) Leave(req api.LeaveRequest) error {
	return n.do(func(now time.Time, fx *Effects) error { return n.reg.Leave(now, req, fx) })
}

// Register registers or renews a master. When the registration competes with
// another, it returns once the conflict window's decision is durable.
func (n *Node) Register(ctx context.Context, req api.RegisterRequest) (resp api.RegisterResponse, err error) {
	if req.Manual {
		// A registration by hand names a member that must answer as the
		// master of its group, like any candidate of a decision: nobody
		// makes a back-up, or an address that is no agent, the master.
		n.mu.Lock()
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
	var wait chan Decision
	err = n.do(func(now time.Time, fx *Effects) error {
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
			return resp, api.Errorf(api.CodeUnavailable, "naming node is shutting down")
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

// Lookup returns a group's retained master.
func (n *Node) Lookup(req api.LookupRequest) (api.LookupResponse, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.reg.Lookup(n.clock.Now(), req)
}

// Status describes one group or all.
func (n *Node) Status(req api.StatusRequest) (api.StatusResponse, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.reg.Status(n.clock.Now(), req)
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

// Events pages through a group's history.
func (n *Node) Events(req api.EventsRequest) (api.EventsResponse, error) {
	if err := api.ValidateGroup(req.Group); err != nil {
		return api.EventsResponse{}, api.Errorf(api.CodeInvalid, "%v", err)
	}
	switch {
	case req.Limit < 0:
		return api.EventsResponse{}, api.Errorf(api.CodeInvalid, "limit %d is negative", req.Limit)
	case req.Limit == 0:
		req.Limit = 100
	case req.Limit > 1000:
		req.Limit = 1000
	}
	n.mu.Lock()
	known := n.reg.HasGroup(req.Group)
	n.mu.Unlock()
	if !known {
		return api.EventsResponse{}, api.Errorf(api.CodeNotFound, "group %q is not known", req.Group)
	}
	return n.store.Events(req.Group, req.After, req.Limit)
}

// Health reports the node's state.
func (n *Node) Health() api.HealthResponse {
	n.mu.Lock()
	defer n.mu.Unlock()
	st := "ok"
	if n.failed != nil {
		st = "failing: " + n.failed.Error()
	}
	return api.HealthResponse{Status: st, Groups: n.reg.Groups()}
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
	if n.ctx.Err() != nil {
		return
	}
	for _, tg := range t.Targets {
		k := deliveryKey{t.Notify.Group, tg.ID}
		n.delivery[k] = t.Notify.Seq
		n.wg.Add(1)
		n.active.Add(1)
		go n.deliver(t.Notify, tg, body)
	}
}

// deliver retries one trigger with doubling backoff while the target's
// session lives (a few attempts for a target that is not a member), until a
// newer trigger to the same target replaces it.
func (n *Node) deliver(nt api.Notify, tg Target, body []byte) {
	defer n.wg.Done()
	defer n.active.Add(-1)
	const nonMemberAttempts = 5
	backoff := n.cfg.TriggerBackoffMin
	for attempt := 1; ; attempt++ {
		err := n.post(tg.Addr, body)
		ev := api.Event{Kind: api.EventTriggerSent, Target: tg.ID, Addr: tg.Addr, Attempt: attempt, Reason: nt.Reason}
		if err != nil {
			ev.Kind, ev.Error = api.EventTriggerFailed, err.Error()
		}
		n.do(func(now time.Time, fx *Effects) error {
			n.reg.RecordEvent(now, nt.Group, ev, fx)
			return nil
		})
		if err == nil {
			return
		}
		n.mu.Lock()
		stale := n.delivery[deliveryKey{nt.Group, tg.ID}] != nt.Seq
		live := n.reg.SessionLive(n.clock.Now(), nt.Group, tg.ID, tg.Session)
		if tg.Session == 0 {
			live = attempt < nonMemberAttempts
		}
		wait := backoff/2 + time.Duration(n.rand.Int63n(int64(backoff/2)+1))
		n.mu.Unlock()
		if stale || !live {
			return
		}
		select {
		case <-n.ctx.Done():
			return
		case <-time.After(wait):
		}
		backoff = min(2*backoff, n.cfg.TriggerBackoffMax)
	}
}

func (n *Node) activeDeliveries() int64 { return n.active.Load() }

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
