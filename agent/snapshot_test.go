package agent_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/mastership/mastership/agent/agenttest"
	"github.com/mastership/mastership/config"
)

// Agents snapshot on their own schedule: after 1,000 writes with a
// snapshot every 200 entries, each stored log starts at its latest
// snapshot and the in-memory log holds the window behind it plus what came
// after; an agent restarted on its storage loads the snapshot and the
// short log after it, not every write, and is back in sync.
func TestAgentSnapshotsAndRestartsFromOne(t *testing.T) {
	c := agenttest.New(t, agenttest.Options{Agents: 3, Mode: "strict", Priorities: []int{3, 2, 1}, Base: 121,
		Tune: func(cfg *config.Agent) { cfg.SnapshotEntries = 200 }})
	m := c.WaitStable(20 * time.Second)
	for i := range 1000 {
		if _, err := c.Put(m, fmt.Sprintf("k%d", i%50), fmt.Sprint(i)); err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
	}
	c.WaitFor(10*time.Second, "every agent applied every write", func() bool {
		want := c.Members[m].Agent.Status().Applied
		for _, id := range c.IDs() {
			if c.Members[id].Agent.Status().Applied != want {
				return false
			}
		}
		return true
	})
	for _, id := range c.IDs() {
		st := c.Members[id].Agent.Status()
		// A snapshot comes at the first apply 200 or more entries after
		// the last one; a back-up that lags under load applies what one
		// append brings at once (flow control batches them), so its
		// snapshots may lie up to a batch further apart: three at least,
		// the latest within 400 of the end.
		if st.Snapshots < 3 || st.SnapshotIndex+400 < st.Applied {
			t.Errorf("agent %d: %d snapshots, the latest at %d, after %d applied", id, st.Snapshots, st.SnapshotIndex, st.Applied)
		}
		if st.LogEntries > 200+512 {
			t.Errorf("agent %d keeps %d entries in memory, more than a snapshot period and the window", id, st.LogEntries)
		}
		if in := c.Members[id].Agent.Info(); in.Log == nil || in.Log.SnapshotIndex != st.SnapshotIndex || in.Log.Snapshots != st.Snapshots ||
			in.Log.First != st.LogBase+1 || in.Log.Entries != st.LogEntries || in.Log.DataBytes != 0 {
			t.Errorf("agent %d info log %+v, status %+v", id, in.Log, st)
		}
		_, _, base, entries, err := c.Members[id].Storage.Load()
		if err != nil {
			t.Fatal(err)
		}
		if base.Index != st.SnapshotIndex || len(entries) > 200 {
			t.Errorf("agent %d stores a log from %d with %d entries; its latest snapshot is at %d", id, base.Index, len(entries), st.SnapshotIndex)
		}
	}
	back := c.IDs()[0]
	if back == m {
		back = c.IDs()[1]
	}
	c.Kill(back)
	c.Restart(back)
	c.WaitFor(10*time.Second, fmt.Sprintf("agent %d back in sync after its restart", back), func() bool {
		a, b := c.Members[back].Agent.Status(), c.Members[m].Agent.Status()
		return a.Master == m && a.Digest == b.Digest
	})
	if st := c.Members[back].Agent.Status(); st.LogBase < 800 || st.LogEntries > 200+512 {
		t.Errorf("restarted agent %d holds a log after %d with %d entries: not from its snapshot", back, st.LogBase, st.LogEntries)
	}
}

// With a data directory, info counts the bytes it holds.
func TestInfoCountsTheDataDir(t *testing.T) {
	c := agenttest.New(t, agenttest.Options{Agents: 1, Mode: "strict", Base: 122, Durable: true,
		Tune: func(cfg *config.Agent) { cfg.SnapshotEntries = 100 }})
	m := c.WaitStable(20 * time.Second)
	for i := range 150 {
		if _, err := c.Put(m, fmt.Sprintf("k%d", i), "v"); err != nil {
			t.Fatal(err)
		}
	}
	in := c.Members[m].Agent.Info()
	if in.Log == nil || in.Log.DataBytes <= 0 || in.Log.Snapshots != 1 {
		t.Fatalf("info log %+v of a durable agent after 150 writes, a snapshot every 100", in.Log)
	}
}
