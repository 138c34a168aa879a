package kv

import (
	"bytes"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/mastership/mastership/agent/rlog"
	"github.com/mastership/mastership/naming/api"
)

// snapshotVersion is bumped when the snapshot layout changes, so that a
// replica refuses a snapshot it would misread.
// Version 2 added the index each client was last used at and the count of
// clients forgotten; version 1 snapshots restore with both 0.
const snapshotVersion = 2

// maxErrBytes caps a client record's error text in a snapshot; the errors
// Apply writes are far shorter.
const maxErrBytes = 4096

// snapshot is the msgpack layout of Store.Snapshot. Pairs and clients are
// sorted, so equal states give equal bytes, and Sum lets Restore detect a
// snapshot damaged in transit or on disk.
type snapshot struct {
	Version uint8        `codec:"v"`
	Index   uint64       `codec:"i"`
	Pairs   []snapPair   `codec:"p"`
	Clients []snapClient `codec:"c"`
	Sum     [32]byte     `codec:"d"`
	// Forgotten counts the clients the table dropped (version 2).
	Forgotten uint64 `codec:"f"`
}

type snapPair struct {
	Key   string `codec:"k"`
	Value []byte `codec:"v"`
}

type snapClient struct {
	ID     uint64 `codec:"i"`
	Seq    uint64 `codec:"s"`
	Result Result `codec:"r"`
	Used   uint64 `codec:"u"` // version 2
}

// SnapshotDigest is the digest of the state snapshot holds, computed on a
// scratch store: it does not touch s, so it may run while s applies
// (rlog.StateMachine).
func (s *Store) SnapshotDigest(snapshot []byte) (rlog.Digest, error) {
	scratch := NewStore()
	if err := scratch.Restore(snapshot); err != nil {
		return rlog.Digest{}, err
	}
	return scratch.Digest(), nil
}

// Snapshot returns the full state (applied index, pairs, client table and
// digest) in msgpack, sorted so that equal states give equal bytes.
func (s *Store) Snapshot() ([]byte, error) {
	snap := snapshot{
		Version:   snapshotVersion,
		Index:     s.index,
		Pairs:     make([]snapPair, 0, len(s.data)),
		Clients:   make([]snapClient, 0, len(s.clients)),
		Sum:       s.Digest().Sum,
		Forgotten: s.forgotten,
	}
	for _, k := range slices.Sorted(maps.Keys(s.data)) {
		snap.Pairs = append(snap.Pairs, snapPair{Key: k, Value: s.data[k].value})
	}
	for _, id := range slices.Sorted(maps.Keys(s.clients)) {
		c := s.clients[id]
		snap.Clients = append(snap.Clients, snapClient{ID: id, Seq: c.seq, Result: c.result, Used: c.used})
	}
	b, err := api.Encode(&snap)
	if err != nil {
		return nil, fmt.Errorf("kv: snapshot at %d: %w", s.index, err)
	}
	return b, nil
}

// Restore replaces the state with the snapshot's. It decodes and checks
// everything (layout version, sorted unique keys and clients, the caps,
// and the digest recorded in the snapshot) into a new state before
// swapping it in, so on error the store is unchanged. Errors wrap
// ErrSnapshot.
func (s *Store) Restore(b []byte) error {
	// Not api.Decode: its cap is for messages, and a snapshot may be larger.
	var snap snapshot
	r := bytes.NewReader(b)
	if err := api.NewDecoder(r).Decode(&snap); err != nil {
		return fmt.Errorf("%w: decode: %v", ErrSnapshot, err)
	}
	if r.Len() != 0 {
		return fmt.Errorf("%w: %d trailing bytes", ErrSnapshot, r.Len())
	}
	if snap.Version != snapshotVersion && snap.Version != 1 {
		return fmt.Errorf("%w: version %d, want 1 or %d", ErrSnapshot, snap.Version, snapshotVersion)
	}
	if len(snap.Clients) > MaxClients {
		return fmt.Errorf("%w: %d client records, at most %d", ErrSnapshot, len(snap.Clients), MaxClients)
	}
	n := &Store{
		index:   snap.Index,
		data:    make(map[string]item, len(snap.Pairs)),
		clients: make(map[uint64]client, len(snap.Clients)),
		dec:     s.dec,
	}
	for i, p := range snap.Pairs {
		if err := ValidateOp(Op{Kind: KindPut, Key: p.Key, Value: p.Value}); err != nil {
			return fmt.Errorf("%w: pair %d: %w", ErrSnapshot, i, err)
		}
		if i > 0 && strings.Compare(snap.Pairs[i-1].Key, p.Key) >= 0 {
			return fmt.Errorf("%w: pair %d: keys not strictly sorted", ErrSnapshot, i)
		}
		n.set(p.Key, item{}, false, p.Value)
	}
	for i, c := range snap.Clients {
		if c.ID == 0 {
			return fmt.Errorf("%w: client record %d has ID 0", ErrSnapshot, i)
		}
		if i > 0 && snap.Clients[i-1].ID >= c.ID {
			return fmt.Errorf("%w: client record %d: IDs not strictly sorted", ErrSnapshot, i)
		}
		if len(c.Result.Value) > MaxValueBytes || len(c.Result.Err) > maxErrBytes {
			return fmt.Errorf("%w: client %d: result over the caps", ErrSnapshot, c.ID)
		}
		if c.Used > snap.Index {
			return fmt.Errorf("%w: client %d used at %d, after the snapshot's index %d", ErrSnapshot, c.ID, c.Used, snap.Index)
		}
		rec := client{seq: c.Seq, result: c.Result, hash: clientHash(c.ID, c.Seq, c.Result), used: c.Used}
		n.sum.add(rec.hash)
		n.clients[c.ID] = rec
	}
	n.order, n.forgotten = appendOrder(make([]used, 0, len(n.clients)), n.clients), snap.Forgotten
	if got := n.Digest().Sum; got != snap.Sum {
		return fmt.Errorf("%w: digest %x, snapshot says %x", ErrSnapshot, got[:8], snap.Sum[:8])
	}
	*s = *n
	return nil
}
