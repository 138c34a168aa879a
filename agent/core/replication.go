package core

// Replication: the master's log, appends and their answers, the commit
// rule, applying, and client proposals.

import (
	"fmt"

	"github.com/mastership/mastership/agent/rlog"
	"github.com/mastership/mastership/naming/api"
)

func (n *Node) tickMaster() {
	if n.gated && n.now >= n.gateDeadline {
		n.logger.Warn("no answer from the promotion gate in time: a veto", "epoch", n.epoch)
		n.Promote(n.epoch, false)
		return
	}
	if n.transferTo != 0 && n.now >= n.transferDeadline {
		if n.timeoutSent {
			// The target may be campaigning, and its voters grant while
			// they still hear us: serving again could commit what its
			// first append cuts away. Step down; the group elects.
			n.logger.Info("handover timed out after the target was told to campaign; stepping down", "to", n.transferTo)
			n.becomeBackup(0, n.epoch)
			return
		}
		n.logger.Info("handover timed out; serving again", "to", n.transferTo)
		n.transferTo, n.transferPin = 0, false
	}
	n.heartbeat++
	if n.heartbeat >= n.cfg.HeartbeatTicks {
		n.heartbeat = 0
		n.broadcastAppend()
	}
	if n.rules.commitsOnTick() {
		n.maybeCommit()
	}
}

// becomeMaster takes mastership at epoch: appends a no-op of the new epoch
// (so the epoch commits before reads), asks the runtime to register, and
// sends the first heartbeat.
func (n *Node) becomeMaster(epoch api.Epoch) {
	if epoch.ID != n.cfg.ID || epoch.Less(n.epoch) {
		panic(fmt.Sprintf("core: becomeMaster at %s from epoch %s", epoch, n.epoch))
	}
	n.epoch, n.master = epoch, n.cfg.ID
	n.seeTerm(epoch.Term)
	n.hsChanged = true
	n.heartbeat = 0
	n.registeredUntil = 0
	n.noQuorumSaid = false
	n.pinned = n.transferring && n.transferPin
	n.transferTo, n.timeoutSent = 0, false
	n.transferring, n.transferPin = false, false
	n.setRole(api.RoleMaster)
	last := n.log.LastIndex()
	// A peer has two heartbeats to answer a new master before an available
	// commit stops waiting for it (a crashed master still looks alive in
	// gossip for a while).
	heard := n.now + uint64(2*n.cfg.HeartbeatTicks)
	heard -= min(heard, uint64(n.cfg.ElectionTicks/2))
	for id := range n.peers {
		n.progress[id] = &progress{next: last + 1, last: heard}
	}
	e, err := n.log.AppendNew(epoch, 0, 0, nil)
	if err != nil {
		panic(fmt.Sprintf("core: append no-op: %v", err))
	}
	n.rd.Entries = append(n.rd.Entries, e)
	ep := epoch
	if n.cfg.Gate {
		n.gated = true
		timeout := n.cfg.GateTimeoutTicks
		if timeout <= 0 {
			timeout = 2 * n.cfg.ElectionTicks
		}
		n.gateDeadline = n.now + uint64(timeout)
		n.rd.Gate = &ep
	} else {
		n.rd.Register = &ep
	}
	n.broadcastAppend()
	n.maybeCommit()
}

// Propose appends a client request. The result comes in a later Ready.
func (n *Node) Propose(ref, client, seq uint64, op []byte) error {
	if n.role != api.RoleMaster {
		return ErrNotMaster
	}
	if err := n.rules.mayPropose(n); err != nil {
		return err
	}
	if n.transferTo != 0 {
		return fmt.Errorf("%w: handing mastership over to %d", ErrNotServing, n.transferTo)
	}
	if n.gated {
		return fmt.Errorf("%w: waiting for the promotion gate", ErrNotServing)
	}
	if k := len(n.proposals); k >= MaxPendingWrites || k > 0 && n.pendingBytes+len(op) > MaxPendingBytes {
		return fmt.Errorf("%w: %d writes (%d bytes) wait to commit, the most a master holds; retry later", ErrNotServing, k, n.pendingBytes)
	}
	e, err := n.log.AppendNew(n.epoch, client, seq, op)
	if err != nil {
		return fmt.Errorf("append: %w", err)
	}
	n.rd.Entries = append(n.rd.Entries, e)
	n.proposals = append(n.proposals, proposal{ref: ref, index: e.Index, epoch: e.Epoch, tick: n.now, size: len(op)})
	n.pendingBytes += len(op)
	// One append per back-up for every proposal taken before the next
	// Ready: the runtime batches what is pending, and so does the wire.
	n.appendPending = true
	n.maybeCommit()
	return nil
}

