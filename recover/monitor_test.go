package recover

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/mastership/mastership/agent"
	"github.com/mastership/mastership/agent/core"
	"github.com/mastership/mastership/naming/api"
)

// The timer's expiries fall on common boundaries of the period, so the
// members of a group check together (figure 5, act 835): the monitor
// counts ticks from the epoch of wall time, and the boundary after any
// tick of one period is the same tick, a multiple of the period in wall
// time as well.
func TestNextBoundaryAligned(t *testing.T) {
	m := New(Config{Count: 100, Unit: 3 * time.Millisecond})
	d := &driver{m: m}
	period := 300 * time.Millisecond
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC) // a multiple of 300 ms since 1970
	for _, off := range []time.Duration{0, 3 * time.Millisecond, 297 * time.Millisecond, 300 * time.Millisecond,
		7*time.Second + 12*time.Millisecond} {
		now := uint64(base.Add(off).UnixNano() / int64(m.cfg.Unit))
		next := nextBoundary(now, m.rules.CheckTicks)
		at := d.wall(next)
		if next <= now || next-now > m.rules.CheckTicks || at.UnixNano()%int64(period) != 0 {
			t.Errorf("nextBoundary at %s = %s after the base", off, at.Sub(base))
		}
		// Another member, anywhere else in the same period, checks at
		// the same instant.
		start := next - m.rules.CheckTicks
		for _, other := range []uint64{start, start + 1, next - 1} {
			if got := nextBoundary(other, m.rules.CheckTicks); got != next {
				t.Errorf("a member at tick %d of the period expires at %d, another at %d", other-start, got, next)
			}
		}
	}
}

// Events raised while the loop is busy wake it once, and every one reaches
// the machine.
func TestEventsWakeOnce(t *testing.T) {
	m := New(Config{})
	for i := 0; i < 5; i++ {
		m.Event("naming-conflict-resolved", "retained 1")
	}
	if n := len(m.wake); n != 1 {
		t.Fatalf("%d wake-ups queued, want 1", n)
	}
	if len(m.events) != 5 {
		t.Fatalf("%d triggers kept, want 5", len(m.events))
	}
	off := New(Config{EventsOff: true})
	off.Event("x", "y")
	if len(off.wake) != 0 || len(off.events) != 0 {
		t.Fatal("events off still woke the monitor")
	}
}

// fakeAgent is an agent whose peer calls hang while the peer named in
// hung is the target: a fault double for the monitor's loop. Everything
// else answers at once.
type fakeAgent struct {
	mu       sync.Mutex
	role     api.Role
	master   uint64
	retained *api.Registration
	hung     uint64 // calls towards this master block until cancelled
	hangIn   string // "fork search" or "download": the call that hangs
	lookups  int
	begun    []uint64
	synced   []uint64
	cancels  int
	// busy: the agent's loop is taken (a long install): every command
	// waits until its context ends, and fails undone.
	busy    bool
	refused int // commands that gave up on the busy loop
	// stuckIn names the step that blocks on stuck whatever its context
	// says (a storage write, a decode): nothing may wait for it.
	stuckIn string
	stuck   chan struct{}
}

func (f *fakeAgent) ID() uint64            { return 3 }
func (f *fakeAgent) Logger() hclog.Logger  { return hclog.NewNullLogger() }
func (f *fakeAgent) Strict() bool          { return true }
func (f *fakeAgent) Registering() bool     { return false }
func (f *fakeAgent) PeerAlive(uint64) bool { return true }
func (f *fakeAgent) PeerAPI(id uint64) string {
	return fmt.Sprintf("127.0.0.1:%d", id)
}
func (f *fakeAgent) Status() core.Status {
	f.mu.Lock()
	defer f.mu.Unlock()
	return core.Status{ID: 3, Role: f.role, Master: f.master, Epoch: api.Epoch{Term: 1, ID: 1}}
}
func (f *fakeAgent) Paused() bool { return false }
func (f *fakeAgent) LookupMaster(ctx context.Context) (*api.Registration, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lookups++
	return f.retained, nil
}

// loop waits for the agent's loop as the real agent's commands do.
func (f *fakeAgent) loop(ctx context.Context) error {
	f.mu.Lock()
	busy := f.busy
	f.mu.Unlock()
	if !busy {
		return nil
	}
	<-ctx.Done()
	f.mu.Lock()
	f.refused++
	f.mu.Unlock()
	return ctx.Err()
}

