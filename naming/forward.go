package naming

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"time"

	"github.com/mastership/mastership/naming/api"
	"github.com/mastership/mastership/naming/auth"
)

// Any naming node accepts every call. A follower forwards what needs the
// leader (every change, reads in the default and consistent modes,
// changes of the cluster and snapshots) to the leader, with the caller's
// token, and passes the leader's answer back as it came. Stale reads, and
// health, are answered where they arrive.

// ForwardedHeader marks a call a follower forwarded: the node that gets it
// answers it or fails, and never forwards it again.
const ForwardedHeader = "Mastership-Forwarded"

// LeaderHeader names the leader on a reply the leader gave (forwarded or
// not), so that a client of several nodes sends its next call there.
const LeaderHeader = "Mastership-Leader"

// leaderWait bounds how long a call waits for the cluster to have a leader
// before it fails with "unavailable".
func (n *Node) leaderWait() time.Duration {
	return max(5*n.cfg.ElectionTimeout, 2*time.Second)
}

// rpcNeedsLeader tells whether an RPC must be answered by the leader.
func (n *Node) rpcNeedsLeader(method string, body []byte) bool {
	switch method {
	case "join", "renew", "leave", "register", "recheck", "pause", "add-peer", "remove-peer":
		return true
	case "lookup", "status", "events":
		var m struct {
			Read api.ReadMode `codec:"rd"`
		}
		if api.Decode(body, &m) != nil {
			return false // the method refuses the body itself
		}
		return m.Read != api.ReadStale
	}
	return false
}

// jsonReadMode reads ?consistent or ?stale; for a mode that needs the
// leader on a follower it forwards the call and reports ok=false.
func (n *Node) jsonReadMode(w http.ResponseWriter, r *http.Request) (api.ReadMode, bool) {
	q := r.URL.Query()
	_, consistent := q["consistent"]
	_, stale := q["stale"]
	mode := api.ReadDefault
	switch {
	case consistent && stale:
		writeJSONError(w, api.Errorf(api.CodeInvalid, "ask for ?consistent or ?stale, not both"))
		return "", false
	case consistent:
		mode = api.ReadConsistent
	case stale:
		mode = api.ReadStale
	}
	if mode != api.ReadStale && n.forwardToLeader(w, r, nil) {
		return "", false
	}
	return mode, true
}

// forwardToLeader forwards r (with body, already read) to the leader when
// this node does not lead, and reports whether it did (the answer is
// written). It waits a bounded time for a leader; without one it answers
// "unavailable".
func (n *Node) forwardToLeader(w http.ResponseWriter, r *http.Request, body []byte) bool {
	if n.IsLeader() {
		return false
	}
	fail := func(err error) bool {
		if isRPC(r) {
			writeRPCError(w, err)
		} else {
			writeJSONError(w, err)
		}
		return true
	}
	if r.Header.Get(ForwardedHeader) != "" {
		return fail(n.leaderError())
	}
	leader, err := n.awaitLeader(r.Context())
	if err != nil {
		return fail(err)
	}
	if leader == "" {
		return false // this node took office meanwhile
	}
	var rb io.Reader = http.NoBody
	if body != nil {
		rb = bytes.NewReader(body)
	} else if r.Method != http.MethodGet {
		b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxSnapshotBytes))
		if err != nil {
			return fail(api.Errorf(api.CodeTooLarge, "%v", err))
		}
		rb = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(r.Context(), r.Method, n.creds.URL(leader, r.URL.RequestURI()), rb)
	if err != nil {
		return fail(api.Errorf(api.CodeInternal, "forward: %v", err))
	}
	for _, h := range []string{"Content-Type", "Authorization"} {
		if v := r.Header.Get(h); v != "" {
			req.Header.Set(h, v)
		}
	}
	req.Header.Set(ForwardedHeader, n.Self())
	resp, err := n.fwd.Do(req)
	if err != nil {
		return fail(api.Errorf(api.CodeUnavailable, "the naming leader %s is unreachable from %s: %v", leader, n.Self(), err))
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(io.LimitReader(resp.Body, MaxSnapshotBytes+1))
	if err != nil {
		return fail(api.Errorf(api.CodeUnavailable, "the naming leader %s: read reply: %v", leader, err))
	}
	for _, h := range []string{"Content-Type", LeaderHeader, IndexHeader} {
		if v := resp.Header.Get(h); v != "" {
			w.Header().Set(h, v)
		}
	}
	w.WriteHeader(resp.StatusCode)
	w.Write(out)
	return true
}

func isRPC(r *http.Request) bool { return len(r.URL.Path) > 5 && r.URL.Path[:5] == "/rpc/" }

// awaitLeader returns the leader's address, "" when this node leads, or an
// error once no leader appeared within leaderWait.
func (n *Node) awaitLeader(ctx context.Context) (string, error) {
	deadline := time.Now().Add(n.leaderWait())
	for {
		if n.IsLeader() {
			return "", nil
		}
		if addr := n.Leader(); addr != "" && addr != n.Self() {
			return addr, nil
		}
		if time.Now().After(deadline) {
			return "", api.Errorf(api.CodeUnavailable, "the naming cluster has no leader (waited %s); a majority of its voters must be up and reach each other", n.leaderWait())
		}
		select {
		case <-ctx.Done():
			return "", api.Errorf(api.CodeUnavailable, "waiting for a naming leader: %v", ctx.Err())
		case <-n.ctx.Done():
			return "", api.Errorf(api.CodeUnavailable, "naming node is shutting down")
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// newForwarder is the HTTP client of forwarded calls: the node's TLS, and
// the caller's token (copied per call), not the node's own.
func newForwarder(n *Node) *http.Client {
	return &http.Client{Timeout: 2*n.leaderWait() + time.Minute, Transport: auth.Creds{TLS: n.creds.TLS}.Transport(&http.Transport{
		DialContext:         n.dialer,
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     90 * time.Second,
	})}
}
