package recover_test

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mastership/mastership/agent"
	"github.com/mastership/mastership/agent/agenttest"
	"github.com/mastership/mastership/agent/hook"
	"github.com/mastership/mastership/config"
	"github.com/mastership/mastership/naming/api"
	"github.com/mastership/mastership/recover"
)

// roleLog records what each agent's OnRoleChange callback heard.
type roleLog struct {
	mu   sync.Mutex
	runs map[uint64][]hook.State
}

func newRoleLog() *roleLog { return &roleLog{runs: map[uint64][]hook.State{}} }

// restart marks a start of the agent in its runs: the runs of a new
// process start afresh.
const restart = "(start)"

func (l *roleLog) options(id uint64, o *agent.Options) {
	l.mu.Lock()
	if len(l.runs[id]) > 0 {
		l.runs[id] = append(l.runs[id], hook.State{Role: restart})
	}
	l.mu.Unlock()
	o.OnRoleChange = func(s hook.State) {
		l.mu.Lock()
		defer l.mu.Unlock()
		l.runs[id] = append(l.runs[id], s)
	}
}

func (l *roleLog) of(id uint64) []hook.State {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]hook.State(nil), l.runs[id]...)
}

func (l *roleLog) last(id uint64) (hook.State, bool) {
	r := l.of(id)
	if len(r) == 0 {
		return hook.State{}, false
	}
	return r[len(r)-1], true
}

// roles is an agent's runs as "previous>role@term" words.
func (l *roleLog) roles(id uint64) string {
	var w []string
	for _, s := range l.of(id) {
		if s.Role == restart {
			w = append(w, "|")
			continue
		}
		w = append(w, fmt.Sprintf("%s>%s@%d", s.Previous, s.Role, s.Epoch.Term))
	}
	return strings.Join(w, " ")
}

// check holds for every agent's runs: the first of each process has no
// previous role, each names the role of the run before as its previous, no
// candidate is announced, and epochs never go backwards.
func (l *roleLog) check(t *testing.T) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	for id, runs := range l.runs {
		prev, last := "", -1
		for i, s := range runs {
			if s.Role == restart {
				prev = ""
				continue
			}
			if last >= 0 && s.Epoch.Less(runs[last].Epoch) && s.Role != hook.RoleStopped {
				t.Errorf("agent %d run %d: epoch %s after %s", id, i, s.Epoch, runs[last].Epoch)
			}
			last = i
			if s.Previous != prev {
				t.Errorf("agent %d run %d: previous %q, want %q (runs: %v)", id, i, s.Previous, prev, runs)
			}
			if s.Role == "candidate" || s.Role == "" {
				t.Errorf("agent %d run %d announced %q", id, i, s.Role)
			}
			if s.Role == hook.RoleMaster && s.Master != id {
				t.Errorf("agent %d run %d: master of %d", id, i, s.Master)
			}
			prev = s.Role
		}
	}
}

// The on-role-change callback follows a strict group through a master
// kill and the old master's return: the new master hears "master" at the
// new epoch, the returning one "backup" of it (then master again, as it
// ranks first), and a clean stop "stopped".
func TestRoleHooksThroughAFailover(t *testing.T) {
	log := newRoleLog()
	c := agenttest.New(t, agenttest.Options{Agents: 3, Mode: "strict", Priorities: []int{3, 2, 1}, Base: 60,
		Monitor: monitors(recover.Config{}), AgentOptions: log.options})
	if m := c.WaitStable(20 * time.Second); m != 1 {
		t.Fatalf("master %d, want 1", m)
	}
	c.WaitFor(10*time.Second, "every agent's hook told its role", func() bool {
		for id := uint64(1); id <= 3; id++ {
			s, ok := log.last(id)
			want := map[bool]string{true: "master", false: "backup"}[id == 1]
			if !ok || s.Role != want || s.Master != 1 {
				return false
			}
		}
		return true
	})
	if first := log.of(2)[0]; first.Previous != "" || first.Role != "backup" {
		t.Fatalf("agent 2's first run %+v, want backup at start", first)
	}
	first := c.Members[1].Agent.Status().Epoch

	c.Kill(1)
	c.WaitFor(20*time.Second, "2 master and registered", func() bool {
		ms := c.Masters()
		return len(ms) == 1 && ms[0] == 2 && c.Registered() == 2
	})
	c.WaitFor(10*time.Second, "2's hook says master at the new epoch, 3's backup of 2", func() bool {
		s2, _ := log.last(2)
		s3, _ := log.last(3)
		return s2.Role == "master" && first.Less(s2.Epoch) && s2.MasterAddr == c.Members[2].Agent.APIAddr() &&
			s3.Role == "backup" && s3.Master == 2 && s3.Epoch == s2.Epoch
	})

	before := len(log.of(1))
	c.Restart(1)
	c.WaitFor(20*time.Second, "the restarted 1's hook saying backup of 2", func() bool {
		for _, s := range log.of(1)[before:] {
			if s.Role == "backup" && s.Master == 2 {
				return true
			}
		}
		return false
	})
	// 1 ranks first: it asks for the handover and leads again.
	final := c.WaitStable(20 * time.Second)
	c.WaitFor(10*time.Second, "every hook's last word agreeing with the stable group", func() bool {
		for id := uint64(1); id <= 3; id++ {
			s, _ := log.last(id)
			want := map[bool]string{true: "master", false: "backup"}[id == final]
			if s.Role != want || s.Master != final {
				return false
			}
		}
		return true
	})
	c.Stop(3)
	if s, _ := log.last(3); s.Role != hook.RoleStopped || s.Previous != "backup" {
		t.Fatalf("agent 3's last run after a clean stop: %+v", s)
	}
	log.check(t)
	for id := uint64(1); id <= 3; id++ {
		t.Logf("agent %d: %s", id, log.roles(id))
	}
}

