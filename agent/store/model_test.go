package store

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mastership/mastership/agent/rlog"
)

// TestMemoryMatchesBolt drives a Memory and a Bolt with the same seeded
// random calls, valid and invalid, with restarts in between, and expects the
// same answer from both to every call, errors included, word for word. A
// harness that swaps one for the other then cannot tell them apart.
func TestMemoryMatchesBolt(t *testing.T) {
	for seed := uint64(1); seed <= 4; seed++ {
		t.Run(fmt.Sprint("seed=", seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 0))
			clock := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
			now := func() time.Time { return clock }
			// Small segments: the log rolls over and compacts often, and
			// each Load reads little.
			m := NewMemory()
			m.now = now
			m.segBytes = 4096
			dir := t.TempDir()
			b := mustOpen(t, dir)
			b.now = now
			b.segBytes = 4096
			defer func() { b.Close() }()
			// outcomes counts successes and refusals per call, to show
			// that both kinds were exercised.
			outcomes := map[string]int{}

			// tip follows the stored log so most appends are valid;
			// some start elsewhere on purpose.
			for step := range 300 {
				clock = clock.Add(time.Second)
				_, _, base, es, _ := m.Load()
				tip := last(base, es)
				var call string
				var f func(s Storage) any
				switch k := rng.IntN(10); {
				case k < 4:
					from := tip
					if rng.IntN(5) == 0 && len(es) > 0 { // overlap
						from = base
					}
					if rng.IntN(8) == 0 { // gap
						from.Index++
					}
					batch := chain(from, ep(tip.Epoch.Term+uint64(rng.IntN(2)), 1+uint64(rng.IntN(2))), 1+rng.IntN(6))
					call = fmt.Sprintf("Append(%d from %s)", len(batch), from)
					f = func(s Storage) any { return s.Append(batch) }
				case k == 4:
					i := base.Index + uint64(rng.IntN(int(tip.Index-base.Index)+3))
					if rng.IntN(5) == 0 { // maybe below the base
						i = uint64(rng.IntN(int(tip.Index) + 1))
					}
					call = fmt.Sprintf("TruncateAfter(%d)", i)
					f = func(s Storage) any { return s.TruncateAfter(i) }
				case k == 5:
					var p rlog.Pos
					switch n := rng.IntN(len(es) + 3); {
					case n < len(es):
						p = rlog.PosOf(es[n])
					case n == len(es): // past the log, on another chain
						p = last(tip, chain(tip, ep(tip.Epoch.Term+1, 9), 1+rng.IntN(3)))
					case n == len(es)+1: // not a point of any log
						p = rlog.Pos{Epoch: ep(1, 1)}
					default:
						p = base
					}
					snap := fmt.Appendf(nil, "snap %d", step)
					call = fmt.Sprintf("SaveSnapshot(%s)", p)
					f = func(s Storage) any { return s.SaveSnapshot(p, snap) }
				case k == 6:
					hs := HardState{Epoch: tip.Epoch, Vote: tip.Epoch, Master: tip.Epoch.ID, MaxTerm: uint64(step)}
					call = "SaveHardState"
					f = func(s Storage) any { return s.SaveHardState(hs) }
				case k == 7:
					rs := []Record{record("g", 1+uint64(rng.IntN(5))), record("g", 2)}[:1+rng.IntN(2)]
					if rng.IntN(4) == 0 {
						rs = append(rs, record("", 3)) // refused, and the others with it
					}
					call = fmt.Sprintf("AddRecords(%d)", len(rs))
					f = func(s Storage) any { out, err := s.AddRecords(rs); return []any{out, err} }
				case k == 8:
					id := uint64(rng.IntN(50))
					if rs, _ := m.Records(); len(rs) > 0 && rng.IntN(4) > 0 {
						id = rs[rng.IntN(len(rs))].ID
					}
					call = fmt.Sprintf("MarkReplayed/DeleteRecord(%d)", id)
					del := rng.IntN(2) == 0
					f = func(s Storage) any {
						if del {
							return s.DeleteRecord(id)
						}
						return s.MarkReplayed(id)
					}
				default:
					call = "restart"
					f = func(s Storage) any { return s.Close() }
				}
				got, want := f(m), f(b)
				kind, _, _ := strings.Cut(call, "(")
				if strings.Contains(fmt.Sprint(got), "store:") {
					kind += " refused"
				}
				outcomes[kind]++
				if call == "restart" {
					b = mustOpen(t, dir)
					b.now = now
					b.segBytes = 4096
				}
				if !reflect.DeepEqual(fmt.Sprint(got), fmt.Sprint(want)) {
					t.Fatalf("step %d %s: memory %v, bolt %v", step, call, got, want)
				}
				if !reflect.DeepEqual(everything(m), everything(b)) {
					t.Fatalf("step %d %s: stores differ:\nmemory %+v\nbolt   %+v", step, call, everything(m), everything(b))
				}
			}
			t.Logf("calls: %v", outcomes)
		})
	}
}

// everything returns all that s's readers return.
func everything(s Storage) []any {
	hs, snap, base, es, err := s.Load()
	rs, rerr := s.Records()
	return []any{hs, snap, base, es, err, rs, rerr}
}

// TestConcurrentReaders lists and reads records and loads from other
// goroutines while one goroutine writes, as the HTTP API does beside the
// agent's owner; run with -race.
func TestConcurrentReaders(t *testing.T) {
	eachImpl(t, func(t *testing.T, h *harness) {
		var wg sync.WaitGroup
		stop := make(chan struct{})
		for range 3 {
			wg.Go(func() {
				for {
					select {
					case <-stop:
						return
					default:
					}
					rs, err := h.s.Records()
					if err != nil {
						t.Error(err)
						return
					}
					for i := 1; i < len(rs); i++ {
						if rs[i].ID <= rs[i-1].ID {
							t.Errorf("Records not sorted by ID: %d then %d", rs[i-1].ID, rs[i].ID)
						}
					}
					if len(rs) > 0 {
						// It may be deleted meanwhile; only a crash would fail.
						h.s.Record(rs[0].ID)
					}
					if _, _, base, es, err := h.s.Load(); err != nil {
						t.Error(err)
					} else if err := rlog.NewAt(base).Append(es...); err != nil {
						t.Errorf("Load during writes: %v", err)
					}
				}
			})
		}
		var tip rlog.Pos
		for i := range 60 {
			es := chain(tip, ep(1, 1), 3)
			if err := h.s.Append(es); err != nil {
				t.Fatal(err)
			}
			tip = last(tip, es)
			rs, err := h.s.AddRecords([]Record{record("g", tip.Index)})
			if err != nil {
				t.Fatal(err)
			}
			if i%3 == 0 {
				if err := h.s.DeleteRecord(rs[0].ID); err != nil {
					t.Fatal(err)
				}
			}
			if i%10 == 9 {
				if err := h.s.SaveSnapshot(tip, nil); err != nil {
					t.Fatal(err)
				}
			}
		}
		close(stop)
		wg.Wait()
	})
}
