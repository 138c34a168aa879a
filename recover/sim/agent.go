package sim

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand"
	"strings"

	"github.com/mastership/mastership/agent"
	"github.com/mastership/mastership/agent/catchup"
	"github.com/mastership/mastership/agent/core"
	"github.com/mastership/mastership/agent/kv"
	"github.com/mastership/mastership/agent/member"
	"github.com/mastership/mastership/agent/rlog"
	"github.com/mastership/mastership/gossip"
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

// simAgent is one agent: the real core and the runtime's machines around it
// (member session and registration, catch-up download, self-monitor), with
// the simulator carrying out their effects where the runtime does I/O.
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
	snapPos rlog.Pos // where the stored log starts after a scheduled snapshot
	records []WriteID

	// The runtime's machines: the member session and registration at the
	// naming node, the catch-up download, and the self-monitor.
	mem        *member.Machine
	regWaiting *api.Epoch // a registration waiting for the naming node's decision
	catchup    *catchup.Machine
	mon        *recover.Machine

	// steps are the recoveries' and catch-up downloads' steps in flight,
	// each answering at its tick; states the recoveries' downloads, by
	// job, until their install.
	steps  []*pending
	states map[uint64]fetched

	claims map[[3]uint64]bool // competing claims already raised

	// handingOver is set when the agent got MsgTimeoutNow: it counts as a
	// planned handover once it is master.
	handingOver bool

	lastEpoch api.Epoch
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
		Rand:            rand.New(rand.NewSource(w.rng.Int63())),
		SnapshotEntries: w.cfg.SnapshotEntries, SnapshotWindow: w.cfg.SnapshotWindow, RetainEntries: w.cfg.RetainEntries}

	if w.cfg.Mode == api.ModeStrict {
		cfg.Expect = w.cfg.Agents
	}
	a.node = core.NewNode(cfg, a.sm, log, a.hs)
	a.running, a.pausedUntil = true, 0
	a.mem = member.New(agent.MemberConfig(tick, ttl))
	a.regWaiting = nil
	a.catchup = &catchup.Machine{}
	a.mon = recover.NewMachine(monitorRules, uint64(w.now))
	a.steps, a.states = nil, map[uint64]fetched{} // a new process: nothing in flight
	a.claims = map[[3]uint64]bool{}
	a.handingOver = false
}

func (w *world) kill(a *simAgent) {
	a.running = false
	a.pausedUntil = 0
}

func (w *world) restart(a *simAgent) {
	old := a.node.Log()
	base := old.Base()
	if a.snapPos.Index > base.Index && a.snapPos.Index <= old.LastIndex() {
		base = a.snapPos // the stored log starts at the latest snapshot
	}
	log := rlog.NewAt(base)
	// What storage holds: a master's entries that no Ready has handed out
	// yet (core.Node.Ready keeps them until they are sent or committed) die
	// with the process.
	ents, err := old.Slice(base.Index+1, max(base.Index, a.node.Stored())+1)
	if err != nil {
		panic(fmt.Sprintf("sim: copy log of %d: %v", a.id, err))
	}
	if err := log.Append(ents...); err != nil {
		panic(fmt.Sprintf("sim: copy log of %d: %v", a.id, err))
	}
	w.boot(a, log)
	w.logf("restart %d from storage: log %d..%d, applied %d", a.id, log.Base().Index, log.LastIndex(), a.sm.Index())
}

