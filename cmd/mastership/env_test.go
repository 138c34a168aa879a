package main

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"
)

// The global flags work before and after the command's name; typed after
// wins over typed before, which wins over the environment, which wins
// over the default. A bad level is a usage error wherever it was given.
func TestGlobalFlagsAfterTheCommand(t *testing.T) {
	for _, c := range []struct {
		env   string
		args  []string
		level string
		json  bool
		code  int
	}{
		{"", []string{"probe"}, "info", false, exitOK},
		{"", []string{"-log-level", "debug", "probe"}, "debug", false, exitOK},
		{"", []string{"probe", "-log-level", "warn"}, "warn", false, exitOK},
		{"", []string{"-log-level", "debug", "probe", "-log-level", "warn"}, "warn", false, exitOK},
		{"error", []string{"probe"}, "error", false, exitOK},
		{"error", []string{"probe", "-log-level", "trace"}, "trace", false, exitOK},
		{"bogus", []string{"probe", "-log-level", "debug"}, "debug", false, exitOK},
		{"bogus", []string{"-log-level", "warn", "probe"}, "warn", false, exitOK},
		{"bogus", []string{"probe"}, "", false, exitUsage},
		{"", []string{"probe", "-log-json"}, "info", true, exitOK},
		{"", []string{"-log-json", "probe"}, "info", true, exitOK},
		{"", []string{"probe", "-log-level", "bogus"}, "", false, exitUsage},
		{"", []string{"-log-level", "bogus", "probe"}, "", false, exitUsage},
	} {
		t.Setenv("MASTERSHIP_LOG_LEVEL", c.env)
		if c.env == "" {
			os.Unsetenv("MASTERSHIP_LOG_LEVEL")
		}
		var out, errOut bytes.Buffer
		app := newApp(&out, &errOut)
		var level string
		var json bool
		app.Commands = append(app.Commands, withGlobalFlags([]*cli.Command{{Name: "probe", Action: func(cc *cli.Context) error {
			level, json = globalContext(cc, "log-level").String("log-level"), globalContext(cc, "log-json").Bool("log-json")
			return nil
		}}})...)
		err := app.RunContext(context.Background(), append([]string{"mastership"}, c.args...))
		code := exitOK
		if ec, ok := err.(cli.ExitCoder); ok {
			code = ec.ExitCode()
		} else if err != nil {
			code = exitError
		}
		if code != c.code || (code == exitOK && (level != c.level || json != c.json)) {
			t.Errorf("env %q, %v: exit %d, level %q, json %v; want exit %d, %q, %v (%v)", c.env, c.args, code, level, json, c.code, c.level, c.json, err)
		}
	}
}

// A MASTERSHIP_ variable mastership does not know is a warning naming the
// closest known one; known ones, the hooks' and the test suites' are not.
func TestUnknownEnvWarns(t *testing.T) {
	t.Setenv("MASTERSHIP_SESION_TTL", "3s")
	t.Setenv("MASTERSHIP_ZZZZZZZZZZZZZZ", "1")
	t.Setenv("MASTERSHIP_SESSION_TTL", "3s")
	t.Setenv("MASTERSHIP_MASTER_ADDR", "10.0.0.1:8946")
	t.Setenv("MASTERSHIP_E2E_RUNS", "2")
	t.Setenv("MASTERSHIP_AGENT", "127.0.0.1:1")
	var out, errOut bytes.Buffer
	if code := run(context.Background(), []string{"mastership", "version"}, &out, &errOut); code != exitOK {
		t.Fatalf("version: exit %d, %s", code, errOut.String())
	}
	got := errOut.String()
	for _, want := range []string{
		"warning: MASTERSHIP_SESION_TTL is not a setting of mastership and is ignored; did you mean MASTERSHIP_SESSION_TTL?",
		"warning: MASTERSHIP_ZZZZZZZZZZZZZZ is not a setting of mastership and is ignored\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("stderr lacks %q:\n%s", want, got)
		}
	}
	for _, quiet := range []string{"MASTERSHIP_SESSION_TTL ", "MASTERSHIP_MASTER_ADDR", "MASTERSHIP_E2E_RUNS", "MASTERSHIP_AGENT"} {
		if strings.Contains(got, quiet) {
			t.Errorf("stderr warns of %s:\n%s", quiet, got)
		}
	}
}

// MASTERSHIP_AGENT is -agent's default; a typed -agent wins.
func TestAgentFromEnvironment(t *testing.T) {
	t.Setenv("MASTERSHIP_AGENT", "127.0.0.1:1")
	var out, errOut bytes.Buffer
	run(context.Background(), []string{"mastership", "info", "-timeout", "1s"}, &out, &errOut)
	if !strings.Contains(errOut.String(), "agent 127.0.0.1:1 unreachable") {
		t.Errorf("info with MASTERSHIP_AGENT: %s", errOut.String())
	}
	errOut.Reset()
	run(context.Background(), []string{"mastership", "info", "-agent", "127.0.0.1:2", "-timeout", "1s"}, &out, &errOut)
	if !strings.Contains(errOut.String(), "agent 127.0.0.1:2 unreachable") {
		t.Errorf("info -agent with MASTERSHIP_AGENT set: %s", errOut.String())
	}
}
