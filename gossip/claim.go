package gossip

import (
	"fmt"
	"sort"

	"github.com/hashicorp/memberlist"

	"github.com/mastership/mastership/naming/api"
)

// Claim is an agent's gossip statement "I am master of Group at Epoch". A
// claim is withdrawn (Withdrawn set, same epoch) when the agent stops being
// master; a withdrawal beats the claim it withdraws, and a newer epoch beats
// both, so every member converges on the same newest word from each agent
// whatever order broadcasts and push/pull exchanges arrive in.
type Claim struct {
	Group string    `json:"group" codec:"g"`
	ID    uint64    `json:"id" codec:"i"`
	Epoch api.Epoch `json:"epoch" codec:"e"`
	// API is the claimant's API address, so that a competing master can send
	// it a trigger directly.
	API string `json:"api" codec:"a"`
	// Withdrawn marks the end of the mastership at Epoch.
	Withdrawn bool `json:"withdrawn,omitempty" codec:"w"`
}

// Validate checks a claim received from the network or given to Gossip.Claim.
func (c Claim) Validate() error {
	if err := api.ValidateGroup(c.Group); err != nil {
		return fmt.Errorf("%w: %v", ErrBadClaim, err)
	}
	if err := api.ValidateID(c.ID); err != nil {
		return fmt.Errorf("%w: %v", ErrBadClaim, err)
	}
	if c.Epoch.ID != c.ID || c.Epoch.Term == 0 {
		// A master's epoch is in its own name and past term 0.
		return fmt.Errorf("%w: epoch %s is not a mastership of agent %d", ErrBadClaim, c.Epoch, c.ID)
	}
	if c.API != "" {
		if err := api.ValidateAddr("api", c.API); err != nil {
			return fmt.Errorf("%w: %v", ErrBadClaim, err)
		}
	}
	return nil
}

// String renders a claim for logs, for example "g/4@3.4".
func (c Claim) String() string {
	s := NodeName(c.Group, c.ID) + "@" + c.Epoch.String()
	if c.Withdrawn {
		s += "(withdrawn)"
	}
	return s
}

func (c Claim) key() agentKey { return agentKey{c.Group, c.ID} }

// agentKey identifies an agent in the whole cluster.
type agentKey struct {
	group string
	id    uint64
}

// Compete decides whether theirs competes with the local agent described by
// self: both are masters of the same group and they are different agents.
// It returns theirs when it does. It is pure; Gossip calls it on every claim
// it accepts and on every UpdateMeta that makes this agent master.
func Compete(self Meta, theirs Claim) (Claim, bool) {
	if self.Role != api.RoleMaster || theirs.Withdrawn {
		return Claim{}, false
	}
	if theirs.Group != self.Group || theirs.ID == self.ID {
		return Claim{}, false
	}
	return theirs, true
}

// claimEntry is the newest word known from one agent. dropped is set when
// the agent was seen dead or left: the claim no longer counts, but its epoch
// still fences older claims from the same agent.
type claimEntry struct {
	claim   Claim
	dropped bool
}

// live reports whether the entry is a claim that counts.
func (e claimEntry) live() bool { return !e.dropped && !e.claim.Withdrawn }

// mergeClaim decides what a member does with claim c given the entry it
// holds for c's agent (ok false when it holds none). It returns the new entry
// and whether c was accepted (stored and worth re-broadcasting). Rules:
//   - an older epoch than the one known is ignored;
//   - at the same epoch a withdrawal beats a claim, a claim revives an entry
//     dropped for a dead member that is back, and anything else is a
//     duplicate;
//   - a newer epoch always wins.
//
// It is pure; whether the claimant is alive is decided by the caller.
func mergeClaim(e claimEntry, ok bool, c Claim) (claimEntry, bool) {
	if !ok {
		return claimEntry{claim: c}, true
	}
	switch c.Epoch.Compare(e.claim.Epoch) {
	case -1:
		return e, false
	case 1:
		return claimEntry{claim: c}, true
	}
	switch {
	case e.claim.Withdrawn:
		return e, false
	case c.Withdrawn:
		return claimEntry{claim: c}, true
	case e.dropped:
		return claimEntry{claim: c}, true
	}
	return e, false
}

// liveClaims returns the live claims of group (every group when group is
// ""), sorted by ID then group.
func liveClaims(entries map[agentKey]claimEntry, group string) []Claim {
	var out []Claim
	for _, e := range entries {
		if e.live() && (group == "" || e.claim.Group == group) {
			out = append(out, e.claim)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].ID != out[j].ID {
			return out[i].ID < out[j].ID
		}
		return out[i].Group < out[j].Group
	})
	return out
}

// Message types: the first byte of every user message and broadcast.
const (
	msgClaim byte = 1
	msgLeave byte = 2
)

// leaveIntent is broadcast by Gossip.Leave: the named run of an agent
// leaves on purpose.
type leaveIntent struct {
	Name string `codec:"n"`
	Boot uint64 `codec:"b"`
}

// encodeClaimMsg frames a claim as a user message.
func encodeClaimMsg(c Claim) ([]byte, error) {
	b, err := api.Encode(c)
	if err != nil {
		return nil, err
	}
	return append([]byte{msgClaim}, b...), nil
}

// pushPullState is what LocalState sends and MergeRemoteState reads: every
// claim entry known, including withdrawn ones, so that a healed side learns
// both claims and their ends.
type pushPullState struct {
	Version uint8         `codec:"v"`
	Claims  []Claim       `codec:"c"`
	Left    []leaveIntent `codec:"l"`
}

// claimBroadcast is one claim in memberlist's TransmitLimitedQueue. Its name
// is the claimant, so a newer claim from the same agent replaces an older one
// still waiting to be sent.
type claimBroadcast struct {
	name string
	msg  []byte
}

var _ memberlist.NamedBroadcast = (*claimBroadcast)(nil)

func (b *claimBroadcast) Invalidates(o memberlist.Broadcast) bool {
	n, ok := o.(memberlist.NamedBroadcast)
	return ok && n.Name() == b.name
}
func (b *claimBroadcast) Name() string    { return b.name }
func (b *claimBroadcast) Message() []byte { return b.msg }
func (b *claimBroadcast) Finished()       {}