// monitorRules are the self-monitor's, as the runtime derives them from
// its defaults (100 x 3 ms) counted in the simulator's ticks, with a
// recovery bounded by recoveryTimeout (see there).
var monitorRules = recover.Config{Count: monitorTicks, Unit: tick, RecoveryTimeout: recoveryTimeout,
	OlderEpochWait: olderEpochWait}.Rules()

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
		a.mem.Campaigned(uint64(w.now), *rd.Register)
	}
	a.mem.Status(a.node.Role(), a.node.Epoch())
	w.catchupEffects(a, a.catchup.Observe(a.node.Role(), a.node.Master()))
	for _, ev := range rd.Events {
		a.event(ev.Kind.String())
	}
	for _, e := range rd.Divergent {
		a.records = append(a.records, WriteID{e.Client, e.Seq})
	}
	if sn := rd.Snapshot; sn != nil {
		// Stored as the runtime stores it: the snapshot, with the writes
		// applied up to its index, and the stored log cut at it.
		set := maps.Clone(a.sm.applied)
		for i := sn.Pos.Index + 1; i <= a.node.Status().Applied; i++ {
			if e, err := a.node.Log().Entry(i); err == nil && e.Client != 0 {
				delete(set, WriteID{e.Client, e.Seq})
			}
		}
		a.snap, a.snapSet, a.snapPos = sn.Data, set, sn.Pos
		w.rep.Snapshots++
	}
	switch a.node.Role() {
	case api.RoleCandidate:
	case api.RoleMaster:
		if a.handingOver {
			w.rep.Handovers++
		}
		a.handingOver = false
	default:
		a.handingOver = false
	}
	// Invariant 4, for agents.
	if e := a.node.Epoch(); e.Less(a.lastEpoch) {
		w.violate("invariant 4: agent %d went back from epoch %s to %s (role %s)", a.id, a.lastEpoch, e, a.node.Role())
	} else {
		a.lastEpoch = e
	}
}

func (a *simAgent) event(kind string) { a.mon.Event(kind, "") }

// runtime runs the agent's loops for one tick: the member machine
// (session and registration), the answers of the steps in flight,
// competing claims, and the self-monitor's machine, each driven as the
// agent runtime drives it.
func (w *world) runtime(a *simAgent) {
	w.member(a, a.mem.Tick(uint64(w.now)))
	w.answerSteps(a)
	if !a.live() {
		return
	}
	w.competingClaims(a)
	fx := a.mon.Tick(uint64(w.now))
	for _, e := range fx {
		if e.Kind == recover.DoAbandon {
			w.rep.Timeouts++ // the machine's own bound: the recovery took too long
		}
	}
	w.monitor(a, fx)
}

var errUnreachable = errors.New("sim: unreachable")

// member carries out the member machine's effects as agent.runNaming
// does, with the naming node's answers at once (a registration may wait
// for the naming node's decision: effects delivers it).
func (w *world) member(a *simAgent, fx []member.Effect) {
	now := uint64(w.now)
	carryOut(fx, func(e member.Effect) (more []member.Effect, stop bool) {
		switch e.Kind {
		case member.Join:
			if !w.namingReach(a.id) {
				more = a.mem.Joined(now, member.Session{}, errUnreachable)
				break
			}
			nfx := &naming.Effects{}
			// The agent that joins is the one serving its address, and it
			// is reachable from the naming node: its join proof checks.
			req := api.JoinRequest{Group: group, ID: a.id, Addr: a.addr, Priority: a.prio, Mode: string(w.cfg.Mode)}
			resp, err := w.reg.Join(w.at(), req, w.reg.JoinReplaces(w.at(), req), nfx)
			more = a.mem.Joined(now, member.Session{ID: resp.Session, TTL: uint64(resp.TTL / tick), Master: resp.Master}, err)
			w.effects(nfx)
		case member.Renew:
			if !w.namingReach(a.id) {
				more = a.mem.Renewed(now, e.Session, member.Session{}, errUnreachable)
				break
			}
			resp, err := w.reg.Renew(w.at(), api.RenewRequest{Group: group, ID: a.id, Session: e.Session})
			more = a.mem.Renewed(now, e.Session, member.Session{ID: e.Session, TTL: uint64(resp.TTL / tick), Master: resp.Master}, err)
		case member.Register:
			if !w.namingReach(a.id) {
				more = a.mem.RegisterDone(now, e.Epoch, false, nil, errUnreachable)
				break
			}
			nfx := &naming.Effects{}
			resp, pending, err := w.reg.Register(w.at(), api.RegisterRequest{Group: group, ID: a.id, Addr: a.addr, Epoch: e.Epoch,
				Priority: a.prio, Session: e.Session, TTL: ttl, Mode: string(w.cfg.Mode)}, nfx)
			if pending {
				ep := e.Epoch
				a.regWaiting = &ep
				w.waiters = append(w.waiters, a.id)
			} else {
				more = a.mem.RegisterDone(now, e.Epoch, resp.Accepted, &resp.Master, err)
			}
			w.effects(nfx)
		case member.Registered:
			a.node.Registered(e.Epoch, e.Accepted, a.node.Now()+e.ValidTicks)
			w.ready(a)
		case member.Refused:
			a.event("registration-refused")
		case member.SeeMaster:
			if ep, ok := member.NewTerm(e.Master, a.node.Status().MaxTerm); ok {
				a.node.SeeEpoch(ep)
				w.ready(a)
			}
		case member.Fatal:
			w.violate("agent %d: %v", a.id, e.Err)
			w.kill(a)
			return nil, true
		}
		return more, false
	})
}

