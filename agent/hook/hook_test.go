package hook

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mastership/mastership/naming/api"
)

func TestTracker(t *testing.T) {
	e := func(term, id uint64) api.Epoch { return api.Epoch{Term: term, ID: id} }
	steps := []struct {
		role   api.Role
		epoch  api.Epoch
		master uint64
		want   string // "" fires nothing
	}{
		{api.RoleBackup, api.Epoch{}, 0, "backup"}, // once at start
		{api.RoleBackup, api.Epoch{}, 0, ""},
		{api.RoleCandidate, e(1, 2), 0, ""}, // candidates fire nothing
		{api.RoleMaster, e(1, 2), 2, "master"},
		{api.RoleMaster, e(1, 2), 2, ""},
		{api.RoleMaster, e(3, 2), 2, "master"}, // a new epoch: the fencing token moved
		{api.RoleRecovering, e(3, 2), 2, "recovering"},
		{api.RoleSyncing, e(3, 2), 2, ""}, // syncing is recovering to a service
		{api.RoleBackup, e(4, 1), 1, "backup"},
		{api.RoleBackup, e(4, 1), 3, "backup"}, // another master followed
		{api.RoleQuarantined, e(4, 1), 3, "quarantined"},
		{api.RoleUnknown, e(4, 1), 3, ""},
	}
	var tr Tracker
	for i, st := range steps {
		s, ok := tr.Next(st.role, State{Group: "g", ID: 2, Epoch: st.epoch, Master: st.master})
		if got := map[bool]string{true: s.Role}[ok]; got != st.want {
			t.Errorf("step %d (%s epoch %s master %d): fired %q, want %q", i, st.role, st.epoch, st.master, got, st.want)
		}
	}
}

