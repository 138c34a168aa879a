package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// The README's first command: `mastership demo` on its defaults heals the
// split brain it makes, and its summary accounts for every acknowledged
// write: read back from the final state, kept in a divergence record, or
// lost (none), the three summing to the acknowledged writes.
func TestDemo(t *testing.T) {
	out, errOut, code := run(t, "demo", "-json")
	if code != 0 {
		t.Fatalf("demo: exit %d\n%s\n%s", code, errOut, out)
	}
	var sum struct {
		MastersDuringPartition int    `json:"masters_during_partition"`
		MastersAfterHeal       int    `json:"masters_after_heal"`
		DigestsEqual           bool   `json:"digests_equal"`
		Healed                 bool   `json:"healed"`
		Acked                  int    `json:"acked"`
		InFinal                int    `json:"in_final_state"`
		Diverged               int    `json:"diverged"`
		Lost                   int    `json:"lost"`
		RecordsAt              string `json:"records_at"`
		Dir                    string `json:"dir"`
		Events                 []struct {
			MS                   int64
			Source, Kind, Detail string
		} `json:"events"`
	}
	if err := json.Unmarshal([]byte(out), &sum); err != nil {
		t.Fatalf("demo -json: %v\n%s", err, out)
	}
	if !sum.Healed || !sum.DigestsEqual || sum.MastersDuringPartition != 2 || sum.MastersAfterHeal != 1 || sum.Lost != 0 {
		var tl strings.Builder
		for _, e := range sum.Events {
			fmt.Fprintf(&tl, "  +%6dms  %-10s %-22s %s\n", e.MS, e.Source, e.Kind, e.Detail)
		}
		sum.Events = nil
		t.Errorf("demo summary: %+v\ntimeline:\n%s", sum, tl.String())
	}
	if sum.Acked == 0 || sum.InFinal+sum.Diverged+sum.Lost != sum.Acked {
		t.Errorf("demo summary: %d acknowledged, %d in the final state + %d in divergence records + %d lost", sum.Acked, sum.InFinal, sum.Diverged, sum.Lost)
	}
	if sum.Diverged > 0 && sum.RecordsAt == "" {
		t.Errorf("demo summary: %d writes in divergence records, and no agent named to replay them from", sum.Diverged)
	}
	if _, err := os.Stat(sum.Dir); !os.IsNotExist(err) {
		t.Errorf("a demo that healed left its temporary dir %s (%v)", sum.Dir, err)
	}
}

// `go run ./cmd/mastership demo -keep`: the binary is go run's temporary
// build, gone once the demo exits; the commands the demo prints run as
// shown all the same (a copy in the demo's dir), and the cluster and its
// logs are still there.
func TestDemoKeepFromGoRun(t *testing.T) {
	build := filepath.Join(t.TempDir(), "go-build1234", "b001", "exe")
	if err := os.MkdirAll(build, 0o755); err != nil {
		t.Fatal(err)
	}
	exe := filepath.Join(build, "mastership")
	b, err := os.ReadFile(binary)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(exe, b, 0o755); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	out, err := exec.Command(exe, "demo", "-keep", "-dir", dir).CombinedOutput()
	text := string(out)
	var pids []int
	for _, line := range strings.Split(text, "\n") {
		if rest, ok := strings.CutPrefix(line, "Stop it with: kill "); ok {
			for _, f := range strings.Fields(rest) {
				if pid, err := strconv.Atoi(f); err == nil {
					pids = append(pids, pid)
				}
			}
		}
	}
	t.Cleanup(func() {
		for _, pid := range pids {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	if err != nil || len(pids) == 0 {
		t.Fatalf("demo -keep: %v\n%s", err, text)
	}
	os.RemoveAll(filepath.Dir(filepath.Dir(build))) // as go run does once the demo exits
	var status string
	for _, line := range strings.Split(text, "\n") {
		if strings.Contains(line, " status -naming ") {
			status = strings.TrimSpace(line)
		}
	}
	f := strings.Fields(status)
	if len(f) < 2 || f[0] != filepath.Join(dir, "mastership") {
		t.Fatalf("the printed status command %q does not run the kept copy %s:\n%s", status, filepath.Join(dir, "mastership"), text)
	}
	if got, err := exec.Command(f[0], f[1:]...).CombinedOutput(); err != nil || !strings.Contains(string(got), "demo") {
		t.Errorf("%s: %v\n%s", status, err, got)
	}
	if _, err := os.Stat(filepath.Join(dir, "naming.log")); err != nil {
		t.Errorf("the kept cluster's logs: %v", err)
	}
	var ui string
	for _, line := range strings.Split(text, "\n") {
		if rest, ok := strings.CutPrefix(line, "The dashboard: "); ok {
			ui = strings.TrimSpace(rest)
		}
	}
	resp, err := http.Get(ui)
	if err != nil || resp.StatusCode != 200 {
		t.Errorf("the printed dashboard %q: %v %v", ui, err, resp)
	}
	if resp != nil {
		resp.Body.Close()
	}
}
