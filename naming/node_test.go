package naming

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mastership/mastership/config"
	"github.com/mastership/mastership/naming/api"
	"github.com/mastership/mastership/naming/client"
)

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func testConfig(t *testing.T, dir string) config.Naming {
	t.Helper()
	cfg, err := config.DefaultNaming("local")
	if err != nil {
		t.Fatal(err)
	}
	cfg.DataDir = dir
	return cfg
}

type testNode struct {
	*Node
	client *client.Client
	addr   string // where it serves
	done   chan error
}

func startNode(t *testing.T, cfg config.Naming) *testNode {
	t.Helper()
	return startNodeClock(t, cfg, realClock{})
}

func startNodeClock(t *testing.T, cfg config.Naming, clk Clock) *testNode {
	t.Helper()
	n, err := newNode(cfg, clk)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tn := &testNode{Node: n, addr: ln.Addr().String(), done: make(chan error, 1)}
	go func() { tn.done <- n.Serve(ln) }()
	tn.client, err = client.New(ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		tn.client.Close()
		n.Close()
	})
	return tn
}

// fakeAgent stands in for an agent's notification endpoint and records the
// triggers it receives.
type fakeAgent struct {
	srv   *httptest.Server
	fail  atomic.Int64 // answer 503 to this many more deliveries
	mu    sync.Mutex
	got   []api.Notify
	calls atomic.Int64
}

func newFakeAgent(t *testing.T) *fakeAgent {
	fa := &fakeAgent{}
	fa.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fa.calls.Add(1)
		if r.URL.Path != NotifyPath {
			http.NotFound(w, r)
			return
		}
		if fa.fail.Load() > 0 {
			fa.fail.Add(-1)
			http.Error(w, "not now", http.StatusServiceUnavailable)
			return
		}
		b, _ := io.ReadAll(r.Body)
		var n api.Notify
		if err := api.Decode(b, &n); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		fa.mu.Lock()
		fa.got = append(fa.got, n)
		fa.mu.Unlock()
	}))
	t.Cleanup(fa.srv.Close)
	return fa
}

func (fa *fakeAgent) addr() string { return fa.srv.Listener.Addr().String() }

// notified reports whether a trigger for group naming master id arrived.
func (fa *fakeAgent) notified(group string, id uint64) bool {
	fa.mu.Lock()
	defer fa.mu.Unlock()
	for _, n := range fa.got {
		if n.Group == group && n.Master != nil && n.Master.ID == id {
			return true
		}
	}
	return false
}

func countKind(evs []api.Event, kind string) int {
	n := 0
	for _, e := range evs {
		if e.Kind == kind {
			n++
		}
	}
	return n
}

