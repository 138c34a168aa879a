package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os/signal"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	aclient "github.com/mastership/mastership/agent/client"
	"github.com/mastership/mastership/agent/wire"
	"github.com/mastership/mastership/naming/api"
	"github.com/mastership/mastership/naming/client"
)

func watchCommand() *cli.Command {
	return &cli.Command{
		Name:  "watch",
		Usage: "print one line per change of an agent's role, epoch or master, or of a group's registration and members, until interrupted",
		Description: "Blocking reads (?index=N&wait=D): a line at start, then one per change. A source that cannot be\n" +
			"reached is retried every second; SIGINT or SIGTERM ends the watch with exit 0.",
		UsageText: "mastership watch -agent ADDR [-json]\n   mastership watch -naming ADDR -group G [-json]",
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "agent", Usage: "watch the agent at API `ADDR`"},
			&cli.StringFlag{Name: "naming", Usage: "watch a group at the naming node(s) `ADDR`", EnvVars: []string{"MASTERSHIP_NAMING"}},
			&cli.StringFlag{Name: "group", Usage: "the group `NAME` to watch at the naming node"},
			&cli.DurationFlag{Name: "wait", Usage: "longest wait of one blocking read", Value: api.DefaultWait},
			jsonFlag(),
		}, securityFlags()...),
		Action: func(c *cli.Context) error {
			if err := noArgs(c); err != nil {
				return err
			}
			agentAddr, naming, group := c.String("agent"), c.String("naming"), c.String("group")
			wait := c.Duration("wait")
			switch {
			case (agentAddr == "") == (naming == ""):
				return usageErr("give -agent or -naming, one of them")
			case naming != "" && group == "":
				return usageErr("-naming needs -group")
			case agentAddr != "" && group != "":
				return usageErr("-group goes with -naming")
			case wait <= 0 || wait > api.MaxWait:
				return usageErr("-wait %s: want more than 0 and at most %s", wait, api.MaxWait)
			}
			if group != "" {
				if err := api.ValidateGroup(group); err != nil {
					return usageErr("-group: %v", err)
				}
			}
			creds, err := credsFromCLI(c)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(c.Context, syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			w := &watcher{out: c.App.Writer, errOut: c.App.ErrWriter, json: c.Bool("json")}
			if agentAddr != "" {
				if err := api.ValidateAddr("agent", agentAddr); err != nil {
					return usageErr("-agent: %v", err)
				}
				ag, err := aclient.NewAPI(aclient.APIConfig{Addr: agentAddr, Creds: creds, Timeout: wait + 10*time.Second})
				if err != nil {
					return err
				}
				return w.loop(ctx, func(ctx context.Context, index uint64) (uint64, string, []byte, error) {
					in, raw, err := ag.WatchInfo(ctx, index, wait)
					return in.Index, agentLine(in), raw, err
				})
			}
			cl, err := client.New(naming, client.WithCreds(creds), client.WithTimeout(wait+10*time.Second))
			if err != nil {
				return usageErr("-naming: %v", err)
			}
			defer cl.Close()
			return w.loop(ctx, func(ctx context.Context, index uint64) (uint64, string, []byte, error) {
				st, err := cl.Status(ctx, api.StatusRequest{Group: group, Index: index, Wait: wait})
				if err != nil || len(st.Groups) != 1 {
					return 0, "", nil, err
				}
				raw, err := json.Marshal(struct {
					api.GroupStatus
					Index uint64 `json:"index"`
				}{st.Groups[0], st.Index})
				return st.Index, groupLine(st.Groups[0]), raw, err
			})
		},
	}
}

// watcher prints a line per change of what read returns.
type watcher struct {
	out, errOut io.Writer
	json        bool
}

// loop reads until ctx ends, printing each new state once; a failed read
// is reported once per outage and retried every second.
func (w *watcher) loop(ctx context.Context, read func(ctx context.Context, index uint64) (uint64, string, []byte, error)) error {
	var index uint64
	first, failing := true, false
	for ctx.Err() == nil {
		next, line, raw, err := read(ctx, index)
		if ctx.Err() != nil {
			break
		}
		if err != nil {
			if !failing {
				fmt.Fprintf(w.errOut, "%s unreachable: %v (retrying)\n", stamp(), err)
				failing = true
			}
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
			continue
		}
		failing = false
		if first || next != index {
			if w.json {
				var b bytes.Buffer
				if json.Compact(&b, raw) == nil {
					fmt.Fprintln(w.out, b.String())
				}
			} else {
				fmt.Fprintf(w.out, "%s %s (index %d)\n", stamp(), line, next)
			}
			first = false
		}
		index = next
	}
	return nil
}

func stamp() string { return time.Now().UTC().Format("2006-01-02T15:04:05.000Z") }

func agentLine(in wire.Info) string {
	master := "no master"
	if in.Master != 0 {
		master = fmt.Sprintf("master %d", in.Master)
	}
	serving := ""
	if in.Serving {
		serving = ", serving"
	}
	return fmt.Sprintf("agent %d of %s: %s at epoch %s, %s%s", in.ID, in.Group, in.Role, in.Epoch, master, serving)
}

func groupLine(g api.GroupStatus) string {
	master := "no master registered"
	if m := g.Master; m != nil {
		master = fmt.Sprintf("master %d at %s, epoch %s", m.ID, m.Addr, api.Epoch{Term: m.Epoch, ID: m.EpochID})
	}
	return fmt.Sprintf("group %s: %s, %d members", g.Group, master, len(g.Members))
}
