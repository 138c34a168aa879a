// Package hook tells the managed service its role: the agent's
// on-role-change executable and Go callback, run one at a time with the
// latest state, and the outcome of every run.
//
// What fires a run is decided apart from running it: Tracker turns the
// agent's successive states into the states a service must hear about
// (a change of role, epoch or followed master; never a candidate), and
// Runner carries them out, serialized and coalesced: a state that arrives
// while a run is under way waits, and a newer one replaces it, so a slow
// hook delays the service's view but never shows it an order that did not
// happen, and never runs twice at once.
package hook

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/mastership/mastership/agent/wire"
	"github.com/mastership/mastership/naming/api"
)

// Roles a hook hears. A candidate fires nothing: the service keeps what it
// was doing until the election ends one way or the other.
const (
	RoleMaster      = "master"
	RoleBackup      = "backup"
	RoleRecovering  = "recovering"
	RoleQuarantined = "quarantined"
	RoleStopped     = "stopped"
)

// RoleOf maps an agent role to the role a hook hears; ok is false for the
// roles that fire nothing (candidate, unknown). A back-up downloading the
// master's state (syncing) is recovering: it is not a usable back-up yet.
func RoleOf(r api.Role) (string, bool) {
	switch r {
	case api.RoleMaster:
		return RoleMaster, true
	case api.RoleBackup:
		return RoleBackup, true
	case api.RoleRecovering, api.RoleSyncing:
		return RoleRecovering, true
	case api.RoleQuarantined:
		return RoleQuarantined, true
	}
	return "", false
}

// State is what a hook is told.
type State struct {
	Role string `json:"role"`
	// Previous is the role of the run before this one ("" on the first):
	// set by the Runner, so that it names what the service last heard
	// even when states were coalesced in between.
	Previous string `json:"previous_role"`
	Group    string `json:"group"`
	ID       uint64 `json:"id"`
	// Epoch is the fencing token: it grows with every mastership, and a
	// service that stamps its writes with it can refuse older ones.
	Epoch      api.Epoch `json:"epoch"`
	Master     uint64    `json:"master"`      // 0: none known
	MasterAddr string    `json:"master_addr"` // its API address; "" when unknown
}

// Args are the executable's arguments: ROLE PREVIOUS_ROLE GROUP ID.
func (s State) Args() []string {
	return []string{s.Role, s.Previous, s.Group, strconv.FormatUint(s.ID, 10)}
}

// EnvNames are the variables Env sets, in its order.
func EnvNames() []string {
	return []string{"MASTERSHIP_ROLE", "MASTERSHIP_PREVIOUS_ROLE", "MASTERSHIP_GROUP", "MASTERSHIP_ID",
		"MASTERSHIP_EPOCH", "MASTERSHIP_EPOCH_ID", "MASTERSHIP_MASTER", "MASTERSHIP_MASTER_ADDR"}
}

// Env is the executable's environment on top of the agent's own.
func (s State) Env() []string {
	master := ""
	if s.Master != 0 {
		master = strconv.FormatUint(s.Master, 10)
	}
	vals := []string{s.Role, s.Previous, s.Group, strconv.FormatUint(s.ID, 10),
		strconv.FormatUint(s.Epoch.Term, 10), strconv.FormatUint(s.Epoch.ID, 10), master, s.MasterAddr}
	env := make([]string, len(vals))
	for i, name := range EnvNames() {
		env[i] = name + "=" + vals[i]
	}
	return env
}

// same tells whether two states are one to a service: role, epoch and
// followed master.
func (s State) same(o State) bool {
	return s.Role == o.Role && s.Epoch == o.Epoch && s.Master == o.Master
}

// Tracker decides which of the agent's successive states a hook hears: the
// first one, then each change of role, epoch or followed master. It is
// pure; the agent's loop feeds it.
type Tracker struct {
	last *State
}

// Next takes the agent's state now (role as the agent has it) and returns
// the state to announce, if any. A master's own address is given by the
// caller in s.MasterAddr.
func (t *Tracker) Next(role api.Role, s State) (State, bool) {
	r, ok := RoleOf(role)
	if !ok {
		return State{}, false
	}
	s.Role = r
	if t.last != nil && t.last.same(s) {
		return State{}, false
	}
	t.last = &s
	return s, true
}

// Outcome is one run of a hook, as `info` shows it.
type Outcome = wire.HookRun

// stderrTail is how much of a hook's standard error an Outcome keeps.
const stderrTail = 2048

