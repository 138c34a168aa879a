package main

import (
	"math"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/mastership/mastership/naming/api"
)

// Each run's fan-out is its writes/s over its own mode's 1-back-up run;
// a mode without one (bench -agents 1 has no write runs; a failed run is
// not there) gets none rather than another mode's.
func TestFanOut(t *testing.T) {
	ws := []benchWrites{
		{Mode: "strict", Backups: 1, PerSecond: 8000},
		{Mode: "strict", Backups: 8, PerSecond: 4000},
		{Mode: "available", Backups: 2, PerSecond: 3000},
		{Mode: "available", Backups: 1, PerSecond: 6000},
		{Mode: "other", Backups: 4, PerSecond: 1000},
		{Mode: "zero", Backups: 1, PerSecond: 0},
		{Mode: "zero", Backups: 2, PerSecond: 10},
	}
	fanOut(ws)
	want := []float64{1, 0.5, 0.5, 1, 0, 0, 0}
	for i, w := range ws {
		if math.Abs(w.VsOne-want[i]) > 1e-9 {
			t.Errorf("%s with %d back-ups: vs 1 back-up %v, want %v", w.Mode, w.Backups, w.VsOne, want[i])
		}
	}
}

// /proc/<pid>/stat gives utime and stime in 1/100 s after a command name
// that may hold spaces and parentheses; anything else is no figure, never
// a wrong one or a crash.
func TestParseProcStat(t *testing.T) {
	line := func(comm, tail string) []byte {
		return []byte("4242 (" + comm + ") S 1 4242 4242 0 -1 4194560 1234 0 0 0 " + tail)
	}
	for _, tc := range []struct {
		name string
		in   []byte
		want time.Duration
		ok   bool
	}{
		{"plain", line("mastership", "150 25 0 0 20 0 9 0 100 0"), 1750 * time.Millisecond, true},
		{"name with spaces and parentheses", line("a) (b) S 9 9", "3 4 0 0"), 70 * time.Millisecond, true},
		{"no parenthesis", []byte("4242 mastership S 1 2 3"), 0, false},
		{"truncated", line("m", "150"), 0, false},
		{"empty", nil, 0, false},
		{"not a number", line("m", "x 25 0 0"), 0, false},
		{"negative", line("m", "-1 25 0 0"), 0, false},
		{"utime too large", line("m", "18446744073709551615 0 0 0"), 0, false},
		{"sum too large", line("m", "500000000000 500000000000 0 0"), 0, false},
	} {
		got, ok := parseProcStat(tc.in)
		if got != tc.want || ok != tc.ok {
			t.Errorf("%s: %v %t, want %v %t", tc.name, got, ok, tc.want, tc.ok)
		}
	}
	if runtime.GOOS == "linux" {
		if _, ok := procCPU(os.Getpid()); !ok {
			t.Error("no CPU time for this process from /proc")
		}
	}
}

// The CPU per write divides each process's time over the run by the
// writes, the back-ups' by their count too; a sample that failed gives
// no figure.
func TestPerWrite(t *testing.T) {
	w := benchWrites{Backups: 4, Writes: 1000}
	e := api.Epoch{Term: 3, ID: 1}
	pids := []int{10, 11, 12, 13, 14}
	before := cpuSample{master: time.Second, backups: 2 * time.Second, client: 0, pids: pids, epoch: e, ok: true}
	after := cpuSample{master: 1100 * time.Millisecond, backups: 2200 * time.Millisecond, client: 50 * time.Millisecond, pids: pids, epoch: e, ok: true}
	w.perWrite(before, after)
	if w.MasterCPU != 100 || w.BackupCPU != 50 || w.ClientCPU != 50 {
		t.Fatalf("master %v, back-up %v, client %v µs per write; want 100, 50, 50", w.MasterCPU, w.BackupCPU, w.ClientCPU)
	}
	for _, bad := range []benchWrites{{Backups: 4}, {Writes: 10}} {
		bad.perWrite(before, after)
		if bad.MasterCPU != 0 || bad.BackupCPU != 0 {
			t.Errorf("%+v: figures from no writes or no back-ups", bad)
		}
	}
	w = benchWrites{Backups: 1, Writes: 10}
	w.perWrite(cpuSample{}, after)
	if w.MasterCPU != 0 {
		t.Errorf("a failed sample gave %v µs per write", w.MasterCPU)
	}
	w.perWrite(after, before) // time going backwards: a restarted process
	if w.MasterCPU != 0 || w.BackupCPU != 0 || w.ClientCPU != 0 {
		t.Errorf("a run whose CPU time went backwards gave %+v", w)
	}
	if s := (&demo{}).sampleCPU(0); s.ok {
		t.Error("a sample without a known master is ok")
	}
	// Another master in between (a new epoch), or a restarted agent (a
	// new process): whose time was whose is not known.
	moved := after
	moved.epoch = api.Epoch{Term: 4, ID: 1}
	restarted := after
	restarted.pids = []int{10, 11, 99, 13, 14}
	for name, a := range map[string]cpuSample{"new epoch": moved, "restarted agent": restarted} {
		w := benchWrites{Backups: 4, Writes: 1000}
		w.perWrite(before, a)
		if w.MasterCPU != 0 || w.BackupCPU != 0 || w.ClientCPU != 0 {
			t.Errorf("%s: %+v", name, w)
		}
	}
}
