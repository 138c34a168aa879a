package main

import (
	"fmt"
	"io"
	"os"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/mastership/mastership/agent/client"
	"github.com/mastership/mastership/agent/wire"
	"github.com/mastership/mastership/naming/api"
	"github.com/urfave/cli/v2"
)

// defaultAgentAPI is the API address of an agent started with the default
// -bind, 127.0.0.1:7946 (config.APIPortOffset above it).
const defaultAgentAPI = "127.0.0.1:8946"

// agentFlags are the flags of every command that talks to one agent's API.
// They carry no environment variable, so that where a command accepts them
// both before and after its subcommand, the one the user typed wins (see
// flagContext).
func agentFlags() []cli.Flag {
	return append([]cli.Flag{
		&cli.StringFlag{Name: "agent", Usage: "the agent's API `ADDR` (host:port; default MASTERSHIP_AGENT if set)", Value: defaultAgentAPI},
		&cli.DurationFlag{Name: "timeout", Usage: "bound on the whole request", Value: 5 * time.Second},
		jsonFlag(),
	}, securityFlags()...)
}

// flagContext returns the innermost context of c's lineage on which the user
// set flag name, or c: commands that take a flag both before and after a
// subcommand (fault -agent A partition, fault partition -agent A) read it
// from where it was given.
func flagContext(c *cli.Context, name string) *cli.Context {
	for _, cc := range c.Lineage() {
		if cc.Command != nil && slices.Contains(cc.LocalFlagNames(), name) {
			return cc
		}
	}
	return c
}

// agentAddr is -agent where the user typed it, else MASTERSHIP_AGENT, else
// the default.
func agentAddr(c *cli.Context) string {
	cc := flagContext(c, "agent")
	if !slices.Contains(cc.LocalFlagNames(), "agent") {
		if v := os.Getenv(envAgent); v != "" {
			return v
		}
	}
	return cc.String("agent")
}

func flagString(c *cli.Context, name string) string {
	return flagContext(c, name).String(name)
}

func flagBool(c *cli.Context, name string) bool { return flagContext(c, name).Bool(name) }

func flagDuration(c *cli.Context, name string) time.Duration {
	return flagContext(c, name).Duration(name)
}

// newAgentAPI checks -agent and -timeout (bad values are usage errors) and
// returns the agent's API client.
func newAgentAPI(c *cli.Context) (*client.API, error) {
	addr := agentAddr(c)
	if err := api.ValidateAddr("agent", addr); err != nil {
		return nil, usageErr("-agent: %v", err)
	}
	timeout := flagDuration(c, "timeout")
	if timeout <= 0 {
		return nil, usageErr("-timeout %s: want a positive duration", timeout)
	}
	creds, err := credsFromCLI(c)
	if err != nil {
		return nil, err
	}
	return client.NewAPI(client.APIConfig{Addr: addr, Creds: creds, Timeout: timeout})
}

// agentAction is the action of a command that takes no argument and calls
// one agent's API: the arguments and -agent are checked first.
func agentAction(f func(c *cli.Context, ag *client.API) error) cli.ActionFunc {
	return func(c *cli.Context) error {
		if err := noArgs(c); err != nil {
			return err
		}
		ag, err := newAgentAPI(c)
		if err != nil {
			return err
		}
		return f(c, ag)
	}
}

// recordAction is the action of a command on one divergence record: the
// record ID argument and -agent are checked first.
func recordAction(f func(c *cli.Context, ag *client.API, id uint64) error) cli.ActionFunc {
	return func(c *cli.Context) error {
		id, err := recordID(c)
		if err != nil {
			return err
		}
		ag, err := newAgentAPI(c)
		if err != nil {
			return err
		}
		return f(c, ag, id)
	}
}

func membersCommand() *cli.Command {
	return &cli.Command{
		Name:      "members",
		Usage:     "show one agent's gossip view: ID, group, role, epoch, master followed, health",
		UsageText: "mastership members -agent ADDR [-json]",
		Flags:     agentFlags(),
		Action: agentAction(func(c *cli.Context, ag *client.API) error {
			members, raw, err := ag.Members(c.Context)
			if err != nil {
				return err
			}
			if c.Bool("json") {
				return writeJSON(c.App.Writer, raw)
			}
			return printMembers(c.App.Writer, members)
		}),
	}
}