// carryOut carries out a machine's effects in order, and those their
// answers bring, until none is left or one stops the agent.
func carryOut[E any](fx []E, do func(E) (more []E, stop bool)) {
	for len(fx) > 0 {
		more, stop := do(fx[0])
		if stop {
			return
		}
		fx = append(fx[1:], more...)
	}
}

// competingClaims is gossip's competing claim: the live claim of every
// master a can reach is gossip's to give it, once per pair of epochs (as
// gossip hands over a claim it accepts, or the claims it knows when a
// becomes master); gossip.Compete decides whether it competes, and a
// answers it as the runtime does (agent.AnswerClaim).
func (w *world) competingClaims(a *simAgent) {
	self := gossip.Meta{Group: group, ID: a.id, Role: a.node.Role(), Epoch: a.node.Epoch()}
	for _, o := range w.agents {
		if o == a || !w.linked(a.id, o.id) || o.node.Role() != api.RoleMaster {
			continue
		}
		theirs, ok := gossip.Compete(self, gossip.Claim{Group: group, ID: o.id, Epoch: o.node.Epoch()})
		if !ok {
			continue
		}
		k := [3]uint64{o.id, o.node.Epoch().Term, a.node.Epoch().Term}
		if a.claims[k] {
			continue
		}
		a.claims[k] = true
		ans := agent.AnswerClaim(group, a.id, theirs)
		a.mon.Event(ans.Event, ans.Detail)
		a.node.Trigger(ans.Trigger, ans.TriggerReason)
		w.ready(a)
		if w.namingReach(a.id) {
			fx := &naming.Effects{}
			w.reg.Recheck(w.at(), ans.Recheck, fx)
			w.effects(fx)
		}
	}
}

// monitor carries out the self-monitor machine's effects as
// recover.Monitor does. A recovery's steps (keep divergence, download,
// install) run beside the checks and answer after a seeded delay
// (answerSteps); an abandoned one is not carried out.
func (w *world) monitor(a *simAgent, fx []recover.Effect) {
	now := uint64(w.now)
	carryOut(fx, func(e recover.Effect) (more []recover.Effect, stop bool) {
		switch e.Kind {
		case recover.DoLookup:
			_, more = a.mon.Looked(now, w.lookup(a))
		case recover.DoHandover:
			asked := a.node.RequestHandover()
			w.ready(a)
			if asked {
				w.rep.HandoverRequests++
			}
			if e.Job != 0 {
				more = a.mon.HandedOver(now, e.Job, asked)
			}
		case recover.DoReassert:
			a.node.SeeEpoch(e.Epoch)
			a.node.Reassert()
			w.ready(a)
		case recover.DoRelease:
			a.node.EndRecovery(0, a.node.Epoch())
			w.ready(a)
		case recover.DoAlign:
			// agent.BeginRecovery: the recovery replaces a catch-up.
			w.catchupEffects(a, a.catchup.Abandon())
			a.node.BeginRecovery(e.Target.ID)
			w.ready(a)
			more = a.mon.Aligned(now, e.Job, nil)
		case recover.DoKeepDivergence:
			w.startStep(a, stepDiverge, e.Job, e.Target.ID, nil)
		case recover.DoFetchState:
			w.startStep(a, stepFetch, e.Job, e.Target.ID, nil)
		case recover.DoInstall:
			w.startStep(a, stepInstall, e.Job, e.Target.ID, nil)
		case recover.DoAbandon:
			w.rep.Abandons++
			a.abandon(func(p *pending) bool { return !p.kind.catchup() && p.job == e.Job })
			delete(a.states, e.Job)
		case recover.DoReport:
			delete(a.states, e.Job)
			if e.Err == nil {
				w.rep.Recoveries++
			}
		case recover.DoQuarantine:
			// agent.Quarantine: nothing runs beside it.
			w.catchupEffects(a, a.catchup.Abandon())
			a.node.Quarantine()
			w.ready(a)
		case recover.DoTerminate:
			w.kill(a)
			return nil, true
		}
		return more, false
	})
}

