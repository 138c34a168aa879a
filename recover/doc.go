// Package recover is the self-monitoring mechanism of every agent (patent
// figures 5 to 10): a time-out mechanism (figure 5: a timer of Count x Unit,
// 100 x 3 ms by default, aligned to common boundaries across the group and
// reset after every check) and an external event mechanism (figure 6: the
// naming node's triggers, competing claims, refused registrations, messages
// with a foreign epoch) both run one detector (figures 7 and 8, Detect,
// pure), and an inconsistent mastership runs the recovery (figures 9 and
// 10): align to the retained master, keep the divergent writes as records,
// download its state, synchronize and verify the digest, then take the
// back-up role. A failed recovery quarantines the agent (it serves nothing
// and retries on the next trigger) or terminates it with exit code 3.
//
// # Recovery steps
//
// The steps of figure 10 that the rest of the code cites by number:
//
//  1. Align (act 1010): point to the retained master; stop acting as master.
//  2. Keep divergence: find the fork point (the last entry, by epoch and
//     index, that the retained master also has; the hash chain of the log
//     makes the comparison one lookup per step); the entries after it that
//     this agent applied or stamped become persisted divergence records.
//  3. Download the retained master's state: its snapshot and log suffix.
//  4. Verify (act 1040): the snapshot's digest, computed without touching
//     this agent's state, equals the master's; then install.
//  5. On failure (act 1050): quarantine (serve nothing, retry on the next
//     trigger) or terminate (exit code 3).
//  6. Assign the state (acts 1060 to 1080): back-up; or, for the agent that
//     ranks first by priority, a planned handover from the retained master.
//
// # Invariants
//
// What the tests check, from the simulator to the end-to-end tier:
//
//  1. After the network has been whole for a bounded time, each group has
//     one master, every member follows it, no planned handover is pending
//     or due, and every member's state digest equals the master's
//     (CheckConverged).
//  2. strict: client histories are linearizable (porcupine).
//  3. available: every acknowledged write is in the final state or in a
//     divergence record.
//  4. The epochs any one agent or client sees never go backwards.
//  5. Bad input gets a clear error and changes nothing; no input makes a
//     process panic.
//  6. Without the right credentials (with -acl and TLS on) no caller changes
//     the master, the state or the records.
//  7. Disk and memory of a long-running agent stay bounded by its state.
//
// # One code path
//
// Every decision of the self-monitor is made by Machine, a pure state
// machine counted in ticks: the timer, the pending events, the detector's
// verdict, and the one recovery in flight with its deadlines. Events go in
// (Tick, Event, Looked, and the answers of the recovery's steps: Aligned,
// Diverged, Fetched, Installed, HandedOver); Effects come out (look up the
// naming node, align, keep divergence, fetch the state, install it,
// request a handover, reassert, release, abandon, report, quarantine,
// terminate). Monitor drives it with wall
// time and the agent's calls; the simulator (recover/sim) drives the same
// machine with virtual ticks, as the member session and registration
// (package agent/member) and the naming node's Registry are driven.
//
// Usage:
//
//	mon := recover.New(recover.Config{Count: cfg.MonitorCount, Unit: cfg.MonitorUnit, OnFailure: cfg.OnFailure})
//	a, err := agent.New(cfg, agent.Options{Monitor: mon})
//	// a.Start() runs mon.Start(ctx, a): one goroutine that alone owns the
//	// machine and runs the checks; each step of a recovery (fork search,
//	// download, install) runs on a goroutine of its own. Event is called
//	// from any goroutine and never blocks.
package recover
