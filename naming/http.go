package naming

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/mastership/mastership/naming/api"
	"github.com/mastership/mastership/naming/auth"
)

// Content types of the two faces of the one listener: msgpack RPC for agents
// and tools under /rpc/, JSON for people and scripts under /v1/.
const (
	ContentTypeMsgpack  = "application/msgpack"
	ContentTypeJSON     = "application/json"
	ContentTypeSnapshot = "application/x-mastership-snapshot"
)

// IndexHeader carries the index of a blocking read's reply.
const IndexHeader = api.IndexHeader

func blockingQuery(r *http.Request) (uint64, time.Duration, error) {
	return api.ParseBlocking(r.URL.Query())
}

// MaxSnapshotBytes bounds a snapshot a node saves or takes to restore.
const MaxSnapshotBytes = 256 << 20

// Handler returns the node's HTTP handler: POST /rpc/{method} with msgpack
// bodies, and the JSON API under /v1/.
//
// With an ACL every call but /v1/health and /metrics needs a token (auth.BearerToken):
// join, renew, leave, register and recheck the agent capability (a manual
// register the operator capability), lookup, status, events and the JSON
// reads the read capability; the client capability grants lookup and a
// named group's status (a kv client finding its master).
func (n *Node) Handler() http.Handler {
	read := func(h http.HandlerFunc) http.HandlerFunc { return n.server.Require(auth.Read, h, writeJSONError) }
	mux := http.NewServeMux()
	mux.HandleFunc("POST /rpc/{method}", n.serveRPC)
	mux.HandleFunc("GET /v1/health", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, n.Health())
	})
	// Open, as /v1/health is: a scraper sends no token, and the metrics
	// tell counts, no group's name or member.
	mux.Handle("GET /metrics", n.metricsHandler())
	// The dashboard: its page and scripts are open (they hold no data);
	// what it shows comes from /v1/ui/, read like the rest of /v1/.
	mux.Handle("GET /ui/", uiHandler())
	mux.HandleFunc("GET /ui", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/ui/", http.StatusMovedPermanently) })
	mux.HandleFunc("GET /v1/ui/state", read(n.serveUIState))
	mux.HandleFunc("GET /v1/ui/stream", read(n.serveUIStream))
	if n.cfg.Pprof {
		auth.HandlePprof(mux, func(h http.HandlerFunc) http.HandlerFunc {
			return n.server.Require(auth.Operator, h, writeJSONError)
		})
	}
	mux.HandleFunc("GET /v1/groups", read(func(w http.ResponseWriter, r *http.Request) {
		mode, ok := n.jsonReadMode(w, r)
		if !ok {
			return
		}
		req := api.StatusRequest{After: r.URL.Query().Get("after"), Read: mode}
		if s := r.URL.Query().Get("limit"); s != "" {
			var err error
			if req.Limit, err = strconv.Atoi(s); err != nil {
				writeJSONError(w, api.Errorf(api.CodeInvalid, "limit %q: want a count", s))
				return
			}
		}
		st, err := n.Status(req)
		if err != nil {
			writeJSONError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, struct {
			Groups []api.GroupStatus `json:"groups"`
			Next   string            `json:"next"`
			More   bool              `json:"more"`
			api.ReadMeta
		}{st.Groups, st.Next, st.More, st.ReadMeta})
	}))
	mux.HandleFunc("GET /v1/groups/{group}", read(func(w http.ResponseWriter, r *http.Request) {
		mode, ok := n.jsonReadMode(w, r)
		if !ok {
			return
		}
		req := api.StatusRequest{Group: r.PathValue("group"), Read: mode}
		var err error
		if req.Index, req.Wait, err = blockingQuery(r); err != nil {
			writeJSONError(w, err)
			return
		}
		st, err := n.StatusContext(r.Context(), req)
		if err != nil {
			writeJSONError(w, err)
			return
		}
		w.Header().Set(IndexHeader, strconv.FormatUint(st.Index, 10))
		writeJSON(w, http.StatusOK, struct {
			api.GroupStatus
			Index uint64 `json:"index"`
			api.ReadMeta
		}{st.Groups[0], st.Index, st.ReadMeta})
	}))
	mux.HandleFunc("GET /v1/groups/{group}/events", read(func(w http.ResponseWriter, r *http.Request) {
		mode, ok := n.jsonReadMode(w, r)
		if !ok {
			return
		}
		req := api.EventsRequest{Group: r.PathValue("group"), Read: mode}
		q := r.URL.Query()
		var err error
		if s := q.Get("after"); s != "" {
			if req.After, err = strconv.ParseUint(s, 10, 64); err != nil {
				writeJSONError(w, api.Errorf(api.CodeInvalid, "after %q: want a sequence number", s))
				return
			}
		}
		if s := q.Get("limit"); s != "" {
			if req.Limit, err = strconv.Atoi(s); err != nil {
				writeJSONError(w, api.Errorf(api.CodeInvalid, "limit %q: want a count", s))
				return
			}
		}
		page, err := n.Events(req)
		if err != nil {
			writeJSONError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, struct {
			Events []api.Event `json:"events"`
			Next   uint64      `json:"next"`
			More   bool        `json:"more"`
			api.ReadMeta
		}{page.Events, page.Next, page.More, page.ReadMeta})
	}))
	mux.HandleFunc("GET /v1/peers", read(func(w http.ResponseWriter, r *http.Request) {
		ps, err := n.Peers()
		if err != nil {
			writeJSONError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, ps.Peers)
	}))
	operator := func(h http.HandlerFunc) http.HandlerFunc { return n.server.Require(auth.Operator, h, writeJSONError) }
	mux.HandleFunc("GET /v1/snapshot", operator(func(w http.ResponseWriter, r *http.Request) {
		if n.forwardToLeader(w, r, nil) {
			return
		}
		var buf bytes.Buffer
		if err := n.SaveSnapshot(&buf); err != nil {
			writeJSONError(w, err)
			return
		}
		w.Header().Set("Content-Type", ContentTypeSnapshot)
		w.WriteHeader(http.StatusOK)
		w.Write(buf.Bytes())
	}))
	mux.HandleFunc("PUT /v1/snapshot", operator(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxSnapshotBytes))
		if err != nil {
			writeJSONError(w, api.Errorf(api.CodeTooLarge, "snapshot: %v (at most %d bytes)", err, MaxSnapshotBytes))
			return
		}
		if n.forwardToLeader(w, r, b) {
			return
		}
		if err := n.RestoreSnapshot(b); err != nil {
			writeJSONError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]int{"restored_bytes": len(b)})
	}))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeJSONError(w, api.Errorf(api.CodeNotFound, "no such endpoint: %s %s", r.Method, r.URL.Path))
	})
	return mux
}

