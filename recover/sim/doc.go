// Package sim is a deterministic whole-group simulation for randomized
// fault schedules (package e2e lists the testing layers: this is the
// third). It runs the real pure
// parts in virtual time — a core.Node per agent over a kv.Store and an
// rlog.Log, one naming.Registry as the naming node, recover.Detect as every
// agent's detector — and re-implements, in the simulator only, what the
// runtimes do around them: gossip views from the current cuts, message
// delivery with seeded drops, delays and reordering, member sessions and
// registrations, the naming node's probe before Decide, trigger delivery,
// the monitor's timer and events, and the recovery steps (BeginRecovery,
// divergence records from FindFork, InstallState, Quarantine, Reassert,
// Release). Seeded clients issue put, get and cas operations.
//
// A schedule draws partitions (optionally cutting the naming node from a
// side), heals, kills (storage kept: log, hard state, installed snapshot;
// the state machine is rebuilt from them on restart), restarts, pauses,
// drops and delays. After every heal and a bounded settle time it checks
// the invariants of package recover: one master, which applied its whole log, followed
// by all with equal digests; strict histories linearizable (porcupine);
// every acknowledged write in the final state or a divergence record;
// epochs never going backwards.
//
// Everything comes from Config.Seed: no wall clock, no global random
// source, no map order in decisions. A failing seed replays exactly.
//
// # Usage
//
//	rep, err := sim.Run(sim.Config{Seed: 7, Mode: api.ModeStrict})
//	if err != nil {
//		t.Fatalf("%v\n%s", err, rep) // seed, schedule, violation
//	}
package sim
