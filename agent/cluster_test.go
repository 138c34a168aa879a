package agent_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mastership/mastership/agent"
	"github.com/mastership/mastership/agent/agenttest"
	"github.com/mastership/mastership/agent/core"
	"github.com/mastership/mastership/agent/kv"
	"github.com/mastership/mastership/agent/rlog"
	"github.com/mastership/mastership/agent/store"
	"github.com/mastership/mastership/agent/wire"
	"github.com/mastership/mastership/config"
	"github.com/mastership/mastership/gossip"
	"github.com/mastership/mastership/naming/api"
	"github.com/mastership/mastership/recover"
)

func TestElectionAndFailover(t *testing.T) {
	c := agenttest.New(t, agenttest.Options{Agents: 5, Mode: "strict", Priorities: []int{5, 4, 3, 2, 1}, Base: 11})
	m := c.WaitStable(20 * time.Second)
	if m != 1 {
		t.Fatalf("master %d, want 1 (highest priority)", m)
	}
	for i := 0; i < 20; i++ {
		if _, err := c.Put(1, fmt.Sprintf("k%d", i), "v"); err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
	}
	// Every back-up holds the last write: otherwise one whose log is
	// behind may lose its votes to a lower-ranked one whose log is not (as
	// it must), and this group has no self-monitor to hand over later.
	c.WaitStable(10 * time.Second)
	c.Kill(1)
	start := time.Now()
	c.WaitFor(20*time.Second, "agent 2 master and registered", func() bool {
		ms := c.Masters()
		return len(ms) == 1 && ms[0] == 2 && c.Registered() == 2
	})
	t.Logf("failover took %s", time.Since(start))
	var err error
	c.WaitFor(10*time.Second, "new master serving writes", func() bool {
		_, err = c.Put(2, "after", "failover")
		return err == nil
	})
	for i := 0; i < 20; i++ {
		v, found := c.Members[2].Agent.Get(fmt.Sprintf("k%d", i))
		if !found || v != "v" {
			t.Fatalf("acknowledged write k%d lost after failover", i)
		}
	}
	if st := c.Members[2].Agent.Status(); st.Role != api.RoleMaster {
		t.Fatalf("2 is %s", st.Role)
	}
}

func TestStrictMinorityCannotElectAvailableCan(t *testing.T) {
	for _, mode := range []string{"strict", "available"} {
		t.Run(mode, func(t *testing.T) {
			base := 12
			if mode == "available" {
				base = 13
			}
			c := agenttest.New(t, agenttest.Options{Agents: 5, Mode: mode, Priorities: []int{5, 4, 3, 2, 1}, Base: base})
			c.WaitStable(20 * time.Second)
			c.Partition([]uint64{1, 2, 3}, []uint64{4, 5})
			c.PartitionNaming(1, 2, 3)
			if mode == "strict" {
				// Wait until 4 and 5 see the majority dead, then longer than
				// any election would take: they must not elect.
				c.WaitFor(10*time.Second, "minority sees the majority gone", func() bool {
					for _, m := range c.Members[4].Agent.MembersJSON() {
						if m.ID <= 3 && m.Health == "alive" {
							return false
						}
					}
					return true
				})
				deadline := time.Now().Add(2 * time.Second)
				for time.Now().Before(deadline) {
					for _, id := range []uint64{4, 5} {
						if c.Members[id].Agent.Status().Role == api.RoleMaster {
							t.Fatalf("strict minority elected %d:\n%s", id, c.Describe())
						}
					}
					time.Sleep(20 * time.Millisecond)
				}
				if ms := c.Masters(); len(ms) != 1 || ms[0] != 1 {
					t.Fatalf("masters %v", ms)
				}
				return
			}
			// The minority elects one of its own (4 normally, the better
			// ranked; 5 when 4's campaign loses a race under load).
			var minority uint64
			c.WaitFor(20*time.Second, "both sides elect", func() bool {
				ms := c.Masters()
				if len(ms) == 2 && ms[0] == 1 && ms[1] >= 4 {
					minority = ms[1]
					return true
				}
				return false
			})
			var err error
			c.WaitFor(5*time.Second, "minority master takes writes", func() bool {
				_, err = c.Put(minority, "minority", "x")
				return err == nil
			})
		})
	}
}

