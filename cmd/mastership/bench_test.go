package main

import (
	"math"
	"testing"
)

// Each run's fan-out is its writes/s over its own mode's 1-back-up run;
// a mode without one (bench -agents 1 has no write runs; a failed run is
// not there) gets none rather than another mode's.
func TestFanOut(t *testing.T) {
	ws := []benchWrites{
		{Mode: "strict", Backups: 1, PerSecond: 8000},
		{Mode: "strict", Backups: 8, PerSecond: 4000},
		{Mode: "available", Backups: 2, PerSecond: 3000},
		{Mode: "available", Backups: 1, PerSecond: 6000},
		{Mode: "other", Backups: 4, PerSecond: 1000},
		{Mode: "zero", Backups: 1, PerSecond: 0},
		{Mode: "zero", Backups: 2, PerSecond: 10},
	}
	fanOut(ws)
	want := []float64{1, 0.5, 0.5, 1, 0, 0, 0}
	for i, w := range ws {
		if math.Abs(w.VsOne-want[i]) > 1e-9 {
			t.Errorf("%s with %d back-ups: vs 1 back-up %v, want %v", w.Mode, w.Backups, w.VsOne, want[i])
		}
	}
}
