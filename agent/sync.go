package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/mastership/mastership/agent/catchup"
	"github.com/mastership/mastership/agent/core"
	"github.com/mastership/mastership/agent/rlog"
	"github.com/mastership/mastership/agent/store"
	"github.com/mastership/mastership/naming/api"
)

// Errors of state transfer.
var (
	// ErrDigestMismatch means a downloaded state did not verify.
	ErrDigestMismatch = errors.New("agent: digest mismatch")
	// ErrOlderEpoch means the master's state is of an older epoch than ours:
	// it has not reasserted yet.
	ErrOlderEpoch = errors.New("agent: master at an older epoch")
	// ErrSuperseded means a download finished after the agent stopped
	// waiting for it (it follows another master now, or serves again):
	// core.ErrSuperseded, from the core's install.
	ErrSuperseded = core.ErrSuperseded
)

// probeTimeout bounds one small call to a peer (a fork-search probe): the
// self-monitor's period, and at least half a second.
func (a *Agent) probeTimeout() time.Duration {
	return max(time.Duration(a.cfg.MonitorCount)*a.cfg.MonitorUnit, 500*time.Millisecond)
}

// peerClient is the HTTP client of agent-to-agent calls (state download,
// fork search, forwarded writes): one transport, so the O(log n) probes of
// a fork search reuse a connection instead of dialing each time. Callers
// bound each call with a context.
func (a *Agent) peerClient() *http.Client {
	a.peerOnce.Do(func() {
		a.peerHTTP = &http.Client{Transport: a.creds.Transport(&http.Transport{DialContext: a.dial, MaxIdleConnsPerHost: 4,
			IdleConnTimeout: 30 * time.Second})}
	})
	return a.peerHTTP
}

