package agent

import (
	"testing"
	"time"

	"github.com/mastership/mastership/agent/core"
	"github.com/mastership/mastership/naming/api"
)

// The role history behind mastership_agent_elections_total and
// mastership_agent_failover_seconds: an election counts when the agent
// becomes master; a failover runs from losing the master to having one
// again, once, whoever it is.
func TestRoleStats(t *testing.T) {
	t0 := time.Unix(1000, 0)
	backup := core.Status{Role: api.RoleBackup, Master: 1}
	candidate := core.Status{Role: api.RoleCandidate}
	master := core.Status{Role: api.RoleMaster, Master: 2}
	r := newRoleStats()
	r.note(core.Status{}, backup, t0) // start: no failover, no election
	r.note(backup, candidate, t0.Add(time.Second))
	r.note(candidate, candidate, t0.Add(1200*time.Millisecond)) // a new term: still the same failover
	r.note(candidate, master, t0.Add(1300*time.Millisecond))
	r.note(master, master, t0.Add(2*time.Second))
	if r.elections != 1 || r.failover.Count != 1 || r.failover.Sum < 0.299 || r.failover.Sum > 0.301 {
		t.Fatalf("elections %d, failovers %d lasting %.3fs; want 1, 1, 0.3s", r.elections, r.failover.Count, r.failover.Sum)
	}
	// Losing the master and following another: a failover, no election.
	r.note(master, core.Status{Role: api.RoleBackup}, t0.Add(3*time.Second))
	r.note(core.Status{Role: api.RoleBackup}, core.Status{Role: api.RoleBackup, Master: 3}, t0.Add(3500*time.Millisecond))
	if r.elections != 1 || r.failover.Count != 2 {
		t.Fatalf("elections %d, failovers %d; want 1, 2", r.elections, r.failover.Count)
	}
}
