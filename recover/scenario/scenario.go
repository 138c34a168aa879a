// Package scenario helps the tests that run scenario files through
// datadriven (agent/core and recover/sim): it checks that a file is
// checked, not merely run, by changing one line of its expected output
// and seeing the run fail. Only tests import it.
package scenario

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/cockroachdb/datadriven"
)

// FailsWhenChanged runs every *.txt file of dir with one line of expected
// output changed, through run (a fresh one per file, from newRun), and
// fails t unless each run reports a mismatch.
func FailsWhenChanged(t *testing.T, dir string, newRun func() func(t *testing.T, d *datadriven.TestData) string) {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.txt"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no scenario files in %s: %v", dir, err)
	}
	for _, path := range files {
		t.Run(filepath.Base(path), func(t *testing.T) {
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			changed, ok := ChangeExpectedLine(string(b))
			if !ok {
				t.Fatal("no expected output to change")
			}
			tmp := filepath.Join(t.TempDir(), filepath.Base(path))
			if err := os.WriteFile(tmp, []byte(changed), 0o644); err != nil {
				t.Fatal(err)
			}
			rec := &recorder{TB: t}
			run := newRun()
			done := make(chan struct{})
			go func() {
				defer close(done)
				datadriven.RunTestAny(rec, tmp, func(_ testing.TB, d *datadriven.TestData) string { return run(t, d) })
			}()
			<-done
			if !rec.failed || !strings.Contains(rec.msg, "expected") {
				t.Fatalf("a changed line of expected output passed (failure %q)", rec.msg)
			}
		})
	}
}

// ChangeExpectedLine alters the last line of the first non-empty expected
// output of a datadriven file.
func ChangeExpectedLine(file string) (string, bool) {
	lines := strings.Split(file, "\n")
	for i := range lines {
		if lines[i] != "----" {
			continue
		}
		j := i + 1
		for j < len(lines) && lines[j] != "" {
			j++
		}
		if j > i+1 {
			lines[j-1] += " (changed)"
			return strings.Join(lines, "\n"), true
		}
	}
	return "", false
}

// recorder is a testing.TB that records a failure instead of failing the
// test; a fatal one ends the goroutine the run is on.
type recorder struct {
	testing.TB
	failed bool
	msg    string
}

func (r *recorder) Fatalf(format string, args ...any) {
	r.failed, r.msg = true, fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func (r *recorder) Fatal(args ...any) { r.Fatalf("%s", fmt.Sprint(args...)) }

func (r *recorder) Errorf(format string, args ...any) {
	r.failed, r.msg = true, fmt.Sprintf(format, args...)
}

func (r *recorder) Error(args ...any) { r.Errorf("%s", fmt.Sprint(args...)) }

func (r *recorder) FailNow() {
	r.failed = true
	runtime.Goexit()
}

func (r *recorder) Fail() { r.failed = true }

func (r *recorder) Failed() bool { return r.failed }