// ReadIndex tells whether a read may be served from the state machine now:
// on the master, with a committed entry of its epoch, and in strict mode
// while its lease and registration hold.
func (n *Node) ReadIndex() error {
	if n.role != api.RoleMaster {
		return ErrNotMaster
	}
	if !n.serving() {
		return ErrNotServing
	}
	if ep, err := n.log.EpochAt(n.commit); err != nil || ep != n.epoch {
		return fmt.Errorf("%w: no entry of epoch %s committed yet", ErrNotServing, n.epoch)
	}
	return nil
}

func (n *Node) broadcastAppend() {
	for _, p := range n.sortedPeers() {
		n.sendAppend(p.ID)
	}
}

// broadcastEntries sends the new entries to every back-up that may take
// more now; the others get them in one append when they answer (flow
// control), or at the next heartbeat.
func (n *Node) broadcastEntries() {
	last := n.log.LastIndex()
	for _, p := range n.sortedPeers() {
		// Skipped: a back-up that may take no more now, and one whose
		// new entries already went in this Ready (an answer sent them).
		if pr := n.progress[p.ID]; pr != nil && !n.mayTake(pr, last) {
			continue
		}
		n.sendAppend(p.ID)
	}
}

// maxBatch bounds the entries of one append.
const maxBatch = 256

// MaxAppendBytes bounds the operations carried by one append (at least
// one entry goes, whatever its size): 256 entries of the largest kv value
// would otherwise make a frame the transport refuses, and the back-up
// would never hear past it.
const MaxAppendBytes = 1 << 20

// capBytes keeps the leading entries of ents whose operations fit in
// MaxAppendBytes, and always the first.
func capBytes(ents []rlog.Entry) []rlog.Entry {
	size := 0
	for i, e := range ents {
		size += len(e.Op)
		if i > 0 && size > MaxAppendBytes {
			return ents[:i]
		}
	}
	return ents
}

// maxInflight bounds the appends with entries sent to one back-up and not
// answered yet (raft's MaxInflightMsgs); mayTake says when more than one
// may be. An append lost on a broken stream frees its place when the
// back-up refuses the next heartbeat (it names where to resume).
const maxInflight = 2

// mayTake reports whether the back-up of pr may be sent the entries up to
// last now. With nothing in flight, yes: an idle group sends each write at
// once. With an append in flight, only a whole append's worth (maxBatch
// entries or MaxAppendBytes) goes before its answer, as TCP's Nagle rule
// holds small segments while data is unacknowledged: a back-up far behind
// or a flood of large writes is pipelined, while under ordinary load the
// writes proposed during a round trip wait for its answer and then travel
// together, sharing one message, one persist and one answer on every
// back-up. Pipelining every small batch instead sent twice the messages
// for the same writes and, CPU-bound, made them slower, most of all with
// many back-ups (BenchmarkWrite).
func (n *Node) mayTake(pr *progress, last uint64) bool {
	switch {
	case pr.next > last || len(pr.inflight) >= maxInflight:
		return false
	case len(pr.inflight) == 0:
		return true
	}
	return last-pr.next+1 >= maxBatch || n.log.OpBytes(pr.next, last+1, MaxAppendBytes) > MaxAppendBytes
}

// SyncThreshold is how far behind a back-up may be and still catch up from
// the log; further behind (or new), it downloads the master's state.
const SyncThreshold = 2 * maxBatch

func (n *Node) sendAppend(to uint64) {
	pr := n.progress[to]
	if pr == nil {
		pr = &progress{next: n.log.LastIndex() + 1}
		n.progress[to] = pr
	}
	base := n.log.Base().Index
	if pr.next <= base {
		pr.next = base + 1
	}
	prev := pr.next - 1
	pos, err := n.log.PosAt(prev)
	if err != nil {
		pos = n.log.Base()
	}
	last := n.log.LastIndex()
	m := Message{Type: MsgAppend, To: to, PrevIndex: pos.Index, PrevHash: pos.Hash, Commit: n.commit, Sent: n.now, Base: base,
		LastIndex: last, Pinned: n.pinned, Held: n.rules.heldForAppend(n)}
	if n.mayTake(pr, last) {
		hi := min(last+1, pr.next+maxBatch)
		ents, err := n.log.Slice(pr.next, hi)
		if err == nil {
			ents = capBytes(ents)
			hi = pr.next + uint64(len(ents))
			m.Entries = ents
			pr.next = hi // pipelined: optimistic
			pr.inflight = append(pr.inflight, hi-1)
		}
	}
	n.send(m)
}

