package naming

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"github.com/mastership/mastership/naming/api"
	"github.com/mastership/mastership/naming/boltfile"
	nclient "github.com/mastership/mastership/naming/client"
	bolt "go.etcd.io/bbolt"
)

// raftStores are the durable parts of the node's raft: the log and stable
// store (raft.db), the snapshots and the transport.
type raftStores struct {
	logs  *raftboltdb.BoltStore
	snaps *raft.FileSnapshotStore
	trans *raft.NetworkTransport
}

// restoreAdvice is what an operator does about a damaged raft file.
const restoreAdvice = "restore the data dir from a backup, or start this node with an empty " +
	"-data-dir and add it to its cluster again (mastership peers remove, then add)"

// fastElection is the shortest election timeout of a node that is the only
// voter of its cluster while it takes office: there is nobody to hear from,
// so it need not wait a whole timeout. Once it leads, the configured timeout
// is put back (it matters once voters are added).
const fastElection = 20 * time.Millisecond

// startRaft opens the raft stores in DataDir/raft, makes the state store
// anew, starts raft and, for an empty data dir, bootstraps the cluster. It
// reports whether this node is the only voter (it then leads at once).
func (n *Node) startRaft(dial func(ctx context.Context, network, addr string) (net.Conn, error)) (alone bool, err error) {
	cfg := n.cfg
	dir := filepath.Join(cfg.DataDir, "raft")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return false, fmt.Errorf("naming: create data directory: %w", err)
	}
	// raft.db first: its lock keeps a second process off the data dir
	// before anything in it is touched. It is checked whole (every page
	// read under a guard) before raft reads it.
	logPath := filepath.Join(dir, "raft.db")
	if _, err := os.Stat(logPath); err == nil {
		db, err := boltfile.Open(logPath, &bolt.Options{Timeout: 2 * time.Second})
		switch {
		case errors.Is(err, bolt.ErrTimeout):
			return false, fmt.Errorf("%w: %s", ErrStoreLocked, cfg.DataDir)
		case errors.Is(err, boltfile.ErrDamaged):
			return false, fmt.Errorf("naming: %w; %s", err, restoreAdvice)
		case err != nil:
			return false, fmt.Errorf("naming: open raft log %s: %w", logPath, err)
		}
		db.Close()
	}
	logs, err := raftboltdb.New(raftboltdb.Options{Path: logPath, BoltOptions: &bolt.Options{Timeout: 2 * time.Second}})
	if err != nil {
		if errors.Is(err, bolt.ErrTimeout) {
			return false, fmt.Errorf("%w: %s", ErrStoreLocked, cfg.DataDir)
		}
		return false, fmt.Errorf("naming: open raft log in %s: %w", dir, err)
	}
	rs := &raftStores{logs: logs}
	fail := func(err error) (bool, error) {
		if n.raft != nil {
			n.raft.Shutdown().Error()
		}
		if rs.trans != nil {
			rs.trans.Close()
		}
		logs.Close()
		if n.store != nil {
			n.store.Close()
		}
		return false, err
	}
	rs.snaps, err = raft.NewFileSnapshotStoreWithLogger(dir, 2, n.logger.Named("raft"))
	if err != nil {
		return fail(fmt.Errorf("naming: snapshot store: %w", err))
	}
	if err := checkRaftStores(logs, logPath, rs.snaps, filepath.Join(dir, "snapshots")); err != nil {
		return fail(fmt.Errorf("naming: %w; %s", err, restoreAdvice))
	}
	n.store, err = openStateStore(cfg.DataDir, cfg.MaxEventsPerGroup, cfg.MaxEvents)
	if err != nil {
		return fail(err)
	}
	n.fsm = &fsm{store: n.store, logger: n.logger}
	self := cfg.RaftAddr()
	layer := &streamLayer{chanListener: chanListener{m: n.mux, ch: n.mux.raftCh, addr: raftAddr(self)}, dial: dial, creds: n.creds}
	rs.trans = raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{Stream: layer, MaxPool: 3,
		Timeout: 10 * time.Second, Logger: n.logger.Named("raft-net")})
	existing, err := raft.HasExistingState(logs, logs, rs.snaps)
	if err != nil {
		return fail(fmt.Errorf("naming: read raft state: %w", err))
	}
	var servers []raft.Server
	switch {
	case !existing && len(cfg.Join) > 0:
		// Added by the running cluster; until then a follower of nobody.
	case !existing:
		peers := cfg.Peers
		if len(peers) == 0 {
			peers = []string{self}
		}
		for _, p := range peers {
			servers = append(servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(p), Address: raft.ServerAddress(p)})
		}
		_, err := os.Stat(filepath.Join(cfg.DataDir, legacyStoreFile))
		n.legacy = err == nil
	}
	alone = (!existing && len(servers) == 1) || (existing && n.onlyVoter(logs, rs.snaps))
	rc := n.raftConfig(alone)
	n.rstores = rs
	n.raft, err = raft.NewRaft(rc, n.fsm, logs, logs, rs.snaps, rs.trans)
	if err != nil {
		return fail(fmt.Errorf("naming: start raft: %w", err))
	}
	if len(servers) > 0 {
		if err := n.raft.BootstrapCluster(raft.Configuration{Servers: servers}).Error(); err != nil {
			return fail(fmt.Errorf("naming: bootstrap the cluster: %w", err))
		}
		n.logger.Info("cluster bootstrapped", "voters", len(servers), "self", self)
	} else if existing {
		if err := n.checkCluster(); err != nil {
			return fail(err)
		}
	}
	return alone, nil
}

