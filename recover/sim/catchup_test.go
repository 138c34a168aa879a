package sim

import (
	"fmt"
	"testing"

	"github.com/mastership/mastership/agent/core"
	"github.com/mastership/mastership/naming/api"
)

// The simulator drives the runtime's catch-up rules (package catchup): a
// back-up restarted far behind syncs with its master; cut off from the
// others before its download completes, the download fails, which ends
// the syncing state, and alone on its side (available) it becomes master.
// Left syncing, it would retry the download for ever and never campaign.
func TestSyncFailureEndsSyncing(t *testing.T) {
	w := settledWorld(t, api.ModeAvailable, []int{3, 2, 1})
	a := w.agent(3)
	w.kill(a)
	for i := 0; i < 2*core.SyncThreshold; i++ {
		if err := w.scriptedPut(1, fmt.Sprintf("k%d", i), "v"); err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
		w.run(1)
	}
	w.restart(a)
	for i := 0; ; i++ {
		if job, master := a.catchup.Running(); job != 0 && master == 1 && a.node.Role() == api.RoleSyncing {
			break
		}
		if i == 100 {
			t.Fatalf("3 never downloaded from 1:\n%s", w.describe())
		}
		w.step()
	}
	w.scriptedPartition([]int{1, 2}, []int{3}, "a")
	for i := 0; a.node.Role() != api.RoleMaster; i++ {
		if i == 500 {
			t.Fatalf("3 not master of its side 500 ticks after the cut:\n%s", w.describe())
		}
		w.step()
	}
	if len(w.viol) > 0 {
		t.Fatalf("violations: %v", w.viol)
	}
}

// A killed master restarts with what its storage holds: a write it held in
// memory, unstored, while every back-up had an append in flight (core.Node.Ready)
// dies with the process, and the one it sent survives.
func TestRestartKeepsOnlyTheStoredLog(t *testing.T) {
	w := settledWorld(t, api.ModeStrict, []int{3, 2, 1})
	a := w.agent(1)
	if err := w.scriptedPut(1, "sent", "v"); err != nil {
		t.Fatal(err)
	}
	sent := a.node.Log().LastIndex()
	if err := w.scriptedPut(1, "held", "v"); err != nil {
		t.Fatal(err)
	}
	if a.node.Stored() != sent || a.node.Log().LastIndex() != sent+1 {
		t.Fatalf("stored %d, last %d: want the second write held after %d", a.node.Stored(), a.node.Log().LastIndex(), sent)
	}
	w.kill(a)
	w.restart(a)
	if got := a.node.Log().LastIndex(); got != sent {
		t.Fatalf("restarted with its log at %d, want the stored %d", got, sent)
	}
}