// acceptAppend is a back-up's handling of its master's append: the log
// matching, truncation of a conflicting suffix, the commit index, and the
// answer. Appends from an older epoch were refused before (Step), and the
// role's step made us a back-up of the sender.
func (n *Node) acceptAppend(m Message) {
	n.silent = 0
	n.streamLost = false // it speaks: whatever closed, it is not gone
	n.masterPinned = m.Pinned
	n.masterHeld = m.Held
	last := n.log.LastIndex()
	if m.PrevIndex > last && (last == 0 || m.PrevIndex-last > SyncThreshold || m.LastIndex > last+SyncThreshold || last < m.Base) {
		// New, or missed appends and far behind the master's log:
		// download a snapshot rather than the log.
		n.needSync(m.From)
		return
	}
	if m.PrevIndex > last {
		// Behind: ask for what follows our last entry.
		n.send(Message{Type: MsgAppendResp, To: m.From, Reject: true, LastIndex: last, Sent: m.Sent})
		return
	}
	if h, ok, _ := n.log.HashAt(m.PrevIndex); !ok || h != m.PrevHash {
		if m.PrevIndex < n.log.Base().Index {
			if m.LastIndex < n.log.Base().Index {
				// The master's whole log ends below our snapshot: our
				// state holds entries it has not (a divergent side's,
				// installed from another master). Download its state.
				n.needSync(m.From)
				return
			}
			// Below our snapshot: only the part after it can be compared.
			n.send(Message{Type: MsgAppendResp, To: m.From, Reject: true, LastIndex: last, Sent: m.Sent})
			return
		}
		n.needSync(m.From)
		return
	}
	var fresh []rlog.Entry
	for i, e := range m.Entries {
		if e.Index <= n.log.LastIndex() {
			if h, ok, _ := n.log.HashAt(e.Index); ok && h == e.Hash {
				continue
			}
			// Our suffix from here differs from the master's.
			if e.Index <= n.applied {
				n.needSync(m.From)
				return
			}
			removed, err := n.log.TruncateAfter(e.Index - 1)
			if err != nil {
				n.needSync(m.From)
				return
			}
			t := e.Index - 1
			if n.rd.Truncated == nil || t < *n.rd.Truncated {
				n.rd.Truncated = &t
			}
			// Entries of this Ready up to the cut are still to be
			// stored (the runtime batches several steps into one Ready):
			// keep them, drop the rest.
			kept := n.rd.Entries[:0]
			for _, x := range n.rd.Entries {
				if x.Index <= t {
					kept = append(kept, x)
				}
			}
			n.rd.Entries = kept
			// Not applied here, but this agent may have stamped and
			// acknowledged them as master before a restart: keep them.
			for _, r := range removed {
				if len(r.Op) > 0 {
					n.rd.Divergent = append(n.rd.Divergent, r)
				}
			}
		}
		fresh = m.Entries[i:]
		break
	}
	if len(fresh) > 0 {
		if err := n.log.Append(fresh...); err != nil {
			n.needSync(m.From)
			return
		}
		n.rd.Entries = append(n.rd.Entries, fresh...)
	}
	match := m.PrevIndex + uint64(len(m.Entries))
	if c := min(m.Commit, match); c > n.commit {
		n.commit = c
		n.apply()
	}
	n.caughtUp = match == m.LastIndex && n.commit >= m.Commit
	n.send(Message{Type: MsgAppendResp, To: m.From, Match: match, LastIndex: n.log.LastIndex(), Sent: m.Sent})
}

// needSync moves a back-up whose log left the master's to syncing: the
// runtime downloads the master's state (recovery steps 2 to 4, package
// recover).
func (n *Node) needSync(master uint64) {
	n.caughtUp = false
	n.setRole(api.RoleSyncing)
	n.rd.Sync = master
}

