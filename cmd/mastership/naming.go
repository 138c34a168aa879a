package main

import (
	"fmt"
	"net"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"

	"github.com/mastership/mastership/naming"
	"github.com/mastership/mastership/naming/api"
	"github.com/mastership/mastership/naming/client"
	"github.com/urfave/cli/v2"
)

func namingCommand() *cli.Command {
	return &cli.Command{
		Name:      "naming",
		Usage:     "run a naming node: the authoritative registry of each group's master",
		UsageText: "mastership naming -bind ADDR -data-dir DIR [options]",
		Flags:     namingConfigFlags(),
		Action: func(c *cli.Context) error {
			if err := noArgs(c); err != nil {
				return err
			}
			cfg, err := namingFromCLI(c)
			if err != nil {
				return usageErr("%v", err)
			}
			logger := newLogger(c)
			cfg.Logger = logger
			if cfg.Metrics, err = processMetrics(); err != nil {
				return exitFor(err)
			}
			ln, err := net.Listen("tcp", cfg.Bind)
			if err != nil {
				return fmt.Errorf("listen on %s: %w", cfg.Bind, err)
			}
			n, err := naming.New(cfg)
			if err != nil {
				ln.Close()
				return exitFor(err)
			}
			ctx, stop := signal.NotifyContext(c.Context, syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			errc := make(chan error, 1)
			go func() { errc <- n.Serve(ln) }()
			select {
			case err = <-errc:
			case <-ctx.Done():
				logger.Info("shutting down")
			}
			if cerr := n.Close(); err == nil {
				err = cerr
			}
			return err
		},
	}
}

// namingFlag and jsonFlag build a fresh flag per command: urfave/cli keeps
// state in a flag, so commands must not share one.
func namingFlag() cli.Flag {
	return &cli.StringFlag{Name: "naming", Usage: "naming node `ADDR` (host:port; several, comma-separated, for a naming cluster)", Value: "127.0.0.1:7400", EnvVars: []string{"MASTERSHIP_NAMING"}}
}

func jsonFlag() cli.Flag { return &cli.BoolFlag{Name: "json", Usage: "print JSON"} }

func namingClient(c *cli.Context) (*client.Client, error) {
	creds, err := credsFromCLI(c)
	if err != nil {
		return nil, err
	}
	cl, err := client.New(c.String("naming"), client.WithCreds(creds))
	if err != nil {
		return nil, usageErr("-naming: %v", err)
	}
	return cl, nil
}

func registerCommand() *cli.Command {
	return &cli.Command{
		Name:      "register",
		Usage:     "register a master by hand, for drills and repairs",
		UsageText: "mastership register -naming ADDR -group G -id N -addr ADDR [-epoch E] [-ttl D] [-priority P]",
		Flags: append([]cli.Flag{
			namingFlag(),
			&cli.StringFlag{Name: "group", Usage: "group `NAME`", Required: true},
			&cli.Uint64Flag{Name: "id", Usage: "agent `ID` (not 0)", Required: true},
			&cli.StringFlag{Name: "addr", Usage: "the master's API `ADDR` (host:port)", Required: true},
			&cli.Uint64Flag{Name: "epoch", Usage: "epoch `TERM`; 0 keeps the holder's or takes the group's next"},
			&cli.DurationFlag{Name: "ttl", Usage: "registration lifetime; 0 takes the node's default"},
			&cli.IntFlag{Name: "priority", Usage: "priority, for the priority retention policy"},
			jsonFlag(),
		}, securityFlags()...),
		Action: func(c *cli.Context) error {
			if err := noArgs(c); err != nil {
				return err
			}
			cl, err := namingClient(c)
			if err != nil {
				return err
			}
			defer cl.Close()
			req := api.RegisterRequest{Group: c.String("group"), ID: c.Uint64("id"), Addr: c.String("addr"),
				Epoch: api.Epoch{Term: c.Uint64("epoch")}, TTL: c.Duration("ttl"), Priority: c.Int("priority"), Manual: true}
			resp, err := cl.Register(c.Context, req)
			if err != nil {
				return err
			}
			if c.Bool("json") {
				if err := writeJSON(c.App.Writer, map[string]any{
					"accepted": resp.Accepted, "conflict": resp.Conflict, "removed": nonNil(resp.Removed),
					"master": masterJSON(&resp.Master),
				}); err != nil || resp.Accepted {
					return err
				}
				return cli.Exit("", exitError)
			}
			m := resp.Master
			if resp.Accepted {
				fmt.Fprintf(c.App.Writer, "registered %d as master of %s at epoch %s (ttl %s)\n", m.ID, m.Group, m.Epoch, m.TTL)
			} else {
				fmt.Fprintf(c.App.Writer, "not retained: %s keeps master %d at epoch %s\n", m.Group, m.ID, m.Epoch)
			}
			if resp.Conflict {
				fmt.Fprintf(c.App.Writer, "several registrations: retained %d, removed %v\n", m.ID, resp.Removed)
			}
			if !resp.Accepted {
				return cli.Exit("", exitError) // the registration did not take: not a success
			}
			return nil
		},
	}
}

func nonNil(ids []uint64) []uint64 {
	if ids == nil {
		return []uint64{}
	}
	return ids
}

func masterJSON(r *api.Registration) *api.MasterStatus {
	if r == nil {
		return nil
	}
	return &api.MasterStatus{ID: r.ID, Addr: r.Addr, Epoch: r.Epoch.Term, EpochID: r.Epoch.ID}
}

func statusCommand() *cli.Command {
	return &cli.Command{
		Name:      "status",
		Usage:     "show each group's registered master and members",
		UsageText: "mastership status -naming ADDR[,ADDR] [-group G] [-consistent|-stale] [-json]",
		Flags: append(append([]cli.Flag{
			namingFlag(),
			&cli.StringFlag{Name: "group", Usage: "only this group `NAME`"},
			jsonFlag(),
		}, readModeFlags()...), securityFlags()...),
		Action: func(c *cli.Context) error {
			if err := noArgs(c); err != nil {
				return err
			}
			cl, err := namingClient(c)
			if err != nil {
				return err
			}
			defer cl.Close()
			group := c.String("group")
			if c.IsSet("group") {
				if err := api.ValidateGroup(group); err != nil {
					return usageErr("-group: %v", err)
				}
			}
			mode, err := readModeFromCLI(c)
			if err != nil {
				return err
			}
			var groups []api.GroupStatus
			if group != "" {
				st, err := cl.Status(c.Context, api.StatusRequest{Group: group, Read: mode})
				if err != nil {
					return err
				}
				groups = st.Groups
			} else if groups, err = cl.AllStatus(c.Context, mode); err != nil {
				return err
			}
			if c.Bool("json") {
				if group != "" {
					return writeJSON(c.App.Writer, groups[0])
				}
				if groups == nil {
					groups = []api.GroupStatus{}
				}
				return writeJSON(c.App.Writer, groups)
			}
			return printStatus(c, groups)
		},
	}
}

func printStatus(c *cli.Context, groups []api.GroupStatus) error {
	if len(groups) == 0 {
		fmt.Fprintln(c.App.Writer, "no groups")
		return nil
	}
	tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "GROUP\tMODE\tPOLICY\tMASTER\tEPOCH\tMASTER ADDR\tMEMBERS")
	for _, g := range groups {
		ids := make([]string, len(g.Members))
		for i, m := range g.Members {
			ids[i] = fmt.Sprint(m.ID)
		}
		master, epoch, maddr := "none", "-", "-"
		if g.Master != nil {
			master, epoch, maddr = fmt.Sprint(g.Master.ID), api.Epoch{Term: g.Master.Epoch, ID: g.Master.EpochID}.String(), g.Master.Addr
		}
		mode := string(g.Mode)
		if g.Paused {
			mode += " (paused)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", g.Group, mode, g.Policy, master, epoch, maddr, strings.Join(ids, ","))
	}
	return tw.Flush()
}

