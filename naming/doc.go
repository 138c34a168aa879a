// Package naming is the naming node (patent figures 11 and 12): the
// authoritative registry of each group's members and master, the
// detection of several master registrations for one group, the retention
// of one by the group's policy, the removal of the others in the same step,
// and the triggering of every member. The decisions are the pure Registry
// (registry.go, retention.go): every call takes "now" and appends what
// must be persisted, recorded, triggered and timed to an Effects. Node is
// the runtime that carries those out: the bbolt store, timers, trigger
// deliveries, and the msgpack RPC and JSON API on one listener.
//
// # Usage
//
//	cfg, _ := config.DefaultNaming(config.ProfileLAN)
//	cfg.DataDir = "/var/lib/mastership/naming"
//	n, err := naming.New(cfg) // errors.Is(err, boltfile.ErrDamaged): exit 5
//	if err != nil { ... }
//	defer n.Close()
//	ln, _ := net.Listen("tcp", cfg.Bind)
//	go n.Serve(ln)
//
// # Goroutines
//
// Every goroutine a Node starts, and what it alone owns (each stops on
// Close):
//
//   - the committer: owns the store's write path; it batches queued writes
//     into one transaction, then runs their post-commit actions in order
//     (answers to waiting registrants, trigger deliveries);
//   - the sweeper: calls Registry.Sweep every SweepInterval;
//   - one conflict-window timer per group with an open window
//     (time.AfterFunc), which probes the candidates and decides;
//   - one delivery goroutine per trigger target, alive while it retries;
//   - the HTTP server's goroutines, which call into the Registry under the
//     node's mutex.
//
// The Registry is not safe for concurrent use: the node's mutex serializes
// every call into it, and no I/O happens under that mutex.
package naming
