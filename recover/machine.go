package recover

import (
	"errors"
	"fmt"
	"strings"

	"github.com/mastership/mastership/agent"
	"github.com/mastership/mastership/agent/rlog"
	"github.com/mastership/mastership/naming/api"
)

// Rules are the self-monitor's timings, in ticks of the unit its driver
// counts in (the runtime: MonitorUnit of wall time since the Unix epoch,
// so that the members of a group share boundaries; the simulator: its
// own tick).
type Rules struct {
	// CheckTicks is the timer's period (figure 5: Count of Unit).
	CheckTicks uint64
	// RecoveryTicks bounds one whole recovery: past it the recovery is
	// abandoned and fails (act 1050).
	RecoveryTicks uint64
	// OlderEpochTicks bounds how long a recovery retries the download
	// while the retained master is still at an older epoch than ours (it
	// has not reasserted yet).
	OlderEpochTicks uint64
	// RetryTicks is the pause between those downloads.
	RetryTicks uint64
	// Terminate makes a failed recovery end the process (exit code 3)
	// rather than quarantine the agent.
	Terminate bool
	// EventsOff ignores external events: the timer alone triggers checks.
	EventsOff bool
}

// EffectKind is what the machine asks its driver to do.
type EffectKind uint8

// Effects, in the order a driver meets them in a check and a recovery.
const (
	// DoLookup: run a check. Build an Input (the agent's status, the
	// naming node's retained master, gossip's view of it) and answer with
	// Looked. Trigger says what triggered the check.
	DoLookup EffectKind = iota + 1
	// DoHandover: ask the master for a planned handover if this agent
	// ranks first (agent.RequestHandover). With a Job, answer HandedOver.
	DoHandover
	// DoReassert: move this retained master above every epoch seen, Epoch
	// (the registered one) included.
	DoReassert
	// DoRelease: make a quarantined agent a back-up of nobody again.
	DoRelease
	// DoAlign: figure 10's act 1010 towards Target; answer Aligned.
	DoAlign
	// DoKeepDivergence: find the fork with Target and keep the divergent
	// writes as records; answer Diverged.
	DoKeepDivergence
	// DoFetchState: acts 1020 and 1040, download Target's state and verify
	// it on a scratch copy (agent.DownloadState); answer Fetched, and keep
	// the state for DoInstall.
	DoFetchState
	// DoInstall: act 1030, install the state DoFetchState kept
	// (agent.Install); answer Installed.
	DoInstall
	// DoAbandon: cancel the step of Job in flight, if any (its answer is
	// ignored; it is not waited for); Steps and Err are the recovery's
	// outcome, for status.
	DoAbandon
	// DoReport: Job ended by itself; Steps and Err are its outcome.
	DoReport
	// DoQuarantine: act 1050, serve nothing until a later check.
	DoQuarantine
	// DoTerminate: act 1050 with on-failure=terminate: exit with code 3.
	DoTerminate
)

var effectNames = [...]string{"", "lookup", "handover", "reassert", "release", "align", "keep-divergence",
	"fetch-state", "install", "abandon", "report", "quarantine", "terminate"}

func (k EffectKind) String() string {
	if int(k) < len(effectNames) && k != 0 {
		return effectNames[k]
	}
	return fmt.Sprintf("effect(%d)", k)
}

// Effect is one thing the driver must do.
type Effect struct {
	Kind    EffectKind
	Job     uint64           // the recovery the effect belongs to (0: none)
	Target  api.Registration // DoAlign, DoKeepDivergence, DoFetchState, DoInstall
	Epoch   api.Epoch        // DoReassert: the registered epoch
	Trigger string           // DoLookup
	Steps   string           // DoAbandon, DoReport: the steps taken
	Err     error            // DoAbandon, DoReport, DoQuarantine, DoTerminate
}

