package e2e

import (
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mastership/mastership/naming/api"
)

// mastership watch, on an agent and on a group at the naming node: a line
// at start, a line per change (here the master's SIGKILL and the new
// master), JSON lines with -json, exit 0 at SIGINT; bad flags are usage
// errors.
func TestWatch(t *testing.T) {
	g := startStrictGroup(t, 140)
	var master uint64
	waitFor(t, 20*time.Second, "a registered master", func() bool {
		st, err := g.nc.Status(t.Context(), api.StatusRequest{Group: "g"})
		if err != nil || len(st.Groups) != 1 || st.Groups[0].Master == nil {
			return false
		}
		master = st.Groups[0].Master.ID
		return true
	})
	other := g.agents[0]
	if other.id == master {
		other = g.agents[1]
	}
	agentWatch := start(t, "watch agent", "watch", "-agent", other.api)
	groupWatch := start(t, "watch group", "watch", "-naming", g.naming, "-group", "g", "-json")
	waitFor(t, 10*time.Second, "the first lines", func() bool {
		return strings.Contains(agentWatch.output(), fmt.Sprintf("master %d", master)) &&
			strings.Contains(groupWatch.output(), fmt.Sprintf(`"master":{"id":%d`, master))
	})
	g.procs[master].kill()
	waitFor(t, 20*time.Second, "both watches printing a new master", func() bool {
		return lastLineHas(agentWatch.output(), "master ", fmt.Sprintf("master %d", master)) &&
			lastLineHas(groupWatch.output(), `"master":{"id":`, fmt.Sprintf(`"master":{"id":%d`, master))
	})
	for _, p := range []*proc{agentWatch, groupWatch} {
		if err := p.cmd.Process.Signal(syscall.SIGINT); err != nil {
			t.Fatal(err)
		}
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			t.Fatalf("%s still running 10s after SIGINT", p.name)
		}
		if code := p.cmd.ProcessState.ExitCode(); code != 0 {
			t.Errorf("%s exited %d after SIGINT:\n%s", p.name, code, p.output())
		}
	}
	t.Logf("agent watch:\n%s\ngroup watch:\n%s", agentWatch.output(), groupWatch.output())
	for _, bad := range [][]string{
		{"watch"},
		{"watch", "-agent", other.api, "-naming", g.naming},
		{"watch", "-naming", g.naming},
		{"watch", "-agent", other.api, "-group", "g"},
		{"watch", "-agent", other.api, "-wait", "2m"},
		{"watch", "-naming", g.naming, "-group", "Bad/Name"},
	} {
		if _, errOut, code := run(t, bad...); code != 2 || errOut == "" {
			t.Errorf("%v: exit %d, %q; want a usage error", bad, code, errOut)
		}
	}
}

// lastLineHas tells whether the last line of out contains has and not
// hasNot.
func lastLineHas(out, has, hasNot string) bool {
	lines := strings.Split(strings.TrimSpace(out), "\n")
	last := lines[len(lines)-1]
	return strings.Contains(last, has) && !strings.Contains(last, hasNot)
}
