package client

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/mastership/mastership/agent/kv"
	"github.com/mastership/mastership/agent/wire"
	"github.com/mastership/mastership/naming/api"
	"github.com/mastership/mastership/naming/auth"
	nclient "github.com/mastership/mastership/naming/client"
)

// Errors of an operation, wrapped with what was attempted; match them with
// errors.Is.
var (
	// ErrStaleEpoch is wrapped when the last reply came from a master at an
	// epoch older than one the client has already seen. Such a reply is
	// never returned as a success; the operation is retried until its
	// deadline, and a write may or may not have taken effect.
	ErrStaleEpoch = errors.New("client: reply from a stale master")
	// ErrNoMaster is wrapped when neither the naming node nor any known
	// agent named a master the client could reach.
	ErrNoMaster = errors.New("client: no master found")
	// ErrUnknownGroup is wrapped when the naming node answered that it
	// knows no such group, for unknownGrace, and the client was given no
	// agent to ask: a definite answer, returned then rather than retried
	// to the deadline (the grace lets a group whose agents are starting
	// appear).
	ErrUnknownGroup = errors.New("client: group unknown to the naming node")
	// ErrRefused is wrapped when the request itself was refused: bad input
	// (empty or too long key, too long value, text that is not UTF-8),
	// checked by the client or the agent (400 invalid, 413 too-large), an
	// operation the state machine refused (for example a stale sequence),
	// or an agent whose state machine is not a kv (501 not-kv). The
	// operation did not take effect and is not retried.
	ErrRefused = errors.New("client: request refused")
)

// errClosed answers every operation after Close.
var errClosed = errors.New("client: closed")

// Back-off between attempts of one operation.
const (
	backoffStart = 10 * time.Millisecond
	backoffCap   = 200 * time.Millisecond
	// minAttempt is the least time one attempt gets (when the operation's
	// deadline allows it).
	minAttempt = 200 * time.Millisecond
	// maxKnownAgents bounds the agent addresses learned from the naming
	// node and from agents' member lists.
	maxKnownAgents = 64
)

// defaultTimeout is the bound of one operation when Config.Timeout is 0.
const defaultTimeout = 5 * time.Second

// Config says where a Client finds its group.
type Config struct {
	// Group is the group's name (required; see api.ValidateGroup).
	Group string
	// Naming is the naming node's host:port. It may be empty when Agents is
	// set.
	Naming string
	// Agents are API addresses (host:port) of agents of the group, any of
	// them, asked for the master when the naming node cannot tell. It may be
	// empty when Naming is set.
	Agents []string
	// ClientID identifies this client's writes to the agents'
	// deduplication. 0 means a random non-zero ID. Two clients must never
	// share an ID.
	ClientID uint64
	// Timeout bounds one operation including its retries (and the time a
	// write waits for this client's earlier writes). 0 means 5s; negative
	// is an error.
	Timeout time.Duration
	// Dial opens connections to agents and to the naming node. nil means a
	// net.Dialer; tests pass a fault-injecting dialer.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// Creds are presented to agents and the naming node: a token (the
	// client capability for kv, read for discovery) and, with mutual TLS,
	// a client certificate. The zero Creds is anonymous over plain TCP.
	Creds auth.Creds
}

// Reply is the answer to one operation.
type Reply struct {
	// OK tells whether the operation took effect: for a CAS, whether the
	// swap happened; a Get, Put or Delete that returns no error has OK
	// true (a Delete of an absent key too: use Found).
	OK bool
	// Found tells whether the key existed (before a Put, CAS or Delete).
	Found bool
	// Value is a Get's value, or the current value after a failed CAS; nil
	// when the key is absent.
	Value []byte
	// Epoch is the epoch of the master that answered (never older than any
	// epoch this client had seen before the reply).
	Epoch api.Epoch
	// Index is the log index of a write, or the applied index a Get read.
	Index uint64
	// Master is the ID of the master that answered.
	Master uint64
	// MasterAddr is the API address of the master that answered.
	MasterAddr string
}