func (n *Node) serveRPC(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, api.MaxMessageBytes))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeRPCError(w, api.Errorf(api.CodeTooLarge, "request over %d bytes", api.MaxMessageBytes))
			return
		}
		writeRPCError(w, api.Errorf(api.CodeInvalid, "read request: %v", err))
		return
	}
	method := r.PathValue("method")
	if need, ok := rpcCapability[method]; ok {
		if err := n.server.Allowed(r, need...); err != nil {
			writeRPCError(w, err)
			return
		}
	}
	if n.rpcNeedsLeader(method, body) && n.forwardToLeader(w, r, body) {
		return
	}
	if n.IsLeader() {
		// Clients go straight to the leader next time.
		w.Header().Set(LeaderHeader, n.Self())
	}
	var resp any
	switch method {
	case "join":
		var req api.JoinRequest
		if err = api.Decode(body, &req); err == nil {
			resp, err = n.Join(req)
		}
	case "renew":
		var req api.RenewRequest
		if err = api.Decode(body, &req); err == nil {
			resp, err = n.Renew(req)
		}
	case "leave":
		var req api.LeaveRequest
		if err = api.Decode(body, &req); err == nil {
			err = n.Leave(req)
			resp = struct{}{}
		}
	case "register":
		var req api.RegisterRequest
		if err = api.Decode(body, &req); err == nil {
			// An agent registers itself; by hand, only an operator.
			need := auth.Agent
			if req.Manual {
				need = auth.Operator
			}
			err = n.server.Allowed(r, need)
			if err == nil {
				resp, err = n.Register(r.Context(), req)
			}
		}
	case "lookup":
		var req api.LookupRequest
		if err = api.Decode(body, &req); err == nil {
			resp, err = n.Lookup(req)
		}
	case "status":
		var req api.StatusRequest
		if err = api.Decode(body, &req); err == nil {
			// A client finds its own group's master; the list of every
			// group (names, members, addresses) is the read capability's.
			if req.Group == "" {
				if aerr := n.server.Allowed(r, auth.Read); aerr != nil {
					e := api.ToError(aerr)
					err = api.Errorf(e.Code, "the status of every group needs the read capability (a client token may name its group): %s", e.Message)
				}
			}
			if err == nil {
				resp, err = n.StatusContext(r.Context(), req)
			}
		}
	case "pause":
		var req api.PauseRequest
		if err = api.Decode(body, &req); err == nil {
			resp, err = n.Pause(req)
		}
	case "recheck":
		var req api.RecheckRequest
		if err = api.Decode(body, &req); err == nil {
			resp, err = n.Recheck(req)
		}
	case "events":
		var req api.EventsRequest
		if err = api.Decode(body, &req); err == nil {
			resp, err = n.Events(req)
		}
	case "health":
		resp = n.Health()
	case "peers":
		resp, err = n.Peers()
	case "add-peer", "remove-peer":
		var req api.PeerRequest
		if err = api.Decode(body, &req); err == nil {
			if method == "add-peer" {
				err = n.AddPeer(req)
			} else {
				err = n.RemovePeer(req)
			}
			resp = struct{}{}
		}
	default:
		err = api.Errorf(api.CodeNotFound, "no such method %q", method)
	}
	if err != nil {
		writeRPCError(w, err)
		return
	}
	out, err := api.Encode(resp)
	if err != nil {
		writeRPCError(w, err)
		return
	}
	w.Header().Set("Content-Type", ContentTypeMsgpack)
	w.WriteHeader(http.StatusOK)
	w.Write(out)
}

