package naming

import (
	"testing"
	"time"
)

func TestDeliveryEnds(t *testing.T) {
	for _, tc := range []struct {
		name                                 string
		delivered                            bool
		attempt                              int
		stale, hasSession, sessionLive, ends bool
	}{
		{"delivered", true, 1, false, true, true, true},
		{"failed, session live", false, 1, false, true, true, false},
		{"failed, stale", false, 1, true, true, true, true},
		{"failed, session over", false, 3, false, true, false, true},
		{"no session, early", false, NonMemberAttempts - 1, false, false, false, false},
		{"no session, last", false, NonMemberAttempts, false, false, false, true},
	} {
		if got := DeliveryEnds(tc.delivered, tc.attempt, tc.stale, tc.hasSession, tc.sessionLive); got != tc.ends {
			t.Errorf("%s: ends %t, want %t", tc.name, got, tc.ends)
		}
	}
	if got := NextDeliveryBackoff(300*time.Millisecond, time.Second); got != 600*time.Millisecond {
		t.Errorf("backoff %s, want 600ms", got)
	}
	if got := NextDeliveryBackoff(int64(150), 200); got != 200 {
		t.Errorf("backoff %d ticks, want the cap 200", got)
	}
}
