package client_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mastership/mastership/agent"
	"github.com/mastership/mastership/agent/agenttest"
	"github.com/mastership/mastership/agent/client"
	"github.com/mastership/mastership/agent/wire"
	"github.com/mastership/mastership/naming/api"
	"github.com/mastership/mastership/recover"
)

// Each cluster test has its own Base octet (60..69) so that tests running
// in parallel never share addresses.

func strictCluster(t *testing.T, base int) (*agenttest.Cluster, uint64) {
	t.Helper()
	c := agenttest.New(t, agenttest.Options{Agents: 3, Mode: "strict", Priorities: []int{3, 2, 1}, Base: base})
	return c, c.WaitStable(15 * time.Second)
}

func apiAddr(c *agenttest.Cluster, id uint64) string { return c.Members[id].Agent.Info().API }

// exercise runs every operation once and checks the replies.
func exercise(t *testing.T, cl *client.Client, master uint64, masterAddr string) {
	t.Helper()
	ctx := context.Background()
	check := func(what string, rep client.Reply, err error, ok, found bool, value string) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if rep.OK != ok || rep.Found != found || (value != "" && string(rep.Value) != value) {
			t.Errorf("%s = %+v, want ok=%v found=%v value=%q", what, rep, ok, found, value)
		}
		if rep.Master != master || rep.MasterAddr != masterAddr || rep.Epoch.ID != master || rep.Epoch.Less(cl.MaxEpoch()) {
			t.Errorf("%s answered by %d at %s epoch %s; want %d at %s, epoch %s", what, rep.Master, rep.MasterAddr,
				rep.Epoch, master, masterAddr, cl.MaxEpoch())
		}
	}
	rep, err := cl.Get(ctx, "k")
	check("get absent", rep, err, true, false, "")
	if rep.Value != nil {
		t.Errorf("absent key has value %q", rep.Value)
	}
	rep, err = cl.Put(ctx, "k", []byte("v1"))
	check("put", rep, err, true, false, "")
	rep, err = cl.Get(ctx, "k")
	check("get", rep, err, true, true, "v1")
	rep, err = cl.CAS(ctx, "k", []byte("nope"), false, []byte("v2"))
	check("failed cas", rep, err, false, true, "v1")
	rep, err = cl.CAS(ctx, "k", []byte("v1"), false, []byte("v2"))
	check("cas", rep, err, true, true, "")
	rep, err = cl.CAS(ctx, "k", nil, true, []byte("v3"))
	check("cas expecting absence", rep, err, false, true, "v2")
	rep, err = cl.CAS(ctx, "new", nil, true, []byte(""))
	check("cas creating", rep, err, true, false, "")
	rep, err = cl.Get(ctx, "new")
	if err != nil || !rep.Found || rep.Value == nil || len(rep.Value) != 0 {
		t.Errorf("empty value read back as %+v, %v", rep, err)
	}
	rep, err = cl.Delete(ctx, "k")
	check("delete", rep, err, true, true, "")
	rep, err = cl.Delete(ctx, "k")
	check("delete absent", rep, err, true, false, "")
	rep, err = cl.Get(ctx, "k")
	check("get deleted", rep, err, true, false, "")
}

// TestClusterThroughNaming: a 3-agent strict cluster found through the
// naming node; the agent's own key limit is enforced (413 -> client.ErrRefused).
func TestClusterThroughNaming(t *testing.T) {
	t.Parallel()
	c := agenttest.New(t, agenttest.Options{Agents: 3, Mode: "strict", Priorities: []int{3, 2, 1}, Base: 60})
	master := c.WaitStable(15 * time.Second)
	cl := newTestClient(t, client.Config{Group: "g", Naming: c.NamingAddr})
	exercise(t, cl, master, apiAddr(c, master))
	if got, want := cl.MaxEpoch(), c.Members[master].Agent.Status().Epoch; got != want {
		t.Errorf("MaxEpoch %s, master at %s", got, want)
	}
	if cl.Redirects() != 0 {
		t.Errorf("%d redirects, the naming node knows the master", cl.Redirects())
	}
	// The state is on every replica.
	c.WaitFor(5*time.Second, "replicas to apply", func() bool {
		for _, id := range c.Running() {
			if v, ok := c.Members[id].Agent.Get("new"); !ok || v != "" {
				return false
			}
		}
		return true
	})
}

