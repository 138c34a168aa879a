package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"text/tabwriter"

	"github.com/mastership/mastership/naming"
	"github.com/mastership/mastership/naming/api"
	"github.com/urfave/cli/v2"
)

func peersCommand() *cli.Command {
	flags := func() []cli.Flag { return append([]cli.Flag{namingFlag(), jsonFlag()}, securityFlags()...) }
	change := func(name, usage string, add bool) *cli.Command {
		return &cli.Command{
			Name:      name,
			Usage:     usage,
			UsageText: "mastership peers " + name + " -naming ADDR[,ADDR] ADDR",
			Flags:     flags(),
			Action: func(c *cli.Context) error {
				if c.NArg() != 1 {
					return usageErr("peers %s: want the advertised ADDR (host:port) of one naming node", name)
				}
				addr := c.Args().First()
				if err := api.ValidateAddr("peer", addr); err != nil {
					return usageErr("peers %s: %v", name, err)
				}
				cl, err := namingClient(c)
				if err != nil {
					return err
				}
				defer cl.Close()
				if add {
					err = cl.AddPeer(c.Context, addr)
				} else {
					err = cl.RemovePeer(c.Context, addr)
				}
				if err != nil {
					return fmt.Errorf("peers %s %s: %w", name, addr, err)
				}
				if c.Bool("json") {
					return writeJSON(c.App.Writer, map[string]string{"addr": addr, "done": name})
				}
				verb := map[bool]string{true: "added", false: "removed"}[add]
				fmt.Fprintf(c.App.Writer, "%s %s\n", verb, addr)
				return nil
			},
		}
	}
	return &cli.Command{
		Name:      "peers",
		Usage:     "list the naming cluster's voters, or add and remove one",
		UsageText: "mastership peers -naming ADDR[,ADDR] [-json]\n   mastership peers add|remove -naming ADDR[,ADDR] ADDR",
		Flags:     flags(),
		Subcommands: []*cli.Command{
			change("add", "add a naming node, started with an empty data dir and -join, as a voter", true),
			change("remove", "remove a voter from the naming cluster", false),
		},
		Action: func(c *cli.Context) error {
			if err := noArgs(c); err != nil {
				return err
			}
			cl, err := namingClient(c)
			if err != nil {
				return err
			}
			defer cl.Close()
			ps, err := cl.Peers(c.Context)
			if err != nil {
				return err
			}
			if c.Bool("json") {
				return writeJSON(c.App.Writer, ps.Peers)
			}
			tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ADDR\tSTATE\tVOTER\tLAST CONTACT")
			for _, p := range ps.Peers {
				contact := "-"
				if p.LastContactMS >= 0 {
					contact = fmt.Sprintf("%dms", p.LastContactMS)
				}
				fmt.Fprintf(tw, "%s\t%s\t%t\t%s\n", p.Addr, p.State, p.Voter, contact)
			}
			return tw.Flush()
		},
	}
}

func snapshotCommand() *cli.Command {
	flags := func() []cli.Flag { return append([]cli.Flag{namingFlag()}, securityFlags()...) }
	file := func(c *cli.Context, name string) (string, error) {
		if c.NArg() != 1 {
			return "", usageErr("snapshot %s: want one FILE", name)
		}
		return c.Args().First(), nil
	}
	return &cli.Command{
		Name:  "snapshot",
		Usage: "save the naming cluster's state to a file, or restore it from one",
		Subcommands: []*cli.Command{
			{
				Name:      "save",
				Usage:     "write a snapshot of the committed state (groups, events, pending triggers) to FILE",
				UsageText: "mastership snapshot save -naming ADDR[,ADDR] FILE",
				Flags:     flags(),
				Action: func(c *cli.Context) error {
					path, err := file(c, "save")
					if err != nil {
						return err
					}
					cl, err := namingClient(c)
					if err != nil {
						return err
					}
					defer cl.Close()
					var buf bytes.Buffer
					if _, err := cl.SaveSnapshot(c.Context, &buf, naming.MaxSnapshotBytes); err != nil {
						return fmt.Errorf("snapshot save: %w", err)
					}
					if err := naming.CheckSnapshot(bytes.NewReader(buf.Bytes())); err != nil {
						return fmt.Errorf("snapshot save: the node sent %v", err)
					}
					// Written beside, then renamed: a failed save leaves no
					// half file under the name.
					tmp := path + ".partial"
					if err := os.WriteFile(tmp, buf.Bytes(), 0o600); err != nil {
						return fmt.Errorf("snapshot save: %w", err)
					}
					if err := os.Rename(tmp, path); err != nil {
						os.Remove(tmp)
						return fmt.Errorf("snapshot save: %w", err)
					}
					fmt.Fprintf(c.App.Writer, "saved %d bytes to %s\n", buf.Len(), path)
					return nil
				},
			},
			{
				Name:      "restore",
				Usage:     "replace the naming cluster's state with FILE's (checked whole first)",
				UsageText: "mastership snapshot restore -naming ADDR[,ADDR] FILE",
				Flags:     flags(),
				Action: func(c *cli.Context) error {
					path, err := file(c, "restore")
					if err != nil {
						return err
					}
					f, err := os.Open(path)
					if err != nil {
						return usageErr("snapshot restore: %v", err)
					}
					b, err := readBounded(f, naming.MaxSnapshotBytes)
					f.Close()
					if err != nil {
						return usageErr("snapshot restore: %s: %v", path, err)
					}
					if err := naming.CheckSnapshot(bytes.NewReader(b)); err != nil {
						return usageErr("snapshot restore: %s: %v; nothing changed", path, err)
					}
					cl, err := namingClient(c)
					if err != nil {
						return err
					}
					defer cl.Close()
					if err := cl.RestoreSnapshot(c.Context, b); err != nil {
						return fmt.Errorf("snapshot restore: %w", err)
					}
					fmt.Fprintf(c.App.Writer, "restored %d bytes from %s\n", len(b), path)
					return nil
				},
			},
		},
	}
}

func readBounded(f *os.File, max int64) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("over the limit of %d bytes", max)
	}
	return b, nil
}