// raftConfig is raft's configuration for this node. A node that is the
// only voter (alone) campaigns sooner: its heartbeat and election timeouts
// are cut down to the leader lease, the shortest raft allows, and put back
// once it leads. The lease itself is never cut: raft cannot change it on a
// running node, and a lease shorter than the heartbeats that renew it would
// make the leader step down again and again once voters are added.
func (n *Node) raftConfig(alone bool) *raft.Config {
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(n.cfg.RaftAddr())
	rc.HeartbeatTimeout = n.cfg.ElectionTimeout
	rc.ElectionTimeout = n.cfg.ElectionTimeout
	rc.LeaderLeaseTimeout = n.cfg.ElectionTimeout / 2
	if alone {
		rc.HeartbeatTimeout = min(rc.HeartbeatTimeout, max(fastElection, rc.LeaderLeaseTimeout))
		rc.ElectionTimeout = rc.HeartbeatTimeout
	}
	rc.CommitTimeout = min(50*time.Millisecond, max(n.cfg.ElectionTimeout/10, time.Millisecond))
	// raft takes a snapshot once SnapshotThreshold (8192) entries were
	// written since the last, but only looks every SnapshotInterval: at
	// its default of 2 minutes, a busy naming node (session churn, and a
	// trigger attempt recorded in the history is a write too) piles up
	// that long a log in raft.db before any of it is compacted.
	rc.SnapshotInterval = 10 * time.Second
	rc.BatchApplyCh = true
	rc.MaxAppendEntries = 512
	rc.Logger = n.logger.Named("raft")
	return rc
}

// reloadable is the part of rc raft can change on a running node.
func reloadable(rc *raft.Config) raft.ReloadableConfig {
	return raft.ReloadableConfig{TrailingLogs: rc.TrailingLogs, SnapshotInterval: rc.SnapshotInterval,
		SnapshotThreshold: rc.SnapshotThreshold, HeartbeatTimeout: rc.HeartbeatTimeout, ElectionTimeout: rc.ElectionTimeout}
}

// onlyVoter tells whether the configuration a data dir holds has this node
// as its only voter.
func (n *Node) onlyVoter(logs *raftboltdb.BoltStore, snaps raft.SnapshotStore) bool {
	_, tr := raft.NewInmemTransport("")
	conf, err := raft.GetConfiguration(n.raftConfig(false), n.fsm, logs, logs, snaps, tr)
	if err != nil {
		return false
	}
	voters := 0
	mine := false
	for _, s := range conf.Servers {
		if s.Suffrage == raft.Voter {
			voters++
			mine = mine || s.ID == raft.ServerID(n.cfg.RaftAddr())
		}
	}
	return voters == 1 && mine
}

