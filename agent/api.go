package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/mastership/mastership/agent/core"
	"github.com/mastership/mastership/agent/kv"
	"github.com/mastership/mastership/agent/rlog"
	"github.com/mastership/mastership/agent/store"
	"github.com/mastership/mastership/agent/wire"
	"github.com/mastership/mastership/gossip"
	"github.com/mastership/mastership/naming/api"
	"github.com/mastership/mastership/naming/auth"
)

// The agent's HTTP API, on its API address (shared with message streams);
// the JSON shapes are package wire's:
//
//	GET  /v1/health                 wire.Role: 200 running and not quarantined, else 503 (no token needed)
//	GET  /metrics                   Prometheus text (no token needed; metrics.go)
//	GET  /debug/pprof/...           Go's profiler (only with -pprof; operator)
//	GET  /v1/role/master            wire.Role: 200 on the serving master only, else 503 (no token needed)
//	GET  /v1/role/backup            wire.Role: 200 on a caught-up back-up of the retained master (no token needed)
//	GET  /v1/info                   wire.Info
//	GET  /v1/members                []wire.Member (the gossip view)
//	POST /v1/kv                     wire.KVRequest -> wire.KVResponse (master only; ?forward=1 forwards; 501 not-kv
//	                                without a KVStateMachine, as replay)
//	GET  /v1/divergence             []wire.Record
//	GET  /v1/divergence/{id}        wire.Record
//	GET  /v1/divergence/{id}/state  a state record's snapshot (octet-stream)
//	POST /v1/divergence/{id}/replay wire.KVResponse
//	DELETE /v1/divergence/{id}      wire.Discarded
//	POST /v1/switchover             wire.SwitchoverRequest -> wire.Switchover (master only; operator)
//	POST /v1/fault                  wire.FaultRequest (only with -fault-control)
//	POST /v1/keyring                wire.KeyringRequest -> []wire.KeyringResult
//	POST /rpc/notify                api.Notify (msgpack): the naming node's trigger
//	GET  /rpc/state                 State (msgpack): snapshot and log suffix
//	POST /rpc/hashes                HashesRequest -> HashesResponse (msgpack)

// CheckReporter is implemented by a Monitor that reports its last check.
type CheckReporter interface {
	LastCheck() *wire.Check
	LastAction() *wire.Check
	Counters() (checks, recoveries uint64)
}

// handler is the API. With an ACL every endpoint but /v1/health, the role
// endpoints and /metrics needs a token with the capability named here
// (naming/auth).
func (a *Agent) handler() http.Handler {
	jsonErr := func(w http.ResponseWriter, err error) { e := api.ToError(err); writeJSON(w, e.Code.HTTPStatus(), e) }
	msgpackErr := func(w http.ResponseWriter, err error) { e := api.ToError(err); writeMsgpack(w, e.Code.HTTPStatus(), e) }
	need := func(c auth.Capability, h http.HandlerFunc) http.HandlerFunc { return a.server.Require(c, h, jsonErr) }
	agentOnly := func(h http.HandlerFunc) http.HandlerFunc { return a.server.Require(auth.Agent, h, msgpackErr) }
	mux := http.NewServeMux()
	// The role endpoints answer without a token, as /v1/health does: a
	// load balancer's health check sends none, and they tell only what
	// gossip announces anyway (role, epoch, master).
	mux.HandleFunc("GET /v1/health", func(w http.ResponseWriter, r *http.Request) { a.serveRole(w, "health") })
	mux.HandleFunc("GET /v1/role/master", func(w http.ResponseWriter, r *http.Request) { a.serveRole(w, "master") })
	mux.HandleFunc("GET /v1/role/backup", func(w http.ResponseWriter, r *http.Request) { a.serveRole(w, "backup") })
	// Metrics are open too, as a scraper expects (they tell no key, value
	// or secret).
	mux.Handle("GET /metrics", a.metrics.handler(a.opts.Metrics))
	if a.cfg.Pprof {
		auth.HandlePprof(mux, func(h http.HandlerFunc) http.HandlerFunc { return need(auth.Operator, h) })
	}
	discovery := func(h http.HandlerFunc) http.HandlerFunc { return a.server.RequireAny(auth.Discovery(), h, jsonErr) }
	mux.HandleFunc("GET /v1/info", discovery(a.serveInfo))
	mux.HandleFunc("GET /v1/members", discovery(func(w http.ResponseWriter, r *http.Request) { writeJSON(w, 200, a.MembersJSON()) }))
	mux.HandleFunc("POST /v1/kv", need(auth.Client, a.serveKV))
	mux.HandleFunc("GET /v1/divergence", need(auth.Read, a.serveDivergenceList))
	mux.HandleFunc("GET /v1/divergence/{id}", need(auth.Read, a.serveDivergenceShow))
	mux.HandleFunc("GET /v1/divergence/{id}/state", need(auth.Operator, a.serveDivergenceState))
	mux.HandleFunc("POST /v1/divergence/{id}/replay", need(auth.Operator, a.serveDivergenceReplay))
	mux.HandleFunc("DELETE /v1/divergence/{id}", need(auth.Operator, a.serveDivergenceDiscard))
	mux.HandleFunc("POST /v1/switchover", need(auth.Operator, a.serveSwitchover))
	mux.HandleFunc("POST /v1/fault", need(auth.Operator, a.serveFault))
	mux.HandleFunc("POST /v1/keyring", need(auth.Operator, a.serveKeyring))
	mux.HandleFunc("POST /rpc/notify", agentOnly(a.serveNotify))
	mux.HandleFunc("GET /rpc/state", agentOnly(a.serveState))
	mux.HandleFunc("POST /rpc/hashes", agentOnly(a.serveHashes))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 404, api.Errorf(api.CodeNotFound, "no such endpoint: %s %s", r.Method, r.URL.Path))
	})
	return mux
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false) // "a>b" stays as written; the type is JSON, never HTML
	enc.Encode(v)
}