func (n *Node) handleAppendResp(m Message) {
	if n.role != api.RoleMaster {
		return
	}
	pr := n.progress[m.From]
	if pr == nil {
		return
	}
	pr.last = n.now
	if n.epoch.Less(m.Epoch) {
		n.rd.Events = append(n.rd.Events, Event{Kind: EventForeignEpoch, From: m.From, Epoch: m.Epoch})
		if n.rules.yieldsToNewer() {
			n.rd.Events = append(n.rd.Events, Event{Kind: EventDeposed, From: m.From, Epoch: m.Epoch})
			n.becomeBackup(0, m.Epoch)
		}
		return
	}
	if m.Epoch != n.epoch {
		return
	}
	if m.Reject {
		// Resume after the back-up's last entry, never past our own log.
		next := min(m.LastIndex, n.log.LastIndex()) + 1
		if n.log.LastIndex() > m.LastIndex+SyncThreshold {
			// Far behind (it was away, or it is busy downloading): the
			// state is cheaper than the log. An append that starts at our
			// last entry, past the end of its log by more than
			// SyncThreshold, makes it download (acceptAppend), again if a
			// download just failed.
			next = n.log.LastIndex() + 1
		}
		if pr.match > m.LastIndex {
			pr.match = m.LastIndex
		}
		moved := next != pr.next && !m.Busy
		pr.next = next
		// Whatever was in flight past its last entry is lost or refused.
		pr.inflight = pr.inflight[:0]
		// Resend at once only when the back-up told us where to resume
		// from (behind what we sent, or ahead of it after installing a
		// state); one that keeps refusing (recovering, syncing,
		// following another master) hears from us at the next
		// heartbeat, not in a storm.
		if moved {
			n.sendAppend(m.From)
		}
		return
	}
	pr.acked = max(pr.acked, m.Sent)
	if m.Match > pr.match {
		pr.match = m.Match
	}
	pr.answered(m.Match)
	pr.next = max(pr.next, pr.match+1)
	n.maybeCommit()
	if m.From == n.transferTo {
		n.maybeTimeoutNow()
	}
	if n.mayTake(pr, n.log.LastIndex()) {
		// Proposals came during the round trip, or more than one
		// append's worth waits (sendAppend sends at most maxBatch
		// entries): send them now rather than at the next heartbeat. Not
		// when the entries must wait (the answer was to an append before
		// those in flight, a heartbeat): that would send an empty
		// append, whose answer would send another, a ping-pong of
		// appends that carry nothing.
		n.sendAppend(m.From)
	}
}

// maybeCommit advances the commit index by the mode's rule, applies, and
// answers the proposals now applied.
func (n *Node) maybeCommit() {
	if n.role != api.RoleMaster {
		return
	}
	c := n.rules.commitIndex(n)
	if c > n.commit {
		n.commit = c
		n.apply()
	}
}

func (n *Node) apply() {
	if n.commit <= n.applied {
		return
	}
	res, err := rlog.ApplyTo(n.sm, n.log, n.applied, n.commit)
	if err != nil {
		panic(fmt.Sprintf("core: apply %d..%d: %v", n.applied+1, n.commit, err))
	}
	from := n.applied + 1
	n.applied = n.commit
	if n.cfg.SnapshotBytes > 0 {
		for i := from; i <= n.applied; i++ {
			if e, err := n.log.Entry(i); err == nil {
				n.sinceBytes += len(e.Op)
			}
		}
	}
	if n.role == api.RoleMaster {
		n.answerApplied(from, res)
	}
	n.maybeSnapshot()
}

// answerApplied answers the proposals that the entries from from on,
// applied with results res, carried. A proposal whose entry is not the
// one applied at its index (another master's replaced it, or it was
// applied before from) is answered ErrNotMaster, never with another
// write's result: becomeBackup fails proposals before that can happen,
// and this guard keeps it so.
func (n *Node) answerApplied(from uint64, res []rlog.Result) {
	keep := n.proposals[:0]
	wrong := 0
	for _, p := range n.proposals {
		if p.index <= n.applied {
			e, err := n.log.Entry(p.index)
			r := Result{Ref: p.ref, Index: p.index, Err: ErrNotMaster}
			if err == nil && e.Epoch == p.epoch && p.index >= from && p.index-from < uint64(len(res)) {
				r = Result{Ref: p.ref, Index: p.index, Epoch: e.Epoch, Result: res[p.index-from]}
			} else {
				wrong++
			}
			n.rd.Results = append(n.rd.Results, r)
			n.pendingBytes -= p.size
		} else {
			keep = append(keep, p)
		}
	}
	n.proposals = keep
	if wrong > 0 {
		n.logger.Error("proposals whose entries were not the ones applied at their indices; answered as not taken",
			"count", wrong, "applied_from", from, "applied", n.applied)
	}
}