// Client sends key-value operations to a group's master. It is safe for
// concurrent use by many goroutines; create one with New.
type Client struct {
	group   string
	id      uint64
	timeout time.Duration
	naming  *nclient.Client // nil when no naming node is configured
	agents  []string        // configured agents, read-only
	hc      *http.Client
	seq     atomic.Uint64
	closed  atomic.Bool
	// writes holds one token: one write (with its retries) at a time,
	// because the agents keep one sequence per client.
	writes chan struct{}

	creds auth.Creds

	mu       sync.Mutex // guards the fields below
	maxEpoch api.Epoch
	master   string          // cached master API address, "" when unknown
	known    map[string]bool // agent addresses learned along the way
	rand     *rand.Rand

	// redirects counts followed not-master hints, retries the back-offs
	// (for tests).
	redirects, retries atomic.Uint64
}

// New validates cfg and returns a Client. It does not contact the group.
func New(cfg Config) (*Client, error) {
	if err := api.ValidateGroup(cfg.Group); err != nil {
		return nil, fmt.Errorf("client: config: %w", err)
	}
	if cfg.Naming == "" && len(cfg.Agents) == 0 {
		return nil, fmt.Errorf("client: config: %w: neither Naming nor Agents is set", api.ErrInvalid)
	}
	if cfg.Timeout < 0 {
		return nil, fmt.Errorf("client: config: %w Timeout %s: want 0 (default %s) or more", api.ErrInvalid, cfg.Timeout, defaultTimeout)
	}
	for i, a := range cfg.Agents {
		if err := api.ValidateAddr(fmt.Sprintf("Agents[%d]", i), a); err != nil {
			return nil, fmt.Errorf("client: config: %w", err)
		}
	}
	c := &Client{group: cfg.Group, id: cfg.ClientID, timeout: cfg.Timeout, agents: append([]string(nil), cfg.Agents...),
		writes: make(chan struct{}, 1), known: map[string]bool{}}
	if c.timeout == 0 {
		c.timeout = defaultTimeout
	}
	var seed [16]byte
	if _, err := crand.Read(seed[:]); err != nil {
		return nil, fmt.Errorf("client: seed: %w", err)
	}
	for c.id == 0 {
		c.id = binary.LittleEndian.Uint64(seed[:8])
		if c.id == 0 {
			crand.Read(seed[:8])
		}
	}
	c.rand = rand.New(rand.NewSource(int64(binary.LittleEndian.Uint64(seed[8:]))))
	dial := cfg.Dial
	if dial == nil {
		dial = (&net.Dialer{Timeout: c.timeout}).DialContext
	}
	if cfg.Naming != "" {
		n, err := nclient.New(cfg.Naming, nclient.WithTimeout(c.timeout), nclient.WithDialer(dial), nclient.WithCreds(cfg.Creds))
		if err != nil {
			return nil, fmt.Errorf("client: config: Naming: %w", err)
		}
		c.naming = n
	}
	c.creds = cfg.Creds
	c.hc = &http.Client{Transport: cfg.Creds.Transport(&http.Transport{
		DialContext:         dial,
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     90 * time.Second,
	})}
	c.writes <- struct{}{}
	return c, nil
}

// MaxEpoch returns the newest epoch this client has seen in any reply. It
// never goes backwards.
func (c *Client) MaxEpoch() api.Epoch {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.maxEpoch
}

// Close releases idle connections. Operations after Close fail.
func (c *Client) Close() {
	c.closed.Store(true)
	c.hc.CloseIdleConnections()
	if c.naming != nil {
		c.naming.Close()
	}
}

// Put sets key to value.
func (c *Client) Put(ctx context.Context, key string, value []byte) (Reply, error) {
	v := string(value)
	return c.do(ctx, wire.KVRequest{Op: kv.KindPut, Key: key, Value: &v})
}

