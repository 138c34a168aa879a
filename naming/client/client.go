// Package client is the Go client of the naming node, for agents and tools.
//
// Usage:
//
//	c, err := client.New("10.0.0.1:7400,10.0.0.2:7400,10.0.0.3:7400") // one node or several
//	if err != nil { ... }
//	look, err := c.Lookup(ctx, api.LookupRequest{Group: "orders"})
//	if errors.Is(err, api.ErrNotFound) { ... }     // unknown group
//	if errors.Is(err, api.ErrUnavailable) { ... }  // node unreachable
//
// Every call speaks msgpack over HTTP to POST /rpc/{method}; failed calls
// return an *api.Error whose code errors.Is matches (api.ErrNotFound,
// api.ErrRefused, ...). A Client is safe for concurrent use and keeps its
// connections alive between calls.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/mastership/mastership/naming/api"
	"github.com/mastership/mastership/naming/auth"
)

// Client talks to a naming cluster: one node, or several (any of them
// answers; followers forward to the leader). A call goes to the node that
// answered last; when that one cannot be reached, or has no leader to
// forward to, the call moves on to the next node, each at most once.
type Client struct {
	addrs []string
	cur   atomic.Int64 // index in addrs of the node that answered last
	hc    *http.Client
	creds auth.Creds
}

// Option adjusts a Client.
type Option func(*options)

type options struct {
	timeout time.Duration
	dial    func(ctx context.Context, network, addr string) (net.Conn, error)
	creds   auth.Creds
}

// WithCreds presents a token and, with TLS, a client certificate.
func WithCreds(c auth.Creds) Option { return func(o *options) { o.creds = c } }

// WithTimeout bounds each call (default 5s).
func WithTimeout(d time.Duration) Option { return func(o *options) { o.timeout = d } }

// WithDialer replaces the dialer, for example with a fault-injecting one in
// tests.
func WithDialer(dial func(ctx context.Context, network, addr string) (net.Conn, error)) Option {
	return func(o *options) { o.dial = dial }
}

// New returns a client of the naming node or nodes at addrs (host:port,
// several separated by commas).
func New(addrs string, opts ...Option) (*Client, error) {
	list, err := api.ParseAddrList("naming", addrs)
	if err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	o := options{timeout: 5 * time.Second}
	for _, f := range opts {
		f(&o)
	}
	if o.dial == nil {
		// A node that does not answer a connection (its host down, or cut
		// off) must leave time for the others within one call.
		o.dial = (&net.Dialer{Timeout: dialTimeout(o.timeout, len(list))}).DialContext
	}
	return &Client{addrs: list, creds: o.creds, hc: &http.Client{
		Timeout: o.timeout,
		Transport: o.creds.Transport(&http.Transport{
			DialContext:         o.dial,
			MaxIdleConnsPerHost: 64,
			IdleConnTimeout:     90 * time.Second,
		}),
	}}, nil
}

// dialTimeout bounds one connection attempt: a share of the call's
// timeout per node, at most 2 s and at least 100 ms.
func dialTimeout(timeout time.Duration, nodes int) time.Duration {
	return min(max(timeout/time.Duration(max(nodes, 1)), 100*time.Millisecond), 2*time.Second, timeout)
}

// Addr is the address of the node that answered last.
func (c *Client) Addr() string { return c.addrs[int(c.cur.Load())%len(c.addrs)] }

// Addrs lists the nodes the client knows.
func (c *Client) Addrs() []string { return slices.Clone(c.addrs) }

// Close releases idle connections.
func (c *Client) Close() { c.hc.CloseIdleConnections() }

// call sends one call, moving on to the next node while one cannot answer.
func (c *Client) call(ctx context.Context, method string, req, resp any) error {
	body, err := api.Encode(req)
	if err != nil {
		return err
	}
	start := int(c.cur.Load())
	var last error
	for i := range c.addrs {
		idx := (start + i) % len(c.addrs)
		leader, err := c.callOne(ctx, c.addrs[idx], method, body, resp)
		if err != nil && failover(err) {
			// Later calls start past a node that did not answer (its host
			// down, cut off), even when this call's time ran out on it: a
			// call bounded tighter than one dial would otherwise spend its
			// whole time on that node again and again.
			c.cur.CompareAndSwap(int64(idx), int64((idx+1)%len(c.addrs)))
		}
		if err == nil || !failover(err) || ctx.Err() != nil {
			if err == nil {
				c.cur.Store(int64(idx))
				if li := slices.Index(c.addrs, leader); li >= 0 {
					c.cur.Store(int64(li)) // the leader answered through this node
				}
			}
			return err
		}
		last = err
	}
	return last
}

