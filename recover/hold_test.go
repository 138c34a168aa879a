package recover_test

import (
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mastership/mastership/agent"
	"github.com/mastership/mastership/agent/agenttest"
	"github.com/mastership/mastership/gossip"
	"github.com/mastership/mastership/naming/api"
	"github.com/mastership/mastership/recover"
)

// checksOf returns agent id's self-monitor counters.
func checksOf(c *agenttest.Cluster, id uint64) uint64 {
	info := c.Members[id].Agent.Info()
	if info.Monitor == nil {
		return 0
	}
	return info.Monitor.Checks
}

// Nothing holds the self-monitor (figure 8, acts 825 to 855, and the event
// override of act 840). Agent 3 recovers towards master 1 while 1's API
// hangs for it (calls accepted, never answered): 3 keeps checking at its
// period meanwhile. Then 1 dies, 2 is elected and registered, and the
// naming node's trigger makes 3 abandon the recovery towards 1 and follow
// 2 (calls to 1 hang; calls to 2 answer).
func TestMonitorNotHeldByHungPeer(t *testing.T) {
	period := 300 * time.Millisecond // the default 100 x 3ms
	c := agenttest.New(t, agenttest.Options{Agents: 3, Mode: "strict", Priorities: []int{3, 2, 1}, Base: 46,
		Monitor: monitors(recover.Config{})})
	if m := c.WaitStable(20 * time.Second); m != 1 {
		t.Fatalf("master %d, want 1", m)
	}
	for i := 0; i < 20; i++ {
		if _, err := c.Put(1, fmt.Sprintf("k%d", i), "v"); err != nil {
			t.Fatal(err)
		}
	}
	c.StallAPI(1, 3)
	// A failed recovery elsewhere left 3 quarantined: its next check
	// recovers towards the retained 1, whose API hangs.
	if err := c.Members[3].Agent.Quarantine(t.Context()); err != nil {
		t.Fatal(err)
	}
	c.WaitFor(10*time.Second, "3 recovering towards 1", func() bool {
		st := c.Members[3].Agent.Status()
		return st.Role == api.RoleRecovering && st.Master == 1
	})
	// Every agent but the hung one goes on checking at its period: 3,
	// whose recovery hangs, and 2.
	before2, before3, start := checksOf(c, 2), checksOf(c, 3), time.Now()
	c.WaitFor(20*period, "2 and 3 checking while 3's recovery hangs", func() bool {
		return checksOf(c, 2) >= before2+5 && checksOf(c, 3) >= before3+5
	})
	t.Logf("5 checks each of 2 and 3 in %s while 3's recovery hung (period %s)", time.Since(start), period)
	if st := c.Members[3].Agent.Status(); st.Role != api.RoleRecovering || st.Master != 1 {
		t.Fatalf("3 is %s following %d; want its recovery towards 1 still hanging", st.Role, st.Master)
	}

	c.Kill(1)
	c.WaitFor(20*time.Second, "2 registered", func() bool { return c.Registered() == 2 })
	registered := time.Now()
	c.WaitFor(20*time.Second, "3 a synced back-up of 2", c.Stable)
	t.Logf("3 followed 2 %s after 2's registration", time.Since(registered))
	if v, found := c.Members[3].Agent.Get("k19"); !found || v != "v" {
		t.Fatal("3 lacks an acknowledged write after its recovery")
	}
}

// A planned handover in flight when the old master dies: the back-up that
// asked, and the others, must not stay attached to the dead master.
// 2 ranks first; it comes back after 1 took over, catches up and asks for
// mastership; 1's streams to 2 hang from then on, so the handover cannot
// complete; 1 dies while it hands over: killed (its streams close), or cut
// off from everyone, naming node included, with its streams left hanging
// (a silent death). The group has a serving master within a few election
// timeouts, and every back-up follows it. 2's self-monitor is off after its
// restart, so that the test, not the timer, chooses when 2 asks.
func TestHandoverInFlightMasterKilled(t *testing.T) {
	for i, death := range []string{"killed", "cut off"} {
		t.Run(death, func(t *testing.T) { handoverInFlightMasterLost(t, 47+i, death == "killed") })
	}
}