// Exec runs the executable at path with the state's arguments and
// environment, for at most timeout: past it the process (and the process
// group it started) is killed. Standard output is discarded; the tail of
// standard error is kept. It never returns before the process is gone.
func Exec(ctx context.Context, hookName, path string, s State, timeout time.Duration) Outcome {
	o := Outcome{Hook: hookName, Role: s.Role, Epoch: s.Epoch, Start: time.Now(), ExitCode: -1}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, s.Args()...)
	cmd.Env = append(os.Environ(), s.Env()...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = time.Second
	tail := &tailBuffer{max: stderrTail}
	cmd.Stderr = tail
	err := cmd.Run()
	o.DurationMS = float64(time.Since(o.Start).Microseconds()) / 1000
	o.StderrTail = tail.String()
	var exit *exec.ExitError
	if errors.Is(err, exec.ErrWaitDelay) && cmd.ProcessState != nil && cmd.ProcessState.Success() {
		// It exited 0, and left a child holding its stderr (a service
		// it started in the background): a success.
		err = nil
	}
	switch {
	case ctx.Err() == context.DeadlineExceeded:
		o.TimedOut = true
		o.Error = fmt.Sprintf("killed after its timeout of %s", timeout)
	case errors.As(err, &exit):
		o.ExitCode = exit.ExitCode()
		if o.ExitCode < 0 {
			o.Error = exit.Error()
		}
	case err != nil:
		o.Error = err.Error()
	default:
		o.ExitCode = 0
	}
	return o
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = append(t.b[:0], t.b[len(t.b)-t.max:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(bytes.ToValidUTF8(t.b, []byte("?")))
}

// Config is a Runner's: what to run and for how long.
type Config struct {
	// Path is the on-role-change executable; "" runs none.
	Path string
	// PrePromote is the promotion gate's executable, for Stats only (the
	// agent runs it).
	PrePromote string
	// Timeout bounds each run of Path.
	Timeout time.Duration
	// Callback, when set, is called with each state before Path runs (a Go
	// embedder's Options.OnRoleChange). It must return promptly: runs
	// wait for it.
	Callback func(State)
	Logger   hclog.Logger
}

// keptOutcomes is how many recent outcomes a Runner keeps for info.
const keptOutcomes = 8

// Runner runs the on-role-change hook for one agent, one run at a time,
// each with the latest state announced.
type Runner struct {
	cfg  Config
	wake chan struct{}

	mu      sync.Mutex
	pending *State
	running bool
	lastRun *State // the last state run: its role is the next one's Previous
	runs    uint64
	failed  uint64
	recent  []Outcome
	idle    *sync.Cond
}

// NewRunner returns a Runner; Run carries out what Notify asks.
func NewRunner(cfg Config) *Runner {
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	r := &Runner{cfg: cfg, wake: make(chan struct{}, 1)}
	r.idle = sync.NewCond(&r.mu)
	return r
}

// Enabled tells whether there is anything to run.
func (r *Runner) Enabled() bool { return r.cfg.Path != "" || r.cfg.Callback != nil }

// Notify asks for a run with s; it never blocks. A state not yet run is
// replaced.
func (r *Runner) Notify(s State) {
	if !r.Enabled() {
		return
	}
	r.mu.Lock()
	r.pending = &s
	r.mu.Unlock()
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// Run carries out the runs until ctx ends; a run under way then finishes
// (within its timeout).
func (r *Runner) Run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.wake:
		}
		for r.runPending(context.WithoutCancel(ctx)) {
		}
	}
}

// runPending runs the pending state, if any, and reports whether it ran.
func (r *Runner) runPending(ctx context.Context) bool {
	r.mu.Lock()
	for r.running { // an Exclusive or RunNow under way
		r.idle.Wait()
	}
	p := r.pending
	r.pending = nil
	if p != nil && r.lastRun != nil && r.lastRun.same(*p) {
		// The states in between were coalesced away and the latest is
		// what the service last heard: nothing to tell.
		r.mu.Unlock()
		return true
	}
	var s State
	if p != nil {
		r.running = true
		s = r.begin(*p)
	}
	r.mu.Unlock()
	if p == nil {
		return false
	}
	r.runOne(ctx, s)
	r.mu.Lock()
	r.running = false
	r.idle.Broadcast()
	r.mu.Unlock()
	return true
}

