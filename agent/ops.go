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

	"github.com/mastership/mastership/agent/core"
	"github.com/mastership/mastership/agent/kv"
	"github.com/mastership/mastership/agent/store"
	"github.com/mastership/mastership/agent/wire"
	"github.com/mastership/mastership/naming/api"
)

func (a *Agent) serveDivergenceList(w http.ResponseWriter, r *http.Request) {
	recs, err := a.storage.Records()
	if err != nil {
		writeJSON(w, 500, api.ToError(err))
		return
	}
	if recs == nil {
		recs = []store.Record{}
	}
	writeJSON(w, 200, recs)
}

func (a *Agent) serveDivergenceShow(w http.ResponseWriter, r *http.Request) {
	id, ok := parseID(w, r)
	if !ok {
		return
	}
	rec, err := a.storage.Record(id)
	if err != nil {
		writeJSON(w, 404, api.Errorf(api.CodeNotFound, "%v", err))
		return
	}
	writeJSON(w, 200, rec)
}

// serveDivergenceState sends the state a state record keeps, as stored
// (the state machine's snapshot). It is every key and value of a side's
// state, so it takes the operator capability, as acting on records does.
func (a *Agent) serveDivergenceState(w http.ResponseWriter, r *http.Request) {
	id, ok := parseID(w, r)
	if !ok {
		return
	}
	b, err := a.storage.RecordState(id)
	switch {
	case errors.Is(err, store.ErrNotFound):
		writeJSON(w, 404, api.Errorf(api.CodeNotFound, "%v", err))
		return
	case errors.Is(err, store.ErrInvalid):
		writeJSON(w, 400, api.Errorf(api.CodeInvalid, "%v", err))
		return
	case err != nil:
		writeJSON(w, 500, api.ToError(err))
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(200)
	w.Write(b)
}

// Replay resubmits a divergence record through the current master. The
// record's client ID and sequence make it idempotent: a write the group
// already holds is not applied twice.
func (a *Agent) Replay(ctx context.Context, id uint64) (wire.KVResponse, error) {
	if _, ok := a.sm.(KVStateMachine); !ok {
		return wire.KVResponse{}, ErrNotKV
	}
	rec, err := a.storage.Record(id)
	if err != nil {
		return wire.KVResponse{}, api.Errorf(api.CodeNotFound, "%v", err)
	}
	if rec.State {
		return wire.KVResponse{}, api.Errorf(api.CodeInvalid, "record %d is the state of a side whose log was compacted past the fork, "+
			"not one write: compare it with the master's state (mastership divergence show %d) and write what is missing", id, id)
	}
	op, err := kv.DecodeOp(rec.Op)
	if err != nil {
		return wire.KVResponse{}, api.Errorf(api.CodeInvalid, "record %d: %v", id, err)
	}
	resp, err := a.Execute(ctx, op, rec.Client, rec.Seq)
	if errors.Is(err, core.ErrNotMaster) {
		// Records live on the agents that lost: back-ups now. The write
		// goes to the current master with its client ID and sequence.
		resp, err = a.executeAtMaster(ctx, op, rec.Client, rec.Seq)
	}
	if err != nil {
		return resp, err
	}
	if err := a.storage.MarkReplayed(id); err != nil {
		return resp, err
	}
	return resp, nil
}

func (a *Agent) serveDivergenceReplay(w http.ResponseWriter, r *http.Request) {
	id, ok := parseID(w, r)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 2*a.cfg.WriteTimeout+time.Second)
	defer cancel()
	resp, err := a.Replay(ctx, id)
	if err != nil {
		a.kvError(w, err)
		return
	}
	writeJSON(w, 200, resp)
}

