package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// README.md's example hook, agent/hook/examples/role-file.sh, on real agents:
// each agent's role file says its role and the master; after the master's
// SIGKILL the new master's says master at a newer epoch.
func TestExampleRoleFileHook(t *testing.T) {
	script, err := filepath.Abs("../agent/hook/examples/role-file.sh")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	t.Setenv("MASTERSHIP_STATE_DIR", dir) // the agents, and so their hooks, inherit it
	g := startGroupAt(t, 160, 3, "strict", false, e2eProfile(), "-on-role-change", script)
	roleOf := func(id uint64) []string {
		b, _ := os.ReadFile(filepath.Join(dir, fmt.Sprintf("g-%d", id), "role"))
		return strings.Fields(string(b))
	}
	var master uint64
	waitFor(t, 20*time.Second, "one role file saying master, the others backup of it", func() bool {
		master = 0
		for _, a := range g.agents {
			if f := roleOf(a.id); len(f) == 4 && f[0] == "master" {
				master = a.id
			}
		}
		if master == 0 {
			return false
		}
		for _, a := range g.agents {
			f := roleOf(a.id)
			want := map[bool]string{true: "master", false: "backup"}[a.id == master]
			if len(f) != 4 || f[0] != want || f[2] != fmt.Sprint(master) {
				return false
			}
		}
		return true
	})
	first := roleOf(master)[1]
	g.procs[master].kill()
	waitFor(t, 20*time.Second, "another agent's role file saying master", func() bool {
		for _, a := range g.agents {
			if f := roleOf(a.id); a.id != master && len(f) == 4 && f[0] == "master" && f[1] != first {
				t.Logf("agent %d's role file after the kill: %v (was %s)", a.id, f, first)
				return true
			}
		}
		return false
	})
}
