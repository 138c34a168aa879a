package kv

import (
	"bytes"
	"cmp"
	"fmt"
	"maps"
	"slices"

	"github.com/hashicorp/go-msgpack/v2/codec"

	"github.com/mastership/mastership/agent/rlog"
	"github.com/mastership/mastership/naming/api"
)

// Result is the answer to one operation. For each kind:
//
//   - get: Found and Value of the key.
//   - put: OK true; Found reports whether the key existed before.
//   - del: OK and Found report whether the key existed (and is now gone).
//   - cas: OK reports whether the swap happened. On success Found reports
//     whether the key existed before; on failure Found and Value give the
//     key's current state, so the client can retry without a get.
//
// Err is set, and the state unchanged, when the operation was refused.
type Result = rlog.Result

// item is a stored value with its pair hash, kept so that overwriting or
// deleting a key does not re-hash the old value.
type item struct {
	value []byte
	hash  [32]byte
}

// client is one client's deduplication record: its highest applied
// sequence and that request's result.
type client struct {
	seq    uint64
	result Result
	hash   [32]byte
	used   uint64 // the index of the entry that applied seq
}

// MaxClients bounds the client table: past it, the client whose last
// request applied longest ago is forgotten. A retry stays safe while
// fewer than MaxClients other clients wrote since its request applied;
// after that, a forgotten client's next request (a retry, or a new one)
// is refused with ErrClientExpired rather than applied a second time,
// and the client starts again with a new ID.
const MaxClients = 16384

// used is one entry of the table's order: a client and the index it was
// used at, oldest first. Entries whose index is no longer the client's
// are stale and skipped.
type used struct {
	id, at uint64
}

// Store is the reference state machine: a key-value map with put, get,
// compare-and-swap and delete, and a per-client table that makes a retried
// request apply once. The zero Store is not ready; use NewStore.
//
// Like every rlog.StateMachine it is owned by the agent's single goroutine
// and does no locking.
type Store struct {
	index   uint64
	data    map[string]item
	clients map[uint64]client
	// order holds the clients by the index they were last used at, oldest
	// first (with stale entries, compacted as it grows); forgotten counts
	// the clients the table dropped. Both are part of the state (the
	// snapshot carries them): every replica forgets the same clients.
	order     []used
	forgotten uint64
	// sum is the digest accumulator over data and clients; see digest.go.
	sum sum256
	// digest is Digest's last answer, while digested holds: the agent
	// asks for it at every status it publishes, and apply calls are far
	// fewer than that under load (one batch per many messages).
	digest   rlog.Digest
	digested bool
	// dec is reused by Apply to decode ops; it holds no state between
	// calls that affects results.
	dec *codec.Decoder
	// keyOrd and clientOrd keep the keys of data and clients sorted for
	// Snapshot (keyOrder).
	keyOrd    keyOrder[string]
	clientOrd keyOrder[uint64]
}

var _ rlog.StateMachine = (*Store)(nil)

// NewStore returns an empty store at applied index 0.
func NewStore() *Store {
	return &Store{
		data:    make(map[string]item),
		clients: make(map[uint64]client),
		dec:     api.NewDecoder(bytes.NewReader(nil)),
	}
}

// Index returns the last applied index.
func (s *Store) Index() uint64 { return s.index }

// Len returns the number of keys.
func (s *Store) Len() int { return len(s.data) }

// Each calls f for every pair, in key order, until f returns false. The
// value is a copy.
func (s *Store) Each(f func(key string, value []byte) bool) {
	for _, k := range slices.Sorted(maps.Keys(s.data)) {
		if !f(k, bytes.Clone(s.data[k].value)) {
			return
		}
	}
}

// Get reads a key outside the log, for tests and for reads the mode allows
// to be served locally. The returned slice is a copy.
func (s *Store) Get(key string) ([]byte, bool) {
	it, ok := s.data[key]
	if !ok {
		return nil, false
	}
	return bytes.Clone(it.value), true
}