// notHTTPHint is what to check when a connection was made but what
// answered speaks no HTTP (a gossip port): "" for other errors.
func notHTTPHint(err error) string {
	if api.SpeaksNoHTTP(err) {
		return " (it speaks no HTTP: an agent's gossip port? give the naming node's address)"
	}
	return ""
}

// failover tells whether another node may answer what this one could not:
// it was unreachable, or has no leader to forward to.
func failover(err error) bool {
	var e *api.Error
	if errors.As(err, &e) {
		return e.Code == api.CodeUnavailable
	}
	return errors.Is(err, api.ErrUnavailable)
}

// callOne sends one call to one node; it returns the leader the reply
// names, if any.
func (c *Client) callOne(ctx context.Context, addr, method string, body []byte, resp any) (string, error) {
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, c.creds.URL(addr, "/rpc/"+method), bytes.NewReader(body))
	if err != nil {
		return "", fmt.Errorf("client: %s: %w", method, err)
	}
	hreq.Header.Set("Content-Type", "application/msgpack")
	hresp, err := c.hc.Do(hreq)
	if err != nil {
		return "", fmt.Errorf("client: %s at naming node %s: %w%s", method, addr, errors.Join(api.ErrUnavailable, err), notHTTPHint(err))
	}
	defer hresp.Body.Close()
	leader := hresp.Header.Get("Mastership-Leader")
	out, err := io.ReadAll(io.LimitReader(hresp.Body, api.MaxMessageBytes+1))
	if err != nil {
		return "", fmt.Errorf("client: %s at naming node %s: read reply: %w", method, addr, errors.Join(api.ErrUnavailable, err))
	}
	if hresp.StatusCode != http.StatusOK {
		var e api.Error
		if derr := api.Decode(out, &e); derr != nil || e.Code == "" {
			// Not a reply of a naming node (a proxy, a TLS server spoken
			// to in clear text): say what came back.
			text := strings.TrimSpace(string(out))
			if len(text) > 200 || !utf8.ValidString(text) {
				text = ""
			}
			if hresp.StatusCode == http.StatusNotFound && strings.HasPrefix(hresp.Header.Get("Content-Type"), "application/json") {
				return "", fmt.Errorf("client: %s at %s: %s: it answers HTTP, but not as a naming node (an agent's API address? give the naming node's, -naming): %w",
					method, addr, hresp.Status, api.ErrInternal)
			}
			return "", fmt.Errorf("client: %s at naming node %s: %s %s: %w", method, addr, hresp.Status, text, api.ErrInternal)
		}
		return "", &e
	}
	if err := api.Decode(out, resp); err != nil {
		return "", fmt.Errorf("client: %s at naming node %s: %w", method, addr, err)
	}
	return leader, nil
}

// Join makes an agent a member of a group and opens its session.
func (c *Client) Join(ctx context.Context, req api.JoinRequest) (resp api.JoinResponse, err error) {
	return resp, c.call(ctx, "join", &req, &resp)
}

// Renew extends a member session and returns the registered master.
func (c *Client) Renew(ctx context.Context, req api.RenewRequest) (resp api.RenewResponse, err error) {
	return resp, c.call(ctx, "renew", &req, &resp)
}

// Leave ends a member session.
func (c *Client) Leave(ctx context.Context, req api.LeaveRequest) error {
	var resp struct{}
	return c.call(ctx, "leave", &req, &resp)
}

// Register registers or renews a master.
func (c *Client) Register(ctx context.Context, req api.RegisterRequest) (resp api.RegisterResponse, err error) {
	return resp, c.call(ctx, "register", &req, &resp)
}

// Lookup returns a group's retained master (nil when none is live).
func (c *Client) Lookup(ctx context.Context, req api.LookupRequest) (resp api.LookupResponse, err error) {
	return resp, c.call(ctx, "lookup", &req, &resp)
}

// Status describes one group (req.Group set) or every group.
func (c *Client) Status(ctx context.Context, req api.StatusRequest) (resp api.StatusResponse, err error) {
	return resp, c.call(ctx, "status", &req, &resp)
}

// AllStatus pages through the status of every group, sorted by name, read
// in mode (api.ReadDefault: from the leader).
func (c *Client) AllStatus(ctx context.Context, mode ...api.ReadMode) ([]api.GroupStatus, error) {
	var all []api.GroupStatus
	after := ""
	for {
		page, err := c.Status(ctx, api.StatusRequest{After: after, Limit: api.MaxStatusPage, Read: readMode(mode)})
		if err != nil {
			return all, err
		}
		all = append(all, page.Groups...)
		if !page.More {
			return all, nil
		}
		after = page.Next
	}
}

// Pause puts a group in maintenance or takes it out (operators).
func (c *Client) Pause(ctx context.Context, req api.PauseRequest) (resp api.PauseResponse, err error) {
	return resp, c.call(ctx, "pause", &req, &resp)
}

