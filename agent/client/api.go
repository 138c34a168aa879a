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
	"net/url"
	"strings"
	"time"

	"github.com/mastership/mastership/agent/wire"
	"github.com/mastership/mastership/naming/api"
	"github.com/mastership/mastership/naming/auth"
)

// API calls one agent's HTTP API (the endpoints package agent serves, with
// the shapes of package wire). It is the one client of that API: the
// command line, the demo and the naming node's probe use it, and Client
// uses the same shapes to find masters.
type API struct {
	addr     string
	hc       *http.Client
	creds    auth.Creds
	maxReply int64
}

// APIConfig configures an API.
type APIConfig struct {
	// Addr is the agent's API address, host:port.
	Addr string
	// Creds are the token and TLS presented to the agent.
	Creds auth.Creds
	// Timeout bounds each call; default 5s. Ignored with HTTP.
	Timeout time.Duration
	// Dial replaces the dialer; nil is a plain one. Ignored with HTTP.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// HTTP is a client to share (its transport must present Creds' TLS);
	// nil builds one.
	HTTP *http.Client
	// MaxReply bounds the bytes read of one reply; default 64 MiB.
	MaxReply int64
}

// DefaultMaxReply bounds what an API call reads of one reply.
const DefaultMaxReply = 64 << 20

// NewAPI validates cfg and returns the agent's API. It does not contact the
// agent.
func NewAPI(cfg APIConfig) (*API, error) {
	if err := api.ValidateAddr("agent", cfg.Addr); err != nil {
		return nil, err
	}
	if cfg.Timeout < 0 {
		return nil, fmt.Errorf("%w: timeout %s: want a positive duration", api.ErrInvalid, cfg.Timeout)
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 5 * time.Second
	}
	if cfg.MaxReply <= 0 {
		cfg.MaxReply = DefaultMaxReply
	}
	hc := cfg.HTTP
	if hc == nil {
		tr := &http.Transport{}
		if cfg.Dial != nil {
			tr.DialContext = cfg.Dial
		}
		hc = &http.Client{Timeout: cfg.Timeout, Transport: cfg.Creds.Transport(tr)}
	}
	return &API{addr: cfg.Addr, hc: hc, creds: cfg.Creds, maxReply: cfg.MaxReply}, nil
}

// Addr is the agent's API address.
func (a *API) Addr() string { return a.addr }

// StatusError is a reply with an HTTP status other than 200: the agent's
// error code and message, and the master it names when it is not master.
type StatusError struct {
	Addr       string
	Status     int
	Code       string
	Message    string
	Master     uint64
	MasterAddr string
}

func (e *StatusError) Error() string {
	msg := e.Message
	if msg == "" {
		msg = http.StatusText(e.Status)
	}
	if e.Code != "" && !strings.HasPrefix(msg, e.Code+":") {
		msg = e.Code + ": " + msg
	}
	if e.Master != 0 {
		msg += fmt.Sprintf(" (master is %d at %s)", e.Master, e.MasterAddr)
	}
	return fmt.Sprintf("agent %s: %s", e.Addr, msg)
}

// Call sends method path with in as its JSON body (nil: none) and returns
// the body of a 200 reply. Any other status is a *StatusError; a failed
// connection names the agent.
func (a *API) Call(ctx context.Context, method, path string, in any) ([]byte, error) {
	status, b, err := a.do(ctx, method, path, in)
	if err != nil {
		return nil, err
	}
	if status != http.StatusOK {
		e := &StatusError{Addr: a.addr, Status: status}
		var body wire.Error
		if json.Unmarshal(b, &body) == nil { // a body that is no error leaves the status text
			e.Code, e.Message, e.Master, e.MasterAddr = body.Code, body.Message, body.Master, body.MasterAddr
			if status == http.StatusNotFound && strings.HasPrefix(e.Message, "no such endpoint") {
				// Every agent has the endpoints this package calls.
				e.Message += " (is it an agent's API address? a naming node answers so; give the agent's, -agent)"
			}
		} else if text := plainText(b); text != "" {
			e.Message = http.StatusText(status) + text
		}
		return nil, e
	}
	return b, nil
}

// do sends the request and returns the reply's status and body.
func (a *API) do(ctx context.Context, method, path string, in any) (int, []byte, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return 0, nil, err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, a.creds.URL(a.addr, path), body)
	if err != nil {
		return 0, nil, fmt.Errorf("agent %s: %w", a.addr, err)
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
		if api.SpeaksNoHTTP(err) {
			return 0, nil, fmt.Errorf("agent %s unreachable: %w (it speaks no HTTP: the agent's gossip port? its API is another, -api)", a.addr, err)
		}
		return 0, nil, fmt.Errorf("agent %s unreachable: %w", a.addr, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, a.maxReply+1))
	if err != nil {
		return 0, nil, fmt.Errorf("agent %s: read reply: %w", a.addr, err)
	}
	if int64(len(b)) > a.maxReply {
		return 0, nil, fmt.Errorf("agent %s: %w: reply of %s %s over %d bytes", a.addr, api.ErrTooLarge, method, path, a.maxReply)
	}
	return resp.StatusCode, b, nil
}

