package store

import (
	"fmt"
	"testing"

	"github.com/mastership/mastership/agent/rlog"
)

// benchAppend appends batches of entries with 100-byte ops to s. ns/op is one
// Append call (one commit and, for Bolt, one fsync); entries/s counts
// entries.
func benchAppend(b *testing.B, s Storage, batch int) {
	// One op buffer per slot of the batch: AppendNew keeps op, not a copy.
	ops := make([][]byte, batch)
	for i := range ops {
		ops[i] = make([]byte, 100)
		ops[i][0] = byte(i)
	}
	l := rlog.New()
	es := make([]rlog.Entry, batch)
	for b.Loop() {
		for i := range es {
			e, err := l.AppendNew(ep(1, 1), 1, l.LastIndex()+1, ops[i])
			if err != nil {
				b.Fatal(err)
			}
			es[i] = e
		}
		if err := s.Append(es); err != nil {
			b.Fatal(err)
		}
		// Keep the in-memory log small; the store keeps everything.
		l = rlog.NewAt(l.Last())
	}
	b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "entries/s")
}

func BenchmarkBoltAppend(b *testing.B) {
	for _, batch := range []int{1, 8, 64} {
		b.Run(fmt.Sprint("batch=", batch), func(b *testing.B) {
			s := mustOpen(b, b.TempDir())
			defer s.Close()
			benchAppend(b, s, batch)
		})
	}
}

func BenchmarkMemoryAppend(b *testing.B) {
	for _, batch := range []int{1, 8, 64} {
		b.Run(fmt.Sprint("batch=", batch), func(b *testing.B) {
			benchAppend(b, NewMemory(), batch)
		})
	}
}
