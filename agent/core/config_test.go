package core

import (
	"math/rand"
	"strings"
	"testing"

	"github.com/mastership/mastership/agent/kv"
	"github.com/mastership/mastership/agent/rlog"
	"github.com/mastership/mastership/naming/api"
)

// A strict node without the group's fixed size is a programming error
// (config refuses it before): its quorum would be one of one at start-up.
func TestStrictNodeNeedsExpect(t *testing.T) {
	cfg := Config{ID: 1, Group: "g", Mode: api.ModeStrict, HeartbeatTicks: 2, ElectionTicks: 10, StaggerTicks: 5,
		WriteTicks: 20, Rand: rand.New(rand.NewSource(1))}
	func() {
		defer func() {
			r := recover()
			if r == nil || !strings.Contains(r.(string), "Expect") {
				t.Fatalf("NewNode of a strict node without Expect: panic %v, want one naming Expect", r)
			}
		}()
		NewNode(cfg, kv.NewStore(), rlog.New(), HardState{})
	}()
	cfg.Expect = 3
	n := NewNode(cfg, kv.NewStore(), rlog.New(), HardState{})
	// Alone, with 3 expected: it never makes a majority of its own.
	for i := 0; i < 50*cfg.ElectionTicks; i++ {
		n.Tick()
		n.Ready()
		if n.Role() == api.RoleMaster {
			t.Fatalf("a strict node alone with Expect 3 became master at tick %d", i)
		}
	}
	cfg.Mode, cfg.Expect = api.ModeAvailable, 0
	NewNode(cfg, kv.NewStore(), rlog.New(), HardState{}) // available: the view decides
}
