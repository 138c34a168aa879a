package recover_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/mastership/mastership/agent/agenttest"
	"github.com/mastership/mastership/agent/client"
	"github.com/mastership/mastership/agent/wire"
	"github.com/mastership/mastership/naming/api"
	"github.com/mastership/mastership/recover"
)

// roleAnswers asks every running agent's endpoint what over HTTP and
// returns the IDs that answered 200.
func roleAnswers(t *testing.T, c *agenttest.Cluster, what string) []uint64 {
	t.Helper()
	var ok []uint64
	for _, id := range c.Running() {
		ag, err := client.NewAPI(client.APIConfig{Addr: c.Members[id].Agent.APIAddr()})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		r, err := ag.Role(ctx, what)
		cancel()
		if err != nil {
			t.Fatalf("agent %d %s: %v", id, what, err)
		}
		if r.ID != id || r.Group != "g" {
			t.Fatalf("agent %d %s answered for %d in %q", id, what, r.ID, r.Group)
		}
		if r.OK {
			ok = append(ok, id)
		} else if r.Reason == "" {
			t.Fatalf("agent %d %s: 503 without a reason: %+v", id, what, r)
		}
	}
	return ok
}

func sameIDs(a []uint64, b ...uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// Once stable, exactly one agent answers 200 on /v1/role/master, the
// caught-up back-ups of the retained master on /v1/role/backup, every
// running agent on /v1/health but a quarantined one; after the master is
// killed, exactly one again: the new master.
func TestRoleEndpoints(t *testing.T) {
	c := agenttest.New(t, agenttest.Options{Agents: 3, Mode: "strict", Priorities: []int{3, 2, 1}, Base: 62,
		Monitor: monitors(recover.Config{})})
	if m := c.WaitStable(20 * time.Second); m != 1 {
		t.Fatalf("master %d, want 1", m)
	}
	if _, err := c.Put(1, "k", "v"); err != nil {
		t.Fatal(err)
	}
	c.WaitFor(10*time.Second, "1 alone on role/master, 2 and 3 on role/backup", func() bool {
		return sameIDs(roleAnswers(t, c, "master"), 1) && sameIDs(roleAnswers(t, c, "backup"), 2, 3) &&
			sameIDs(roleAnswers(t, c, "health"), 1, 2, 3)
	})

	if err := c.Members[3].Agent.Quarantine(t.Context()); err != nil {
		t.Fatal(err)
	}
	h := c.Members[3].Agent.Role("health")
	if h.OK || !strings.Contains(h.Reason, "quarantined") {
		t.Fatalf("a quarantined agent's health: %+v", h)
	}
	if b := c.Members[3].Agent.Role("backup"); b.OK {
		t.Fatalf("a quarantined agent answers as a back-up: %+v", b)
	}

	c.Kill(1)
	c.WaitFor(20*time.Second, "2 alone on role/master", func() bool {
		return sameIDs(roleAnswers(t, c, "master"), 2)
	})
	if got := roleAnswers(t, c, "master"); !sameIDs(got, 2) {
		t.Fatalf("role/master answered 200 on %v", got)
	}
}

// POST /v1/switchover: a back-up names its master (421); bad bodies and
// refused targets change nothing; a good one moves mastership, and the
// pinned new master keeps it through later checks although 1 ranks first.
func TestSwitchoverEndpoint(t *testing.T) {
	c := agenttest.New(t, agenttest.Options{Agents: 3, Mode: "strict", Priorities: []int{3, 2, 1}, Base: 64,
		Monitor: monitors(recover.Config{})})
	if m := c.WaitStable(20 * time.Second); m != 1 {
		t.Fatalf("master %d, want 1", m)
	}
	before := c.Members[1].Agent.Status().Epoch
	post := func(id uint64, body string) (int, string) {
		resp, err := http.Post("http://"+c.Members[id].Agent.APIAddr()+"/v1/switchover", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for _, tc := range []struct {
		id     uint64
		body   string
		status int
		has    string
	}{
		{2, `{"to":3}`, 421, `"master": 1`},
		{1, `{"to":3,"extra":1}`, 400, "unknown field"},
		{1, `{"to":"3"}`, 400, "cannot unmarshal"},
		{1, `{"to":3,"group":"other"}`, 400, "is in group"},
		{1, strings.Repeat(" ", 2<<20) + `{"to":3}`, 413, "request over"},
		{1, `{"to":9}`, 409, "not a member"},
		{1, `{"to":1}`, 409, "master already"},
		{1, `{"to":18446744073709551615}`, 409, "not a member"},
	} {
		if status, body := post(tc.id, tc.body); status != tc.status || !strings.Contains(body, tc.has) {
			t.Errorf("switchover %.40q at %d: %d %s; want %d with %q", tc.body, tc.id, status, body, tc.status, tc.has)
		}
	}
	// The agent's error body (wire.Error) as the one client reads it: the
	// code and the master a back-up names, which `mastership switchover`
	// follows.
	ag, err := client.NewAPI(client.APIConfig{Addr: c.Members[2].Agent.APIAddr()})
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = ag.Switchover(t.Context(), wire.SwitchoverRequest{To: 3})
	var se *client.StatusError
	if !errors.As(err, &se) || se.Status != http.StatusMisdirectedRequest || se.Code != wire.CodeNotMaster || se.Message == "" ||
		se.Master != 1 || se.MasterAddr != c.Members[1].Agent.APIAddr() {
		t.Fatalf("switchover at back-up 2 through the client: %#v", err)
	}
	if st := c.Members[1].Agent.Status(); st.Role != api.RoleMaster || st.Epoch != before || st.Transfer != 0 {
		t.Fatalf("refused switchovers changed the master: %+v", st)
	}
	status, body := post(1, `{"to":3}`)
	if status != 200 || !strings.Contains(body, `"to": 3`) {
		t.Fatalf("switchover to 3: %d %s", status, body)
	}
	if ms := c.Masters(); len(ms) != 1 || ms[0] != 3 {
		t.Fatalf("masters %v after the switchover", ms)
	}
	// Two more self-monitor checks on 1, which ranks first: it asks for
	// nothing, 3 stays master.
	checks := func() uint64 { return c.Members[1].Agent.Info().Monitor.Checks }
	start := checks()
	c.WaitFor(10*time.Second, "two more checks on 1", func() bool { return checks() >= start+2 })
	c.WaitFor(10*time.Second, "the group stable under 3", func() bool {
		ms := c.Masters()
		return c.Stable() && len(ms) == 1 && ms[0] == 3
	})
	if ms := c.Masters(); len(ms) != 1 || ms[0] != 3 {
		t.Fatalf("masters %v after later checks, want 3 (pinned by the switchover)", ms)
	}
}