// script writes an executable shell script into dir.
func script(t *testing.T, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return string(b)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestExecArgumentsAndEnvironment(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	p := script(t, dir, "hook", `echo "$@" > `+out+`; env | grep ^MASTERSHIP_ | sort >> `+out)
	s := State{Role: "master", Previous: "backup", Group: "orders", ID: 3, Epoch: api.Epoch{Term: 7, ID: 3}, Master: 3, MasterAddr: "10.0.0.3:8946"}
	o := Exec(context.Background(), "on-role-change", p, s, 5*time.Second)
	if !o.OK() || o.ExitCode != 0 || o.Role != "master" || o.Epoch != s.Epoch {
		t.Fatalf("outcome %+v", o)
	}
	want := "master backup orders 3\n" +
		"MASTERSHIP_EPOCH=7\nMASTERSHIP_EPOCH_ID=3\nMASTERSHIP_GROUP=orders\nMASTERSHIP_ID=3\n" +
		"MASTERSHIP_MASTER=3\nMASTERSHIP_MASTER_ADDR=10.0.0.3:8946\nMASTERSHIP_PREVIOUS_ROLE=backup\nMASTERSHIP_ROLE=master\n"
	if got := readFile(t, out); got != want {
		t.Fatalf("the hook saw\n%s\nwant\n%s", got, want)
	}
	// No master known: MASTERSHIP_MASTER is empty, not 0.
	o = Exec(context.Background(), "on-role-change", p, State{Role: "backup", Group: "orders", ID: 3}, 5*time.Second)
	if !o.OK() || !strings.Contains(readFile(t, out), "MASTERSHIP_MASTER=\n") {
		t.Fatalf("outcome %+v, saw\n%s", o, readFile(t, out))
	}
}

func TestExecFailures(t *testing.T) {
	dir := t.TempDir()
	s := State{Role: "backup", Group: "g", ID: 1}
	o := Exec(context.Background(), "on-role-change", script(t, dir, "fail", "echo not today >&2; exit 3"), s, 5*time.Second)
	if o.OK() || o.ExitCode != 3 || o.TimedOut || o.StderrTail != "not today\n" {
		t.Fatalf("a hook that exits 3: %+v", o)
	}
	o = Exec(context.Background(), "on-role-change", filepath.Join(dir, "missing"), s, 5*time.Second)
	if o.OK() || o.ExitCode != -1 || o.Error == "" {
		t.Fatalf("a missing hook: %+v", o)
	}
	noexec := filepath.Join(dir, "noexec")
	if err := os.WriteFile(noexec, []byte("#!/bin/sh\nexit 0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if o = Exec(context.Background(), "on-role-change", noexec, s, 5*time.Second); o.OK() || o.Error == "" {
		t.Fatalf("a hook that is not executable: %+v", o)
	}
	// A flood on stderr keeps only its tail.
	o = Exec(context.Background(), "on-role-change", script(t, dir, "flood",
		`i=0; while [ $i -lt 2000 ]; do echo "line $i of a flood" >&2; i=$((i+1)); done; exit 1`), s, 10*time.Second)
	if o.ExitCode != 1 || len(o.StderrTail) > stderrTail || !strings.HasSuffix(o.StderrTail, "line 1999 of a flood\n") {
		t.Fatalf("a hook flooding stderr: exit %d, %d bytes of tail ending %q", o.ExitCode, len(o.StderrTail),
			o.StderrTail[max(0, len(o.StderrTail)-40):])
	}
}

// gone tells whether a process has exited (a zombie nobody reaps counts).
func gone(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return true
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	return len(f) > 0 && f[0] == "Z"
}

// A hook past its timeout is killed with everything it started.
func TestExecTimeoutKillsTheProcessGroup(t *testing.T) {
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "pid")
	p := script(t, dir, "slow", "sleep 60 & echo $! > "+pidFile+"; wait")
	o := Exec(context.Background(), "on-role-change", p, State{Role: "master", Group: "g", ID: 1}, 300*time.Millisecond)
	if o.OK() || !o.TimedOut || o.ExitCode != -1 || !strings.Contains(o.Error, "timeout") {
		t.Fatalf("a hook past its timeout: %+v", o)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(readFile(t, pidFile)))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the hook's child killed", func() bool { return gone(pid) })
}

// Runs are serialized, and the states announced while one runs are
// coalesced to the latest; Previous names the role the service last heard.
func TestRunnerSerializesAndCoalesces(t *testing.T) {
	dir := t.TempDir()
	log, gate := filepath.Join(dir, "log"), filepath.Join(dir, "gate")
	p := script(t, dir, "hook", `echo "start $1 $2 $MASTERSHIP_EPOCH" >> `+log+`
if [ "$MASTERSHIP_EPOCH" = 1 ]; then while [ ! -f `+gate+` ]; do sleep 0.01; done; fi
echo "end $1" >> `+log)
	r := NewRunner(Config{Path: p, Timeout: 10 * time.Second})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	st := func(role string, term uint64) State {
		return State{Role: role, Group: "g", ID: 1, Epoch: api.Epoch{Term: term, ID: 1}, Master: 1}
	}
	r.Notify(st("master", 1))
	waitFor(t, "the first run to start", func() bool { return strings.Contains(readFile(t, log), "start master  1") })
	r.Notify(st("recovering", 2))
	r.Notify(st("backup", 3))
	r.Notify(st("master", 4))
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "two runs", func() bool { return r.Stats().Runs == 2 })
	want := "start master  1\nend master\nstart master master 4\nend master\n"
	if got := readFile(t, log); got != want {
		t.Fatalf("runs:\n%s\nwant\n%s", got, want)
	}
	if s := r.Stats(); s.Failed != 0 || len(s.Recent) != 2 || s.Recent[1].Epoch.Term != 4 {
		t.Fatalf("stats %+v", s)
	}

	// States coalesced back to what the service last heard run nothing.
	if err := os.Remove(gate); err != nil {
		t.Fatal(err)
	}
	r.Notify(st("backup", 1)) // waits at the gate
	waitFor(t, "a run at the gate", func() bool { return strings.Count(readFile(t, log), "start") == 3 })
	r.Notify(st("recovering", 1))
	r.Notify(st("backup", 1))
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the run at the gate to end", func() bool { return strings.Count(readFile(t, log), "end") == 3 })
	r.Notify(st("master", 5)) // a real change after the skipped one
	waitFor(t, "four runs", func() bool { return r.Stats().Runs == 4 })
	if got := readFile(t, log); !strings.HasSuffix(got, "start backup master 1\nend backup\nstart master backup 5\nend master\n") {
		t.Fatalf("runs:\n%s", got)
	}

	// RunNow: the last word, after the run under way, instead of what is
	// pending.
	if err := os.Remove(gate); err != nil {
		t.Fatal(err)
	}
	r.Notify(st("backup", 1)) // epoch 1 waits at the gate
	waitFor(t, "a run at the gate", func() bool { return strings.Count(readFile(t, log), "start") == 5 })
	r.Notify(st("recovering", 6)) // pending: dropped by RunNow
	stopped := make(chan struct{})
	go func() { r.RunNow(context.Background(), st(RoleStopped, 6)); close(stopped) }()
	select {
	case <-stopped:
		t.Fatal("RunNow ran while another run was under way")
	case <-time.After(100 * time.Millisecond):
	}
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	<-stopped
	if got := readFile(t, log); !strings.HasSuffix(got, "start backup master 1\nend backup\nstart stopped backup 6\nend stopped\n") {
		t.Fatalf("runs:\n%s", got)
	}
}

