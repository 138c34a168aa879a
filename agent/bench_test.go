package agent_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/mastership/mastership/agent"
	"github.com/mastership/mastership/agent/agenttest"
	"github.com/mastership/mastership/agent/core"
	"github.com/mastership/mastership/agent/kv"
)

// cpuTime is the CPU time (user and system) the process used so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[min(len(s)-1, int(float64(len(s))*p))]
}

// BenchmarkWrite measures write throughput and latency through the master
// with 1, 2, 4 and 8 back-ups, 8 concurrent writers per core, in both
// modes, with the log in memory and on disk (a write-ahead log with fdatasync: durable).
func BenchmarkWrite(b *testing.B) {
	base := 90
	for _, durable := range []bool{false, true} {
		for _, mode := range []string{"strict", "available"} {
			for _, backups := range []int{1, 2, 4, 8} {
				base++
				benchWrite(b, base, durable, mode, backups)
			}
		}
	}
}

func benchWrite(b *testing.B, base int, durable bool, mode string, backups int) {
	store := map[bool]string{false: "memory", true: "disk"}[durable]
	b.Run(fmt.Sprintf("log=%s/mode=%s/backups=%d", store, mode, backups), func(b *testing.B) {
		prios := make([]int, backups+1)
		for i := range prios {
			prios[i] = len(prios) - i
		}
		c := agenttest.New(b, agenttest.Options{Agents: backups + 1, Mode: mode, Priorities: prios, Base: base, Durable: durable})
		m := c.WaitStable(30 * time.Second)
		a := c.Members[m].Agent
		var (
			mu   sync.Mutex
			lats []time.Duration
			seq  atomic.Uint64
			// The master's appends that carry entries, and those entries:
			// how well the writes share messages (batching).
			appends, sent atomic.Int64
		)
		if err := agent.OnSendForTest(a, func(m core.Message) {
			if m.Type == core.MsgAppend && len(m.Entries) > 0 {
				appends.Add(1)
				sent.Add(int64(len(m.Entries)))
			}
		}); err != nil {
			b.Fatal(err)
		}
		// The master's stores of log entries (fsyncs, durable): how many
		// writes share one.
		g := map[string]string{"group": "g"}
		stores0, _ := value(scrape(b, a.APIAddr()), "mastership_agent_log_write_seconds", g)
		b.SetParallelism(8)
		cpu0 := cpuTime()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			var local []time.Duration
			for pb.Next() {
				n := seq.Add(1)
				op := kv.Op{Kind: kv.KindPut, Key: fmt.Sprintf("k%d", n%1024), Value: []byte("0123456789abcdef0123456789abcdef")}
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				start := time.Now()
				_, err := a.Execute(ctx, op, 0, 0)
				for errors.Is(err, core.ErrNotServing) && ctx.Err() == nil {
					// A strict master whose registration renewal is
					// late under this load pauses; count the wait.
					time.Sleep(time.Millisecond)
					_, err = a.Execute(ctx, op, 0, 0)
				}
				local = append(local, time.Since(start))
				cancel()
				if err != nil {
					b.Error(err)
					return
				}
			}
			mu.Lock()
			lats = append(lats, local...)
			mu.Unlock()
		})
		b.StopTimer()
		stores1, _ := value(scrape(b, a.APIAddr()), "mastership_agent_log_write_seconds", g)
		b.ReportMetric((stores1-stores0)/float64(b.N), "master-stores/write")
		if n := appends.Load(); n > 0 {
			b.ReportMetric(float64(n)/float64(b.N), "appends/write")
			b.ReportMetric(float64(sent.Load())/float64(n), "entries/append")
		}
		b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(b.N), "cpu-µs/write")
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "writes/s")
		b.ReportMetric(float64(percentile(lats, 0.5).Microseconds()), "p50-µs")
		b.ReportMetric(float64(percentile(lats, 0.99).Microseconds()), "p99-µs")
	})
}

// BenchmarkFailover measures, over 20 master kills per iteration, the time
// from the kill to a new master acknowledging a write (local profile: 10ms
// ticks, 300ms election timeout).
func BenchmarkFailover(b *testing.B) {
	for _, mode := range []string{"strict", "available"} {
		b.Run("mode="+mode, func(b *testing.B) {
			base := 110
			if mode == "available" {
				base = 111
			}
			c := agenttest.New(b, agenttest.Options{Agents: 5, Mode: mode, Base: base})
			var times []time.Duration
			for i := 0; i < b.N; i++ {
				for run := 0; run < 20; run++ {
					old := c.WaitStable(30 * time.Second)
					c.Kill(old)
					start := time.Now()
					deadline := start.Add(20 * time.Second)
					for {
						if ms := c.Masters(); len(ms) == 1 {
							if _, err := c.Put(ms[0], "failover", fmt.Sprint(run)); err == nil {
								break
							}
						}
						if time.Now().After(deadline) {
							b.Fatalf("no new master serving writes 20s after killing %d:\n%s", old, c.Describe())
						}
						time.Sleep(2 * time.Millisecond)
					}
					times = append(times, time.Since(start))
					c.Restart(old)
				}
			}
			b.Logf("failover times: %v", times)
			b.ReportMetric(float64(percentile(times, 0.5).Milliseconds()), "p50-ms")
			b.ReportMetric(float64(slices.Max(times).Milliseconds()), "max-ms")
			b.ReportMetric(float64(len(times)), "kills")
		})
	}
}

// BenchmarkWriteHTTP is BenchmarkWrite through the agent's HTTP API, as
// the command-line client and the etcd comparison write: 16 writers, JSON
// puts of 100-byte values to the master, three strict agents on data dirs.
func BenchmarkWriteHTTP(b *testing.B) {
	c := agenttest.New(b, agenttest.Options{Agents: 3, Mode: "strict", Priorities: []int{3, 2, 1}, Base: 89, Durable: true})
	m := c.WaitStable(30 * time.Second)
	url := "http://" + c.Members[m].Config.API + "/v1/kv"
	value := strings.Repeat("v", 100)
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	defer hc.CloseIdleConnections()
	var seq atomic.Uint64
	b.SetParallelism(8)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			body := fmt.Sprintf(`{"op":"put","key":"k%d","value":%q}`, seq.Add(1)%1024, value)
			resp, err := hc.Post(url, "application/json", strings.NewReader(body))
			if err != nil {
				b.Error(err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				b.Errorf("put: %s", resp.Status)
				return
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "writes/s")
}
