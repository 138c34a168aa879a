package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The on-role-change hook with real processes on test hosts: every agent's
// script appends its arguments and environment to hooks-N.log.

// hookRun is one line of a hook log.
type hookRun struct {
	at               time.Time
	role, previous   string
	term, epochID    uint64
	master, addr, id string
}

func (r hookRun) String() string {
	return fmt.Sprintf("%s>%s@%d.%d(master %s)", r.previous, r.role, r.term, r.epochID, r.master)
}

// hookRuns reads agent n's hook log; a line whose arguments and
// environment disagree fails the test.
func (c *netCluster) hookRuns(n int) []hookRun {
	c.t.Helper()
	b, err := os.ReadFile(filepath.Join(c.hookDir, fmt.Sprintf("hooks-%d.log", n)))
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		c.t.Fatal(err)
	}
	var runs []hookRun
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.Fields(line)
		if len(f) != 12 {
			c.t.Fatalf("agent %d hook line %q: want 12 fields", n, line)
		}
		kv := map[string]string{}
		for _, x := range f[5:] {
			k, v, _ := strings.Cut(x, "=")
			kv[k] = v
		}
		ns, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			c.t.Fatalf("agent %d hook line %q: %v", n, line, err)
		}
		r := hookRun{at: time.Unix(0, ns), role: f[1], previous: f[2], master: kv["master"], addr: kv["addr"], id: f[4]}
		term, id, _ := strings.Cut(kv["epoch"], ".")
		r.term, _ = strconv.ParseUint(term, 10, 64)
		r.epochID, _ = strconv.ParseUint(id, 10, 64)
		if kv["role"] != r.role || kv["previous"] != r.previous || kv["group"] != f[3] || kv["id"] != f[4] ||
			f[3] != netGroup || f[4] != strconv.Itoa(n) {
			c.t.Fatalf("agent %d hook line %q: arguments and environment disagree", n, line)
		}
		runs = append(runs, r)
	}
	return runs
}

func lastRun(runs []hookRun) hookRun {
	if len(runs) == 0 {
		return hookRun{}
	}
	return runs[len(runs)-1]
}

// checkHookRuns holds for each agent's log: a new process starts with no
// previous role, each run names the role of the one before, no candidate
// is announced, and epochs never decrease.
func (c *netCluster) checkHookRuns() {
	c.t.Helper()
	for _, n := range c.ids() {
		runs := c.hookRuns(n)
		for i, r := range runs {
			if r.role != "master" && r.role != "backup" && r.role != "recovering" && r.role != "quarantined" && r.role != "stopped" {
				c.t.Errorf("agent %d run %d announced %q", n, i, r.role)
			}
			if i == 0 {
				continue
			}
			p := runs[i-1]
			if r.previous != "-" && r.previous != p.role {
				c.t.Errorf("agent %d run %d: previous %q, want %q", n, i, r.previous, p.role)
			}
			if r.term < p.term || (r.term == p.term && r.epochID < p.epochID) {
				c.t.Errorf("agent %d run %d: epoch %d.%d after %d.%d", n, i, r.term, r.epochID, p.term, p.epochID)
			}
		}
		c.t.Logf("agent %d's hook: %v", n, runs)
	}
}