// rpc posts (or gets, when req is nil) msgpack to a peer's API.
func (a *Agent) rpc(ctx context.Context, addr, path string, req, resp any) error {
	method, body := http.MethodGet, []byte(nil)
	if req != nil {
		b, err := api.Encode(req)
		if err != nil {
			return err
		}
		method, body = http.MethodPost, b
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	hreq, err := http.NewRequestWithContext(ctx, method, a.creds.URL(addr, path), bytes.NewReader(body))
	if err != nil {
		return err
	}
	hreq.Header.Set("Content-Type", "application/msgpack")
	hresp, err := a.peerClient().Do(hreq)
	if err != nil {
		return fmt.Errorf("%s%s: %w", addr, path, err)
	}
	defer hresp.Body.Close()
	out, err := io.ReadAll(io.LimitReader(hresp.Body, 512<<20))
	if err != nil {
		return fmt.Errorf("%s%s: read: %w", addr, path, err)
	}
	if hresp.StatusCode != 200 {
		var e api.Error
		if api.Decode(out, &e) == nil && e.Code != "" {
			return &e
		}
		return fmt.Errorf("%s%s: %s", addr, path, hresp.Status)
	}
	if len(out) > api.MaxMessageBytes {
		// States are larger than any request: decode without the cap.
		return api.NewDecoder(bytes.NewReader(out)).Decode(resp)
	}
	return api.Decode(out, resp)
}

// FetchState downloads a peer's state (figure 10, act 1020).
func (a *Agent) FetchState(ctx context.Context, addr string) (State, error) {
	var st State
	err := a.rpc(ctx, addr, "/rpc/state", nil, &st)
	return st, err
}

// remoteLog probes another agent's log for the fork search. Each probe is
// bounded by the agent's probe timeout, so a peer that accepts and never
// answers costs one timeout, not the whole search's deadline.
type remoteLog struct {
	a    *Agent
	ctx  context.Context
	addr string
	// base is the base the span's answer gave (spanned: one came), which
	// BasePos reports without asking again: the point of the same answer
	// FindFork compared with.
	base    rlog.Pos
	spanned bool
}

func (r *remoteLog) probe(req *HashesRequest, resp *HashesResponse) error {
	ctx, cancel := context.WithTimeout(r.ctx, r.a.probeTimeout())
	defer cancel()
	return r.a.rpc(ctx, r.addr, "/rpc/hashes", req, resp)
}

func (r *remoteLog) Span() (uint64, uint64, error) {
	var resp HashesResponse
	if err := r.probe(&HashesRequest{}, &resp); err != nil {
		return 0, 0, fmt.Errorf("%w: %v", rlog.ErrUnavailable, err)
	}
	// A base whose index is not the start of the span given with it is
	// not believed (the zero Pos: nothing is proven by it).
	r.base, r.spanned = rlog.Pos{}, true
	if resp.Base.Index == resp.First {
		r.base = resp.Base
	}
	return resp.First, resp.Last, nil
}

// BasePos is the base of the master's log, which /rpc/hashes gives with
// every answer: the one of the span's answer, asked for only when no span
// was.
func (r *remoteLog) BasePos() (rlog.Pos, error) {
	if !r.spanned {
		if _, _, err := r.Span(); err != nil {
			return rlog.Pos{}, err
		}
	}
	return r.base, nil
}

func (r *remoteLog) HashAt(i uint64) ([32]byte, bool, error) {
	var resp HashesResponse
	if err := r.probe(&HashesRequest{Indices: []uint64{i}}, &resp); err != nil {
		return [32]byte{}, false, fmt.Errorf("%w: %v", rlog.ErrUnavailable, err)
	}
	if len(resp.Hashes) != 1 || len(resp.Held) != 1 {
		return [32]byte{}, false, fmt.Errorf("%w: %d hashes for one index", rlog.ErrUnavailable, len(resp.Hashes))
	}
	return resp.Hashes[0], resp.Held[0], nil
}

// localCopy copies our log (hash chain and entries) off the loop goroutine.
func (a *Agent) localCopy() (*rlog.Log, uint64, error) {
	var cp *rlog.Log
	var applied uint64
	var cerr error
	err := a.do(func() {
		l := a.node.Log()
		ents, err := l.Slice(l.Base().Index+1, l.LastIndex()+1)
		if err != nil {
			cerr = err
			return
		}
		cp = rlog.NewAt(l.Base())
		cerr = cp.Append(ents...)
		applied = a.node.Status().Applied
	})
	if err == nil {
		err = cerr
	}
	return cp, applied, err
}

// SyncResult reports one synchronisation with a master.
type SyncResult struct {
	Fork     uint64
	Diverged int // divergence records made
	Digest   rlog.Digest
	Epoch    api.Epoch
}

// KeepDivergence finds where our log left the master's (the last entry
// both hold, by hash chain) and records every entry after it that we had
// applied as a divergence record (recovery step 2, package recover).
func (a *Agent) KeepDivergence(ctx context.Context, master uint64, addr string) (fork uint64, records int, err error) {
	local, applied, err := a.localCopy()
	if err != nil {
		return 0, 0, err
	}
	fork, kept, uncompared, err := DivergentWrites(local, &remoteLog{a: a, ctx: ctx, addr: addr}, applied, a.cfg.ID)
	if err != nil {
		return fork, 0, fmt.Errorf("find fork with %d: %w", master, err)
	}
	var recs []store.Record
	if KeepsState(mustMode(a.cfg.Mode), uncompared) {
		// The entries up to uncompared are gone from the log, their
		// writes only in the state the master's is about to replace:
		// that state is kept whole, as a record of its own.
		rec, err := a.stateRecord(master, uncompared)
		if err != nil {
			return fork, 0, err
		}
		if rec != nil {
			recs = append(recs, *rec)
			a.logger.Warn("the log was compacted past the fork with the master: this side's state is kept as a record",
				"compacted_to", uncompared, "retained", master, "state_bytes", len(rec.Op), "records", len(kept)+1)
		} else {
			a.logger.Error("the log was compacted past the fork with the master, and the state is over the record limit: "+
				"writes up to the snapshot that diverged are kept in no record",
				"compacted_to", uncompared, "limit_bytes", store.MaxStateBytes, "retained", master)
		}
	}
	for _, e := range kept {
		recs = append(recs, store.Record{Group: a.cfg.Group, Epoch: e.Epoch, Index: e.Index, Client: e.Client,
			Seq: e.Seq, Op: e.Op, Acked: true, Retained: master, Uncompared: uncompared})
	}
	if len(recs) > 0 {
		if _, err := a.storage.AddRecords(recs); err != nil {
			return fork, 0, fmt.Errorf("persist divergence records: %w", err)
		}
		a.logger.Warn("divergent writes kept for replay", "count", len(recs), "fork", fork, "retained", master)
	}
	return fork, len(recs), nil
}

// KeepsState is the decision, shared by the runtime and the simulator,
// whether a recovery keeps this side's whole state as a record: when its
// log was compacted past the fork (uncompared, see DivergentWrites), in
// available mode. A strict agent applies only what a majority of its
// group committed, which every later master holds (a strict vote goes to
// a log at least as long), so its state holds no write the master lacks.
func KeepsState(mode api.Mode, uncompared uint64) bool {
	return uncompared > 0 && mode != api.ModeStrict
}

// stateRecord is this side's state, snapshotted on the loop, as a
// divergence record; nil when the snapshot is over store.MaxStateBytes.
func (a *Agent) stateRecord(master, uncompared uint64) (*store.Record, error) {
	var data []byte
	var pos rlog.Pos
	var serr error
	err := a.do(func() {
		applied := a.node.Status().Applied
		if pos, serr = a.node.Log().PosAt(applied); serr != nil {
			pos = rlog.Pos{Index: applied}
			serr = nil
		}
		data, serr = a.sm.Snapshot()
	})
	if err == nil {
		err = serr
	}
	if err != nil {
		return nil, fmt.Errorf("snapshot the state to keep: %w", err)
	}
	if len(data) > store.MaxStateBytes {
		return nil, nil
	}
	return &store.Record{Group: a.cfg.Group, Epoch: pos.Epoch, Index: pos.Index, Op: data, Acked: true,
		Retained: master, Uncompared: uncompared, State: true}, nil
}

// DivergentWrites is the decision of recovery step 2, shared by the runtime
// and the simulator: the fork of local from remote (the last entry both
// hold, by hash chain; where the indices both hold do not reach it, the
// last local entry of the epoch of remote's base, rlog.ForkByEpoch; the
// first entry local holds when neither decides), and the entries after it
// to keep as divergence records. Kept are the writes agent self applied
// (applied is its applied index) or stamped as master: a master that
// restarted has applied nothing yet, but may have acknowledged what it
// stamped. No-ops are never kept.
//
// When local was compacted past the fork (its log starts after a
// snapshot and neither hashes nor epochs say where it left remote's),
// uncompared is the index its log starts after: the writes up to it that
// diverged are only in the state that the master's replaces (see
// KeepsState). It is 0 when the fork was found.
func DivergentWrites(local *rlog.Log, remote rlog.BaseProber, applied, self uint64) (fork uint64, kept []rlog.Entry, uncompared uint64, err error) {
	fork, err = rlog.FindFork(local, remote)
	if errors.Is(err, rlog.ErrForkUnknown) {
		base, berr := remote.BasePos()
		if berr != nil {
			return 0, nil, 0, fmt.Errorf("find fork: remote base: %w", berr)
		}
		var ok bool
		if fork, ok = rlog.ForkByEpoch(local, base); !ok {
			fork, _, _ = local.Span()
			uncompared = fork
		} else if base.Epoch.ID == self {
			// The proof rests on the master's word for an epoch of our
			// own: entries we stamped, and may have acknowledged. A wrong
			// word must not cost them; kept as records, a replay of one
			// the group holds applies once.
			fork = ownEpochStart(local, base.Epoch, fork)
		}
		err = nil
	}
	if err != nil {
		return 0, nil, 0, err
	}
	divergent, err := rlog.Divergent(local, fork)
	if err != nil {
		return fork, nil, uncompared, err
	}
	for _, e := range divergent {
		if len(e.Op) == 0 || (e.Index > applied && e.Epoch.ID != self) {
			continue
		}
		kept = append(kept, e)
	}
	return fork, kept, uncompared, nil
}

// ownEpochStart is the index before the first entry of epoch e that local
// holds at or below fork (its base if the epoch starts before it).
func ownEpochStart(local *rlog.Log, e api.Epoch, fork uint64) uint64 {
	first, _, _ := local.Span()
	for i := fork; i > first; i-- {
		if ep, err := local.EpochAt(i); err != nil || ep != e {
			return i
		}
	}
	return first
}

// CheckDownload is the verification of recovery step 3 (figure 10, act
// 1040), shared by the runtime and the simulator, done before anything of
// ours changes: the state comes from master as master, at an epoch not
// older than cur, and its snapshot restores, on a scratch copy of sm's
// kind, to the digest the master reported. It runs off the agent's loop:
// of sm it calls SnapshotDigest only.
func CheckDownload(sm rlog.StateMachine, st State, master uint64, cur api.Epoch) error {
	if st.Role != api.RoleMaster || st.Master != master {
		return fmt.Errorf("download state of %d: it is %s following %d, not master", master, st.Role, st.Master)
	}
	if st.Epoch.Less(cur) {
		return fmt.Errorf("%w: %d is at %s, we follow %s", ErrOlderEpoch, master, st.Epoch, cur)
	}
	got, err := sm.SnapshotDigest(st.Snapshot)
	if err != nil {
		return fmt.Errorf("%w: snapshot of %d does not restore: %v", ErrDigestMismatch, master, err)
	}
	if got != st.Digest {
		return fmt.Errorf("%w: snapshot of %d gives %s at %d, it reported %s at %d",
			ErrDigestMismatch, master, got, got.Index, st.Digest, st.Digest.Index)
	}
	return nil
}

// CheckInstalled is the verification after an install (recovery step 4):
// at the master's index, our digest must be the master's.
func CheckInstalled(got, master rlog.Digest) error {
	if got.Index == master.Index && got != master {
		return fmt.Errorf("%w: installed %s, master %s at %d", ErrDigestMismatch, got, master, got.Index)
	}
	return nil
}

// Synchronize downloads the master's state, verifies it on a scratch copy,
// and installs it (recovery steps 3 and 4, package recover): DownloadState
// then Install.
func (a *Agent) Synchronize(ctx context.Context, master uint64, addr string) (SyncResult, error) {
	st, err := a.DownloadState(ctx, master, addr)
	if err != nil {
		return SyncResult{}, err
	}
	return a.Install(ctx, master, st)
}

// DownloadState downloads the master's state from its API at addr and
// verifies it (figure 10, acts 1020 and 1040) before anything of ours
// changes: see CheckDownload. The master's epoch must not be older than
// ours (ErrOlderEpoch).
func (a *Agent) DownloadState(ctx context.Context, master uint64, addr string) (State, error) {
	st, err := a.FetchState(ctx, addr)
	if err != nil {
		return State{}, fmt.Errorf("download state of %d: %w", master, err)
	}
	if err := CheckDownload(a.sm, st, master, a.Status().Epoch); err != nil {
		return State{}, err
	}
	return st, nil
}

// Install installs a state DownloadState verified (figure 10, act 1030),
// on the loop, if the agent still recovers or syncs towards master (the
// core's install answers ErrSuperseded otherwise), and checks the installed
// digest against the master's (CheckInstalled). A failed write of it stops
// the agent.
func (a *Agent) Install(ctx context.Context, master uint64, st State) (SyncResult, error) {
	var ierr error
	var res SyncResult
	err := a.doWithin(ctx, func() {
		if ctx.Err() != nil {
			// Abandoned (a recovery towards another master replaced it).
			ierr = ctx.Err()
			return
		}
		if ierr = a.node.InstallState(st.Snapshot, st.Base, st.Entries, master, st.Epoch, st.Commit); ierr != nil {
			a.handleReady()
			return
		}
		// The installed state must equal the master's at the same index.
		ierr = CheckInstalled(a.sm.Digest(), st.Digest)
		var serr error
		if err := a.storage.SaveSnapshot(st.Base, st.Snapshot); err != nil {
			serr = fmt.Errorf("persist snapshot: %w", err)
		} else if err := a.storage.TruncateAfter(st.Base.Index); err != nil {
			// What we stored after the base is replaced by the master's.
			serr = fmt.Errorf("persist log suffix: %w", err)
		} else if err := a.storage.Append(st.Entries); err != nil {
			serr = fmt.Errorf("persist log suffix: %w", err)
		}
		if serr != nil {
			// The core already took the state as installed: what it would
			// send now (acknowledgements of entries not on disk) must not
			// leave, as after any failed persist.
			a.failStorage(serr)
			ierr = serr
		}
		res = SyncResult{Digest: a.sm.Digest(), Epoch: st.Epoch}
		a.handleReady()
	})
	if err == nil {
		err = ierr
	}
	return res, err
}

// syncJob is a catch-up download in flight, started by the catch-up
// machine; the loop goroutine owns the agent's pointer to it.
type syncJob struct {
	id     uint64 // the machine's job
	master uint64
	cancel context.CancelFunc
}

// maybeSync keeps one catch-up download running while the core is syncing,
// from the master it syncs with, as the catch-up machine decides (package
// catchup, which the simulator drives too). Run only.
func (a *Agent) maybeSync() {
	if a.ctx.Err() != nil {
		return // stopping: every download's context is cancelled
	}
	a.syncEffects(a.catchup.Observe(a.node.Role(), a.node.Master()))
}

// cancelSync abandons the catch-up in flight, if any: a recovery replaces
// it. Run only.
func (a *Agent) cancelSync() { a.syncEffects(a.catchup.Abandon()) }

// syncEffects carries out the catch-up machine's effects. Run only.
func (a *Agent) syncEffects(fx []catchup.Effect) {
	for _, e := range fx {
		switch e.Kind {
		case catchup.Start:
			ctx, cancel := context.WithCancel(a.ctx)
			j := &syncJob{id: e.Job, master: e.Master, cancel: cancel}
			a.sync = j
			a.wg.Add(1)
			go func() { defer a.wg.Done(); defer cancel(); a.syncFrom(ctx, j) }()
		case catchup.Cancel:
			if a.sync != nil && a.sync.id == e.Job {
				a.sync.cancel()
				a.sync = nil
			}
		case catchup.EndSync:
			a.node.EndRecovery(e.Master, a.node.Epoch())
			a.handleReady()
		}
	}
}

// syncTimeout bounds a whole catch-up download.
const syncTimeout = 30 * time.Second

// syncFrom is the catch-up of a lagging or divergent back-up: the same
// steps as recovery, without the naming node. Its outcome goes back to the
// catch-up machine, which ignores it when the download was abandoned and
// ends the syncing state on a failure.
func (a *Agent) syncFrom(ctx context.Context, j *syncJob) {
	master := j.master
	err := a.syncSteps(ctx, master)
	a.do(func() {
		if a.sync == j {
			a.sync = nil
		}
		a.syncEffects(a.catchup.Done(j.id, err, a.node.Role(), a.node.Master()))
	})
	switch {
	case err == nil:
	case errors.Is(err, ErrSuperseded) || ctx.Err() != nil:
		a.logger.Debug("sync abandoned", "master", master, "error", err)
	default:
		a.logger.Warn("sync failed; retrying on the next append", "master", master, "error", err)
	}
}

func (a *Agent) syncSteps(ctx context.Context, master uint64) error {
	addr := a.PeerAPI(master)
	if addr == "" {
		return fmt.Errorf("sync with %d: no API address known", master)
	}
	ctx, cancel := context.WithTimeout(ctx, syncTimeout)
	defer cancel()
	if _, _, err := a.KeepDivergence(ctx, master, addr); err != nil {
		return fmt.Errorf("sync with %d: keep divergence: %w", master, err)
	}
	res, err := a.Synchronize(ctx, master, addr)
	if err != nil {
		return err
	}
	a.logger.Info("synchronized with master", "master", master, "digest", res.Digest, "index", res.Digest.Index)
	return nil
}
