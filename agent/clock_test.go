package agent

import (
	"math/rand"
	"testing"
	"time"

	"github.com/mastership/mastership/agent/core"
	"github.com/mastership/mastership/agent/kv"
	"github.com/mastership/mastership/agent/rlog"
	"github.com/mastership/mastership/naming/api"
)

// The core's ticks follow wall time across a pause: a strict master that
// was stopped for longer than its lease must not count its lease as held
// when it resumes.
func TestTickClockCatchesUpAfterPause(t *testing.T) {
	n := core.NewNode(core.Config{ID: 1, Group: "g", Mode: api.ModeStrict, HeartbeatTicks: 5, ElectionTicks: 30,
		StaggerTicks: 10, WriteTicks: 50, Expect: 1, Rand: rand.New(rand.NewSource(1))}, kv.NewStore(), rlog.New(), core.HardState{})
	base := time.Unix(1000, 0)
	c := tickClock{base: base, unit: 10 * time.Millisecond}
	c.catchUp(n, base.Add(95*time.Millisecond))
	if n.Now() != 9 {
		t.Fatalf("after 95ms: %d ticks, want 9", n.Now())
	}
	// A 3 s pause: every tick it missed is replayed before the next event.
	c.catchUp(n, base.Add(3095*time.Millisecond))
	if n.Now() != 309 {
		t.Fatalf("after the pause: %d ticks, want 309", n.Now())
	}
	// A pause of hours replays a bounded number and skips the rest.
	c.catchUp(n, base.Add(10*time.Hour))
	if n.Now() != 309+maxCatchUp || c.done != uint64(10*time.Hour/(10*time.Millisecond)) {
		t.Fatalf("after hours: %d ticks, clock at %d", n.Now(), c.done)
	}
}
