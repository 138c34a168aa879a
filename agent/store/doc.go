// Package store is the peer agent's durable state: the hard state it must not
// forget across a restart (epoch, vote, master followed, highest term seen),
// its replication log above a snapshot, and the divergence records recovery
// keeps.
//
// Storage is the interface the agent builds on. Two implementations share
// one body of logic and store the same bytes:
//
//   - Bolt, in the agent's data directory: a bbolt file (FileName) for the
//     hard state, the snapshot and the divergence records, and the log in
//     segment files under wal/. Whatever a call acknowledged survives
//     kill -9 and power loss. The directory is locked: a second agent on
//     it gets ErrLocked.
//   - Memory, for tests and agents run without a data directory. It
//     behaves as Bolt does, and Close leaves it usable, so a test harness
//     can restart an agent on the same *Memory.
//
// # Layout
//
// Three bbolt buckets, with uint64 keys 8 bytes big-endian so byte order is
// numeric order:
//
//	meta     "hardstate" -> HardState, "base" -> rlog.Pos, "snapshot" -> snapshot bytes as given,
//	         "walgen" -> the log's generation, "cut" -> a truncation to finish at open
//	records  ID          -> Record (the bucket's sequence is the last ID given out)
//	log      empty; stores made before the write-ahead log kept the log here,
//	         and opening one moves it to segments
//
// The log is a write-ahead log: fixed-size segment files GEN-SEQ.wal
// (DefaultSegmentBytes, allocated when made) holding checksummed frames,
// each a truncation point and a batch of entries. Appending a batch costs
// one write and one fdatasync; a bbolt commit costs two fsyncs. A torn last
// frame (a crash during the write) is dropped and cleared at open; damage
// to anything synced is an error. SaveSnapshot deletes the segments behind
// the snapshot. The frame format and the crash rules are in wal.go.
//
// The stored log always chains from the base, as an rlog.Log does: writes
// that do not extend it are refused, and Load checks the chain, so a
// corrupt or tampered file is an error wrapping ErrCorrupt (and
// boltfile.ErrDamaged) that names the bucket and key, or the segment and
// offset, never a panic or a silently wrong log.
//
// # Goroutines
//
// The agent's owning goroutine makes every call; the HTTP API may list and
// read divergence records from its own goroutines. Both implementations are
// safe for concurrent use: writers take turns under a mutex, and readers run
// beside each other.
//
// # Usage
//
// At start, open the store and rebuild the log from it:
//
//	st, err := store.Open(dataDir) // or store.NewMemory()
//	if errors.Is(err, store.ErrLocked) { /* another agent runs here */ }
//	hs, snap, base, entries, err := st.Load()
//	sm.Restore(snap)                // if snap != nil
//	l := rlog.NewAt(base)
//	err = l.Append(entries...)
//
// Store before acting: save the hard state before voting or following, and
// append entries before acknowledging them:
//
//	err = st.SaveHardState(store.HardState{Epoch: e, Vote: v, Master: m, MaxTerm: t})
//	err = st.Append([]rlog.Entry{e1, e2})
//
// In recovery, keep the divergent suffix as records, then cut the log and take
// the retained master's state:
//
//	removed, _ := l.TruncateAfter(fork)
//	recs, err := st.AddRecords(records) // from removed; IDs assigned
//	err = st.TruncateAfter(fork)
//	err = st.SaveSnapshot(masterBase, masterSnap) // if the master sent one
//	err = st.Append(masterSuffix)
//
// After taking a snapshot of the state machine at index i, compact:
//
//	p, _ := l.PosAt(i)
//	err = st.SaveSnapshot(p, snapBytes) // drops entries up to i, keeps the rest
//
// Operators list, replay and discard records through the agent's API:
//
//	rs, err := st.Records()
//	err = st.MarkReplayed(id)
//	err = st.DeleteRecord(id) // errors.Is(err, store.ErrNotFound) for an unknown id
package store
