package recover

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/mastership/mastership/agent"
	"github.com/mastership/mastership/naming/api"
)

// recoverTo is figure 10 after the alignment (act 1010, done by the loop
// before it starts this): keep the divergent writes, download the retained
// master's state (1020), synchronize and verify (1030, 1040), and assign
// the state (1070: back-up; 1060 and 1080: a handover request for the
// agent that ranks first). It runs on its own goroutine; every call honours
// ctx, which the loop cancels to abandon it. It returns the steps taken,
// for status.
func (m *Monitor) recoverTo(ctx context.Context, a Agent, retained api.Registration) (string, error) {
	steps := []string{fmt.Sprintf("aligned to %d", retained.ID)}
	step := func(s string, args ...any) {
		steps = append(steps, fmt.Sprintf(s, args...))
		m.logger.Info("recovery step", "step", steps[len(steps)-1], "retained", retained.ID)
	}
	done := func() string { return strings.Join(steps, " > ") }

	// Only a member of our own gossip group, at the address it announces
	// there, is downloaded from: an address the naming node gives is not
	// enough (gossip keys keep outsiders out of the view).
	if gaddr := a.PeerAPI(retained.ID); gaddr != retained.Addr {
		if gaddr == "" {
			return done(), fmt.Errorf("retained master %d at %s is not a member of the group's gossip view", retained.ID, retained.Addr)
		}
		return done(), fmt.Errorf("retained master %d is registered at %s but announces %s in gossip", retained.ID, retained.Addr, gaddr)
	}

	// Keep divergence: entries after the fork point become records.
	fork, n, err := a.KeepDivergence(ctx, retained.ID, retained.Addr)
	if err != nil {
		return done(), fmt.Errorf("keep divergence: %w", err)
	}
	step("fork at %d, %d divergent kept", fork, n)

	// Acts 1020 to 1040: download, synchronize, verify. The retained master
	// may still be at an older epoch than ours until it reasserts.
	deadline := time.Now().Add(m.cfg.OlderEpochWait)
	retry := time.NewTicker(20 * time.Millisecond)
	defer retry.Stop()
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
		case <-retry.C:
		}
	}
	// Act 1060: the agent of the highest priority takes mastership over in
	// a planned handover (act 1080); everyone else stays a back-up (1070).
	if asked, _ := a.RequestHandover(); asked {
		step("highest priority: handover from %d requested", retained.ID)
		return done(), nil
	}
	step("back-up of %d", retained.ID)
	return done(), nil
}