// checkCluster refuses a data dir whose cluster does not count this node,
// or does not match -peers.
func (n *Node) checkCluster() error {
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return fmt.Errorf("naming: read the cluster's configuration: %w", err)
	}
	var ids []string
	for _, s := range f.Configuration().Servers {
		ids = append(ids, string(s.ID))
	}
	slices.Sort(ids)
	self := n.cfg.RaftAddr()
	if len(ids) > 0 && !slices.Contains(ids, self) {
		return fmt.Errorf("%w: its voters are %s, which do not include this node (%s); give this node an empty "+
			"-data-dir to join a cluster, or start it with the address it had", ErrForeignCluster, strings.Join(ids, ","), self)
	}
	if len(n.cfg.Peers) > 0 {
		want := slices.Clone(n.cfg.Peers)
		slices.Sort(want)
		if !slices.Equal(want, ids) {
			return fmt.Errorf("%w: its voters are %s, -peers says %s; -peers only bootstraps an empty data dir "+
				"(use mastership peers add and remove to change a running cluster)", ErrForeignCluster, strings.Join(ids, ","), strings.Join(want, ","))
		}
	}
	return nil
}

func (n *Node) stopRaft() error {
	err := n.raft.Shutdown().Error()
	n.rstores.trans.Close()
	if cerr := n.rstores.logs.Close(); err == nil {
		err = cerr
	}
	return err
}

type raftAddr string

func (a raftAddr) Network() string { return "tcp" }
func (a raftAddr) String() string  { return string(a) }

// runLeadership takes office when raft makes this node leader and leaves it
// when raft says it lost that.
func (n *Node) runLeadership() {
	defer n.wg.Done()
	ch := n.raft.LeaderCh()
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-ch:
			// The channel keeps only the latest change: ask raft.
			if n.raft.State() == raft.Leader {
				n.takeOffice()
			} else {
				n.mu.Lock()
				if n.leading {
					n.logger.Info("no longer the naming leader")
				}
				n.leaveOfficeLocked()
				n.mu.Unlock()
			}
		}
	}
}

// takeOffice builds the live registry from the committed state, once raft
// applied every entry of the earlier terms (a barrier), imports a store
// from before raft if one waits, and resumes the deliveries of the outbox.
func (n *Node) takeOffice() {
	if err := n.raft.Barrier(applyTimeout).Error(); err != nil {
		n.logger.Warn("leader, but the barrier failed; not taking office", "error", err)
		return
	}
	if n.legacy {
		if err := n.importLegacy(); err != nil {
			n.logger.Error("import of the store from before raft failed; it stays in the data dir", "error", err)
		}
		n.legacy = false
	}
	reg := NewRegistry(n.regCfg, rand.New(cryptoSource{}))
	now := n.clock.Now()
	groups := 0
	err := n.store.loadGroups(func(rec []byte) error {
		groups++
		return reg.Restore(now, n.cfg.RestartGrace, rec)
	})
	if err != nil {
		n.logger.Error("the committed state does not load; not taking office", "error", err)
		return
	}
	var outbox []Notice
	if err := n.store.loadOutbox(func(nt Notice) error { outbox = append(outbox, nt); return nil }); err != nil {
		n.logger.Error("the outbox does not load; not taking office", "error", err)
		return
	}
	n.mu.Lock()
	if n.raft.State() != raft.Leader || n.ctx.Err() != nil {
		n.mu.Unlock()
		return
	}
	n.reg, n.leading = reg, true
	n.office++
	n.delivery = make(map[deliveryKey]uint64)
	for _, nt := range outbox {
		body, err := api.Encode(&nt.Notify)
		if err != nil {
			continue
		}
		n.startDeliveryLocked(nt.Notify, nt.Target, body)
	}
	n.mu.Unlock()
	if rc := n.raftConfig(false); n.raft.ReloadableConfig() != reloadable(rc) {
		if err := n.raft.ReloadConfig(reloadable(rc)); err != nil {
			n.logger.Error("putting the configured election timeout back failed", "error", err)
		}
	}
	n.logger.Info("leading the naming cluster", "groups", groups, "resumed_deliveries", len(outbox), "grace", n.cfg.RestartGrace)
}

// leaveOfficeLocked drops the live registry: the timers stop, waiting
// registrants are answered "unavailable" (they retry), and deliveries end
// at their next attempt.
func (n *Node) leaveOfficeLocked() {
	n.leading = false
	n.reg = nil
	n.office++
	for g, stop := range n.timers {
		stop()
		delete(n.timers, g)
	}
	for g, ws := range n.waiters {
		for _, w := range ws {
			close(w)
		}
		delete(n.waiters, g)
	}
}

