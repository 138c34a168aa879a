package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// An agent whose naming node stops answering says so at WARN, once, soon
// (at its next renewal), and again when the node is back, with how long
// the outage lasted.
func TestNamingOutageIsLogged(t *testing.T) {
	g := startGroupAt(t, 141, 2, "available", false, "local")
	waitFor(t, 20*time.Second, "a registered master", func() bool { return cliRegistered(t, g.naming, "g") != 0 })
	g.namingProc.kill()
	killed := time.Now()
	for _, a := range g.agents {
		p := g.procs[a.id]
		waitFor(t, 10*time.Second, "agent logs the naming node unreachable", func() bool {
			return strings.Contains(p.output(), "naming node unreachable")
		})
	}
	t.Logf("both agents logged the outage within %s", time.Since(killed).Round(time.Millisecond))
	time.Sleep(2 * time.Second) // the outage held: renewals keep failing, still one warning
	g.namingProc = startNaming(t, g.naming, g.namingDir)
	for _, a := range g.agents {
		p := g.procs[a.id]
		waitFor(t, 10*time.Second, "agent logs the naming node back", func() bool {
			return strings.Contains(p.output(), "naming node reachable again")
		})
		out := p.output()
		if n := strings.Count(out, "naming node unreachable"); n != 1 {
			t.Errorf("agent %d logged the outage %d times, want once:\n%s", a.id, n, out)
		}
		if !strings.Contains(out, "unreachable_for=") {
			t.Errorf("agent %d does not say how long the outage lasted:\n%s", a.id, out)
		}
		// Several calls failed in the outage, and one warning told it.
		var fails int
		if i := strings.Index(out, "failed_calls="); i < 0 {
			t.Errorf("agent %d does not count the failed calls:\n%s", a.id, out)
		} else if fmt.Sscanf(out[i+len("failed_calls="):], "%d", &fails); fails < 2 {
			t.Errorf("agent %d: %d failed calls in a 2s outage, want several", a.id, fails)
		}
	}
}
