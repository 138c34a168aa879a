package e2e

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"
)

// The naming cluster on test hosts: three naming nodes and five agents,
// each on its own host; agents and commands take the list of the three.

// waitNamingLeader waits for a naming leader other than gone (-1: any) and
// returns it and when it was seen.
func (c *netCluster) waitNamingLeader(timeout time.Duration, gone int) (int, time.Time) {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if l := c.namingLeader(); l >= 0 && l != gone {
			return l, time.Now()
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("no naming leader after %s", timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// SIGKILL of the naming leader while a split brain heals: the cut is
// {naming cluster, 1, 2, 3} | {4, 5}, so the minority, unable to reach any
// naming node, elects its own master and takes writes (with the naming
// cluster reachable from both sides it would quarantine instead); at the
// heal the naming leader is killed. A new naming leader takes office within a few election
// timeouts, the registration acknowledged before is still there, and the
// group ends with one registered master, equal digests, and every
// acknowledged write in the final state or a divergence record.
func TestNetnsNamingLeaderKilledWhileHealing(t *testing.T) {
	c := newNetCluster(t, clusterOpts{agents: 5, mode: "available", namings: 3})
	c.waitRegistered(10*time.Second, 1)
	writes := c.putMany(1, "before", 5, 1000)
	c.net.partition(append(append([]*host{}, c.nhosts...), c.hosts(1, 2, 3)...), c.hosts(4, 5))
	second, _ := c.waitMaster(20*time.Second, "a master on the minority side {4,5}", 4, 5)
	writes = append(writes, c.waitAcked(10*time.Second, second, "minority-1", 4000, 1))
	writes = append(writes, c.putFrom(second, "minority", 2, 5, 4000)...)
	writes = append(writes, c.putMany(1, "majority", 5, 1000+1)...)

	leader, _ := c.waitNamingLeader(10*time.Second, -1)
	c.net.heal()
	killed := time.Now()
	c.naming[leader].kill()
	next, seen := c.waitNamingLeader(10*time.Second, leader)
	t.Logf("naming leader %d killed at the heal; %d leads %s later", leader, next, seen.Sub(killed).Round(time.Millisecond))
	if d := seen.Sub(killed); d > 5*time.Second {
		t.Errorf("new naming leader after %s, want within a few election timeouts", d)
	}
	master, at := c.waitStable(2*healBound, c.ids())
	t.Logf("one master %d followed by all %s after the heal", master, at.Sub(killed).Round(time.Millisecond))
	c.waitRegistered(10*time.Second, master)
	c.checkAcked(int(master), writes, c.ids())
	// The killed node comes back on its data dir and catches up.
	c.startNamingAt(leader)
	waitFor(t, 20*time.Second, "the restarted naming node serving the registration", func() bool {
		out, err := mastershipIn(c.nhosts[leader], "status", "-naming", c.nhosts[leader].addr(namingPort), "-group", netGroup, "-stale", "-json")
		return err == nil && strings.Contains(out, `"master": {`)
	})
}

// A naming node cut off from everything refuses registrations (a bounded
// wait, then a clear error); the other two carry on: a master killed
// meanwhile is replaced and registered through them. The node cut off is
// the naming leader, the harder case: it must step down, and the other two
// elect a leader of their own.
func TestNetnsNamingNodeCutOff(t *testing.T) {
	c := newNetCluster(t, clusterOpts{agents: 3, mode: "strict", expect: 3, namings: 3})
	c.waitRegistered(10*time.Second, 1)
	leader, _ := c.waitNamingLeader(10*time.Second, -1)
	cut := c.nhosts[leader]
	var rest []int
	for n := 0; n < len(c.net.hosts); n++ {
		if c.net.hosts[n] != cut {
			rest = append(rest, n)
		}
	}
	c.net.partition([]*host{cut}, c.hosts(rest...))
	c.vantage = c.host(2) // the harness asks from the majority's side
	waitFor(t, 10*time.Second, "the cut-off naming node to step down", func() bool {
		code, b, err := httpIn(cut, "GET", "http://"+cut.addr(namingPort)+"/v1/health", nil)
		var hr struct {
			Role string `json:"role"`
		}
		return err == nil && code == 200 && json.Unmarshal(b, &hr) == nil && hr.Role != "" && hr.Role != "leader"
	})
	out, err := mastershipIn(cut, "register", "-naming", cut.addr(namingPort), "-group", netGroup, "-id", "1",
		"-addr", c.host(1).addr(agentAPIPort))
	if err == nil || !strings.Contains(out+err.Error(), "unavailable") {
		t.Fatalf("a registration on the cut-off naming node: %v %q, want it refused as unavailable", err, out)
	}
	t.Logf("the cut-off naming node refused: %s", lastLines(err.Error(), 1))
	killed := time.Now()
	c.agents[1].kill()
	m, seen := c.waitMaster(15*time.Second, "a new master after the kill", 2, 3)
	c.waitRegistered(10*time.Second, uint64(m))
	t.Logf("agent %d master %s after the kill, registered through the two naming nodes left", m, seen.Sub(killed).Round(time.Millisecond))
	c.net.heal()
	waitFor(t, 20*time.Second, "the healed naming node serving the new master", func() bool {
		out, err := mastershipIn(cut, "status", "-naming", cut.addr(namingPort), "-group", netGroup, "-stale", "-json")
		return err == nil && strings.Contains(out, fmt.Sprintf(`"id": %d,`, m))
	})
}

// The patent's figure 2 with the naming cluster split along with the
// agents, 2 | 1: {naming 0, naming 1, agents 1..3} | {naming 2, agents
// 4, 5}. The minority elects its own master but no registration of it is
// taken (its naming node is a minority of the naming cluster); the
// majority carries on. After the heal the group has one master again.
func TestNetnsFigure2NamingSplit(t *testing.T) {
	c := newNetCluster(t, clusterOpts{agents: 5, mode: "available", namings: 3})
	c.waitRegistered(10*time.Second, 1)
	writes := c.putMany(1, "before", 5, 1000)
	majority := append([]*host{c.nhosts[0], c.nhosts[1]}, c.hosts(1, 2, 3)...)
	minority := append([]*host{c.nhosts[2]}, c.hosts(4, 5)...)
	cut := time.Now()
	c.net.partition(majority, minority)
	second, seen := c.waitMaster(20*time.Second, "a master on the minority side {4,5}", 4, 5)
	t.Logf("agent %d master of the minority %s after the cut", second, seen.Sub(cut).Round(time.Millisecond))
	writes = append(writes, c.putFrom(second, "minority", 1, 5, 4000)...)
	writes = append(writes, c.putMany(1, "majority", 5, 1000+1)...)
	if got, err := c.registered(); err != nil || got != 1 {
		t.Fatalf("registered during the split: %d %v, want 1 (the minority's naming node takes no change)", got, err)
	}
	c.net.heal()
	healed := time.Now()
	master, at := c.waitStable(2*healBound, c.ids())
	heal := at.Sub(healed)
	t.Logf("one master %d followed by all %s after the heal", master, heal)
	report(t, "figure2-naming-split", "available", heal, seen.Sub(cut))
	c.waitRegistered(10*time.Second, master)
	c.checkAcked(int(master), writes, c.ids())
}