// lookup builds the detector's input as recover.Monitor does: the agent's
// status, the naming node's retained master, and gossip's view of it.
func (w *world) lookup(a *simAgent) recover.Input {
	in := recover.NewInput(a.id, a.node.Status(), w.cfg.Mode == api.ModeStrict, a.mem.Registering())
	var retained *api.Registration
	err := error(errUnreachable)
	if w.namingReach(a.id) {
		var look api.LookupResponse
		look, err = w.reg.Lookup(w.at(), api.LookupRequest{Group: group})
		retained = look.Master
	}
	in.Retain(retained, err, func(id uint64) bool { return w.linked(a.id, id) }, func(id uint64) string {
		if r := w.agent(id); r != nil {
			return r.addr
		}
		return ""
	})
	return in
}

// keepDivergence is agent.KeepDivergence: agent.DivergentWrites decides,
// against the master's log, which writes become records.
func (w *world) keepDivergence(a *simAgent, master uint64) (fork uint64, records int, err error) {
	if !w.linked(a.id, master) {
		return 0, 0, errUnreachable
	}
	fork, kept, uncompared, err := agent.DivergentWrites(a.node.Log(), w.agent(master).node.Log(), a.node.Status().Applied, a.id)
	if err != nil {
		return 0, 0, err
	}
	for _, e := range kept {
		a.records = append(a.records, WriteID{e.Client, e.Seq})
	}
	if uncompared > 0 {
		w.rep.Uncompared++
	}
	if agent.KeepsState(w.cfg.Mode, uncompared) {
		// As the runtime does: the state, which holds the writes the
		// compacted log no longer names, becomes a record of its own.
		for id := range a.sm.applied {
			a.records = append(a.records, id)
		}
		return fork, len(kept) + 1, nil
	}
	return fork, len(kept), nil
}

// fetched is a downloaded and verified state, with the writes it holds
// (the simulator's bookkeeping of what a state contains).
type fetched struct {
	agent.State
	set map[WriteID]bool
}

// download is agent.DownloadState: the master's state as its LocalState
// serves it (agent.CaptureState), verified with agent.CheckDownload.
func (w *world) download(a *simAgent, master uint64) (fetched, error) {
	if !w.linked(a.id, master) {
		return fetched{}, errUnreachable
	}
	m := w.agent(master)
	st, err := agent.CaptureState(m.node, m.sm)
	if err != nil {
		return fetched{}, err
	}
	if err := agent.CheckDownload(a.sm, st, master, a.node.Epoch()); err != nil {
		return fetched{}, err
	}
	return fetched{State: st, set: maps.Clone(m.sm.applied)}, nil
}

// install is agent.Install: the state download verified, installed (the
// core refuses it once the agent stopped waiting for it) and checked with
// agent.CheckInstalled. It returns the installed digest.
func (w *world) install(a *simAgent, master uint64, f fetched) (rlog.Digest, error) {
	st := f.State
	a.sm.restoring = f.set
	if err := a.node.InstallState(st.Snapshot, st.Base, st.Entries, master, st.Epoch, st.Commit); err != nil {
		w.ready(a)
		return rlog.Digest{}, err
	}
	got := a.sm.Digest()
	if err := agent.CheckInstalled(got, st.Digest); err != nil {
		w.violate("install on %d from %d: %v", a.id, master, err)
	}
	a.snap, a.snapSet, a.snapPos = st.Snapshot, f.set, rlog.Pos{}
	w.ready(a)
	return got, nil
}

