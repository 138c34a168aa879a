package sim

import (
	"errors"
	"fmt"
	"maps"
	"math/rand"
	"time"

	"github.com/mastership/mastership/agent/core"
	"github.com/mastership/mastership/agent/kv"
	"github.com/mastership/mastership/agent/rlog"
	"github.com/mastership/mastership/naming"
	"github.com/mastership/mastership/naming/api"
	"github.com/mastership/mastership/recover"
)

// trackedSM is the kv store with, beside it, the set of client requests its
// state includes: the simulator's view of "in the final state". It changes
// nothing the core sees.
type trackedSM struct {
	*kv.Store
	applied map[WriteID]bool
	// restoring is the set that goes with the next Restore.
	restoring map[WriteID]bool
}

func (t *trackedSM) Apply(e rlog.Entry) rlog.Result {
	r := t.Store.Apply(e)
	if len(e.Op) > 0 && e.Client != 0 && r.Err == "" {
		t.applied[WriteID{e.Client, e.Seq}] = true
	}
	return r
}

func (t *trackedSM) Restore(b []byte) error {
	if err := t.Store.Restore(b); err != nil {
		return err
	}
	t.applied = maps.Clone(t.restoring)
	if t.applied == nil {
		t.applied = map[WriteID]bool{}
	}
	return nil
}

// simAgent is one agent: the real core, and the simulator's re-implementation
// of the runtime around it (agent and recover packages).
type simAgent struct {
	id          uint64
	prio        int
	addr        string
	node        *core.Node
	sm          *trackedSM
	running     bool
	pausedUntil int64
	seen        map[uint64]api.Epoch // epochs learnt from the gossip view

	// What storage keeps across a kill.
	hs      core.HardState
	snap    []byte
	snapSet map[WriteID]bool
	records []WriteID

	// The naming session and registration loops.
	session     uint64
	sessionNext int64
	regFor      api.Epoch
	regActive   bool
	regOK       bool
	regRefused  bool
	regNext     int64
	regBackoff  int64
	regWaiting  bool
	regStarted  int64

	syncReq uint64
	syncing bool

	// The self-monitor.
	monPending []string
	monNext    int64
	rec        *recovery
	claims     map[[3]uint64]bool // competing claims already raised

	lastEpoch api.Epoch
}

type recovery struct {
	retained api.Registration
	deadline int64
	next     int64
}

func (a *simAgent) live() bool { return a.running && a.pausedUntil == 0 }

func (w *world) newAgent(id uint64, prio int) *simAgent {
	a := &simAgent{id: id, prio: prio, addr: fmt.Sprintf("10.0.0.%d:7000", id), seen: map[uint64]api.Epoch{},
		claims: map[[3]uint64]bool{}}
	w.boot(a, rlog.New())
	return a
}

// boot builds the core from what storage kept, as agent.restore does: the
// state machine from the last installed snapshot, the log after it, the
// hard state. A new process has no session and no loops running.
func (w *world) boot(a *simAgent, log *rlog.Log) {
	a.sm = &trackedSM{Store: kv.NewStore(), applied: map[WriteID]bool{}, restoring: a.snapSet}
	if a.snap != nil {
		if err := a.sm.Restore(a.snap); err != nil {
			panic(fmt.Sprintf("sim: restore snapshot of %d: %v", a.id, err))
		}
	}
	cfg := core.Config{ID: a.id, Group: group, Priority: a.prio, Mode: w.cfg.Mode, HeartbeatTicks: heartbeatTicks,
		ElectionTicks: electionTicks, StaggerTicks: staggerTicks, WriteTicks: writeTicks,
		Rand: rand.New(rand.NewSource(w.rng.Int63()))}
	if w.cfg.Mode == api.ModeStrict {
		cfg.Expect = w.cfg.Agents
	}
	a.node = core.NewNode(cfg, a.sm, log, a.hs)
	a.running, a.pausedUntil = true, 0
	a.session, a.sessionNext = 0, w.now
	a.regActive, a.regOK, a.regRefused, a.regWaiting = false, false, false, false
	a.syncReq, a.syncing = 0, false
	a.monPending, a.rec = nil, nil
	a.monNext = w.nextCheck()
	a.claims = map[[3]uint64]bool{}
}

