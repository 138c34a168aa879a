package recover

import (
	"context"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/mastership/mastership/agent"
	"github.com/mastership/mastership/agent/core"
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

// Monitor is the self-monitoring mechanism of one agent (figures 5 to 10):
// a timer and external events trigger one detector, and an inconsistent
// mastership runs the recovery. It implements agent.Monitor.
//
// Goroutines: Start runs the monitor loop, which alone runs checks and
// decides; a recovery runs on a goroutine of its own, so that nothing it
// waits for holds the checks (act 825-855 keep their period, and an event
// still overrides the timer, act 840). The loop abandons a recovery (it
// cancels its context and waits for it to return, which its calls do at
// once) when a check finds that the naming node now retains another
// master, and starts one towards the new one. Event may be called from any
// goroutine and never blocks.
type Monitor struct {
	cfg    Config
	period time.Duration
	wake   chan struct{}

	mu         sync.Mutex
	pending    []string // triggers since the last check
	last       *agent.CheckJSON
	lastAction *agent.CheckJSON // the last check that acted
	checks     uint64
	recoveries uint64
	logger     hclog.Logger
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
	// PeerAlive tells whether a member of the group is alive in gossip.
	PeerAlive(id uint64) bool
	// PeerAPI is the API address a member of the group announces in
	// gossip, or "" for an agent gossip does not know.
	PeerAPI(id uint64) string
	BeginRecovery(master uint64) error
	KeepDivergence(ctx context.Context, master uint64, addr string) (fork uint64, records int, err error)
	Synchronize(ctx context.Context, master uint64, addr string) (agent.SyncResult, error)
	RequestHandover() (bool, error)
	Reassert(registered api.Epoch) error
	Release() error
	Quarantine() error
}

var _ Agent = (*agent.Agent)(nil)

// New returns a monitor; pass it in agent.Options.Monitor.
func New(cfg Config) *Monitor {
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
	return &Monitor{cfg: cfg, period: time.Duration(cfg.Count) * cfg.Unit, wake: make(chan struct{}, 1), logger: cfg.Logger}
}

// NextCheck returns the timer's next expiry after now: the next multiple of
// the period since the epoch of wall time, so that every member of a group
// with the same period checks at the same instants (act 835).
func NextCheck(now time.Time, period time.Duration) time.Time {
	return now.Truncate(period).Add(period)
}

// Event raises the external event trigger (figure 6): it overrides the
// timer. Triggers that arrive while a check runs coalesce into one more.
func (m *Monitor) Event(kind, detail string) {
	if m.cfg.EventsOff {
		return
	}
	m.mu.Lock()
	if len(m.pending) < 16 {
		m.pending = append(m.pending, kind+": "+detail)
	}
	m.mu.Unlock()
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

// LastCheck is the last detector run, for `mastership info`.
func (m *Monitor) LastCheck() *agent.CheckJSON {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.last == nil {
		return nil
	}
	c := *m.last
	return &c
}

// LastAction is the last check that reasserted, recovered or released.
func (m *Monitor) LastAction() *agent.CheckJSON {
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

// job is a recovery running beside the loop.
type job struct {
	target api.Registration
	check  *agent.CheckJSON // the check that started it; the loop fills it in when it ends
	start  time.Time
	cancel context.CancelFunc
	done   chan jobResult
}

type jobResult struct {
	steps string
	err   error
}

// Start runs the monitor loop for agent a until ctx ends.
func (m *Monitor) Start(ctx context.Context, a *agent.Agent) { m.run(ctx, a) }

func (m *Monitor) run(ctx context.Context, a Agent) {
	if m.logger == nil {
		m.logger = a.Logger()
	}
	m.logger = m.logger.Named("recover")
	timer := time.NewTimer(time.Until(NextCheck(time.Now(), m.period)))
	defer timer.Stop()
	var cur *job
	defer func() {
		if cur != nil {
			cur.cancel()
			<-cur.done
		}
	}()
	for {
		trigger := "timer"
		var jobDone chan jobResult
		if cur != nil {
			jobDone = cur.done
		}
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		case <-m.wake:
			trigger = "event"
		case res := <-jobDone:
			m.finish(a, cur, res)
			cur = nil
			continue
		}
		m.mu.Lock()
		if len(m.pending) > 0 {
			trigger = m.pending[0]
			if len(m.pending) > 1 {
				trigger += fmt.Sprintf(" (+%d more)", len(m.pending)-1)
			}
			m.pending = m.pending[:0]
		}
		m.mu.Unlock()
		cur = m.check(ctx, a, trigger, cur)
		// Act 855: reset the counter after every check.
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(time.Until(NextCheck(time.Now(), m.period)))
	}
}

// check runs the detector once and acts on its decision. cur is the
// recovery in flight, if any; check returns the one in flight afterwards.
// Nothing in check waits longer than a monitor period but the abandonment
// of a recovery, whose calls all return as soon as it is cancelled.
func (m *Monitor) check(ctx context.Context, a Agent, trigger string, cur *job) *job {
	start := time.Now()
	st := a.Status()
	in := Input{Self: a.ID(), Role: st.Role, Master: st.Master, Epoch: st.Epoch, MaxTerm: st.MaxTerm, MaxEpoch: st.MaxEpoch,
		Strict: a.Strict(), Registering: a.Registering()}
	if cur != nil {
		in.Recovering = cur.target.ID
	}
	lctx, cancel := context.WithTimeout(ctx, m.period)
	in.Retained, in.NamingErr = a.LookupMaster(lctx)
	cancel()
	if in.Retained != nil {
		in.RetainedAlive = in.Retained.ID == a.ID() || a.PeerAlive(in.Retained.ID)
	}
	v := Detect(in)
	c := &agent.CheckJSON{Time: start.UTC(), Trigger: trigger, Decision: v.Decision.String(),
		DetectMS: ms(time.Since(start))}
	if in.Retained != nil {
		c.Retained = in.Retained.ID
	}
	level := hclog.Debug
	if v.Decision == Recover || v.Decision == Reassert {
		level = hclog.Info
	}
	m.logger.Log(level, "check", "trigger", trigger, "decision", v.Decision, "reason", v.Reason)
	switch v.Decision {
	case Consistent:
		// Act 1060 beyond recovery: the back-up that ranks first keeps
		// asking its master for a planned handover until it holds
		// mastership (the master hands over only once it is in sync).
		if st.Role == api.RoleBackup {
			if asked, _ := a.RequestHandover(); asked {
				c.Recovery = "handover requested"
			}
		}
	case Reassert:
		a.Reassert(in.Retained.Epoch)
		c.Recovery = "reasserted"
	case Release:
		a.Release()
		c.Recovery = "released from quarantine"
	case Recover:
		if cur != nil {
			m.logger.Info("abandoning recovery", "towards", cur.target.ID, "retained", in.Retained.ID)
			cur.cancel()
			res := <-cur.done
			m.mu.Lock()
			cur.check.Recovery, cur.check.Error = res.steps, "abandoned: the naming node retains "+fmt.Sprint(in.Retained.ID)
			cur.check.RecoveryMS = ms(time.Since(cur.start))
			m.mu.Unlock()
			cur = nil
		}
		cur = m.startRecovery(ctx, a, *in.Retained, c)
		c.Recovery = fmt.Sprintf("aligned to %d", in.Retained.ID)
	}
	m.mu.Lock()
	m.checks++
	m.last = c
	if c.Recovery != "" {
		m.lastAction = c
	}
	m.mu.Unlock()
	return cur
}

// startRecovery aligns at once (act 1010: the agent stops acting as master
// and points at the retained master before anything else) and runs the
// rest of figure 10 on a goroutine of its own.
func (m *Monitor) startRecovery(ctx context.Context, a Agent, retained api.Registration, c *agent.CheckJSON) *job {
	jctx, cancel := context.WithTimeout(ctx, m.cfg.RecoveryTimeout)
	j := &job{target: retained, check: c, start: time.Now(), cancel: cancel, done: make(chan jobResult, 1)}
	if err := a.BeginRecovery(retained.ID); err != nil {
		cancel()
		j.done <- jobResult{err: err}
		return j
	}
	m.mu.Lock()
	m.recoveries++
	m.mu.Unlock()
	go func() {
		defer cancel()
		steps, err := m.recoverTo(jctx, a, retained)
		j.done <- jobResult{steps: steps, err: err}
	}()
	return j
}

// finish records a recovery that ended by itself and, when it failed,
// takes figure 10's act 1050.
func (m *Monitor) finish(a Agent, j *job, res jobResult) {
	m.mu.Lock()
	j.check.Recovery = res.steps
	j.check.RecoveryMS = ms(time.Since(j.start))
	if res.err != nil {
		j.check.Error = res.err.Error()
	}
	m.lastAction = j.check
	m.mu.Unlock()
	if res.err != nil {
		m.fail(a, res.err)
	}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// fail is figure 10's act 1050: quarantine (serve nothing, retry on the
// next trigger) or terminate.
func (m *Monitor) fail(a Agent, err error) {
	if m.cfg.OnFailure == "terminate" {
		m.logger.Error("recovery failed; terminating", "error", err, "code", ExitRecoveryFailed)
		m.cfg.Exit(ExitRecoveryFailed)
		return
	}
	m.logger.Warn("recovery failed; quarantined until the next trigger", "error", err)
	a.Quarantine()
}