func writeMsgpack(w http.ResponseWriter, status int, v any) {
	b, err := api.Encode(v)
	if err != nil {
		status, b = 500, nil
	}
	w.Header().Set("Content-Type", "application/msgpack")
	w.WriteHeader(status)
	w.Write(b)
}

func readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, api.MaxMessageBytes))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, api.Errorf(api.CodeTooLarge, "request over %d bytes", api.MaxMessageBytes)
		}
		return nil, api.Errorf(api.CodeInvalid, "read request: %v", err)
	}
	return b, nil
}

// Info describes the agent, as `mastership info` shows it.
func (a *Agent) Info() wire.Info {
	a.mu.Lock()
	st, index := a.status, a.index
	a.mu.Unlock()
	info := wire.Info{Index: index, ID: a.cfg.ID, Group: a.cfg.Group, Role: st.Role.String(), Epoch: st.Epoch,
		Master: st.Master, Applied: st.Applied, Commit: st.Commit, Last: st.Last, Digest: st.Digest.String(),
		Priority: a.cfg.Priority, Mode: a.cfg.Mode, Serving: st.Serving, Refused: st.Refused + a.refusedOutside.Load(), Transfer: st.Transfer, API: a.advertisedAPI(),
		Pinned: st.Pinned, HandoverHeld: st.HandoverHeld}
	if a.gossip != nil {
		info.Gossip = a.gossip.LocalAddr()
	}
	if p := a.joinProof.Load(); p != nil {
		info.JoinProof = *p
	}
	info.Log = &wire.LogInfo{SnapshotIndex: st.SnapshotIndex, Snapshots: st.Snapshots, First: st.LogBase + 1,
		Entries: st.LogEntries, DataBytes: store.DirBytes(a.dataDir())}
	if cr, ok := a.opts.Monitor.(CheckReporter); ok && a.opts.Monitor != nil {
		if c := cr.LastCheck(); c != nil {
			info.LastCheck = c
			info.Trigger, info.Decision, info.Recovery = c.Trigger, c.Decision, c.Recovery
		}
		info.LastAction = cr.LastAction()
		checks, recs := cr.Counters()
		info.Monitor = &wire.Counters{Checks: checks, Recoveries: recs}
	}
	info.Service = a.ServiceHealth()
	info.Paused = a.Paused()
	if a.hooks.Enabled() || a.gated() {
		h := a.hooks.Stats()
		info.Hooks = &h
	}
	return info
}