func (w *world) kill(a *simAgent) {
	a.running = false
	a.pausedUntil = 0
}

func (w *world) restart(a *simAgent) {
	old := a.node.Log()
	log := rlog.NewAt(old.Base())
	ents, err := old.Slice(old.Base().Index+1, old.LastIndex()+1)
	if err != nil {
		panic(fmt.Sprintf("sim: copy log of %d: %v", a.id, err))
	}
	if err := log.Append(ents...); err != nil {
		panic(fmt.Sprintf("sim: copy log of %d: %v", a.id, err))
	}
	w.boot(a, log)
	w.logf("restart %d from storage: log %d..%d, applied %d", a.id, log.Base().Index, log.LastIndex(), a.sm.Index())
}

func (w *world) nextCheck() int64 { return (w.now/monitorTicks + 1) * monitorTicks }

// ready carries out a Ready as agent.handleReady does.
func (w *world) ready(a *simAgent) {
	rd := a.node.Ready()
	if rd.HardState != nil {
		a.hs = *rd.HardState
	}
	for _, m := range rd.Messages {
		w.send(m)
	}
	for _, r := range rd.Results {
		w.result(r)
	}
	if rd.Register != nil {
		a.regFor, a.regActive, a.regOK, a.regRefused, a.regWaiting = *rd.Register, true, false, false, false
		a.regNext, a.regBackoff = w.now, 2
	}
	if rd.Sync != 0 && !a.syncing {
		a.syncReq = rd.Sync
	}
	for _, ev := range rd.Events {
		a.event(ev.Kind.String())
	}
	for _, e := range rd.Divergent {
		a.records = append(a.records, WriteID{e.Client, e.Seq})
	}
	// Invariant 4, for agents.
	if e := a.node.Epoch(); e.Less(a.lastEpoch) {
		w.violate("invariant 4: agent %d went back from epoch %s to %s (role %s)", a.id, a.lastEpoch, e, a.node.Role())
	} else {
		a.lastEpoch = e
	}
}

func (a *simAgent) event(kind string) {
	if len(a.monPending) < 16 {
		a.monPending = append(a.monPending, kind)
	}
}

// runtime runs the agent's loops for one tick: naming session,
// registration, state download, competing claims, self-monitor.
func (w *world) runtime(a *simAgent) {
	w.sessionLoop(a)
	w.registerLoop(a)
	if a.syncReq != 0 {
		m := a.syncReq
		a.syncReq = 0
		w.syncFrom(a, m)
	}
	w.competingClaims(a)
	switch {
	case a.rec != nil:
		w.continueRecovery(a)
	case len(a.monPending) > 0 || w.now >= a.monNext:
		trigger := "timer"
		if len(a.monPending) > 0 {
			trigger = a.monPending[0]
		}
		a.monPending = a.monPending[:0]
		w.check(a, trigger)
		a.monNext = w.nextCheck()
	}
}

var errUnreachable = errors.New("sim: unreachable")

func (w *world) sessionLoop(a *simAgent) {
	if w.now < a.sessionNext {
		return
	}
	if !w.namingReach(a.id) {
		a.sessionNext = w.now + 5
		return
	}
	fx := &naming.Effects{}
	if a.session == 0 {
		resp, err := w.reg.Join(w.at(), api.JoinRequest{Group: group, ID: a.id, Addr: a.addr, Priority: a.prio,
			Mode: string(w.cfg.Mode)}, fx)
		if err != nil {
			a.sessionNext = w.now + 5
		} else {
			a.session = resp.Session
			a.sessionNext = w.now + int64(resp.TTL/3/tick)
		}
	} else {
		resp, err := w.reg.Renew(w.at(), api.RenewRequest{Group: group, ID: a.id, Session: a.session})
		switch {
		case errors.Is(err, api.ErrSessionExpired) || errors.Is(err, api.ErrNotFound):
			a.session, a.sessionNext = 0, w.now
		case err != nil:
			a.sessionNext = w.now + 5
		default:
			a.sessionNext = w.now + int64(resp.TTL/3/tick)
		}
	}
	w.effects(fx)
}