// A Go callback runs in the same order, before the executable.
func TestRunnerCallback(t *testing.T) {
	var seen []string
	r := NewRunner(Config{Callback: func(s State) { seen = append(seen, s.Previous+">"+s.Role) }})
	r.RunNow(context.Background(), State{Role: "backup"})
	r.RunNow(context.Background(), State{Role: "master"})
	if strings.Join(seen, " ") != ">backup backup>master" {
		t.Fatalf("callback saw %v", seen)
	}
	if s := r.Stats(); s.Runs != 2 || s.Recent[0].Hook != "callback" {
		t.Fatalf("stats %+v", s)
	}
	if NewRunner(Config{}).Enabled() {
		t.Fatal("a runner with nothing to run is enabled")
	}
}

func TestHealth(t *testing.T) {
	h := Health{Failures: 3}
	steps := []struct {
		ok            bool
		healthy, flip bool
	}{
		{true, true, false}, {false, true, false}, {false, true, false}, {true, true, false}, // two failures, then a pass
		{false, true, false}, {false, true, false}, {false, false, true}, // the third in a row
		{false, false, false}, {true, true, true}, {true, true, false},
	}
	for i, s := range steps {
		healthy, changed := h.Observe(s.ok)
		if healthy != s.healthy || changed != s.flip {
			t.Errorf("check %d (ok=%t): healthy=%t changed=%t, want %t %t", i, s.ok, healthy, changed, s.healthy, s.flip)
		}
	}
	one := Health{} // 0 counts as 1
	if healthy, changed := one.Observe(false); healthy || !changed {
		t.Fatalf("one failure with Failures 0: healthy=%t changed=%t", healthy, changed)
	}
}

// A hook that starts a service in the background and exits 0 succeeded,
// although the service keeps its stderr open; one that exits 1 so did not.
func TestExecBackgroundChild(t *testing.T) {
	dir := t.TempDir()
	o := Exec(context.Background(), "on-role-change", script(t, dir, "daemon", "sleep 3 & exit 0"), State{Role: "master"}, 10*time.Second)
	if !o.OK() || o.ExitCode != 0 {
		t.Fatalf("a hook that left a child running and exited 0: %+v", o)
	}
	o = Exec(context.Background(), "on-role-change", script(t, dir, "daemon1", "sleep 3 & exit 1"), State{Role: "master"}, 10*time.Second)
	if o.OK() || o.ExitCode != 1 {
		t.Fatalf("a hook that left a child running and exited 1: %+v", o)
	}
}

// Exclusive runs while no hook runs, and a state announced meanwhile runs
// right after it.
func TestRunnerExclusive(t *testing.T) {
	var mu sync.Mutex
	var order []string
	var active, most int
	enter := func(what string) {
		mu.Lock()
		order = append(order, what)
		active++
		most = max(most, active)
		mu.Unlock()
	}
	leave := func() { mu.Lock(); active--; mu.Unlock() }
	inCallback := make(chan struct{})
	release := make(chan struct{})
	r := NewRunner(Config{Callback: func(s State) {
		enter("hook " + s.Role)
		defer leave()
		if s.Role == "backup" {
			close(inCallback)
			<-release
		}
	}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	r.Notify(State{Role: "backup"})
	<-inCallback
	excl := make(chan struct{})
	go func() {
		r.Exclusive(func() {
			enter("gate")
			time.Sleep(20 * time.Millisecond) // long enough to overlap a run, were one allowed
			leave()
		})
		close(excl)
	}()
	r.Notify(State{Role: "master"}) // waits for the gate too
	close(release)
	<-excl
	waitFor(t, "the master run", func() bool { return r.Stats().Runs == 2 })
	mu.Lock()
	defer mu.Unlock()
	if len(order) != 3 || order[0] != "hook backup" || most != 1 {
		t.Fatalf("order %v, at most %d at once", order, most)
	}
}