// Recheck asks the node to re-check a group and trigger its members.
func (c *Client) Recheck(ctx context.Context, req api.RecheckRequest) (resp api.RecheckResponse, err error) {
	return resp, c.call(ctx, "recheck", &req, &resp)
}

// Events returns one page of a group's history.
func (c *Client) Events(ctx context.Context, req api.EventsRequest) (resp api.EventsResponse, err error) {
	return resp, c.call(ctx, "events", &req, &resp)
}

// AllEvents pages through a group's whole history after seq after, read
// in mode (api.ReadDefault: from the leader).
func (c *Client) AllEvents(ctx context.Context, group string, after uint64, mode ...api.ReadMode) ([]api.Event, error) {
	var all []api.Event
	for {
		page, err := c.Events(ctx, api.EventsRequest{Group: group, After: after, Limit: 1000, Read: readMode(mode)})
		if err != nil {
			return all, err
		}
		all = append(all, page.Events...)
		if !page.More {
			return all, nil
		}
		after = page.Next
	}
}

// Health asks whether the node is up, and its place in the cluster.
func (c *Client) Health(ctx context.Context) (resp api.HealthResponse, err error) {
	return resp, c.call(ctx, "health", &struct{}{}, &resp)
}

// Peers lists the voters of the naming cluster.
func (c *Client) Peers(ctx context.Context) (resp api.PeersResponse, err error) {
	return resp, c.call(ctx, "peers", &struct{}{}, &resp)
}

// AddPeer adds a voter to the naming cluster (operator).
func (c *Client) AddPeer(ctx context.Context, addr string) error {
	var resp struct{}
	return c.call(ctx, "add-peer", &api.PeerRequest{Addr: addr}, &resp)
}

// RemovePeer removes a voter from the naming cluster (operator).
func (c *Client) RemovePeer(ctx context.Context, addr string) error {
	var resp struct{}
	return c.call(ctx, "remove-peer", &api.PeerRequest{Addr: addr}, &resp)
}

// SaveSnapshot writes a snapshot of the cluster's committed state to w
// (operator); it is checked whole before it is written.
func (c *Client) SaveSnapshot(ctx context.Context, w io.Writer, maxBytes int64) (int64, error) {
	var got []byte
	err := c.httpCall(ctx, http.MethodGet, "/v1/snapshot", nil, func(body io.Reader) error {
		b, err := io.ReadAll(io.LimitReader(body, maxBytes+1))
		if err != nil {
			return err
		}
		if int64(len(b)) > maxBytes {
			return fmt.Errorf("%w: snapshot over %d bytes", api.ErrTooLarge, maxBytes)
		}
		got = b
		return nil
	})
	if err != nil {
		return 0, err
	}
	n, err := w.Write(got)
	return int64(n), err
}

// RestoreSnapshot replaces the cluster's state with a snapshot's
// (operator).
func (c *Client) RestoreSnapshot(ctx context.Context, snapshot []byte) error {
	return c.httpCall(ctx, http.MethodPut, "/v1/snapshot", snapshot, func(io.Reader) error { return nil })
}

// httpCall is a call of the JSON face, with the same failover as call.
func (c *Client) httpCall(ctx context.Context, method, path string, body []byte, read func(io.Reader) error) error {
	start := int(c.cur.Load())
	var last error
	for i := range c.addrs {
		idx := (start + i) % len(c.addrs)
		addr := c.addrs[idx]
		var rb io.Reader = http.NoBody
		if body != nil {
			rb = bytes.NewReader(body)
		}
		req, err := http.NewRequestWithContext(ctx, method, c.creds.URL(addr, path), rb)
		if err != nil {
			return err
		}
		resp, err := c.hc.Do(req)
		if err != nil {
			last = fmt.Errorf("client: %s %s at naming node %s: %w", method, path, addr, errors.Join(api.ErrUnavailable, err))
			if ctx.Err() != nil {
				return last
			}
			continue
		}
		if resp.StatusCode != http.StatusOK {
			b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
			resp.Body.Close()
			var e api.Error
			if json.Unmarshal(b, &e) != nil || e.Code == "" {
				return fmt.Errorf("client: %s %s at naming node %s: %s: %w", method, path, addr, resp.Status, api.ErrInternal)
			}
			if e.Code == api.CodeUnavailable && ctx.Err() == nil {
				last = &e
				continue
			}
			return &e
		}
		err = read(resp.Body)
		resp.Body.Close()
		if err != nil {
			return fmt.Errorf("client: %s %s at naming node %s: %w", method, path, addr, err)
		}
		c.cur.Store(int64(idx))
		return nil
	}
	return last
}

func readMode(m []api.ReadMode) api.ReadMode {
	if len(m) == 0 {
		return api.ReadDefault
	}
	return m[0]
}
