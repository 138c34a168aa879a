// Package client is the Go client of the naming node, for agents and tools.
//
// Usage:
//
//	c, err := client.New("127.0.0.1:7400")
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
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/mastership/mastership/naming/api"
	"github.com/mastership/mastership/naming/auth"
)

// Client talks to one naming node.
type Client struct {
	addr  string
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

// New returns a client of the naming node at addr (host:port).
func New(addr string, opts ...Option) (*Client, error) {
	if err := api.ValidateAddr("naming", addr); err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	o := options{timeout: 5 * time.Second}
	for _, f := range opts {
		f(&o)
	}
	if o.dial == nil {
		o.dial = (&net.Dialer{Timeout: o.timeout}).DialContext
	}
	return &Client{addr: addr, creds: o.creds, hc: &http.Client{
		Timeout: o.timeout,
		Transport: o.creds.Transport(&http.Transport{
			DialContext:         o.dial,
			MaxIdleConnsPerHost: 64,
			IdleConnTimeout:     90 * time.Second,
		}),
	}}, nil
}

// Addr is the node's address.
func (c *Client) Addr() string { return c.addr }

// Close releases idle connections.
func (c *Client) Close() { c.hc.CloseIdleConnections() }

func (c *Client) call(ctx context.Context, method string, req, resp any) error {
	body, err := api.Encode(req)
	if err != nil {
		return err
	}
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, c.creds.URL(c.addr, "/rpc/"+method), bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("client: %s: %w", method, err)
	}
	hreq.Header.Set("Content-Type", "application/msgpack")
	hresp, err := c.hc.Do(hreq)
	if err != nil {
		return fmt.Errorf("client: %s at naming node %s: %w", method, c.addr, errors.Join(api.ErrUnavailable, err))
	}
	defer hresp.Body.Close()
	out, err := io.ReadAll(io.LimitReader(hresp.Body, api.MaxMessageBytes+1))
	if err != nil {
		return fmt.Errorf("client: %s at naming node %s: read reply: %w", method, c.addr, errors.Join(api.ErrUnavailable, err))
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
			return fmt.Errorf("client: %s at naming node %s: %s %s: %w", method, c.addr, hresp.Status, text, api.ErrInternal)
		}
		return &e
	}
	if err := api.Decode(out, resp); err != nil {
		return fmt.Errorf("client: %s at naming node %s: %w", method, c.addr, err)
	}
	return nil
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

// AllStatus pages through the status of every group, sorted by name.
func (c *Client) AllStatus(ctx context.Context) ([]api.GroupStatus, error) {
	var all []api.GroupStatus
	after := ""
	for {
		page, err := c.Status(ctx, api.StatusRequest{After: after, Limit: api.MaxStatusPage})
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

// Recheck asks the node to re-check a group and trigger its members.
func (c *Client) Recheck(ctx context.Context, req api.RecheckRequest) (resp api.RecheckResponse, err error) {
	return resp, c.call(ctx, "recheck", &req, &resp)
}

// Events returns one page of a group's history.
func (c *Client) Events(ctx context.Context, req api.EventsRequest) (resp api.EventsResponse, err error) {
	return resp, c.call(ctx, "events", &req, &resp)
}

// AllEvents pages through a group's whole history after seq after.
func (c *Client) AllEvents(ctx context.Context, group string, after uint64) ([]api.Event, error) {
	var all []api.Event
	for {
		page, err := c.Events(ctx, api.EventsRequest{Group: group, After: after, Limit: 1000})
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

// Health asks whether the node is up.
func (c *Client) Health(ctx context.Context) (resp api.HealthResponse, err error) {
	return resp, c.call(ctx, "health", &struct{}{}, &resp)
}
