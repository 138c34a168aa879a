package main

import (
	"io"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mastership/mastership/config"
	"github.com/urfave/cli/v2"
)

// loadCLI parses args as the `mastership` command line would, with env in
// place of the process environment, and loads the config of the command.
func loadCLI[T any](t *testing.T, flags []cli.Flag, keys []config.Key, load func(config.Sources) (T, error), env []string, args ...string) (T, error) {
	t.Helper()
	var cfg T
	var loadErr error
	app := &cli.App{
		Name:   "mastership",
		Writer: io.Discard, ErrWriter: io.Discard,
		Commands: []*cli.Command{{
			Name:  "cmd",
			Flags: flags,
			Action: func(c *cli.Context) error {
				cfg, loadErr = load(sourcesFromCLI(c, env, keys))
				return nil
			},
		}},
	}
	if err := app.Run(append([]string{"mastership", "cmd"}, args...)); err != nil {
		t.Fatalf("parse %q: %v", args, err)
	}
	return cfg, loadErr
}

func TestAgentFromCLI(t *testing.T) {
	file := writeFile(t, `{"group": "g", "id": 3, "priority": 2, "tick_unit": "20ms"}`)
	env := []string{"MASTERSHIP_PRIORITY=4", "MASTERSHIP_TICK_UNIT=30ms", "MASTERSHIP_NAMING=10.0.0.9:7400"}
	a, err := loadCLI(t, agentConfigFlags(), config.AgentKeys(), config.LoadAgent, env,
		"-config", file, "-profile", "local",
		"-priority", "6", "-join", "10.0.0.1:7946,10.0.0.2:7946", "-join", "10.0.0.3:7946",
		"-fault-control", "-mode", "strict", "-expect", "3")
	if err != nil {
		t.Fatal(err)
	}
	want, _ := config.DefaultAgent(config.ProfileLocal)
	want.Group, want.ID = "g", 3
	want.Priority = 6                     // flag over env over file
	want.TickUnit = 30 * time.Millisecond // env over file; no flag
	want.Naming = "10.0.0.9:7400"         // env only
	want.Join = []string{"10.0.0.1:7946", "10.0.0.2:7946", "10.0.0.3:7946"}
	want.FaultControl = true
	want.Mode = "strict"
	want.Expect = 3
	if !reflect.DeepEqual(a, want) {
		t.Errorf("got  %+v\nwant %+v", a, want)
	}
}

func TestNamingFromCLI(t *testing.T) {
	dir := t.TempDir()
	n, err := loadCLI(t, namingConfigFlags(), config.NamingKeys(), config.LoadNaming, []string{"MASTERSHIP_SESSION_TTL=20s"},
		"-data-dir", dir, "-sweep-interval", "2s", "-bind", "0.0.0.0:7400")
	if err != nil {
		t.Fatal(err)
	}
	want, _ := config.DefaultNaming(config.ProfileLAN)
	want.DataDir, want.SweepInterval, want.Bind, want.SessionTTL = dir, 2*time.Second, "0.0.0.0:7400", 20*time.Second
	if !reflect.DeepEqual(n, want) {
		t.Errorf("got  %+v\nwant %+v", n, want)
	}

	// Flags the user did not set leave the environment alone, and a flag
	// set to false overrides an environment true.
	a, err := loadCLI(t, agentConfigFlags(), config.AgentKeys(), config.LoadAgent, []string{"MASTERSHIP_GROUP=g", "MASTERSHIP_ID=1", "MASTERSHIP_FAULT_CONTROL=true"},
		"-fault-control=false")
	if err != nil || a.FaultControl || a.Group != "g" {
		t.Errorf("got %+v, %v; want group g from env and fault-control false from the flag", a, err)
	}

	// The result is validated, and errors name the flag.
	_, err = loadCLI(t, namingConfigFlags(), config.NamingKeys(), config.LoadNaming, nil, "-data-dir", dir, "-session-ttl", "1s")
	if err == nil || !strings.Contains(err.Error(), "sweep-interval") {
		t.Errorf("got %v, want a sweep-interval error", err)
	}
	_, err = loadCLI(t, namingConfigFlags(), config.NamingKeys(), config.LoadNaming, nil, "-data-dir", dir, "-session-ttl", "long")
	if err == nil || !strings.Contains(err.Error(), "flag -session-ttl") {
		t.Errorf("got %v, want an error naming -session-ttl", err)
	}
}

func TestFlagsMatchFields(t *testing.T) {
	for _, tt := range []struct {
		name  string
		flags []cli.Flag
		keys  []config.Key
	}{
		{"naming", namingConfigFlags(), config.NamingKeys()},
		{"agent", agentConfigFlags(), config.AgentKeys()},
	} {
		var names []string
		for _, f := range tt.flags {
			names = append(names, f.Names()[0])
			df, ok := f.(cli.DocGenerationFlag)
			if !ok || df.GetUsage() == "" || df.GetDefaultText() == "" {
				t.Errorf("%s -%s: usage %q and default must be set", tt.name, f.Names()[0], df.GetUsage())
			}
		}
		want := []string{config.FlagProfile, config.FlagConfig}
		for _, k := range tt.keys {
			want = append(want, k.Flag)
			if strings.HasPrefix(k.Usage, " [$") {
				t.Errorf("%s %s: no usage text", tt.name, k.Key)
			}
		}
		if !slices.Equal(names, want) {
			t.Errorf("%s flags %v, want %v", tt.name, names, want)
		}
		for _, banned := range []string{"log-level", "log-json"} {
			if slices.Contains(names, banned) {
				t.Errorf("%s has -%s, a global flag of main", tt.name, banned)
			}
		}
	}
}

func writeFile(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "config.json")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}
