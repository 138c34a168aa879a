package agent_test

import (
	"testing"

	"github.com/mastership/mastership/agent"
	"github.com/mastership/mastership/gossip"
	"github.com/mastership/mastership/naming/api"
)

// A master's answer to a competing claim, for the runtime and the
// simulator alike: its own event, a trigger to the claimant, a re-check of
// its group at the naming node.
func TestAnswerClaim(t *testing.T) {
	for _, tc := range []struct {
		group string
		self  uint64
		c     gossip.Claim
		want  agent.ClaimAnswer
	}{
		{"g", 1, gossip.Claim{Group: "g", ID: 4, Epoch: api.Epoch{Term: 3, ID: 4}, API: "10.0.0.4:7000"}, agent.ClaimAnswer{
			Event: "competing-claim", Detail: "agent 4 claims epoch 3.4", Trigger: 4, TriggerReason: "competing claim",
			Recheck: api.RecheckRequest{Group: "g", From: 1, Reason: "competing claim from 4"}}},
		{"orders", 7, gossip.Claim{Group: "orders", ID: 2, Epoch: api.Epoch{Term: 9, ID: 2}}, agent.ClaimAnswer{
			Event: "competing-claim", Detail: "agent 2 claims epoch 9.2", Trigger: 2, TriggerReason: "competing claim",
			Recheck: api.RecheckRequest{Group: "orders", From: 7, Reason: "competing claim from 2"}}},
	} {
		if got := agent.AnswerClaim(tc.group, tc.self, tc.c); got != tc.want {
			t.Errorf("agent %d of %s answers %s with %+v, want %+v", tc.self, tc.group, tc.c, got, tc.want)
		}
	}
}
