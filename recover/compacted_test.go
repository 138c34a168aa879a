package recover_test

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/mastership/mastership/agent/agenttest"
	"github.com/mastership/mastership/agent/kv"
	"github.com/mastership/mastership/config"
	"github.com/mastership/mastership/recover"
)

// inStateRecord reports whether some agent kept a state record (a side's
// whole state, its log compacted past the fork) holding key=value, and
// how many state records there are in all.
func inStateRecord(t *testing.T, c *agenttest.Cluster, key, value string) (bool, int) {
	t.Helper()
	found, n := false, 0
	for _, id := range c.Running() {
		st := c.Members[id].Agent.Storage()
		recs, err := st.Records()
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range recs {
			if !r.State {
				continue
			}
			n++
			b, err := st.RecordState(r.ID)
			if err != nil {
				t.Fatalf("agent %d: state of record %d: %v", id, r.ID, err)
			}
			kept := kv.NewStore()
			if err := kept.Restore(b); err != nil {
				t.Fatalf("agent %d: state of record %d does not restore: %v", id, r.ID, err)
			}
			if v, ok := kept.Get(key); ok && string(v) == value {
				found = true
			}
		}
	}
	return found, n
}

// The figure 2 split, long enough for the minority to compact past the
// fork, and its agents killed before the heal: restarted, their logs
// start at their own snapshots, after the fork, so neither hashes nor
// epochs say where they left the majority's. Their recovery keeps their
// whole state as a record: every write the minority acknowledged ends in
// the final state, a divergence record, or a state record. Without the
// state record the writes up to the snapshots are lost.
func TestSplitCompactedPastTheFork(t *testing.T) {
	c := agenttest.New(t, agenttest.Options{Agents: 5, Mode: "available", Priorities: []int{5, 4, 3, 2, 1},
		Base: 71, Monitor: monitors(recover.Config{}),
		Tune: func(cfg *config.Agent) { cfg.SnapshotEntries, cfg.RetainEntries = 64, 64 }})
	if m := c.WaitStable(20 * time.Second); m != 1 {
		t.Fatalf("first master %d, want 1", m)
	}
	for i := 0; i < 10; i++ {
		if _, err := c.Put(1, fmt.Sprintf("before-%d", i), "v"); err != nil {
			t.Fatal(err)
		}
	}
	c.Partition([]uint64{1, 2, 3}, []uint64{4, 5})
	c.PartitionNaming(1, 2, 3)
	c.WaitFor(20*time.Second, "the minority elects 4", func() bool {
		return slices.Equal(c.Masters(), []uint64{1, 4})
	})
	var acked []string
	for i := 0; i < 200; i++ {
		key := fmt.Sprintf("minority-%d", i)
		if _, err := c.Put(4, key, "m"); err == nil {
			acked = append(acked, key)
		}
		if _, err := c.Put(1, fmt.Sprintf("majority-%d", i), "M"); err != nil {
			t.Fatalf("majority write: %v", err)
		}
	}
	if len(acked) < 150 {
		t.Fatalf("the minority master acknowledged %d writes of 200", len(acked))
	}
	for _, id := range []uint64{4, 5} {
		if in := c.Members[id].Agent.Status(); in.SnapshotIndex == 0 {
			t.Fatalf("agent %d took no snapshot during the split: %+v", id, in)
		}
		c.Kill(id)
	}
	c.Heal()
	c.Restart(4)
	c.Restart(5)
	if m := c.WaitStable(30 * time.Second); m != 1 {
		t.Fatalf("master after the heal %d, want 1", m)
	}
	inFinal, inRecords, inState, states := 0, 0, 0, 0
	for _, key := range acked {
		if v, found := c.Members[1].Agent.Get(key); found && v == "m" {
			inFinal++
			continue
		}
		if inDivergence(t, c, key) {
			inRecords++
			continue
		}
		var ok bool
		if ok, states = inStateRecord(t, c, key, "m"); ok {
			inState++
			continue
		}
		t.Errorf("acknowledged write %s=m of the minority neither in the final state nor in a divergence record (%d state records)", key, states)
	}
	_, states = inStateRecord(t, c, "", "")
	t.Logf("%d writes of the minority acknowledged: %d in the final state, %d in divergence records, %d only in %d state records",
		len(acked), inFinal, inRecords, inState, states)
	if inState == 0 {
		t.Errorf("no write was only in a state record: the logs were not compacted past the fork (%d state records)", states)
	}
	for i := 0; i < 10; i++ {
		if _, found := c.Members[1].Agent.Get(fmt.Sprintf("before-%d", i)); !found {
			t.Errorf("write before-%d lost", i)
		}
	}
}

// A back-up down while its master, in the same epoch, compacts past
// everything the back-up holds catches up by downloading the state; the
// master's base is of the epoch of the back-up's last entry, which proves
// the back-up's log a prefix of the master's (rlog.ForkByEpoch): no
// record is made, no state kept twice.
func TestBehindTheSnapshotIsNoDivergence(t *testing.T) {
	c := agenttest.New(t, agenttest.Options{Agents: 3, Mode: "available", Priorities: []int{3, 2, 1},
		Base: 72, Monitor: monitors(recover.Config{}),
		Tune: func(cfg *config.Agent) { cfg.SnapshotEntries, cfg.RetainEntries = 64, 64 }})
	if m := c.WaitStable(20 * time.Second); m != 1 {
		t.Fatalf("first master %d, want 1", m)
	}
	// Past a snapshot of agent 3's own: its log, restarted, starts
	// there, and what it applied before cannot be compared by hashes.
	for i := 0; i < 100; i++ {
		if _, err := c.Put(1, fmt.Sprintf("before-%d", i), "v"); err != nil {
			t.Fatal(err)
		}
	}
	c.WaitFor(10*time.Second, "agent 3 applied every write and took a snapshot", func() bool {
		st := c.Members[3].Agent.Status()
		return st.Applied == c.Members[1].Agent.Status().Applied && st.SnapshotIndex > 0
	})
	epoch := c.Members[1].Agent.Status().Epoch
	c.Kill(3)
	for i := 0; i < 1500; i++ {
		if _, err := c.Put(1, fmt.Sprintf("k%d", i%100), fmt.Sprint(i)); err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
	}
	_, _, _, entries3, err := c.Members[3].Storage.Load()
	if err != nil {
		t.Fatal(err)
	}
	last3 := uint64(0)
	if len(entries3) > 0 {
		last3 = entries3[len(entries3)-1].Index
	}
	if base := c.Members[1].Agent.Status().LogBase; base <= last3 {
		t.Fatalf("the master's log starts after %d, agent 3's ends at %d: not compacted past it", base, last3)
	}
	c.Restart(3)
	c.WaitFor(20*time.Second, "agent 3 back in sync", func() bool {
		a, b := c.Members[3].Agent.Status(), c.Members[1].Agent.Status()
		return a.Master == 1 && a.Digest == b.Digest
	})
	if e := c.Members[1].Agent.Status().Epoch; e != epoch {
		t.Fatalf("the master's epoch moved from %s to %s: not the case under test", epoch, e)
	}
	recs, err := c.Members[3].Agent.Storage().Records()
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 0 {
		t.Fatalf("agent 3, only behind, made %d divergence records, the first %+v", len(recs), recs[0])
	}
}
