// Package examples holds example hooks for `mastership agent` (see README.md,
// "Running a real service"); this test runs them as the agent would.
package examples

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// runHook runs script as the agent runs a hook: ROLE PREVIOUS GROUP ID and
// the MASTERSHIP_* environment, on top of env.
func runHook(t *testing.T, script string, env []string, role, master, addr string) (string, error) {
	t.Helper()
	cmd := exec.Command("./"+script, role, "backup", "orders", "2")
	cmd.Env = append(append(os.Environ(), env...), "MASTERSHIP_ROLE="+role, "MASTERSHIP_PREVIOUS_ROLE=backup",
		"MASTERSHIP_GROUP=orders", "MASTERSHIP_ID=2", "MASTERSHIP_EPOCH=7", "MASTERSHIP_EPOCH_ID=2",
		"MASTERSHIP_MASTER="+master, "MASTERSHIP_MASTER_ADDR="+addr)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func TestRoleFile(t *testing.T) {
	dir := t.TempDir()
	env := []string{"MASTERSHIP_STATE_DIR=" + dir}
	if out, err := runHook(t, "role-file.sh", env, "master", "2", "10.0.0.2:8946"); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	b, err := os.ReadFile(filepath.Join(dir, "orders-2", "role"))
	if err != nil || string(b) != "master 7.2 2 10.0.0.2:8946\n" {
		t.Fatalf("role file %q %v", b, err)
	}
	if out, err := runHook(t, "role-file.sh", env, "backup", "", ""); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "orders-2", "role")); string(b) != "backup 7.2 - -\n" {
		t.Fatalf("role file %q", b)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, "orders-2", ".role.*")); len(left) != 0 {
		t.Fatalf("temporary files left: %v", left)
	}
}

// fakeTools puts pg_ctl and psql stubs first on PATH: they log their
// arguments; pg_ctl status fails when PG_DOWN is set, psql prints PG_LAG.
func fakeTools(t *testing.T) (env []string, calls func() string) {
	t.Helper()
	bin, logf := t.TempDir(), filepath.Join(t.TempDir(), "calls")
	stub := "#!/bin/sh\necho \"$(basename \"$0\") $*\" >> " + logf + "\n"
	pgctl := stub + "[ \"$1\" = status ] && [ -n \"${PG_DOWN:-}\" ] && exit 3\nexit 0\n"
	psql := stub + "echo \"${PG_LAG:-0}\"\n"
	for name, body := range map[string]string{"pg_ctl": pgctl, "psql": psql} {
		if err := os.WriteFile(filepath.Join(bin, name), []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return []string{"PATH=" + bin + ":" + os.Getenv("PATH")}, func() string {
		b, _ := os.ReadFile(logf)
		return string(b)
	}
}

func TestPostgres(t *testing.T) {
	env, calls := fakeTools(t)
	pgdata := t.TempDir()
	env = append(env, "PGDATA="+pgdata)

	// A back-up follows the master as a standby.
	if out, err := runHook(t, "postgres.sh", env, "backup", "1", "10.0.0.1:8946"); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	conf, _ := os.ReadFile(filepath.Join(pgdata, "postgresql.auto.conf"))
	if !strings.Contains(string(conf), "primary_conninfo = 'host=10.0.0.1 port=5432 user=replicator application_name=mastership-2'") {
		t.Fatalf("postgresql.auto.conf: %q", conf)
	}
	if _, err := os.Stat(filepath.Join(pgdata, "standby.signal")); err != nil {
		t.Fatal("no standby.signal for a back-up")
	}
	if got := calls(); got != "pg_ctl restart -D "+pgdata+" -m fast -w\n" {
		t.Fatalf("calls %q", got)
	}
	// The master is promoted.
	if out, err := runHook(t, "postgres.sh", env, "master", "2", "10.0.0.2:8946"); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if got := calls(); !strings.HasSuffix(got, "pg_ctl promote -D "+pgdata+" -w\n") {
		t.Fatalf("calls %q", got)
	}
	// No master known yet, a stop: nothing to do.
	before := calls()
	for _, role := range []string{"backup", "stopped"} {
		if out, err := runHook(t, "postgres.sh", env, role, "", ""); err != nil {
			t.Fatalf("%s: %v: %s", role, err, out)
		}
	}
	if calls() != before {
		t.Fatalf("calls after a back-up of nobody and a stop: %q", calls())
	}
	if out, err := runHook(t, "postgres.sh", env[:1], "master", "2", ""); err == nil || !strings.Contains(out, "PGDATA") {
		t.Fatalf("without PGDATA: %v %q", err, out)
	}
}

func TestPostgresPrePromote(t *testing.T) {
	env, _ := fakeTools(t)
	env = append(env, "PGDATA="+t.TempDir())
	for _, tc := range []struct {
		extra []string
		ok    bool
	}{
		{nil, true},
		{[]string{"PG_LAG=4096"}, false},
		{[]string{"PG_LAG=4096", "MASTERSHIP_PG_MAX_LAG=8192"}, true},
		{[]string{"PG_DOWN=1"}, false},
	} {
		out, err := runHook(t, "postgres-pre-promote.sh", append(env, tc.extra...), "master", "2", "10.0.0.2:8946")
		if (err == nil) != tc.ok {
			t.Errorf("%v: %v %q, want ok=%t", tc.extra, err, out, tc.ok)
		}
	}
}
