package agent

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/mastership/mastership/naming/api"
)

// An outage of the naming node is told once when it begins and once when
// it ends, with how long it lasted and how many calls failed; refusals
// are answers, not outages.
func TestReach(t *testing.T) {
	t0 := time.Unix(1000, 0)
	down := fmt.Errorf("renew: %w", errors.Join(api.ErrUnavailable, errors.New("connection refused")))
	var r reach
	step := func(at time.Duration, err error) string {
		began, ended, lasted, fails := r.note(t0.Add(at), err)
		switch {
		case began:
			return "began"
		case ended:
			return fmt.Sprintf("ended after %s, %d failed", lasted, fails)
		}
		return ""
	}
	for i, c := range []struct {
		at   time.Duration
		err  error
		want string
	}{
		{0, nil, ""},
		{time.Second, api.ErrRefused, ""}, // an answer
		{2 * time.Second, down, "began"},
		{3 * time.Second, down, ""},
		{4 * time.Second, context.DeadlineExceeded, ""},
		{6 * time.Second, api.ErrSessionExpired, "ended after 4s, 3 failed"},
		{7 * time.Second, nil, ""},
		{8 * time.Second, down, "began"},
		{9 * time.Second, nil, "ended after 1s, 1 failed"},
	} {
		if got := step(c.at, c.err); got != c.want {
			t.Errorf("call %d at %s (%v): %q, want %q", i, c.at, c.err, got, c.want)
		}
	}
}