// maybeSnapshot takes a snapshot of the state machine at the applied index
// once Config.SnapshotEntries entries or SnapshotBytes bytes of operations
// were applied since the last one, hands it to the runtime to store, and
// drops the log behind it but for the window. The stored log is cut at
// the snapshot itself (restarting, an agent needs no entry before it);
// the window stays in memory for the back-ups a little behind.
//
// In available mode a snapshot waits while some member may lack entries
// it would compact away (see Message.Held), for RetainEntries entries at
// most: those entries are the divergent writes of a split brain.
//
// A snapshot is also due, off the schedule, once the applied index reaches
// what the storage asked for to free a whole log segment (CompactWanted).
func (n *Node) maybeSnapshot() {
	due := (n.cfg.SnapshotEntries > 0 && n.applied-n.snapIndex >= uint64(n.cfg.SnapshotEntries)) ||
		(n.cfg.SnapshotBytes > 0 && n.sinceBytes >= n.cfg.SnapshotBytes) ||
		(n.compactWanted > n.snapIndex && n.applied >= n.compactWanted)
	if !due || n.applied <= n.log.Base().Index {
		return
	}
	if n.rules.snapshotWaits(n) {
		return // some member may lack what the snapshot would compact
	}
	pos, err := n.log.PosAt(n.applied)
	if err != nil {
		return
	}
	data, err := n.sm.Snapshot()
	if err != nil {
		n.logger.Error("snapshot of the state machine failed; keeping the log", "index", n.applied, "error", err)
		n.snapIndex, n.sinceBytes = n.applied, 0 // try again a period later
		return
	}
	n.rd.Snapshot = &Snapshot{Pos: pos, Data: data}
	n.snapIndex, n.sinceBytes = n.applied, 0
	n.snapshots++
	if upTo := n.compactionPoint(); upTo > n.log.Base().Index {
		if err := n.log.Compact(upTo); err != nil {
			n.logger.Error("log compaction failed", "upto", upTo, "error", err)
		}
	}
}

// CompactWanted tells the core that a snapshot at index i or beyond would
// let its storage free a whole log segment (0: nothing to free): the core
// takes one as soon as it has applied i, under the same rules as its
// scheduled ones, so that a steady load keeps one segment on disk, not two
// for a whole snapshot interval after each rollover. It does nothing when
// snapshots are off.
func (n *Node) CompactWanted(i uint64) {
	if n.cfg.SnapshotEntries <= 0 && n.cfg.SnapshotBytes <= 0 {
		return
	}
	n.compactWanted = i
	n.maybeSnapshot()
}

func (n *Node) window() uint64 {
	if n.cfg.SnapshotWindow > 0 {
		return uint64(n.cfg.SnapshotWindow)
	}
	return SyncThreshold
}

func (n *Node) retain() uint64 {
	if n.cfg.RetainEntries > 0 {
		return uint64(n.cfg.RetainEntries)
	}
	return max(16*uint64(n.cfg.SnapshotEntries), 10000)
}

// heldByAll is, on a master, the index every member it knows holds.
func (n *Node) heldByAll() uint64 {
	held := n.log.LastIndex()
	for _, pr := range n.progress {
		held = min(held, pr.match)
	}
	return held
}

// held is what every member holds by this agent's account: its own as
// master, its master's otherwise.
func (n *Node) held() uint64 {
	if n.role == api.RoleMaster {
		return n.heldByAll()
	}
	return n.masterHeld
}

// compactionPoint is how far the in-memory log may be compacted after a
// snapshot: the window behind the applied index, and no further than the
// mode's rules allow (an available group's keeps what some member may
// lack, see maybeSnapshot).
func (n *Node) compactionPoint() uint64 {
	window := n.window()
	if n.applied <= window {
		return 0
	}
	return n.rules.compactionPoint(n, n.applied-window)
}

func (n *Node) failProposals(err error) {
	for _, p := range n.proposals {
		n.rd.Results = append(n.rd.Results, Result{Ref: p.ref, Index: p.index, Err: err})
	}
	n.proposals, n.pendingBytes = nil, 0
}

// MaxPendingWrites bounds the proposals a master holds unanswered, and
// MaxPendingBytes their operations (one proposal is taken whatever its
// size). Past either, Propose refuses with ErrNotServing, which clients
// retry: a flood of writes that cannot commit as fast as they come (a
// master cut off from its back-ups, whose clients time out and write
// again) makes the master refuse, not grow until it runs out of memory.
// An ordinary load holds one proposal per waiting client.
const (
	MaxPendingWrites = 1 << 16
	MaxPendingBytes  = 64 << 20
)
