package recover

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/mastership/mastership/agent"
	"github.com/mastership/mastership/agent/core"
	"github.com/mastership/mastership/agent/wire"
	"github.com/mastership/mastership/naming/api"
)

// ExitRecoveryFailed is the exit code of an agent whose recovery failed
// with on-failure=terminate (figure 10, act 1050).
const ExitRecoveryFailed = 3

// Config configures a Monitor.
type Config struct {
	// Count and Unit make the timer (figure 5, act 810): a check every
	// Count x Unit, on boundaries of that period in wall time so the
	// members of a group check together. Default 100 x 3ms.
	Count int
	Unit  time.Duration
	// OnFailure is "quarantine" (default) or "terminate".
	OnFailure string
	// EventsOff ignores external events: the timer alone triggers checks
	// (for measuring the event path against the timer).
	EventsOff bool
	// RecoveryTimeout bounds one whole recovery (fork search, state
	// download, install). Default 30s. A recovery runs beside the checks
	// and is abandoned sooner when the naming node retains another master.
	RecoveryTimeout time.Duration
	// OlderEpochWait bounds how long a recovery waits for the retained
	// master to move above the epoch this agent followed. Default 3s.
	OlderEpochWait time.Duration
	// Exit ends the process on terminate; default os.Exit.
	Exit func(code int)
	// Logger; nil means the agent's.
	Logger hclog.Logger
}

// Monitor is the self-monitoring mechanism of one agent (figures 5 to 10)
// at run time: it drives a Machine with wall time and carries out its
// effects on the agent. It implements agent.Monitor.
//
// Goroutines: Start runs the monitor loop, which alone owns the machine,
// runs the checks (the naming node lookup is bounded by a period) and
// records them. Each step of a recovery (fork search, download, install)
// runs on a goroutine of its own, so that nothing it waits for holds the
// checks (acts 825 to 855 keep their period, and an event still overrides
// the timer, act 840); its answer comes back to the loop. Abandoning a
// recovery cancels its step without waiting for it: the answer is
// dropped, and what the step would change on the agent's loop checks its
// context there first (Agent.Install), so a newer recovery's commands
// come after it. When the loop ends it waits for the steps in flight.
// Event may be called from any goroutine and never blocks.
type Monitor struct {
	cfg   Config
	rules Rules
	wake  chan struct{}

	mu         sync.Mutex
	events     []string // external events not yet given to the machine
	last       *wire.Check
	lastAction *wire.Check // the last check that acted
	checks     uint64
	recoveries uint64
	stats      stats
	logger     hclog.Logger
}

// stats is what the monitor counts for Stats, under Monitor.mu.
type stats struct {
	checks     map[[2]string]uint64 // by trigger kind and decision
	triggers   map[string]bool      // the trigger kinds counted, at most maxTriggerKinds
	recoveries map[string]uint64
	recovery   wire.Histogram
	steps      map[string]*wire.Histogram
}

func newStats() stats {
	return stats{checks: map[[2]string]uint64{}, triggers: map[string]bool{}, recoveries: map[string]uint64{},
		recovery: wire.NewHistogram(durationBounds()), steps: map[string]*wire.Histogram{}}
}

// maxTriggerKinds bounds the event kinds Stats tells apart besides the
// timer (a label of the agent's metrics each): the kinds past it count as
// "other". The naming node's reasons are free text.
const maxTriggerKinds = 32

// durationBounds are the buckets, in seconds, of recovery durations.
func durationBounds() []float64 {
	return []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30}
}

// triggerKind is the kind of a check's trigger: "timer", or the event's
// kind without its detail and count; "other" for a kind that is not a
// word of lower-case letters, digits and dashes (a label of the metrics).
func triggerKind(trigger string) string {
	if i := strings.IndexAny(trigger, "\x00 "); i >= 0 {
		trigger = trigger[:i]
	}
	if trigger == "" || len(trigger) > 64 || strings.IndexFunc(trigger, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-')
	}) >= 0 {
		return "other"
	}
	return trigger
}