func printMembers(w io.Writer, members []wire.Member) error {
	sort.Slice(members, func(i, j int) bool {
		if members[i].Group != members[j].Group {
			return members[i].Group < members[j].Group
		}
		return members[i].ID < members[j].ID
	})
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tGROUP\tROLE\tEPOCH\tMASTER\tHEALTH\tSERVICE\tGOSSIP\tAPI")
	for _, m := range members {
		master := "none"
		if m.Master != 0 {
			master = fmt.Sprint(m.Master)
		}
		role := m.Role
		if m.Role != m.LastRole && m.LastRole != "" {
			role = fmt.Sprintf("%s (last %s)", m.Role, m.LastRole)
		}
		if m.Followed {
			role += " *"
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", m.ID, m.Group, role, m.Epoch, master, m.Health,
			orDash(m.Service), m.Addr, orDash(m.API))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, m := range members {
		if m.Followed {
			_, err := fmt.Fprintln(w, "* the master this agent follows")
			return err
		}
	}
	return nil
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func infoCommand() *cli.Command {
	return &cli.Command{
		Name:      "info",
		Usage:     "show one agent: role, epoch, master, applied index, digest, the self-monitor's last check",
		UsageText: "mastership info -agent ADDR [-json]",
		Flags:     agentFlags(),
		Action: agentAction(func(c *cli.Context, ag *client.API) error {
			info, raw, err := ag.Info(c.Context)
			if err != nil {
				return err
			}
			if c.Bool("json") {
				return writeJSON(c.App.Writer, raw)
			}
			printInfo(c.App.Writer, info)
			return nil
		}),
	}
}

// printInfo writes `key: value` lines, keys as in the JSON.
func printInfo(w io.Writer, in wire.Info) {
	master := "none"
	if in.Master != 0 {
		master = fmt.Sprint(in.Master)
	}
	lines := [][2]string{
		{"id", fmt.Sprint(in.ID)},
		{"group", in.Group},
		{"role", in.Role},
		{"epoch", in.Epoch.String()},
		{"master", master},
		{"applied", fmt.Sprint(in.Applied)},
		{"commit", fmt.Sprint(in.Commit)},
		{"last", fmt.Sprint(in.Last)},
		{"digest", in.Digest},
		{"priority", fmt.Sprint(in.Priority)},
		{"mode", in.Mode},
		{"serving", fmt.Sprint(in.Serving)},
		{"paused", fmt.Sprint(in.Paused)},
		{"api", in.API},
		{"gossip", orDash(in.Gossip)},
	}
	if lc := in.LastCheck; lc != nil {
		lines = append(lines,
			[2]string{"last_check", lc.Time.UTC().Format(time.RFC3339Nano)},
			[2]string{"trigger", lc.Trigger},
			[2]string{"decision", lc.Decision},
			[2]string{"retained", fmt.Sprint(lc.Retained)},
			[2]string{"detect_ms", fmt.Sprint(lc.DetectMS)})
		if lc.Recovery != "" {
			lines = append(lines, [2]string{"recovery", lc.Recovery}, [2]string{"recovery_ms", fmt.Sprint(lc.RecoveryMS)})
		}
		if lc.Error != "" {
			lines = append(lines, [2]string{"error", lc.Error})
		}
	} else {
		lines = append(lines, [2]string{"last_check", "none yet"})
	}
	if m := in.Monitor; m != nil {
		lines = append(lines, [2]string{"checks", fmt.Sprint(m.Checks)}, [2]string{"recoveries", fmt.Sprint(m.Recoveries)})
	}
	if l := in.Log; l != nil {
		lines = append(lines, [2]string{"snapshot", fmt.Sprintf("at %d (%d taken since start)", l.SnapshotIndex, l.Snapshots)},
			[2]string{"log", fmt.Sprintf("%d entries from %d", l.Entries, l.First)})
		if l.DataBytes > 0 {
			lines = append(lines, [2]string{"data", fmt.Sprintf("%.1f MiB", float64(l.DataBytes)/(1<<20))})
		}
	}
	if sv := in.Service; sv != nil {
		health := "healthy"
		if !sv.Healthy {
			health = fmt.Sprintf("unhealthy (%d failed checks in a row)", sv.Failures)
		} else if sv.Checks == 0 {
			health = "not checked yet"
		}
		lines = append(lines, [2]string{"service", health}, [2]string{"check", sv.Check})
		if r := sv.Last; r != nil && !r.OK() {
			last := fmt.Sprintf("exit %d", r.ExitCode)
			if r.Error != "" {
				last = r.Error
			}
			lines = append(lines, [2]string{"last_check_error", last})
		}
	}
	if h := in.Hooks; h != nil {
		if h.OnRoleChange != "" {
			lines = append(lines, [2]string{"on_role_change", h.OnRoleChange})
		}
		if h.PrePromote != "" {
			lines = append(lines, [2]string{"pre_promote", h.PrePromote})
		}
		lines = append(lines, [2]string{"hook_runs", fmt.Sprintf("%d (%d failed)", h.Runs, h.Failed)})
		if n := len(h.Recent); n > 0 {
			r := h.Recent[n-1]
			last := fmt.Sprintf("%s %s epoch %s: exit %d in %gms", r.Hook, r.Role, r.Epoch, r.ExitCode, r.DurationMS)
			if r.Error != "" {
				last += ": " + r.Error
			}
			lines = append(lines, [2]string{"last_hook", last})
			if r.StderrTail != "" {
				lines = append(lines, [2]string{"last_hook_stderr", strings.TrimSpace(lastLine(r.StderrTail))})
			}
		}
	}
	for _, l := range lines {
		fmt.Fprintf(w, "%s: %s\n", l[0], l[1])
	}
}

// lastLine is the last non-empty line of s.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return lines[len(lines)-1]
}
