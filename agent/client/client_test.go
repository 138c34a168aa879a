package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mastership/mastership/agent/wire"
	"github.com/mastership/mastership/naming/api"
)

// fakeAgent stands in for an agent's HTTP API. Its behaviour can change
// between requests: the test swaps info and kv under mu.
type fakeAgent struct {
	srv   *httptest.Server
	mu    sync.Mutex
	info  wire.Info
	ms    []wire.Member
	kv    func(req wire.KVRequest) (int, wire.KVResponse)
	reqs  []wire.KVRequest
	count atomic.Int64 // POST /v1/kv requests
}

func newFake(t *testing.T) *fakeAgent {
	f := &fakeAgent{}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/info", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		info := f.info
		f.mu.Unlock()
		json.NewEncoder(w).Encode(info)
	})
	mux.HandleFunc("GET /v1/members", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		ms := f.ms
		f.mu.Unlock()
		json.NewEncoder(w).Encode(ms)
	})
	mux.HandleFunc("POST /v1/kv", func(w http.ResponseWriter, r *http.Request) {
		f.count.Add(1)
		var req wire.KVRequest
		dec := json.NewDecoder(r.Body)
		dec.DisallowUnknownFields() // as the agent does
		if err := dec.Decode(&req); err != nil {
			w.WriteHeader(400)
			json.NewEncoder(w).Encode(wire.KVResponse{Error: err.Error(), Code: "invalid"})
			return
		}
		f.mu.Lock()
		f.reqs = append(f.reqs, req)
		kv := f.kv
		f.mu.Unlock()
		status, resp := kv(req)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		json.NewEncoder(w).Encode(resp)
	})
	f.srv = httptest.NewServer(mux)
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeAgent) addr() string { return f.srv.Listener.Addr().String() }

// set changes the fake's role and kv behaviour at once.
func (f *fakeAgent) set(id uint64, role string, epoch api.Epoch, master uint64, kv func(wire.KVRequest) (int, wire.KVResponse)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.info = wire.Info{ID: id, Group: "g", Role: role, Epoch: epoch, Master: master, API: f.addr()}
	f.kv = kv
}

func (f *fakeAgent) requests() []wire.KVRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]wire.KVRequest(nil), f.reqs...)
}

// answer is a master at epoch e that stores nothing and echoes value.
func answer(e api.Epoch, id uint64, value string) func(wire.KVRequest) (int, wire.KVResponse) {
	return func(req wire.KVRequest) (int, wire.KVResponse) {
		v := value
		return 200, wire.KVResponse{OK: true, Found: true, Value: &v, Epoch: e, Index: 7, Master: id}
	}
}