// Get reads key from the master. Reply.Found tells whether it exists.
func (c *Client) Get(ctx context.Context, key string) (Reply, error) {
	return c.do(ctx, wire.KVRequest{Op: kv.KindGet, Key: key})
}

// CAS sets key to value if it holds expect now (or, with expectAbsent, if it
// is absent; expect must then be empty). Reply.OK tells whether the swap
// happened; when it did not, Reply.Found and Reply.Value give the key's
// current state.
func (c *Client) CAS(ctx context.Context, key string, expect []byte, expectAbsent bool, value []byte) (Reply, error) {
	v := string(value)
	req := wire.KVRequest{Op: kv.KindCAS, Key: key, Value: &v, ExpectAbsent: expectAbsent}
	if !expectAbsent || len(expect) > 0 {
		e := string(expect)
		req.Expect = &e
	}
	return c.do(ctx, req)
}

// Delete removes key. Reply.Found tells whether it existed.
func (c *Client) Delete(ctx context.Context, key string) (Reply, error) {
	return c.do(ctx, wire.KVRequest{Op: kv.KindDel, Key: key})
}

// validate refuses what the agent would refuse anyway, and what JSON cannot
// carry unchanged.
func validate(req *wire.KVRequest) error {
	op := kv.Op{Kind: req.Op, Key: req.Key, ExpectAbsent: req.ExpectAbsent}
	if req.Value != nil {
		op.Value = []byte(*req.Value)
	}
	if req.Expect != nil {
		op.Expect = []byte(*req.Expect)
	}
	if err := kv.ValidateOp(op); err != nil {
		return err
	}
	for _, f := range []struct {
		name string
		s    *string
	}{{"key", &req.Key}, {"value", req.Value}, {"expected value", req.Expect}} {
		if f.s != nil && !utf8.ValidString(*f.s) {
			return fmt.Errorf("%s is not valid UTF-8 (the agent API carries text only)", f.name)
		}
	}
	return nil
}

// attempt is what one try of an operation got.
type attempt struct {
	rep      Reply
	done     bool   // rep is the answer
	err      error  // what went wrong, when not done
	fatal    bool   // err ends the operation (refusals)
	redirect string // a not-master hint to follow at once
	keep     bool   // the address may still be the master (not-serving, time-out)
}

