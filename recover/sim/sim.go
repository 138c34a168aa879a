package sim

import (
	"errors"
	"fmt"
	"math/rand"
	"slices"
	"strings"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/mastership/mastership/agent/core"
	"github.com/mastership/mastership/naming"
	"github.com/mastership/mastership/naming/api"
	"github.com/mastership/mastership/recover"
)

// ErrViolation is returned by Run when an invariant did not hold.
var ErrViolation = errors.New("sim: invariant violated")

// Config shapes one simulated run. Zero fields take the defaults.
type Config struct {
	// Seed draws everything: the schedule, delays, drops, clients, jitter.
	Seed int64
	// Mode is api.ModeStrict or api.ModeAvailable (default).
	Mode api.Mode
	// Agents in the group; default 5.
	Agents int
	// Rounds of faults, each ended by a heal and a check; default 3.
	Rounds int
	// Clients issuing operations; default 3.
	Clients int
	// Keys the clients use; default 3.
	Keys int
	// SettleTicks bounds the ticks after a heal within which the group must
	// have converged (invariant 1); default 1000 (10 s of virtual time).
	SettleTicks int
	// VizDir receives porcupine's visualisation of a non-linearizable
	// history; default the system's temporary directory.
	VizDir string
	// PorcupineTimeout bounds the linearizability check; default 10s.
	PorcupineTimeout time.Duration
	// SnapshotEntries makes every agent snapshot on its own schedule,
	// every that many applied entries, its log keeping SnapshotWindow
	// entries behind (default 4); 0 takes none (the snapshots of a
	// download only).
	SnapshotEntries int
	SnapshotWindow  int
	// RetainEntries bounds how long an available agent's snapshot waits
	// for members that may lack entries (core.Config.RetainEntries): small,
	// both sides of a long split compact past the fork.
	RetainEntries int
}

func (c *Config) defaults() {
	if c.Mode == "" {
		c.Mode = api.ModeAvailable
	}
	if c.Agents <= 0 {
		c.Agents = 5
	}
	if c.Rounds <= 0 {
		c.Rounds = 3
	}
	if c.Clients <= 0 {
		c.Clients = 3
	}
	if c.Keys <= 0 {
		c.Keys = 3
	}
	if c.SettleTicks <= 0 {
		c.SettleTicks = 1000
	}
	if c.SnapshotEntries > 0 && c.SnapshotWindow <= 0 {
		c.SnapshotWindow = 4
	}
	if c.PorcupineTimeout <= 0 {
		c.PorcupineTimeout = 10 * time.Second
	}
}

// Report is the outcome of one run. Everything in it but HTMLPath is a
// function of the Config: the same seed gives the same report.
type Report struct {
	Seed int64
	Mode api.Mode
	// Schedule is the faults as they happened, one line each, with the
	// virtual tick.
	Schedule []string
	// Violation is empty when every invariant held.
	Violation string
	// HTMLPath is porcupine's visualisation of a non-linearizable history.
	HTMLPath string
	// Ticks run, messages sent, operations recorded, writes acknowledged.
	Ticks, Messages, Ops, Acked int
	// HandoverRequests counts the planned handovers asked (figure 10, act
	// 1080, and the first-ranked back-up's request after a consistent
	// check); Handovers those completed: the back-up that asked became
	// master. Recoveries counts the recoveries that ended in a back-up.
	HandoverRequests, Handovers, Recoveries int
	// Abandons counts the recoveries the self-monitor's machine abandoned
	// (a newer decision of the naming node, or its own bound), Timeouts
	// those past its bound; SyncCancels the catch-up downloads the
	// catch-up machine cancelled (a newer master, a recovery); LateAnswers
	// the answers of abandoned steps that came back and were dropped.
	Abandons, Timeouts, SyncCancels, LateAnswers int
	// Snapshots counts the snapshots agents took on their own schedule
	// (Config.SnapshotEntries); Uncompared the recoveries whose log was
	// compacted past the fork (agent.DivergentWrites).
	Snapshots, Uncompared int
	// Converged lists, per heal, the ticks the group took to converge.
	Converged []int
	// Final describes every agent at the end.
	Final string
}

