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
// Every goroutine an agent starts, and what it alone owns. Each stops at
// Close (Crash stops them as a kill would), but where said otherwise:
//
//   - run, the loop: owns the core, the log, the state machine, the
//     waiting proposals, the peer address table and the catch-up machine
//     with its job (package catchup); every other goroutine asks it
//     through typed commands (BeginRecovery, Quarantine, Propose, ...),
//     which run on it. The one call on the state machine made elsewhere
//     is SnapshotDigest, by a download's goroutine, on the snapshot's
//     bytes alone (rlog.StateMachine);
//   - the publisher: pushes role changes to gossip metadata and claims, off
//     the loop (memberlist may wait for a broadcast);
//   - the naming loop: owns the member machine (package member: the
//     member session and the master registration, counted in ticks) and
//     carries out its effects; each call to the naming node (join, renew,
//     register, which may wait out a conflict window) runs on a goroutine
//     of its own, bounded by its context, and hands its answer back; a
//     join refused because the ID is taken ends the agent (Fatal);
//   - the hook runner (package hook, Runner.Run), from Start: owns the
//     role hook's pending state and runs it, one run at a time with the
//     latest state: the Go callback (Options.OnRoleChange), then the
//     on-role-change executable, bounded by HookTimeout. Close waits for a
//     run under way, so a callback that does not return holds Close;
//   - the health checker (runHealth), with -check or -check-http only:
//     owns the count of failed checks in a row; every CheckInterval it
//     runs the check, writes the service's health under Agent.mu, tells
//     the loop and gossip when the health changes, and an unhealthy master
//     asks from it for a handover (waiting for its outcome, two election
//     timeouts and a second at most);
//   - the promotion gate (runGate), with -pre-promote or
//     Options.PrePromote: one per election won that waits for the gate,
//     started by the loop; it runs the Go gate, then the executable, one
//     at a time with the role hook (Runner.Exclusive), gives the core its
//     answer on the loop and ends; at Close it ends without answering;
//   - the Go gate's call (callGate): Options.PrePromote on a goroutine of
//     its own, which the gate waits for HookTimeout at most. A callback
//     that does not return in time is a veto; its goroutine outlives that
//     answer (and Close) until the callback returns, and what it returns
//     is dropped;
//   - a catch-up download while the core syncs with its master (at most
//     one; the catch-up machine starts it, and cancels it when the core
//     moves on or a recovery begins);
//   - the self-monitor's loop, which owns its machine, and the step of a
//     recovery in flight (package recover);
//   - the keyring fan-out: during a keyring operation (POST /v1/keyring,
//     on its HTTP handler's goroutine), one goroutine per live member of
//     the gossip cluster sends it the change, bounded at 5 s, and owns
//     only that member's outcome; the handler waits for every one;
//   - the HTTP server's goroutines, the transport's accept loop, one reader
//     per inbound stream and one writer per peer, and memberlist's and
//     package gossip's own.
//
// The mutex Agent.mu guards only the status snapshot, the gossip view, the
// service's health and the registration state that other goroutines read;
// it is never held while calling out.
package agent
