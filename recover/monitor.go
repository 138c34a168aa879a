package recover

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/mastership/mastership/agent"
	"github.com/mastership/mastership/agent/core"
	"github.com/mastership/mastership/gossip"
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
// recoveries; Event may be called from any goroutine and never blocks.
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

// New returns a monitor; pass it in agent.Options.Monitor.
func New(cfg Config) *Monitor {
	if cfg.Count <= 0 {
		cfg.Count = 100
	}
	if cfg.Unit <= 0 {
		cfg.Unit = 3 * time.Millisecond
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

// Start runs the monitor loop for agent a until ctx ends.
func (m *Monitor) Start(ctx context.Context, a *agent.Agent) {
	if m.logger == nil {
		m.logger = a.Logger()
	}
	m.logger = m.logger.Named("recover")
	timer := time.NewTimer(time.Until(NextCheck(time.Now(), m.period)))
	defer timer.Stop()
	for {
		trigger := "timer"
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		case <-m.wake:
			trigger = "event"
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
		m.check(ctx, a, trigger)
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

// check runs the detector once and, when it says so, the recovery.
func (m *Monitor) check(ctx context.Context, a *agent.Agent, trigger string) {
	start := time.Now()
	st := a.Status()
	in := Input{Self: a.ID(), Role: st.Role, Master: st.Master, Epoch: st.Epoch, MaxTerm: st.MaxTerm, MaxEpoch: st.MaxEpoch,
		Strict: a.Config().Mode == string(api.ModeStrict), Registering: a.Registering()}
	lctx, cancel := context.WithTimeout(ctx, m.period)
	look, err := a.Naming().Lookup(lctx, api.LookupRequest{Group: a.Config().Group})
	cancel()
	switch {
	case err == nil:
		in.Retained = look.Master
	case errors.Is(err, api.ErrNotFound):
		// The group is not registered yet.
	default:
		in.NamingErr = err
	}
	if in.Retained != nil {
		in.RetainedAlive = in.Retained.ID == a.ID() || alive(a, in.Retained.ID)
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
		// Act 1060 beyond recovery: a back-up of the highest priority
		// keeps asking its master for a planned handover until it holds
		// mastership (the master hands over only once it is in sync).
		if st.Role == api.RoleBackup && highestPriority(a) {
			a.Do(func(n *core.Node) { n.RequestHandover() })
			c.Recovery = "handover requested"
		}
	case Reassert:
		a.Do(func(n *core.Node) { n.Reassert() })
		c.Recovery = "reasserted"
	case Release:
		a.Do(func(n *core.Node) { n.EndRecovery(0, n.Epoch()) })
		c.Recovery = "released from quarantine"
	case Recover:
		rstart := time.Now()
		steps, err := m.recoverTo(ctx, a, *in.Retained)
		c.RecoveryMS = ms(time.Since(rstart))
		c.Recovery = steps
		if err != nil {
			c.Error = err.Error()
			m.fail(a, err)
		}
		m.mu.Lock()
		m.recoveries++
		m.mu.Unlock()
	}
	m.mu.Lock()
	m.checks++
	m.last = c
	if c.Recovery != "" {
		m.lastAction = c
	}
	m.mu.Unlock()
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func alive(a *agent.Agent, id uint64) bool {
	for _, mem := range a.Members() {
		if mem.Meta.Group == a.Config().Group && mem.Meta.ID == id {
			return mem.Health != gossip.HealthDead
		}
	}
	return false
}

// fail is figure 10's act 1050: quarantine (serve nothing, retry on the
// next trigger) or terminate.
func (m *Monitor) fail(a *agent.Agent, err error) {
	if m.cfg.OnFailure == "terminate" {
		m.logger.Error("recovery failed; terminating", "error", err, "code", ExitRecoveryFailed)
		m.cfg.Exit(ExitRecoveryFailed)
		return
	}
	m.logger.Warn("recovery failed; quarantined until the next trigger", "error", err)
	a.Do(func(n *core.Node) { n.Quarantine() })
}