func (r Report) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "seed=%d mode=%s ticks=%d messages=%d ops=%d acked=%d recoveries=%d handovers=%d/%d abandons=%d (timeouts %d) sync-cancels=%d late-answers=%d converged=%v\n",
		r.Seed, r.Mode, r.Ticks, r.Messages, r.Ops, r.Acked, r.Recoveries, r.Handovers, r.HandoverRequests,
		r.Abandons, r.Timeouts, r.SyncCancels, r.LateAnswers, r.Converged)
	for _, l := range r.Schedule {
		b.WriteString("  " + l + "\n")
	}
	if r.Final != "" {
		b.WriteString("final:\n" + r.Final)
	}
	if r.Violation != "" {
		b.WriteString("VIOLATION: " + r.Violation + "\n")
	}
	if r.HTMLPath != "" {
		b.WriteString("porcupine visualisation: " + r.HTMLPath + "\n")
	}
	return b.String()
}

// Timing of the simulation, in ticks of 10 ms (the "local" profile).
const (
	tick           = 10 * time.Millisecond
	heartbeatTicks = 5
	electionTicks  = 30
	staggerTicks   = 10
	writeTicks     = 50
	monitorTicks   = 30 // recover's default 100 x 3 ms
	sweepTicks     = 10
	ttl            = 2 * time.Second // sessions and registrations
	conflictWindow = 20 * time.Millisecond
	triggerBackoff = 5
	triggerMax     = 200
	clientTimeout  = 150
	group          = "g"
	// recoveryTimeout bounds a recovery (recover.Config.RecoveryTimeout;
	// the runtime's default is 30 s): short enough that a recovery whose
	// step stalls times out and is retried within a settle. olderEpochWait
	// stays below it, as the runtime's defaults (3 s of 30 s) do.
	recoveryTimeout = 2 * time.Second
	olderEpochWait  = time.Second
)

var epoch0 = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

type envelope struct {
	m   core.Message
	at  int64
	seq uint64
}

type timer struct {
	at int64
}

type delivery struct {
	notify  api.Notify
	target  naming.Target
	attempt int
	next    int64
	backoff int64
}

// world is the whole group: agents, the naming node, the network, clients.
type world struct {
	cfg  Config
	rng  *rand.Rand
	now  int64
	rep  *Report
	viol []string

	agents []*simAgent // index id-1
	cut    map[[2]uint64]bool
	nCut   map[uint64]bool // agents cut from the naming node
	dropP  float64
	delay  int

	queue   []envelope
	msgSeq  uint64
	reg     *naming.Registry
	timer   *timer
	sweepAt int64
	deliv   []*delivery
	newest  map[uint64]uint64 // newest trigger seq per target
	waiters []uint64          // agents whose registration waits for a decision

	clients   []*client
	clientsOn bool
	nextRef   uint64
	refs      map[uint64]*client
	clock     int64 // porcupine's logical clock
	history   []porcupine.Operation
	acked     []Write
	written   map[string][]string // values written per key, for cas
	trace     func(core.Message)
}

func (w *world) at() time.Time { return epoch0.Add(time.Duration(w.now) * tick) }

func (w *world) logf(format string, args ...any) {
	w.rep.Schedule = append(w.rep.Schedule, fmt.Sprintf("t=%d ", w.now)+fmt.Sprintf(format, args...))
}

func (w *world) violate(format string, args ...any) {
	w.viol = append(w.viol, fmt.Sprintf("t=%d ", w.now)+fmt.Sprintf(format, args...))
}

// Run simulates one seeded schedule and checks the invariants. The error is
// ErrViolation (wrapped with the first violation) when one did not hold;
// the report has the seed, the schedule and every violation.
func Run(cfg Config) (Report, error) {
	w := newWorld(cfg)
	cfg = w.cfg
	w.run(150)
	for r := 0; r < cfg.Rounds && len(w.viol) == 0; r++ {
		faults := 1 + w.rng.Intn(3)
		for f := 0; f < faults; f++ {
			w.fault()
			w.run(20 + w.rng.Intn(150))
		}
		w.heal()
		w.settle()
	}
	w.finish()
	rep := *w.rep
	rep.Ticks = int(w.now)
	rep.Ops = len(w.history)
	rep.Acked = len(w.acked)
	rep.Final = w.describe()
	if len(w.viol) > 0 {
		rep.Violation = strings.Join(w.viol, "\n")
		return rep, fmt.Errorf("%w: seed %d mode %s: %s", ErrViolation, cfg.Seed, cfg.Mode, w.viol[0])
	}
	return rep, nil
}