// serveInfo is GET /v1/info, and with ?index=N&wait=D a blocking read:
// it answers once the role, epoch or master changed after index N. A
// token with the client capability and not read gets it without the
// hooks.
func (a *Agent) serveInfo(w http.ResponseWriter, r *http.Request) {
	index, wait, err := api.ParseBlocking(r.URL.Query())
	if err != nil {
		e := api.ToError(err)
		writeJSON(w, e.Code.HTTPStatus(), e)
		return
	}
	if r.URL.Query().Has("index") || wait > 0 {
		if wait == 0 {
			wait = api.DefaultWait
		}
		a.WaitChange(r.Context(), index, wait)
	}
	info := a.Info()
	if a.server.Allowed(r, auth.Read) != nil {
		// A client token (an application finding the master): the hooks'
		// paths and the tail of their stderr are the operator's to read.
		info.Hooks = nil
	}
	w.Header().Set(api.IndexHeader, strconv.FormatUint(info.Index, 10))
	writeJSON(w, 200, info)
}

// Role answers the role endpoints: whether this agent is what asks
// (ok), and why not.
func (a *Agent) Role(what string) wire.Role {
	st := a.Status()
	r := wire.Role{ID: a.cfg.ID, Group: a.cfg.Group, Role: st.Role.String(), Epoch: st.Epoch, Master: st.Master, Serving: st.Serving}
	if st.Master != 0 {
		if st.Master == a.cfg.ID {
			r.MasterAddr = a.advertisedAPI()
		} else {
			r.MasterAddr = a.PeerAPI(st.Master)
		}
	}
	retained, checked := uint64(0), false
	if cr, ok := a.opts.Monitor.(CheckReporter); ok && a.opts.Monitor != nil {
		if c := cr.LastCheck(); c != nil {
			retained, checked = c.Retained, true
		}
	}
	switch what {
	case "master":
		switch {
		case st.Role != api.RoleMaster:
			r.Reason = "not the master: " + st.Role.String()
		case !st.Serving:
			r.Reason = "master, but not serving yet"
		default:
			r.OK = true
		}
	case "backup":
		switch {
		case st.Role != api.RoleBackup || st.Master == 0:
			r.Reason = "not a back-up of a master: " + st.Role.String()
		case !st.CaughtUp:
			r.Reason = fmt.Sprintf("a back-up of %d, not caught up", st.Master)
		case checked && retained != st.Master:
			r.Reason = fmt.Sprintf("a back-up of %d, but the naming node retains %d", st.Master, retained)
		default:
			r.OK = true
		}
	default: // health
		switch {
		case a.ctx.Err() != nil:
			r.Reason = "stopping"
		case a.storageFailed():
			r.Reason = "storage failed"
		case st.Role == api.RoleQuarantined:
			r.Reason = "quarantined: recovery failed; it serves nothing until a later check"
		default:
			r.OK = true
		}
	}
	return r
}

func (a *Agent) serveRole(w http.ResponseWriter, what string) {
	r := a.Role(what)
	status := http.StatusOK
	if !r.OK {
		status = http.StatusServiceUnavailable
	}
	writeJSON(w, status, r)
}

// MembersJSON is the gossip view as `mastership members` shows it. Only a
// member gossip holds alive has a role: a suspect or dead one shows
// "unknown", with the role it last claimed beside its health, so that a
// dead ex-master never reads as master. Followed marks the master this
// agent itself follows.
func (a *Agent) MembersJSON() []wire.Member {
	out := []wire.Member{}
	followed := a.Status().Master
	for _, m := range a.Members() {
		role := m.Meta.Role.String()
		if m.Health != gossip.HealthAlive {
			role = api.RoleUnknown.String()
		}
		out = append(out, wire.Member{ID: m.Meta.ID, Group: m.Meta.Group, Addr: m.Addr, API: m.Meta.API,
			Role: role, LastRole: m.Meta.Role.String(), Epoch: m.Meta.Epoch, Master: m.Meta.Master, Health: m.Health.String(), Service: m.Meta.Service,
			Followed: m.Meta.Group == a.cfg.Group && followed != 0 && m.Meta.ID == followed})
	}
	return out
}

// codeNotKV is the code of ErrNotKV's reply.
const codeNotKV = "not-kv"

