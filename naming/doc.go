// Package naming is the naming node (patent figures 11 and 12): the
// authoritative registry of each group's members and master, the
// detection of several master registrations for one group, the retention
// of one by the group's policy, the removal of the others in the same step,
// and the triggering of every member. The decisions are the pure Registry
// (registry.go, retention.go): every call takes "now" and appends what
// must be persisted, recorded, triggered and timed to an Effects. Node is
// the runtime that carries those out.
//
// The naming service is distributed, as the patent's figure 1 allows
// ([0008]): the nodes of a naming cluster run raft (hashicorp/raft) over
// their one listener, and one node alone is a cluster of one voter. The
// leader decides (it owns the live Registry, with the sessions' expiry
// times) and commits each outcome as state (fsm.go: group records, events,
// the outbox of triggers); every node applies it; followers forward what
// needs the leader (forward.go) and answer stale reads.
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
// Close, but where said otherwise):
//
//   - raft's own goroutines and its transport's, which call the state
//     machine (fsm) from one of them;
//   - the mux, which sorts each connection of the listener into HTTP or a
//     raft stream, one short-lived goroutine per new connection;
//   - the proposer (runProposer): owns the order of proposals to raft; it
//     takes each decided change as the node's mutex queued it, merges
//     those queued meanwhile (256 at most) into one log entry, hands the
//     entry to raft and each change with the entry's future to the
//     committer; it ends once Close closed its queue, closing the
//     committer's;
//   - the committer: waits for each proposal's commit in log order, then
//     runs its post-commit actions (answers to waiting registrants,
//     trigger deliveries). Its wait for one entry runs on a goroutine of
//     its own, so that Close does not wait on raft: that goroutine ends
//     when raft answers the entry, and so outlives Close for an entry
//     still in raft's queue when raft shut down, which raft never answers;
//   - the leadership watcher: takes office (barrier, live registry,
//     resumed deliveries) and leaves it;
//   - the sweeper: calls Registry.Sweep every SweepInterval while leader;
//   - one conflict-window timer per group with an open window (leader;
//     time.AfterFunc), which probes the candidates and decides;
//   - its probes: one goroutine per candidate, which reads that agent's
//     /v1/info within TriggerTimeout and owns only its answer; the timer
//     waits for every one before it decides;
//   - one delivery goroutine per trigger target, alive while it retries
//     and the node leads;
//   - with -join, the joiner, which asks the cluster to add this node;
//   - the HTTP server's goroutines, which call into the Registry under the
//     node's mutex, or forward to the leader.
//
// The Registry is not safe for concurrent use: the node's mutex serializes
// every call into it, and no I/O happens under that mutex.
package naming
