package kv

import (
	"fmt"
	"testing"

	"github.com/mastership/mastership/agent/rlog"
)

// BenchmarkApplyPut applies puts of 100-byte values over 1024 keys, each
// from a client session, as a master's steady write load does.
func BenchmarkApplyPut(b *testing.B) {
	ops := make([][]byte, 1024)
	for i := range ops {
		ops[i] = mustEncode(b, Op{Kind: KindPut, Key: fmt.Sprintf("key-%04d", i), Value: make([]byte, 100)})
	}
	s := NewStore()
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		idx := uint64(i) + 1
		s.Apply(rlog.Entry{Index: idx, Client: uint64(i%16) + 1, Seq: idx, Op: ops[i%len(ops)]})
	}
}

func benchStore(b *testing.B, keys int) *Store {
	s := NewStore()
	for i := range keys {
		s.Apply(rlog.Entry{Index: uint64(i) + 1, Client: uint64(i%64) + 1, Seq: uint64(i) + 1,
			Op: mustEncode(b, Op{Kind: KindPut, Key: fmt.Sprintf("key-%06d", i), Value: make([]byte, 100)})})
	}
	return s
}

// BenchmarkDigest is the incremental digest that status queries and
// recovery's verify step read: O(1) whatever the state's size. Each
// iteration computes it, as the first call after an apply does (later
// calls return the same).
func BenchmarkDigest(b *testing.B) {
	s := benchStore(b, 10000)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		s.digested = false
		_ = s.Digest()
	}
}

// BenchmarkRecomputeDigest is the full recompute over the same state, for
// comparison.
func BenchmarkRecomputeDigest(b *testing.B) {
	s := benchStore(b, 10000)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		_ = s.RecomputeDigest()
	}
}

// BenchmarkSnapshot takes the snapshot of a state of 10000 keys of 100
// bytes and 64 clients, as the agent's loop does every SnapshotEntries
// writes (the loop waits for it).
func BenchmarkSnapshot(b *testing.B) {
	s := benchStore(b, 10000)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if _, err := s.Snapshot(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRestore restores that snapshot, as an agent starting from its
// data dir or installing a downloaded state does.
func BenchmarkRestore(b *testing.B) {
	snap, err := benchStore(b, 10000).Snapshot()
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(snap)))
	b.ResetTimer()
	for range b.N {
		if err := NewStore().Restore(snap); err != nil {
			b.Fatal(err)
		}
	}
}