func (e Effect) String() string {
	var b strings.Builder
	b.WriteString(e.Kind.String())
	if e.Job != 0 {
		fmt.Fprintf(&b, " job=%d", e.Job)
	}
	switch e.Kind {
	case DoLookup:
		fmt.Fprintf(&b, " trigger=%q", e.Trigger)
	case DoAlign, DoKeepDivergence, DoFetchState, DoInstall:
		fmt.Fprintf(&b, " target=%d", e.Target.ID)
	case DoReassert:
		fmt.Fprintf(&b, " registered=%s", e.Epoch)
	case DoAbandon, DoReport:
		fmt.Fprintf(&b, " steps=%q", e.Steps)
	}
	if e.Err != nil {
		fmt.Fprintf(&b, " err=%q", e.Err.Error())
	}
	return b.String()
}

// Machine is the self-monitor as a pure state machine (figures 5 to 10):
// the timer, the pending external events, the detector and the one
// recovery in flight. Events go in (Tick, Event, Looked and the answers of
// the recovery's steps); Effects come out. It does no I/O and reads no
// clock: the runtime (Monitor) and the simulator (recover/sim) both drive
// this one code.
//
// A check never waits for a recovery: the recovery's steps run beside the
// checks, and a check that finds the naming node retaining another master
// abandons the recovery in flight and starts one towards the new one. A
// step's answer that arrives for an abandoned recovery is ignored.
type Machine struct {
	rules   Rules
	next    uint64   // the timer's next expiry
	pending []string // external events since the last check
	dropped int      // events beyond the cap, counted in the trigger
	looking bool     // a DoLookup is out
	job     *job
	seq     uint64
	checks  uint64
	started uint64 // recoveries started
}

// maxPending caps the external events kept between two checks; they
// coalesce into one check anyway.
const maxPending = 16

type phase uint8

const (
	aligning phase = iota + 1
	diverging
	fetching
	waitingEpoch // the master is at an older epoch: retry at retryAt
	installing
	handingOver
)

// job is the recovery in flight.
type job struct {
	seq        uint64
	target     api.Registration
	gossipAPI  string // the API address gossip gave for target at the check
	phase      phase
	deadline   uint64 // the recovery fails past it
	olderUntil uint64 // the download stops retrying an older epoch past it
	retryAt    uint64
	steps      []string
}

// NewMachine returns a machine whose timer first expires at the boundary
// after now.
func NewMachine(r Rules, now uint64) *Machine {
	r.CheckTicks = max(r.CheckTicks, 1)
	r.RetryTicks = max(r.RetryTicks, 1)
	return &Machine{rules: r, next: nextBoundary(now, r.CheckTicks)}
}

// nextBoundary is the timer's expiry after now: the next multiple of the
// period, so that members that count the same ticks check at the same
// instants (figure 5, act 835).
func nextBoundary(now, period uint64) uint64 { return (now/period + 1) * period }

// Event records an external event (figure 6): it overrides the timer, the
// next Tick runs a check. Events that arrive while a check runs coalesce
// into one more.
func (m *Machine) Event(kind, detail string) {
	if m.rules.EventsOff {
		return
	}
	if len(m.pending) >= maxPending {
		m.dropped++
		return
	}
	s := kind
	if detail != "" {
		s += ": " + detail
	}
	m.pending = append(m.pending, s)
}

// Deadline is the tick at which Tick has something to do, if nothing
// happens before: the timer, a download retry, or the recovery's bound.
// With events pending it is 0: tick at once.
func (m *Machine) Deadline() uint64 {
	if len(m.pending) > 0 && !m.looking {
		return 0
	}
	d := m.next
	if j := m.job; j != nil {
		d = min(d, j.deadline)
		if j.phase == waitingEpoch {
			d = min(d, j.retryAt)
		}
	}
	return d
}

// Recovering is the retained master the recovery in flight aligns to (0:
// none).
func (m *Machine) Recovering() uint64 {
	if m.job == nil {
		return 0
	}
	return m.job.target.ID
}

// Counters reports how many checks ran and how many recoveries started.
func (m *Machine) Counters() (checks, recoveries uint64) { return m.checks, m.started }

