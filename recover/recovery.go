package recover

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/mastership/mastership/agent"
	"github.com/mastership/mastership/agent/core"
	"github.com/mastership/mastership/naming/api"
)

// olderEpochWait bounds how long a recovery waits for the retained master to
// reassert above the epoch this agent followed.
const olderEpochWait = 3 * time.Second

// recoverTo is figure 10: align to the retained master (act 1010), keep the
// divergent writes, download its state (1020), synchronize and verify
// (1030, 1040), and assign the state (1070: back-up). It returns the steps
// taken, for status.
func (m *Monitor) recoverTo(ctx context.Context, a *agent.Agent, retained api.Registration) (string, error) {
	var steps []string
	step := func(s string, args ...any) {
		steps = append(steps, fmt.Sprintf(s, args...))
		m.logger.Info("recovery step", "step", steps[len(steps)-1], "retained", retained.ID)
	}
	done := func() string { return strings.Join(steps, " > ") }

	// Act 1010: alignment. Stop acting as master at once.
	if err := a.Do(func(n *core.Node) { n.BeginRecovery(retained.ID) }); err != nil {
		return done(), err
	}
	step("aligned to %d", retained.ID)

	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	// Keep divergence: entries after the fork point become records.
	fork, n, err := a.KeepDivergence(ctx, retained.ID, retained.Addr)
	if err != nil {
		return done(), fmt.Errorf("keep divergence: %w", err)
	}
	step("fork at %d, %d divergent kept", fork, n)

	// Acts 1020 to 1040: download, synchronize, verify. The retained master
	// may still be at an older epoch than ours until it reasserts.
	deadline := time.Now().Add(olderEpochWait)
	for {
		res, err := a.Synchronize(ctx, retained.ID, retained.Addr)
		if err == nil {
			step("synchronized at %d, digest %.12s", res.Digest.Index, res.Digest.String())
			break
		}
		if !errors.Is(err, agent.ErrOlderEpoch) || time.Now().After(deadline) {
			return done(), fmt.Errorf("synchronize with %d: %w", retained.ID, err)
		}
		select {
		case <-ctx.Done():
			return done(), ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	// Act 1060: the highest priority of the group takes mastership over in
	// a planned handover (act 1080); everyone else stays a back-up (1070).
	if highestPriority(a) {
		a.Do(func(n *core.Node) { n.RequestHandover() })
		step("highest priority: handover from %d requested", retained.ID)
		return done(), nil
	}
	step("back-up of %d", retained.ID)
	return done(), nil
}

// highestPriority reports whether this agent's priority is above every
// other member's of its group, as gossip knows them.
func highestPriority(a *agent.Agent) bool {
	cfg := a.Config()
	for _, m := range a.Members() {
		if m.Meta.Group == cfg.Group && m.Meta.ID != cfg.ID && m.Meta.Priority >= cfg.Priority {
			return false
		}
	}
	return true
}