func newClient(t *testing.T, cfg Config) *Client {
	t.Helper()
	if cfg.Group == "" {
		cfg.Group = "g"
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func TestNewValidates(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
	}{
		{"no addresses", Config{Group: "g"}},
		{"no group", Config{Naming: "127.0.0.1:7400"}},
		{"bad group", Config{Group: "Bad Group", Naming: "127.0.0.1:7400"}},
		{"bad naming address", Config{Group: "g", Naming: "127.0.0.1"}},
		{"bad naming port", Config{Group: "g", Naming: "127.0.0.1:0"}},
		{"bad agent address", Config{Group: "g", Agents: []string{"127.0.0.1:7500", "no-port"}}},
		{"empty agent address", Config{Group: "g", Naming: "127.0.0.1:7400", Agents: []string{""}}},
		{"negative timeout", Config{Group: "g", Naming: "127.0.0.1:7400", Timeout: -time.Second}},
	} {
		if c, err := New(tc.cfg); err == nil {
			c.Close()
			t.Errorf("%s: New(%+v) = nil error", tc.name, tc.cfg)
		} else if !errors.Is(err, api.ErrInvalid) || !strings.HasPrefix(err.Error(), "client: ") {
			t.Errorf("%s: error %q does not wrap api.ErrInvalid with the client: prefix", tc.name, err)
		}
	}
	for _, cfg := range []Config{
		{Group: "g", Naming: "127.0.0.1:7400"},
		{Group: "g", Agents: []string{"localhost:7500"}},
	} {
		c, err := New(cfg)
		if err != nil {
			t.Fatalf("New(%+v): %v", cfg, err)
		}
		if c.id == 0 || c.timeout != defaultTimeout {
			t.Errorf("defaults: id %d, timeout %s", c.id, c.timeout)
		}
		c.Close()
		if _, err := c.Get(context.Background(), "k"); !errors.Is(err, errClosed) {
			t.Errorf("Get after Close: %v", err)
		}
	}
	c := newClient(t, Config{Agents: []string{"127.0.0.1:7500"}, ClientID: 42})
	if c.id != 42 {
		t.Errorf("ClientID 42 became %d", c.id)
	}
}

// TestStaleReplyIsNeverReturned: after a reply at epoch 5.1, the same agent
// answers at 3.1 (a master that lost its mastership and came back with old
// state) while its info still says 5.1. The client discards every such reply,
// including not-master hints, retries until the deadline and fails with
// ErrStaleEpoch; once the agent's info also says 3.1, the client stops
// sending to it and fails with ErrNoMaster.
func TestStaleReplyIsNeverReturned(t *testing.T) {
	t.Parallel()
	a, decoy := newFake(t), newFake(t)
	e5, old := api.Epoch{Term: 5, ID: 1}, api.Epoch{Term: 3, ID: 1}
	decoy.set(3, "master", api.Epoch{Term: 3, ID: 3}, 3, answer(api.Epoch{Term: 3, ID: 3}, 3, "decoy"))
	a.set(1, "master", e5, 1, answer(e5, 1, "fresh"))
	c := newClient(t, Config{Agents: []string{a.addr()}, Timeout: 400 * time.Millisecond})
	ctx := context.Background()
	rep, err := c.Get(ctx, "k")
	if err != nil || string(rep.Value) != "fresh" || rep.Epoch != e5 {
		t.Fatalf("first Get = %+v, %v", rep, err)
	}
	stale := answer(old, 1, "stale")
	var n atomic.Int64
	staleKV := func(req wire.KVRequest) (int, wire.KVResponse) {
		// Alternate stale successes and stale not-master hints to the decoy.
		if n.Add(1)%2 == 0 {
			return 421, wire.KVResponse{Code: "not-master", Epoch: old, Master: 3, MasterA: decoy.addr()}
		}
		return stale(req)
	}
	ops := []func() (Reply, error){
		func() (Reply, error) { return c.Get(ctx, "k") },
		func() (Reply, error) { return c.Put(ctx, "k", []byte("v")) },
	}
	for _, infoEpoch := range []api.Epoch{e5, old} {
		a.set(1, "master", infoEpoch, 1, staleKV)
		for _, op := range ops {
			before := a.count.Load()
			rep, err := op()
			if err == nil {
				t.Fatalf("stale reply returned as success: %+v", rep)
			}
			want := ErrStaleEpoch
			if infoEpoch == old {
				want = ErrNoMaster
			}
			if !errors.Is(err, want) || !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("info at %s: error %q: want %v and the deadline", infoEpoch, err, want)
			}
			if got := c.MaxEpoch(); got != e5 {
				t.Errorf("MaxEpoch went from 5.1 to %s", got)
			}
			if sent := a.count.Load() - before; infoEpoch == e5 && sent < 2 {
				t.Errorf("%d requests after the stale reply: want retries", sent)
			}
		}
	}
	if decoy.count.Load() != 0 {
		t.Errorf("the client followed a stale not-master hint %d times", decoy.count.Load())
	}
	if c.redirects.Load() != 0 {
		t.Errorf("redirects = %d", c.redirects.Load())
	}
}

