package naming

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/mastership/mastership/naming/api"
)

func scrapeNode(t *testing.T, n *Node) map[string]*dto.MetricFamily {
	t.Helper()
	rec := httptest.NewRecorder()
	n.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != 200 {
		t.Fatalf("GET /metrics: %d %s", rec.Code, rec.Body)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(rec.Body.String()))
	if err != nil {
		t.Fatalf("GET /metrics does not parse as Prometheus text: %v", err)
	}
	return fams
}

func metricValue(fams map[string]*dto.MetricFamily, name, label, value string) float64 {
	f := fams[name]
	if f == nil {
		return -1
	}
	for _, m := range f.GetMetric() {
		ok := label == ""
		for _, l := range m.GetLabel() {
			if l.GetName() == label && l.GetValue() == value {
				ok = true
			}
		}
		if !ok {
			continue
		}
		if m.Gauge != nil {
			return m.GetGauge().GetValue()
		}
		return m.GetCounter().GetValue()
	}
	return -1
}

// The naming node's metrics come from its store and its raft state: the
// groups, members and masters it holds, the events it applied by kind (a
// conflict detected, triggers sent), and that it leads.
func TestNamingMetrics(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	cfg.ConflictWindow = 0
	tn := startNode(t, cfg)
	ctx := context.Background()
	fakes := []*fakeAgent{newFakeAgent(t), newFakeAgent(t), newFakeAgent(t)}
	sessions := map[uint64]uint64{}
	for i, fa := range fakes {
		resp, err := tn.client.Join(ctx, api.JoinRequest{Group: "g", ID: uint64(i + 1), Addr: fa.addr(), TTL: time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		sessions[uint64(i+1)] = resp.Session
	}
	if _, err := tn.client.Register(ctx, api.RegisterRequest{Group: "g", ID: 2, Addr: fakes[1].addr(), TTL: time.Minute, Session: sessions[2], Epoch: api.Epoch{Term: 1, ID: 2}}); err != nil {
		t.Fatal(err)
	}
	if resp, err := tn.client.Register(ctx, api.RegisterRequest{Group: "g", ID: 1, Addr: fakes[0].addr(), TTL: time.Minute, Session: sessions[1], Epoch: api.Epoch{Term: 1, ID: 1}}); err != nil || !resp.Conflict {
		t.Fatalf("the second registration: %+v %v, want a conflict", resp, err)
	}
	waitFor(t, 10*time.Second, "the triggers of the conflict sent and counted", func() bool {
		return metricValue(scrapeNode(t, tn.Node), "mastership_naming_events_total", "kind", api.EventTriggerSent) >= 2
	})
	fams := scrapeNode(t, tn.Node)
	for _, c := range []struct {
		name, label, value string
		want               float64
	}{
		{"mastership_naming_groups", "", "", 1},
		{"mastership_naming_members", "", "", 3},
		{"mastership_naming_masters", "", "", 1},
		{"mastership_naming_is_leader", "", "", 1},
		{"mastership_naming_raft_state", "state", "leader", 1},
		{"mastership_naming_events_total", "kind", api.EventMemberJoined, 3},
		{"mastership_naming_events_total", "kind", api.EventConflictDetected, 1},
	} {
		if got := metricValue(fams, c.name, c.label, c.value); got != c.want {
			t.Errorf("%s{%s=%q} = %v, want %v", c.name, c.label, c.value, got, c.want)
		}
	}
}

// The dashboard's data: every group with its members, each asked for its
// own state (these fake agents answer no /v1/info: each is shown with its
// error), a member whose session expired kept from the events, and the
// page itself. The stream sends the state at once; past dashMaxStreams
// open at once, a new one is refused.
func TestDashboardState(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	cfg.SessionTTL = time.Second
	tn := startNode(t, cfg)
	ctx := context.Background()
	fakes := []*fakeAgent{newFakeAgent(t), newFakeAgent(t)}
	for i, fa := range fakes {
		ttl := time.Minute
		if i == 1 {
			ttl = 200 * time.Millisecond // never renewed: it expires
		}
		if _, err := tn.client.Join(ctx, api.JoinRequest{Group: "g", ID: uint64(i + 1), Addr: fa.addr(), TTL: ttl}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 10*time.Second, "member 2's session expired", func() bool {
		st, err := tn.Node.dashboard(ctx)
		if err != nil || len(st.Groups) != 1 {
			return false
		}
		ms := st.Groups[0].Members
		return len(ms) == 2 && !ms[0].Expired && ms[1].Expired && ms[1].Addr == fakes[1].addr()
	})
	st, _ := tn.Node.dashboard(ctx)
	for _, m := range st.Groups[0].Members {
		if m.Error == "" || m.Role != "" {
			t.Errorf("member %d answers no /v1/info, shown as %+v", m.ID, m)
		}
	}
	if st.Groups[0].Masters != 0 || len(st.Groups[0].Events) == 0 {
		t.Errorf("group state %+v", st.Groups[0])
	}

	base := "http://" + tn.addr
	resp, err := http.Get(base + "/ui/")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(page), "<title>Mastership</title>") {
		t.Fatalf("GET /ui/: %s %.100s", resp.Status, page)
	}
	var streams []*http.Response
	defer func() {
		for _, r := range streams {
			r.Body.Close()
		}
	}()
	for i := range dashMaxStreams {
		r, err := http.Get(base + "/v1/ui/stream")
		if err != nil {
			t.Fatal(err)
		}
		streams = append(streams, r)
		if i == 0 {
			line, err := bufio.NewReader(r.Body).ReadString('\n')
			if err != nil || line != "event: state\n" {
				t.Fatalf("stream's first line %q, %v", line, err)
			}
		}
	}
	r, err := http.Get(base + "/v1/ui/stream")
	if err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	if r.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("stream %d: %s, want 503", dashMaxStreams+1, r.Status)
	}
}

// However many members the groups have, one dashboard state asks at most
// dashMaxAsked of them; the others are shown, marked not asked.
func TestDashboardBoundsItsCalls(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	tn := startNode(t, cfg)
	ctx := context.Background()
	fa := newFakeAgent(t)
	n := dashMaxAsked + 40
	for i := range n {
		g := fmt.Sprintf("g%02d", i%10)
		if _, err := tn.client.Join(ctx, api.JoinRequest{Group: g, ID: uint64(i + 1), Addr: fa.addr(), TTL: time.Minute}); err != nil {
			t.Fatal(err)
		}
	}
	before := fa.calls.Load()
	st, err := tn.Node.dashboard(ctx)
	if err != nil {
		t.Fatal(err)
	}
	shown, unasked := 0, 0
	for _, g := range st.Groups {
		for _, m := range g.Members {
			shown++
			if strings.HasPrefix(m.Error, "not asked") {
				unasked++
			}
		}
	}
	if calls := fa.calls.Load() - before; calls != dashMaxAsked || shown != n || unasked != n-dashMaxAsked {
		t.Fatalf("%d members shown, %d unasked, %d calls; want %d, %d, %d", shown, unasked, calls, n, n-dashMaxAsked, dashMaxAsked)
	}
}

// stalledWriter is a viewer that stopped reading: each write blocks until
// the write deadline the handler set, then fails, as a full socket does.
type stalledWriter struct {
	h        http.Header
	deadline time.Time
	writes   int
}

func (w *stalledWriter) Header() http.Header { return w.h }
func (w *stalledWriter) WriteHeader(int)     {}
func (w *stalledWriter) Flush()              {}
func (w *stalledWriter) SetWriteDeadline(t time.Time) error {
	w.deadline = t
	return nil
}
func (w *stalledWriter) Write(b []byte) (int, error) {
	w.writes++
	if w.deadline.IsZero() {
		select {} // no deadline: blocked for good, as before the fix
	}
	time.Sleep(time.Until(w.deadline))
	return 0, errors.New("i/o timeout")
}

// A dashboard viewer that stops reading gives its stream's place up once
// a write outlasts the write timeout: the places do not run out.
func TestDashboardStalledViewerLeaves(t *testing.T) {
	tn := startNode(t, testConfig(t, t.TempDir()))
	tn.Node.uiWriteTimeout = 50 * time.Millisecond
	done := make(chan struct{})
	go func() {
		defer close(done)
		w := &stalledWriter{h: http.Header{}}
		tn.Node.serveUIStream(w, httptest.NewRequest(http.MethodGet, "/v1/ui/stream", nil))
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("a stream whose viewer stopped reading still holds its place")
	}
	if n := len(tn.Node.uiStreams); n != 0 {
		t.Fatalf("%d stream places held after the viewer left", n)
	}
}

// Viewers share one state: twenty reads at once make the naming node ask
// each member once, not twenty times.
func TestDashboardViewersShareOneState(t *testing.T) {
	tn := startNode(t, testConfig(t, t.TempDir()))
	ctx := context.Background()
	fa := newFakeAgent(t)
	for i := range 5 {
		if _, err := tn.client.Join(ctx, api.JoinRequest{Group: "g", ID: uint64(i + 1), Addr: fa.addr(), TTL: time.Minute}); err != nil {
			t.Fatal(err)
		}
	}
	before := fa.calls.Load()
	h := tn.Node.Handler()
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/v1/ui/state", nil))
			if rec.Code != 200 {
				t.Errorf("GET /v1/ui/state: %d %s", rec.Code, rec.Body)
			}
		})
	}
	wg.Wait()
	// One computation, or two if the reads straddle its dashInterval.
	if calls := fa.calls.Load() - before; calls < 5 || calls > 10 {
		t.Fatalf("20 reads made %d calls to 5 members, want 5 to 10", calls)
	}
}