func (a *Agent) serveDivergenceDiscard(w http.ResponseWriter, r *http.Request) {
	id, ok := parseID(w, r)
	if !ok {
		return
	}
	if err := a.storage.DeleteRecord(id); err != nil {
		status := 500
		if errors.Is(err, store.ErrNotFound) {
			status = 404
		}
		writeJSON(w, status, api.Errorf(api.CodeNotFound, "%v", err))
		return
	}
	writeJSON(w, 200, wire.Discarded{Discarded: id})
}

func (a *Agent) serveFault(w http.ResponseWriter, r *http.Request) {
	f := a.opts.Faults
	if !a.cfg.FaultControl || f == nil {
		writeJSON(w, 403, api.Errorf(api.CodeRefused, "fault control is off: start the agent with -fault-control"))
		return
	}
	body, err := readBody(w, r)
	if err != nil {
		writeJSON(w, 400, api.ToError(err))
		return
	}
	var req wire.FaultRequest
	if err := decodeJSON(body, &req, "fault request"); err != nil {
		writeJSON(w, 400, err)
		return
	}
	switch req.Action {
	case "partition":
		if len(req.Peers) == 0 {
			writeJSON(w, 400, api.Errorf(api.CodeInvalid, "partition needs peers"))
			return
		}
		f.Partition(req.Peers...)
	case "heal":
		f.Heal()
	case "drop":
		if req.P < 0 || req.P > 1 {
			writeJSON(w, 400, api.Errorf(api.CodeInvalid, "drop probability %v: want 0 to 1", req.P))
			return
		}
		f.Drop(req.P)
	case "delay":
		if req.Delay < 0 || req.Delay > time.Minute {
			writeJSON(w, 400, api.Errorf(api.CodeInvalid, "delay %s: want 0 to 1m", req.Delay))
			return
		}
		f.Delay(req.Delay)
	default:
		writeJSON(w, 400, api.Errorf(api.CodeInvalid, "fault action %q: want partition, heal, drop or delay", req.Action))
		return
	}
	a.logger.Warn("fault injected", "action", req.Action, "peers", req.Peers, "p", req.P, "delay", req.Delay)
	writeJSON(w, 200, f.Status())
}

// executeAtMaster sends one operation to the master this agent follows.
func (a *Agent) executeAtMaster(ctx context.Context, op kv.Op, clientID, seq uint64) (wire.KVResponse, error) {
	st := a.Status()
	addr := a.PeerAPI(st.Master)
	if st.Master == 0 || st.Master == a.cfg.ID || addr == "" {
		return wire.KVResponse{}, fmt.Errorf("%w: no master to replay through", core.ErrNotMaster)
	}
	req := wire.KVRequest{Op: op.Kind, Key: op.Key, ExpectAbsent: op.ExpectAbsent, Client: clientID, Seq: seq}
	if op.Value != nil {
		v := string(op.Value)
		req.Value = &v
	}
	if op.Expect != nil {
		e := string(op.Expect)
		req.Expect = &e
	}
	body, err := json.Marshal(req)
	if err != nil {
		return wire.KVResponse{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, 2*a.cfg.WriteTimeout+time.Second)
	defer cancel()
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, a.creds.URL(addr, "/v1/kv"), bytes.NewReader(body))
	if err != nil {
		return wire.KVResponse{}, err
	}
	hreq.Header.Set("Content-Type", "application/json")
	hresp, err := a.peerClient().Do(hreq)
	if err != nil {
		return wire.KVResponse{}, api.Errorf(api.CodeUnavailable, "replay through master %d at %s: %v", st.Master, addr, err)
	}
	defer hresp.Body.Close()
	var resp wire.KVResponse
	if err := json.NewDecoder(io.LimitReader(hresp.Body, api.MaxMessageBytes)).Decode(&resp); err != nil {
		return wire.KVResponse{}, api.Errorf(api.CodeUnavailable, "replay through master %d: %s", st.Master, hresp.Status)
	}
	if hresp.StatusCode != http.StatusOK {
		return resp, api.Errorf(api.Code(resp.Code), "replay through master %d: %s", st.Master, resp.Error)
	}
	return resp, nil
}
