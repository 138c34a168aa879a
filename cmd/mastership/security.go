package main

import (
	crand "crypto/rand"
	"encoding/base64"
	"fmt"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/mastership/mastership/agent/wire"
	"github.com/mastership/mastership/naming/auth"
	"github.com/urfave/cli/v2"
)

// securityFlags are the trust flags of every command that calls an agent
// or a naming node: the token it presents and, for mutual TLS, the CA and
// its certificate. Built fresh per command, as urfave/cli keeps state in a
// flag.
func securityFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "token", Usage: "`SECRET` presented as a bearer token; prefer -token-file or the environment", EnvVars: []string{"MASTERSHIP_TOKEN"}},
		&cli.StringFlag{Name: "token-file", Usage: "`FILE` whose first line is the token", EnvVars: []string{"MASTERSHIP_TOKEN_FILE"}, TakesFile: true},
		&cli.StringFlag{Name: "tls-ca", Usage: "PEM `FILE` of the cluster's CA, to verify the server", EnvVars: []string{"MASTERSHIP_TLS_CA"}, TakesFile: true},
		&cli.StringFlag{Name: "tls-cert", Usage: "PEM `FILE` of this client's certificate", EnvVars: []string{"MASTERSHIP_TLS_CERT"}, TakesFile: true},
		&cli.StringFlag{Name: "tls-key", Usage: "PEM `FILE` of this client's key", EnvVars: []string{"MASTERSHIP_TLS_KEY"}, TakesFile: true},
	}
}

// credsFromCLI reads the trust flags, wherever in the command's lineage
// they were given.
func credsFromCLI(c *cli.Context) (auth.Creds, error) {
	files := auth.TLSFiles{CA: flagString(c, "tls-ca"), Cert: flagString(c, "tls-cert"), Key: flagString(c, "tls-key")}
	if err := files.Check(); err != nil {
		return auth.Creds{}, usageErr("%v", err)
	}
	tlsCfg, err := auth.ClientTLS(files)
	if err != nil {
		return auth.Creds{}, err
	}
	tok, err := auth.LoadToken(flagString(c, "token"), flagString(c, "token-file"))
	if err != nil {
		return auth.Creds{}, err
	}
	return auth.Creds{Token: tok, TLS: tlsCfg}, nil
}

func tlsCommand() *cli.Command {
	return &cli.Command{
		Name:  "tls",
		Usage: "make the cluster's CA and the certificates of its agents, naming nodes and operators",
		UsageText: "mastership tls ca -out DIR\n" +
			"   mastership tls cert -ca DIR -name NAME -ip IP[,IP] [-dns NAME[,NAME]] -out DIR",
		Action: func(c *cli.Context) error {
			return usageErr("tls: want ca or cert")
		},
		Subcommands: []*cli.Command{
			{
				Name:      "ca",
				Usage:     "write a new CA to DIR/ca.pem and DIR/ca-key.pem (keep the key offline)",
				UsageText: "mastership tls ca -out DIR",
				Flags:     []cli.Flag{&cli.StringFlag{Name: "out", Usage: "`DIR` to write to (created 0700)", Required: true}},
				Action: func(c *cli.Context) error {
					if err := noArgs(c); err != nil {
						return err
					}
					if err := auth.GenerateCA(c.String("out"), time.Now()); err != nil {
						return err
					}
					fmt.Fprintf(c.App.Writer, "wrote %s and %s\n", filepath.Join(c.String("out"), auth.CAFile), filepath.Join(c.String("out"), auth.CAKeyFile))
					return nil
				},
			},
			{
				Name:      "cert",
				Usage:     "write a certificate the CA signs, for a server and client at the IPs and names given",
				UsageText: "mastership tls cert -ca DIR -name NAME -ip IP[,IP] [-dns NAME[,NAME]] -out DIR",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "ca", Usage: "`DIR` of the CA (tls ca -out)", Required: true},
					&cli.StringFlag{Name: "name", Usage: "`NAME` of the certificate: files NAME.pem and NAME-key.pem", Required: true},
					&cli.StringSliceFlag{Name: "ip", Usage: "`IP` addresses the holder is reached at; repeatable or comma-separated"},
					&cli.StringSliceFlag{Name: "dns", Usage: "DNS `NAME`s the holder is reached at; repeatable or comma-separated"},
					&cli.StringFlag{Name: "out", Usage: "`DIR` to write to (created 0700)", Required: true},
				},
				Action: func(c *cli.Context) error {
					if err := noArgs(c); err != nil {
						return err
					}
					err := auth.GenerateCert(c.String("ca"), c.String("name"), c.StringSlice("ip"), c.StringSlice("dns"), c.String("out"), time.Now())
					if err != nil {
						return err
					}
					fmt.Fprintf(c.App.Writer, "wrote %s and %s\n", filepath.Join(c.String("out"), c.String("name")+".pem"),
						filepath.Join(c.String("out"), c.String("name")+"-key.pem"))
					return nil
				},
			},
		},
	}
}