// TestStaleReplyRetriedOnFreshMaster: the cached master goes stale while a
// back-up takes over at a newer epoch; a write answered at the stale epoch is
// re-sent, with the same sequence, to the new master, whose reply is the one
// returned.
func TestStaleReplyRetriedOnFreshMaster(t *testing.T) {
	t.Parallel()
	a, b := newFake(t), newFake(t)
	e5, e6, e3 := api.Epoch{Term: 5, ID: 1}, api.Epoch{Term: 6, ID: 2}, api.Epoch{Term: 3, ID: 1}
	a.set(1, "master", e5, 1, answer(e5, 1, "a"))
	b.set(2, "backup", e5, 1, func(wire.KVRequest) (int, wire.KVResponse) {
		return 421, wire.KVResponse{Code: "not-master", Epoch: e5, Master: 1, MasterA: a.addr()}
	})
	members := []wire.Member{{ID: 1, Group: "g", API: a.addr()}, {ID: 2, Group: "g", API: b.addr()}}
	a.ms, b.ms = members, members
	c := newClient(t, Config{Agents: []string{b.addr()}, Timeout: 2 * time.Second})
	ctx := context.Background()
	// Found through b's info (back-up of 1) and members.
	if rep, err := c.Put(ctx, "k", []byte("v1")); err != nil || rep.MasterAddr != a.addr() || rep.Epoch != e5 {
		t.Fatalf("Put = %+v, %v", rep, err)
	}
	var maxSeen []api.Epoch
	a.set(1, "master", e3, 1, answer(e3, 1, "stale"))
	b.set(2, "master", e6, 2, answer(e6, 2, "b"))
	rep, err := c.Put(ctx, "k", []byte("v2"))
	if err != nil || rep.Epoch != e6 || rep.MasterAddr != b.addr() || rep.Master != 2 {
		t.Fatalf("Put after the change = %+v, %v", rep, err)
	}
	maxSeen = append(maxSeen, c.MaxEpoch())
	ra, rb := a.requests(), b.requests()
	last, retry := ra[len(ra)-1], rb[len(rb)-1]
	if last.Seq != retry.Seq || last.Client != retry.Client || last.Client != c.id || *retry.Value != "v2" {
		t.Errorf("stale attempt %+v, retry %+v: want the same client and seq", last, retry)
	}
	if ra[0].Seq >= last.Seq {
		t.Errorf("seq did not grow: %d then %d", ra[0].Seq, last.Seq)
	}
	rep, err = c.Get(ctx, "k")
	if err != nil || string(rep.Value) != "b" || rep.Epoch != e6 {
		t.Fatalf("Get = %+v, %v", rep, err)
	}
	if rb[len(rb)-1].Client != 0 && b.requests()[len(b.requests())-1].Client != 0 {
		t.Error("Get carried a client ID")
	}
	maxSeen = append(maxSeen, c.MaxEpoch())
	for _, m := range maxSeen {
		if m != e6 {
			t.Errorf("MaxEpoch %s, want %s", m, e6)
		}
	}
}

// TestFollowsNotMaster: an agent that says it is master answers not-master
// naming another; the client follows the hint.
func TestFollowsNotMaster(t *testing.T) {
	t.Parallel()
	a, b := newFake(t), newFake(t)
	e5, e6 := api.Epoch{Term: 5, ID: 1}, api.Epoch{Term: 6, ID: 2}
	a.set(1, "master", e5, 1, func(wire.KVRequest) (int, wire.KVResponse) {
		return 421, wire.KVResponse{Error: "agent: not master", Code: "not-master", Epoch: e6, Master: 2, MasterA: b.addr()}
	})
	b.set(2, "master", e6, 2, answer(e6, 2, "b"))
	c := newClient(t, Config{Agents: []string{a.addr()}, Timeout: 2 * time.Second})
	rep, err := c.Put(context.Background(), "k", []byte("v"))
	if err != nil || rep.MasterAddr != b.addr() || rep.Epoch != e6 {
		t.Fatalf("Put = %+v, %v", rep, err)
	}
	if c.redirects.Load() != 1 {
		t.Errorf("redirects = %d, want 1", c.redirects.Load())
	}
	ra, rb := a.requests(), b.requests()
	if len(ra) != 1 || len(rb) != 1 || ra[0].Seq != rb[0].Seq {
		t.Errorf("requests at a %+v, at b %+v: want one each with the same seq", ra, rb)
	}
}