// Figure 2 in available mode: the minority's master, once the partition
// heals and the naming node keeps 1, hears master, then recovering, then
// backup.
func TestRoleHooksThroughARecovery(t *testing.T) {
	log := newRoleLog()
	c := agenttest.New(t, agenttest.Options{Agents: 5, Mode: "available", Priorities: []int{5, 4, 3, 2, 1}, Base: 61,
		Monitor: monitors(recover.Config{}), AgentOptions: log.options})
	if m := c.WaitStable(20 * time.Second); m != 1 {
		t.Fatalf("master %d, want 1", m)
	}
	c.Partition([]uint64{1, 2, 3}, []uint64{4, 5})
	c.PartitionNaming(1, 2, 3)
	c.WaitFor(20*time.Second, "4 master of the minority", func() bool {
		s, _ := log.last(4)
		return s.Role == "master"
	})
	c.Heal()
	c.WaitStable(20 * time.Second)
	c.WaitFor(10*time.Second, "4's hook saying backup of 1", func() bool {
		s, _ := log.last(4)
		return s.Role == "backup" && s.Master == 1
	})
	runs := log.of(4)
	var seq []string
	for _, s := range runs {
		if s.Role == restart {
			t.Fatalf("agent 4 restarted: %s", log.roles(4))
		}
		seq = append(seq, s.Role)
	}
	got := strings.Join(seq, " ")
	if !strings.Contains(got, "master recovering") || !strings.HasSuffix(got, "backup") {
		t.Fatalf("agent 4's hook heard %q, want master, then recovering, then backup", got)
	}
	log.check(t)
	t.Logf("agent 4: %s", log.roles(4))
}

// A promotion gate that vetoes on the highest-priority agent: it wins
// elections but never serves nor registers as master, and its
// on-role-change hook never says master; the next-ranked agent takes
// over, and keeps mastership (the vetoed one asks for no handover during
// its back-off).
func TestPrePromoteVeto(t *testing.T) {
	log := newRoleLog()
	var mu sync.Mutex
	gates := map[uint64]int{}
	c := agenttest.New(t, agenttest.Options{Agents: 3, Mode: "strict", Priorities: []int{3, 2, 1}, Base: 65,
		Monitor: monitors(recover.Config{}),
		Tune:    func(cfg *config.Agent) { cfg.PromoteBackoff = time.Hour },
		AgentOptions: func(id uint64, o *agent.Options) {
			log.options(id, o)
			o.PrePromote = func(s hook.State) error {
				mu.Lock()
				gates[id]++
				mu.Unlock()
				if s.Role != "master" || s.ID != id || s.Master != id {
					t.Errorf("agent %d's gate got %+v", id, s)
				}
				if id == 1 {
					return errors.New("the database refuses to promote")
				}
				return nil
			}
		}})
	served := false
	c.WaitFor(20*time.Second, "2 master, serving and registered", func() bool {
		if c.Members[1].Agent.Status().Serving {
			served = true
		}
		st := c.Members[2].Agent.Status()
		return st.Role == api.RoleMaster && st.Serving && c.Registered() == 2
	})
	if served {
		t.Fatal("agent 1 served as master although its gate vetoed")
	}
	if _, err := c.Put(2, "k", "v"); err != nil {
		t.Fatal(err)
	}
	// Three more checks on 1: it stays a back-up.
	checks := func() uint64 { return c.Members[1].Agent.Info().Monitor.Checks }
	start := checks()
	c.WaitFor(10*time.Second, "three more checks on 1", func() bool {
		if st := c.Members[1].Agent.Status(); st.Serving || (st.Role == api.RoleMaster && !st.Gated) {
			t.Fatalf("agent 1 took mastership: %+v", st)
		}
		return checks() >= start+3
	})
	if ms := c.Masters(); len(ms) != 1 || ms[0] != 2 {
		t.Fatalf("masters %v, want 2", ms)
	}
	for _, s := range log.of(1) {
		if s.Role == "master" {
			t.Fatalf("agent 1's hook heard master: %s", log.roles(1))
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if gates[1] == 0 || gates[2] == 0 {
		t.Fatalf("gates run %v, want 1 vetoed and 2 passed", gates)
	}
	h := c.Members[1].Agent.Info().Hooks
	if h == nil || h.Failed == 0 || !strings.Contains(h.Recent[len(h.Recent)-1].Error+fmt.Sprint(h.Recent), "refuses to promote") {
		t.Fatalf("agent 1's hook outcomes %+v", h)
	}
}
