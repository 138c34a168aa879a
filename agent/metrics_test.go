package agent_test

import (
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/mastership/mastership/agent"
	"github.com/mastership/mastership/agent/agenttest"
	"github.com/mastership/mastership/recover"
)

// scrape reads GET /metrics of addr and parses it as the Prometheus text
// format.
func scrape(t testing.TB, addr string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET %s/metrics: %s %s", addr, resp.Status, b)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("GET %s/metrics does not parse as Prometheus text: %v", addr, err)
	}
	return fams
}

// value is the value of the one metric of family name whose labels
// include want, and false when there is none.
func value(fams map[string]*dto.MetricFamily, name string, want map[string]string) (float64, bool) {
	f := fams[name]
	if f == nil {
		return 0, false
	}
next:
	for _, m := range f.GetMetric() {
		got := map[string]string{}
		for _, l := range m.GetLabel() {
			got[l.GetName()] = l.GetValue()
		}
		for k, v := range want {
			if got[k] != v {
				continue next
			}
		}
		switch {
		case m.Gauge != nil:
			return m.GetGauge().GetValue(), true
		case m.Counter != nil:
			return m.GetCounter().GetValue(), true
		case m.Histogram != nil:
			return float64(m.GetHistogram().GetSampleCount()), true
		}
	}
	return 0, false
}

// Every agent of a stable group serves its metrics in the Prometheus text
// format, from its own state: exactly one says it is the master, every
// one names it and its epoch, the master counts the writes it took and
// their latency and the lag of each back-up, and every self-monitor
// counts its checks.
func TestMetrics(t *testing.T) {
	c := agenttest.New(t, agenttest.Options{Agents: 3, Mode: "strict", Priorities: []int{3, 2, 1}, Base: 123,
		Monitor: func(uint64) agent.Monitor { return recover.New(recover.Config{}) }})
	m := c.WaitStable(20 * time.Second)
	for i := range 20 {
		if _, err := c.Put(m, fmt.Sprintf("k%d", i), "v"); err != nil {
			t.Fatal(err)
		}
	}
	c.WaitFor(10*time.Second, "every agent applied every write and ran a check", func() bool {
		want := c.Members[m].Agent.Status().Applied
		for _, id := range c.IDs() {
			if c.Members[id].Agent.Status().Applied != want {
				return false
			}
			in := c.Members[id].Agent.Info()
			if in.Monitor == nil || in.Monitor.Checks == 0 {
				return false
			}
		}
		return true
	})
	epoch := c.Members[m].Agent.Status().Epoch
	masters := 0
	g := map[string]string{"group": "g"}
	for _, id := range c.IDs() {
		fams := scrape(t, c.Members[id].Agent.APIAddr())
		isMaster, ok := value(fams, "mastership_agent_is_master", g)
		if !ok {
			t.Fatalf("agent %d: no mastership_agent_is_master", id)
		}
		if isMaster == 1 {
			masters++
			if id != m {
				t.Errorf("agent %d reports is_master 1; the master is %d", id, m)
			}
		}
		for name, want := range map[string]float64{
			"mastership_agent_master_id":  float64(m),
			"mastership_agent_epoch_term": float64(epoch.Term),
			"mastership_agent_epoch_id":   float64(epoch.ID),
		} {
			if v, _ := value(fams, name, g); v != want {
				t.Errorf("agent %d: %s = %v, want %v", id, name, v, want)
			}
		}
		role := "backup"
		if id == m {
			role = "master"
		}
		if v, _ := value(fams, "mastership_agent_role", map[string]string{"role": role}); v != 1 {
			t.Errorf("agent %d: mastership_agent_role{role=%q} = %v, want 1", id, role, v)
		}
		if v, _ := value(fams, "mastership_agent_applied_index", g); v != float64(c.Members[id].Agent.Status().Applied) {
			t.Errorf("agent %d: applied index %v, status %d", id, v, c.Members[id].Agent.Status().Applied)
		}
		if v, ok := value(fams, "mastership_monitor_checks_total", map[string]string{"trigger": "timer"}); !ok || v == 0 {
			t.Errorf("agent %d: no timer check counted (%v, %v)", id, v, ok)
		}
		// Every agent stored the 20 writes, in at least one store and at
		// most one store per entry.
		entries, _ := value(fams, "mastership_agent_log_entries_written_total", g)
		stores, _ := value(fams, "mastership_agent_log_write_seconds", g)
		if entries < 20 || stores < 1 || stores > entries {
			t.Errorf("agent %d: %v log entries stored in %v stores, want 20 at least, in 1 to %v stores", id, entries, stores, entries)
		}
		if id != m {
			continue
		}
		if v, _ := value(fams, "mastership_agent_writes_total", map[string]string{"result": "ok"}); v < 20 {
			t.Errorf("master: %v writes counted, want 20 at least", v)
		}
		if v, _ := value(fams, "mastership_agent_write_seconds", g); v < 20 {
			t.Errorf("master: %v write latencies observed, want 20 at least", v)
		}
		if v, _ := value(fams, "mastership_agent_elections_total", g); v != 1 {
			t.Errorf("master: %v elections, want 1", v)
		}
		for _, b := range c.IDs() {
			if b == m {
				continue
			}
			if _, ok := value(fams, "mastership_agent_replication_lag_entries", map[string]string{"backup": fmt.Sprint(b)}); !ok {
				t.Errorf("master: no replication lag for back-up %d", b)
			}
		}
	}
	if masters != 1 {
		t.Fatalf("%d agents report mastership_agent_is_master 1, want exactly 1", masters)
	}
}
