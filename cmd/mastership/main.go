// Command mastership runs Mastership's naming node and peer agents, and
// queries and operates a cluster. `mastership help` lists the subcommands.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/hashicorp/go-hclog"
	"github.com/mastership/mastership/agent"
	"github.com/mastership/mastership/naming/boltfile"
	"github.com/urfave/cli/v2"
)

// Exit codes shared by every subcommand (README.md lists them). 3 is
// recover.ExitRecoveryFailed, a recovery that failed with
// -on-failure terminate.
const (
	exitOK    = 0
	exitError = 1
	exitUsage = 2
	// exitIDTaken: another live agent holds the group and ID.
	exitIDTaken = 4
	// exitDamaged: a data file is truncated or corrupt.
	exitDamaged = 5
)

// exitFor gives the errors that have their own exit code that code.
func exitFor(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, agent.ErrIDTaken):
		return cli.Exit(err.Error(), exitIDTaken)
	case errors.Is(err, boltfile.ErrDamaged):
		return cli.Exit(err.Error(), exitDamaged)
	}
	return err
}

func main() {
	os.Exit(run(context.Background(), os.Args, os.Stdout, os.Stderr))
}

// run is main without the process: tests call it with their own writers.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	app := newApp(stdout, stderr)
	if err := app.RunContext(ctx, args); err != nil {
		var ec cli.ExitCoder
		if errors.As(err, &ec) {
			if msg := err.Error(); msg != "" {
				fmt.Fprintln(stderr, "mastership:", msg)
			}
			return ec.ExitCode()
		}
		fmt.Fprintln(stderr, "mastership:", err)
		if isUsage(err) {
			return exitUsage
		}
		return exitError
	}
	return exitOK
}

func newApp(stdout, stderr io.Writer) *cli.App {
	return &cli.App{
		Name:      "mastership",
		Usage:     "find and repair split brain in replicated server groups",
		Version:   buildVersion(),
		Writer:    stdout,
		ErrWriter: stderr,
		// --generate-bash-completion, which the completion scripts ask.
		EnableBashCompletion: true,
		Flags:                globalFlags(true),
		Before: func(c *cli.Context) error {
			warnUnknownEnv(c.App.ErrWriter, os.Environ(), knownEnv(c.App))
			if c.Args().Present() {
				return nil // the command checks the level, wherever it was given
			}
			_, err := logLevel(c.String("log-level"))
			return err
		},
		OnUsageError: func(c *cli.Context, err error, _ bool) error {
			return cli.Exit(err.Error(), exitUsage)
		},
		ExitErrHandler: func(*cli.Context, error) {}, // run reports errors
		// The root's action only runs for a name that is no command.
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return usageErr("unknown command %q; `mastership help` lists the commands", c.Args().First())
			}
			return cli.ShowAppHelp(c)
		},
		Commands: withGlobalFlags(withUsageExit([]*cli.Command{
			demoCommand(),
			namingCommand(),
			agentCommand(),
			registerCommand(),
			statusCommand(),
			eventsCommand(),
			membersCommand(),
			infoCommand(),
			kvCommand(),
			divergenceCommand(),
			faultCommand(),
			tlsCommand(),
			keygenCommand(),
			keyringCommand(),
			peersCommand(),
			snapshotCommand(),
			switchoverCommand(),
			benchCommand(),
			watchCommand(),
			pauseCommand(true),
			pauseCommand(false),
			versionCommand(),
			completionCommand(),
		})),
	}
}

// globalFlags are the flags every command takes, before or after its
// name: the app's (root) carry the defaults and the environment; each
// command's copy has neither, so that where the user typed the flag wins
// (globalContext).
func globalFlags(root bool) []cli.Flag {
	level := &cli.StringFlag{Name: "log-level", Usage: "`LEVEL` of logs on stderr: trace, debug, info, warn, error, off"}
	jsonLogs := &cli.BoolFlag{Name: "log-json", Usage: "write logs as JSON lines"}
	if root {
		level.Value, level.EnvVars = "info", []string{"MASTERSHIP_LOG_LEVEL"}
		jsonLogs.EnvVars = []string{"MASTERSHIP_LOG_JSON"}
	}
	return []cli.Flag{level, jsonLogs}
}

// withGlobalFlags gives every command and subcommand a copy of the global
// flags, checked before its action runs.
func withGlobalFlags(cmds []*cli.Command) []*cli.Command {
	for _, cmd := range cmds {
		if !slices.ContainsFunc(cmd.Flags, func(f cli.Flag) bool { return slices.Contains(f.Names(), "log-level") }) {
			cmd.Flags = append(cmd.Flags, globalFlags(false)...)
		}
		before := cmd.Before
		cmd.Before = func(c *cli.Context) error {
			if _, err := logLevel(globalContext(c, "log-level").String("log-level")); err != nil {
				return err
			}
			if before != nil {
				return before(c)
			}
			return nil
		}
		withGlobalFlags(cmd.Subcommands)
	}
	return cmds
}

// globalContext is the innermost context of c's lineage on which the user
// typed global flag name, else the app's (its default or environment).
func globalContext(c *cli.Context, name string) *cli.Context {
	root := c
	for _, cc := range c.Lineage() {
		if cc.Command == nil {
			continue // urfave/cli's outermost context, around the app's
		}
		if slices.Contains(cc.LocalFlagNames(), name) {
			return cc
		}
		root = cc
	}
	return root
}

// withUsageExit gives every command and subcommand the usage exit code for
// flags that do not parse; urfave/cli only gives the app's handler to the
// root.
func withUsageExit(cmds []*cli.Command) []*cli.Command {
	for _, cmd := range cmds {
		if cmd.OnUsageError == nil {
			cmd.OnUsageError = func(c *cli.Context, err error, _ bool) error {
				return cli.Exit(fmt.Sprintf("%s: %v", c.Command.FullName(), err), exitUsage)
			}
		}
		withUsageExit(cmd.Subcommands)
	}
	return cmds
}

// isUsage recognizes urfave/cli's own usage errors that carry no exit code:
// required flags not set.
func isUsage(err error) bool {
	return strings.HasPrefix(err.Error(), "Required flag")
}

func logLevel(s string) (hclog.Level, error) {
	if s == "" {
		s = "info" // MASTERSHIP_LOG_LEVEL set empty
	}
	l := hclog.LevelFromString(s)
	if l == hclog.NoLevel {
		return l, cli.Exit(fmt.Sprintf("-log-level %q: want trace, debug, info, warn, error or off", s), exitUsage)
	}
	return l, nil
}

// newLogger builds the process logger from the global flags.
func newLogger(c *cli.Context) hclog.Logger {
	level, _ := logLevel(globalContext(c, "log-level").String("log-level"))
	return hclog.New(&hclog.LoggerOptions{
		Name:       "mastership",
		Level:      level,
		JSONFormat: globalContext(c, "log-json").Bool("log-json"),
		Output:     c.App.ErrWriter,
	})
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false) // "a>b" stays as written; the type is JSON, never HTML
	return enc.Encode(v)
}

// usageErr reports bad flags with the usage exit code.
func usageErr(format string, args ...any) error {
	return cli.Exit(fmt.Sprintf(format, args...), exitUsage)
}

func noArgs(c *cli.Context) error {
	if c.NArg() > 0 {
		return usageErr("%s: unexpected argument %q", c.Command.Name, strings.Join(c.Args().Slice(), " "))
	}
	return nil
}