// rpcCapability is the capabilities each RPC method needs one of; health
// is open, and register needs agent or, by hand, operator. A kv client
// finds its group's master by lookup and status: client grants those too.
var rpcCapability = map[string][]auth.Capability{
	"join": {auth.Agent}, "renew": {auth.Agent}, "leave": {auth.Agent}, "recheck": {auth.Agent}, "pause": {auth.Operator}, // register: by its kind
	"lookup": auth.Discovery(), "status": auth.Discovery(), "events": {auth.Read}, "peers": {auth.Read},
	"add-peer": {auth.Operator}, "remove-peer": {auth.Operator},
}

func writeRPCError(w http.ResponseWriter, err error) {
	e := api.ToError(err)
	out, _ := api.Encode(e)
	w.Header().Set("Content-Type", ContentTypeMsgpack)
	w.WriteHeader(e.Code.HTTPStatus())
	w.Write(out)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", ContentTypeJSON)
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false) // "a>b" stays as written; the type is JSON, never HTML
	enc.Encode(v)
}

func writeJSONError(w http.ResponseWriter, err error) {
	e := api.ToError(err)
	writeJSON(w, e.Code.HTTPStatus(), e)
}

// Serve answers requests on ln until Close.
func (n *Node) Serve(ln net.Listener) error {
	n.mu.Lock()
	if n.ctx.Err() != nil {
		n.mu.Unlock()
		return ErrClosed
	}
	n.ln = ln
	n.srv = &http.Server{
		Handler:           n.Handler(),
		ReadHeaderTimeout: api.ReadHeaderTimeout,
		ReadTimeout:       api.ReadTimeout,
		IdleTimeout:       api.IdleTimeout,
		ErrorLog:          n.logger.StandardLogger(nil),
	}
	srv := n.srv
	n.mu.Unlock()
	n.logger.Info("serving", "addr", ln.Addr().String(), "max_conns", n.cfg.MaxConns, "tls", n.server.TLS != nil, "acl", !n.server.ACL.Open())
	limited := api.LimitListener(ln, n.cfg.MaxConns, func(addr net.Addr) {
		n.logger.Debug("connection refused: at the cap of open connections", "remote", addr, "max_conns", n.cfg.MaxConns)
	})
	// One listener: the mux sorts raft streams from HTTP.
	muxErr := make(chan error, 1)
	go func() { muxErr <- n.mux.serve(n.server.Listen(limited)) }()
	err := srv.Serve(&chanListener{m: n.mux, ch: n.mux.httpCh, addr: ln.Addr()})
	n.mux.close()
	ln.Close()
	if merr := <-muxErr; merr != nil && n.ctx.Err() == nil {
		return fmt.Errorf("naming: serve %s: %w", ln.Addr(), merr)
	}
	if err == nil || errors.Is(err, http.ErrServerClosed) || errors.Is(err, net.ErrClosed) {
		return nil
	}
	return fmt.Errorf("naming: serve %s: %w", ln.Addr(), err)
}

// Addr is the address the node serves on, once Serve has started.
func (n *Node) Addr() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.ln == nil {
		return ""
	}
	return n.ln.Addr().String()
}
