package recover_test

import (
	"slices"
	"testing"
	"time"

	"github.com/mastership/mastership/agent/agenttest"
	"github.com/mastership/mastership/recover"
)

// BenchmarkHeal measures the time from the heal of a {1,2,3} | {4,5}
// partition (the naming node reachable from the majority; the minority
// elected its own master and took writes) to one master followed by every
// member with equal digests: through the event path, and with events off
// (the 100 x 3 ms timer alone). Five heals per iteration.
func BenchmarkHeal(b *testing.B) {
	for i, events := range []bool{true, false} {
		name := "events=on"
		if !events {
			name = "events=off"
		}
		b.Run(name, func(b *testing.B) {
			c := agenttest.New(b, agenttest.Options{Agents: 5, Mode: "available", Priorities: []int{5, 4, 3, 2, 1},
				Base: 130 + i, Monitor: monitors(recover.Config{EventsOff: !events})})
			var times []time.Duration
			for n := 0; n < b.N; n++ {
				for round := 0; round < 5; round++ {
					c.WaitStable(30 * time.Second)
					c.Partition([]uint64{1, 2, 3}, []uint64{4, 5})
					c.PartitionNaming(1, 2, 3)
					c.WaitFor(20*time.Second, "a minority master", func() bool { return len(c.Masters()) == 2 })
					for _, m := range c.Masters() {
						c.Put(m, "k", "v")
					}
					start := time.Now()
					c.Heal()
					deadline := start.Add(30 * time.Second)
					for !c.Stable() {
						if time.Now().After(deadline) {
							b.Fatalf("not healed after 30s:\n%s", c.Describe())
						}
						time.Sleep(2 * time.Millisecond)
					}
					times = append(times, time.Since(start))
				}
			}
			slices.Sort(times)
			b.Logf("heal times: %v", times)
			b.ReportMetric(float64(times[len(times)/2].Milliseconds()), "p50-ms")
			b.ReportMetric(float64(times[len(times)-1].Milliseconds()), "max-ms")
		})
	}
}
