// Package kv is Mastership's reference state machine: a replicated
// key-value store with put, get, compare-and-swap and delete, implementing
// rlog.StateMachine. The agent's demo, the `mastership kv` command and the
// tests run on it; embedders bring their own state machine instead.
//
// The package is pure: no goroutines, clocks, sockets or disk. A Store
// belongs to the agent's single owning goroutine.
//
// # What it guarantees
//
//   - Determinism: replicas applying the same entries reach the same state,
//     results and Digest, whatever their map iteration order.
//   - Exactly-once per client request: the store remembers, per client ID,
//     the highest sequence applied and its result; a retry (same client and
//     sequence) returns the first result, an older sequence gets
//     ErrStaleSeq.
//   - Bounded input: keys of 1 to MaxKeyBytes bytes, values of at most
//     MaxValueBytes. ValidateOp checks an op before it enters the log; a
//     bad op that reaches Apply anyway is refused with Result.Err and
//     changes nothing.
//   - A digest kept current in O(1) per write (see digest.go) and a
//     snapshot that Restore checks against it.
//
// # Usage
//
// The master validates and encodes a request, then stamps it into the log:
//
//	b, err := kv.EncodeOp(kv.Op{Kind: kv.KindCAS, Key: "leader", ExpectAbsent: true, Value: []byte("a")})
//	if err != nil {
//		return err // answer the client now; nothing entered the log
//	}
//	e, err := log.AppendNew(epoch, clientID, seq, b)
//
// Every replica applies committed entries in order:
//
//	s := kv.NewStore()
//	results, err := rlog.ApplyTo(s, log, s.Index(), commit)
//	fmt.Println(s.Digest()) // equal on every replica at the same index
//
// State transfer in recovery is Snapshot on the retained master and Restore
// on the recovering agent, then the log suffix after the snapshot's index.
package kv