// begin sets s.Previous and makes s the last run; r.mu is held.
func (r *Runner) begin(s State) State {
	if r.lastRun != nil {
		s.Previous = r.lastRun.Role
	}
	r.lastRun = &s
	return s
}

func (r *Runner) runOne(ctx context.Context, s State) {
	if r.cfg.Callback != nil {
		start := time.Now()
		r.cfg.Callback(s)
		r.record(Outcome{Hook: "callback", Role: s.Role, Epoch: s.Epoch, Start: start,
			DurationMS: float64(time.Since(start).Microseconds()) / 1000})
	}
	if r.cfg.Path == "" {
		return
	}
	o := Exec(ctx, "on-role-change", r.cfg.Path, s, r.cfg.Timeout)
	r.record(o)
	args := []any{"role", s.Role, "previous", s.Previous, "epoch", s.Epoch, "master", s.Master,
		"exit", o.ExitCode, "ms", o.DurationMS}
	if o.OK() {
		r.cfg.Logger.Info("on-role-change hook ran", args...)
		return
	}
	if o.Error != "" {
		args = append(args, "error", o.Error)
	}
	if o.StderrTail != "" {
		args = append(args, "stderr", o.StderrTail)
	}
	r.cfg.Logger.Warn("on-role-change hook failed", args...)
}

// Record keeps the outcome of a hook run elsewhere (the promotion gate)
// with the runner's own.
func (r *Runner) Record(o Outcome) { r.record(o) }

// LastRole is the role of the last run ("" before the first).
func (r *Runner) LastRole() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.lastRun == nil {
		return ""
	}
	return r.lastRun.Role
}

func (r *Runner) record(o Outcome) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.runs++
	if !o.OK() {
		r.failed++
	}
	r.recent = append(r.recent, o)
	if len(r.recent) > keptOutcomes {
		r.recent = append(r.recent[:0], r.recent[len(r.recent)-keptOutcomes:]...)
	}
}

// Stats are a Runner's counters and recent outcomes, oldest first.
type Stats = wire.Hooks

// Stats returns the counters and recent outcomes.
func (r *Runner) Stats() Stats {
	r.mu.Lock()
	defer r.mu.Unlock()
	return Stats{OnRoleChange: r.cfg.Path, PrePromote: r.cfg.PrePromote, Runs: r.runs, Failed: r.failed, Recent: append([]Outcome(nil), r.recent...)}
}

// Exclusive runs f while no hook runs, and holds the next run until f
// returned: the promotion gate runs one at a time with the role hook.
func (r *Runner) Exclusive(f func()) {
	r.mu.Lock()
	for r.running {
		r.idle.Wait()
	}
	r.running = true
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		r.running = false
		r.idle.Broadcast()
		r.mu.Unlock()
		select { // a state that arrived meanwhile runs now
		case r.wake <- struct{}{}:
		default:
		}
	}()
	f()
}

// RunNow runs s at once, after any run under way and instead of any state
// still pending: the last word of an agent that stops.
func (r *Runner) RunNow(ctx context.Context, s State) {
	if !r.Enabled() {
		return
	}
	r.mu.Lock()
	r.pending = nil
	for r.running {
		r.idle.Wait()
	}
	r.running = true
	s = r.begin(s)
	r.mu.Unlock()
	r.runOne(ctx, s)
	r.mu.Lock()
	r.running = false
	r.idle.Broadcast()
	r.mu.Unlock()
}

// CheckExecutable tells whether path names a regular file the agent may
// execute, so that a hook that cannot run is refused at start rather than
// at the first change of role.
func CheckExecutable(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("not a regular file (%s)", fi.Mode().Type())
	}
	if fi.Mode().Perm()&0o111 == 0 {
		return errors.New("not executable (chmod +x)")
	}
	return nil
}

// Health turns the results of the managed service's checks into its
// health: unhealthy after Failures failed checks in a row, healthy again
// at the first check that passes. It is pure; the agent feeds it.
type Health struct {
	Failures  int // failed checks in a row that make the service unhealthy
	failed    int
	unhealthy bool
}

// Observe records one check and returns the health, and whether this
// check changed it.
func (h *Health) Observe(ok bool) (healthy, changed bool) {
	was := h.unhealthy
	if ok {
		h.failed, h.unhealthy = 0, false
	} else {
		h.failed++
		if h.failed >= max(h.Failures, 1) {
			h.unhealthy = true
		}
	}
	return !h.unhealthy, h.unhealthy != was
}

// Failed is the number of failed checks in a row.
func (h *Health) Failed() int { return h.failed }
