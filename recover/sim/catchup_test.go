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
	w := scriptedWorld(api.ModeAvailable, []int{3, 2, 1})
	w.run(150)
	if ms := w.masters(); len(ms) != 1 || ms[0] != 1 {
		t.Fatalf("setup: masters %v, want [1]\n%s", ms, w.describe())
	}
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
