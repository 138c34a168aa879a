package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/mastership/mastership/agent/client"
	"github.com/mastership/mastership/agent/wire"
	"github.com/mastership/mastership/naming/api"
)

func switchoverCommand() *cli.Command {
	return &cli.Command{
		Name:  "switchover",
		Usage: "move mastership of a group to another member, planned: it catches up, the master pauses writes, it takes over at a new epoch",
		Description: "The target must be a live member in sync with the master; priorities do not move mastership away\n" +
			"from it until the next election. Exit 1 whenever mastership did not move.",
		UsageText: "mastership switchover -group G -to ID (-naming ADDR | -agent ADDR) [-json]",
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "group", Usage: "group `NAME`", Required: true},
			&cli.Uint64Flag{Name: "to", Usage: "the member `ID` to take mastership over", Required: true},
			&cli.StringFlag{Name: "naming", Usage: "find the master through the naming node(s) at `ADDR`", EnvVars: []string{"MASTERSHIP_NAMING"}},
			&cli.StringFlag{Name: "agent", Usage: "ask the agent at `ADDR` (its master, if it is a back-up)"},
			&cli.DurationFlag{Name: "timeout", Usage: "bound on the whole move", Value: 15 * time.Second},
			jsonFlag(),
		}, securityFlags()...),
		Action: func(c *cli.Context) error {
			if err := noArgs(c); err != nil {
				return err
			}
			group, to := c.String("group"), c.Uint64("to")
			if err := api.ValidateGroup(group); err != nil {
				return usageErr("-group: %v", err)
			}
			if to == 0 {
				return usageErr("-to 0: want the ID of a member")
			}
			naming, agentAddr := c.String("naming"), c.String("agent")
			if (naming == "") == (agentAddr == "") {
				return usageErr("give -naming or -agent, one of them")
			}
			if c.Duration("timeout") <= 0 {
				return usageErr("-timeout %s: want a positive duration", c.Duration("timeout"))
			}
			creds, err := credsFromCLI(c)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(c.Context, c.Duration("timeout"))
			defer cancel()
			if naming != "" {
				cl, err := namingClient(c)
				if err != nil {
					return err
				}
				defer cl.Close()
				r, err := cl.Lookup(ctx, api.LookupRequest{Group: group})
				if err != nil {
					return fmt.Errorf("switchover: find the master of %s: %w", group, err)
				}
				if r.Master == nil {
					return fmt.Errorf("switchover: %s has no registered master", group)
				}
				agentAddr = r.Master.Addr
			} else if err := api.ValidateAddr("agent", agentAddr); err != nil {
				return usageErr("-agent: %v", err)
			}
			req := wire.SwitchoverRequest{Group: group, To: to}
			var sw wire.Switchover
			var raw []byte
			for hop := 0; ; hop++ {
				ag, err := client.NewAPI(client.APIConfig{Addr: agentAddr, Creds: creds, Timeout: c.Duration("timeout")})
				if err != nil {
					return err
				}
				sw, raw, err = ag.Switchover(ctx, req)
				var se *client.StatusError
				if errors.As(err, &se) && se.Status == http.StatusMisdirectedRequest && se.MasterAddr != "" && hop == 0 {
					agentAddr = se.MasterAddr // a back-up names its master
					continue
				}
				if err != nil {
					return fmt.Errorf("switchover of %s to %d: %w", group, to, err)
				}
				break
			}
			if c.Bool("json") {
				return writeJSON(c.App.Writer, raw)
			}
			fmt.Fprintf(c.App.Writer, "switched over: %s's master is %d at epoch %s, was %d (writes paused %.0fms)\n",
				sw.Group, sw.To, sw.Epoch, sw.From, sw.GapMS)
			return nil
		},
	}
}
