package e2e

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/mastership/mastership/naming/api"
)

// mastership pause, then SIGKILL of the master: no election while the
// group is paused (the self-monitors detect and report only); mastership
// resume: one election, at the next term.
func TestPauseResume(t *testing.T) {
	g := startStrictGroup(t, 150)
	hc := &http.Client{Timeout: time.Second}
	defer hc.CloseIdleConnections()
	var master agentInfo
	waitFor(t, 20*time.Second, "a registered master", func() bool {
		for _, a := range g.agents {
			if in, err := fetchInfo(hc, a.api); err == nil && in.Role == "master" && cliRegistered(t, g.naming, "g") == in.ID {
				master = in
				return true
			}
		}
		return false
	})
	out, errOut, code := run(t, "pause", "-naming", g.naming, "-group", "g", "-reason", "upgrade of the database")
	if code != 0 || !strings.Contains(out, "g paused") {
		t.Fatalf("pause: exit %d, %q %q", code, out, errOut)
	}
	if out, _, code := run(t, "pause", "-naming", g.naming, "-group", "g"); code != 0 || !strings.Contains(out, "paused already") {
		t.Fatalf("pause again: exit %d, %q", code, out)
	}
	if out, _, code := run(t, "status", "-naming", g.naming, "-group", "g"); code != 0 || !strings.Contains(out, "(paused)") {
		t.Fatalf("status while paused: exit %d, %q", code, out)
	}
	waitFor(t, 10*time.Second, "every agent paused", func() bool {
		for _, a := range g.agents {
			out, _, code := run(t, "info", "-agent", a.api)
			if code != 0 || !strings.Contains(out, "paused: true") {
				return false
			}
		}
		return true
	})
	g.procs[master.ID].kill()
	killed := time.Now()
	// Long past an election: no one campaigns, nobody is master.
	for time.Since(killed) < 3*time.Second {
		for _, a := range g.agents {
			if a.id == master.ID {
				continue
			}
			if in, err := fetchInfo(hc, a.api); err == nil && (in.Role == "master" || in.Role == "candidate") {
				t.Fatalf("agent %d is %s while the group is paused", in.ID, in.Role)
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	if out, errOut, code := run(t, "resume", "-naming", g.naming, "-group", "g"); code != 0 || !strings.Contains(out, "g resumed") {
		t.Fatalf("resume: exit %d, %q %q", code, out, errOut)
	}
	resumed := time.Now()
	var next agentInfo
	waitFor(t, 20*time.Second, "a new master after the resume", func() bool {
		for _, a := range g.agents {
			if a.id == master.ID {
				continue
			}
			if in, err := fetchInfo(hc, a.api); err == nil && in.Role == "master" && cliRegistered(t, g.naming, "g") == in.ID {
				next = in
				return true
			}
		}
		return false
	})
	t.Logf("master %d killed while paused; after the resume %d was elected %s later", master.ID, next.ID, time.Since(resumed).Round(time.Millisecond))
	if !master.Epoch.Less(next.Epoch) {
		t.Errorf("new master at epoch %s after %s", next.Epoch, master.Epoch)
	}
	events, err := g.nc.AllEvents(context.Background(), "g", 0)
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, e := range events {
		kinds = append(kinds, e.Kind)
	}
	joined := strings.Join(kinds, " ")
	if !strings.Contains(joined, api.EventGroupPaused) || !strings.Contains(joined, api.EventGroupResumed) {
		t.Errorf("events %v: want group-paused and group-resumed", kinds)
	}
	// One election after the resume: one master registered, no other one
	// before it (the agents learn of the resume a moment apart, so a
	// campaign may fail first: that elects nobody).
	_, after, _ := strings.Cut(joined, api.EventGroupResumed)
	if n := strings.Count(after, api.EventMasterRegistered) + strings.Count(after, api.EventMasterSuperseded); n != 1 {
		t.Errorf("events after the resume %q: want one master registered", after)
	}
	if _, errOut, code := run(t, "pause", "-naming", g.naming, "-group", "nosuch"); code != 1 || !strings.Contains(errOut, "not-found") && !strings.Contains(errOut, "no group") {
		t.Errorf("pause of an unknown group: exit %d, %q", code, errOut)
	}
}