// Get calls GET path and decodes the reply into out; it returns the reply
// as sent, for output as JSON.
func (a *API) Get(ctx context.Context, path string, out any) (json.RawMessage, error) {
	return a.callJSON(ctx, http.MethodGet, path, nil, out)
}

func (a *API) callJSON(ctx context.Context, method, path string, in, out any) (json.RawMessage, error) {
	b, err := a.Call(ctx, method, path, in)
	if err != nil {
		return nil, err
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return nil, fmt.Errorf("agent %s: reply of %s does not decode: %v", a.addr, path, err)
		}
	}
	return b, nil
}

// Role asks GET /v1/health (what "health"), /v1/role/master ("master") or
// /v1/role/backup ("backup"); a 503 is an answer (OK false, with its
// reason), not an error.
func (a *API) Role(ctx context.Context, what string) (wire.Role, error) {
	path := "/v1/health"
	if what != "health" {
		path = "/v1/role/" + what
	}
	status, b, err := a.do(ctx, http.MethodGet, path, nil)
	if err != nil {
		return wire.Role{}, err
	}
	var r wire.Role
	if status != http.StatusOK && status != http.StatusServiceUnavailable {
		return r, &StatusError{Addr: a.addr, Status: status}
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return r, fmt.Errorf("agent %s: reply of %s does not decode: %v", a.addr, path, err)
	}
	if r.OK != (status == http.StatusOK) {
		return r, fmt.Errorf("agent %s: %s answered %d with ok=%t", a.addr, path, status, r.OK)
	}
	return r, nil
}

// WatchInfo is a blocking GET /v1/info: it answers once the agent's role,
// epoch or master changed after index, or after wait.
func (a *API) WatchInfo(ctx context.Context, index uint64, wait time.Duration) (wire.Info, json.RawMessage, error) {
	var info wire.Info
	raw, err := a.Get(ctx, fmt.Sprintf("/v1/info?index=%d&wait=%s", index, wait), &info)
	return info, raw, err
}

// Switchover is POST /v1/switchover: the master moves mastership to to.
func (a *API) Switchover(ctx context.Context, req wire.SwitchoverRequest) (wire.Switchover, json.RawMessage, error) {
	var sw wire.Switchover
	raw, err := a.callJSON(ctx, http.MethodPost, "/v1/switchover", req, &sw)
	return sw, raw, err
}

// Info is GET /v1/info.
func (a *API) Info(ctx context.Context) (wire.Info, json.RawMessage, error) {
	var info wire.Info
	raw, err := a.Get(ctx, "/v1/info", &info)
	return info, raw, err
}

// Members is GET /v1/members: the agent's gossip view.
func (a *API) Members(ctx context.Context) ([]wire.Member, json.RawMessage, error) {
	var ms []wire.Member
	raw, err := a.Get(ctx, "/v1/members", &ms)
	return ms, raw, err
}

// Records is GET /v1/divergence: the divergence records the agent keeps.
func (a *API) Records(ctx context.Context) ([]wire.Record, json.RawMessage, error) {
	var recs []wire.Record
	raw, err := a.Get(ctx, "/v1/divergence", &recs)
	return recs, raw, err
}

// Record is GET /v1/divergence/{id}.
func (a *API) Record(ctx context.Context, id uint64) (wire.Record, json.RawMessage, error) {
	var rec wire.Record
	raw, err := a.Get(ctx, fmt.Sprintf("/v1/divergence/%d", id), &rec)
	return rec, raw, err
}

// RecordState is GET /v1/divergence/{id}/state: the snapshot a state
// record keeps (wire.Record.State), as the state machine wrote it. It
// takes the operator capability; a state over the API's MaxReply fails.
func (a *API) RecordState(ctx context.Context, id uint64) ([]byte, error) {
	return a.Call(ctx, http.MethodGet, fmt.Sprintf("/v1/divergence/%d/state", id), nil)
}

// Replay is POST /v1/divergence/{id}/replay: the record's write through the
// current master.
func (a *API) Replay(ctx context.Context, id uint64) (wire.KVResponse, json.RawMessage, error) {
	var r wire.KVResponse
	raw, err := a.callJSON(ctx, http.MethodPost, fmt.Sprintf("/v1/divergence/%d/replay", id), nil, &r)
	return r, raw, err
}

// Discard is DELETE /v1/divergence/{id}.
func (a *API) Discard(ctx context.Context, id uint64) (wire.Discarded, json.RawMessage, error) {
	var d wire.Discarded
	raw, err := a.callJSON(ctx, http.MethodDelete, fmt.Sprintf("/v1/divergence/%d", id), nil, &d)
	return d, raw, err
}

// Fault is POST /v1/fault (an agent started with -fault-control only).
func (a *API) Fault(ctx context.Context, req wire.FaultRequest) (json.RawMessage, error) {
	return a.callJSON(ctx, http.MethodPost, "/v1/fault", req, nil)
}

// Keyring is POST /v1/keyring: the operation on every agent the addressed
// one reaches, one result each.
func (a *API) Keyring(ctx context.Context, req wire.KeyringRequest) ([]wire.KeyringResult, json.RawMessage, error) {
	var rs []wire.KeyringResult
	raw, err := a.callJSON(ctx, http.MethodPost, "/v1/keyring", req, &rs)
	return rs, raw, err
}
