package agent_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/mastership/mastership/agent/agenttest"
	"github.com/mastership/mastership/naming/api"
)

func TestElectionAndFailover(t *testing.T) {
	c := agenttest.New(t, agenttest.Options{Agents: 5, Mode: "strict", Priorities: []int{5, 4, 3, 2, 1}, Base: 11})
	m := c.WaitStable(20 * time.Second)
	if m != 1 {
		t.Fatalf("master %d, want 1 (highest priority)", m)
	}
	for i := 0; i < 20; i++ {
		if _, err := c.Put(1, fmt.Sprintf("k%d", i), "v"); err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
	}
	c.Kill(1)
	start := time.Now()
	c.WaitFor(20*time.Second, "agent 2 master and registered", func() bool {
		ms := c.Masters()
		return len(ms) == 1 && ms[0] == 2 && c.Registered() == 2
	})
	t.Logf("failover took %s", time.Since(start))
	var err error
	c.WaitFor(10*time.Second, "new master serving writes", func() bool {
		_, err = c.Put(2, "after", "failover")
		return err == nil
	})
	for i := 0; i < 20; i++ {
		v, found := c.Members[2].Agent.Get(fmt.Sprintf("k%d", i))
		if !found || v != "v" {
			t.Fatalf("acknowledged write k%d lost after failover", i)
		}
	}
	if st := c.Members[2].Agent.Status(); st.Role != api.RoleMaster {
		t.Fatalf("2 is %s", st.Role)
	}
}

func TestStrictMinorityCannotElectAvailableCan(t *testing.T) {
	for _, mode := range []string{"strict", "available"} {
		t.Run(mode, func(t *testing.T) {
			base := 12
			if mode == "available" {
				base = 13
			}
			c := agenttest.New(t, agenttest.Options{Agents: 5, Mode: mode, Priorities: []int{5, 4, 3, 2, 1}, Base: base})
			c.WaitStable(20 * time.Second)
			c.Partition([]uint64{1, 2, 3}, []uint64{4, 5})
			c.PartitionNaming(1, 2, 3)
			if mode == "strict" {
				// Wait until 4 and 5 see the majority dead, then longer than
				// any election would take: they must not elect.
				c.WaitFor(10*time.Second, "minority sees the majority gone", func() bool {
					for _, m := range c.Members[4].Agent.MembersJSON() {
						if m.ID <= 3 && m.Health == "alive" {
							return false
						}
					}
					return true
				})
				deadline := time.Now().Add(2 * time.Second)
				for time.Now().Before(deadline) {
					for _, id := range []uint64{4, 5} {
						if c.Members[id].Agent.Status().Role == api.RoleMaster {
							t.Fatalf("strict minority elected %d:\n%s", id, c.Describe())
						}
					}
					time.Sleep(20 * time.Millisecond)
				}
				if ms := c.Masters(); len(ms) != 1 || ms[0] != 1 {
					t.Fatalf("masters %v", ms)
				}
				return
			}
			c.WaitFor(20*time.Second, "both sides elect", func() bool {
				ms := c.Masters()
				return len(ms) == 2 && ms[0] == 1 && ms[1] == 4
			})
			var err error
			c.WaitFor(5*time.Second, "minority master takes writes", func() bool {
				_, err = c.Put(4, "minority", "x")
				return err == nil
			})
		})
	}
}

func TestNewAgentCatchesUp(t *testing.T) {
	c := agenttest.New(t, agenttest.Options{Agents: 3, Mode: "available", Priorities: []int{3, 2, 1}, Base: 14})
	c.WaitStable(20 * time.Second)
	for i := 0; i < 700; i++ {
		if _, err := c.Put(1, fmt.Sprintf("k%d", i), "v"); err != nil {
			t.Fatal(err)
		}
	}
	c.AddAgent(4, 0)
	c.WaitStable(20 * time.Second)
	want := c.Members[1].Agent.Status().Digest
	if got := c.Members[4].Agent.Status().Digest; got != want {
		t.Fatalf("new agent digest %v, master %v", got, want)
	}
}
