package agent

import (
	"fmt"

	"github.com/mastership/mastership/gossip"
	"github.com/mastership/mastership/naming/api"
)

// ClaimAnswer is what a master does when gossip shows it a competing claim
// (package gossip, "competing claims"): it raises its own event trigger,
// sends a trigger to the claimant, and asks the naming node to re-check
// the group, in that order.
type ClaimAnswer struct {
	// Event and Detail raise the self-monitor's event trigger.
	Event, Detail string
	// Trigger is the claimant, sent a trigger with TriggerReason
	// (core.Node.Trigger).
	Trigger       uint64
	TriggerReason string
	// Recheck asks the naming node to re-check the group.
	Recheck api.RecheckRequest
}

// AnswerClaim is the answer of agent self of group to theirs, a competing
// claim gossip handed it (gossip.Compete decided that it competes). It is
// pure; the runtime (Events.CompetingClaim) and the simulator both carry it
// out.
func AnswerClaim(group string, self uint64, theirs gossip.Claim) ClaimAnswer {
	return ClaimAnswer{
		Event:         "competing-claim",
		Detail:        fmt.Sprintf("agent %d claims epoch %s", theirs.ID, theirs.Epoch),
		Trigger:       theirs.ID,
		TriggerReason: "competing claim",
		Recheck:       api.RecheckRequest{Group: group, From: self, Reason: fmt.Sprintf("competing claim from %d", theirs.ID)},
	}
}
