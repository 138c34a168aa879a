package rlog

import (
	"errors"
	"fmt"
)

// ErrForkUnknown means the fork point lies where one of the logs has
// compacted its entries (or the logs share no index they both hold), so it
// cannot be found by comparing hashes. Recovery then falls back to
// downloading the other side's snapshot; the entries in question are
// already in this side's snapshot and cannot be listed as divergent.
var ErrForkUnknown = errors.New("rlog: fork point unknown")

// Prober answers questions about one log's hash chain. The local log is a
// Prober (*Log); the retained master's log is one behind an RPC client, so
// every method may fail.
//
// FindFork calls a Prober from the caller's goroutine only, and does not
// keep it.
type Prober interface {
	// Span returns the lowest and highest index whose hash HashAt can
	// give: the snapshot base index (0 if never compacted) and the last
	// index.
	Span() (first, last uint64, err error)
	// HashAt returns the chain hash at index i, or ok false when the log
	// does not hold it. Index 0 is always held, with the zero hash.
	HashAt(i uint64) (hash [32]byte, ok bool, err error)
}

// BaseProber is a Prober that also gives the base of its log: the point its
// snapshot ends at (the zero Pos when it never compacted). ForkByEpoch
// uses it where hashes cannot decide.
type BaseProber interface {
	Prober
	BasePos() (Pos, error)
}

// ForkByEpoch finds a fork that FindFork could not (ErrForkUnknown: the
// indices both logs hold do not reach it), from the epoch of the remote
// log's base: the last index local holds that is provably in the remote
// log, or false when there is none.
//
// One master stamps an epoch, and appends each index once in it; every
// log holding an entry of that epoch got it from that master's log, with
// every entry before it (an append carries the hash of what precedes it).
// So the remote log, whose base at index B has epoch e, holds every entry
// (i, e) with i <= B that any log holds, and all that comes before it. A
// local entry of epoch e at or below B is therefore common, and so is the
// local prefix up to it; the local entries after it, up to B, have newer
// epochs than any remote entry there (epochs never decrease along a log)
// and differ. Below the first local entry of an older epoch nothing is
// known: the remote log may or may not hold it.
//
// The answer is the highest such index that local holds (its base
// counts), never above B. A local entry at B itself must then hash as
// the remote base does, or nothing is proven (false).
func ForkByEpoch(local *Log, remote Pos) (uint64, bool) {
	if remote.Epoch.IsZero() {
		return 0, false
	}
	lf, ll := local.base.Index, local.LastIndex()
	if lf > remote.Index {
		return 0, false
	}
	for j := min(ll, remote.Index); ; j-- {
		p, err := local.PosAt(j)
		if err != nil {
			return 0, false
		}
		switch {
		case p.Epoch == remote.Epoch:
			if j == remote.Index && p.Hash != remote.Hash {
				return 0, false
			}
			return j, true
		case p.Epoch.Less(remote.Epoch):
			return 0, false
		}
		if j == lf {
			return 0, false
		}
	}
}

// FindFork returns the last index at which local and remote hold the same
// chain hash. Because the hash covers the epoch, the index and every entry
// before, that is the last index where both logs hold the same entry and
// the same prefix; everything local holds after it is divergent.
//
// The comparison "same hash at i" is true up to the fork and false after,
// so a binary search over the indices both logs hold finds it with
// O(log n) probes of each side. When the fork lies below what both hold
// (a compacted region), FindFork returns ErrForkUnknown.
func FindFork(local, remote Prober) (uint64, error) {
	lf, ll, err := local.Span()
	if err != nil {
		return 0, fmt.Errorf("find fork: local span: %w", err)
	}
	rf, rl, err := remote.Span()
	if err != nil {
		return 0, fmt.Errorf("find fork: remote span: %w", err)
	}
	lo, hi := max(lf, rf), min(ll, rl)
	if lo > hi {
		return 0, fmt.Errorf("%w: local holds [%d, %d], remote [%d, %d]", ErrForkUnknown, lf, ll, rf, rl)
	}
	same := func(i uint64) (bool, error) {
		a, aok, err := local.HashAt(i)
		if err != nil {
			return false, fmt.Errorf("find fork: local hash at %d: %w", i, err)
		}
		b, bok, err := remote.HashAt(i)
		if err != nil {
			return false, fmt.Errorf("find fork: remote hash at %d: %w", i, err)
		}
		if !aok || !bok {
			// Span promised this index; a log that shrank under us is a
			// caller bug we report rather than guess around.
			return false, fmt.Errorf("find fork: index %d inside both spans but not held (local %t, remote %t)", i, aok, bok)
		}
		return a == b, nil
	}
	ok, err := same(lo)
	if err != nil {
		return 0, err
	}
	if !ok {
		return 0, fmt.Errorf("%w: logs differ already at %d, the lowest index both hold", ErrForkUnknown, lo)
	}
	// Invariant: same(lo) is true and the answer lies in [lo, hi].
	for lo < hi {
		mid := lo + (hi-lo+1)/2
		ok, err := same(mid)
		if err != nil {
			return 0, err
		}
		if ok {
			lo = mid
		} else {
			hi = mid - 1
		}
	}
	return lo, nil
}

// Divergent returns, without changing the log, the entries local holds
// after fork: the ones recovery records as divergence before truncating.
// It fails with ErrCompacted when fork is below the base, since those
// entries are gone; FindFork never returns such a fork.
func Divergent(local *Log, fork uint64) ([]Entry, error) {
	last := local.LastIndex()
	if fork >= last {
		return nil, nil
	}
	if fork < local.base.Index {
		return nil, fmt.Errorf("divergent after %d: %w: base %d", fork, ErrCompacted, local.base.Index)
	}
	return local.Slice(fork+1, last+1)
}
