package agent

import (
	"context"

	"github.com/mastership/mastership/agent/core"
	"github.com/mastership/mastership/gossip"
	"github.com/mastership/mastership/naming/api"
)

// MetJoinForTest is metJoin over join resolved as Start resolves it.
func MetJoinForTest(members []gossip.Member, join []string) bool {
	return metJoin(members, resolveJoin(context.Background(), join))
}

// DoForTest runs f on the agent's loop, as its own calls do.
func DoForTest(a *Agent, f func()) error { return a.do(f) }

// PendingOpsForTest is how many calls wait for the loop.
func PendingOpsForTest(a *Agent) int { return len(a.ops) }

// NoteRegisteredForTest hands the agent a registration as its naming node
// would.
func NoteRegisteredForTest(a *Agent, m *api.Registration) { a.noteRegistered(m) }

// OnSendForTest makes f see, on the agent's loop, every message the loop
// hands to the transport from now on.
func OnSendForTest(a *Agent, f func(core.Message)) error { return a.do(func() { a.onSend = f }) }
