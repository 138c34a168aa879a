// Package agent is the peer agent's runtime: one replica of a group. It
// wraps the pure replica core (agent/core) with the I/O the core asks
// for: the storage (agent/store), the message streams (agent/transport),
// gossip (package gossip), the naming node (naming/client), state
// downloads, the HTTP API, and the self-monitor plugged in through the
// Monitor interface (package recover).
//
// # Usage
//
//	cfg, _ := config.DefaultAgent(config.ProfileLAN)
//	cfg.Group, cfg.ID, cfg.Mode, cfg.Expect = "orders", 1, "strict", 3
//	cfg.Bind, cfg.Join, cfg.Naming = "10.0.0.1:7946", []string{"10.0.0.2:7946"}, "10.0.0.9:7400"
//	a, err := agent.New(cfg, agent.Options{Monitor: recover.New(recover.Config{})})
//	if err != nil { ... }
//	if err := a.Start(); errors.Is(err, agent.ErrIDTaken) { ... } // exit 4
//	defer a.Close()
//	select {
//	case err := <-a.Fatal(): // the ID was taken, or the storage failed
//	case <-stop:
//	}
//
// # Goroutines
//
// Every goroutine an agent starts, and what it alone owns (each stops at
// Close; Crash stops them as a kill would):
//
//   - run, the loop: owns the core, the log, the state machine, the
//     waiting proposals, the peer address table and the catch-up job; every
//     other goroutine asks it through do (Do, BeginRecovery, ...);
//   - the publisher: pushes role changes to gossip metadata and claims, off
//     the loop (memberlist may wait for a broadcast);
//   - the naming session loop: joins the group at the naming node and
//     renews the session; a join refused because the ID is taken ends the
//     agent (Fatal);
//   - a registration loop per mastership: registers the epoch and renews it
//     while the agent is master at that epoch;
//   - a catch-up download while the core syncs with its master (at most
//     one; the loop cancels it when the core moves on or a recovery
//     begins);
//   - the self-monitor's loop and its recovery job (package recover);
//   - the HTTP server's goroutines, the transport's accept loop, one reader
//     per inbound stream and one writer per peer, and memberlist's and
//     package gossip's own.
//
// The mutex Agent.mu guards only the status snapshot, the gossip view and
// the registration state that other goroutines read; it is never held
// while calling out.
package agent