func handoverInFlightMasterLost(t *testing.T, base int, kill bool) {
	var restarted atomic.Bool
	c := agenttest.New(t, agenttest.Options{Agents: 3, Mode: "strict", Priorities: []int{3, 9, 1}, Base: base,
		Monitor: func(id uint64) agent.Monitor {
			if id == 2 && restarted.Load() {
				return nil
			}
			return recover.New(recover.Config{})
		}})
	if m := c.WaitStable(20 * time.Second); m != 2 {
		t.Fatalf("master %d, want 2", m)
	}
	c.Kill(2)
	c.WaitFor(20*time.Second, "1 master and registered", func() bool {
		ms := c.Masters()
		return len(ms) == 1 && ms[0] == 1 && c.Registered() == 1
	})
	for i := 0; i < 10; i++ {
		if _, err := c.Put(1, fmt.Sprintf("k%d", i), "v"); err != nil {
			t.Fatal(err)
		}
	}
	restarted.Store(true)
	c.Restart(2)
	// 1 takes a handover request only from a member its own view holds
	// alive, and drops it otherwise; 2's rejoin reaches 1's gossip view on
	// its own schedule, unrelated to 2's log catching up.
	c.WaitFor(20*time.Second, "2 caught up with 1, and alive in 1's view", func() bool {
		st := c.Members[2].Agent.Status()
		return st.Master == 1 && st.CaughtUp && healthOf(c.Members[1].Agent, 2) == gossip.HealthAlive
	})
	c.StallAPI(2, 1)
	// 2 asks as its self-monitor would, at every check until 1 hands over
	// (a request that reached 1 before its view had 2 alive was dropped).
	asked := 0
	c.WaitFor(20*time.Second, "1 handing mastership over to 2", func() bool {
		if c.Members[1].Agent.Status().Transfer == 2 {
			return true
		}
		if ok, err := c.Members[2].Agent.RequestHandover(t.Context()); err != nil {
			t.Fatalf("2's handover request: %v", err)
		} else if ok {
			asked++
		}
		return false
	})
	if asked == 0 {
		t.Fatal("2 never asked for the handover")
	}
	// The handover is still in flight when 1 dies: 1 is master handing
	// over to 2, and 2 has not taken over.
	lost := time.Now()
	if st1, st2 := c.Members[1].Agent.Status(), c.Members[2].Agent.Status(); st1.Role != api.RoleMaster || st1.Transfer != 2 || st2.Role == api.RoleMaster {
		t.Fatalf("no handover in flight: 1 %s transferring to %d, 2 %s", st1.Role, st1.Transfer, st2.Role)
	}
	others := []uint64{2, 3}
	if kill {
		c.Kill(1)
		c.Heal()
	} else {
		c.Heal()
		c.Partition([]uint64{1}, others)
		c.PartitionNaming(others...)
	}
	stable := func() bool {
		ms := c.Masters()
		if len(ms) == 0 || ms[0] == 1 || c.Registered() != ms[0] {
			return false
		}
		for _, id := range others {
			if st := c.Members[id].Agent.Status(); id != ms[0] && (st.Role != api.RoleBackup || st.Master != ms[0]) {
				return false
			}
		}
		return true
	}
	c.WaitFor(20*time.Second, "one registered master of 2 and 3 followed by the other", stable)
	m := c.Masters()[0]
	if !kill {
		m = slices.DeleteFunc(c.Masters(), func(id uint64) bool { return id == 1 })[0]
	}
	c.WaitFor(20*time.Second, "the new master serving", func() bool {
		_, err := c.Put(m, "after", "loss")
		return err == nil
	})
	took := time.Since(lost)
	election := time.Duration(c.Members[m].Config.ElectionTicks) * c.Members[m].Config.TickUnit
	t.Logf("master %d serving %s after 1 was lost (election timeout %s)", m, took, election)
	// A correctness bound, not a speed target: waiting out a dead master's
	// registration TTL, or a monitor held by the hung handover, takes far
	// longer than this.
	if took > 10*election {
		t.Errorf("a serving master only %s after the loss, more than 10 election timeouts", took)
	}
	for i := 0; i < 10; i++ {
		if _, found := c.Members[m].Agent.Get(fmt.Sprintf("k%d", i)); !found {
			t.Fatalf("acknowledged write k%d lost", i)
		}
	}
	if !kill {
		// Back in the group, the old master follows the new one.
		c.Heal()
		c.WaitFor(20*time.Second, "one registered master followed by all", c.Stable)
	}
}

// A strict group started with each agent cut off from the others (the
// agents came up before their network): nobody is elected while alone, and
// once they meet exactly one master is, with no refused registration at the
// naming node.
func TestStrictIsolatedStart(t *testing.T) {
	c := agenttest.New(t, agenttest.Options{Agents: 3, Mode: "strict", Base: 48, Isolated: true,
		Monitor: monitors(recover.Config{})})
	election := 300 * time.Millisecond
	deadline := time.Now().Add(5 * election)
	for time.Now().Before(deadline) {
		if ms := c.Masters(); len(ms) > 0 {
			t.Fatalf("isolated strict agents elected %v", ms)
		}
		time.Sleep(10 * time.Millisecond)
	}
	c.Heal()
	c.WaitFor(20*time.Second, "one registered master followed by all", func() bool {
		if ms := c.Masters(); len(ms) > 1 {
			t.Fatalf("masters %v at once", ms)
		}
		return c.Stable()
	})
	events, err := c.Client.AllEvents(t.Context(), "g", 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range events {
		if ev.Kind == api.EventRegistrationRefused || ev.Kind == api.EventMasterSuperseded || ev.Kind == api.EventConflictDetected {
			t.Errorf("naming event %s (%+v): competing start-up elections", ev.Kind, ev)
		}
	}
}

// healthOf is member id's health in a's gossip view (HealthDead when a does
// not know it).
func healthOf(a *agent.Agent, id uint64) gossip.Health {
	for _, m := range a.Members() {
		if m.Meta.ID == id {
			return m.Health
		}
	}
	return gossip.HealthDead
}