// TestClusterAgentsOnly: no naming node; the only address is a back-up's.
// Then the cached master is made a back-up's address, and the client
// follows the agent's not-master reply.
func TestClusterAgentsOnly(t *testing.T) {
	t.Parallel()
	c, master := strictCluster(t, 61)
	var backup uint64
	for _, id := range c.Running() {
		if id != master {
			backup = id
		}
	}
	cl := newTestClient(t, client.Config{Group: "g", Agents: []string{apiAddr(c, backup)}})
	exercise(t, cl, master, apiAddr(c, master))
	cl.SetMaster(apiAddr(c, backup))
	rep, err := cl.Put(context.Background(), "via-backup", []byte("x"))
	if err != nil || rep.Master != master {
		t.Fatalf("put through a back-up: %+v, %v", rep, err)
	}
	if cl.Redirects() != 1 {
		t.Errorf("%d redirects, want 1 (the back-up's not-master hint)", cl.Redirects())
	}
	// A naming node that cannot be reached: the agents are asked.
	fallback := newTestClient(t, client.Config{Group: "g", Naming: c.NamingIP + ":1", Agents: []string{apiAddr(c, backup)}})
	if rep, err := fallback.Get(context.Background(), "via-backup"); err != nil || string(rep.Value) != "x" || rep.Master != master {
		t.Errorf("get with the naming node unreachable: %+v, %v", rep, err)
	}
	// Bad input is refused at once.
	start := time.Now()
	if _, err := cl.Put(context.Background(), "", []byte("x")); !errors.Is(err, client.ErrRefused) {
		t.Errorf("empty key: %v", err)
	}
	if _, err := cl.Get(context.Background(), string(make([]byte, 1025))); !errors.Is(err, client.ErrRefused) {
		t.Errorf("long key: %v", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("refusals took %s", d)
	}
}

// TestClusterFailover: 8 goroutines write through one client while the
// master is killed. Every write that returned success is readable on the new
// master and on every replica, and none applied twice: each goroutine also
// advances a counter by compare-and-swap, which a second application of the
// same request would find changed. Then the same client/seq sent twice by
// hand applies once.
func TestClusterFailover(t *testing.T) {
	t.Parallel()
	// With self-monitors, as every agent runs: the back-up elected when
	// the best-ranked one missed the master's last write hands mastership
	// over to it once it caught up.
	c := agenttest.New(t, agenttest.Options{Agents: 3, Mode: "strict", Priorities: []int{3, 2, 1}, Base: 62,
		Monitor: func(uint64) agent.Monitor { return recover.New(recover.Config{}) }})
	old := c.WaitStable(15 * time.Second)
	cl := newTestClient(t, client.Config{Group: "g", Naming: c.NamingAddr, Timeout: 10 * time.Second})

	type writer struct {
		puts      map[string]string // successful puts
		counter   int               // the counter's value after the last successful cas
		ambiguous bool              // an operation failed, maybe after taking effect
		afterKill int               // successes answered by another master
	}
	var (
		writers [8]writer
		total   atomic.Int64
		after   atomic.Int64
		stop    = make(chan struct{})
		wg      sync.WaitGroup
	)
	ctx := context.Background()
	for g := range writers {
		w := &writers[g]
		w.puts = map[string]string{}
		wg.Go(func() {
			ctr := fmt.Sprintf("ctr/%d", g)
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				key, val := fmt.Sprintf("f/%d/%d", g, i), fmt.Sprintf("v%d.%d", g, i)
				rep, err := cl.Put(ctx, key, []byte(val))
				if err != nil {
					w.ambiguous = true
					continue
				}
				w.puts[key] = val
				total.Add(1)
				if rep.Master != old {
					after.Add(1)
				}
				if w.ambiguous {
					// Learn where the counter is before advancing it.
					rep, err := cl.Get(ctx, ctr)
					if err != nil {
						continue
					}
					w.counter = 0
					if rep.Found {
						w.counter, _ = strconv.Atoi(string(rep.Value))
					}
				}
				next := strconv.Itoa(w.counter + 1)
				rep, err = cl.CAS(ctx, ctr, []byte(strconv.Itoa(w.counter)), w.counter == 0, []byte(next))
				switch {
				case err != nil:
					w.ambiguous = true
				case rep.OK:
					w.counter++
				case !w.ambiguous:
					t.Errorf("writer %d: cas %d -> %s found %q: applied twice or lost", g, w.counter, next, rep.Value)
					return
				}
			}
		})
	}
	c.WaitFor(10*time.Second, "writes before the kill", func() bool { return total.Load() >= 40 })
	c.Kill(old)
	c.WaitFor(20*time.Second, "writes on the new master", func() bool { return after.Load() >= 40 })
	close(stop)
	wg.Wait()
	master := c.WaitStable(15 * time.Second)
	if master == old {
		t.Fatalf("master %d was killed and is still master", old)
	}
	n := 0
	for g := range writers {
		w := &writers[g]
		for key, val := range w.puts {
			n++
			rep, err := cl.Get(ctx, key)
			if err != nil || !rep.Found || string(rep.Value) != val || rep.Master != master {
				t.Errorf("acknowledged %s=%s read back as %+v, %v", key, val, rep, err)
			}
			for _, id := range c.Running() {
				if v, ok := c.Members[id].Agent.Get(key); !ok || v != val {
					t.Errorf("agent %d has %s=%q (%v), acknowledged %q", id, key, v, ok, val)
				}
			}
		}
		rep, err := cl.Get(ctx, fmt.Sprintf("ctr/%d", g))
		got := 0
		if err == nil && rep.Found {
			got, _ = strconv.Atoi(string(rep.Value))
		}
		if err != nil || got < w.counter || (!w.ambiguous && got != w.counter) {
			t.Errorf("writer %d: counter %d (%v), %d acknowledged (ambiguous %v)", g, got, err, w.counter, w.ambiguous)
		}
	}
	// After the reads through the master (a handover may have followed
	// the last write): the client knows the master's epoch.
	if cl.MaxEpoch() != c.Members[master].Agent.Status().Epoch {
		t.Errorf("MaxEpoch %s, master at %s", cl.MaxEpoch(), c.Members[master].Agent.Status().Epoch)
	}
	t.Logf("%d acknowledged puts checked; %d after the kill; master %d -> %d; %d retries", n, after.Load(), old, master,
		cl.Retries())
	if cl.Retries() == 0 {
		t.Error("no operation was retried across the failover")
	}

	// The agents' deduplication: one client/seq sent twice applies once,
	// and an older seq after a newer one is refused.
	post := func(body string) wire.KVResponse {
		t.Helper()
		resp, err := http.Post("http://"+apiAddr(c, master)+"/v1/kv", "application/json", bytes.NewReader([]byte(body)))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var r wire.KVResponse
		if err := json.NewDecoder(resp.Body).Decode(&r); err != nil || resp.StatusCode != 200 {
			t.Fatalf("%s: %s, %v", body, resp.Status, err)
		}
		return r
	}
	cas := `{"op":"cas","key":"dup","expect_absent":true,"value":"a","client":4242,"seq":7}`
	first, second := post(cas), post(cas)
	if !first.OK || !second.OK || first.Error != "" || second.Error != "" {
		t.Errorf("cas sent twice with one seq: %+v then %+v; want both to report the one application", first, second)
	}
	if second.Index <= first.Index {
		t.Errorf("the retry was not logged after the first (%d, %d)", first.Index, second.Index)
	}
	if r := post(`{"op":"put","key":"dup","value":"b","client":4242,"seq":8}`); !r.OK {
		t.Errorf("put seq 8: %+v", r)
	}
	if r := post(cas); r.OK || r.Error == "" {
		t.Errorf("seq 7 after 8: %+v, want a stale-sequence refusal", r)
	}
	if rep, err := cl.Get(ctx, "dup"); err != nil || string(rep.Value) != "b" {
		t.Errorf("dup = %+v, %v; want b", rep, err)
	}
	if rep, err := cl.Get(ctx, "dup"); err != nil || rep.Epoch.Less(api.Epoch{Term: 1}) {
		t.Errorf("get: %+v, %v", rep, err)
	}
}

func newTestClient(t *testing.T, cfg client.Config) *client.Client {
	t.Helper()
	c, err := client.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}