// importLegacy copies the groups and events of a store from before raft
// (naming.db) into the new cluster, then renames the file.
func (n *Node) importLegacy() error {
	path := filepath.Join(n.cfg.DataDir, legacyStoreFile)
	old, err := openStore(path, n.cfg.MaxEventsPerGroup, 0, false)
	if err != nil {
		return err
	}
	defer old.Close()
	const batch = 256
	cmd := &command{}
	count := 0
	flush := func() error {
		if cmd.empty() {
			return nil
		}
		b, err := api.Encode(cmd)
		if err != nil {
			return err
		}
		f := n.raft.Apply(b, applyTimeout)
		if err := f.Error(); err != nil {
			return err
		}
		if r, ok := f.Response().(error); ok && r != nil {
			return r
		}
		cmd = &command{}
		return nil
	}
	err = old.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketGroups).ForEach(func(k, v []byte) error {
			cmd.Groups = append(cmd.Groups, groupPut{Name: string(k), Record: append([]byte(nil), v...)})
			count++
			if len(cmd.Groups) == batch {
				return flush()
			}
			return nil
		})
	})
	if err == nil {
		err = flush()
	}
	if err == nil {
		err = old.allEvents(func(ge GroupEvent) error {
			cmd.Events = append(cmd.Events, ge)
			if len(cmd.Events) == 4*batch {
				return flush()
			}
			return nil
		})
	}
	if err == nil {
		err = flush()
	}
	if err != nil {
		return err
	}
	old.Close()
	if err := os.Rename(path, path+".imported"); err != nil {
		return err
	}
	n.logger.Info("imported the store from before raft", "groups", count, "renamed_to", legacyStoreFile+".imported")
	return nil
}

// IsLeader reports whether this node leads the naming cluster and serves.
func (n *Node) IsLeader() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.leading
}

// Leader is the advertised address of the cluster's leader ("" when none is
// known).
func (n *Node) Leader() string {
	addr, _ := n.raft.LeaderWithID()
	return string(addr)
}

// Self is this node's advertised address.
func (n *Node) Self() string { return n.cfg.RaftAddr() }

func (n *Node) readMeta() api.ReadMeta {
	m := api.ReadMeta{Stale: true, LastContactMS: -1}
	if n.IsLeader() {
		m.LastContactMS = 0
	} else if t := n.raft.LastContact(); !t.IsZero() {
		m.LastContactMS = time.Since(t).Milliseconds()
	}
	return m
}

// committedView is a registry of the committed state of the named groups
// (nil: none asked), every session and registration in it live: what a
// stale or consistent read answers from.
func (n *Node) committedView(names ...string) (*Registry, error) {
	reg := NewRegistry(n.regCfg, rand.New(cryptoSource{}))
	now := n.clock.Now()
	for _, name := range names {
		rec, err := n.store.groupRecord(name)
		if err != nil {
			return nil, api.Errorf(api.CodeUnavailable, "state: %v", err)
		}
		if rec != nil {
			if err := reg.Restore(now, time.Hour, rec); err != nil {
				return nil, api.Errorf(api.CodeInternal, "%v", err)
			}
		}
	}
	return reg, nil
}

// beforeRead prepares a read in mode: a consistent one waits until this
// leader confirmed its office and applied every entry before the read; a
// default one needs the leader; a stale one needs nothing.
func (n *Node) beforeRead(mode api.ReadMode) error {
	switch mode {
	case api.ReadStale:
		return nil
	case api.ReadConsistent:
		if !n.IsLeader() {
			return n.leaderError()
		}
		if err := n.raft.Barrier(applyTimeout).Error(); err != nil {
			return api.Errorf(api.CodeUnavailable, "consistent read: %v", err)
		}
		return nil
	case api.ReadDefault:
		if !n.IsLeader() {
			return n.leaderError()
		}
		return nil
	}
	return api.Errorf(api.CodeInvalid, "read mode %q: want consistent, stale or none", mode)
}

// Lookup returns a group's retained master.
func (n *Node) Lookup(req api.LookupRequest) (api.LookupResponse, error) {
	if err := n.beforeRead(req.Read); err != nil {
		return api.LookupResponse{}, err
	}
	if req.Read == api.ReadDefault {
		n.mu.Lock()
		defer n.mu.Unlock()
		if !n.leading {
			return api.LookupResponse{}, n.leaderError()
		}
		return n.reg.Lookup(n.clock.Now(), req)
	}
	if err := api.ValidateGroup(req.Group); err != nil {
		return api.LookupResponse{}, api.Errorf(api.CodeInvalid, "%v", err)
	}
	view, err := n.committedView(req.Group)
	if err != nil {
		return api.LookupResponse{}, err
	}
	resp, err := view.Lookup(n.clock.Now(), req)
	if req.Read == api.ReadStale {
		resp.ReadMeta = n.readMeta()
	}
	return resp, err
}