func (w *world) run(ticks int) {
	for i := 0; i < ticks && len(w.viol) == 0; i++ {
		w.step()
	}
}

// step advances virtual time by one tick.
func (w *world) step() {
	w.now++
	for _, a := range w.agents {
		if a.running && a.pausedUntil != 0 && w.now >= a.pausedUntil {
			a.pausedUntil = 0
			w.logf("resume %d", a.id)
		}
	}
	for _, a := range w.agents {
		if a.live() {
			a.node.Tick()
			w.ready(a)
		}
	}
	w.deliver()
	w.views()
	w.deliver()
	w.namingTick()
	for _, a := range w.agents {
		if a.live() {
			w.runtime(a)
		}
	}
	w.deliver()
	w.clientTick()
	w.deliver()
	w.checkProposals()
}

// checkProposals: only a master, or a candidate (a strict master
// re-electing itself), holds writes it has not answered; any other agent
// could no longer answer them for what they are.
func (w *world) checkProposals() {
	for _, a := range w.agents {
		if !a.live() {
			continue
		}
		if st := a.node.Status(); st.PendingWrites > 0 && st.Role != api.RoleMaster && st.Role != api.RoleCandidate {
			w.violate("agent %d is %s and holds %d writes it has not answered", a.id, st.Role, st.PendingWrites)
		}
	}
}

// newWorld builds the group, the naming node and the clients of cfg, at
// tick 0.
func newWorld(cfg Config) *world {
	cfg.defaults()
	w := &world{cfg: cfg, rng: rand.New(rand.NewSource(cfg.Seed)), rep: &Report{Seed: cfg.Seed, Mode: cfg.Mode},
		cut: map[[2]uint64]bool{}, nCut: map[uint64]bool{}, newest: map[uint64]uint64{},
		refs: map[uint64]*client{}, written: map[string][]string{}, clientsOn: true}
	w.reg = naming.NewRegistry(naming.RegistryConfig{DefaultPolicy: api.PolicyLowestID, SessionTTL: ttl,
		RegistrationTTL: ttl, MaxTTL: 10 * time.Minute, ConflictWindow: conflictWindow}, rand.New(rand.NewSource(w.rng.Int63())))
	for i := 1; i <= cfg.Agents; i++ {
		w.agents = append(w.agents, w.newAgent(uint64(i), w.rng.Intn(4)))
	}
	for i := 0; i < cfg.Clients; i++ {
		w.clients = append(w.clients, &client{id: uint64(100 + i), idx: i, target: uint64(1 + w.rng.Intn(cfg.Agents))})
	}
	prios := make([]string, 0, len(w.agents))
	for _, a := range w.agents {
		prios = append(prios, fmt.Sprintf("%d:%d", a.id, a.prio))
	}
	w.logf("start %d agents (id:priority %s), %d clients, mode %s", cfg.Agents, strings.Join(prios, " "), cfg.Clients, cfg.Mode)
	return w
}

// linked tells whether two agents can talk (gossip, agent RPC).
func (w *world) linked(x, y uint64) bool {
	return w.agent(x).live() && w.agent(y).live() && !w.cut[[2]uint64{x, y}] && !w.cut[[2]uint64{y, x}]
}

// namingReach tells whether the naming node and an agent can talk.
func (w *world) namingReach(id uint64) bool {
	a := w.agent(id)
	return a != nil && a.live() && !w.nCut[id]
}

func (w *world) agent(id uint64) *simAgent {
	if id == 0 || int(id) > len(w.agents) {
		return nil
	}
	return w.agents[id-1]
}

func (w *world) send(m core.Message) {
	w.rep.Messages++
	if w.dropP > 0 && w.rng.Float64() < w.dropP {
		return
	}
	at := w.now
	if w.delay > 0 {
		at += int64(w.rng.Intn(w.delay + 1))
	}
	w.msgSeq++
	w.queue = append(w.queue, envelope{m: m, at: at, seq: w.msgSeq})
}

