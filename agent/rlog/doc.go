// Package rlog is the agent's replication log: an in-memory, hash-chained
// sequence of client requests stamped with (epoch, index), and the pure
// helpers that recovery builds on (finding the fork point with another log,
// listing the divergent suffix, applying entries to a state machine).
//
// The package is pure: no goroutines, clocks, sockets or disk. A Log is not
// safe for concurrent use; it belongs to the agent's single owning goroutine,
// as the StateMachine does.
//
// # The hash chain
//
// Every entry carries Hash = SHA-256(prev.Hash || epoch || index || client ||
// seq || op), with the empty prefix at index 0 holding the zero hash. Equal
// hashes at index i therefore mean equal prefixes up to i, which is what lets
// FindFork compare two logs with one lookup per step of a binary search
// (recovery step 2, package recover) instead of shipping whole logs.
//
// # Usage
//
// On the master, stamp and append a request, then apply what is committed:
//
//	l := rlog.New()
//	e, err := l.AppendNew(epoch, clientID, seq, opBytes)
//	// ... replicate e; once the mode's acknowledgements are in:
//	results, err := rlog.ApplyTo(sm, l, applied, e.Index)
//
// On a back-up, Append checks contiguity, epoch order and the chain:
//
//	if err := l.Append(entries...); err != nil { /* refuse, ask again */ }
//
// In recovery, find where this log left the retained master's, keep the
// divergent entries, and take the master's suffix:
//
//	fork, err := rlog.FindFork(l, remote) // remote: a Prober over RPC
//	removed, err := l.TruncateAfter(fork) // -> divergence records
//	err = l.Append(masterSuffix...)
package rlog