// countCheck counts one check; m.mu is held.
func (m *Monitor) countCheck(trigger, decision string) {
	st := &m.stats
	if trigger != "timer" && !st.triggers[trigger] {
		if len(st.triggers) >= maxTriggerKinds {
			trigger = "other"
		}
		st.triggers[trigger] = true
	}
	st.checks[[2]string{trigger, decision}]++
}

// Stats reports what the monitor counted since it started: checks by
// trigger and decision, recoveries by outcome, their durations and their
// steps'.
func (m *Monitor) Stats() wire.MonitorStats {
	m.mu.Lock()
	defer m.mu.Unlock()
	st := &m.stats
	out := wire.MonitorStats{Recoveries: map[string]uint64{}, StepSeconds: map[string]wire.Histogram{}}
	for k, n := range st.checks {
		out.Checks = append(out.Checks, wire.CheckCount{Trigger: k[0], Decision: k[1], Count: n})
	}
	slices.SortFunc(out.Checks, func(a, b wire.CheckCount) int {
		return cmp.Or(cmp.Compare(a.Trigger, b.Trigger), cmp.Compare(a.Decision, b.Decision))
	})
	maps.Copy(out.Recoveries, st.recoveries)
	out.RecoverySeconds = st.recovery.Clone()
	for k, h := range st.steps {
		out.StepSeconds[k] = h.Clone()
	}
	return out
}

// countRecovery counts a recovery's end; m.mu is held.
func (m *Monitor) countRecovery(outcome string, seconds float64) {
	st := &m.stats
	st.recoveries[outcome]++
	st.recovery.Observe(seconds)
}

// countStep counts a recovery step that answered.
func (m *Monitor) countStep(step string, seconds float64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	st := &m.stats
	h := st.steps[step]
	if h == nil {
		nh := wire.NewHistogram(durationBounds())
		h = &nh
		st.steps[step] = h
	}
	h.Observe(seconds)
}

var _ agent.Monitor = (*Monitor)(nil)
var _ agent.CheckReporter = (*Monitor)(nil)

// Agent is what the self-monitor uses of the agent it watches; *agent.Agent
// implements it. Every method is safe to call from the monitor's
// goroutines; the context-taking ones return once their context ends.
type Agent interface {
	ID() uint64
	Logger() hclog.Logger
	// Strict tells whether the group is in strict mode.
	Strict() bool
	Status() core.Status
	Registering() bool
	// LookupMaster asks the naming node for the group's retained master:
	// nil with no error when none is registered.
	LookupMaster(ctx context.Context) (*api.Registration, error)
	// Paused tells whether the group is in maintenance (the naming node's
	// last answer said so): checks run, nothing is acted on.
	Paused() bool
	// PeerAlive tells whether a member of the group is alive in gossip.
	PeerAlive(id uint64) bool
	// PeerAPI is the API address a member of the group announces in
	// gossip, or "" for an agent gossip does not know.
	PeerAPI(id uint64) string
	// The commands below run on the agent's loop; each gives up, undone,
	// when ctx ends before the loop took it.
	BeginRecovery(ctx context.Context, master uint64) error
	KeepDivergence(ctx context.Context, master uint64, addr string) (fork uint64, records int, err error)
	DownloadState(ctx context.Context, master uint64, addr string) (agent.State, error)
	Install(ctx context.Context, master uint64, st agent.State) (agent.SyncResult, error)
	RequestHandover(ctx context.Context) (bool, error)
	Reassert(ctx context.Context, registered api.Epoch) error
	Release(ctx context.Context) error
	Quarantine(ctx context.Context) error
}

var _ Agent = (*agent.Agent)(nil)

// New returns a monitor; pass it in agent.Options.Monitor.
func New(cfg Config) *Monitor {
	cfg = cfg.withDefaults()
	return &Monitor{cfg: cfg, rules: cfg.Rules(), wake: make(chan struct{}, 1), logger: cfg.Logger, stats: newStats()}
}

func (cfg Config) withDefaults() Config {
	if cfg.Count <= 0 {
		cfg.Count = 100
	}
	if cfg.Unit <= 0 {
		cfg.Unit = 3 * time.Millisecond
	}
	if cfg.RecoveryTimeout <= 0 {
		cfg.RecoveryTimeout = 30 * time.Second
	}
	if cfg.OlderEpochWait <= 0 {
		cfg.OlderEpochWait = 3 * time.Second
	}
	if cfg.Exit == nil {
		cfg.Exit = os.Exit
	}
	return cfg
}