// deliver hands every due message to its receiver, in order of due time
// then sending, until none is due (messages sent meanwhile included).
func (w *world) deliver() {
	for round := 0; round < 64; round++ {
		var due, later []envelope
		for _, e := range w.queue {
			if e.at <= w.now {
				due = append(due, e)
			} else {
				later = append(later, e)
			}
		}
		if len(due) == 0 {
			return
		}
		if round == 63 {
			w.storm(due)
			return
		}
		w.queue = later
		slices.SortStableFunc(due, func(a, b envelope) int {
			if a.at != b.at {
				return int(a.at - b.at)
			}
			return int(a.seq) - int(b.seq)
		})
		for _, e := range due {
			if !w.linked(e.m.From, e.m.To) {
				continue
			}
			to := w.agent(e.m.To)
			if w.trace != nil {
				w.trace(e.m)
			}
			if e.m.Type == core.MsgTimeoutNow {
				to.handingOver = true
			}
			to.node.Step(e.m)
			w.ready(to)
		}
	}
}

// views feeds every live agent the membership view gossip would give it:
// alive means linked.
func (w *world) views() {
	for _, a := range w.agents {
		if !a.live() {
			continue
		}
		peers := make([]core.Peer, 0, len(w.agents))
		for _, o := range w.agents {
			if o == a {
				continue
			}
			alive := w.linked(a.id, o.id)
			if alive {
				a.seen[o.id] = o.node.Epoch()
			}
			peers = append(peers, core.Peer{ID: o.id, Priority: o.prio, Alive: alive, Epoch: a.seen[o.id]})
		}
		a.node.SetView(peers)
		w.ready(a)
	}
}

// DrawSplit draws a partition of ids (two or more) in two non-empty
// sides, each sorted: the split the seeded schedules cut, here and over
// real in-process clusters.
func DrawSplit(rng *rand.Rand, ids []uint64) (a, b []uint64) {
	perm := rng.Perm(len(ids))
	cutAt := 1 + rng.Intn(len(ids)-1)
	for i, p := range perm {
		if i < cutAt {
			a = append(a, ids[p])
		} else {
			b = append(b, ids[p])
		}
	}
	slices.Sort(a)
	slices.Sort(b)
	return a, b
}

// fault draws one fault and applies it.
func (w *world) fault() {
	ids := w.ids()
	switch k := w.rng.Intn(10); {
	case k < 4:
		a, b := DrawSplit(w.rng, ids)
		w.cut = map[[2]uint64]bool{}
		for _, x := range a {
			for _, y := range b {
				w.cut[[2]uint64{x, y}] = true
			}
		}
		w.nCut = map[uint64]bool{}
		naming := "both sides"
		switch w.rng.Intn(4) {
		case 0:
			for _, y := range b {
				w.nCut[y] = true
			}
			naming = fmt.Sprint(a)
		case 1:
			for _, x := range a {
				w.nCut[x] = true
			}
			naming = fmt.Sprint(b)
		case 2:
			for _, x := range ids {
				w.nCut[x] = true
			}
			naming = "neither side"
		}
		w.logf("partition %v | %v, naming node reachable from %s", a, b, naming)
	case k < 5:
		w.cut = map[[2]uint64]bool{}
		w.nCut = map[uint64]bool{}
		w.logf("heal the network")
	case k < 7:
		// Kill, the master more often than not.
		id := ids[w.rng.Intn(len(ids))]
		if ms := w.masters(); len(ms) > 0 && w.rng.Intn(3) > 0 {
			id = ms[w.rng.Intn(len(ms))]
		}
		if a := w.agent(id); a.running {
			w.kill(a)
			w.logf("kill %d", id)
		} else {
			w.restart(a)
			w.logf("restart %d", id)
		}
	case k < 8:
		id := ids[w.rng.Intn(len(ids))]
		if ms := w.masters(); len(ms) > 0 && w.rng.Intn(3) > 0 {
			id = ms[w.rng.Intn(len(ms))]
		}
		if a := w.agent(id); a.running && a.pausedUntil == 0 {
			d := 20 + w.rng.Intn(300)
			a.pausedUntil = w.now + int64(d)
			w.logf("pause %d for %d ticks", id, d)
		}
	case k < 9:
		w.dropP = 0.05 + 0.25*w.rng.Float64()
		w.logf("drop %.0f%% of agent messages", w.dropP*100)
	default:
		w.delay = 1 + w.rng.Intn(6)
		w.logf("delay agent messages by up to %d ticks", w.delay)
	}
}

// heal makes the network whole: no cuts, drops or delays, every paused
// agent resumed and every killed one restarted.
func (w *world) heal() {
	w.cut = map[[2]uint64]bool{}
	w.nCut = map[uint64]bool{}
	w.dropP, w.delay = 0, 0
	for _, a := range w.agents {
		if !a.running {
			w.restart(a)
		}
		a.pausedUntil = 0
	}
	w.logf("heal: network whole, every agent running")
}