// synchronize is agent.Synchronize: download, then install.
func (w *world) synchronize(a *simAgent, master uint64) (rlog.Digest, error) {
	f, err := w.download(a, master)
	if err != nil {
		return rlog.Digest{}, err
	}
	return w.install(a, master, f)
}

// catchupEffects carries out the catch-up machine's effects as the agent
// runtime does (agent.syncEffects): a download's steps run one after the
// other, each answering after a seeded delay (answerSteps); a cancelled
// one is not carried out.
func (w *world) catchupEffects(a *simAgent, fx []catchup.Effect) {
	for _, e := range fx {
		switch e.Kind {
		case catchup.Start:
			w.startStep(a, syncDiverge, e.Job, e.Master, nil)
		case catchup.Cancel:
			w.rep.SyncCancels++
			a.abandon(func(p *pending) bool { return p.kind.catchup() && p.job == e.Job })
		case catchup.EndSync:
			a.node.EndRecovery(e.Master, a.node.Epoch())
			w.ready(a)
		}
	}
}

// syncDone answers the catch-up machine with a download's outcome.
func (w *world) syncDone(a *simAgent, job uint64, err error) {
	w.catchupEffects(a, a.catchup.Done(job, err, a.node.Role(), a.node.Master()))
}

// stepKind is a step of a recovery or of a catch-up download.
type stepKind uint8

const (
	stepDiverge stepKind = iota + 1 // a recovery's DoKeepDivergence
	stepFetch                       // a recovery's DoFetchState
	stepInstall                     // a recovery's DoInstall
	syncDiverge                     // a catch-up's fork search and records
	syncFetch                       // a catch-up's download and verification
	syncInstall                     // a catch-up's install
)

var stepNames = [...]string{"", "keep-divergence", "fetch-state", "install", "sync keep-divergence", "sync fetch-state", "sync install"}

func (k stepKind) String() string { return stepNames[k] }

// catchup tells a catch-up download's step from a recovery's.
func (k stepKind) catchup() bool { return k >= syncDiverge }

// pending is a step in flight: it completes, and answers its machine, at
// tick at. An abandoned step (its recovery abandoned, its download
// cancelled) is not carried out, as the runtime cancels its context; its
// answer still comes back, as the runtime's may, and the machine must drop
// it.
type pending struct {
	at        int64
	kind      stepKind
	job       uint64 // the recovery's (recover.Machine) or the download's (catchup.Machine)
	target    uint64 // the master the step works with
	state     *fetched
	abandoned bool
}

// Step timing, in ticks. A step of a recovery or of a catch-up download
// takes 1 to maxStepTicks ticks (a fork search's probes, a state transfer,
// an install on the agent's loop); one in stallOdds stalls (a peer whose
// API accepts and answers late) past the recovery's bound, by up to
// stallTicks more.
const (
	maxStepTicks = 8
	stallOdds    = 40
	stallTicks   = 40
)

// stepDelay draws how long a step takes from the schedule's random source.
func (w *world) stepDelay() int64 {
	if w.rng.Intn(stallOdds) == 0 {
		return int64(monitorRules.RecoveryTicks) + 1 + int64(w.rng.Intn(stallTicks))
	}
	return 1 + int64(w.rng.Intn(maxStepTicks))
}

// startStep starts a step of a's; it answers after a seeded delay.
func (w *world) startStep(a *simAgent, kind stepKind, job, target uint64, st *fetched) {
	a.steps = append(a.steps, &pending{at: w.now + w.stepDelay(), kind: kind, job: job, target: target, state: st})
}

// abandon marks the steps in flight that match abandoned.
func (a *simAgent) abandon(match func(*pending) bool) {
	for _, p := range a.steps {
		if match(p) {
			p.abandoned = true
		}
	}
}