func eventsCommand() *cli.Command {
	return &cli.Command{
		Name:      "events",
		Usage:     "show the naming node's decisions and triggers for a group",
		UsageText: "mastership events -naming ADDR[,ADDR] -group G [-after SEQ] [-consistent|-stale] [-json]",
		Flags: append(append([]cli.Flag{
			namingFlag(),
			&cli.StringFlag{Name: "group", Usage: "group `NAME`", Required: true},
			&cli.Uint64Flag{Name: "after", Usage: "only events after sequence `SEQ`"},
			jsonFlag(),
		}, readModeFlags()...), securityFlags()...),
		Action: func(c *cli.Context) error {
			if err := noArgs(c); err != nil {
				return err
			}
			if err := api.ValidateGroup(c.String("group")); err != nil {
				return usageErr("-group: %v", err)
			}
			cl, err := namingClient(c)
			if err != nil {
				return err
			}
			defer cl.Close()
			mode, err := readModeFromCLI(c)
			if err != nil {
				return err
			}
			evs, err := cl.AllEvents(c.Context, c.String("group"), c.Uint64("after"), mode)
			if err != nil {
				return err
			}
			if c.Bool("json") {
				if evs == nil {
					evs = []api.Event{}
				}
				return writeJSON(c.App.Writer, evs)
			}
			for _, e := range evs {
				fmt.Fprintf(c.App.Writer, "%6d  %s  %-20s %s\n", e.Seq, e.Time.Local().Format("2006-01-02 15:04:05.000 MST"), e.Kind, describeEvent(e))
			}
			return nil
		},
	}
}