// Status describes one group or a page of every group.
func (n *Node) Status(req api.StatusRequest) (api.StatusResponse, error) {
	return n.StatusContext(context.Background(), req)
}

// StatusContext is Status, with a blocking read of one group (req.Index,
// req.Wait) bounded by ctx as well.
func (n *Node) StatusContext(ctx context.Context, req api.StatusRequest) (api.StatusResponse, error) {
	if req.Index == 0 && req.Wait == 0 {
		return n.status(req)
	}
	if req.Group == "" {
		return api.StatusResponse{}, api.Errorf(api.CodeInvalid, "a blocking status (index, wait) is of one group")
	}
	if req.Wait < 0 {
		return api.StatusResponse{}, api.Errorf(api.CodeInvalid, "wait %s is negative", req.Wait)
	}
	wait := req.Wait
	if wait == 0 {
		wait = api.DefaultWait
	}
	if !n.blockers.TryAcquire() {
		// At the cap of blocking reads: answer at once, so that long
		// polls cannot take every connection a node has.
		return n.status(req)
	}
	defer n.blockers.Release()
	timer := time.NewTimer(min(wait, api.MaxWait))
	defer timer.Stop()
	first := true
	for {
		changed := n.store.Changed()
		r := req
		if !first && r.Read == api.ReadConsistent {
			// The leader confirmed its leadership once; what wakes us now
			// is a change it applied: no barrier per wake-up.
			r.Read = api.ReadStale
		}
		st, err := n.status(r)
		if r.Read != req.Read {
			st.ReadMeta = api.ReadMeta{}
		}
		first = false
		// An index below the one asked (a restored or recreated group)
		// answers at once too: the caller starts over from it.
		if err != nil || st.Index != req.Index {
			return st, err
		}
		select {
		case <-changed:
		case <-timer.C:
			return st, nil
		case <-ctx.Done():
			return st, nil
		case <-n.ctx.Done():
			return st, nil
		}
	}
}

func (n *Node) status(req api.StatusRequest) (st api.StatusResponse, err error) {
	defer func() {
		if err == nil && req.Group != "" {
			st.Index, err = n.store.LastEventSeq(req.Group)
			if err != nil {
				err = api.Errorf(api.CodeUnavailable, "state: %v", err)
			}
		}
	}()
	if err := n.beforeRead(req.Read); err != nil {
		return api.StatusResponse{}, err
	}
	if req.Read == api.ReadDefault {
		n.mu.Lock()
		defer n.mu.Unlock()
		if !n.leading {
			return api.StatusResponse{}, n.leaderError()
		}
		return n.reg.Status(n.clock.Now(), req)
	}
	var view *Registry
	if req.Group != "" {
		if err := api.ValidateGroup(req.Group); err != nil {
			return api.StatusResponse{}, api.Errorf(api.CodeInvalid, "%v", err)
		}
		view, err = n.committedView(req.Group)
	} else {
		if req.Limit < 0 {
			return api.StatusResponse{}, api.Errorf(api.CodeInvalid, "limit %d is negative", req.Limit)
		}
		limit := req.Limit
		if limit == 0 || limit > api.MaxStatusPage {
			limit = min(max(limit, api.DefaultStatusPage), api.MaxStatusPage)
		}
		var recs [][]byte
		recs, _, err = n.store.groupRecords(req.After, limit+1)
		if err == nil {
			view = NewRegistry(n.regCfg, rand.New(cryptoSource{}))
			for _, rec := range recs {
				if err = view.Restore(n.clock.Now(), time.Hour, rec); err != nil {
					break
				}
			}
		}
	}
	if err != nil {
		return api.StatusResponse{}, api.Errorf(api.CodeUnavailable, "state: %v", err)
	}
	resp, err := view.Status(n.clock.Now(), req)
	if req.Read == api.ReadStale {
		resp.ReadMeta = n.readMeta()
	}
	return resp, err
}