// answerSteps completes a's steps that are due, in the order they are
// due (then started), and hands their answers to their machines, as the
// runtime's step goroutines hand theirs to the monitor's loop and the
// agent's.
func (w *world) answerSteps(a *simAgent) {
	for a.live() {
		next := -1
		for i, p := range a.steps {
			if p.at <= w.now && (next < 0 || p.at < a.steps[next].at) {
				next = i
			}
		}
		if next < 0 {
			return
		}
		p := a.steps[next]
		a.steps = append(a.steps[:next:next], a.steps[next+1:]...)
		w.answer(a, p)
	}
}

// errAbandoned is the answer of an abandoned step: the runtime's cancelled
// context.
var errAbandoned = context.Canceled

// answer completes step p of a.
func (w *world) answer(a *simAgent, p *pending) {
	now := uint64(w.now)
	if p.abandoned {
		w.rep.LateAnswers++
		var acted string
		switch p.kind {
		case stepDiverge:
			acted = describe(a.mon.Diverged(now, p.job, 0, 0, errAbandoned))
		case stepFetch:
			acted = describe(a.mon.Fetched(now, p.job, errAbandoned))
		case stepInstall:
			acted = describe(a.mon.Installed(now, p.job, rlog.Digest{}, errAbandoned))
		default:
			acted = catchup.Describe(a.catchup.Done(p.job, errAbandoned, a.node.Role(), a.node.Master()))
		}
		if acted != "" {
			w.violate("agent %d acted on the late answer of its abandoned %s (job %d): %s", a.id, p.kind, p.job, acted)
		}
		return
	}
	switch p.kind {
	case stepDiverge:
		fork, n, err := w.keepDivergence(a, p.target)
		w.monitor(a, a.mon.Diverged(now, p.job, fork, n, err))
	case stepFetch:
		f, err := w.download(a, p.target)
		if err == nil {
			a.states[p.job] = f
		}
		w.monitor(a, a.mon.Fetched(now, p.job, err))
	case stepInstall:
		f, ok := a.states[p.job]
		delete(a.states, p.job)
		if !ok {
			w.violate("agent %d asked to install with no state downloaded (job %d)", a.id, p.job)
			return
		}
		d, err := w.install(a, p.target, f)
		w.monitor(a, a.mon.Installed(now, p.job, d, err))
	case syncDiverge:
		if _, _, err := w.keepDivergence(a, p.target); err != nil {
			w.syncDone(a, p.job, err)
			return
		}
		w.startStep(a, syncFetch, p.job, p.target, nil)
	case syncFetch:
		f, err := w.download(a, p.target)
		if err != nil {
			w.syncDone(a, p.job, err)
			return
		}
		w.startStep(a, syncInstall, p.job, p.target, &f)
	case syncInstall:
		_, err := w.install(a, p.target, *p.state)
		w.syncDone(a, p.job, err)
	}
}

func describe(fx []recover.Effect) string {
	s := make([]string, len(fx))
	for i, e := range fx {
		s[i] = e.String()
	}
	return strings.Join(s, "; ")
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
		delivered := w.namingReach(d.target.ID)
		if delivered {
			w.agent(d.target.ID).event("naming-" + d.notify.Reason)
		}
		stale := w.newest[d.target.ID] != d.notify.Seq
		live := w.reg.SessionLive(w.at(), group, d.target.ID, d.target.Session)
		if naming.DeliveryEnds(delivered, d.attempt, stale, d.target.Session != 0, live) {
			continue
		}
		d.next = w.now + d.backoff
		d.backoff = naming.NextDeliveryBackoff(d.backoff, triggerMax)
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
			if a.regWaiting == nil {
				continue
			}
			e := *a.regWaiting
			a.regWaiting = nil
			if !w.namingReach(id) {
				w.member(a, a.mem.RegisterDone(uint64(w.now), e, false, nil, errUnreachable))
				continue
			}
			resp := naming.ResponseFor(d, id)
			w.member(a, a.mem.RegisterDone(uint64(w.now), e, resp.Accepted, &resp.Master, nil))
		}
	}
	for _, t := range fx.Triggers {
		for _, tg := range t.Targets {
			w.newest[tg.ID] = t.Notify.Seq
			w.deliv = append(w.deliv, &delivery{notify: t.Notify, target: tg, next: w.now, backoff: triggerBackoff})
		}
	}
}
