package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/mastership/mastership/agent"
	"github.com/mastership/mastership/naming/api"
	"github.com/mastership/mastership/naming/auth"
	"github.com/urfave/cli/v2"
)

// defaultAgentAPI is the API address of an agent started with the default
// -bind, 127.0.0.1:7946 (config.APIPortOffset above it).
const defaultAgentAPI = "127.0.0.1:8946"

// maxReplyBytes bounds what the command line reads of one agent reply.
const maxReplyBytes = 64 << 20

// agentFlags are the flags of every command that talks to one agent's API.
// They carry no environment variable, so that where a command accepts them
// both before and after its subcommand, the one the user typed wins (see
// flagContext).
func agentFlags() []cli.Flag {
	return append([]cli.Flag{
		&cli.StringFlag{Name: "agent", Usage: "the agent's API `ADDR` (host:port)", Value: defaultAgentAPI},
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

func flagString(c *cli.Context, name string) string {
	return flagContext(c, name).String(name)
}

func flagBool(c *cli.Context, name string) bool { return flagContext(c, name).Bool(name) }

func flagDuration(c *cli.Context, name string) time.Duration {
	return flagContext(c, name).Duration(name)
}

// agentAPI calls one agent's HTTP API (agent/api.go).
type agentAPI struct {
	addr  string
	hc    *http.Client
	creds auth.Creds
}

// newAgentAPI checks -agent and -timeout; bad values are usage errors.
func newAgentAPI(c *cli.Context) (*agentAPI, error) {
	addr := flagString(c, "agent")
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
	return &agentAPI{addr: addr, creds: creds, hc: &http.Client{Timeout: timeout, Transport: creds.Transport(&http.Transport{})}}, nil
}

// agentError is the body of a failed reply: api.Error's fields, and the
// master's when the agent is not master (agent.KVResponse).
type agentError struct {
	Code       string `json:"code"`
	Error      string `json:"error"`
	Master     uint64 `json:"master"`
	MasterAddr string `json:"master_addr"`
}

// errAgentStatus is a reply with an HTTP status other than 200.
type errAgentStatus struct {
	addr   string
	status int
	body   agentError
}

func (e *errAgentStatus) Error() string {
	msg := e.body.Error
	if msg == "" {
		msg = http.StatusText(e.status)
	}
	if e.body.Code != "" && !strings.HasPrefix(msg, e.body.Code+":") {
		msg = e.body.Code + ": " + msg
	}
	if e.body.Master != 0 {
		msg += fmt.Sprintf(" (master is %d at %s)", e.body.Master, e.body.MasterAddr)
	}
	return fmt.Sprintf("agent %s: %s", e.addr, msg)
}

// call sends a request with an optional JSON body and returns the reply
// body of a 200. Any other status becomes an *errAgentStatus naming the
// agent; a failed connection names the agent too.
func (a *agentAPI) call(ctx context.Context, method, path string, in any) ([]byte, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return nil, err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, a.creds.URL(a.addr, path), body)
	if err != nil {
		return nil, fmt.Errorf("agent %s: %w", a.addr, err)
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := a.hc.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // drop net/http's repetition of method and URL
		}
		return nil, fmt.Errorf("agent %s unreachable: %v", a.addr, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxReplyBytes))
	if err != nil {
		return nil, fmt.Errorf("agent %s: read reply: %v", a.addr, err)
	}
	if resp.StatusCode != http.StatusOK {
		e := &errAgentStatus{addr: a.addr, status: resp.StatusCode}
		json.Unmarshal(b, &e.body) // a body that is no error leaves the status text
		return nil, e
	}
	return b, nil
}

// get calls GET path and decodes the reply into out; raw is the reply as
// sent, for -json.
func (a *agentAPI) get(ctx context.Context, path string, out any) (raw json.RawMessage, err error) {
	b, err := a.call(ctx, http.MethodGet, path, nil)
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(b, out); err != nil {
		return nil, fmt.Errorf("agent %s: reply of %s does not decode: %v", a.addr, path, err)
	}
	return b, nil
}

func membersCommand() *cli.Command {
	return &cli.Command{
		Name:      "members",
		Usage:     "show one agent's gossip view: ID, group, role, epoch, master followed, health",
		UsageText: "mastership members -agent ADDR [-json]",
		Flags:     agentFlags(),
		Action: func(c *cli.Context) error {
			if err := noArgs(c); err != nil {
				return err
			}
			ag, err := newAgentAPI(c)
			if err != nil {
				return err
			}
			var members []agent.MemberJSON
			raw, err := ag.get(c.Context, "/v1/members", &members)
			if err != nil {
				return err
			}
			if c.Bool("json") {
				return writeJSON(c.App.Writer, raw)
			}
			return printMembers(c.App.Writer, members)
		},
	}
}

func printMembers(w io.Writer, members []agent.MemberJSON) error {
	sort.Slice(members, func(i, j int) bool {
		if members[i].Group != members[j].Group {
			return members[i].Group < members[j].Group
		}
		return members[i].ID < members[j].ID
	})
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tGROUP\tROLE\tEPOCH\tMASTER\tHEALTH\tGOSSIP\tAPI")
	for _, m := range members {
		master := "none"
		if m.Master != 0 {
			master = fmt.Sprint(m.Master)
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%d\t%s\t%s\t%s\t%s\n", m.ID, m.Group, m.Role, m.Epoch, master, m.Health, m.Addr, orDash(m.API))
	}
	return tw.Flush()
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
		Action: func(c *cli.Context) error {
			if err := noArgs(c); err != nil {
				return err
			}
			ag, err := newAgentAPI(c)
			if err != nil {
				return err
			}
			var info agent.InfoJSON
			raw, err := ag.get(c.Context, "/v1/info", &info)
			if err != nil {
				return err
			}
			if c.Bool("json") {
				return writeJSON(c.App.Writer, raw)
			}
			printInfo(c.App.Writer, info)
			return nil
		},
	}
}

// printInfo writes `key: value` lines, keys as in the JSON.
func printInfo(w io.Writer, in agent.InfoJSON) {
	master := "none"
	if in.Master != 0 {
		master = fmt.Sprint(in.Master)
	}
	lines := [][2]string{
		{"id", fmt.Sprint(in.ID)},
		{"group", in.Group},
		{"role", in.Role},
		{"epoch", fmt.Sprintf("%d (master %d)", in.Epoch, in.EpochID)},
		{"master", master},
		{"applied", fmt.Sprint(in.Applied)},
		{"commit", fmt.Sprint(in.Commit)},
		{"last", fmt.Sprint(in.Last)},
		{"digest", in.Digest},
		{"priority", fmt.Sprint(in.Priority)},
		{"mode", in.Mode},
		{"serving", fmt.Sprint(in.Serving)},
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
	for _, l := range lines {
		fmt.Fprintf(w, "%s: %s\n", l[0], l[1])
	}
}