// TestBadInputRefusedAtOnce: bad input fails with ErrRefused without
// retries, whether the client or the agent catches it.
func TestBadInputRefusedAtOnce(t *testing.T) {
	t.Parallel()
	f := newFake(t)
	e := api.Epoch{Term: 2, ID: 1}
	f.set(1, "master", e, 1, func(req wire.KVRequest) (int, wire.KVResponse) {
		switch req.Key {
		case "invalid":
			return 400, wire.KVResponse{Error: "kv: malformed op", Code: "invalid", Epoch: e}
		case "too-large-here":
			return 413, wire.KVResponse{Error: "key over the limit", Code: "too-large", Epoch: e}
		case "stale-seq":
			return 200, wire.KVResponse{Error: "kv: stale sequence: client 1 sent 1 after 2", Epoch: e, Index: 9, Master: 1}
		case "not-kv":
			return 501, wire.KVResponse{Error: "agent: the state machine is not a kv store", Code: "not-kv", Epoch: e}
		}
		return answer(e, 1, "x")(req)
	})
	c := newClient(t, Config{Agents: []string{f.addr()}, Timeout: 3 * time.Second})
	ctx := context.Background()
	local := []struct {
		name string
		op   func() (Reply, error)
	}{
		{"empty key put", func() (Reply, error) { return c.Put(ctx, "", []byte("v")) }},
		{"empty key get", func() (Reply, error) { return c.Get(ctx, "") }},
		{"empty key delete", func() (Reply, error) { return c.Delete(ctx, "") }},
		{"key of 1025 bytes", func() (Reply, error) { return c.Put(ctx, strings.Repeat("k", 1025), nil) }},
		{"key of 1025 bytes get", func() (Reply, error) { return c.Get(ctx, strings.Repeat("k", 1025)) }},
		{"value over 64 KiB", func() (Reply, error) { return c.Put(ctx, "k", bytes.Repeat([]byte("v"), 64<<10+1)) }},
		{"value not UTF-8", func() (Reply, error) { return c.Put(ctx, "k", []byte{0xff, 0xfe}) }},
		{"key not UTF-8", func() (Reply, error) { return c.Get(ctx, "k\xff") }},
		{"cas expecting both", func() (Reply, error) { return c.CAS(ctx, "k", []byte("a"), true, []byte("b")) }},
	}
	for _, tc := range local {
		start := time.Now()
		_, err := tc.op()
		if !errors.Is(err, ErrRefused) {
			t.Errorf("%s: error %v, want ErrRefused", tc.name, err)
		}
		if d := time.Since(start); d > 100*time.Millisecond {
			t.Errorf("%s: took %s", tc.name, d)
		}
	}
	if n := f.count.Load(); n != 0 {
		t.Errorf("%d requests sent for input the client can refuse", n)
	}
	// A key of exactly 1024 bytes is fine.
	if _, err := c.Put(ctx, strings.Repeat("k", 1024), []byte("v")); err != nil {
		t.Errorf("key of 1024 bytes: %v", err)
	}
	for _, key := range []string{"invalid", "too-large-here", "stale-seq", "not-kv"} {
		before := f.count.Load()
		_, err := c.Put(ctx, key, []byte("v"))
		if !errors.Is(err, ErrRefused) {
			t.Errorf("%s: error %v, want ErrRefused", key, err)
		}
		if n := f.count.Load() - before; n != 1 {
			t.Errorf("%s: %d requests, want 1 (no retry)", key, n)
		}
	}
}

// TestDeadlineSaysWhy: a master that never serves is retried with back-off
// until the deadline, and the error says what it answered.
func TestDeadlineSaysWhy(t *testing.T) {
	t.Parallel()
	f := newFake(t)
	e := api.Epoch{Term: 4, ID: 1}
	f.set(1, "master", e, 1, func(wire.KVRequest) (int, wire.KVResponse) {
		return 503, wire.KVResponse{Error: "agent: master not serving", Code: "not-serving", Epoch: e}
	})
	c := newClient(t, Config{Agents: []string{f.addr()}, Timeout: 500 * time.Millisecond})
	start := time.Now()
	_, err := c.Put(context.Background(), "k", []byte("v"))
	d := time.Since(start)
	if err == nil || !strings.Contains(err.Error(), "not-serving") || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("error %v: want the deadline and not-serving", err)
	}
	if d < 500*time.Millisecond || d > 2*time.Second {
		t.Errorf("gave up after %s, want about 500ms", d)
	}
	// Back-off from 10ms doubling to a 200ms cap: a handful of attempts in
	// 500ms, not hundreds.
	if n := f.count.Load(); n < 3 || n > 20 {
		t.Errorf("%d attempts in 500ms", n)
	}
	seqs := map[uint64]bool{}
	for _, r := range f.requests() {
		seqs[r.Seq] = true
	}
	if len(seqs) != 1 {
		t.Errorf("retries used sequences %v, want one", seqs)
	}
	// The caller's own deadline also bounds an operation.
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start = time.Now()
	if _, err := c.Get(ctx, "k"); !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 400*time.Millisecond {
		t.Errorf("Get with a 50ms context: %v after %s", err, time.Since(start))
	}
	// Nothing reachable at all: ErrNoMaster.
	dead := newClient(t, Config{Agents: []string{"127.0.0.1:1"}, Timeout: 200 * time.Millisecond})
	if _, err := dead.Get(context.Background(), "k"); !errors.Is(err, ErrNoMaster) {
		t.Errorf("no agent reachable: %v, want ErrNoMaster", err)
	}
}