// Apply executes the entry's operation.
//
// An empty Op is a no-op (a new master's first entry). For a client other
// than 0, a request with the client's last applied sequence is a retry and
// returns the first result without applying again, and an older sequence
// is refused with ErrStaleSeq, and one more than MaxSeqLead past the last
// (or past 0, for a new client) with ErrSeqRange. An op that does not decode or validate is
// refused with its error in Result.Err. In every case the entry's index
// becomes the applied index, since it occupies that index on every replica;
// a refused op changes nothing else, not even the client table.
//
// Apply panics if e.Index is not the index after the last applied one:
// the caller broke the StateMachine contract, and applying anyway would
// silently fork this replica.
func (s *Store) Apply(e rlog.Entry) Result {
	if e.Index != s.index+1 {
		panic(fmt.Sprintf("kv: apply %s after index %d", e, s.index))
	}
	s.index = e.Index
	s.digested = false
	if len(e.Op) == 0 {
		return Result{}
	}
	var c client
	known := false
	if e.Client != 0 {
		c, known = s.clients[e.Client]
		switch {
		case known && e.Seq == c.seq:
			return cloneResult(c.result)
		case known && e.Seq < c.seq:
			return Result{Err: fmt.Sprintf("%v: client %d sent %d after %d", ErrStaleSeq, e.Client, e.Seq, c.seq)}
		case !known && s.forgotten > 0 && e.Seq != 1:
			// Maybe a client the table forgot: its retry may have applied.
			return Result{Err: fmt.Sprintf("%v: client %d sent %d and is not in the table of the last %d clients", ErrClientExpired, e.Client, e.Seq, MaxClients)}
		case e.Seq-c.seq > MaxSeqLead:
			// A sequence far past the client's last (2^64-1, say) would
			// make every later request of the client look stale.
			return Result{Err: fmt.Sprintf("%v: client %d sent %d after %d, more than %d ahead", ErrSeqRange, e.Client, e.Seq, c.seq, MaxSeqLead)}
		}
	}
	var op Op
	var err error
	if e.Op[0] == opMagic {
		op, err = decodeBinaryOp(e.Op)
	} else {
		if s.dec == nil {
			// A Store restored into a zero Store has no decoder yet.
			s.dec = api.NewDecoder(bytes.NewReader(nil))
		}
		op, err = decodeOp(s.dec, e.Op) // written by an earlier version
	}
	if err != nil {
		return Result{Err: err.Error()}
	}
	r := s.apply(op)
	if e.Client != 0 {
		if known {
			s.sum.sub(c.hash)
		}
		c = client{seq: e.Seq, result: r, hash: clientHash(e.Client, e.Seq, r), used: e.Index}
		s.sum.add(c.hash)
		s.clients[e.Client] = c
		s.order = append(s.order, used{e.Client, e.Index})
		if !known {
			s.clientOrd.note(e.Client, len(s.clients))
			s.forget()
		}
		if len(s.order) > 2*len(s.clients)+1024 {
			s.order = appendOrder(s.order[:0], s.clients) // drop the stale entries
		}
	}
	return cloneResult(r)
}

var _ rlog.SeqChecker = (*Store)(nil)

// CheckSeq refuses, before it takes an index, a request Apply would refuse
// for its sequence being more than MaxSeqLead past the client's last.
func (s *Store) CheckSeq(clientID, seq uint64) error {
	if clientID == 0 {
		return nil
	}
	c := s.clients[clientID]
	if seq > c.seq && seq-c.seq > MaxSeqLead {
		return fmt.Errorf("%w: client %d sent %d after %d, more than %d ahead", ErrSeqRange, clientID, seq, c.seq, MaxSeqLead)
	}
	return nil
}

// apply executes a valid op. The returned Result may share Value with the
// map; values are never modified in place, only replaced, so the client
// table may keep it.
// forget drops the least recently used clients past MaxClients.
func (s *Store) forget() {
	for len(s.clients) > MaxClients && len(s.order) > 0 {
		u := s.order[0]
		s.order = s.order[1:]
		if c, ok := s.clients[u.id]; ok && c.used == u.at {
			s.sum.sub(c.hash)
			delete(s.clients, u.id)
			s.forgotten++
		}
	}
}

// appendOrder appends to o the clients, oldest used first (by ID among
// equals).
func appendOrder(o []used, clients map[uint64]client) []used {
	for id, c := range clients {
		o = append(o, used{id, c.used})
	}
	slices.SortFunc(o, func(a, b used) int {
		if c := cmp.Compare(a.at, b.at); c != 0 {
			return c
		}
		return cmp.Compare(a.id, b.id)
	})
	return o
}

func (s *Store) apply(op Op) Result {
	old, found := s.data[op.Key]
	switch op.Kind {
	case KindGet:
		return Result{Value: old.value, Found: found}
	case KindPut:
		s.set(op.Key, old, found, op.Value)
		return Result{OK: true, Found: found}
	case KindDel:
		if found {
			s.sum.sub(old.hash)
			delete(s.data, op.Key)
		}
		return Result{OK: found, Found: found}
	case KindCAS:
		match := found && !op.ExpectAbsent && bytes.Equal(old.value, op.Expect)
		if op.ExpectAbsent {
			match = !found
		}
		if !match {
			return Result{Value: old.value, Found: found}
		}
		s.set(op.Key, old, found, op.Value)
		return Result{OK: true, Found: found}
	}
	// DecodeOp validated the kind.
	panic(fmt.Sprintf("kv: apply op of kind %q", op.Kind))
}

// set stores value under key, replacing old if found. It takes ownership
// of value: every caller passes bytes just decoded, so copying would only
// cost an allocation per write.
func (s *Store) set(key string, old item, found bool, value []byte) {
	if found {
		s.sum.sub(old.hash)
	}
	if value == nil {
		// Keep an empty value distinct from an absent key in results;
		// a zero-length literal does not allocate.
		value = []byte{}
	}
	it := item{value: value, hash: pairHash(key, value)}
	s.sum.add(it.hash)
	s.data[key] = it
	if !found {
		s.keyOrd.note(key, len(s.data))
	}
}

// cloneResult copies Value so that a caller cannot modify stored state.
func cloneResult(r Result) Result {
	if r.Value != nil {
		r.Value = bytes.Clone(r.Value)
	}
	return r
}

// Digest returns the digest of the state at the applied index in O(1); see
// digest.go for the construction.
func (s *Store) Digest() rlog.Digest {
	if !s.digested {
		s.digest, s.digested = finalDigest(s.index, s.sum), true
	}
	return s.digest
}
