package rlog

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"

	"github.com/mastership/mastership/naming/api"
)

// Entry is one client request in the log, stamped by the master that took it.
// Entries are values, but Op is shared by every copy: treat it as read-only.
type Entry struct {
	// Epoch is the mastership that stamped the entry; it never decreases
	// along a log.
	Epoch api.Epoch `json:"epoch" codec:"e"`
	// Index is the entry's position, from 1; index 0 is the empty prefix.
	Index uint64 `json:"index" codec:"i"`
	// Client and Seq identify the request so that a retry applies once;
	// Client 0 means a request without a session (for example the no-op a
	// new master appends).
	Client uint64 `json:"client" codec:"c"`
	Seq    uint64 `json:"seq" codec:"s"`
	// Op is the state machine's encoded operation; empty means no-op.
	Op []byte `json:"op" codec:"o"`
	// Hash chains the entry to its predecessor; see ChainHash.
	Hash [32]byte `json:"hash" codec:"h"`
}

// String names the entry by epoch and index, for logs and test failures.
func (e Entry) String() string {
	return fmt.Sprintf("entry %d@%s", e.Index, e.Epoch)
}

// entryHeaderLen is prev hash, term, master ID, index, client, seq.
const entryHeaderLen = 32 + 5*8

// smallOp is the largest op ChainHash hashes without allocating.
const smallOp = 256

// ChainHash returns SHA-256(prev || epoch.Term || epoch.ID || index ||
// client || seq || op), with every integer as 8 bytes big-endian. e.Hash is
// ignored. Op needs no length prefix because it is the only variable-length
// field and comes last.
func ChainHash(prev [32]byte, e Entry) [32]byte {
	// One buffer and Sum256 rather than a hash.Hash: the digest state then
	// stays on the stack, and so does the buffer of a small entry.
	var small [entryHeaderLen + smallOp]byte
	buf := small[:entryHeaderLen]
	if len(e.Op) > smallOp {
		buf = make([]byte, entryHeaderLen, entryHeaderLen+len(e.Op))
	}
	copy(buf, prev[:])
	binary.BigEndian.PutUint64(buf[32:], e.Epoch.Term)
	binary.BigEndian.PutUint64(buf[40:], e.Epoch.ID)
	binary.BigEndian.PutUint64(buf[48:], e.Index)
	binary.BigEndian.PutUint64(buf[56:], e.Client)
	binary.BigEndian.PutUint64(buf[64:], e.Seq)
	buf = append(buf, e.Op...)
	return sha256.Sum256(buf)
}

// Pos is a point of a log: an index with the epoch and chain hash of the
// entry there. Pos{} is the empty prefix.
type Pos struct {
	Index uint64    `json:"index" codec:"i"`
	Epoch api.Epoch `json:"epoch" codec:"e"`
	Hash  [32]byte  `json:"hash" codec:"h"`
}

// PosOf returns the point of the log that e ends.
func PosOf(e Entry) Pos { return Pos{Index: e.Index, Epoch: e.Epoch, Hash: e.Hash} }

// String names the point by index, epoch and the first bytes of its hash.
func (p Pos) String() string {
	return fmt.Sprintf("%d@%s/%x", p.Index, p.Epoch, p.Hash[:4])
}
