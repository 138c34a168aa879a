package e2e

import (
	"encoding/json"
	"testing"
)

// mastership bench runs end to end on its smallest settings: every run
// reports figures, the failover and heal rounds their times.
func TestBenchCommand(t *testing.T) {
	out, errOut, code := run(t, "bench", "-agents", "2", "-duration", "300ms", "-rounds", "1", "-writers", "4", "-json")
	if code != 0 {
		t.Fatalf("bench: exit %d\n%s", code, errOut)
	}
	var rep struct {
		How struct {
			CPUs int `json:"cpus"`
		} `json:"how"`
		Writes []struct {
			Mode      string  `json:"mode"`
			Backups   int     `json:"backups"`
			PerSecond float64 `json:"writes_per_s"`
			P99MS     float64 `json:"p99_ms"`
		} `json:"writes"`
		Failover struct {
			AllMS []float64 `json:"all_ms"`
		} `json:"failover"`
		Heal struct {
			AllMS []float64 `json:"all_ms"`
		} `json:"heal"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("bench -json: %v\n%s", err, out)
	}
	if len(rep.Writes) != 2 || rep.How.CPUs == 0 {
		t.Fatalf("bench -json: %s", out)
	}
	for _, w := range rep.Writes {
		if w.Backups != 1 || w.PerSecond <= 0 || w.P99MS <= 0 {
			t.Errorf("write run %+v", w)
		}
	}
	if len(rep.Failover.AllMS) != 1 || len(rep.Heal.AllMS) != 1 || rep.Failover.AllMS[0] <= 0 || rep.Heal.AllMS[0] <= 0 {
		t.Errorf("failover %v, heal %v", rep.Failover.AllMS, rep.Heal.AllMS)
	}
	for _, bad := range [][]string{{"bench", "-agents", "1"}, {"bench", "-rounds", "0"}, {"bench", "-profile", "moon"}, {"bench", "-duration", "1ms"}} {
		if _, _, code := run(t, bad...); code != 2 {
			t.Errorf("%v: exit %d, want 2", bad, code)
		}
	}
}
