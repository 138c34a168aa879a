package rlog

import (
	"encoding/hex"
	"errors"
	"fmt"
)

// StateMachine is the replicated service that the log feeds; agent/kv.Store
// is the reference one, and embedders supply their own.
//
// The agent calls every method but SnapshotDigest from its single owning
// goroutine (the one that also owns the Log), so implementations need no
// locking; SnapshotDigest is the exception, see its comment. Apply is
// called in log order, exactly once per index, starting right after the
// index of the last Restore (or 1); an entry that is not the next index is a
// broken invariant of the caller.
type StateMachine interface {
	// Apply executes the entry's operation and returns its result. It must
	// be deterministic: the same entries in the same order give every
	// replica the same state and results. A bad operation is not an error
	// of Apply: it yields a Result with Err set, and the entry still
	// occupies its index.
	Apply(e Entry) Result
	// Snapshot returns the full state, including the applied index, in a
	// form Restore accepts on any replica.
	Snapshot() ([]byte, error)
	// Restore replaces the state with a snapshot's. On error the state is
	// unchanged.
	Restore(snapshot []byte) error
	// Digest returns a hash of the full state at the applied index. It
	// must be cheap (the agent reports it on every status query and
	// compares it in recovery) and equal on replicas that applied the same
	// entries, whatever the order of their in-memory structures.
	Digest() Digest
	// SnapshotDigest returns the Digest a state would have after
	// Restore(snapshot), without changing this one: recovery verifies a
	// downloaded snapshot against the master's digest with it before it
	// installs anything (figure 10, act 1040). A snapshot that does not
	// restore is an error.
	//
	// It is called off the owning goroutine (by the goroutine of a
	// recovery's step or of a catch-up download, so that digesting a large
	// state does not stall the agent), concurrently with the other
	// methods: it must compute from the snapshot's bytes alone, on a
	// scratch value as agent/kv.Store does, and neither read nor write the
	// receiver's mutable state.
	SnapshotDigest(snapshot []byte) (Digest, error)
}

// SeqChecker is implemented by a StateMachine that deduplicates client
// requests by sequence: the master asks it before it appends a request, so
// that a request Apply would refuse for its sequence (one far past the
// client's last, say) takes no index. Called from the agent's goroutine.
type SeqChecker interface {
	CheckSeq(client, seq uint64) error
}

// Result is what applying one entry answers to its client. The fields are
// generic enough for most services; agent/kv documents what each means
// for its operations.
type Result struct {
	// Value is the value read, if any.
	Value []byte `json:"value,omitempty" codec:"v"`
	// Found reports whether the key (or object) existed.
	Found bool `json:"found,omitempty" codec:"f"`
	// OK reports whether a conditional operation took effect.
	OK bool `json:"ok,omitempty" codec:"k"`
	// Err is the reason the operation was refused; empty on success. A
	// string, not an error, because it travels to the client and into the
	// replicated deduplication table.
	Err string `json:"err,omitempty" codec:"e"`
}

// Digest identifies a state machine's state at an applied index (recovery
// step 4, package recover: my digest at i equals the master's at i).
type Digest struct {
	// Index is the last applied index the digest covers.
	Index uint64 `json:"index" codec:"i"`
	// Sum is a SHA-256 over the state and Index.
	Sum [32]byte `json:"sum" codec:"s"`
}

// String returns Sum in hex, the form shown by `mastership info`.
func (d Digest) String() string { return hex.EncodeToString(d.Sum[:]) }

// ErrApplyOrder means ApplyTo was asked to apply from an index that does not
// follow the state machine's applied index.
var ErrApplyOrder = errors.New("rlog: apply out of order")

// ApplyTo applies the entries after applied up to and including commit to
// sm, in order, and returns their results (results[k] is for index
// applied+1+k). applied must be sm's applied index (its Digest().Index); the
// check guards against applying an entry twice or skipping one. Nothing is
// applied unless every entry in the range is held.
func ApplyTo(sm StateMachine, l *Log, applied, commit uint64) ([]Result, error) {
	if got := sm.Digest().Index; got != applied {
		return nil, fmt.Errorf("%w: state machine at %d, asked to apply after %d", ErrApplyOrder, got, applied)
	}
	if commit <= applied {
		return nil, nil
	}
	es, err := l.Slice(applied+1, commit+1)
	if err != nil {
		return nil, fmt.Errorf("apply %d..%d: %w", applied+1, commit, err)
	}
	results := make([]Result, len(es))
	for k, e := range es {
		results[k] = sm.Apply(e)
	}
	return results, nil
}
