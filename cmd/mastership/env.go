package main

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/mastership/mastership/agent/hook"
	"github.com/mastership/mastership/config"
)

// envAgent names the default agent API address of the commands that talk
// to one agent (and kv's -agent), as MASTERSHIP_NAMING does the naming
// node's.
const envAgent = config.EnvPrefix + "AGENT"

// testEnvPrefixes are kept for the test suites' own settings
// (MASTERSHIP_E2E_RUNS and the like), which child processes inherit.
func testEnvPrefixes() []string {
	return []string{config.EnvPrefix + "E2E_", config.EnvPrefix + "TEST_"}
}

// knownEnv lists the environment variables mastership reads or sets:
// every flag's of every command, every configuration key's, the
// profile's and config file's, MASTERSHIP_AGENT, and those it gives hook
// executables (a hook may run mastership).
func knownEnv(app *cli.App) map[string]bool {
	known := map[string]bool{envAgent: true, config.EnvProfile: true, config.EnvConfig: true,
		// The example role hook's (agent/hook/examples/role-file.sh),
		// set in the agent's environment for its hooks.
		config.EnvPrefix + "STATE_DIR": true}
	var walkFlags func(fs []cli.Flag)
	walkFlags = func(fs []cli.Flag) {
		for _, f := range fs {
			if e, ok := f.(interface{ GetEnvVars() []string }); ok {
				for _, v := range e.GetEnvVars() {
					known[v] = true
				}
			}
		}
	}
	var walk func(cmds []*cli.Command)
	walk = func(cmds []*cli.Command) {
		for _, c := range cmds {
			walkFlags(c.Flags)
			walk(c.Subcommands)
		}
	}
	walkFlags(app.Flags)
	walk(app.Commands)
	for _, keys := range [][]config.Key{config.AgentKeys(), config.NamingKeys()} {
		for _, k := range keys {
			known[k.Env] = true
		}
	}
	for _, v := range hook.EnvNames() {
		known[v] = true
	}
	return known
}

// warnUnknownEnv writes a warning for each MASTERSHIP_ variable of env
// that mastership does not know, naming the closest known one: a typo in
// the environment is otherwise silently ignored (one in a config file is
// an error).
func warnUnknownEnv(w io.Writer, env []string, known map[string]bool) {
	var names []string
	for _, e := range env {
		name, _, _ := strings.Cut(e, "=")
		if !strings.HasPrefix(name, config.EnvPrefix) || known[name] || slices.Contains(names, name) ||
			slices.ContainsFunc(testEnvPrefixes(), func(p string) bool { return strings.HasPrefix(name, p) }) {
			continue
		}
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		msg := fmt.Sprintf("mastership: warning: %s is not a setting of mastership and is ignored", name)
		if near := closestName(name, known); near != "" {
			msg += fmt.Sprintf("; did you mean %s?", near)
		}
		fmt.Fprintln(w, msg)
	}
}

// closestName is the known name at the smallest edit distance from name,
// if that distance is small enough to be a typo (at most a third of the
// name's length past the prefix, and 3); the first in order on a tie.
func closestName(name string, known map[string]bool) string {
	limit := min(3, max(1, (len(name)-len(config.EnvPrefix))/3))
	best, bestD := "", limit+1
	for _, k := range slices.Sorted(maps.Keys(known)) {
		if d := editDistance(name, k); d < bestD {
			best, bestD = k, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance between a and b, in bytes.
func editDistance(a, b string) int {
	prev, cur := make([]int, len(b)+1), make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