// Eight goroutines register different IDs for one group at the same instant,
// 200 rounds: each round ends with exactly one registration, the one the
// policy picks, one conflict-resolved event, and every member notified.
func TestConcurrentRegistrations(t *testing.T) {
	const (
		rounds   = 200
		parallel = 10 // rounds run side by side, each on its own group
		agents   = 8
	)
	cfg := testConfig(t, t.TempDir())
	cfg.ConflictWindow = 50 * time.Millisecond
	// "The same instant" is exact: the node's clock only moves when the test
	// says so, once every registration of the batch has reached the node.
	clk := newManualClock(time.Now())
	tn := startNodeClock(t, cfg, clk)
	fakes := make([]*fakeAgent, agents)
	for i := range fakes {
		fakes[i] = newFakeAgent(t)
	}
	ctx := context.Background()
	wants := make([]uint64, rounds)
	type roundRun struct {
		group    string
		policy   api.Policy
		want     uint64
		sessions []uint64
		resps    []api.RegisterResponse
		errs     []error
	}
	setup := func(round int) (*roundRun, error) {
		rr := &roundRun{group: fmt.Sprintf("round-%d", round), policy: api.PolicyLowestID, want: 1,
			sessions: make([]uint64, agents), resps: make([]api.RegisterResponse, agents), errs: make([]error, agents)}
		if round%2 == 1 {
			rr.policy = api.PolicyPriority
		}
		for i := 0; i < agents; i++ {
			// Priorities are a permutation so the priority policy has one winner.
			prio := (i*5 + round) % agents
			id := uint64(i + 1)
			resp, err := tn.client.Join(ctx, api.JoinRequest{Group: rr.group, ID: id, Addr: fakes[i].addr(), Priority: prio, Policy: string(rr.policy)})
			if err != nil {
				return nil, err
			}
			rr.sessions[i] = resp.Session
			if rr.policy == api.PolicyPriority && prio == agents-1 {
				rr.want = id
			}
		}
		wants[round] = rr.want
		return rr, nil
	}
	check := func(rr *roundRun) error {
		// The first registrant is accepted at once, before the others
		// arrive; the one decision then removes it unless the policy keeps it.
		early := 0
		for i, err := range rr.errs {
			if err != nil {
				return fmt.Errorf("%s: register %d: %w", rr.group, i+1, err)
			}
			switch {
			case rr.resps[i].Accepted && rr.resps[i].Master.ID != rr.want:
				early++
			case rr.resps[i].Master.ID != rr.want:
				return fmt.Errorf("%s: agent %d told master %d, want %d", rr.group, i+1, rr.resps[i].Master.ID, rr.want)
			}
		}
		if early > 1 {
			return fmt.Errorf("%s: %d registrants accepted before the decision, want at most 1", rr.group, early)
		}
		look, err := tn.client.Lookup(ctx, api.LookupRequest{Group: rr.group})
		if err != nil || look.Master == nil || look.Master.ID != rr.want {
			return fmt.Errorf("%s: lookup %+v %v, want master %d", rr.group, look.Master, err, rr.want)
		}
		evs, err := tn.client.AllEvents(ctx, rr.group, 0)
		if err != nil {
			return err
		}
		if n := countKind(evs, api.EventConflictResolved); n != 1 {
			return fmt.Errorf("%s: %d conflict-resolved events, want 1: %+v", rr.group, n, evs)
		}
		for _, e := range evs {
			if e.Kind == api.EventConflictResolved && (e.Retained != rr.want || len(e.Removed) != agents-1 || e.Policy != rr.policy) {
				return fmt.Errorf("%s: resolved %+v, want %d retained by %s", rr.group, e, rr.want, rr.policy)
			}
		}
		return nil
	}
	for base := 0; base < rounds; base += parallel {
		runs := make([]*roundRun, parallel)
		for r := range runs {
			var err error
			if runs[r], err = setup(base + r); err != nil {
				t.Fatal(err)
			}
		}
		start := make(chan struct{})
		var wg sync.WaitGroup
		for _, rr := range runs {
			for i := 0; i < agents; i++ {
				wg.Add(1)
				go func(rr *roundRun, i int) {
					defer wg.Done()
					<-start
					rr.resps[i], rr.errs[i] = tn.client.Register(ctx, api.RegisterRequest{Group: rr.group, ID: uint64(i + 1),
						Addr: fakes[i].addr(), Session: rr.sessions[i], Epoch: api.Epoch{Term: 1}})
				}(rr, i)
			}
		}
		close(start)
		waitFor(t, 30*time.Second, "every registration of the batch at the node", func() bool {
			for _, rr := range runs {
				if tn.competing(rr.group) != agents {
					return false
				}
			}
			return true
		})
		clk.Advance(cfg.ConflictWindow)
		wg.Wait()
		errs := make([]error, len(runs))
		for r, rr := range runs {
			errs[r] = check(rr)
		}
		if err := errors.Join(errs...); err != nil {
			t.Fatal(err)
		}
	}
	// Every member of every round hears the decision.
	waitFor(t, 30*time.Second, "every member notified", func() bool {
		for r := 0; r < rounds; r++ {
			group := fmt.Sprintf("round-%d", r)
			for _, fa := range fakes {
				if !fa.notified(group, wants[r]) {
					return false
				}
			}
		}
		return true
	})
}