// Tick advances the machine to now.
func (m *Machine) Tick(now uint64) []Effect {
	var fx []Effect
	if j := m.job; j != nil {
		switch {
		case now >= j.deadline:
			fx = m.fail(fx, DoAbandon, fmt.Errorf("recovery towards %d timed out after %d ticks", j.target.ID, m.rules.RecoveryTicks))
		case j.phase == waitingEpoch && now >= j.retryAt:
			j.phase = fetching
			fx = append(fx, Effect{Kind: DoFetchState, Job: j.seq, Target: j.target})
		}
	}
	if m.looking || (len(m.pending) == 0 && now < m.next) {
		return fx
	}
	trigger := "timer"
	if len(m.pending) > 0 {
		trigger = m.pending[0]
		if more := len(m.pending) - 1 + m.dropped; more > 0 {
			trigger += fmt.Sprintf(" (+%d more)", more)
		}
		m.pending, m.dropped = m.pending[:0], 0
	}
	m.looking = true
	return append(fx, Effect{Kind: DoLookup, Trigger: trigger})
}

// Looked is the answer to DoLookup: the detector runs on in (whose
// Recovering the machine fills in) and the machine acts on its decision.
// The timer is reset after every check (act 855).
func (m *Machine) Looked(now uint64, in Input) (Verdict, []Effect) {
	m.looking = false
	m.checks++
	m.next = nextBoundary(now, m.rules.CheckTicks)
	in.Recovering = m.Recovering()
	v := Detect(in)
	if in.Paused {
		// Maintenance: detect and report, change no role.
		if v.Decision != Consistent && v.Decision != Wait {
			v.Reason = "group paused, not acted on: " + v.Reason
		}
		return v, nil
	}
	var fx []Effect
	switch v.Decision {
	case Consistent:
		// Act 1060 beyond recovery: the back-up that ranks first keeps
		// asking its master for a planned handover until it holds
		// mastership (the master hands over only once it is in sync).
		if in.Role == api.RoleBackup {
			fx = append(fx, Effect{Kind: DoHandover})
		}
	case Wait:
		// The handover is the group's own affair: with the naming node
		// unreachable, or no master registered yet, the back-up that
		// ranks first still asks (the rule every convergence check
		// counts, core.HandoverDue), or a group cut off from the naming
		// node would keep a master its own policy ranks below another.
		if in.Role == api.RoleBackup && in.Recovering == 0 && (in.NamingErr != nil || in.Retained == nil) {
			fx = append(fx, Effect{Kind: DoHandover})
		}
	case Reassert:
		fx = append(fx, Effect{Kind: DoReassert, Epoch: in.Retained.Epoch})
	case Release:
		fx = append(fx, Effect{Kind: DoRelease})
	case Recover:
		if j := m.job; j != nil {
			m.job = nil
			fx = append(fx, Effect{Kind: DoAbandon, Job: j.seq, Steps: j.describe(),
				Err: fmt.Errorf("abandoned: the naming node retains %d", in.Retained.ID)})
		}
		m.seq++
		m.started++
		r := *in.Retained
		m.job = &job{seq: m.seq, target: r, gossipAPI: in.RetainedAPI, phase: aligning,
			deadline: now + max(m.rules.RecoveryTicks, 1), steps: []string{fmt.Sprintf("aligned to %d", r.ID)}}
		fx = append(fx, Effect{Kind: DoAlign, Job: m.seq, Target: r})
	}
	return v, fx
}

// current returns the recovery an answer is for, nil when it is no longer
// in flight or not at that step.
func (m *Machine) current(seq uint64, p phase) *job {
	if m.job == nil || m.job.seq != seq || m.job.phase != p {
		return nil
	}
	return m.job
}

// Aligned answers DoAlign. The download comes only from a member of our
// own gossip group, at the address it announces there: an address the
// naming node gives is not enough (gossip keys keep outsiders out of the
// view).
func (m *Machine) Aligned(now uint64, seq uint64, err error) []Effect {
	j := m.current(seq, aligning)
	if j == nil {
		return nil
	}
	if err != nil {
		return m.fail(nil, DoReport, fmt.Errorf("align: %w", err))
	}
	if j.gossipAPI != j.target.Addr {
		if j.gossipAPI == "" {
			return m.fail(nil, DoReport, fmt.Errorf("retained master %d at %s is not a member of the group's gossip view", j.target.ID, j.target.Addr))
		}
		return m.fail(nil, DoReport, fmt.Errorf("retained master %d is registered at %s but announces %s in gossip", j.target.ID, j.target.Addr, j.gossipAPI))
	}
	j.phase = diverging
	return []Effect{{Kind: DoKeepDivergence, Job: j.seq, Target: j.target}}
}

