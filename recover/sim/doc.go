// Package sim is a deterministic whole-group simulation for randomized
// fault schedules (package e2e lists the testing layers: this is the
// third). It runs the real pure parts in virtual time, and the same ones
// the runtimes run: a core.Node per agent over a kv.Store and an rlog.Log,
// one naming.Registry as the naming node, a member.Machine per agent for
// its session and registration, a catchup.Machine per agent for its
// catch-up downloads, and a recover.Machine per agent as its self-monitor
// (timer, events, detector, recovery steps, planned handover requests);
// the rules the runtime applies around them (a state's capture, its
// checks, a competing claim's answer, the terms the naming node names)
// are the runtime's own functions. What the simulator supplies instead of
// I/O: gossip views from the current cuts, message delivery with seeded
// drops, delays and reordering, the naming node's probe before Decide,
// trigger delivery, and the effects' answers (a state download is the
// master's snapshot and log suffix, verified by digest, installed with
// InstallState). The steps of recoveries and catch-up downloads take a
// seeded few ticks each, now and then longer than a recovery's bound, so
// that the machines abandon steps, time out and drop late answers as the
// runtime's do. Seeded clients issue put, get and cas operations. The
// report counts the recoveries, the planned handovers asked and
// completed, the recoveries abandoned (and timed out), the catch-up
// downloads cancelled and the late answers dropped.
//
// A schedule draws partitions (optionally cutting the naming node from a
// side), heals, kills (storage kept: log, hard state, installed snapshot;
// the state machine is rebuilt from them on restart), restarts, pauses,
// drops and delays. After every heal and a bounded settle time it checks
// the invariants of package recover: one master, which applied its whole log, followed
// by all with equal digests; strict histories linearizable (porcupine);
// every acknowledged write in the final state or a divergence record;
// epochs never going backwards. At every tick, only a master or a
// candidate holds writes it has not answered.
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
