package naming

import (
	"fmt"
	"slices"

	"github.com/mastership/mastership/naming/api"
)

// Candidate is one live registration taking part in a multiple-registration
// decision.
type Candidate struct {
	ID       uint64
	Priority int
	Epoch    api.Epoch
}

// Retain is the multiple-registration removal decision (patent figure 12,
// act 1220): from several live registrations of one group it picks the one
// to keep and lists the others, sorted by ID. It is pure: same candidates,
// same answer, whatever their order.
//
//   - lowest-id keeps the lowest agent ID, as in the patent.
//   - priority keeps the highest priority, then the lowest ID.
//
// Retain panics on an empty candidate list or an unknown policy: callers
// validate both first.
func Retain(policy api.Policy, cands []Candidate) (retained Candidate, removed []uint64) {
	if len(cands) == 0 {
		panic("naming: Retain with no candidates")
	}
	better := func(a, b Candidate) bool { return a.ID < b.ID }
	switch policy {
	case api.PolicyLowestID:
	case api.PolicyPriority:
		better = func(a, b Candidate) bool {
			if a.Priority != b.Priority {
				return a.Priority > b.Priority
			}
			return a.ID < b.ID
		}
	default:
		panic(fmt.Sprintf("naming: Retain with unknown policy %q", policy))
	}
	retained = cands[0]
	for _, c := range cands[1:] {
		if better(c, retained) {
			retained = c
		}
	}
	for _, c := range cands {
		if c.ID != retained.ID {
			removed = append(removed, c.ID)
		}
	}
	slices.Sort(removed)
	removed = slices.Compact(removed)
	return retained, removed
}
