package main

import (
	"encoding/json"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/mastership/mastership/agent/wire"
	"github.com/mastership/mastership/gossip/faulty"
	"github.com/urfave/cli/v2"
)

const faultActions = "partition, heal, drop or delay"

// maxFaultDelay is the agent's limit on an injected delay (agent/ops.go).
const maxFaultDelay = time.Minute

func faultCommand() *cli.Command {
	return &cli.Command{
		Name:  "fault",
		Usage: "inject faults into one agent's traffic (only an agent started with -fault-control)",
		UsageText: "mastership fault -agent ADDR partition -from HOST[:PORT][,HOST[:PORT]]\n" +
			"   mastership fault -agent ADDR heal\n" +
			"   mastership fault -agent ADDR drop -p P\n" +
			"   mastership fault -agent ADDR delay -d DURATION",
		Description: "Faults apply to the one agent asked: its gossip, agent RPC and naming traffic. A partition\n" +
			"is one-sided, so cut both sides (run partition on each agent). A bare HOST covers every port of\n" +
			"that host. heal removes every fault. Prints the agent's faults and counters (-json: as the agent\n" +
			"gives them).",
		Flags: agentFlags(),
		Action: func(c *cli.Context) error {
			if c.NArg() == 0 {
				return usageErr("fault: missing action: want %s", faultActions)
			}
			return usageErr("fault: unknown action %q: want %s", c.Args().First(), faultActions)
		},
		Subcommands: []*cli.Command{
			{
				Name:      "partition",
				Usage:     "cut the agent off from peers",
				UsageText: "mastership fault -agent ADDR partition -from HOST[:PORT][,HOST[:PORT]]",
				Flags: append(agentFlags(), &cli.StringSliceFlag{Name: "from",
					Usage: "peers to cut off: `HOST[:PORT]`, repeatable or comma-separated; a bare host covers all its ports"}),
				Action: func(c *cli.Context) error {
					if err := noArgs(c); err != nil {
						return err
					}
					peers := c.StringSlice("from")
					if len(peers) == 0 {
						return usageErr("fault partition: -from is required")
					}
					for _, p := range peers {
						if err := checkPeer(p); err != nil {
							return usageErr("fault partition: -from %q: %v", p, err)
						}
					}
					return sendFault(c, wire.FaultRequest{Action: "partition", Peers: peers})
				},
			},
			{
				Name:      "heal",
				Usage:     "remove every fault: partitions, drops and delay",
				UsageText: "mastership fault -agent ADDR heal",
				Flags:     agentFlags(),
				Action: func(c *cli.Context) error {
					if err := noArgs(c); err != nil {
						return err
					}
					return sendFault(c, wire.FaultRequest{Action: "heal"})
				},
			},
			{
				Name:      "drop",
				Usage:     "lose each outgoing packet and dial with probability P",
				UsageText: "mastership fault -agent ADDR drop -p P",
				Flags:     append(agentFlags(), &cli.Float64Flag{Name: "p", Usage: "drop probability `P`, 0 to 1; required"}),
				Action: func(c *cli.Context) error {
					if err := noArgs(c); err != nil {
						return err
					}
					p := c.Float64("p")
					if !c.IsSet("p") {
						return usageErr("fault drop: -p is required")
					}
					if p < 0 || p > 1 {
						return usageErr("fault drop: -p %v: want 0 to 1", p)
					}
					return sendFault(c, wire.FaultRequest{Action: "drop", P: p})
				},
			},
			{
				Name:      "delay",
				Usage:     "hold each outgoing packet, dial and stream write for a duration",
				UsageText: "mastership fault -agent ADDR delay -d DURATION",
				Flags:     append(agentFlags(), &cli.DurationFlag{Name: "d", Usage: "`DURATION` of the delay, 0 to 1m (0 removes it); required"}),
				Action: func(c *cli.Context) error {
					if err := noArgs(c); err != nil {
						return err
					}
					d := c.Duration("d")
					if !c.IsSet("d") {
						return usageErr("fault delay: -d is required")
					}
					if d < 0 || d > maxFaultDelay {
						return usageErr("fault delay: -d %s: want 0 to %s", d, maxFaultDelay)
					}
					return sendFault(c, wire.FaultRequest{Action: "delay", Delay: d})
				},
			},
		},
	}
}

// checkPeer accepts "host" or "host:port", as faulty.Faults.Partition does.
func checkPeer(p string) error {
	if p == "" {
		return fmt.Errorf("empty peer")
	}
	if !strings.Contains(p, ":") {
		return nil
	}
	host, _, err := net.SplitHostPort(p)
	if err != nil {
		return err
	}
	if host == "" {
		return fmt.Errorf("no host")
	}
	return nil
}

func sendFault(c *cli.Context, req wire.FaultRequest) error {
	ag, err := newAgentAPI(c)
	if err != nil {
		return err
	}
	b, err := ag.Fault(c.Context, req)
	if err != nil {
		return fmt.Errorf("fault %s: %w", req.Action, err)
	}
	var st faulty.Status
	if err := json.Unmarshal(b, &st); err != nil {
		return fmt.Errorf("agent %s: fault reply does not decode: %v", ag.Addr(), err)
	}
	if flagBool(c, "json") {
		return writeJSON(c.App.Writer, json.RawMessage(b))
	}
	parts := "none"
	if len(st.Partitioned) > 0 {
		parts = strings.Join(st.Partitioned, ",")
	}
	fmt.Fprintf(c.App.Writer, "%s at %s: partitioned from %s; drop %v; delay %s (sent %d, dropped %d, blocked %d)\n",
		req.Action, ag.Addr(), parts, st.Drop, st.Delay, st.Sent, st.Dropped, st.Blocked)
	return nil
}
