package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"

	"github.com/mastership/mastership/agent/wire"
	"github.com/mastership/mastership/naming/api"
)

// findMaster returns the address to send the next attempt to: the cached
// master, else the naming node's registered master, else the master the
// agents report. Addresses in avoid failed during this operation; they are
// used only when nothing else is found.
func (c *Client) findMaster(ctx context.Context, avoid map[string]bool) (string, error) {
	c.mu.Lock()
	cached, newest := c.master, c.maxEpoch
	c.mu.Unlock()
	if cached != "" && !avoid[cached] {
		return cached, nil
	}
	var (
		problems   []string
		lastResort string
		members    []string
		namingErr  error
	)
	if c.naming != nil {
		look, err := c.naming.Lookup(ctx, api.LookupRequest{Group: c.group})
		switch {
		case errors.Is(err, api.ErrNotFound) && len(c.agentAddrs(nil)) == 0:
			return "", fmt.Errorf("%w: %q (ask the naming node which groups it holds: mastership status)", ErrUnknownGroup, c.group)
		case err != nil:
			namingErr = err
			problems = append(problems, fmt.Sprintf("naming node: %v", err))
		case look.Master == nil:
			problems = append(problems, "naming node: no master registered")
		case look.Master.Epoch.Less(newest):
			problems = append(problems, fmt.Sprintf("naming node: master %d registered at epoch %s, older than %s",
				look.Master.ID, look.Master.Epoch, newest))
			lastResort = look.Master.Addr
		case avoid[look.Master.Addr]:
			problems = append(problems, fmt.Sprintf("naming node: master %d at %s, which failed", look.Master.ID, look.Master.Addr))
			lastResort = look.Master.Addr
		default:
			return look.Master.Addr, nil
		}
		if err == nil {
			// The naming node knows the members' API addresses.
			if st, serr := c.naming.Status(ctx, api.StatusRequest{Group: c.group}); serr == nil {
				for _, g := range st.Groups {
					for _, m := range g.Members {
						if g.Group == c.group {
							members = append(members, m.Addr)
						}
					}
				}
			}
		}
	}
	addr, err := c.askAgents(ctx, avoid, members)
	if err == nil {
		return addr, nil
	}
	problems = append(problems, err.Error())
	if lastResort != "" {
		return lastResort, nil
	}
	return "", &noMasterError{msg: fmt.Sprintf("%v for group %q: %s", ErrNoMaster, c.group, strings.Join(problems, "; ")), naming: namingErr}
}

// noMasterError is ErrNoMaster with what the naming node's lookup got, so
// that a caller can tell an unreachable naming node (api.ErrUnavailable)
// from one that named no master.
type noMasterError struct {
	msg    string
	naming error
}

func (e *noMasterError) Error() string { return e.msg }

func (e *noMasterError) Unwrap() []error {
	if e.naming == nil {
		return []error{ErrNoMaster}
	}
	return []error{ErrNoMaster, e.naming}
}

// candidate is a master some agent reported.
type candidate struct {
	epoch api.Epoch
	addr  string // the master's API address, when the master answered itself
	id    uint64 // the master's ID
	from  string // the agent that reported it
}