func (a *simAgent) registering() bool {
	return a.node.Role() == api.RoleMaster && a.regFor == a.node.Epoch() && !a.regOK && !a.regRefused
}

// registerLoop is agent.register: register the epoch, renew it while
// master at it; a refusal or a lost conflict raises the event trigger.
func (w *world) registerLoop(a *simAgent) {
	if !a.regActive || a.regWaiting || w.now < a.regNext {
		return
	}
	if a.node.Role() != api.RoleMaster || a.node.Epoch() != a.regFor {
		a.regActive = false
		return
	}
	if !w.namingReach(a.id) || a.session == 0 {
		// A registration is bound to the member's session: none yet.
		w.regRetry(a)
		return
	}
	a.regStarted = w.now
	fx := &naming.Effects{}
	resp, pending, err := w.reg.Register(w.at(), api.RegisterRequest{Group: group, ID: a.id, Addr: a.addr, Epoch: a.regFor,
		Priority: a.prio, Session: a.session, TTL: ttl, Mode: string(w.cfg.Mode)}, fx)
	if pending {
		a.regWaiting = true
		w.waiters = append(w.waiters, a.id)
	} else {
		w.registered(a, resp, err)
	}
	w.effects(fx)
}

func (w *world) regRetry(a *simAgent) {
	a.regNext = w.now + a.regBackoff
	a.regBackoff = min(2*a.regBackoff, int64(ttl/3/tick))
}

func (w *world) registered(a *simAgent, resp api.RegisterResponse, err error) {
	epoch := a.regFor
	switch {
	case err == nil && resp.Accepted:
		valid := ttl*9/10 - time.Duration(w.now-a.regStarted)*tick
		a.regOK, a.regRefused = true, false
		a.node.Registered(epoch, true, a.node.Now()+uint64(valid/tick))
		w.ready(a)
		a.regNext, a.regBackoff = w.now+int64(ttl/3/tick), 2
	case err == nil:
		w.notRegistered(a, epoch, "registration not retained")
	case errors.Is(err, api.ErrRefused) || errors.Is(err, api.ErrMismatch) || errors.Is(err, api.ErrInvalid):
		w.notRegistered(a, epoch, "registration refused: "+err.Error())
	default:
		w.regRetry(a)
	}
}

func (w *world) notRegistered(a *simAgent, epoch api.Epoch, why string) {
	a.regOK, a.regRefused, a.regActive = false, true, false
	a.node.Registered(epoch, false, 0)
	w.ready(a)
	a.event("registration-refused")
}

// competingClaims is gossip's competing claim: a master that can reach
// another master of its group raises its trigger, triggers the other and
// asks the naming node to re-check.
func (w *world) competingClaims(a *simAgent) {
	if a.node.Role() != api.RoleMaster {
		return
	}
	for _, o := range w.agents {
		if o == a || !w.linked(a.id, o.id) || o.node.Role() != api.RoleMaster {
			continue
		}
		k := [3]uint64{o.id, o.node.Epoch().Term, a.node.Epoch().Term}
		if a.claims[k] {
			continue
		}
		a.claims[k] = true
		a.event("competing-claim")
		a.node.Trigger(o.id, "competing claim")
		w.ready(a)
		if w.namingReach(a.id) {
			fx := &naming.Effects{}
			w.reg.Recheck(w.at(), api.RecheckRequest{Group: group, From: a.id, Reason: fmt.Sprintf("competing claim from %d", o.id)}, fx)
			w.effects(fx)
		}
	}
}

