package agent_test

import (
	"bytes"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/mastership/mastership/agent"
	"github.com/mastership/mastership/agent/agenttest"
	"github.com/mastership/mastership/naming/api"
	"github.com/mastership/mastership/recover"
)

// Any body posted to an agent's /rpc/notify (the naming node's trigger,
// which on an open agent anyone can send): never a server error or a
// crash; a term more than api.MaxTermLead above the agent's is refused
// and never learned; the agent stays master at its epoch (a trigger makes
// the self-monitor check, against the naming node's word, not the
// trigger's).
func FuzzNotify(f *testing.F) {
	for _, n := range []api.Notify{
		{Group: "g", Reason: "master-superseded"},
		{Group: "g", Reason: "recheck", Master: &api.Registration{ID: 9, Addr: "127.0.0.9:1", Epoch: api.Epoch{Term: ^uint64(0), ID: 9}}},
		{Group: "g", Reason: "recheck", Master: &api.Registration{ID: 9, Addr: "127.0.0.9:1", Epoch: api.Epoch{Term: 1 << 40, ID: 9}}},
		{Group: "g", Reason: string(make([]byte, 4096))},
		{Group: "other", Reason: "recheck"},
		{Group: "g", Seq: ^uint64(0), Paused: true},
		{Group: "g", Reason: "x\xff"}, // not UTF-8: once a metrics label that broke the scrape
		{Group: "g", Reason: "Upper Case (+3 more)"},
	} {
		b, err := api.Encode(n)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{})
	f.Add([]byte("\xc1 not msgpack"))
	f.Add([]byte("\x81\xa1m\x83\xa1e\x82\xa1t\xcf\xff\xff\xff\xff\xff\xff\xff\xff"))

	c := agenttest.New(f, agenttest.Options{Agents: 1, Mode: "available", Base: 25, Monitor: func(uint64) agent.Monitor { return recover.New(recover.Config{}) }})
	if m := c.WaitStable(20 * time.Second); m != 1 {
		f.Fatalf("master %d, want 1", m)
	}
	a := c.Members[1].Agent
	before := a.Status()
	hc := &http.Client{Timeout: 5 * time.Second}
	url := "http://" + c.Members[1].Config.API + "/rpc/notify"
	// The self-monitor's metrics, once it checked: no trigger may take
	// them out of a scrape.
	monitorMetrics := func() bool {
		resp, err := hc.Get("http://" + c.Members[1].Config.API + "/metrics")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode == 200 && bytes.Contains(b, []byte("mastership_monitor_checks_total{"))
	}
	c.WaitFor(10*time.Second, "the self-monitor's checks in the metrics", monitorMetrics)
	f.Fuzz(func(t *testing.T, body []byte) {
		resp, err := hc.Post(url, "application/msgpack", bytes.NewReader(body))
		if err != nil {
			t.Fatalf("the agent stopped answering: %v", err)
		}
		resp.Body.Close()
		if resp.StatusCode >= 500 {
			t.Fatalf("notify %q: %s", body, resp.Status)
		}
		st := a.Status()
		if st.MaxTerm > before.MaxTerm+api.MaxTermLead {
			t.Fatalf("notify %q: the agent learned term %d (it knew %d)", body, st.MaxTerm, before.MaxTerm)
		}
		if st.Role != api.RoleMaster || st.Epoch != before.Epoch {
			t.Fatalf("notify %q: the agent is %s at %s, was master at %s", body, st.Role, st.Epoch, before.Epoch)
		}
		// Polled with t: the cluster's WaitFor belongs to f.
		for deadline := time.Now().Add(5 * time.Second); !monitorMetrics(); time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("notify %q: the self-monitor's metrics are gone from the scrape", body)
			}
		}
	})
}
