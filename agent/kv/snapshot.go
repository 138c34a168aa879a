package kv

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"

	"github.com/mastership/mastership/agent/rlog"
	"github.com/mastership/mastership/naming/api"
)

// snapshotVersion is bumped when the snapshot layout changes, so that a
// replica refuses a snapshot it would misread.
// Version 2 added the index each client was last used at and the count of
// clients forgotten; version 1 snapshots restore with both 0. Version 3 is
// the binary layout (see appendSnapshot); versions 1 and 2 were msgpack,
// and still restore.
const snapshotVersion = 3

// snapshotMagic opens a binary (version 3) snapshot. A msgpack snapshot
// opens with a map's first byte (0x80 to 0x8f, or 0xde), never with 'K'.
var snapshotMagic = [4]byte{'K', 'V', 'S', '3'}

// maxErrBytes caps a client record's error text in a snapshot; the errors
// Apply writes are far shorter.
const maxErrBytes = 4096

// snapshot is the content of Store.Snapshot, and the msgpack layout of
// versions 1 and 2. Pairs and clients are sorted, so equal states give
// equal bytes, and Sum lets Restore detect a snapshot damaged in transit
// or on disk.
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

// appendSnapshot appends the binary layout of snap: the magic, then
// uvarints for the index, the count of forgotten clients and the number
// of pairs, each pair as its key's length and key, its value's length
// and value, the number of clients, each client as its ID, sequence,
// index last used, a flags byte (1 found, 2 ok) and its result's value
// and error, each after its length, and last the 32-byte digest. Unlike
// msgpack through reflection it costs a copy of the bytes: a snapshot is
// taken on the agent's loop, which waits for it.
func appendSnapshot(b []byte, snap *snapshot) []byte {
	b = append(b, snapshotMagic[:]...)
	b = binary.AppendUvarint(b, snap.Index)
	b = binary.AppendUvarint(b, snap.Forgotten)
	b = binary.AppendUvarint(b, uint64(len(snap.Pairs)))
	for _, p := range snap.Pairs {
		b = binary.AppendUvarint(b, uint64(len(p.Key)))
		b = append(b, p.Key...)
		b = binary.AppendUvarint(b, uint64(len(p.Value)))
		b = append(b, p.Value...)
	}
	b = binary.AppendUvarint(b, uint64(len(snap.Clients)))
	for _, c := range snap.Clients {
		b = binary.AppendUvarint(b, c.ID)
		b = binary.AppendUvarint(b, c.Seq)
		b = binary.AppendUvarint(b, c.Used)
		var flags byte
		if c.Result.Found {
			flags |= 1
		}
		if c.Result.OK {
			flags |= 2
		}
		b = append(b, flags)
		b = binary.AppendUvarint(b, uint64(len(c.Result.Value)))
		b = append(b, c.Result.Value...)
		b = binary.AppendUvarint(b, uint64(len(c.Result.Err)))
		b = append(b, c.Result.Err...)
	}
	return append(b, snap.Sum[:]...)
}

// snapReader reads a binary snapshot; the first error sticks.
type snapReader struct {
	b   []byte
	err error
}

var errSnapTruncated = errors.New("truncated")

func (r *snapReader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.err = errSnapTruncated
		if n < 0 {
			r.err = errors.New("varint overflows 64 bits")
		}
		return 0
	}
	r.b = r.b[n:]
	return v
}

// bytes reads a length and that many bytes, refusing a length over max
// before it takes anything: a forged length costs nothing.
func (r *snapReader) bytes(max int, what string) []byte {
	n := r.uvarint()
	if r.err != nil {
		return nil
	}
	if n > uint64(max) {
		r.err = fmt.Errorf("%s of %d bytes, over the cap of %d", what, n, max)
		return nil
	}
	if n > uint64(len(r.b)) {
		r.err = errSnapTruncated
		return nil
	}
	v := r.b[:n:n]
	r.b = r.b[n:]
	return v
}

// count reads a number of records, each at least min bytes: a count the
// rest of the snapshot cannot hold is refused before anything is
// allocated for it.
func (r *snapReader) count(min int, what string) int {
	n := r.uvarint()
	if r.err == nil && n > uint64(len(r.b)/min) {
		r.err = fmt.Errorf("%d %s in %d bytes", n, what, len(r.b))
		return 0
	}
	return int(n)
}