// check is recover.Monitor.check: the detector, then its decision.
func (w *world) check(a *simAgent, trigger string) {
	st := a.node.Status()
	in := recover.Input{Self: a.id, Role: st.Role, Master: st.Master, Epoch: st.Epoch, MaxTerm: st.MaxTerm, MaxEpoch: st.MaxEpoch,
		Strict: w.cfg.Mode == api.ModeStrict, Registering: a.registering()}
	if !w.namingReach(a.id) {
		in.NamingErr = errUnreachable
	} else if look, err := w.reg.Lookup(w.at(), api.LookupRequest{Group: group}); err == nil {
		in.Retained = look.Master
	} else if !errors.Is(err, api.ErrNotFound) {
		in.NamingErr = err
	}
	if in.Retained != nil {
		in.RetainedAlive = in.Retained.ID == a.id || w.linked(a.id, in.Retained.ID)
	}
	v := recover.Detect(in)
	switch v.Decision {
	case recover.Reassert:
		a.node.Reassert()
		w.ready(a)
	case recover.Release:
		a.node.EndRecovery(0, a.node.Epoch())
		w.ready(a)
	case recover.Recover:
		w.recoverTo(a, *in.Retained)
	}
}

// recoverTo is recover's figure 10: align, keep divergence, then download
// (retried while the retained master is at an older epoch).
func (w *world) recoverTo(a *simAgent, r api.Registration) {
	a.node.BeginRecovery(r.ID)
	w.ready(a)
	if err := w.keepDivergence(a, r.ID); err != nil {
		w.failRecovery(a)
		return
	}
	a.rec = &recovery{retained: r, deadline: w.now + olderEpochTicks, next: w.now}
	w.continueRecovery(a)
}

func (w *world) continueRecovery(a *simAgent) {
	if w.now < a.rec.next {
		return
	}
	err := w.synchronize(a, a.rec.retained.ID)
	switch {
	case err == nil:
		a.rec = nil
	case errors.Is(err, errOlderEpoch) && w.now < a.rec.deadline:
		a.rec.next = w.now + 2
	default:
		a.rec = nil
		w.failRecovery(a)
	}
	if a.rec == nil {
		a.monNext = w.nextCheck()
	}
}

func (w *world) failRecovery(a *simAgent) {
	a.node.Quarantine()
	w.ready(a)
}

// keepDivergence is agent.KeepDivergence: the entries after the fork that
// this agent applied, or stamped as master, become records.
func (w *world) keepDivergence(a *simAgent, master uint64) error {
	if !w.linked(a.id, master) {
		return errUnreachable
	}
	local, remote := a.node.Log(), w.agent(master).node.Log()
	applied := a.node.Status().Applied
	fork, err := rlog.FindFork(local, remote)
	if errors.Is(err, rlog.ErrForkUnknown) {
		fork, _, _ = local.Span()
		err = nil
	}
	if err != nil {
		return err
	}
	div, err := rlog.Divergent(local, fork)
	if err != nil {
		return err
	}
	for _, e := range div {
		if len(e.Op) == 0 || (e.Index > applied && e.Epoch.ID != a.id) {
			continue
		}
		a.records = append(a.records, WriteID{e.Client, e.Seq})
	}
	return nil
}

var errOlderEpoch = errors.New("sim: master at an older epoch")

