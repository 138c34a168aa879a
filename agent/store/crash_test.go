package store

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/mastership/mastership/agent/rlog"
)

// crashDirEnv, when set, makes TestCrashHelper the child process of
// TestCrash, working in the directory it names.
const crashDirEnv = "MASTERSHIP_STORE_CRASH_DIR"

// TestCrashHelper is not a test on its own: TestCrash runs the test binary
// again with crashDirEnv set, and this function then appends entries to the
// store in that directory until it is killed, printing "acked N" once an
// Append ending at index N has returned. It also saves the hard state with
// MaxTerm = N every few batches and prints "hard N" after.
func TestCrashHelper(t *testing.T) {
	dir := os.Getenv(crashDirEnv)
	if dir == "" {
		t.Skip("child process of TestCrash")
	}
	s, err := Open(dir)
	if err != nil {
		t.Fatalf("child: %v", err)
	}
	_, _, base, es, err := s.Load()
	if err != nil {
		t.Fatalf("child: %v", err)
	}
	tip := last(base, es)
	term := tip.Epoch.Term + 1
	for i := 0; ; i++ {
		batch := chain(tip, ep(term, 1), 1+i%7)
		if err := s.Append(batch); err != nil {
			t.Fatalf("child: %v", err)
		}
		tip = last(tip, batch)
		// Unbuffered: once the line is written it is the parent's, even if
		// the child dies on the next instruction.
		fmt.Fprintf(os.Stdout, "acked %d\n", tip.Index)
		if i%5 == 4 {
			if err := s.SaveHardState(HardState{Epoch: tip.Epoch, MaxTerm: tip.Index}); err != nil {
				t.Fatalf("child: %v", err)
			}
			fmt.Fprintf(os.Stdout, "hard %d\n", tip.Index)
		}
	}
}

// TestCrash kills a child process that is appending to a Bolt store, at an
// arbitrary point of a commit, several times over, and checks after each kill
// that every acknowledged index and hard state is there and the log chains.
func TestCrash(t *testing.T) {
	if os.Getenv(crashDirEnv) != "" {
		t.Skip("in the child")
	}
	dir := t.TempDir()
	var acked, hard uint64
	for round, kills := range []int{40, 137, 90} {
		var out, stderr bytes.Buffer
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashHelper$", "-test.count=1", "-test.timeout=60s")
		cmd.Env = append(os.Environ(), crashDirEnv+"="+dir)
		cmd.Stderr = &stderr
		pipe, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill() })
		sc := bufio.NewScanner(pipe)
		lines := 0
		killed := false
		// Every line the child wrote before dying was acknowledged, so read
		// to EOF after the kill too.
		for sc.Scan() {
			line := sc.Text()
			out.WriteString(line + "\n")
			kind, n, ok := strings.Cut(line, " ")
			if !ok {
				continue
			}
			v, err := strconv.ParseUint(n, 10, 64)
			if err != nil {
				continue
			}
			switch kind {
			case "acked":
				acked = max(acked, v)
			case "hard":
				hard = max(hard, v)
			default:
				continue
			}
			if lines++; lines == kills && !killed {
				if err := cmd.Process.Kill(); err != nil {
					t.Fatal(err)
				}
				killed = true
			}
		}
		err = cmd.Wait()
		if !killed {
			t.Fatalf("round %d: child ended before the kill: %v\nstdout:\n%s\nstderr:\n%s", round, err, out.String(), stderr.String())
		}

		s := mustOpen(t, dir)
		hs, _, base, es, err := s.Load()
		if err != nil {
			t.Fatalf("round %d: Load after kill: %v", round, err)
		}
		if err := rlog.NewAt(base).Append(es...); err != nil {
			t.Fatalf("round %d: loaded log does not chain: %v", round, err)
		}
		if got := last(base, es).Index; got < acked {
			t.Fatalf("round %d: last stored index %d, but the child acknowledged %d", round, got, acked)
		}
		if hs.MaxTerm < hard {
			t.Fatalf("round %d: hard state MaxTerm %d, but the child acknowledged %d", round, hs.MaxTerm, hard)
		}
		t.Logf("round %d: killed after %d lines; acked %d, stored %d", round, kills, acked, last(base, es).Index)
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
}