func (f *fakeAgent) BeginRecovery(ctx context.Context, master uint64) error {
	if err := f.loop(ctx); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.role, f.master = api.RoleRecovering, master
	f.begun = append(f.begun, master)
	return nil
}
func (f *fakeAgent) wait(ctx context.Context, master uint64, call string) error {
	f.mu.Lock()
	hung := f.hung == master && f.hangIn == call
	stuck := f.hung == master && f.stuckIn == call
	f.mu.Unlock()
	if stuck {
		<-f.stuck
		return ctx.Err()
	}
	if !hung {
		return nil
	}
	<-ctx.Done()
	f.mu.Lock()
	f.cancels++
	f.mu.Unlock()
	return ctx.Err()
}
func (f *fakeAgent) KeepDivergence(ctx context.Context, master uint64, addr string) (uint64, int, error) {
	return 0, 0, f.wait(ctx, master, "fork search")
}
func (f *fakeAgent) DownloadState(ctx context.Context, master uint64, addr string) (agent.State, error) {
	return agent.State{Master: master}, f.wait(ctx, master, "download")
}
func (f *fakeAgent) Install(ctx context.Context, master uint64, st agent.State) (agent.SyncResult, error) {
	if st.Master != master {
		return agent.SyncResult{}, fmt.Errorf("install of the state of %d towards %d", st.Master, master)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.master != master {
		return agent.SyncResult{}, agent.ErrSuperseded
	}
	f.role = api.RoleBackup
	f.synced = append(f.synced, master)
	return agent.SyncResult{}, nil
}
func (f *fakeAgent) RequestHandover(context.Context) (bool, error) { return false, nil }
func (f *fakeAgent) Reassert(context.Context, api.Epoch) error     { return nil }
func (f *fakeAgent) Release(context.Context) error                 { return nil }
func (f *fakeAgent) Quarantine(ctx context.Context) error {
	if err := f.loop(ctx); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.role = api.RoleQuarantined
	return nil
}

func (f *fakeAgent) snapshot() (lookups int, begun, synced []uint64, cancels int, role api.Role) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.lookups, slices.Clone(f.begun), slices.Clone(f.synced), f.cancels, f.role
}

// runMonitor runs a monitor of period count ms over f until the test ends.
func runMonitor(t *testing.T, f *fakeAgent, count int) *Monitor {
	m := New(Config{Count: count, Unit: time.Millisecond, Logger: hclog.NewNullLogger()})
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	go func() { m.run(ctx, f); close(stopped) }()
	t.Cleanup(func() { cancel(); <-stopped })
	return m
}