// do runs one operation with retries until success, a refusal or the
// deadline.
func (c *Client) do(ctx context.Context, req wire.KVRequest) (Reply, error) {
	what := fmt.Sprintf("%s %q", req.Op, truncate(req.Key))
	if c.closed.Load() {
		return Reply{}, fmt.Errorf("%s: %w", what, errClosed)
	}
	if err := validate(&req); err != nil {
		return Reply{}, fmt.Errorf("%w: %s: %w", ErrRefused, what, err)
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	if req.Op != kv.KindGet {
		select {
		case <-c.writes:
		case <-ctx.Done():
			return Reply{}, fmt.Errorf("client: %s: waiting for this client's earlier writes: %w", what, context.Cause(ctx))
		}
		defer func() { c.writes <- struct{}{} }()
		req.Client, req.Seq = c.id, c.seq.Add(1)
		what = fmt.Sprintf("%s (client %d seq %d)", what, req.Client, req.Seq)
	}
	body, err := json.Marshal(&req)
	if err != nil {
		return Reply{}, fmt.Errorf("client: %s: encode: %w", what, err)
	}
	var (
		last      error               // what the last complete attempt got
		lastReply error               // what the last request sent got
		addr      string              // where to send next; "" means look up
		avoid     = map[string]bool{} // addresses that failed during this operation
		backoff   = backoffStart
		attempts  int
		hops      int       // not-master hints followed in a row
		unknown   time.Time // since when the naming node has known no such group
	)
	for {
		if ctx.Err() != nil {
			return Reply{}, c.deadlineError(ctx, what, attempts, last, lastReply)
		}
		actx, acancel := c.attemptContext(ctx)
		var a attempt
		if addr == "" {
			addr, err = c.findMaster(actx, avoid)
			if err != nil {
				a.err = err
			}
		}
		if addr != "" {
			attempts++
			a = c.send(actx, addr, body)
		}
		acancel()
		switch {
		case a.done:
			c.setMaster(addr)
			return a.rep, nil
		case a.fatal:
			return Reply{}, fmt.Errorf("%w (%s)", a.err, what)
		case errors.Is(a.err, ErrUnknownGroup):
			// A definite answer, but a group's agents may be joining
			// right now: it stands once it held for unknownGrace.
			if unknown.IsZero() {
				unknown = time.Now()
			} else if time.Since(unknown) >= unknownGrace {
				return Reply{}, fmt.Errorf("client: %s: %w", what, a.err)
			}
		default:
			unknown = time.Time{}
		}
		if ctx.Err() == nil || last == nil {
			// An attempt cut short by the operation's deadline says less
			// than the one before it.
			last = a.err
			if addr != "" {
				lastReply = a.err
			}
		}
		if a.redirect != "" && a.redirect != addr && hops < 3 {
			hops++
			c.redirects.Add(1)
			addr = a.redirect
			continue
		}
		hops = 0
		if addr != "" {
			if !a.keep {
				avoid[addr] = true
			}
			// Look again: the naming node or the agents may know better.
			c.forgetMaster(addr)
			addr = ""
		}
		c.retries.Add(1)
		if !c.sleep(ctx, backoff) {
			return Reply{}, c.deadlineError(ctx, what, attempts, last, lastReply)
		}
		backoff = min(2*backoff, backoffCap)
	}
}

// unknownGrace is how long the naming node may answer that it knows no
// such group before an operation stops on it (ErrUnknownGroup).
const unknownGrace = time.Second

// deadlineError says what the last attempt got when the deadline passed,
// and what the last request sent got when that attempt found no master.
func (c *Client) deadlineError(ctx context.Context, what string, attempts int, last, lastReply error) error {
	if last == nil {
		last = ErrNoMaster
	}
	if lastReply != nil && lastReply != last {
		return fmt.Errorf("client: %s: %d requests before the deadline; last attempt: %w; last reply: %w (%w)",
			what, attempts, last, lastReply, context.Cause(ctx))
	}
	return fmt.Errorf("client: %s: %d requests before the deadline; last: %w (%w)", what, attempts, last, context.Cause(ctx))
}

// attemptContext bounds one attempt to a third of the operation's time, so
// that a hung master leaves time to find another.
func (c *Client) attemptContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, max(c.timeout/3, minAttempt))
}

// sleep waits d/2 plus a random part of d/2, or until ctx is done.
func (c *Client) sleep(ctx context.Context, d time.Duration) bool {
	c.mu.Lock()
	d = d/2 + time.Duration(c.rand.Int63n(int64(d/2)+1))
	c.mu.Unlock()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// observe records epoch e and reports whether it is at least the newest
// seen so far, and that newest.
func (c *Client) observe(e api.Epoch) (fresh bool, newest api.Epoch) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e.Less(c.maxEpoch) {
		return false, c.maxEpoch
	}
	c.maxEpoch = e
	return true, e
}

func (c *Client) setMaster(addr string) {
	c.mu.Lock()
	c.master = addr
	c.mu.Unlock()
}

func (c *Client) forgetMaster(addr string) {
	c.mu.Lock()
	if c.master == addr {
		c.master = ""
	}
	c.mu.Unlock()
}