// competing counts the live registration and the pending ones of a group.
func (n *Node) competing(group string) int {
	n.mu.Lock()
	defer n.mu.Unlock()
	g := n.reg.groups[group]
	if g == nil {
		return 0
	}
	c := len(g.Pending)
	if g.Master != nil {
		c++
	}
	return c
}

func TestTriggerRetriesWithBackoffWhileSessionLives(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	cfg.ConflictWindow = 0
	cfg.TriggerBackoffMin = 5 * time.Millisecond
	cfg.TriggerBackoffMax = 20 * time.Millisecond
	tn := startNode(t, cfg)
	ctx := context.Background()
	good, flaky, dead := newFakeAgent(t), newFakeAgent(t), newFakeAgent(t)
	flaky.fail.Store(3)
	dead.fail.Store(1 << 40)
	var deadSession uint64
	sessions := map[uint64]uint64{}
	for i, fa := range []*fakeAgent{good, flaky, dead} {
		resp, err := tn.client.Join(ctx, api.JoinRequest{Group: "g", ID: uint64(i + 1), Addr: fa.addr(), TTL: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		sessions[uint64(i+1)] = resp.Session
		if fa == dead {
			deadSession = resp.Session
		}
	}
	tn.client.Register(ctx, api.RegisterRequest{Group: "g", ID: 2, Addr: flaky.addr(), TTL: time.Minute, Session: sessions[2], Epoch: api.Epoch{Term: 1, ID: 2}})
	resp, err := tn.client.Register(ctx, api.RegisterRequest{Group: "g", ID: 1, Addr: good.addr(), TTL: time.Minute, Session: sessions[1], Epoch: api.Epoch{Term: 1, ID: 1}})
	if err != nil || !resp.Accepted || !resp.Conflict {
		t.Fatalf("register: %+v %v", resp, err)
	}
	waitFor(t, 10*time.Second, "good and flaky notified", func() bool {
		return good.notified("g", 1) && flaky.notified("g", 1)
	})
	// 3 keeps failing until its session (1s) lapses; retries stop then.
	waitFor(t, 10*time.Second, "dead member's session to lapse", func() bool {
		evs, _ := tn.client.AllEvents(ctx, "g", 0)
		return slices.ContainsFunc(evs, func(e api.Event) bool { return e.Kind == api.EventMemberExpired && e.ID == 3 })
	})
	if tn.sessionLive("g", 3, deadSession) {
		t.Fatal("session expired yet live")
	}
	waitFor(t, 10*time.Second, "delivery goroutines to finish", func() bool {
		return tn.activeDeliveries() == 0
	})
	evs, err := tn.client.AllEvents(ctx, "g", 0)
	if err != nil {
		t.Fatal(err)
	}
	var flakyFails, flakySent, deadFails int
	var flakyAttempts []int
	expiredAt := -1
	failsAfterExpiry := 0
	for i, e := range evs {
		switch {
		case e.Kind == api.EventTriggerFailed && e.Target == 2:
			flakyFails++
			flakyAttempts = append(flakyAttempts, e.Attempt)
		case e.Kind == api.EventTriggerSent && e.Target == 2:
			flakySent++
			if e.Attempt != 4 {
				t.Errorf("flaky member notified at attempt %d, want 4", e.Attempt)
			}
		case e.Kind == api.EventTriggerFailed && e.Target == 3:
			deadFails++
			if expiredAt >= 0 {
				failsAfterExpiry++
			}
		case e.Kind == api.EventMemberExpired && e.ID == 3:
			expiredAt = i
		}
	}
	// Three failed attempts, of which the history keeps 1 and 2 (then 4,
	// 8, ...: RecordsAttempt), and the success at attempt 4.
	if flakyFails != 2 || !slices.Equal(flakyAttempts, []int{1, 2}) || flakySent != 1 {
		t.Errorf("flaky member: failures recorded at attempts %v, %d sent; want [1 2] and 1", flakyAttempts, flakySent)
	}
	if deadFails < 2 {
		t.Errorf("dead member: %d failed attempts, want retries", deadFails)
	}
	if expiredAt < 0 {
		t.Fatalf("no member-expired event for 3")
	}
	// At most the attempt in flight when the session lapsed comes after it.
	if failsAfterExpiry > 1 {
		t.Errorf("retries went on after the session lapsed: %d failures recorded after its expiry", failsAfterExpiry)
	}
}

func (n *Node) sessionLive(group string, id, session uint64) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.reg.SessionLive(n.clock.Now(), group, id, session)
}

func TestRestartKeepsAcknowledgedState(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(t, dir)
	cfg.RestartGrace = 30 * time.Second
	n, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	jr, err := n.Join(api.JoinRequest{Group: "g", ID: 4, Addr: addr(4)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n.Register(context.Background(), api.RegisterRequest{Group: "g", ID: 4, Addr: addr(4), Session: jr.Session, Epoch: api.Epoch{Term: 9}}); err != nil {
		t.Fatal(err)
	}
	// A second node on the same directory is refused while the first runs.
	if _, err := New(cfg); !errors.Is(err, ErrStoreLocked) {
		t.Fatalf("second node on the data dir: %v, want ErrStoreLocked", err)
	}
	n.Close()
	n2, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer n2.Close()
	look, err := n2.Lookup(api.LookupRequest{Group: "g"})
	if err != nil || look.Master == nil || look.Master.ID != 4 || look.Master.Epoch.Term != 9 {
		t.Fatalf("after restart: %+v %v", look, err)
	}
	if _, err := n2.Renew(api.RenewRequest{Group: "g", ID: 4, Session: jr.Session}); err != nil {
		t.Fatalf("session not re-armed: %v", err)
	}
	page, err := n2.Events(api.EventsRequest{Group: "g"})
	if err != nil || len(page.Events) != 2 || page.Events[0].Kind != api.EventMemberJoined || page.Events[1].Kind != api.EventMasterRegistered {
		t.Fatalf("events after restart: %+v %v", page, err)
	}
	// Numbering carries on.
	n2.Leave(api.LeaveRequest{Group: "g", ID: 4, Session: jr.Session})
	page, _ = n2.Events(api.EventsRequest{Group: "g", After: 2})
	if len(page.Events) != 2 || page.Events[0].Seq != 3 {
		t.Fatalf("events after leave: %+v", page.Events)
	}
}

func TestEventsAreBoundedAndPaged(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	cfg.MaxEventsPerGroup = 16
	tn := startNode(t, cfg)
	ctx := context.Background()
	jr, err := tn.client.Join(ctx, api.JoinRequest{Group: "g", ID: 1, Addr: addr(1), TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 39; i++ {
		if _, err := tn.client.Register(ctx, api.RegisterRequest{Group: "g", ID: 1, Addr: addr(1), Session: jr.Session, Epoch: api.Epoch{Term: uint64(i + 1)}}); err != nil {
			t.Fatal(err)
		}
	}
	page, err := tn.client.Events(ctx, api.EventsRequest{Group: "g", Limit: 10})
	if err != nil || len(page.Events) != 10 || !page.More || page.Events[0].Seq != 25 {
		t.Fatalf("first page: %d events from %d, more=%v, err %v", len(page.Events), page.Events[0].Seq, page.More, err)
	}
	all, err := tn.client.AllEvents(ctx, "g", 0)
	if err != nil || len(all) != 16 || all[15].Seq != 40 {
		t.Fatalf("all: %d events, err %v", len(all), err)
	}
}

// A blocking read of a group answers once the group's index passes the
// one given (a change: an event recorded), or after the wait with the
// same index; the RPC and the JSON API alike. Bad index or wait values
// are refused.
func TestBlockingGroupStatus(t *testing.T) {
	tn := startNode(t, testConfig(t, t.TempDir()))
	ctx := context.Background()
	jr, err := tn.client.Join(ctx, api.JoinRequest{Group: "g", ID: 1, Addr: addr(1), TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	st, err := tn.client.Status(ctx, api.StatusRequest{Group: "g"})
	if err != nil || st.Index == 0 {
		t.Fatalf("status: %+v %v", st, err)
	}
	idle, err := tn.client.Status(ctx, api.StatusRequest{Group: "g", Index: st.Index, Wait: 50 * time.Millisecond})
	if err != nil || idle.Index != st.Index {
		t.Fatalf("a blocking read with nothing new: %+v %v", idle, err)
	}
	got := make(chan api.StatusResponse, 1)
	go func() {
		r, err := tn.client.Status(ctx, api.StatusRequest{Group: "g", Index: st.Index, Wait: 10 * time.Second})
		if err != nil {
			t.Error(err)
		}
		got <- r
	}()
	if _, err := tn.client.Register(ctx, api.RegisterRequest{Group: "g", ID: 1, Addr: addr(1), Session: jr.Session,
		Epoch: api.Epoch{Term: 1}}); err != nil {
		t.Fatal(err)
	}
	r := <-got
	if r.Index <= st.Index || len(r.Groups) != 1 || r.Groups[0].Master == nil || r.Groups[0].Master.ID != 1 {
		t.Fatalf("the blocking read after a registration: %+v", r)
	}

	// An index ahead of the group's (a restored store) answers at once.
	if ahead, err := tn.client.Status(ctx, api.StatusRequest{Group: "g", Index: r.Index + 100, Wait: 30 * time.Second}); err != nil || ahead.Index != r.Index {
		t.Fatalf("a blocking read ahead of the index: %+v %v", ahead, err)
	}
	base := "http://" + tn.Addr() + "/v1/groups/g"
	resp, err := http.Get(fmt.Sprintf("%s?index=%d&wait=5s", base, st.Index))
	if err != nil {
		t.Fatal(err)
	}
	var body struct {
		Index  uint64 `json:"index"`
		Master *api.MasterStatus
	}
	json.NewDecoder(resp.Body).Decode(&body)
	resp.Body.Close()
	if resp.StatusCode != 200 || body.Index != r.Index || resp.Header.Get(IndexHeader) != fmt.Sprint(r.Index) || body.Master == nil {
		t.Fatalf("GET ?index: %s index %d header %q", resp.Status, body.Index, resp.Header.Get(IndexHeader))
	}
	for _, q := range []string{"index=abc", "index=-1", "wait=-1s", "wait=2m", "wait=soon"} {
		resp, err := http.Get(base + "?" + q)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("GET ?%s: %s, want 400", q, resp.Status)
		}
	}
	if _, err := tn.client.Status(ctx, api.StatusRequest{Index: 1}); !errors.Is(err, api.ErrInvalid) {
		t.Errorf("a blocking status of every group: %v, want invalid", err)
	}
	if _, err := tn.client.Status(ctx, api.StatusRequest{Group: "g", Wait: -time.Second}); !errors.Is(err, api.ErrInvalid) {
		t.Errorf("a negative wait: %v, want invalid", err)
	}
}

func TestHTTPAPIAndBadInput(t *testing.T) {
	tn := startNode(t, testConfig(t, t.TempDir()))
	ctx := context.Background()
	jr, _ := tn.client.Join(ctx, api.JoinRequest{Group: "orders", ID: 2, Addr: addr(2), Priority: 5})
	tn.client.Register(ctx, api.RegisterRequest{Group: "orders", ID: 2, Addr: addr(2), Session: jr.Session, Epoch: api.Epoch{Term: 3}})
	base := "http://" + tn.Addr()

	get := func(path string, wantStatus int, out any) {
		t.Helper()
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != wantStatus {
			b, _ := io.ReadAll(resp.Body)
			t.Fatalf("GET %s: %s %s, want %d", path, resp.Status, b, wantStatus)
		}
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
	}
	var health api.HealthResponse
	get("/v1/health", 200, &health)
	if health.Status != "ok" || health.Groups != 1 {
		t.Fatalf("health %+v", health)
	}
	var e api.Error
	var st map[string]any
	get("/v1/groups/orders", 200, &st)
	want := `{"group":"orders","index":2,"master":{"addr":"127.0.0.2:7500","epoch":{"id":2,"term":3},"id":2},"members":[{"addr":"127.0.0.2:7500","id":2,"priority":5}],"mode":"available","paused":false,"policy":"lowest-id"}`
	if b, _ := json.Marshal(st); string(b) != want {
		t.Fatalf("group status\n got %s\nwant %s", b, want)
	}
	var list struct {
		Groups []api.GroupStatus `json:"groups"`
		Next   string            `json:"next"`
		More   bool              `json:"more"`
	}
	get("/v1/groups", 200, &list)
	if len(list.Groups) != 1 || list.Groups[0].Group != "orders" || list.More || list.Next != "orders" {
		t.Fatalf("groups %+v", list)
	}
	get("/v1/groups?after=orders", 200, &list)
	if len(list.Groups) != 0 || list.More {
		t.Fatalf("groups after the last %+v", list)
	}
	get("/v1/groups?limit=-1", 400, &e)
	get("/v1/groups?limit=x", 400, &e)
	var evs struct{ Events []api.Event }
	get("/v1/groups/orders/events?limit=1", 200, &evs)
	if len(evs.Events) != 1 || evs.Events[0].Kind != api.EventMemberJoined {
		t.Fatalf("events %+v", evs)
	}
	get("/v1/groups/missing", 404, &e)
	if e.Code != api.CodeNotFound {
		t.Fatalf("unknown group: %+v", e)
	}
	get("/v1/groups/Bad!", 400, &e)
	get("/v1/groups/orders/events?after=x", 400, &e)
	get("/v1/nothing", 404, &e)

	post := func(method string, body []byte) (int, api.Error) {
		resp, err := http.Post(base+"/rpc/"+method, ContentTypeMsgpack, bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		var e api.Error
		api.Decode(b, &e)
		return resp.StatusCode, e
	}
	if code, e := post("register", []byte{0xc1, 0x00}); code != 400 || e.Code != api.CodeInvalid {
		t.Fatalf("malformed msgpack: %d %+v", code, e)
	}
	if code, e := post("register", make([]byte, api.MaxMessageBytes+10)); code != 413 || e.Code != api.CodeTooLarge {
		t.Fatalf("oversized: %d %+v", code, e)
	}
	if code, e := post("explode", nil); code != 404 || e.Code != api.CodeNotFound {
		t.Fatalf("unknown method: %d %+v", code, e)
	}
	// Bad input changed nothing and the node still serves.
	look, err := tn.client.Lookup(ctx, api.LookupRequest{Group: "orders"})
	if err != nil || look.Master.ID != 2 {
		t.Fatalf("after bad input: %+v %v", look, err)
	}
	if _, err := tn.client.Lookup(ctx, api.LookupRequest{Group: "nope"}); !errors.Is(err, api.ErrNotFound) {
		t.Fatalf("client unknown group: %v", err)
	}
	st2, _ := tn.client.Status(ctx, api.StatusRequest{})
	if len(st2.Groups) != 1 {
		t.Fatalf("bad input created groups: %+v", st2.Groups)
	}
}

func TestClientUnavailable(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	a := ln.Addr().String()
	ln.Close()
	c, _ := client.New(a, client.WithTimeout(time.Second))
	if _, err := c.Lookup(context.Background(), api.LookupRequest{Group: "g"}); !errors.Is(err, api.ErrUnavailable) {
		t.Fatalf("closed port: %v, want ErrUnavailable", err)
	}
	if _, err := client.New("no-port"); err == nil {
		t.Fatal("client.New accepted an address without a port")
	}
}

func FuzzRPC(f *testing.F) {
	methods := []string{"join", "renew", "leave", "register", "lookup", "status", "recheck", "events", "health"}
	seed, _ := api.Encode(&api.RegisterRequest{Group: "g", ID: 1, Addr: "127.0.0.1:1"})
	f.Add(uint8(3), seed)
	for _, term := range []uint64{^uint64(0), 1 << 40} {
		b, _ := api.Encode(&api.RegisterRequest{Group: "g", ID: 1, Addr: "127.0.0.1:1", Epoch: api.Epoch{Term: term, ID: 1}})
		f.Add(uint8(3), b)
	}
	f.Add(uint8(0), []byte{0x80})
	f.Add(uint8(7), []byte{0xc1})
	cfg, _ := config.DefaultNaming("local")
	cfg.DataDir = f.TempDir()
	n, err := New(cfg)
	if err != nil {
		f.Fatal(err)
	}
	defer n.Close()
	h := n.Handler()
	// maxTerms is every group's highest epoch term.
	maxTerms := func() map[string]uint64 {
		n.mu.Lock()
		defer n.mu.Unlock()
		out := map[string]uint64{}
		if n.reg != nil {
			for name, g := range n.reg.groups {
				out[name] = g.MaxEpoch.Term
			}
		}
		return out
	}
	f.Fuzz(func(t *testing.T, m uint8, body []byte) {
		method := methods[int(m)%len(methods)]
		req := httptest.NewRequest(http.MethodPost, "/rpc/"+method, bytes.NewReader(body))
		rec := httptest.NewRecorder()
		before := maxTerms()
		h.ServeHTTP(rec, req)
		// No epoch enters a group more than MaxTermLead above the
		// group's highest (a new group's, above 0).
		for name, term := range maxTerms() {
			if term > before[name] && term-before[name] > api.MaxTermLead {
				t.Fatalf("%s %x: group %q's epoch went from term %d to %d", method, body, name, before[name], term)
			}
		}
		if rec.Code >= 500 {
			t.Fatalf("%s: status %d for %x: %s", method, rec.Code, body, rec.Body.Bytes())
		}
		if rec.Code != 200 {
			var e api.Error
			if err := api.Decode(rec.Body.Bytes(), &e); err != nil || e.Code == "" {
				t.Fatalf("%s: error reply is not a typed error: %x", method, rec.Body.Bytes())
			}
		}
	})
}

func TestTriggersAreConcurrent(t *testing.T) {
	// One member that holds every delivery until released must not delay
	// the others: act 1240 notifies all members at once.
	cfg := testConfig(t, t.TempDir())
	cfg.ConflictWindow = 0
	cfg.TriggerTimeout = 5 * time.Second
	tn := startNode(t, cfg)
	release := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-release }))
	defer slow.Close()
	defer close(release)
	ctx := context.Background()
	tn.client.Join(ctx, api.JoinRequest{Group: "g", ID: 1, Addr: slow.Listener.Addr().String()})
	fakes := []*fakeAgent{newFakeAgent(t), newFakeAgent(t), newFakeAgent(t)}
	sessions := map[uint64]uint64{}
	for i, fa := range fakes {
		jr, _ := tn.client.Join(ctx, api.JoinRequest{Group: "g", ID: uint64(i + 2), Addr: fa.addr()})
		sessions[uint64(i+2)] = jr.Session
	}
	tn.client.Register(ctx, api.RegisterRequest{Group: "g", ID: 3, Addr: fakes[1].addr(), Session: sessions[3], Epoch: api.Epoch{Term: 1, ID: 3}})
	tn.client.Register(ctx, api.RegisterRequest{Group: "g", ID: 2, Addr: fakes[0].addr(), Session: sessions[2], Epoch: api.Epoch{Term: 1, ID: 2}})
	waitFor(t, 3*time.Second, "fast members notified while one member stalls", func() bool {
		return slices.IndexFunc(fakes, func(fa *fakeAgent) bool { return !fa.notified("g", 2) }) < 0
	})
}

// A member's session is the secret that binds its registrations: no reply
// but its own join carries it (lookup, status, events, renew, register,
// the JSON API), and a leave or registration with a made-up one fails.
func TestSessionSecretNeverReturned(t *testing.T) {
	tn := startNode(t, testConfig(t, t.TempDir()))
	ctx := context.Background()
	jr, err := tn.client.Join(ctx, api.JoinRequest{Group: "g", ID: 1, Addr: addr(1), TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tn.client.Register(ctx, api.RegisterRequest{Group: "g", ID: 1, Addr: addr(1), Session: jr.Session, Epoch: api.Epoch{Term: 1}}); err != nil {
		t.Fatal(err)
	}
	secret := strconv.FormatUint(jr.Session, 10)
	var enc [8]byte
	binary.BigEndian.PutUint64(enc[:], jr.Session)
	var replies [][]byte
	add := func(v any, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		b, _ := api.Encode(v)
		j, _ := json.Marshal(v)
		replies = append(replies, b, j)
	}
	look, err := tn.client.Lookup(ctx, api.LookupRequest{Group: "g"})
	add(look, err)
	st, err := tn.client.Status(ctx, api.StatusRequest{Group: "g"})
	add(st, err)
	evs, err := tn.client.AllEvents(ctx, "g", 0)
	add(evs, err)
	rn, err := tn.client.Renew(ctx, api.RenewRequest{Group: "g", ID: 1, Session: jr.Session})
	add(rn, err)
	rr, err := tn.client.Register(ctx, api.RegisterRequest{Group: "g", ID: 1, Addr: addr(1), Session: jr.Session, Epoch: api.Epoch{Term: 1}})
	add(rr, err)
	for _, path := range []string{"/v1/groups", "/v1/groups/g", "/v1/groups/g/events"} {
		resp, err := http.Get("http://" + tn.Addr() + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		replies = append(replies, b)
	}
	for _, b := range replies {
		if bytes.Contains(b, []byte(secret)) || bytes.Contains(b, enc[:]) {
			t.Fatalf("a reply carries the session: %q", b)
		}
	}
	if err := tn.client.Leave(ctx, api.LeaveRequest{Group: "g", ID: 1, Session: jr.Session + 1}); !errors.Is(err, api.ErrSessionExpired) {
		t.Fatalf("leave with a made-up session: %v", err)
	}
}

// A client whose first node hangs (it accepts and never answers): a call
// whose time runs out on it moves the client past it, and the next call,
// bounded as tightly, gets the second node's answer.
func TestClientMovesPastAHungNode(t *testing.T) {
	tn := startNode(t, testConfig(t, t.TempDir()))
	hung, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer hung.Close()
	go func() {
		for {
			c, err := hung.Accept()
			if err != nil {
				return
			}
			defer c.Close() // held open, never answered
		}
	}()
	cl, err := client.New(hung.Addr().String()+","+tn.client.Addr(), client.WithTimeout(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	_, err = cl.Health(ctx)
	cancel()
	if err == nil {
		t.Fatal("a call whose whole time went to the hung node answered")
	}
	for i := 0; i < 3; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		_, err := cl.Health(ctx)
		cancel()
		if err != nil {
			t.Fatalf("call %d after the hung node timed one out: %v", i, err)
		}
	}
}

// Deliveries record their first attempt, then attempts 2, 4, 8 and so on
// (and always the last, whatever its number).
func TestRecordsAttempt(t *testing.T) {
	var got []int
	for a := -1; a <= 70; a++ {
		if RecordsAttempt(a) {
			got = append(got, a)
		}
	}
	if want := []int{1, 2, 4, 8, 16, 32, 64}; !slices.Equal(got, want) {
		t.Fatalf("recorded attempts %v, want %v", got, want)
	}
}
