package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	agentclient "github.com/mastership/mastership/agent/client"
	"github.com/mastership/mastership/naming/api"
	"github.com/urfave/cli/v2"
)

// kvOps are the operations of `mastership kv`, in help order.
const kvOps = "put, get, cas or del"

func kvCommand() *cli.Command {
	return &cli.Command{
		Name:  "kv",
		Usage: "read and write a group's key-value store through its master",
		UsageText: "mastership kv put -group G (-naming ADDR | -agent ADDR ...) KEY VALUE\n" +
			"   mastership kv get -group G (-naming ADDR | -agent ADDR ...) KEY\n" +
			"   mastership kv cas -group G (-naming ADDR | -agent ADDR ...) KEY EXPECT NEW\n" +
			"   mastership kv cas -group G (-naming ADDR | -agent ADDR ...) -absent KEY NEW\n" +
			"   mastership kv del -group G (-naming ADDR | -agent ADDR ...) KEY",
		Description: "Requests go to the group's master: found through the naming node (-naming) or any agent of the\n" +
			"group (-agent, repeatable), which redirects. Flags go before KEY. Query results print with -json as\n" +
			`{"ok":bool,"found":bool,"value":string|null,"epoch":N,"index":N,"master":N}.` + "\n" +
			"Exit 1 when get finds no key or cas is not applied, as on any other failure.",
		// Runs only when the first argument is no operation.
		Action: func(c *cli.Context) error {
			if c.NArg() == 0 {
				return usageErr("kv: missing operation: want %s", kvOps)
			}
			return usageErr("kv: unknown operation %q: want %s", c.Args().First(), kvOps)
		},
		Subcommands: []*cli.Command{
			kvSubcommand("put", "KEY VALUE", "store VALUE under KEY", nil, func(ctx context.Context, cl *agentclient.Client, c *cli.Context) (agentclient.Reply, error) {
				if err := kvArgs(c, 2); err != nil {
					return agentclient.Reply{}, err
				}
				return cl.Put(ctx, c.Args().Get(0), []byte(c.Args().Get(1)))
			}),
			kvSubcommand("get", "KEY", "print the value of KEY", nil, func(ctx context.Context, cl *agentclient.Client, c *cli.Context) (agentclient.Reply, error) {
				if err := kvArgs(c, 1); err != nil {
					return agentclient.Reply{}, err
				}
				return cl.Get(ctx, c.Args().Get(0))
			}),
			kvSubcommand("cas", "KEY EXPECT NEW | -absent KEY NEW", "store NEW under KEY if KEY holds EXPECT (or, with -absent, is absent)",
				[]cli.Flag{&cli.BoolFlag{Name: "absent", Usage: "expect KEY to be absent; the arguments are then KEY NEW"}},
				func(ctx context.Context, cl *agentclient.Client, c *cli.Context) (agentclient.Reply, error) {
					args := c.Args().Slice()
					if c.Bool("absent") {
						if err := kvArgs(c, 2); err != nil {
							return agentclient.Reply{}, err
						}
						return cl.CAS(ctx, args[0], nil, true, []byte(args[1]))
					}
					if err := kvArgs(c, 3); err != nil {
						return agentclient.Reply{}, err
					}
					return cl.CAS(ctx, args[0], []byte(args[1]), false, []byte(args[2]))
				}),
			kvSubcommand("del", "KEY", "delete KEY", nil, func(ctx context.Context, cl *agentclient.Client, c *cli.Context) (agentclient.Reply, error) {
				if err := kvArgs(c, 1); err != nil {
					return agentclient.Reply{}, err
				}
				return cl.Delete(ctx, c.Args().Get(0))
			}),
		},
	}
}

// kvArgs checks the number of arguments and that KEY is not empty.
func kvArgs(c *cli.Context, want int) error {
	args := c.Args().Slice()
	op := c.Command.Name
	if len(args) != want {
		names := map[string]string{"put": "KEY VALUE", "get": "KEY", "del": "KEY", "cas": "KEY EXPECT NEW"}[op]
		if op == "cas" && c.Bool("absent") {
			names = "KEY NEW (with -absent)"
		}
		hint := ""
		for _, a := range args[min(want, len(args)):] {
			if strings.HasPrefix(a, "-") && len(a) > 1 {
				hint = fmt.Sprintf("; flags such as %s go before KEY", a)
				break
			}
		}
		return usageErr("kv %s: want %s, got %d argument(s)%s", op, names, len(args), hint)
	}
	if args[0] == "" {
		return usageErr("kv %s: empty KEY", op)
	}
	return nil
}

// kvFlags are the flags of every kv operation.
func kvFlags() []cli.Flag {
	return append([]cli.Flag{
		&cli.StringFlag{Name: "group", Usage: "group `NAME`; required"},
		namingFlag(),
		&cli.StringSliceFlag{Name: "agent", Usage: "API `ADDR` of an agent of the group, instead of or besides -naming; repeatable or comma-separated (default MASTERSHIP_AGENT if set)"},
		&cli.DurationFlag{Name: "timeout", Usage: "bound on the whole request, retries included", Value: 5 * time.Second},
		jsonFlag(),
	}, securityFlags()...)
}

