package e2e

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// scrapeText GETs addr's /metrics and parses it with the Prometheus text
// parser.
func scrapeText(t *testing.T, hc *http.Client, addr string) (map[string]*dto.MetricFamily, error) {
	t.Helper()
	resp, err := hc.Get("http://" + addr + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET %s/metrics: %s %s", addr, resp.Status, b)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Fatalf("GET %s/metrics: content type %q, want the text format", addr, ct)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	return p.TextToMetricFamilies(resp.Body)
}

// gaugeOf is the value of the first sample of a gauge family, or -1.
func gaugeOf(fams map[string]*dto.MetricFamily, name string) float64 {
	if f := fams[name]; f != nil && len(f.GetMetric()) > 0 && f.GetMetric()[0].Gauge != nil {
		return f.GetMetric()[0].GetGauge().GetValue()
	}
	return -1
}

// The built binary's /metrics, on a naming node and three agents, without
// a token: each parses as Prometheus text; exactly one agent of the
// stable group reports mastership_agent_is_master 1; the naming node
// counts the group, its members and its master, and reports raft's own
// metrics; the agents report memberlist's and the Go runtime's. The
// agents, started with -pprof, serve Go's profiler; the naming node,
// without, does not.
func TestMetricsEndpoints(t *testing.T) {
	g := startGroupAt(t, 140, 3, "available", false, "local", "-pprof")
	hc := &http.Client{Timeout: 2 * time.Second}
	defer hc.CloseIdleConnections()
	var last string
	waitFor(t, 30*time.Second, "one master in the metrics, the naming node counting 3 members and memberlist's probes", func() bool {
		masters, probes := 0, 0
		for _, a := range g.agents {
			fams, err := scrapeText(t, hc, a.api)
			if err != nil {
				last = err.Error()
				return false
			}
			if v := gaugeOf(fams, "mastership_agent_is_master"); v == 1 {
				masters++
			} else if v != 0 {
				last = "no mastership_agent_is_master on " + a.api
				return false
			}
			if fams["go_goroutines"] == nil {
				last = "no Go runtime metrics on " + a.api
				return false
			}
			for name := range fams {
				if strings.HasPrefix(name, "memberlist_") {
					probes++
					break
				}
			}
		}
		fams, err := scrapeText(t, hc, g.naming)
		if err != nil {
			last = err.Error()
			return false
		}
		last = ""
		return masters == 1 && probes == len(g.agents) && gaugeOf(fams, "mastership_naming_members") == 3 &&
			gaugeOf(fams, "mastership_naming_groups") == 1 && gaugeOf(fams, "mastership_naming_masters") == 1 &&
			gaugeOf(fams, "mastership_naming_is_leader") == 1 && fams["raft_apply"] != nil
	})
	if last != "" {
		t.Log(last)
	}
	for addr, want := range map[string]int{g.agents[0].api: 200, g.naming: 404} {
		resp, err := hc.Get("http://" + addr + "/debug/pprof/")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want || (want == 200 && !strings.Contains(string(b), "goroutine")) {
			t.Errorf("GET %s/debug/pprof/: %s, want %d\n%.200s", addr, resp.Status, want, b)
		}
	}
}