// settle runs until the group converged (invariant 1) or the bound passed,
// clients paused so that digests can meet, then checks invariants 3.
func (w *world) settle() {
	w.clientsOn = false
	start := w.now
	var err error
	for i := 0; i < w.cfg.SettleTicks && len(w.viol) == 0; i++ {
		w.step()
		if err = w.converged(); err == nil && w.clientsIdle() {
			break
		}
	}
	w.clientsOn = true
	if len(w.viol) > 0 {
		return
	}
	if err != nil {
		w.violate("invariant 1: not converged %d ticks after the heal: %v", w.cfg.SettleTicks, err)
		return
	}
	w.rep.Converged = append(w.rep.Converged, int(w.now-start))
	w.logf("converged after %d ticks", w.now-start)
	w.checkAcked()
}

// storm handles messages still due after the delivery rounds of a tick:
// an unbounded exchange between agents, which is a violation.
func (w *world) storm(due []envelope) {
	e := due[0].m
	detail := ""
	if m, b := w.agent(e.To), w.agent(e.From); e.Type == core.MsgAppendResp && e.Reject {
		detail = fmt.Sprintf(" (%d is %s, its last %d; %d's log base %d)", e.From, b.node.Role(), e.LastIndex, e.To, m.node.Log().Base().Index)
	}
	w.queue = nil
	w.violate("message storm: still %d messages due after 64 rounds within one tick, e.g. %s%s", len(due), e, detail)
}

func (w *world) converged() error {
	var states []recover.MemberState
	for _, a := range w.agents {
		if !a.live() {
			continue
		}
		st := a.node.Status()
		states = append(states, recover.StateOfStatus(st))
	}
	var registered uint64
	if look, err := w.reg.Lookup(w.at(), api.LookupRequest{Group: group}); err == nil && look.Master != nil {
		registered = look.Master.ID
	}
	return recover.CheckConverged(states, registered)
}

// checkAcked is invariant 3: every acknowledged write is in the master's
// state or in a divergence record of some agent.
func (w *world) checkAcked() {
	ms := w.masters()
	if len(ms) != 1 {
		return
	}
	m := w.agent(ms[0])
	kept := map[WriteID]bool{}
	for _, a := range w.agents {
		for _, r := range a.records {
			kept[r] = true
		}
	}
	lost := LostWrites(w.acked, func(id WriteID) bool { return m.sm.applied[id] }, func(id WriteID) bool { return kept[id] })
	for _, l := range lost {
		w.violate("invariant 3: acknowledged write lost: %s; master %d", l, m.id)
	}
}

func (w *world) finish() {
	if len(w.viol) == 0 && w.cfg.Mode == api.ModeStrict {
		if ok, path := CheckLinearizable(w.history, w.cfg.VizDir, w.cfg.PorcupineTimeout); !ok {
			w.rep.HTMLPath = path
			w.violate("invariant 2: history of %d operations not linearizable", len(w.history))
		}
	}
}

func (w *world) ids() []uint64 {
	ids := make([]uint64, len(w.agents))
	for i, a := range w.agents {
		ids[i] = a.id
	}
	return ids
}

func (w *world) masters() []uint64 {
	var ms []uint64
	for _, a := range w.agents {
		if a.live() && a.node.Role() == api.RoleMaster {
			ms = append(ms, a.id)
		}
	}
	return ms
}

func (w *world) describe() string {
	var b strings.Builder
	for _, a := range w.agents {
		st := a.node.Status()
		state := "running"
		switch {
		case !a.running:
			state = "killed"
		case a.pausedUntil != 0:
			state = "paused"
		}
		fmt.Fprintf(&b, "  %d (%s): %s epoch=%s master=%d applied=%d last=%d digest=%.8s records=%d\n", a.id, state, st.Role, st.Epoch,
			st.Master, st.Applied, st.Last, st.Digest.String(), len(a.records))
	}
	var reg uint64
	if look, err := w.reg.Lookup(w.at(), api.LookupRequest{Group: group}); err == nil && look.Master != nil {
		reg = look.Master.ID
	}
	fmt.Fprintf(&b, "  naming: registered %d\n", reg)
	return b.String()
}
