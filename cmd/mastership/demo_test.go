package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// goRunBuild tells go run's temporary build from an installed binary.
func TestGoRunBuild(t *testing.T) {
	for path, want := range map[string]bool{
		"/tmp/go-build1867039926/b001/exe/mastership": true,
		"/usr/local/bin/mastership":                   false,
		"/home/me/go/bin/mastership":                  false,
	} {
		if got := goRunBuild(path); got != want {
			t.Errorf("goRunBuild(%q) = %v, want %v", path, got, want)
		}
	}
}

// The demo's copy of its binary replaces one a kept cluster still runs
// (a plain write of a running executable fails with ETXTBSY).
func TestCopyExecutableOverARunningOne(t *testing.T) {
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Skip("no sleep binary")
	}
	dir := t.TempDir()
	to := filepath.Join(dir, "mastership")
	if _, err := copyExecutable(sleep, to); err != nil {
		t.Fatal(err)
	}
	running := exec.Command(to, "30")
	if err := running.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { running.Process.Kill(); running.Wait() }()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := copyExecutable(self, to); err != nil {
		t.Fatalf("copy over the running binary: %v", err)
	}
	got, _ := os.ReadFile(to)
	want, _ := os.ReadFile(self)
	if st, err := os.Stat(to); err != nil || st.Mode().Perm() != 0o755 || !bytes.Equal(got, want) {
		t.Fatalf("the copy: %v %v, %d bytes of %d", st.Mode(), err, len(got), len(want))
	}
	if _, err := os.Stat(to + ".new"); !os.IsNotExist(err) {
		t.Fatalf("the temporary copy is left: %v", err)
	}
}