// Events pages through a group's history, committed.
func (n *Node) Events(req api.EventsRequest) (api.EventsResponse, error) {
	if err := api.ValidateGroup(req.Group); err != nil {
		return api.EventsResponse{}, api.Errorf(api.CodeInvalid, "%v", err)
	}
	switch {
	case req.Limit < 0:
		return api.EventsResponse{}, api.Errorf(api.CodeInvalid, "limit %d is negative", req.Limit)
	case req.Limit == 0:
		req.Limit = 100
	case req.Limit > 1000:
		req.Limit = 1000
	}
	if err := n.beforeRead(req.Read); err != nil {
		return api.EventsResponse{}, err
	}
	rec, err := n.store.groupRecord(req.Group)
	if err != nil {
		return api.EventsResponse{}, api.Errorf(api.CodeUnavailable, "state: %v", err)
	}
	if rec == nil {
		return api.EventsResponse{}, api.Errorf(api.CodeNotFound, "group %q is not known", req.Group)
	}
	resp, err := n.store.Events(req.Group, req.After, req.Limit)
	if req.Read == api.ReadStale {
		resp.ReadMeta = n.readMeta()
	}
	return resp, err
}

// Health reports the node's state and its place in the cluster.
func (n *Node) Health() api.HealthResponse {
	st := "ok"
	if err := n.fsm.Failed(); err != nil {
		st = "failing: " + err.Error()
	}
	groups, _ := n.store.countGroups()
	return api.HealthResponse{Status: st, Groups: groups, Role: roleName(n.raft.State()), Leader: n.Leader()}
}

func roleName(s raft.RaftState) string {
	switch s {
	case raft.Leader:
		return "leader"
	case raft.Follower:
		return "follower"
	case raft.Candidate:
		return "candidate"
	}
	return "shutdown"
}

// Peers lists the voters of the cluster, with what this node knows of
// them.
func (n *Node) Peers() (api.PeersResponse, error) {
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return api.PeersResponse{}, api.Errorf(api.CodeUnavailable, "%v", err)
	}
	leader := n.Leader()
	out := api.PeersResponse{Peers: []api.Peer{}}
	for _, s := range f.Configuration().Servers {
		p := api.Peer{Addr: string(s.Address), Voter: s.Suffrage == raft.Voter, State: "follower", LastContactMS: -1}
		switch {
		case string(s.Address) == leader:
			p.State, p.LastContactMS = "leader", 0
		case leader == "":
			p.State = "unknown"
		}
		if string(s.ID) == n.Self() && p.State != "leader" {
			p.State = roleName(n.raft.State())
			if t := n.raft.LastContact(); !t.IsZero() {
				p.LastContactMS = time.Since(t).Milliseconds()
			}
		}
		out.Peers = append(out.Peers, p)
	}
	return out, nil
}

// AddPeer adds a voter at its advertised address (leader only). Adding a
// voter already there changes nothing.
func (n *Node) AddPeer(req api.PeerRequest) error {
	if err := api.ValidateAddr("peer", req.Addr); err != nil {
		return api.Errorf(api.CodeInvalid, "%v", err)
	}
	if !n.IsLeader() {
		return n.leaderError()
	}
	if err := n.raft.AddVoter(raft.ServerID(req.Addr), raft.ServerAddress(req.Addr), 0, applyTimeout).Error(); err != nil {
		return api.Errorf(api.CodeUnavailable, "add voter %s: %v", req.Addr, err)
	}
	n.logger.Info("voter added", "addr", req.Addr)
	return nil
}

// RemovePeer removes a voter (leader only). An address that is no voter is
// refused.
func (n *Node) RemovePeer(req api.PeerRequest) error {
	if err := api.ValidateAddr("peer", req.Addr); err != nil {
		return api.Errorf(api.CodeInvalid, "%v", err)
	}
	if !n.IsLeader() {
		return n.leaderError()
	}
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return api.Errorf(api.CodeUnavailable, "%v", err)
	}
	known := false
	for _, s := range f.Configuration().Servers {
		known = known || string(s.ID) == req.Addr
	}
	if !known {
		return api.Errorf(api.CodeNotFound, "%s is no voter of the naming cluster", req.Addr)
	}
	if err := n.raft.RemoveServer(raft.ServerID(req.Addr), 0, applyTimeout).Error(); err != nil {
		return api.Errorf(api.CodeUnavailable, "remove voter %s: %v", req.Addr, err)
	}
	n.logger.Info("voter removed", "addr", req.Addr)
	return nil
}