// askAgents asks every agent it knows for its role and master, and returns
// the address of the master at the newest epoch.
func (c *Client) askAgents(ctx context.Context, avoid map[string]bool, extra []string) (string, error) {
	addrs := c.agentAddrs(extra)
	if len(addrs) == 0 {
		return "", errors.New("no agent addresses known")
	}
	infos := make([]*wire.Info, len(addrs))
	errs := make([]error, len(addrs))
	// A hung agent must not hold up the answer of the others.
	ictx, cancel := context.WithTimeout(ctx, max(c.timeout/10, minAttempt/2))
	defer cancel()
	var wg sync.WaitGroup
	for i, a := range addrs {
		wg.Go(func() {
			var info wire.Info
			if err := c.getJSON(ictx, a, "/v1/info", &info); err != nil {
				errs[i] = err
				return
			}
			infos[i] = &info
		})
	}
	wg.Wait()
	var cands []candidate
	for i, info := range infos {
		if info == nil || info.Group != c.group {
			continue
		}
		ep := info.Epoch
		c.observe(ep)
		switch {
		case info.Role == api.RoleMaster.String():
			cands = append(cands, candidate{epoch: ep, addr: addrs[i], id: info.ID, from: addrs[i]})
		case info.Master != 0:
			cands = append(cands, candidate{epoch: ep, id: info.Master, from: addrs[i]})
		}
	}
	newest := c.MaxEpoch()
	cands = slices.DeleteFunc(cands, func(k candidate) bool { return k.epoch.Less(newest) })
	// Newest epoch first; at one epoch, a master's own word first.
	slices.SortStableFunc(cands, func(a, b candidate) int {
		if d := b.epoch.Compare(a.epoch); d != 0 {
			return d
		}
		if (a.addr != "") != (b.addr != "") {
			if a.addr != "" {
				return -1
			}
			return 1
		}
		return 0
	})
	var fallback string
	for _, k := range cands {
		addr := k.addr
		if addr == "" {
			addr = c.resolve(ctx, k.from, k.id)
		}
		switch {
		case addr == "":
		case !avoid[addr]:
			return addr, nil
		case fallback == "":
			fallback = addr
		}
	}
	if fallback != "" {
		return fallback, nil
	}
	var msgs []string
	for i, err := range errs {
		if err != nil {
			msgs = append(msgs, fmt.Sprintf("%s: %v", addrs[i], err))
		}
	}
	return "", fmt.Errorf("no agent of %d asked reports a master at epoch %s or newer (%s)", len(addrs), newest,
		strings.Join(msgs, "; "))
}

// resolve asks the agent at from for the API address of agent id, and
// learns the group's other members on the way.
func (c *Client) resolve(ctx context.Context, from string, id uint64) string {
	var ms []wire.Member
	if err := c.getJSON(ctx, from, "/v1/members", &ms); err != nil {
		return ""
	}
	var addr string
	var learned []string
	for _, m := range ms {
		if m.Group != c.group || m.API == "" || api.ValidateAddr("api", m.API) != nil {
			continue
		}
		learned = append(learned, m.API)
		if m.ID == id {
			addr = m.API
		}
	}
	c.learn(learned)
	return addr
}

// agentAddrs lists the configured, learned and extra agent addresses once
// each, the configured first.
func (c *Client) agentAddrs(extra []string) []string {
	c.learn(extra)
	out := slices.Clone(c.agents)
	c.mu.Lock()
	for a := range c.known {
		out = append(out, a)
	}
	c.mu.Unlock()
	slices.Sort(out[len(c.agents):])
	seen := map[string]bool{}
	return slices.DeleteFunc(out, func(a string) bool {
		if seen[a] {
			return true
		}
		seen[a] = true
		return false
	})
}

// learn remembers agent addresses, up to maxKnownAgents.
func (c *Client) learn(addrs []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, a := range addrs {
		if len(c.known) >= maxKnownAgents {
			return
		}
		if api.ValidateAddr("agent", a) == nil {
			c.known[a] = true
		}
	}
}

// getJSON reads a JSON document from an agent.
func (c *Client) getJSON(ctx context.Context, addr, path string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.creds.URL(addr, path), nil)
	if err != nil {
		return err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, api.MaxMessageBytes+1))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		var e api.Error
		if json.Unmarshal(b, &e) == nil && e.Code != "" {
			return fmt.Errorf("GET %s: %s", path, e.Error())
		}
		return fmt.Errorf("GET %s: %s%s", path, resp.Status, plainText(b))
	}
	return json.Unmarshal(b, v)
}

// plainText is the first line of a reply that is no JSON error (a TLS
// agent answering a clear-text request says so in one), as ": line", cut
// to 200 bytes; "" for an empty or binary body.
func plainText(b []byte) string {
	line, _, _ := bytes.Cut(b, []byte("\n"))
	line = bytes.TrimSpace(line)
	if len(line) == 0 || !utf8.Valid(line) || bytes.ContainsFunc(line, unicode.IsControl) {
		return ""
	}
	if len(line) > 200 {
		line = append(line[:200:200], "..."...)
	}
	return ": " + string(line)
}