// decodeSnapshot reads a binary snapshot (after its magic) into a
// snapshot: the layout only, the caller checks the content. What it
// returns is a copy: the store keeps none of b, which its caller may
// reuse.
func decodeSnapshot(b []byte) (snapshot, error) {
	r := &snapReader{b: b}
	snap := snapshot{Version: snapshotVersion}
	snap.Index = r.uvarint()
	snap.Forgotten = r.uvarint()
	n := r.count(2, "pairs")
	if r.err == nil {
		snap.Pairs = make([]snapPair, 0, n)
	}
	for i := 0; i < n && r.err == nil; i++ {
		key := r.bytes(MaxKeyBytes, "a key")
		value := r.bytes(MaxValueBytes, "a value")
		snap.Pairs = append(snap.Pairs, snapPair{Key: string(key), Value: bytes.Clone(value)})
	}
	n = r.count(6, "clients")
	if r.err == nil && n > MaxClients {
		return snapshot{}, fmt.Errorf("%d client records, at most %d", n, MaxClients)
	}
	if r.err == nil {
		snap.Clients = make([]snapClient, 0, n)
	}
	for i := 0; i < n && r.err == nil; i++ {
		c := snapClient{ID: r.uvarint(), Seq: r.uvarint(), Used: r.uvarint()}
		if r.err == nil && len(r.b) == 0 {
			r.err = errSnapTruncated
		}
		if r.err != nil {
			break
		}
		flags := r.b[0]
		r.b = r.b[1:]
		if flags&^3 != 0 {
			r.err = fmt.Errorf("client %d: unknown flags %#x", c.ID, flags)
			break
		}
		c.Result.Found, c.Result.OK = flags&1 != 0, flags&2 != 0
		if v := r.bytes(MaxValueBytes, "a result's value"); len(v) > 0 {
			c.Result.Value = bytes.Clone(v)
		}
		c.Result.Err = string(r.bytes(maxErrBytes, "a result's error"))
		snap.Clients = append(snap.Clients, c)
	}
	if r.err == nil {
		if len(r.b) < len(snap.Sum) {
			r.err = errSnapTruncated
		} else {
			copy(snap.Sum[:], r.b)
			r.b = r.b[len(snap.Sum):]
		}
	}
	if r.err == nil && len(r.b) != 0 {
		r.err = fmt.Errorf("%d trailing bytes", len(r.b))
	}
	return snap, r.err
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
// digest) in the binary layout (appendSnapshot), sorted so that equal
// states give equal bytes. It keeps the key order it computes for the next
// one (keyOrder): like Apply, it is called from the store's goroutine only.
func (s *Store) Snapshot() ([]byte, error) {
	snap := snapshot{
		Version:   snapshotVersion,
		Index:     s.index,
		Pairs:     make([]snapPair, 0, len(s.data)),
		Clients:   make([]snapClient, 0, len(s.clients)),
		Sum:       s.Digest().Sum,
		Forgotten: s.forgotten,
	}
	for _, k := range keys(&s.keyOrd, s.data) {
		snap.Pairs = append(snap.Pairs, snapPair{Key: k, Value: s.data[k].value})
	}
	for _, id := range keys(&s.clientOrd, s.clients) {
		c := s.clients[id]
		snap.Clients = append(snap.Clients, snapClient{ID: id, Seq: c.seq, Result: c.result, Used: c.used})
	}
	size := len(snapshotMagic) + 3*binary.MaxVarintLen64 + len(snap.Sum)
	for _, p := range snap.Pairs {
		size += 2*binary.MaxVarintLen64 + len(p.Key) + len(p.Value)
	}
	for _, c := range snap.Clients {
		size += 6*binary.MaxVarintLen64 + 1 + len(c.Result.Value) + len(c.Result.Err)
	}
	return appendSnapshot(make([]byte, 0, size), &snap), nil
}

// Restore replaces the state with the snapshot's. It decodes and checks
// everything (layout version, sorted unique keys and clients, the caps,
// and the digest recorded in the snapshot) into a new state before
// swapping it in, so on error the store is unchanged. Errors wrap
// ErrSnapshot.
func (s *Store) Restore(b []byte) error {
	var snap snapshot
	if bytes.HasPrefix(b, snapshotMagic[:]) {
		var err error
		if snap, err = decodeSnapshot(b[len(snapshotMagic):]); err != nil {
			return fmt.Errorf("%w: decode: %v", ErrSnapshot, err)
		}
	} else {
		// Versions 1 and 2, msgpack. Not api.Decode: its cap is for
		// messages, and a snapshot may be larger.
		r := bytes.NewReader(b)
		if err := api.NewDecoder(r).Decode(&snap); err != nil {
			return fmt.Errorf("%w: decode: %v", ErrSnapshot, err)
		}
		if r.Len() != 0 {
			return fmt.Errorf("%w: %d trailing bytes", ErrSnapshot, r.Len())
		}
		if snap.Version != 1 && snap.Version != 2 {
			return fmt.Errorf("%w: version %d, want 1, 2 or the binary %d", ErrSnapshot, snap.Version, snapshotVersion)
		}
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
	// The orders are set from the sorted lists at the end, not noted key
	// by key.
	n.keyOrd.stale, n.clientOrd.stale = true, true
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
	// Both lists were checked strictly sorted above.
	ks := make([]string, len(snap.Pairs))
	for i, p := range snap.Pairs {
		ks[i] = p.Key
	}
	ids := make([]uint64, len(snap.Clients))
	for i, c := range snap.Clients {
		ids[i] = c.ID
	}
	n.keyOrd.reset(ks)
	n.clientOrd.reset(ids)
	if got := n.Digest().Sum; got != snap.Sum {
		return fmt.Errorf("%w: digest %x, snapshot says %x", ErrSnapshot, got[:8], snap.Sum[:8])
	}
	*s = *n
	return nil
}