// SaveSnapshot writes a snapshot of the committed state to w (leader only):
// the same format raft keeps, which RestoreSnapshot and CheckSnapshot read.
func (n *Node) SaveSnapshot(w io.Writer) error {
	if !n.IsLeader() {
		return n.leaderError()
	}
	f := n.raft.Snapshot()
	if err := f.Error(); err != nil {
		return api.Errorf(api.CodeUnavailable, "snapshot: %v", err)
	}
	_, rc, err := f.Open()
	if err != nil {
		return api.Errorf(api.CodeUnavailable, "snapshot: %v", err)
	}
	defer rc.Close()
	_, err = io.Copy(w, rc)
	return err
}

// RestoreSnapshot replaces the cluster's state with a snapshot's (leader
// only), after checking the snapshot whole: a damaged one changes nothing.
// The leader then takes office again from the restored state.
func (n *Node) RestoreSnapshot(b []byte) error {
	if err := CheckSnapshot(bytes.NewReader(b)); err != nil {
		return api.Errorf(api.CodeInvalid, "%v", err)
	}
	if !n.IsLeader() {
		return n.leaderError()
	}
	n.mu.Lock()
	n.leaveOfficeLocked()
	n.mu.Unlock()
	err := n.raft.Restore(&raft.SnapshotMeta{Version: raft.SnapshotVersionMax, Size: int64(len(b))}, bytes.NewReader(b), applyTimeout)
	n.takeOffice()
	if err != nil {
		return api.Errorf(api.CodeUnavailable, "restore: %v", err)
	}
	return nil
}

// runJoin asks the running cluster at cfg.Join to add this node as a voter,
// again every election timeout (at least a second) until the cluster's
// configuration counts it. With an ACL, the node's token needs the
// operator capability.
func (n *Node) runJoin() {
	defer n.wg.Done()
	cl, err := nclient.New(strings.Join(n.cfg.Join, ","), nclient.WithCreds(n.creds), nclient.WithDialer(n.dialer),
		nclient.WithTimeout(max(n.leaderWait(), 5*time.Second)))
	if err != nil {
		n.logger.Error("join: bad addresses", "error", err)
		return
	}
	defer cl.Close()
	every := max(n.cfg.ElectionTimeout, time.Second)
	for {
		if n.isVoter() {
			n.logger.Info("a voter of the naming cluster", "self", n.Self())
			return
		}
		ctx, cancel := context.WithTimeout(n.ctx, max(n.leaderWait(), 5*time.Second))
		err := cl.AddPeer(ctx, n.Self())
		cancel()
		if err != nil {
			n.logger.Warn("join: asking the cluster to add this node failed; retrying", "join", n.cfg.Join, "error", err)
		}
		select {
		case <-n.ctx.Done():
			return
		case <-time.After(every):
		}
	}
}

// isVoter tells whether the configuration this node knows counts it.
func (n *Node) isVoter() bool {
	f := n.raft.GetConfiguration()
	if f.Error() != nil {
		return false
	}
	for _, s := range f.Configuration().Servers {
		if string(s.ID) == n.Self() && s.Suffrage == raft.Voter {
			return true
		}
	}
	return false
}

// raftPeerAllowed tells whether a raft stream may come from remote: from
// the host of a voter of the configuration this node knows, of -peers or
// of -join (any loopback address stands for any other: processes of one
// machine dial out from 127.0.0.1). A node that knows no configuration
// yet (started with -join, not yet added) takes any: the leader that adds
// it may be a node it was not told of.
func (n *Node) raftPeerAllowed(remote net.Addr) bool {
	host, _, err := net.SplitHostPort(remote.String())
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	if ip == nil {
		return false
	}
	addrs := append(slices.Clone(n.cfg.Peers), n.cfg.Join...)
	f := n.raft.GetConfiguration()
	if f.Error() == nil {
		servers := f.Configuration().Servers
		if len(servers) == 0 && len(n.cfg.Join) > 0 {
			return true
		}
		for _, s := range servers {
			addrs = append(addrs, string(s.Address))
		}
	}
	for _, a := range addrs {
		h, _, err := net.SplitHostPort(a)
		if err != nil {
			continue
		}
		if pip := net.ParseIP(h); pip != nil {
			if pip.Equal(ip) || (pip.IsLoopback() && ip.IsLoopback()) {
				return true
			}
			continue
		}
		ips, err := net.LookupIP(h)
		if err != nil {
			continue
		}
		for _, pip := range ips {
			if pip.Equal(ip) || (pip.IsLoopback() && ip.IsLoopback()) {
				return true
			}
		}
	}
	return false
}