// Master SIGKILL in strict mode: the new master's hook says master soon
// after the election; the old master, restarted on its data dir, says
// backup of the new one (and then, being the highest priority, master
// again once it asked for the handover), or only the latter when the
// hook runs coalesced the former away. Once stable every hook's last
// word agrees with the agents' own state.
func TestNetnsRoleHookFailover(t *testing.T) {
	c := newNetCluster(t, clusterOpts{agents: 3, mode: "strict", expect: 3, hooks: true})
	waitFor(t, 10*time.Second, "every hook told its role", func() bool {
		return lastRun(c.hookRuns(1)).role == "master" &&
			lastRun(c.hookRuns(2)).role == "backup" && lastRun(c.hookRuns(2)).master == "1" &&
			lastRun(c.hookRuns(3)).role == "backup" && lastRun(c.hookRuns(3)).master == "1"
	})
	if r := lastRun(c.hookRuns(1)); r.addr != c.host(1).addr(agentAPIPort) || r.master != "1" {
		t.Fatalf("the master's hook run %+v, want its own address", r)
	}
	killed := time.Now()
	c.agents[1].kill()
	m, seen := c.waitMaster(15*time.Second, "a new master after the kill", 2, 3)
	var hooked hookRun
	waitFor(t, 10*time.Second, fmt.Sprintf("agent %d's hook saying master", m), func() bool {
		hooked = lastRun(c.hookRuns(m))
		return hooked.role == "master"
	})
	t.Logf("agent %d master %s after the kill (seen by polling); its hook ran %s after the kill",
		m, seen.Sub(killed).Round(time.Millisecond), hooked.at.Sub(killed).Round(time.Millisecond))
	before := len(c.hookRuns(1))
	c.startAgent(1)
	// Hook runs are coalesced to the latest state: when agent 1, the
	// highest priority, takes the mastership over before its first hook
	// run ends, "backup of m" is coalesced away and the next run says
	// master at a newer epoch. Either is right; master at an epoch not
	// newer than the new master's never is.
	waitFor(t, 10*time.Second, "the restarted agent 1's hook saying backup of the new master or master after it", func() bool {
		for _, r := range c.hookRuns(1)[before:] {
			if r.role == "backup" && r.master == strconv.Itoa(m) && r.term >= hooked.term {
				return true
			}
			if r.role == "master" && r.term > hooked.term {
				return true
			}
		}
		return false
	})
	for _, r := range c.hookRuns(1)[before:] {
		if r.role == "master" && r.term <= hooked.term {
			t.Fatalf("the restarted agent 1's hook said master at %d.%d, not newer than the new master's %d.%d",
				r.term, r.epochID, hooked.term, hooked.epochID)
		}
	}
	final, _ := c.waitStable(healBound, c.ids())
	waitFor(t, 10*time.Second, "every hook's last word agreeing with the stable group", func() bool {
		for _, n := range c.ids() {
			r := lastRun(c.hookRuns(n))
			want := map[bool]string{true: "master", false: "backup"}[uint64(n) == final]
			if r.role != want || r.master != strconv.FormatUint(final, 10) {
				return false
			}
		}
		return true
	})
	c.checkHookRuns()
	// Exactly one agent answers 200 on /v1/role/master, as a load balancer
	// asks it: the stable master.
	waitFor(t, 10*time.Second, "only the master answering 200 on /v1/role/master", func() bool {
		var ok []int
		for _, n := range c.ids() {
			code, _, err := httpIn(c.namingHost(), "GET", "http://"+c.host(n).addr(agentAPIPort)+"/v1/role/master", nil)
			if err != nil || (code != 200 && code != 503) {
				return false
			}
			if code == 200 {
				ok = append(ok, n)
			}
		}
		return len(ok) == 1 && uint64(ok[0]) == final
	})
}

// Figure 2 in available mode, the naming node on the majority's side: the
// minority's master hears master, then, after the heal, recovering, then
// backup of the retained master.
func TestNetnsRoleHookRecovery(t *testing.T) {
	c := newNetCluster(t, clusterOpts{agents: 5, mode: "available", hooks: true})
	c.net.partition(c.hosts(0, 1, 2, 3), c.hosts(4, 5))
	second, _ := c.waitMaster(20*time.Second, "a master on the minority side {4,5}", 4, 5)
	waitFor(t, 10*time.Second, "the minority master's hook saying master", func() bool {
		return lastRun(c.hookRuns(second)).role == "master"
	})
	c.net.heal()
	m, _ := c.waitStable(healBound, c.ids())
	waitFor(t, 10*time.Second, "the minority master's hook saying backup", func() bool {
		r := lastRun(c.hookRuns(second))
		return r.role == "backup" && r.master == strconv.FormatUint(m, 10)
	})
	var roles []string
	for _, r := range c.hookRuns(second) {
		roles = append(roles, r.role)
	}
	if got := strings.Join(roles, " "); !strings.Contains(got, "master recovering") {
		t.Errorf("agent %d's hook heard %q, want master, then recovering, then backup", second, got)
	}
	c.checkHookRuns()
}

// A -pre-promote that exits 1 on the highest-priority agent: it is asked
// (it wins elections) but never serves as master and its hook never says
// master; the next one does, and its info shows the vetoes.
func TestNetnsPrePromoteVeto(t *testing.T) {
	c := newNetCluster(t, clusterOpts{agents: 3, mode: "strict", expect: 3, hooks: true, veto: 1})
	waitFor(t, 10*time.Second, "agent 1's gate asked at least once", func() bool {
		b, _ := os.ReadFile(filepath.Join(c.hookDir, "gates-1.log"))
		return strings.Contains(string(b), " master ")
	})
	c.waitRegistered(10*time.Second, 2)
	for n := range 3 {
		in, err := c.info(n + 1)
		if err != nil {
			t.Fatal(err)
		}
		if n+1 == 1 && (in.Serving || in.Role == "master") {
			t.Fatalf("agent 1, vetoed, is %s serving=%t", in.Role, in.Serving)
		}
	}
	for _, r := range c.hookRuns(1) {
		if r.role == "master" {
			t.Fatalf("agent 1's hook said master: %v", c.hookRuns(1))
		}
	}
	if r := lastRun(c.hookRuns(2)); r.role != "master" {
		t.Fatalf("agent 2's hook: %v", c.hookRuns(2))
	}
	if out, err := mastershipIn(c.host(1), "info", "-agent", c.host(1).addr(agentAPIPort)); err != nil ||
		!strings.Contains(out, "pre_promote") || !strings.Contains(out, "failed)") {
		t.Fatalf("agent 1's info does not show its vetoes: %v\n%s", err, out)
	}
	c.checkHookRuns()
}