// kvError maps an error to an HTTP status and a wire.KVResponse.
func (a *Agent) kvError(w http.ResponseWriter, err error) {
	st := a.Status()
	resp := wire.KVResponse{Error: err.Error(), Epoch: st.Epoch}
	status := 400
	switch {
	case errors.Is(err, core.ErrNotMaster):
		status, resp.Code = http.StatusMisdirectedRequest, wire.CodeNotMaster
		if st.Master != 0 && st.Master != a.cfg.ID {
			resp.Master, resp.MasterA = st.Master, a.PeerAPI(st.Master)
		}
	case errors.Is(err, core.ErrNotServing):
		status, resp.Code = http.StatusServiceUnavailable, wire.CodeNotServing
	case errors.Is(err, context.DeadlineExceeded):
		status, resp.Code = http.StatusGatewayTimeout, wire.CodeTimeout
	case errors.Is(err, ErrStopped):
		status, resp.Code = http.StatusServiceUnavailable, string(api.CodeUnavailable)
	case errors.Is(err, ErrNotKV):
		status, resp.Code = http.StatusNotImplemented, codeNotKV
	default:
		e := api.ToError(err)
		status, resp.Code = e.Code.HTTPStatus(), string(e.Code)
	}
	writeJSON(w, status, resp)
}

func (a *Agent) serveKV(w http.ResponseWriter, r *http.Request) {
	if _, ok := a.sm.(KVStateMachine); !ok {
		a.kvError(w, ErrNotKV)
		return
	}
	body, err := readBody(w, r)
	if err != nil {
		a.kvError(w, err)
		return
	}
	// JSON carries text: bytes that are not UTF-8 would be silently
	// replaced by the decoder, so they are refused instead.
	if !utf8.Valid(body) {
		a.kvError(w, api.Errorf(api.CodeInvalid, "kv request: not UTF-8 text; keys and values are text on the JSON API"))
		return
	}
	var req wire.KVRequest
	if err := decodeJSON(body, &req, "kv request"); err != nil {
		a.kvError(w, err)
		return
	}
	op := kv.Op{Kind: req.Op, Key: req.Key, ExpectAbsent: req.ExpectAbsent}
	if req.Value != nil {
		op.Value = []byte(*req.Value)
	}
	if req.Expect != nil {
		op.Expect = []byte(*req.Expect)
	}
	if err := kv.ValidateOp(op); err != nil {
		a.kvError(w, api.Errorf(api.CodeInvalid, "%v", err))
		return
	}
	if len(op.Key) > a.cfg.MaxKeyBytes || len(op.Value) > a.cfg.MaxValueBytes || len(op.Expect) > a.cfg.MaxValueBytes {
		a.kvError(w, api.Errorf(api.CodeTooLarge, "key of %d bytes or value of %d bytes over the limits %d and %d",
			len(op.Key), max(len(op.Value), len(op.Expect)), a.cfg.MaxKeyBytes, a.cfg.MaxValueBytes))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 2*a.cfg.WriteTimeout+time.Second)
	defer cancel()
	resp, err := a.Execute(ctx, op, req.Client, req.Seq)
	if errors.Is(err, core.ErrNotMaster) && r.URL.Query().Get("forward") == "1" {
		a.forward(w, r, body)
		return
	}
	if err != nil {
		a.kvError(w, err)
		return
	}
	writeJSON(w, 200, resp)
}