func keygenCommand() *cli.Command {
	return &cli.Command{
		Name:      "keygen",
		Usage:     "print a new gossip encryption key (base64 of 32 random bytes) for -encrypt and keyring install",
		UsageText: "mastership keygen",
		Action: func(c *cli.Context) error {
			if err := noArgs(c); err != nil {
				return err
			}
			var k [32]byte
			if _, err := crand.Read(k[:]); err != nil {
				return err
			}
			fmt.Fprintln(c.App.Writer, base64.StdEncoding.EncodeToString(k[:]))
			return nil
		},
	}
}

func keyringCommand() *cli.Command {
	run := func(op string) func(c *cli.Context) error {
		return func(c *cli.Context) error {
			req := wire.KeyringRequest{Op: op}
			switch {
			case op == "list" && c.NArg() != 0:
				return usageErr("keyring list: unexpected argument %q", c.Args().First())
			case op != "list" && c.NArg() != 1:
				return usageErr("keyring %s: want one KEY (base64, as mastership keygen prints)", op)
			case op != "list":
				req.Key = c.Args().First()
				if k, err := base64.StdEncoding.DecodeString(req.Key); err != nil || (len(k) != 16 && len(k) != 24 && len(k) != 32) {
					return usageErr("keyring %s: KEY is not the base64 of 16, 24 or 32 bytes", op)
				}
			}
			ag, err := newAgentAPI(c)
			if err != nil {
				return err
			}
			results, _, err := ag.Keyring(c.Context, req)
			if err != nil {
				return err
			}
			failed := 0
			for _, r := range results {
				if !r.OK {
					failed++
				}
			}
			if flagBool(c, "json") {
				if err := writeJSON(c.App.Writer, results); err != nil {
					return err
				}
			} else {
				tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "GROUP\tID\tAPI\tRESULT\tPRIMARY\tKEYS")
				for _, r := range results {
					res := "ok"
					if !r.OK {
						res = "failed: " + r.Error
					}
					fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%d\n", orDash(r.Group), r.ID, orDash(r.API), res, orDash(r.Primary), len(r.Keys))
				}
				tw.Flush()
			}
			if failed > 0 {
				return cli.Exit(fmt.Sprintf("keyring %s failed on %d of %d agents", op, failed, len(results)), exitError)
			}
			return nil
		}
	}
	sub := func(op, usage, args string) *cli.Command {
		return &cli.Command{Name: op, Usage: usage, UsageText: "mastership keyring -agent ADDR " + op + args,
			Flags: agentFlags(), Action: run(op)}
	}
	return &cli.Command{
		Name:  "keyring",
		Usage: "list or rotate the gossip keys of every live member, through one agent (the operator capability)",
		UsageText: "mastership keyring -agent ADDR list|install KEY|use KEY|remove KEY [-json]\n\n" +
			"   Rotation: install the new key, then use it, then remove the old one. Each step\n" +
			"   applies to every live member and prints each one's outcome.",
		Flags: agentFlags(),
		Action: func(c *cli.Context) error {
			return usageErr("keyring: want list, install KEY, use KEY or remove KEY")
		},
		Subcommands: []*cli.Command{
			sub("list", "show each member's keys", ""),
			sub("install", "add KEY to every member's keyring", " KEY"),
			sub("use", "make KEY the one every member encrypts with", " KEY"),
			sub("remove", "remove KEY (not the one in use) from every member", " KEY"),
		},
	}
}
