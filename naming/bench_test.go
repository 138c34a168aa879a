package naming

import (
	"context"
	"fmt"
	"math/rand"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mastership/mastership/config"
	"github.com/mastership/mastership/naming/api"
	"github.com/mastership/mastership/naming/client"
)

const (
	benchGroups  = 10000
	benchMembers = 5
)

func benchGroup(i int) string { return fmt.Sprintf("group-%05d", i) }

// populate joins benchMembers members into each of benchGroups groups and
// registers member 1 of each as master.
func populate(b *testing.B, join func(api.JoinRequest) (uint64, error), register func(api.RegisterRequest) error) {
	b.Helper()
	for g := 0; g < benchGroups; g++ {
		var first uint64
		for m := 1; m <= benchMembers; m++ {
			s, err := join(api.JoinRequest{Group: benchGroup(g), ID: uint64(m), Addr: fmt.Sprintf("127.0.%d.%d:7500", g%250, m), Priority: m, TTL: 10 * time.Minute})
			if err != nil {
				b.Fatal(err)
			}
			if m == 1 {
				first = s
			}
		}
		if err := register(api.RegisterRequest{Group: benchGroup(g), ID: 1, Addr: fmt.Sprintf("127.0.%d.1:7500", g%250), Session: first, Epoch: api.Epoch{Term: 1}, TTL: 10 * time.Minute}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRegistryMemory reports the heap held per member by the core.
func BenchmarkRegistryMemory(b *testing.B) {
	for i := 0; i < b.N; i++ {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		r := newTestRegistry(0)
		r.cfg.MaxTTL = time.Hour
		fx := &Effects{}
		populate(b, func(req api.JoinRequest) (uint64, error) {
			resp, err := r.Join(t0, req, fx)
			fx.Events = fx.Events[:0]
			fx.Persist = fx.Persist[:0]
			return resp.Session, err
		},
			func(req api.RegisterRequest) error { _, _, err := r.Register(t0, req, fx); return err })
		fx = nil
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/float64(benchGroups*benchMembers), "B/member")
		runtime.KeepAlive(r)
	}
}

// benchNode starts a node with the bench groups; sessions[g] is the session
// of member 1 of group g, the registered master.
func benchNode(b *testing.B) (n *Node, cl *client.Client, sessions []uint64) {
	b.Helper()
	cfg, err := configForBench(b)
	if err != nil {
		b.Fatal(err)
	}
	n, err = New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go n.Serve(ln)
	cl, _ = client.New(ln.Addr().String())
	sessions = make([]uint64, benchGroups)
	b.Cleanup(func() { cl.Close(); n.Close() })
	// Populate from many goroutines so the group commit batches the writes.
	const workers = 64
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for g := w; g < benchGroups; g += workers {
				for m := 1; m <= benchMembers; m++ {
					jr, err := n.Join(api.JoinRequest{Group: benchGroup(g), ID: uint64(m), Addr: fmt.Sprintf("127.0.%d.%d:7500", g%250, m), Priority: m, TTL: 10 * time.Minute})
					if err != nil {
						errs <- err
						return
					}
					if m == 1 {
						sessions[g] = jr.Session
					}
				}
				if _, err := n.Register(context.Background(), api.RegisterRequest{Group: benchGroup(g), ID: 1, Addr: fmt.Sprintf("127.0.%d.1:7500", g%250), Session: sessions[g], Epoch: api.Epoch{Term: 1}, TTL: 10 * time.Minute}); err != nil {
					errs <- err
					return
				}
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		b.Fatal(err)
	}
	return n, cl, sessions
}

// benchRegister registers a new epoch of a random group's master per
// operation through register, 32 registrants at once.
func benchRegister(b *testing.B, sessions []uint64, register func(api.RegisterRequest) error) {
	var term atomic.Uint64
	term.Store(1)
	b.SetParallelism(16) // 32 registrants at once on two cores, as many agents would be
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		rnd := rand.New(rand.NewSource(int64(term.Add(1))))
		for pb.Next() {
			g := rnd.Intn(benchGroups)
			err := register(api.RegisterRequest{Group: benchGroup(g), ID: 1, Addr: fmt.Sprintf("127.0.%d.1:7500", g%250),
				Session: sessions[g], Epoch: api.Epoch{Term: term.Add(1)}, TTL: 10 * time.Minute})
			if err != nil && api.ToError(err).Code != api.CodeRefused { // a concurrent newer epoch wins
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "registrations/s")
}

// benchLookup looks up a random group's master per operation through lookup.
func benchLookup(b *testing.B, lookup func(api.LookupRequest) error) {
	var seed atomic.Int64
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		rnd := rand.New(rand.NewSource(seed.Add(1)))
		for pb.Next() {
			if err := lookup(api.LookupRequest{Group: benchGroup(rnd.Intn(benchGroups))}); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "lookups/s")
}

// BenchmarkNodeRegister registers in process: each registration is durable
// (group-committed to bbolt) before it returns.
func BenchmarkNodeRegister(b *testing.B) {
	n, _, sessions := benchNode(b)
	benchRegister(b, sessions, func(req api.RegisterRequest) error { _, err := n.Register(context.Background(), req); return err })
}

// BenchmarkNodeRegisterRPC registers over the msgpack RPC on loopback, as
// agents do.
func BenchmarkNodeRegisterRPC(b *testing.B) {
	_, cl, sessions := benchNode(b)
	benchRegister(b, sessions, func(req api.RegisterRequest) error { _, err := cl.Register(context.Background(), req); return err })
}

// BenchmarkNodeLookup looks up in process.
func BenchmarkNodeLookup(b *testing.B) {
	n, _, _ := benchNode(b)
	benchLookup(b, func(req api.LookupRequest) error { _, err := n.Lookup(req); return err })
}

// BenchmarkNodeLookupRPC looks up over the msgpack RPC.
func BenchmarkNodeLookupRPC(b *testing.B) {
	_, cl, _ := benchNode(b)
	benchLookup(b, func(req api.LookupRequest) error { _, err := cl.Lookup(context.Background(), req); return err })
}

func configForBench(b *testing.B) (config.Naming, error) {
	cfg, err := config.DefaultNaming("local")
	cfg.DataDir = b.TempDir()
	cfg.MaxTTL = time.Hour
	cfg.SessionTTL = 10 * time.Minute
	cfg.RegistrationTTL = 10 * time.Minute
	cfg.RestartGrace = 10 * time.Minute
	cfg.SweepInterval = time.Second
	return cfg, err
}