// synchronize is agent.Synchronize: download the master's state (snapshot
// at its applied index and the log after it), verify, install.
func (w *world) synchronize(a *simAgent, master uint64) error {
	if !w.linked(a.id, master) {
		return errUnreachable
	}
	m := w.agent(master)
	if m.node.Role() != api.RoleMaster || m.node.Master() != master {
		return fmt.Errorf("%d is %s following %d, not master", master, m.node.Role(), m.node.Master())
	}
	if m.node.Epoch().Less(a.node.Epoch()) {
		return errOlderEpoch
	}
	snap, err := m.sm.Snapshot()
	if err != nil {
		return err
	}
	mst := m.node.Status()
	applied := m.sm.Index()
	base, err := m.node.Log().PosAt(applied)
	if err != nil {
		return err
	}
	ents, err := m.node.Log().Slice(applied+1, m.node.Log().LastIndex()+1)
	if err != nil {
		return err
	}
	if got, err := a.sm.SnapshotDigest(snap); err != nil || got != m.sm.Digest() {
		return fmt.Errorf("snapshot of %d does not verify", master)
	}
	set := maps.Clone(m.sm.applied)
	a.sm.restoring = set
	if err := a.node.InstallState(snap, base, ents, master, mst.Epoch, mst.Commit); err != nil {
		w.ready(a)
		return err
	}
	if got := a.sm.Digest(); got.Index == mst.Digest.Index && got != mst.Digest {
		w.violate("digest after install on %d: %s, master %d has %s", a.id, got, master, mst.Digest)
	}
	a.snap, a.snapSet = snap, set
	a.syncing = false
	w.ready(a)
	return nil
}

// syncFrom is agent.syncFrom: a lagging or divergent back-up's catch-up.
func (w *world) syncFrom(a *simAgent, master uint64) {
	a.syncing = true
	defer func() { a.syncing = false }()
	if err := w.keepDivergence(a, master); err != nil {
		return
	}
	if err := w.synchronize(a, master); err != nil {
		if a.node.Role() == api.RoleSyncing {
			a.node.EndRecovery(master, a.node.Epoch())
			w.ready(a)
		}
	}
}

// namingTick is the naming node's runtime for one tick: the conflict
// window's timer (probe, then Decide), the sweeper, trigger deliveries.
func (w *world) namingTick() {
	if w.timer != nil && w.now >= w.timer.at {
		w.timer = nil
		fx := &naming.Effects{}
		w.reg.Decide(w.at(), group, w.probe, fx)
		w.effects(fx)
	}
	if w.now >= w.sweepAt {
		w.sweepAt = w.now + sweepTicks
		fx := &naming.Effects{}
		w.reg.Sweep(w.at(), fx)
		w.effects(fx)
	}
	var keep []*delivery
	for _, d := range w.deliv {
		if w.now < d.next {
			keep = append(keep, d)
			continue
		}
		d.attempt++
		if w.namingReach(d.target.ID) {
			w.agent(d.target.ID).event("naming-" + d.notify.Reason)
			continue
		}
		stale := w.newest[d.target.ID] != d.notify.Seq
		live := w.reg.SessionLive(w.at(), group, d.target.ID, d.target.Session)
		if d.target.Session == 0 {
			live = d.attempt < 5
		}
		if stale || !live {
			continue
		}
		d.next = w.now + d.backoff
		d.backoff = min(2*d.backoff, triggerMax)
		keep = append(keep, d)
	}
	w.deliv = keep
}

// probe is the naming node's probe of a candidate before a decision: alive
// when it answers as master.
func (w *world) probe(id uint64) bool {
	a := w.agent(id)
	return w.namingReach(id) && a.node.Role() == api.RoleMaster
}

// effects carries out a Registry call's effects as naming.Node does.
func (w *world) effects(fx *naming.Effects) {
	for _, t := range fx.Timers {
		at := int64(t.At.Sub(epoch0) / tick)
		if t.At.Sub(epoch0)%tick != 0 {
			at++
		}
		w.timer = &timer{at: max(at, w.now+1)}
	}
	for _, d := range fx.Decisions {
		waiting := w.waiters
		w.waiters = nil
		for _, id := range waiting {
			a := w.agent(id)
			if !a.regWaiting {
				continue
			}
			a.regWaiting = false
			if !w.namingReach(id) {
				w.regRetry(a)
				continue
			}
			w.registered(a, naming.ResponseFor(d, id), nil)
		}
	}
	for _, t := range fx.Triggers {
		for _, tg := range t.Targets {
			w.newest[tg.ID] = t.Notify.Seq
			w.deliv = append(w.deliv, &delivery{notify: t.Notify, target: tg, next: w.now, backoff: triggerBackoff})
		}
	}
}