// Diverged answers DoKeepDivergence: the entries after fork became records.
func (m *Machine) Diverged(now uint64, seq uint64, fork uint64, records int, err error) []Effect {
	j := m.current(seq, diverging)
	if j == nil {
		return nil
	}
	if err != nil {
		return m.fail(nil, DoReport, fmt.Errorf("keep divergence: %w", err))
	}
	j.step("fork at %d, %d divergent kept", fork, records)
	j.phase = fetching
	j.olderUntil = now + m.rules.OlderEpochTicks
	return []Effect{{Kind: DoFetchState, Job: j.seq, Target: j.target}}
}

// Fetched answers DoFetchState: the state was downloaded and verified, or
// err says why not. A retained master still at an older epoch than ours
// (agent.ErrOlderEpoch) is asked again until OlderEpochTicks have passed;
// a state that does not verify (agent.ErrDigestMismatch) fails the
// recovery before anything of ours changed.
func (m *Machine) Fetched(now uint64, seq uint64, err error) []Effect {
	j := m.current(seq, fetching)
	if j == nil {
		return nil
	}
	if err != nil {
		if errors.Is(err, agent.ErrOlderEpoch) && now < j.olderUntil {
			j.phase = waitingEpoch
			j.retryAt = now + m.rules.RetryTicks
			return nil
		}
		return m.fail(nil, DoReport, fmt.Errorf("synchronize with %d: %w", j.target.ID, err))
	}
	j.step("state of %d downloaded and verified", j.target.ID)
	j.phase = installing
	return []Effect{{Kind: DoInstall, Job: j.seq, Target: j.target}}
}

// Installed answers DoInstall with the installed state's digest.
func (m *Machine) Installed(now uint64, seq uint64, digest rlog.Digest, err error) []Effect {
	j := m.current(seq, installing)
	if j == nil {
		return nil
	}
	if err != nil {
		return m.fail(nil, DoReport, fmt.Errorf("install the state of %d: %w", j.target.ID, err))
	}
	j.step("synchronized at %d, digest %.12s", digest.Index, digest.String())
	// Act 1060: the agent of the highest priority takes mastership over in
	// a planned handover (act 1080); everyone else stays a back-up (1070).
	j.phase = handingOver
	return []Effect{{Kind: DoHandover, Job: j.seq}}
}

// HandedOver answers DoHandover of a recovery: asked tells whether this
// agent asked for a planned handover. The recovery is over.
func (m *Machine) HandedOver(now uint64, seq uint64, asked bool) []Effect {
	j := m.current(seq, handingOver)
	if j == nil {
		return nil
	}
	if asked {
		j.step("highest priority: handover from %d requested", j.target.ID)
	} else {
		j.step("back-up of %d", j.target.ID)
	}
	m.job = nil
	return []Effect{{Kind: DoReport, Job: j.seq, Steps: j.describe()}}
}

// fail ends the recovery in flight with err (act 1050): kind is DoAbandon
// when a step may still be running, DoReport when none is.
func (m *Machine) fail(fx []Effect, kind EffectKind, err error) []Effect {
	j := m.job
	m.job = nil
	fx = append(fx, Effect{Kind: kind, Job: j.seq, Steps: j.describe(), Err: err})
	if m.rules.Terminate {
		return append(fx, Effect{Kind: DoTerminate, Job: j.seq, Err: err})
	}
	return append(fx, Effect{Kind: DoQuarantine, Job: j.seq, Err: err})
}

func (j *job) step(s string, args ...any) { j.steps = append(j.steps, fmt.Sprintf(s, args...)) }

func (j *job) describe() string { return strings.Join(j.steps, " > ") }