// forward sends a request to the master and relays its answer.
func (a *Agent) forward(w http.ResponseWriter, r *http.Request, body []byte) {
	st := a.Status()
	addr := a.PeerAPI(st.Master)
	if st.Master == 0 || addr == "" {
		a.kvError(w, core.ErrNotMaster)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 2*a.cfg.WriteTimeout+time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "POST", a.creds.URL(addr, "/v1/kv"), bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	resp, err := a.peerClient().Do(req)
	if err != nil {
		a.kvError(w, api.Errorf(api.CodeUnavailable, "forward to master %d at %s: %v", st.Master, addr, err))
		return
	}
	defer resp.Body.Close()
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(resp.StatusCode)
	io.Copy(w, io.LimitReader(resp.Body, api.MaxMessageBytes))
}

// Execute runs one kv operation through the master: reads from the state
// machine when the core allows it, everything else through the log. The
// state machine must be a KVStateMachine (else ErrNotKV).
func (a *Agent) Execute(ctx context.Context, op kv.Op, clientID, seq uint64) (wire.KVResponse, error) {
	store, ok := a.sm.(KVStateMachine)
	if !ok {
		return wire.KVResponse{}, ErrNotKV
	}
	if op.Kind == kv.KindGet && clientID == 0 {
		var resp wire.KVResponse
		var rerr error
		err := a.do(func() {
			a.flushForRead()
			if rerr = a.node.ReadIndex(); rerr != nil {
				return
			}
			v, found := store.Get(op.Key)
			resp = wire.KVResponse{OK: true, Found: found, Epoch: a.node.Epoch(), Index: a.node.Status().Applied, Master: a.cfg.ID}
			if found {
				s := string(v)
				resp.Value = &s
			}
		})
		if err == nil {
			err = rerr
		}
		return resp, err
	}
	b, err := kv.EncodeOp(op)
	if err != nil {
		return wire.KVResponse{}, api.Errorf(api.CodeInvalid, "%v", err)
	}
	res, err := a.Propose(ctx, clientID, seq, b)
	if err != nil {
		return wire.KVResponse{}, err
	}
	resp := wire.KVResponse{OK: res.Result.Err == "" && (op.Kind != kv.KindCAS || res.Result.OK), Found: res.Result.Found,
		Error: res.Result.Err, Epoch: res.Epoch, Index: res.Index, Master: a.cfg.ID}
	if res.Result.Value != nil || (op.Kind == kv.KindGet && res.Result.Found) {
		s := string(res.Result.Value)
		resp.Value = &s
	}
	return resp, nil
}

// Propose appends an encoded operation and waits until it applied.
func (a *Agent) Propose(ctx context.Context, clientID, seq uint64, op []byte) (res core.Result, err error) {
	start := time.Now()
	defer func() {
		if !errors.Is(err, core.ErrNotMaster) {
			a.metrics.observeWrite(start, err)
		}
	}()
	ch := make(chan core.Result, 1)
	var perr error
	err = a.do(func() {
		if sc, ok := a.sm.(rlog.SeqChecker); ok {
			if perr = sc.CheckSeq(clientID, seq); perr != nil {
				perr = api.Errorf(api.CodeInvalid, "%v", perr)
				return
			}
		}
		a.nextRef++
		ref := a.nextRef
		if perr = a.node.Propose(ref, clientID, seq, op); perr == nil {
			a.waiters[ref] = ch
		}
	})
	if err == nil {
		err = perr
	}
	if err != nil {
		return core.Result{}, err
	}
	select {
	case r := <-ch:
		return r, r.Err
	case <-ctx.Done():
		return core.Result{}, fmt.Errorf("write not acknowledged in time: %w", ctx.Err())
	}
}

// maxNotifyReason bounds a trigger's reason, which the self-monitor keeps
// with its pending events (the naming node's are a few words).
const maxNotifyReason = 256

func (a *Agent) serveNotify(w http.ResponseWriter, r *http.Request) {
	body, err := readBody(w, r)
	if err != nil {
		writeMsgpack(w, api.ToError(err).Code.HTTPStatus(), api.ToError(err))
		return
	}
	var n api.Notify
	if err := api.Decode(body, &n); err != nil {
		writeMsgpack(w, 400, api.ToError(err))
		return
	}
	if n.Group != a.cfg.Group {
		writeMsgpack(w, 400, api.Errorf(api.CodeInvalid, "notification for group %q; this agent is in %q", n.Group, a.cfg.Group))
		return
	}
	if len(n.Reason) > maxNotifyReason {
		writeMsgpack(w, 400, api.Errorf(api.CodeInvalid, "notification reason of %d bytes, limit %d", len(n.Reason), maxNotifyReason))
		return
	}
	if !utf8.ValidString(n.Reason) {
		writeMsgpack(w, 400, api.Errorf(api.CodeInvalid, "notification reason is not UTF-8 text"))
		return
	}
	if n.Master != nil {
		if err := api.CheckTerm(n.Master.Epoch.Term, a.Status().MaxTerm); err != nil {
			a.noteRefused("naming node trigger", err)
			writeMsgpack(w, 400, api.ToError(err))
			return
		}
	}
	a.logger.Debug("naming node trigger", "reason", n.Reason, "seq", n.Seq)
	if a.opts.Monitor != nil {
		detail := "no master registered"
		if n.Master != nil {
			detail = fmt.Sprintf("retained %d at epoch %s", n.Master.ID, n.Master.Epoch)
		}
		a.opts.Monitor.Event("naming-"+n.Reason, detail)
	}
	writeMsgpack(w, 200, struct{}{})
}

// State is a replica's state for download (figure 10, act 1020): the state
// machine's snapshot at base, the log after it, and the digest to verify.
type State struct {
	Snapshot []byte       `codec:"s"`
	Base     rlog.Pos     `codec:"b"`
	Entries  []rlog.Entry `codec:"e"`
	Digest   rlog.Digest  `codec:"d"`
	Epoch    api.Epoch    `codec:"p"`
	Master   uint64       `codec:"m"`
	Role     api.Role     `codec:"r"`
	Commit   uint64       `codec:"c"`
}

// LocalState captures this agent's state on its loop goroutine.
func (a *Agent) LocalState() (State, error) {
	var st State
	var serr error
	err := a.do(func() {
		a.flushForRead() // a download holds only what is durable here
		st, serr = CaptureState(a.node, a.sm)
	})
	if err == nil {
		err = serr
	}
	return st, err
}

// CaptureState is the state an agent serves for download (figure 10, act
// 1020), shared by the runtime (LocalState) and the simulator: sm's
// snapshot at its applied index, n's log after it, the digest to verify,
// and n's role, epoch, master and commit. sm is n's state machine; the
// caller owns n (its loop).
func CaptureState(n *core.Node, sm rlog.StateMachine) (State, error) {
	snap, err := sm.Snapshot()
	if err != nil {
		return State{}, err
	}
	d := sm.Digest()
	base, err := n.Log().PosAt(d.Index)
	if err != nil {
		return State{}, err
	}
	// Only what is stored: a master's entries that wait for a later Ready
	// (core.Node.Ready) are not durable here yet.
	ents, err := n.Log().Slice(d.Index+1, max(n.Stored(), d.Index)+1)
	if err != nil {
		return State{}, err
	}
	s := n.Status()
	return State{Snapshot: snap, Base: base, Entries: ents, Digest: d, Epoch: s.Epoch, Master: s.Master, Role: s.Role, Commit: s.Commit}, nil
}

func (a *Agent) serveState(w http.ResponseWriter, r *http.Request) {
	st, err := a.LocalState()
	if err != nil {
		writeMsgpack(w, 500, api.ToError(err))
		return
	}
	writeMsgpack(w, 200, &st)
}

// HashesRequest asks for chain hashes at indices (fork search).
type HashesRequest struct {
	Indices []uint64 `codec:"i"`
}

// HashesResponse answers with the log's span and the hashes it holds.
type HashesResponse struct {
	// Base is the log's base (its snapshot's point), First its index.
	Base   rlog.Pos   `codec:"b"`
	First  uint64     `codec:"f"`
	Last   uint64     `codec:"l"`
	Hashes [][32]byte `codec:"h"`
	Held   []bool     `codec:"o"`
}

func (a *Agent) serveHashes(w http.ResponseWriter, r *http.Request) {
	body, err := readBody(w, r)
	if err != nil {
		writeMsgpack(w, 400, api.ToError(err))
		return
	}
	var req HashesRequest
	if err := api.Decode(body, &req); err != nil || len(req.Indices) > 4096 {
		writeMsgpack(w, 400, api.Errorf(api.CodeInvalid, "hashes request: %v", err))
		return
	}
	var resp HashesResponse
	a.do(func() {
		l := a.node.Log()
		resp.First, resp.Last, _ = l.Span()
		resp.Base = l.Base()
		for _, i := range req.Indices {
			h, ok, _ := l.HashAt(i)
			resp.Hashes = append(resp.Hashes, h)
			resp.Held = append(resp.Held, ok)
		}
	})
	writeMsgpack(w, 200, &resp)
}

func parseID(w http.ResponseWriter, r *http.Request) (uint64, bool) {
	id, err := strconv.ParseUint(r.PathValue("id"), 10, 64)
	if err != nil {
		writeJSON(w, 400, api.Errorf(api.CodeInvalid, "record id %q: want a number", r.PathValue("id")))
		return 0, false
	}
	return id, true
}

// Get reads a key from the local state machine (tests and tools; not a
// linearizable read). A state machine that is not a KVStateMachine holds
// no key.
func (a *Agent) Get(key string) (string, bool) {
	s, ok := a.sm.(KVStateMachine)
	if !ok {
		return "", false
	}
	var v []byte
	var found bool
	a.do(func() { v, found = s.Get(key) })
	return string(v), found
}

// decodeJSON decodes one JSON request body into v: unknown fields and
// anything after the object are refused, as invalid (what names the
// request in the error).
func decodeJSON(body []byte, v any, what string) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return api.Errorf(api.CodeInvalid, "%s: %v", what, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return api.Errorf(api.CodeInvalid, "%s: data after the JSON object", what)
	}
	return nil
}

// dataDir is the directory the agent's storage keeps its files in, or ""
// for storage in memory.
func (a *Agent) dataDir() string {
	if d, ok := a.storage.(interface{ Dir() string }); ok {
		return d.Dir()
	}
	return a.cfg.DataDir
}