// send posts one request to addr and classifies the answer.
func (c *Client) send(ctx context.Context, addr string, body []byte) attempt {
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, c.creds.URL(addr, "/v1/kv"), bytes.NewReader(body))
	if err != nil {
		return attempt{err: fmt.Errorf("%w: agent %s: %w", ErrNoMaster, addr, err)}
	}
	hreq.Header.Set("Content-Type", "application/json")
	hresp, err := c.hc.Do(hreq)
	if err != nil {
		return attempt{err: fmt.Errorf("agent %s: %w", addr, errors.Join(api.ErrUnavailable, err))}
	}
	defer hresp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(hresp.Body, api.MaxMessageBytes+1))
	if err != nil {
		return attempt{err: fmt.Errorf("agent %s: read reply: %w", addr, errors.Join(api.ErrUnavailable, err))}
	}
	if st := hresp.StatusCode; st == http.StatusUnauthorized || st == http.StatusForbidden {
		// The caller's credentials, not the agent's mastership: no other
		// agent would answer otherwise.
		var e api.Error
		json.Unmarshal(b, &e)
		return attempt{fatal: true, err: fmt.Errorf("%w: agent %s: %s: %s", ErrRefused, addr, orStatus(string(e.Code), hresp.Status), e.Message)}
	}
	var resp wire.KVResponse
	if derr := json.Unmarshal(b, &resp); derr != nil {
		if hresp.StatusCode/100 == 4 && hresp.StatusCode != http.StatusMisdirectedRequest {
			return attempt{fatal: true, err: fmt.Errorf("%w: agent %s: %s%s", ErrRefused, addr, hresp.Status, plainText(b))}
		}
		return attempt{err: fmt.Errorf("agent %s: %s: undecodable reply: %v", addr, hresp.Status, derr)}
	}
	fresh, newest := c.observe(resp.Epoch)
	if !fresh {
		return attempt{err: fmt.Errorf("%w: agent %s answered %s at epoch %s, older than %s", ErrStaleEpoch, addr,
			hresp.Status, resp.Epoch, newest)}
	}
	switch st := hresp.StatusCode; {
	case st == http.StatusOK:
		if resp.Error != "" {
			// The state machine refused the operation; it changed nothing.
			return attempt{fatal: true, err: fmt.Errorf("%w: agent %s at epoch %s: %s", ErrRefused, addr, resp.Epoch, resp.Error)}
		}
		rep := Reply{OK: resp.OK, Found: resp.Found, Epoch: resp.Epoch, Index: resp.Index, Master: resp.Master, MasterAddr: addr}
		if resp.Value != nil {
			rep.Value = []byte(*resp.Value)
		}
		return attempt{done: true, rep: rep}
	case st == http.StatusMisdirectedRequest || resp.Code == wire.CodeNotMaster:
		err := fmt.Errorf("%w: agent %s is not master at epoch %s", ErrNoMaster, addr, resp.Epoch)
		if resp.MasterA != "" {
			err = fmt.Errorf("agent %s is not master at epoch %s; it names %d at %s", addr, resp.Epoch, resp.Master, resp.MasterA)
		}
		return attempt{err: err, redirect: resp.MasterA}
	case st == http.StatusBadRequest || st == http.StatusRequestEntityTooLarge || st == http.StatusNotImplemented:
		return attempt{fatal: true, err: fmt.Errorf("%w: agent %s: %s: %s", ErrRefused, addr, orStatus(resp.Code, hresp.Status), resp.Error)}
	case resp.Code == wire.CodeNotServing || resp.Code == wire.CodeTimeout:
		// Still the master as far as we know: not yet, or not at the
		// moment, serving.
		return attempt{keep: true, err: fmt.Errorf("agent %s: %s at epoch %s: %s", addr, resp.Code, resp.Epoch, resp.Error)}
	case st/100 == 4:
		return attempt{fatal: true, err: fmt.Errorf("%w: agent %s: %s: %s", ErrRefused, addr, orStatus(resp.Code, hresp.Status), resp.Error)}
	}
	return attempt{err: fmt.Errorf("agent %s: %s at epoch %s: %s", addr, orStatus(resp.Code, hresp.Status), resp.Epoch, resp.Error)}
}

func orStatus(code, status string) string {
	if code != "" {
		return code
	}
	return status
}

// truncate keeps error messages readable for long keys.
func truncate(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}
