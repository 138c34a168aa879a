package e2e

import (
	"encoding/json"
	"runtime"
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
			MasterCPU float64 `json:"master_cpu_us_per_write"`
			BackupCPU float64 `json:"backup_cpu_us_per_write"`
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
		// Linux has /proc: every run tells what a write cost the master
		// (its back-up's may be under one 10ms tick in a run this short).
		if runtime.GOOS == "linux" && w.MasterCPU <= 0 {
			t.Errorf("write run %+v: no CPU per write", w)
		}
	}
	if len(rep.Failover.AllMS) != 1 || len(rep.Heal.AllMS) != 1 || rep.Failover.AllMS[0] <= 0 || rep.Heal.AllMS[0] <= 0 {
		t.Errorf("failover %v, heal %v", rep.Failover.AllMS, rep.Heal.AllMS)
	}
	for _, bad := range [][]string{{"bench", "-agents", "1"}, {"bench", "-rounds", "0"}, {"bench", "-profile", "moon"}, {"bench", "-duration", "1ms"},
		{"bench", "-soak", "10"}, {"bench", "-soak", "-5"}} {
		if _, _, code := run(t, bad...); code != 2 {
			t.Errorf("%v: exit %d, want 2", bad, code)
		}
	}
}

// mastership bench -soak on a small count: every agent sampled each tenth,
// snapshots taken on the schedule (local profile: every 2000 entries),
// data dirs that do not grow with the writes, a restarted back-up in sync
// from its data dir, and one that missed 2,000 writes in sync by download.
func TestBenchSoak(t *testing.T) {
	out, errOut, code := run(t, "bench", "-soak", "20000", "-writers", "8", "-json")
	if code != 0 {
		t.Fatalf("bench -soak: exit %d\n%s", code, errOut)
	}
	type restart struct {
		Missed int64   `json:"missed_writes"`
		SyncMS float64 `json:"sync_ms"`
		BySnap bool    `json:"by_snapshot"`
	}
	var rep struct {
		Samples []struct {
			Writes int64 `json:"writes"`
			Agents []struct {
				DataBytes     int64  `json:"data_bytes"`
				RSSBytes      int64  `json:"rss_bytes"`
				SnapshotIndex uint64 `json:"snapshot_index"`
				LogEntries    int    `json:"log_entries"`
			} `json:"agents"`
			Restart  *restart `json:"restart"`
			CatchUp  *restart `json:"catch_up"`
			Failures int64    `json:"failed_writes"`
		} `json:"samples"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("bench -soak -json: %v\n%s", err, out)
	}
	if len(rep.Samples) != 12 {
		t.Fatalf("%d samples, want 12 (start, ten steps, after the restarts): %s", len(rep.Samples), out)
	}
	first := rep.Samples[1]
	for _, s := range rep.Samples[1:11] {
		for i, a := range s.Agents {
			if a.RSSBytes <= 0 || a.DataBytes <= 0 {
				t.Errorf("after %d writes agent %d: %+v", s.Writes, i+1, a)
			}
			if a.LogEntries > 2000+512+64 {
				t.Errorf("after %d writes agent %d keeps %d entries in memory", s.Writes, i+1, a.LogEntries)
			}
			if a.DataBytes > first.Agents[i].DataBytes*3/2 {
				t.Errorf("agent %d's data dir grew from %d to %d bytes", i+1, first.Agents[i].DataBytes, a.DataBytes)
			}
		}
	}
	if last := rep.Samples[10]; last.Agents[0].SnapshotIndex < 16000 {
		t.Errorf("after 20000 writes the first agent's latest snapshot is at %d", last.Agents[0].SnapshotIndex)
	}
	end := rep.Samples[11]
	if end.Restart == nil || end.CatchUp == nil || end.Restart.BySnap || !end.CatchUp.BySnap || end.CatchUp.Missed != 2000 || end.Failures != 0 {
		t.Errorf("restarts %+v, %+v; failed writes %d", end.Restart, end.CatchUp, end.Failures)
	}
}
