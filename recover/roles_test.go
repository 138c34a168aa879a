package recover_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/mastership/mastership/agent/agenttest"
	"github.com/mastership/mastership/agent/client"
	"github.com/mastership/mastership/recover"
)

// roleAnswers asks every running agent's endpoint what over HTTP and
// returns the IDs that answered 200.
func roleAnswers(t *testing.T, c *agenttest.Cluster, what string) []uint64 {
	t.Helper()
	var ok []uint64
	for _, id := range c.Running() {
		ag, err := client.NewAPI(client.APIConfig{Addr: c.Members[id].Agent.APIAddr()})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		r, err := ag.Role(ctx, what)
		cancel()
		if err != nil {
			t.Fatalf("agent %d %s: %v", id, what, err)
		}
		if r.ID != id || r.Group != "g" {
			t.Fatalf("agent %d %s answered for %d in %q", id, what, r.ID, r.Group)
		}
		if r.OK {
			ok = append(ok, id)
		} else if r.Reason == "" {
			t.Fatalf("agent %d %s: 503 without a reason: %+v", id, what, r)
		}
	}
	return ok
}

func sameIDs(a []uint64, b ...uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// Once stable, exactly one agent answers 200 on /v1/role/master, the
// caught-up back-ups of the retained master on /v1/role/backup, every
// running agent on /v1/health but a quarantined one; after the master is
// killed, exactly one again: the new master.
func TestRoleEndpoints(t *testing.T) {
	c := agenttest.New(t, agenttest.Options{Agents: 3, Mode: "strict", Priorities: []int{3, 2, 1}, Base: 62,
		Monitor: monitors(recover.Config{})})
	if m := c.WaitStable(20 * time.Second); m != 1 {
		t.Fatalf("master %d, want 1", m)
	}
	if _, err := c.Put(1, "k", "v"); err != nil {
		t.Fatal(err)
	}
	c.WaitFor(10*time.Second, "1 alone on role/master, 2 and 3 on role/backup", func() bool {
		return sameIDs(roleAnswers(t, c, "master"), 1) && sameIDs(roleAnswers(t, c, "backup"), 2, 3) &&
			sameIDs(roleAnswers(t, c, "health"), 1, 2, 3)
	})

	if err := c.Members[3].Agent.Quarantine(); err != nil {
		t.Fatal(err)
	}
	h := c.Members[3].Agent.Role("health")
	if h.OK || !strings.Contains(h.Reason, "quarantined") {
		t.Fatalf("a quarantined agent's health: %+v", h)
	}
	if b := c.Members[3].Agent.Role("backup"); b.OK {
		t.Fatalf("a quarantined agent answers as a back-up: %+v", b)
	}

	c.Kill(1)
	c.WaitFor(20*time.Second, "2 alone on role/master", func() bool {
		return sameIDs(roleAnswers(t, c, "master"), 2)
	})
	if got := roleAnswers(t, c, "master"); !sameIDs(got, 2) {
		t.Fatalf("role/master answered 200 on %v", got)
	}
}