// retain2 makes the naming node retain 2 and say so with a trigger, then
// waits for the agent to be a synced back-up of 2.
func retain2(t *testing.T, f *fakeAgent, m *Monitor) {
	t.Helper()
	f.mu.Lock()
	f.retained = &api.Registration{ID: 2, Addr: "127.0.0.1:2", Epoch: api.Epoch{Term: 2, ID: 2}}
	f.mu.Unlock()
	m.Event("naming-master-superseded", "retained 2")
	waitUntil(t, "a synced back-up of 2", func() bool {
		_, _, synced, _, role := f.snapshot()
		return len(synced) == 1 && synced[0] == 2 && role == api.RoleBackup
	})
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// A recovery whose peer hangs holds neither the timer nor the events: the
// loop keeps checking at its period, and when the naming node retains
// another master the hung recovery is cancelled and a new one aligns to it
// (figure 8's acts 825 to 855 and 840 with a recovery in flight).
func TestRecoveryNeverHoldsTheMonitor(t *testing.T) {
	for _, stage := range []string{"fork search", "download"} {
		t.Run(stage, func(t *testing.T) {
			f := &fakeAgent{role: api.RoleQuarantined, hung: 1, hangIn: stage,
				retained: &api.Registration{ID: 1, Addr: "127.0.0.1:1", Epoch: api.Epoch{Term: 1, ID: 1}}}
			m := runMonitor(t, f, 10)

			waitUntil(t, "a recovery towards 1", func() bool { _, begun, _, _, _ := f.snapshot(); return len(begun) == 1 })
			l0, _, _, _, _ := f.snapshot()
			waitUntil(t, "checks while the recovery hangs", func() bool { l, _, _, _, _ := f.snapshot(); return l >= l0+5 })
			if _, begun, _, cancels, role := f.snapshot(); len(begun) != 1 || cancels != 0 || role != api.RoleRecovering {
				t.Fatalf("while it hangs: begun %v cancels %d role %s; want one recovery in flight", begun, cancels, role)
			}
			if c := m.LastCheck(); c == nil || c.Decision != Wait.String() {
				t.Fatalf("last check %+v, want a wait while the recovery towards the retained master runs", c)
			}

			// The naming node now retains 2, and says so.
			retain2(t, f, m)
			_, begun, _, cancels, _ := f.snapshot()
			if !slices.Equal(begun, []uint64{1, 2}) || cancels != 1 {
				t.Fatalf("begun %v, cancels %d; want [1 2] with the hung recovery cancelled", begun, cancels)
			}
			waitUntil(t, "the recovery recorded", func() bool { a := m.LastAction(); return a != nil && a.Retained == 2 && a.Error == "" })
		})
	}
}

// A busy agent loop (a long state install) holds no check: the monitor's
// commands give up after a period, undone, and the timer keeps running;
// once the loop is free the next check aligns (figure 8, act 825).
func TestBusyAgentLoopNeverHoldsTheMonitor(t *testing.T) {
	f := &fakeAgent{role: api.RoleQuarantined, busy: true,
		retained: &api.Registration{ID: 1, Addr: "127.0.0.1:1", Epoch: api.Epoch{Term: 1, ID: 1}}}
	runMonitor(t, f, 10)

	waitUntil(t, "a command that gave up on the busy loop", func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		return f.refused >= 1
	})
	l0, _, _, _, _ := f.snapshot()
	waitUntil(t, "checks and retries while the loop is busy", func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		return f.lookups >= l0+5 && f.refused >= 3
	})
	if _, begun, _, _, role := f.snapshot(); len(begun) != 0 || role != api.RoleQuarantined {
		t.Fatalf("a command ran on a busy loop: begun %v, role %s", begun, role)
	}
	f.mu.Lock()
	f.busy = false
	f.mu.Unlock()
	waitUntil(t, "a synced back-up of 1 once the loop is free", func() bool {
		_, _, synced, _, role := f.snapshot()
		return len(synced) == 1 && synced[0] == 1 && role == api.RoleBackup
	})
}

// A step that does not heed its context (blocked in a storage write) is
// not waited for when a newer trigger abandons its recovery: the monitor
// aligns to the newly retained master at once.
func TestStuckStepNeverHoldsTheMonitor(t *testing.T) {
	f := &fakeAgent{role: api.RoleQuarantined, hung: 1, stuckIn: "fork search", stuck: make(chan struct{}),
		retained: &api.Registration{ID: 1, Addr: "127.0.0.1:1", Epoch: api.Epoch{Term: 1, ID: 1}}}
	m := runMonitor(t, f, 10)
	t.Cleanup(func() { close(f.stuck) }) // before the monitor's stop waits: cleanups run last first

	waitUntil(t, "a recovery towards 1", func() bool { _, begun, _, _, _ := f.snapshot(); return len(begun) == 1 })
	retain2(t, f, m)
	l0, _, _, _, _ := f.snapshot()
	waitUntil(t, "checks go on", func() bool { l, _, _, _, _ := f.snapshot(); return l >= l0+3 })
}

// The naming node's trigger, not the timer, realigns a monitor whose
// recovery hangs: with a period far longer than the test, only the events
// can start the checks (figure 8, act 840).
func TestTriggerRealignsAHungRecovery(t *testing.T) {
	f := &fakeAgent{role: api.RoleQuarantined, hung: 1, hangIn: "download",
		retained: &api.Registration{ID: 1, Addr: "127.0.0.1:1", Epoch: api.Epoch{Term: 1, ID: 1}}}
	m := runMonitor(t, f, 3_600_000) // one check an hour

	m.Event("naming-recheck", "")
	waitUntil(t, "a recovery towards 1", func() bool { _, begun, _, _, _ := f.snapshot(); return len(begun) == 1 })
	retain2(t, f, m)
	if a := m.LastAction(); a == nil || a.Retained != 2 || !strings.HasPrefix(a.Trigger, "naming-master-superseded") {
		t.Fatalf("last action %+v, want the realignment to 2 started by the trigger", a)
	}
	if checks, _ := m.Counters(); checks != 2 {
		t.Fatalf("%d checks, want the 2 the events started", checks)
	}
}
