package recover

import (
	"errors"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
)

// Figure 10, act 1050: with on-failure=terminate a failed recovery ends the
// process with the documented code.
func TestFailTerminates(t *testing.T) {
	code := -1
	m := New(Config{OnFailure: "terminate", Exit: func(c int) { code = c }, Logger: hclog.NewNullLogger()})
	m.logger = m.cfg.Logger
	m.fail(nil, errors.New("synchronize: unreachable"))
	if code != ExitRecoveryFailed {
		t.Fatalf("exit code %d, want %d", code, ExitRecoveryFailed)
	}
}

// The timer's expiries fall on common boundaries of the period, so the
// members of a group check together (figure 5, act 835).
func TestNextCheckAligned(t *testing.T) {
	period := 300 * time.Millisecond
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, off := range []time.Duration{0, time.Millisecond, 299 * time.Millisecond, 300 * time.Millisecond, 7*time.Second + 13*time.Millisecond} {
		now := base.Add(off)
		next := NextCheck(now, period)
		if !next.After(now) || next.Sub(now) > period || next.Sub(base)%period != 0 {
			t.Errorf("NextCheck(%s) = %s", off, next.Sub(base))
		}
	}
}

// Events raised while a check runs coalesce into one more check.
func TestEventsCoalesce(t *testing.T) {
	m := New(Config{})
	for i := 0; i < 5; i++ {
		m.Event("naming-conflict-resolved", "retained 1")
	}
	if n := len(m.wake); n != 1 {
		t.Fatalf("%d wake-ups queued, want 1", n)
	}
	if len(m.pending) != 5 {
		t.Fatalf("%d triggers kept, want 5", len(m.pending))
	}
	off := New(Config{EventsOff: true})
	off.Event("x", "y")
	if len(off.wake) != 0 {
		t.Fatal("events off still woke the monitor")
	}
}
