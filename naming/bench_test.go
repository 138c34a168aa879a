package naming

import (
	"context"
	"fmt"
	"io/fs"
	"math/rand"
	"net"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mastership/mastership/agent/store"
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
			resp, err := r.Join(t0, req, 0, fx)
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
func benchNode(b *testing.B, tune ...func(*config.Naming)) (n *Node, cl *client.Client, sessions []uint64) {
	return benchCluster(b, 1, "", tune...)
}

// benchCluster starts a naming cluster of size nodes on 127.0.9x.(1..size)
// (size 1: one node on 127.0.0.1) with the bench groups; n is the leader,
// cl a client of every node (stale reads go to the first, a follower for
// size > 1 as long as the leader is another).
func benchCluster(b *testing.B, size int, base string, tune ...func(*config.Naming)) (n *Node, cl *client.Client, sessions []uint64) {
	b.Helper()
	var lns []net.Listener
	var addrs []string
	for i := 0; i < size; i++ {
		host := "127.0.0.1"
		if size > 1 {
			host = fmt.Sprintf("127.0.%s.%d", base, i+1)
		}
		ln, err := net.Listen("tcp", host+":0")
		if err != nil {
			b.Fatal(err)
		}
		lns, addrs = append(lns, ln), append(addrs, ln.Addr().String())
	}
	nodes := make([]*Node, size)
	for i := range nodes {
		cfg, err := configForBench(b)
		if err != nil {
			b.Fatal(err)
		}
		if size > 1 {
			cfg.Bind, cfg.Peers = addrs[i], addrs
		}
		for _, f := range tune {
			f(&cfg)
		}
		if nodes[i], err = New(cfg); err != nil {
			b.Fatal(err)
		}
		go nodes[i].Serve(lns[i])
		node := nodes[i]
		b.Cleanup(func() { node.Close() })
	}
	deadline := time.Now().Add(20 * time.Second)
	for n == nil {
		for _, nd := range nodes {
			if nd.IsLeader() {
				n = nd
			}
		}
		if time.Now().After(deadline) {
			b.Fatal("no leader")
		}
		time.Sleep(5 * time.Millisecond)
	}
	cl, _ = client.New(strings.Join(addrs, ","))
	sessions = make([]uint64, benchGroups)
	b.Cleanup(func() { cl.Close() })
	// Populate from many goroutines so that the writes batch.
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
	benchRegisterN(b, 16, sessions, register) // 32 registrants at once on two cores, as many agents would be
}

// benchRegisterN registers with parallelism x GOMAXPROCS registrants at
// once.
func benchRegisterN(b *testing.B, parallelism int, sessions []uint64, register func(api.RegisterRequest) error) {
	var term atomic.Uint64
	term.Store(1)
	b.SetParallelism(parallelism)
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

// BenchmarkNodeRegister registers in process: each registration is
// committed (the raft log fsynced, batched) before it returns.
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

// manyRegistrants is the parallelism of the cluster benchmarks: 256
// registrants at once on two cores, the load of thousands of groups'
// masters renewing, which raft batches into few log writes.
const manyRegistrants = 128

// BenchmarkNodeRegisterMany is BenchmarkNodeRegister with as many
// registrants as the cluster benchmarks, to compare side by side.
func BenchmarkNodeRegisterMany(b *testing.B) {
	n, _, sessions := benchNode(b)
	benchRegisterN(b, manyRegistrants, sessions, func(req api.RegisterRequest) error {
		_, err := n.Register(context.Background(), req)
		return err
	})
}

// BenchmarkClusterRegister registers on the leader of three naming nodes
// (in this process: they share its two cores): each registration is
// committed by a majority before it returns.
func BenchmarkClusterRegister(b *testing.B) {
	n, _, sessions := benchCluster(b, 3, "91")
	benchRegisterN(b, manyRegistrants, sessions, func(req api.RegisterRequest) error {
		_, err := n.Register(context.Background(), req)
		return err
	})
}

// BenchmarkClusterRegisterRPC registers over RPC, the client spreading
// nothing: it sends to the node that answered last (followers forward).
func BenchmarkClusterRegisterRPC(b *testing.B) {
	_, cl, sessions := benchCluster(b, 3, "92")
	benchRegisterN(b, manyRegistrants, sessions, func(req api.RegisterRequest) error {
		_, err := cl.Register(context.Background(), req)
		return err
	})
}

// BenchmarkClusterLookupRPC looks up over RPC from the leader (default
// reads).
func BenchmarkClusterLookupRPC(b *testing.B) {
	_, cl, _ := benchCluster(b, 3, "93")
	benchLookup(b, func(req api.LookupRequest) error { _, err := cl.Lookup(context.Background(), req); return err })
}

// BenchmarkClusterLookupStaleRPC looks up over RPC with stale reads,
// answered by whichever node the client reached.
func BenchmarkClusterLookupStaleRPC(b *testing.B) {
	_, cl, _ := benchCluster(b, 3, "94")
	benchLookup(b, func(req api.LookupRequest) error {
		req.Read = api.ReadStale
		_, err := cl.Lookup(context.Background(), req)
		return err
	})
}

// BenchmarkChurnDataDir churns sessions and registrations on one naming
// node with a data dir (the bench groups in place, their members at
// addresses nobody serves): each operation joins a new member session in
// a group, registers it master at a new epoch, and ends the session. It
// logs the data dir's size and the raft log's last index each tenth of the
// way, and reports the last size over the one at the first tenth. Not a
// gate: it measures (see the closing note of the session that added it).
// The history bound over all groups is set low (-max-events 20000) so that
// a run of a few thousand operations reaches it.
func BenchmarkChurnDataDir(b *testing.B) {
	n, _, _ := benchNode(b, func(cfg *config.Naming) { cfg.MaxEvents = 20000 })
	dir := n.cfg.DataDir
	step := max(b.N/10, 1)
	var first, last int64
	b.ResetTimer()
	for i := range b.N {
		g := benchGroup(i % benchGroups)
		id := uint64(100 + i%1000)
		jr, err := n.Join(api.JoinRequest{Group: g, ID: id, Addr: fmt.Sprintf("127.1.%d.%d:7500", i%250, 1+i%250), Priority: 9, TTL: time.Minute})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := n.Register(context.Background(), api.RegisterRequest{Group: g, ID: id, Addr: fmt.Sprintf("127.1.%d.%d:7500", i%250, 1+i%250),
			Session: jr.Session, Epoch: api.Epoch{Term: uint64(1000 + i)}, TTL: time.Minute}); err != nil && api.ToError(err).Code != api.CodeRefused {
			b.Fatal(err)
		}
		if err := n.Leave(api.LeaveRequest{Group: g, ID: id, Session: jr.Session}); err != nil {
			b.Fatal(err)
		}
		if (i+1)%step == 0 {
			size := store.DirBytes(dir)
			if first == 0 {
				first = size
			}
			last = size
			b.Logf("%d operations: data dir %.1f MiB%s; raft last index %d", i+1, float64(size)/(1<<20), dirFiles(dir), n.raft.LastIndex())
		}
	}
	b.StopTimer()
	if first > 0 {
		b.ReportMetric(float64(last)/float64(first), "size-last/first")
	}
	b.ReportMetric(float64(last)/(1<<20), "MiB")
}

// dirFiles lists the files of dir over 1 MiB, for the log.
func dirFiles(dir string) string {
	var out strings.Builder
	filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err == nil && e.Type().IsRegular() {
			if fi, err := e.Info(); err == nil && fi.Size() > 1<<20 {
				rel, _ := filepath.Rel(dir, p)
				fmt.Fprintf(&out, " %s=%.1fMiB", rel, float64(fi.Size())/(1<<20))
			}
		}
		return nil
	})
	return out.String()
}