// Rules are the machine's timings for cfg, counted in Units.
func (cfg Config) Rules() Rules {
	cfg = cfg.withDefaults()
	ticks := func(d time.Duration) uint64 { return uint64(max((d+cfg.Unit-1)/cfg.Unit, 1)) }
	return Rules{CheckTicks: uint64(cfg.Count), RecoveryTicks: ticks(cfg.RecoveryTimeout),
		OlderEpochTicks: ticks(cfg.OlderEpochWait), RetryTicks: ticks(downloadRetry),
		Terminate: cfg.OnFailure == "terminate", EventsOff: cfg.EventsOff}
}

// downloadRetry is the pause between downloads while the retained master
// is at an older epoch than ours.
const downloadRetry = 20 * time.Millisecond

// Event raises the external event trigger (figure 6): it overrides the
// timer. Triggers that arrive while a check runs coalesce into one more.
func (m *Monitor) Event(kind, detail string) {
	if m.cfg.EventsOff {
		return
	}
	m.mu.Lock()
	if len(m.events) < 2*maxPending {
		m.events = append(m.events, kind+"\x00"+detail)
	}
	m.mu.Unlock()
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

// LastCheck is the last detector run, for `mastership info`.
func (m *Monitor) LastCheck() *wire.Check {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.last == nil {
		return nil
	}
	c := *m.last
	return &c
}

// LastAction is the last check that reasserted, recovered or released.
func (m *Monitor) LastAction() *wire.Check {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.lastAction == nil {
		return nil
	}
	c := *m.lastAction
	return &c
}

// Counters reports how many checks and recoveries ran.
func (m *Monitor) Counters() (checks, recoveries uint64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.checks, m.recoveries
}

// Start runs the monitor loop for agent a until ctx ends.
func (m *Monitor) Start(ctx context.Context, a *agent.Agent) { m.run(ctx, a) }

// run is the monitor loop: the machine's clock is wall time in Units since
// the Unix epoch, so the timers of a group's members share boundaries.
func (m *Monitor) run(ctx context.Context, a Agent) {
	if m.logger == nil {
		m.logger = a.Logger()
	}
	m.logger = m.logger.Named("recover")
	d := &driver{m: m, a: a, ctx: ctx, results: make(chan func(now uint64) []Effect, 4), jobs: map[uint64]*jobRun{}}
	d.mach = NewMachine(m.rules, d.now())
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	defer d.abandonAll()
	for {
		d.feedEvents()
		d.apply(d.mach.Tick(d.now()))
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(time.Until(d.wall(d.mach.Deadline())))
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		case <-m.wake:
		case r := <-d.results:
			d.apply(r(d.now()))
		}
	}
}

// driver carries out the machine's effects on the agent. Loop only.
type driver struct {
	m       *Monitor
	a       Agent
	ctx     context.Context
	mach    *Machine
	results chan func(now uint64) []Effect
	jobs    map[uint64]*jobRun
}

// jobRun is the runtime side of a recovery: its context, its step in
// flight, and the check that started it (filled in when it ends).
type jobRun struct {
	ctx    context.Context
	cancel context.CancelFunc
	steps  sync.WaitGroup
	check  *wire.Check
	start  time.Time
	state  agent.State // downloaded and verified, until DoInstall takes it
}

func (d *driver) now() uint64 { return uint64(time.Now().UnixNano() / int64(d.m.cfg.Unit)) }

func (d *driver) wall(tick uint64) time.Time { return time.Unix(0, int64(tick)*int64(d.m.cfg.Unit)) }

func (d *driver) feedEvents() {
	d.m.mu.Lock()
	evs := d.m.events
	d.m.events = nil
	d.m.mu.Unlock()
	for _, ev := range evs {
		kind, detail, _ := strings.Cut(ev, "\x00")
		d.mach.Event(kind, detail)
	}
}