func kvSubcommand(name, args, usage string, extra []cli.Flag,
	do func(ctx context.Context, cl *agentclient.Client, c *cli.Context) (agentclient.Reply, error)) *cli.Command {
	return &cli.Command{
		Name:      name,
		Usage:     usage,
		UsageText: fmt.Sprintf("mastership kv %s -group G (-naming ADDR | -agent ADDR ...) [-timeout D] [-json] %s", name, args),
		Flags:     append(kvFlags(), extra...),
		Action: func(c *cli.Context) error {
			cl, err := kvClient(c)
			if err != nil {
				return err
			}
			defer cl.Close()
			ctx, cancel := context.WithTimeout(c.Context, c.Duration("timeout"))
			defer cancel()
			r, err := do(ctx, cl, c)
			if err != nil {
				if _, usage := err.(cli.ExitCoder); usage {
					return err
				}
				if hint := namingUnreachable(err, c); hint != "" {
					return fmt.Errorf("kv %s: %s", name, hint)
				}
				return fmt.Errorf("kv %s: %w", name, err)
			}
			return printKV(c, name, r)
		},
	}
}

// namingUnreachable explains, in one line with what to check, an operation
// that found no master because the naming node did not answer and no
// agent was given; "" for any other error.
func namingUnreachable(err error, c *cli.Context) string {
	if !errors.Is(err, agentclient.ErrNoMaster) || !errors.Is(err, api.ErrUnavailable) || len(kvAgents(c)) > 0 {
		return ""
	}
	cause := "no answer"
	var op *net.OpError
	if errors.As(err, &op) {
		cause = op.Err.Error()
	} else if errors.Is(err, context.DeadlineExceeded) {
		cause = "timed out"
	}
	return fmt.Sprintf("naming node %s unreachable (%s): check that it runs and that -naming (or MASTERSHIP_NAMING) names it, or give -agent with an agent of the group",
		c.String("naming"), cause)
}

// kvAgents are the agent API addresses given: -agent, else
// MASTERSHIP_AGENT (comma-separated).
func kvAgents(c *cli.Context) []string {
	if given := c.StringSlice("agent"); len(given) > 0 {
		return given
	}
	if v := os.Getenv(envAgent); v != "" {
		return strings.Split(v, ",")
	}
	return nil
}

// kvClient builds the agent client from the flags. Without -agent the
// naming node finds the master; with -agent, the naming node is asked only
// when -naming (or MASTERSHIP_NAMING) is given too.
func kvClient(c *cli.Context) (*agentclient.Client, error) {
	op := c.Command.Name
	group := c.String("group")
	if group == "" {
		return nil, usageErr("kv %s: -group is required", op)
	}
	if err := api.ValidateGroup(group); err != nil {
		return nil, usageErr("kv %s: -group: %v", op, err)
	}
	var agents []string
	for _, a := range kvAgents(c) {
		if err := api.ValidateAddr("agent", a); err != nil {
			return nil, usageErr("kv %s: -agent: %v", op, err)
		}
		agents = append(agents, a)
	}
	var naming string
	if c.IsSet("naming") || len(agents) == 0 {
		naming = c.String("naming")
		if _, err := api.ParseAddrList("naming", naming); err != nil {
			return nil, usageErr("kv %s: -naming: %v", op, err)
		}
	}
	timeout := c.Duration("timeout")
	if timeout <= 0 {
		return nil, usageErr("kv %s: -timeout %s: want a positive duration", op, timeout)
	}
	creds, err := credsFromCLI(c)
	if err != nil {
		return nil, err
	}
	cl, err := agentclient.New(agentclient.Config{Group: group, Naming: naming, Agents: agents, Timeout: timeout, Creds: creds})
	if err != nil {
		return nil, usageErr("kv %s: %v", op, err)
	}
	return cl, nil
}

// kvJSON is the shape of `mastership kv ... -json`.
type kvJSON struct {
	OK    bool    `json:"ok"`
	Found bool    `json:"found"`
	Value *string `json:"value"`
	// Epoch is the answering master's, {"term", "id"} as in every JSON.
	Epoch  api.Epoch `json:"epoch"`
	Index  uint64    `json:"index"`
	Master uint64    `json:"master"`
}

func newKVJSON(op string, r agentclient.Reply) kvJSON {
	out := kvJSON{OK: r.OK, Found: r.Found, Epoch: r.Epoch, Index: r.Index, Master: r.Master}
	if r.Value != nil || (op == "get" && r.Found) {
		v := string(r.Value)
		out.Value = &v
	}
	return out
}

// printKV writes the reply; get of an absent key and a cas not applied
// exit 1, with or without -json.
func printKV(c *cli.Context, op string, r agentclient.Reply) error {
	w := c.App.Writer
	asJSON := c.Bool("json")
	if asJSON {
		if err := writeJSON(w, newKVJSON(op, r)); err != nil {
			return err
		}
	}
	switch {
	case op == "get" && !r.Found:
		return cli.Exit(fmt.Sprintf("kv get: key %q not found", c.Args().Get(0)), exitError)
	case op == "cas" && !r.OK && asJSON:
		return cli.Exit("kv cas: not applied", exitError)
	case asJSON:
	case op == "get":
		fmt.Fprintf(w, "%s\n", r.Value)
	case op == "cas" && !r.OK:
		why := "value differs"
		if c.Bool("absent") {
			why = "key exists"
		}
		fmt.Fprintf(w, "not applied (%s)\n", why)
		return cli.Exit("", exitError)
	case op == "cas":
		fmt.Fprintln(w, "ok")
	case op == "del" && !r.Found:
		fmt.Fprintf(w, "ok (epoch %s, index %d; the key was absent)\n", r.Epoch, r.Index)
	default:
		fmt.Fprintf(w, "ok (epoch %s, index %d)\n", r.Epoch, r.Index)
	}
	return nil
}
