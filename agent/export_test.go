package agent

import (
	"context"

	"github.com/mastership/mastership/gossip"
)

// MetJoinForTest is metJoin over join resolved as Start resolves it.
func MetJoinForTest(members []gossip.Member, join []string) bool {
	return metJoin(members, resolveJoin(context.Background(), join))
}

// DoForTest runs f on the agent's loop, as its own calls do.
func DoForTest(a *Agent, f func()) error { return a.do(f) }

// PendingOpsForTest is how many calls wait for the loop.
func PendingOpsForTest(a *Agent) int { return len(a.ops) }