// apply carries out effects, and those their answers bring, in order.
func (d *driver) apply(fx []Effect) {
	for len(fx) > 0 {
		e := fx[0]
		fx = append(fx[1:], d.do(e)...)
	}
}

func (d *driver) do(e Effect) []Effect {
	a := d.a
	switch e.Kind {
	case DoLookup:
		return d.check(e.Trigger)
	case DoHandover:
		ctx, cancel := d.bounded()
		asked, err := a.RequestHandover(ctx)
		cancel()
		if err != nil {
			d.m.logger.Debug("handover request not made", "error", err)
		}
		if e.Job != 0 {
			return d.mach.HandedOver(d.now(), e.Job, asked)
		}
		if asked {
			d.m.mu.Lock()
			if c := d.m.last; c != nil {
				c.Recovery = "handover requested"
				d.m.lastAction = c
			}
			d.m.mu.Unlock()
		}
	case DoReassert:
		ctx, cancel := d.bounded()
		if err := a.Reassert(ctx, e.Epoch); err != nil {
			d.m.logger.Warn("reassert not made; the next check decides again", "error", err)
		}
		cancel()
	case DoRelease:
		ctx, cancel := d.bounded()
		if err := a.Release(ctx); err != nil {
			d.m.logger.Warn("release not made; the next check decides again", "error", err)
		}
		cancel()
	case DoAlign:
		ctx, cancel := context.WithCancel(d.ctx)
		j := &jobRun{ctx: ctx, cancel: cancel, start: time.Now()}
		d.m.mu.Lock()
		j.check = d.m.last // the check that decided it
		d.m.lastAction = j.check
		d.m.recoveries++
		d.m.mu.Unlock()
		d.jobs[e.Job] = j
		bctx, bcancel := d.bounded()
		err := a.BeginRecovery(bctx, e.Target.ID)
		bcancel()
		return d.mach.Aligned(d.now(), e.Job, err)
	case DoKeepDivergence:
		d.step(e, func(ctx context.Context) func(uint64) []Effect {
			fork, n, err := a.KeepDivergence(ctx, e.Target.ID, e.Target.Addr)
			d.m.logger.Info("recovery step", "step", "keep divergence", "retained", e.Target.ID, "fork", fork, "records", n, "error", err)
			return func(now uint64) []Effect { return d.mach.Diverged(now, e.Job, fork, n, err) }
		})
	case DoFetchState:
		j := d.jobs[e.Job]
		d.step(e, func(ctx context.Context) func(uint64) []Effect {
			st, err := a.DownloadState(ctx, e.Target.ID, e.Target.Addr)
			return func(now uint64) []Effect {
				if j != nil {
					j.state = st // kept for DoInstall; the loop owns j
				}
				return d.mach.Fetched(now, e.Job, err)
			}
		})
	case DoInstall:
		j := d.jobs[e.Job]
		if j == nil {
			return nil
		}
		st := j.state
		j.state = agent.State{} // the install holds it now
		d.step(e, func(ctx context.Context) func(uint64) []Effect {
			res, err := a.Install(ctx, e.Target.ID, st)
			if err == nil {
				d.m.logger.Info("recovery step", "step", "synchronized", "retained", e.Target.ID, "index", res.Digest.Index)
			}
			return func(now uint64) []Effect { return d.mach.Installed(now, e.Job, res.Digest, err) }
		})
	case DoAbandon:
		// The step in flight is cancelled, not waited for: its answer is
		// dropped, and what it would change on the loop checks its context
		// there first (Agent.Install), so a newer recovery's commands,
		// queued behind it on the loop, always come after it.
		if j := d.jobs[e.Job]; j != nil {
			d.m.logger.Info("abandoning recovery", "error", e.Err)
			j.cancel()
		}
		d.end(e)
	case DoReport:
		d.end(e)
	case DoQuarantine:
		d.m.logger.Warn("recovery failed; quarantined until the next trigger", "error", e.Err)
		ctx, cancel := d.bounded()
		if err := a.Quarantine(ctx); err != nil {
			d.m.logger.Warn("quarantine not made; the next check decides again", "error", err)
		}
		cancel()
	case DoTerminate:
		d.m.logger.Error("recovery failed; terminating", "error", e.Err, "code", ExitRecoveryFailed)
		d.m.cfg.Exit(ExitRecoveryFailed)
	}
	return nil
}