// describeEvent renders the fields of an event that apply to its kind.
func describeEvent(e api.Event) string {
	var parts []string
	add := func(k string, v any) { parts = append(parts, fmt.Sprintf("%s=%v", k, v)) }
	if e.ID != 0 {
		add("id", e.ID)
	}
	if e.Target != 0 {
		add("target", e.Target)
	}
	if e.Addr != "" {
		add("addr", e.Addr)
	}
	if e.Epoch != nil {
		add("epoch", e.Epoch.Term)
	}
	if len(e.Candidates) > 0 {
		add("candidates", e.Candidates)
	}
	if e.Policy != "" {
		add("policy", e.Policy)
	}
	if e.Retained != 0 {
		add("retained", e.Retained)
	}
	if len(e.Removed) > 0 {
		add("removed", e.Removed)
	}
	if e.Attempt != 0 {
		add("attempt", e.Attempt)
	}
	if e.Reason != "" {
		add("reason", fmt.Sprintf("%q", e.Reason))
	}
	if e.Error != "" {
		add("error", fmt.Sprintf("%q", e.Error))
	}
	return strings.Join(parts, " ")
}

// readModeFlags choose who answers a read of the naming cluster.
func readModeFlags() []cli.Flag {
	return []cli.Flag{
		&cli.BoolFlag{Name: "consistent", Usage: "linearizable: the leader confirms with a quorum first"},
		&cli.BoolFlag{Name: "stale", Usage: "any node answers from what it applied, perhaps behind"},
	}
}

func readModeFromCLI(c *cli.Context) (api.ReadMode, error) {
	switch {
	case c.Bool("consistent") && c.Bool("stale"):
		return "", usageErr("-consistent and -stale: give one")
	case c.Bool("consistent"):
		return api.ReadConsistent, nil
	case c.Bool("stale"):
		return api.ReadStale, nil
	}
	return api.ReadDefault, nil
}

// pauseCommand is `mastership pause` (paused) or `mastership resume`.
func pauseCommand(paused bool) *cli.Command {
	name, usage := "resume", "take a group out of maintenance: elections, handovers and recoveries run again"
	if paused {
		name, usage = "pause", "put a group in maintenance: no automatic election, handover or recovery changes a role (the self-monitors still detect and report)"
	}
	flags := []cli.Flag{namingFlag(), &cli.StringFlag{Name: "group", Usage: "group `NAME`", Required: true}, jsonFlag()}
	if paused {
		flags = append(flags, &cli.StringFlag{Name: "reason", Usage: "why, recorded in the group's events (at most 1024 bytes)"})
	}
	return &cli.Command{
		Name:      name,
		Usage:     usage,
		UsageText: "mastership " + name + " -naming ADDR -group G" + map[bool]string{true: " [-reason TEXT]", false: ""}[paused] + " [-json]",
		Flags:     append(flags, securityFlags()...),
		Action: func(c *cli.Context) error {
			if err := noArgs(c); err != nil {
				return err
			}
			group := c.String("group")
			if err := api.ValidateGroup(group); err != nil {
				return usageErr("-group: %v", err)
			}
			cl, err := namingClient(c)
			if err != nil {
				return err
			}
			defer cl.Close()
			resp, err := cl.Pause(c.Context, api.PauseRequest{Group: group, Paused: paused, Reason: c.String("reason")})
			if err != nil {
				return fmt.Errorf("%s %s: %w", name, group, err)
			}
			if c.Bool("json") {
				return writeJSON(c.App.Writer, map[string]any{"group": group, "paused": resp.Paused, "changed": resp.Changed})
			}
			switch {
			case !resp.Changed && paused:
				fmt.Fprintf(c.App.Writer, "%s was paused already\n", group)
			case !resp.Changed:
				fmt.Fprintf(c.App.Writer, "%s was not paused\n", group)
			case paused:
				fmt.Fprintf(c.App.Writer, "%s paused: no automatic election, handover or recovery until `mastership resume -group %s`\n", group, group)
			default:
				fmt.Fprintf(c.App.Writer, "%s resumed\n", group)
			}
			return nil
		},
	}
}
