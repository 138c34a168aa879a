package recover

import (
	"fmt"
	"testing"
)

// A check's trigger counts by its kind, without the detail or the count
// of coalesced events.
func TestTriggerKind(t *testing.T) {
	for in, want := range map[string]string{
		"timer":                                  "timer",
		"naming-master-superseded\x00retained 1": "naming-master-superseded",
		"foreign-epoch\x00agent 2 at epoch 3.2 (+4 more)": "foreign-epoch",
		"deposed (+1 more)": "deposed",
		"":                  "other",
		"\x00no kind":       "other",
	} {
		if got := triggerKind(in); got != want {
			t.Errorf("triggerKind(%q) = %q, want %q", in, got, want)
		}
	}
}

// The trigger kinds are free text where the naming node's reasons are:
// however many a sender makes up, Stats tells maxTriggerKinds apart and
// counts the rest as "other", so the metrics' labels stay bounded; every
// check is counted.
func TestStatsBoundTriggerKinds(t *testing.T) {
	m := New(Config{})
	m.mu.Lock()
	for i := range 1000 {
		m.countCheck(triggerKind(fmt.Sprintf("naming-reason-%d\x00detail", i)), "consistent")
	}
	m.countCheck("timer", "recover")
	m.countRecovery("ok", 0.02)
	m.countRecovery("failed", 40)
	m.mu.Unlock()
	m.countStep("install", 0.003)

	st := m.Stats()
	kinds := map[string]bool{}
	var total uint64
	for _, c := range st.Checks {
		kinds[c.Trigger] = true
		total += c.Count
	}
	if len(kinds) > maxTriggerKinds+2 || !kinds["other"] {
		t.Fatalf("%d trigger kinds told apart (other: %v), want at most %d, the timer and other", len(kinds), kinds["other"], maxTriggerKinds)
	}
	if total != 1001 {
		t.Fatalf("%d checks counted, want 1001", total)
	}
	if !kinds["timer"] {
		t.Fatal("the timer's checks count as other once the events took every place")
	}
	if st.Recoveries["ok"] != 1 || st.Recoveries["failed"] != 1 || st.RecoverySeconds.Count != 2 {
		t.Fatalf("recoveries %v, %d durations", st.Recoveries, st.RecoverySeconds.Count)
	}
	// 40 s is past the last bound: it lands in the overflow bucket.
	if n := st.RecoverySeconds.Counts[len(st.RecoverySeconds.Bounds)]; n != 1 {
		t.Fatalf("overflow bucket %d, want 1: %+v", n, st.RecoverySeconds)
	}
	if h := st.StepSeconds["install"]; h.Count != 1 || h.Counts[0] != 1 {
		t.Fatalf("install step %+v", h)
	}
	// Stats is a copy.
	st.RecoverySeconds.Counts[0] = 99
	if again := m.Stats(); again.RecoverySeconds.Counts[0] == 99 {
		t.Fatal("Stats shares its histogram with the monitor")
	}
}