// stepName names a recovery step in Stats.
func stepName(k EffectKind) string {
	switch k {
	case DoKeepDivergence:
		return "keep-divergence"
	case DoFetchState:
		return "fetch-state"
	case DoInstall:
		return "install"
	}
	return "other"
}

// step runs one of a recovery's steps on a goroutine of its own; its
// answer goes back to the loop unless the recovery was abandoned.
func (d *driver) step(e Effect, f func(ctx context.Context) func(uint64) []Effect) {
	j := d.jobs[e.Job]
	if j == nil {
		return
	}
	name := stepName(e.Kind)
	j.steps.Add(1)
	go func() {
		defer j.steps.Done()
		start := time.Now()
		r := f(j.ctx)
		if j.ctx.Err() == nil {
			d.m.countStep(name, time.Since(start).Seconds())
		}
		select {
		case d.results <- r:
		case <-j.ctx.Done():
		}
	}()
}

// end records a recovery's outcome on the check that started it.
func (d *driver) end(e Effect) {
	j := d.jobs[e.Job]
	if j == nil {
		return
	}
	delete(d.jobs, e.Job)
	j.cancel()
	d.m.logger.Info("recovery ended", "steps", e.Steps, "error", e.Err)
	if j.check == nil {
		return
	}
	d.m.mu.Lock()
	j.check.Recovery, j.check.RecoveryMS = e.Steps, ms(time.Since(j.start))
	outcome := "ok"
	switch {
	case e.Kind == DoAbandon:
		outcome = "abandoned"
	case e.Err != nil:
		outcome = "failed"
	}
	d.m.countRecovery(outcome, time.Since(j.start).Seconds())
	if e.Err != nil {
		j.check.Error = e.Err.Error()
	}
	d.m.lastAction = j.check
	d.m.mu.Unlock()
}

// abandonAll stops the steps in flight when the loop ends.
func (d *driver) abandonAll() {
	for _, j := range d.jobs {
		j.cancel()
		j.steps.Wait()
	}
}

// check builds the detector's input (the naming node's answer bounded by a
// period), gives it to the machine and records the check.
func (d *driver) check(trigger string) []Effect {
	a := d.a
	start := time.Now()
	in := NewInput(a.ID(), a.Status(), a.Strict(), a.Registering())
	lctx, cancel := d.bounded()
	retained, err := a.LookupMaster(lctx)
	cancel()
	in.Retain(retained, err, a.PeerAlive, a.PeerAPI)
	in.Paused = a.Paused()
	v, fx := d.mach.Looked(d.now(), in)
	c := &wire.Check{Time: start.UTC(), Trigger: trigger, Decision: v.Decision.String(), DetectMS: ms(time.Since(start))}
	if in.Retained != nil {
		c.Retained = in.Retained.ID
	}
	level := hclog.Debug
	if v.Decision == Recover || v.Decision == Reassert {
		level = hclog.Info
	}
	d.m.logger.Log(level, "check", "trigger", trigger, "decision", v.Decision, "reason", v.Reason)
	for _, e := range fx {
		switch e.Kind {
		case DoReassert:
			c.Recovery = "reasserted"
		case DoRelease:
			c.Recovery = "released from quarantine"
		case DoAlign:
			c.Recovery = fmt.Sprintf("aligned to %d", e.Target.ID)
		}
	}
	d.m.mu.Lock()
	d.m.checks++
	d.m.countCheck(triggerKind(trigger), c.Decision)
	d.m.last = c
	if c.Recovery != "" {
		d.m.lastAction = c
	}
	d.m.mu.Unlock()
	return fx
}

// bounded is the context of a command to the agent: a check period at
// most, so that a busy agent loop never holds the monitor past its next
// check (figure 8's timer, act 825).
func (d *driver) bounded() (context.Context, context.CancelFunc) {
	return context.WithTimeout(d.ctx, time.Duration(d.m.cfg.Count)*d.m.cfg.Unit)
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
