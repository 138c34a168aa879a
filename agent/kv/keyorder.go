package kv

import (
	"cmp"
	"maps"
	"slices"
)

// keyOrder keeps a map's keys in sorted order for Snapshot, which must
// list them sorted, at the cost of sorting only the keys added since the
// last snapshot instead of all of them at every snapshot: under a steady
// write load a snapshot of a large state re-sorted the same keys every
// SnapshotEntries writes, in the agent's loop.
//
// sorted holds the keys of the last snapshot (or restore) in order, some
// of them maybe deleted since; added the keys inserted since, in no order,
// some maybe deleted or inserted twice since. Keys taken the map's
// presence filters both. Deletes cost nothing. Memory is bounded: added
// past the map's size (a churn of short-lived keys with rare snapshots) is
// dropped, and the next snapshot sorts the map's keys from scratch.
//
// Like the Store, it is owned by one goroutine.
type keyOrder[K cmp.Ordered] struct {
	sorted, added []K
	// stale: sorted and added no longer cover the map's keys.
	stale bool
}

// minAdded is how many added keys keyOrder keeps whatever the map's size.
const minAdded = 1024

// note records a key inserted into a map of n keys (n counting it).
func (o *keyOrder[K]) note(k K, n int) {
	if o.stale {
		return
	}
	if len(o.added) >= max(minAdded, n) {
		o.sorted, o.added, o.stale = nil, nil, true
		return
	}
	o.added = append(o.added, k)
}

// keys returns the keys of m in order, and keeps them as sorted. The
// caller must not modify the slice; it is valid until the next call.
func keys[K cmp.Ordered, V any](o *keyOrder[K], m map[K]V) []K {
	if o.stale {
		o.sorted, o.added, o.stale = slices.Sorted(maps.Keys(m)), nil, false
		return o.sorted
	}
	if len(o.added) == 0 && len(o.sorted) == len(m) {
		return o.sorted // no key added, and so none deleted
	}
	slices.Sort(o.added)
	out := make([]K, 0, len(m))
	i, j := 0, 0
	for i < len(o.sorted) || j < len(o.added) {
		var k K
		switch {
		case j == len(o.added) || (i < len(o.sorted) && o.sorted[i] < o.added[j]):
			k = o.sorted[i]
			i++
		case i == len(o.sorted) || o.added[j] < o.sorted[i]:
			k = o.added[j]
			j++
		default: // in both: deleted after the last snapshot, then inserted again
			k = o.sorted[i]
			i++
			j++
		}
		if n := len(out); n > 0 && out[n-1] == k {
			continue // inserted twice since the last snapshot
		}
		if _, ok := m[k]; ok {
			out = append(out, k)
		}
	}
	o.sorted, o.added = out, o.added[:0]
	return out
}

// reset makes sorted (in order, unique, the map's keys) the order.
func (o *keyOrder[K]) reset(sorted []K) {
	o.sorted, o.added, o.stale = sorted, nil, false
}