// TestConcurrentUse: many goroutines share one client; writes go one at a
// time with growing sequences while reads overlap, and MaxEpoch never goes
// backwards while the master's epoch moves on.
func TestConcurrentUse(t *testing.T) {
	t.Parallel()
	f := newFake(t)
	var (
		mu       sync.Mutex
		term     uint64 = 1
		inflight int
		reqs     int
		lastSeq  uint64
		problems []string
	)
	var kvf func(req wire.KVRequest) (int, wire.KVResponse)
	kvf = func(req wire.KVRequest) (int, wire.KVResponse) {
		mu.Lock()
		// A new epoch every 7 requests: replies of requests in flight
		// across the change are stale and must be retried.
		reqs++
		if reqs%7 == 0 {
			term++
			f.set(1, "master", api.Epoch{Term: term, ID: 1}, 1, kvf)
		}
		e := api.Epoch{Term: term, ID: 1}
		write := req.Op != "get"
		if write {
			inflight++
			if inflight > 1 {
				problems = append(problems, "two writes in flight")
			}
			if req.Seq < lastSeq {
				// A retry re-sends its sequence; a new write takes the next.
				problems = append(problems, "sequence went backwards")
			}
			lastSeq = req.Seq
		}
		mu.Unlock()
		time.Sleep(time.Millisecond) // let writes overlap if they could
		mu.Lock()
		if write {
			inflight--
		}
		mu.Unlock()
		return answer(e, 1, "v")(req)
	}
	f.set(1, "master", api.Epoch{Term: 1, ID: 1}, 1, kvf)
	c := newClient(t, Config{Agents: []string{f.addr()}, Timeout: 5 * time.Second})
	stop := make(chan struct{})
	var watch sync.WaitGroup
	watch.Go(func() {
		var prev api.Epoch
		for {
			select {
			case <-stop:
				return
			default:
			}
			m := c.MaxEpoch()
			if m.Less(prev) {
				t.Errorf("MaxEpoch went from %s to %s", prev, m)
			}
			prev = m
		}
	})
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 10 {
				var err error
				var rep Reply
				if (g+i)%2 == 0 {
					rep, err = c.Get(context.Background(), "k")
				} else {
					rep, err = c.Put(context.Background(), "k", []byte("v"))
				}
				if err != nil {
					t.Error(err)
					return
				}
				if m := c.MaxEpoch(); m.Less(rep.Epoch) {
					t.Errorf("reply at %s, newer than MaxEpoch %s", rep.Epoch, m)
				}
			}
		})
	}
	wg.Wait()
	close(stop)
	watch.Wait()
	mu.Lock()
	defer mu.Unlock()
	for _, p := range problems {
		t.Error(p)
	}
	if c.seq.Load() != 40 {
		t.Errorf("seq = %d after 40 writes", c.seq.Load())
	}
}

// A reply that is no JSON error shows its first line, when it is text.
func TestPlainText(t *testing.T) {
	for _, tc := range []struct{ body, want string }{
		{"Client sent an HTTP request to an HTTPS server.\n", ": Client sent an HTTP request to an HTTPS server."},
		{"", ""},
		{"\x00\x01binary", ""},
		{"first\nsecond", ": first"},
		{strings.Repeat("x", 300), ": " + strings.Repeat("x", 200) + "..."},
	} {
		if got := plainText([]byte(tc.body)); got != tc.want {
			t.Errorf("plainText(%q) = %q, want %q", tc.body, got, tc.want)
		}
	}
}
