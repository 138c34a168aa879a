package kv

import (
	"bytes"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"
)

// fullSort is the store with orders that sort from scratch: the snapshot
// Snapshot gave before it kept its keys sorted.
func fullSort(s *Store) []byte {
	ref := *s
	ref.keyOrd, ref.clientOrd = keyOrder[string]{stale: true}, keyOrder[uint64]{stale: true}
	b, err := ref.Snapshot()
	if err != nil {
		panic(err)
	}
	return b
}

// Whatever mix of inserts, overwrites, deletes, re-inserts, new and
// forgotten clients, and restores comes between snapshots, every snapshot
// is byte for byte the one a full sort gives, and restores.
func TestSnapshotKeysStaySorted(t *testing.T) {
	for seed := range uint64(20) {
		rng := rand.New(rand.NewPCG(seed, 7))
		f := newFeeder(t)
		keys := 1 + rng.IntN(300)
		clients := uint64(1 + rng.IntN(40))
		seqs := map[uint64]uint64{}
		for step := range 3000 {
			k := fmt.Sprintf("k%03d", rng.IntN(keys))
			var op Op
			switch r := rng.IntN(10); {
			case r < 5:
				op = put(k, fmt.Sprint(step))
			case r < 8:
				op = del(k)
			case r < 9:
				op = casAbsent(k, "new")
			default:
				op = get(k)
			}
			var c uint64
			if rng.IntN(3) > 0 {
				c = 1 + rng.Uint64N(clients)
				if rng.IntN(50) == 0 {
					c = 1000 + uint64(step) // a new client, now and then
				}
				seqs[c]++
			}
			f.apply(c, seqs[c], op)
			switch rng.IntN(200) {
			case 0, 1, 2:
				got, err := f.s.Snapshot()
				if err != nil {
					t.Fatal(err)
				}
				if want := fullSort(f.s); !bytes.Equal(got, want) {
					t.Fatalf("seed %d step %d: snapshot differs from the fully sorted one", seed, step)
				}
				if err := NewStore().Restore(got); err != nil {
					t.Fatalf("seed %d step %d: the snapshot does not restore: %v", seed, step, err)
				}
			case 3:
				// Restore into the store: its orders come from the
				// snapshot's lists.
				b, _ := f.s.Snapshot()
				if err := f.s.Restore(b); err != nil {
					t.Fatal(err)
				}
			}
		}
		got, _ := f.s.Snapshot()
		if !bytes.Equal(got, fullSort(f.s)) {
			t.Fatalf("seed %d: the last snapshot differs from the fully sorted one", seed)
		}
	}
}

// Keys that come and go between snapshots do not pile up: what the order
// keeps stays within the map's size (or minAdded), and the next snapshot
// is still sorted and complete.
func TestKeyOrderBounded(t *testing.T) {
	f := newFeeder(t)
	f.apply(0, 0, put("stays", "1"))
	f.s.Snapshot()
	for i := range 20 * minAdded {
		k := fmt.Sprintf("short-%d", i)
		f.apply(0, 0, put(k, "x"))
		f.apply(0, 0, del(k))
		if n := len(f.s.keyOrd.added) + len(f.s.keyOrd.sorted); n > minAdded+2 {
			t.Fatalf("after %d short-lived keys the order holds %d keys for a map of %d", i+1, n, len(f.s.data))
		}
	}
	for i := range 5 {
		f.apply(0, 0, put(fmt.Sprintf("late-%d", 4-i), "y"))
	}
	got, _ := f.s.Snapshot()
	if !bytes.Equal(got, fullSort(f.s)) {
		t.Fatal("snapshot after the churn differs from the fully sorted one")
	}
	s := decodeSnap(t, got)
	var ks []string
	for _, p := range s.Pairs {
		ks = append(ks, p.Key)
	}
	if want := slices.Sorted(maps.Keys(f.s.data)); !slices.Equal(ks, want) {
		t.Fatalf("snapshot keys %v, want %v", ks, want)
	}
}