func TestNewAgentCatchesUp(t *testing.T) {
	c := agenttest.New(t, agenttest.Options{Agents: 3, Mode: "available", Priorities: []int{3, 2, 1}, Base: 14})
	c.WaitStable(20 * time.Second)
	for i := 0; i < 700; i++ {
		if _, err := c.Put(1, fmt.Sprintf("k%d", i), "v"); err != nil {
			t.Fatal(err)
		}
	}
	c.AddAgent(4, 0)
	c.WaitStable(20 * time.Second)
	want := c.Members[1].Agent.Status().Digest
	if got := c.Members[4].Agent.Status().Digest; got != want {
		t.Fatalf("new agent digest %v, master %v", got, want)
	}
}

// Bad input on the agent's API gets a clear 4xx error, changes nothing, and
// the agent keeps serving.
func TestAgentBadInput(t *testing.T) {
	c := agenttest.New(t, agenttest.Options{Agents: 1, Mode: "available", Base: 15})
	m := c.WaitStable(20 * time.Second)
	a := c.Members[m].Agent
	put, err := c.Put(m, "k", "v")
	if err != nil {
		t.Fatal(err)
	}
	// The status snapshot follows the answer by a moment.
	c.WaitFor(5*time.Second, "the write in the status", func() bool { return a.Status().Applied >= put.Index })
	before := a.Status()
	base := "http://" + a.APIAddr()
	post := func(path, ctype string, body []byte) (int, string) {
		t.Helper()
		resp, err := http.Post(base+path, ctype, bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	long := strings.Repeat("k", 1025)
	big := strings.Repeat("v", 64<<10+1)
	notify, _ := api.Encode(&api.Notify{Group: "other", Reason: "x"})
	for _, tc := range []struct {
		name, path, ctype string
		body              []byte
		status            int
		want              string
	}{
		{"unknown op", "/v1/kv", "application/json", []byte(`{"op":"explode","key":"k"}`), 400, "invalid"},
		{"unknown field", "/v1/kv", "application/json", []byte(`{"op":"put","key":"k","valu":"x"}`), 400, "invalid"},
		{"malformed json", "/v1/kv", "application/json", []byte(`{"op":`), 400, "invalid"},
		{"trailing data", "/v1/kv", "application/json", []byte(`{"op":"put","key":"k","value":"x"}{"op":"del","key":"k"}`), 400, "invalid"},
		{"trailing garbage", "/v1/kv", "application/json", []byte(`{"op":"put","key":"k","value":"x"} x`), 400, "invalid"},
		{"sequence 2^64-1", "/v1/kv", "application/json", []byte(`{"op":"put","key":"k","value":"x","client":7,"seq":18446744073709551615}`), 400, "sequence out of range"},
		{"empty key", "/v1/kv", "application/json", []byte(`{"op":"put","key":"","value":"x"}`), 400, "invalid"},
		{"key over cap", "/v1/kv", "application/json", []byte(`{"op":"put","key":"` + long + `","value":"x"}`), 400, "invalid"},
		{"value over cap", "/v1/kv", "application/json", []byte(`{"op":"put","key":"k","value":"` + big + `"}`), 400, "invalid"},
		{"not utf-8", "/v1/kv", "application/json", []byte("{\"op\":\"put\",\"key\":\"k\",\"value\":\"\xff\"}"), 400, "invalid"},
		{"oversized body", "/v1/kv", "application/json", bytes.Repeat([]byte("x"), api.MaxMessageBytes+1), 413, "too-large"},
		{"notify of another group", "/rpc/notify", "application/msgpack", notify, 400, "invalid"},
		{"malformed notify", "/rpc/notify", "application/msgpack", []byte{0xc1}, 400, "invalid"},
		{"malformed hashes", "/rpc/hashes", "application/msgpack", []byte{0xc1}, 400, "invalid"},
		{"fault", "/v1/fault", "application/json", []byte(`{"action":"melt"}`), 400, "invalid"},
		{"fault, trailing data", "/v1/fault", "application/json", []byte(`{"action":"heal"}{"action":"partition","peers":["127.0.0.1"]}`), 400, "invalid"},
		{"fault, unknown field", "/v1/fault", "application/json", []byte(`{"action":"heal","peer":"x"}`), 400, "invalid"},
		{"switchover, trailing data", "/v1/switchover", "application/json", []byte(`{"to":2} x`), 400, "data after the JSON object"},
		{"switchover, unknown field", "/v1/switchover", "application/json", []byte(`{"too":2}`), 400, "invalid"},
		{"keyring, trailing data", "/v1/keyring", "application/json", []byte(`{"op":"list"}{"op":"remove","key":"x"}`), 400, "data after the JSON object"},
	} {
		status, body := post(tc.path, tc.ctype, tc.body)
		if status != tc.status || (tc.ctype == "application/json" && !strings.Contains(body, tc.want)) {
			t.Errorf("%s: %d %.200s; want %d %s", tc.name, status, body, tc.status, tc.want)
		}
	}
	after := a.Status()
	if after.Applied != before.Applied || after.Digest != before.Digest {
		t.Fatalf("bad input changed the state: %+v -> %+v", before, after)
	}
	if v, found := a.Get("k"); !found || v != "v" {
		t.Fatalf("state after bad input: %q %v", v, found)
	}
	if _, err := c.Put(m, "k2", "v2"); err != nil {
		t.Fatalf("agent stopped serving after bad input: %v", err)
	}
}

// A back-up that is downloading the master's state when the master dies
// must not stay syncing with the dead master: the download fails, the
// back-up takes part in the election, and it follows the new master. Here
// the master's API hangs for the back-up (its calls are accepted, never
// answered) and the master is killed mid-download; no self-monitor runs,
// so the runtime alone must get out.
func TestSyncWithDyingMasterEnds(t *testing.T) {
	c := agenttest.New(t, agenttest.Options{Agents: 3, Mode: "strict", Priorities: []int{3, 2, 1}, Base: 16})
	if m := c.WaitStable(20 * time.Second); m != 1 {
		t.Fatalf("master %d, want 1", m)
	}
	c.Partition([]uint64{1, 2}, []uint64{3})
	// Far enough behind that 3 must download the state, not the log.
	for i := 0; i < 2*core.SyncThreshold; i++ {
		if _, err := c.Put(1, fmt.Sprintf("k%d", i), "v"); err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
	}
	c.Heal()
	c.StallAPI(1, 3)
	c.WaitFor(20*time.Second, "3 downloading from 1", func() bool {
		st := c.Members[3].Agent.Status()
		return st.Role == api.RoleSyncing && st.Master == 1
	})
	c.Kill(1)
	c.WaitFor(20*time.Second, "2 master, 3 its synced back-up", c.Stable)
	if ms := c.Masters(); ms[0] != 2 {
		t.Fatalf("master %d, want 2", ms[0])
	}
	if v, found := c.Members[3].Agent.Get(fmt.Sprintf("k%d", 2*core.SyncThreshold-1)); !found || v != "v" {
		t.Fatal("3 lacks the last acknowledged write")
	}
}

// A catch-up download that fails while the back-up still syncs with its
// master ends the syncing state (package catchup, EndSync): the back-up
// takes part in elections again. Here an available back-up restarted far
// behind syncs with a master whose API hangs for it, then is cut off from
// the master and the other back-up: the download fails, and alone on its
// side it must become master. Were it left syncing, it would retry the
// download for ever and never campaign (no self-monitor runs, and no other
// master appends to it).
func TestSyncFailureEndsSyncing(t *testing.T) {
	c := agenttest.New(t, agenttest.Options{Agents: 3, Mode: "available", Priorities: []int{3, 2, 1}, Base: 23})
	if m := c.WaitStable(20 * time.Second); m != 1 {
		t.Fatalf("master %d, want 1", m)
	}
	c.Kill(3)
	// Far enough behind that 3 must download the state, not the log.
	for i := 0; i < 2*core.SyncThreshold; i++ {
		if _, err := c.Put(1, fmt.Sprintf("k%d", i), "v"); err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
	}
	c.StallAPI(1, 3)
	c.Restart(3)
	c.WaitFor(20*time.Second, "3 downloading from 1", func() bool {
		st := c.Members[3].Agent.Status()
		return st.Role == api.RoleSyncing && st.Master == 1
	})
	c.Partition([]uint64{1, 2}, []uint64{3})
	c.WaitFor(20*time.Second, "3 master of its side", func() bool {
		return c.Members[3].Agent.Status().Role == api.RoleMaster
	})
}

// failingStorage fails the agent's writes once fail is set, as a full or
// broken disk would: every write, or with votesOnly each write that
// records a vote other than the one stored. The first write it refuses
// sets failed, on the agent's loop (the one goroutine that writes and
// sends), with its hard state in refused.
type failingStorage struct {
	store.Storage
	fail      *atomic.Bool
	votesOnly bool
	vote      api.Epoch // the vote last stored
	failed    atomic.Bool
	refused   atomic.Pointer[store.HardState]
}

var errDisk = errors.New("disk: no space left")

func (f *failingStorage) Persist(u store.Update) error {
	if f.fail.Load() && (!f.votesOnly || u.HardState != nil && u.HardState.Vote != f.vote) {
		if !f.failed.Swap(true) && u.HardState != nil {
			hs := *u.HardState
			f.refused.Store(&hs)
		}
		return errDisk
	}
	if err := f.Storage.Persist(u); err != nil {
		return err
	}
	if u.HardState != nil {
		f.vote = u.HardState.Vote
	}
	return nil
}

// sentAfter records, through agent.OnSendForTest, what the agent hands to
// the transport before and after its storage's first refused write.
type sentAfter struct {
	before atomic.Int64
	mu     sync.Mutex
	after  []string
}

func watchSends(t *testing.T, a *agent.Agent, fs *failingStorage) *sentAfter {
	t.Helper()
	w := &sentAfter{}
	err := agent.OnSendForTest(a, func(m core.Message) {
		if !fs.failed.Load() {
			w.before.Add(1)
			return
		}
		w.mu.Lock()
		w.after = append(w.after, m.String())
		w.mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// sentAfterFailure is what was handed to the transport after the failure.
func (w *sentAfter) sentAfterFailure() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.after)
}

// snapshotFailing is a storage whose snapshot writes fail once fail is set.
type snapshotFailing struct {
	store.Storage
	fail *atomic.Bool
}

func (f snapshotFailing) SaveSnapshot(base rlog.Pos, snap []byte) error {
	if f.fail.Load() {
		return errDisk
	}
	return f.Storage.SaveSnapshot(base, snap)
}

// A state download whose install cannot be written (figure 10, act 1030)
// stops the agent like any failed persist: the core already took the
// state as installed, and nothing it would send (acknowledgements of
// entries that are not on disk) may leave.
func TestFailedInstallStopsTheAgent(t *testing.T) {
	var fail atomic.Bool
	c := agenttest.New(t, agenttest.Options{Agents: 3, Mode: "strict", Priorities: []int{3, 2, 1}, Base: 21,
		Monitor: func(uint64) agent.Monitor { return recover.New(recover.Config{}) },
		WrapStorage: func(id uint64, s store.Storage) store.Storage {
			if id == 3 {
				return snapshotFailing{Storage: s, fail: &fail}
			}
			return s
		}})
	if m := c.WaitStable(20 * time.Second); m != 1 {
		t.Fatalf("master %d, want 1", m)
	}
	for i := 0; i < 5; i++ {
		if _, err := c.Put(1, fmt.Sprintf("k%d", i), "v"); err != nil {
			t.Fatal(err)
		}
	}
	fail.Store(true)
	// A failed recovery elsewhere left 3 quarantined: its next check
	// downloads 1's state, and the install's write fails.
	if err := c.Members[3].Agent.Quarantine(t.Context()); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-c.Members[3].Agent.Fatal():
		if !errors.Is(err, agent.ErrStorage) || !strings.Contains(err.Error(), "persist snapshot") {
			t.Fatalf("fatal error %v, want the snapshot's failed persist", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("a failed install was not reported as fatal")
	}
	if _, err := c.Put(1, "after", "v"); err != nil {
		t.Fatalf("the master with the other back-up: %v", err)
	}
}

// Persist before send: once the master's storage fails, it sends nothing
// that depends on the failed write (the entry never reaches a back-up),
// the write is not acknowledged, and the agent reports the failure as
// fatal; the group elects another master.
func TestNothingSentAfterFailedPersist(t *testing.T) {
	var fail atomic.Bool
	var fs *failingStorage
	c := agenttest.New(t, agenttest.Options{Agents: 3, Mode: "strict", Priorities: []int{3, 2, 1}, Base: 18,
		WrapStorage: func(id uint64, s store.Storage) store.Storage {
			if id == 1 {
				fs = &failingStorage{Storage: s, fail: &fail}
				return fs
			}
			return s
		}})
	if m := c.WaitStable(20 * time.Second); m != 1 {
		t.Fatalf("master %d, want 1", m)
	}
	sent := watchSends(t, c.Members[1].Agent, fs)
	if _, err := c.Put(1, "before", "v"); err != nil {
		t.Fatal(err)
	}
	last, oldEpoch := c.Members[1].Agent.Status().Last, c.Members[1].Agent.Status().Epoch
	c.WaitFor(10*time.Second, "the back-ups at the master's last entry", func() bool {
		return c.Members[2].Agent.Status().Last == last && c.Members[3].Agent.Status().Last == last
	})
	fail.Store(true)
	if _, err := c.Put(1, "after", "v"); !errors.Is(err, agent.ErrStorage) {
		t.Fatalf("write after the storage failed: %v, want ErrStorage", err)
	}
	select {
	case err := <-c.Members[1].Agent.Fatal():
		if !errors.Is(err, agent.ErrStorage) || !strings.Contains(err.Error(), "no space left") {
			t.Fatalf("fatal error %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the failed write was not reported as fatal")
	}
	c.WaitFor(20*time.Second, "2 master of the others", func() bool {
		ms := c.Masters()
		return slices.Contains(ms, 2) && c.Registered() == 2
	})
	// The entry that was not persisted reached no back-up: what follows
	// the last entry both held is the new master's own.
	for _, id := range []uint64{2, 3} {
		var next rlog.Entry
		var err error
		next, err = c.Members[id].Agent.Entry(last + 1)
		if err == nil && next.Epoch == oldEpoch {
			t.Fatalf("agent %d holds entry %d of the failed master's epoch %s", id, last+1, oldEpoch)
		}
	}
	for _, id := range []uint64{2, 3} {
		if _, found := c.Members[id].Agent.Get("after"); found {
			t.Fatalf("agent %d applied the write whose persist failed on the master", id)
		}
	}
	// Nothing at all left 1 after the failed write, though its loop ran
	// on for the election timeout the others waited (a master sends
	// heartbeats every few ticks), and answered 2's appends and votes.
	if sent.before.Load() == 0 {
		t.Fatal("no message seen before the failure: the watch sees nothing")
	}
	if after := sent.sentAfterFailure(); len(after) != 0 {
		t.Fatalf("1 sent %d messages after its failed persist: %v", len(after), after)
	}
}

// Persist before send, for a vote: a voter whose write of the vote it
// grants fails sends no answer (nor anything else): after a restart it
// could not know it voted, and vote again at the same term. The
// candidate, which needs that vote for a majority, does not win.
func TestNoVoteAnswerAfterFailedVotePersist(t *testing.T) {
	// 3's service fails its health check: 3 votes but never campaigns,
	// so the vote it writes is the one it grants 2.
	unhealthy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer unhealthy.Close()
	var fail atomic.Bool
	var fs *failingStorage
	c := agenttest.New(t, agenttest.Options{Agents: 3, Mode: "strict", Priorities: []int{3, 2, 1}, Base: 24,
		Tune: func(cfg *config.Agent) {
			if cfg.ID == 3 {
				cfg.CheckHTTP = unhealthy.URL
			}
		},
		WrapStorage: func(id uint64, s store.Storage) store.Storage {
			if id == 3 {
				fs = &failingStorage{Storage: s, fail: &fail, votesOnly: true}
				return fs
			}
			return s
		}})
	if m := c.WaitStable(20 * time.Second); m != 1 {
		t.Fatalf("master %d, want 1", m)
	}
	sent := watchSends(t, c.Members[3].Agent, fs)
	c.WaitFor(10*time.Second, "3 answering 1's heartbeats", func() bool { return sent.before.Load() > 0 })
	fail.Store(true)
	c.Kill(1)
	// 2 campaigns and asks 3, whose write of the vote fails.
	select {
	case err := <-c.Members[3].Agent.Fatal():
		if !errors.Is(err, agent.ErrStorage) || !strings.Contains(err.Error(), "no space left") {
			t.Fatalf("fatal error %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the failed vote write was not reported as fatal")
	}
	hs := fs.refused.Load()
	if hs == nil || hs.Vote.ID != 2 {
		t.Fatalf("the refused write holds %+v, want 3's vote for 2's campaign", hs)
	}
	// Unanswered, 2's campaign times out and it campaigns again at a
	// later term; it never becomes master.
	c.WaitFor(20*time.Second, "2 campaigning again after the unanswered vote", func() bool {
		st := c.Members[2].Agent.Status()
		if st.Role == api.RoleMaster {
			t.Fatalf("2 became master at %s without 3's vote", st.Epoch)
		}
		return st.MaxTerm > hs.Vote.Term
	})
	if after := sent.sentAfterFailure(); len(after) != 0 {
		t.Fatalf("3 sent %d messages after its failed vote write: %v", len(after), after)
	}
}

// A dead master never reads as master in the members view: once gossip
// suspects it, its role is unknown and its last claim is beside it; the
// master the agent follows is marked.
func TestMembersNeverShowADeadMaster(t *testing.T) {
	c := agenttest.New(t, agenttest.Options{Agents: 3, Mode: "strict", Priorities: []int{3, 2, 1}, Base: 63})
	if m := c.WaitStable(20 * time.Second); m != 1 {
		t.Fatalf("master %d, want 1", m)
	}
	view := func(of, id uint64) (wire.Member, bool) {
		for _, m := range c.Members[of].Agent.MembersJSON() {
			if m.ID == id {
				return m, true
			}
		}
		return wire.Member{}, false
	}
	if m, ok := view(3, 1); !ok || m.Role != "master" || m.LastRole != "master" || !m.Followed || m.Health != "alive" {
		t.Fatalf("the live master in 3's view: %+v", m)
	}
	if m, _ := view(3, 2); m.Followed {
		t.Fatalf("a back-up marked as followed: %+v", m)
	}
	c.Kill(1)
	c.WaitFor(10*time.Second, "3 no longer holding 1 alive", func() bool {
		m, ok := view(3, 1)
		return ok && m.Health != "alive"
	})
	// From the moment 1 is not alive, nothing may show it as master (3
	// may still follow it until it elects: then it is marked so).
	c.WaitFor(20*time.Second, "2 master, followed by 3", func() bool {
		if m, ok := view(3, 1); ok && m.Role == "master" {
			t.Fatalf("dead 1 in 3's view: %+v", m)
		}
		m, _ := view(3, 2)
		return m.Role == "master" && m.Followed
	})
	if m, ok := view(3, 1); ok && (m.Role != "unknown" || m.LastRole != "master" || m.Followed) {
		t.Fatalf("dead 1 in 3's view: %+v", m)
	}
}

// GET /v1/info?index=N&wait=D blocks until the agent's role, epoch, master
// or serving changes after N, or answers after D with the same index; bad
// values are refused.
func TestBlockingInfo(t *testing.T) {
	c := agenttest.New(t, agenttest.Options{Agents: 1, Mode: "available", Base: 67})
	c.WaitStable(20 * time.Second)
	base := "http://" + c.Members[1].Agent.APIAddr() + "/v1/info"
	get := func(q string) (int, wire.Info) {
		resp, err := http.Get(base + q)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var in wire.Info
		if resp.StatusCode == 200 {
			if err := json.NewDecoder(resp.Body).Decode(&in); err != nil {
				t.Fatal(err)
			}
			if h := resp.Header.Get("X-Mastership-Index"); h != fmt.Sprint(in.Index) {
				t.Fatalf("index header %q, body %d", h, in.Index)
			}
		}
		return resp.StatusCode, in
	}
	_, now := get("")
	if now.Index == 0 {
		t.Fatalf("index 0 after the agent became master: %+v", now)
	}
	start := time.Now()
	if code, in := get(fmt.Sprintf("?index=%d&wait=50ms", now.Index)); code != 200 || in.Index != now.Index {
		t.Fatalf("an idle blocking read: %d %+v", code, in)
	}
	if waited := time.Since(start); waited < 50*time.Millisecond {
		t.Fatalf("an idle blocking read answered after %s, before its wait", waited)
	}
	if code, in := get(fmt.Sprintf("?index=%d", now.Index-1)); code != 200 || in.Index != now.Index {
		t.Fatalf("a blocking read behind the index: %d %+v", code, in)
	}
	// A change wakes a waiting read: the agent quarantined.
	woke := make(chan wire.Info, 1)
	go func() {
		_, in := get(fmt.Sprintf("?index=%d&wait=30s", now.Index))
		woke <- in
	}()
	if err := c.Members[1].Agent.Quarantine(t.Context()); err != nil {
		t.Fatal(err)
	}
	select {
	case in := <-woke:
		if in.Index <= now.Index || in.Role == "master" {
			t.Fatalf("woken read: %+v", in)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("a change did not wake the blocking read")
	}
	// An index above the agent's (it restarted) answers at once.
	if code, in := get(fmt.Sprintf("?index=%d&wait=30s", now.Index+1000)); code != 200 || in.Index > now.Index+1000 {
		t.Fatalf("a read ahead of the index: %d %+v", code, in)
	}
	for _, q := range []string{"?index=x", "?wait=2m", "?wait=-1s", "?index=-2"} {
		if code, _ := get(q); code != 400 {
			t.Errorf("GET /v1/info%s: %d, want 400", q, code)
		}
	}
}

// The start-up grace ends once every join entry is an alive member, at
// its own address or one its host name resolves to.
func TestMetJoin(t *testing.T) {
	members := []gossip.Member{
		{Addr: "127.0.0.1:7946", Health: gossip.HealthAlive},
		{Addr: "127.0.0.2:7946", Health: gossip.HealthSuspect},
	}
	for _, tc := range []struct {
		join []string
		want bool
	}{
		{nil, true},
		{[]string{"127.0.0.1:7946"}, true},
		{[]string{"127.0.0.1:7946", "127.0.0.2:7946"}, false}, // suspect is not met
		{[]string{"localhost:7946"}, true},
		{[]string{"localhost:7947"}, false},
		{[]string{"no-such-host.invalid:7946"}, false},
	} {
		if got := agent.MetJoinForTest(members, tc.join); got != tc.want {
			t.Errorf("join %v: met %t, want %t", tc.join, got, tc.want)
		}
	}
}

// A live master whose link to one back-up breaks (the rest of the group
// still reaches it) is not deposed: the cut back-up takes the broken
// stream for a dead master and campaigns, and the others, who hear the
// master, refuse. The master keeps its epoch and takes writes throughout.
func TestBrokenStreamDoesNotDepose(t *testing.T) {
	c := agenttest.New(t, agenttest.Options{Agents: 3, Mode: "strict", Priorities: []int{3, 2, 1}, Base: 68})
	if m := c.WaitStable(20 * time.Second); m != 1 {
		t.Fatalf("master %d, want 1", m)
	}
	epoch := c.Members[1].Agent.Status().Epoch
	c.Partition([]uint64{1}, []uint64{2}) // 2, the best-ranked back-up, loses its link to 1
	c.WaitFor(20*time.Second, "2 campaigning", func() bool { return c.Members[2].Agent.Status().MaxTerm > epoch.Term })
	for i := 0; i < 20; i++ {
		if _, err := c.Put(1, fmt.Sprintf("during-%d", i), "v"); err != nil {
			t.Fatalf("write %d through 1 while its link to 2 is cut: %v", i, err)
		}
	}
	if st := c.Members[1].Agent.Status(); st.Role != api.RoleMaster || st.Epoch != epoch || !st.Serving {
		t.Fatalf("1 after 2's campaign: %+v; want master at %s, serving", st, epoch)
	}
	if st := c.Members[3].Agent.Status(); st.Master != 1 || st.Epoch != epoch {
		t.Fatalf("3 after 2's campaign: %+v; want a back-up of 1 at %s", st, epoch)
	}
	c.Heal()
	c.WaitFor(20*time.Second, "2 a back-up of 1 again", func() bool {
		st := c.Members[2].Agent.Status()
		return st.Role == api.RoleBackup && st.Master == 1 && c.Stable()
	})
	if st := c.Members[1].Agent.Status(); st.Epoch != epoch {
		t.Fatalf("1 at %s after the heal, want %s (never deposed)", st.Epoch, epoch)
	}
}

// A strict master cut off from both back-ups while only it reaches the
// naming node keeps its registration, and the others cannot register a
// master of their own: no write can commit. Within about an election
// timeout its writes are refused at once, with HTTP 503 not-serving that
// clients retry, instead of timing out one by one while its log grows;
// after the heal the group takes writes again.
func TestCutOffStrictMasterRefusesWrites(t *testing.T) {
	c := agenttest.New(t, agenttest.Options{Agents: 3, Mode: "strict", Priorities: []int{3, 2, 1}, Base: 124})
	if m := c.WaitStable(20 * time.Second); m != 1 {
		t.Fatalf("master %d, want 1", m)
	}
	a := c.Members[1].Agent
	c.Partition([]uint64{1}, []uint64{2, 3})
	c.PartitionNaming(1)
	var err error
	c.WaitFor(10*time.Second, "1 refuses writes for want of a majority", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		_, err = a.Execute(ctx, kv.Op{Kind: kv.KindPut, Key: "cut", Value: []byte("x")}, 0, 0)
		return errors.Is(err, core.ErrNotServing) && strings.Contains(err.Error(), "majority")
	})
	st := a.Status()
	if st.Role != api.RoleMaster || st.Serving {
		t.Fatalf("1 while cut off: %+v; want a master that does not serve", st)
	}
	for i := range 100 {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		start := time.Now()
		_, err := a.Execute(ctx, kv.Op{Kind: kv.KindPut, Key: fmt.Sprintf("cut-%d", i), Value: []byte("x")}, 0, 0)
		cancel()
		if !errors.Is(err, core.ErrNotServing) {
			t.Fatalf("write %d while cut off: %v after %v; want a refusal", i, err, time.Since(start))
		}
	}
	if got := a.Status().Last; got != st.Last {
		t.Fatalf("the refused writes grew the log from %d to %d", st.Last, got)
	}
	// The writes taken before the refusals still wait, and the metrics say
	// how many.
	g := map[string]string{"group": "g"}
	if v, _ := value(scrape(t, a.APIAddr()), "mastership_agent_pending_writes", g); v < 1 || v != float64(a.Status().PendingWrites) {
		t.Fatalf("mastership_agent_pending_writes %v while cut off, status %d; want the writes taken before the refusal", v, a.Status().PendingWrites)
	}
	resp, err := http.Post("http://"+c.Members[1].Config.API+"/v1/kv", "application/json", strings.NewReader(`{"op":"put","key":"cut","value":"x"}`))
	if err != nil {
		t.Fatal(err)
	}
	var kr wire.KVResponse
	derr := json.NewDecoder(resp.Body).Decode(&kr)
	resp.Body.Close()
	if derr != nil {
		t.Fatalf("POST /v1/kv while cut off: %d, body not a kv answer: %v", resp.StatusCode, derr)
	}
	if resp.StatusCode != http.StatusServiceUnavailable || kr.Code != wire.CodeNotServing {
		t.Fatalf("POST /v1/kv while cut off: %d %+v; want 503 %s", resp.StatusCode, kr, wire.CodeNotServing)
	}
	c.Heal()
	// No self-monitor runs here to hand mastership back to 1 by priority:
	// one registered master is enough.
	var m uint64
	c.WaitFor(20*time.Second, "one registered master", func() bool {
		ms := c.Masters()
		if len(ms) != 1 || c.Registered() != ms[0] {
			return false
		}
		m = ms[0]
		return true
	})
	if _, err := c.Put(m, "after", "v"); err != nil {
		t.Fatalf("write after the heal through %d: %v", m, err)
	}
	c.WaitFor(10*time.Second, "no write pending on any agent", func() bool {
		for _, id := range c.IDs() {
			if st := c.Members[id].Agent.Status(); st.PendingWrites != 0 || st.PendingBytes != 0 {
				return false
			}
		}
		return true
	})
}

// A strict master whose loop stood still (a pause, a slow call) while it
// was cut off, and a new master took writes: the reads that waited in the
// loop's queue behind it are judged by the clock as it is when each is
// taken, not as it was at the start of the batch, and none returns the old
// value.
func TestNoStaleReadAfterTheLoopStoodStill(t *testing.T) {
	c := agenttest.New(t, agenttest.Options{Agents: 3, Mode: "strict", Priorities: []int{3, 2, 1}, Base: 69})
	if m := c.WaitStable(20 * time.Second); m != 1 {
		t.Fatalf("master %d, want 1", m)
	}
	if _, err := c.Put(1, "k", "old"); err != nil {
		t.Fatal(err)
	}
	a1 := c.Members[1].Agent
	started, release := make(chan struct{}), make(chan struct{})
	go agent.DoForTest(a1, func() { close(started); <-release })
	<-started
	type read struct {
		val string
		err error
	}
	reads := make(chan read, 5)
	for i := 0; i < 5; i++ {
		go func() {
			r, err := a1.Execute(context.Background(), kv.Op{Kind: kv.KindGet, Key: "k"}, 0, 0)
			v := ""
			if r.Value != nil {
				v = *r.Value
			}
			reads <- read{v, err}
		}()
	}
	c.WaitFor(10*time.Second, "five reads queued behind the stalled loop", func() bool { return agent.PendingOpsForTest(a1) >= 5 })
	c.Partition([]uint64{1}, []uint64{2, 3})
	c.WaitFor(20*time.Second, "2 master and serving", func() bool {
		st := c.Members[2].Agent.Status()
		return st.Role == api.RoleMaster && st.Serving
	})
	if _, err := c.Put(2, "k", "new"); err != nil {
		t.Fatal(err)
	}
	close(release)
	for i := 0; i < 5; i++ {
		r := <-reads
		if r.err == nil && r.val == "old" {
			t.Fatalf("read %d through the deposed master returned the old value after 2 committed the new one", i)
		}
	}
}

// Without a gossip key and without TLS, the keyring command does not fan
// the operator's token out to whatever joined gossip: it answers for the
// agent asked alone.
func TestKeyringKeepsTheTokenInAnOpenCluster(t *testing.T) {
	c := agenttest.New(t, agenttest.Options{Agents: 3, Base: 20})
	c.WaitStable(20 * time.Second)
	req, _ := http.NewRequest("POST", "http://"+c.Members[1].Config.API+"/v1/keyring", strings.NewReader(`{"op":"list"}`))
	req.Header.Set("Authorization", "Bearer operator-secret-0123456789")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var results []wire.KeyringResult
	if err := json.NewDecoder(resp.Body).Decode(&results); err != nil {
		t.Fatal(err)
	}
	if len(results) != 1 || results[0].ID != 1 {
		t.Fatalf("results %+v, want agent 1's alone", results)
	}
}
