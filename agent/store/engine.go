package store

import (
	"encoding/binary"
	"fmt"
)

// bucket names one of the store's key spaces. Its value is the bbolt bucket
// name.
type bucket string

const (
	// bucketMeta holds keyHardState, keyBase, keySnapshot and the log's keys
	// (keyGen, keyCut, keySalt, keyWalSeg).
	bucketMeta bucket = "meta"
	// bucketLog is where stores before the write-ahead log kept the log
	// (key(index) to the msgpack of the rlog.Entry there). Opening such a
	// store moves the entries to segments and empties it.
	bucketLog bucket = "log"
	// bucketRecords maps key(id) to the msgpack of the Record; the
	// bucket's sequence is the last ID given out.
	bucketRecords bucket = "records"
	// bucketStates maps key(id) to the state a state record keeps (see
	// Record.State), stored as given: a state may exceed
	// api.MaxMessageBytes, which bounds the encoded record.
	bucketStates bucket = "record-states"
)

// buckets lists every bucket, for creating them.
func buckets() []bucket { return []bucket{bucketMeta, bucketLog, bucketRecords, bucketStates} }

// Keys in bucketMeta, as constants so no package-level slice can be
// changed. The snapshot exists exactly when keyBase does; its bytes are
// stored as given, not encoded, since a snapshot may exceed
// api.MaxMessageBytes.
const (
	keyHardState = "hardstate"
	keyBase      = "base"
	keySnapshot  = "snapshot"
	// keyGen is the log's generation (see wal).
	keyGen = "walgen"
	// keyCut marks a truncation whose entries became records (see core).
	keyCut = "cut"
	// keySalt is the random salt of the log's frame checksums (see wal).
	keySalt = "walsalt"
	// keyWalSeg names the newest log segment made (see wal).
	keyWalSeg = "walseg"
)

// key returns n as 8 bytes big-endian, so that byte order is numeric order.
func key(n uint64) []byte {
	var k [8]byte
	binary.BigEndian.PutUint64(k[:], n)
	return k[:]
}

// fromKey is the inverse of key; k must be 8 bytes.
func fromKey(k []byte) uint64 { return binary.BigEndian.Uint64(k) }

// keyString names a key in errors: the number for an 8-byte key, the text
// for a name, hex otherwise.
func keyString(k []byte) string {
	if len(k) == 8 {
		return fmt.Sprint(fromKey(k))
	}
	for _, c := range k {
		if c < 'a' || c > 'z' {
			return fmt.Sprintf("%x", k)
		}
	}
	return string(k)
}

// txn is one transaction over the buckets: what core needs from a key-value
// store, and all that Memory and Bolt implement differently. Values that
// get, last and scan return are valid only during the transaction.
type txn interface {
	// get returns the value under k, or nil if there is none.
	get(b bucket, k []byte) []byte
	// put stores v under k. v must stay unchanged until the transaction
	// ends.
	put(b bucket, k, v []byte) error
	// delete removes k; removing a missing key is not an error.
	delete(b bucket, k []byte) error
	// deleteRange removes the keys in [from, to); nil from is the first
	// key, nil to is past the last.
	deleteRange(b bucket, from, to []byte) error
	// last returns the greatest key and its value, or nils if b is empty.
	last(b bucket) (k, v []byte)
	// scan calls fn on every key from from (nil: the first) in ascending
	// order, stopping at fn's first error.
	scan(b bucket, from []byte, fn func(k, v []byte) error) error
	// nextSeq increments b's sequence and returns it; the sequence never
	// goes back, whatever is deleted.
	nextSeq(b bucket) (uint64, error)
}

// engine runs transactions. update commits when fn returns nil, durably
// before it returns, and changes nothing when fn returns an error. core
// serialises calls to update with each other and with close.
type engine interface {
	view(fn func(txn) error) error
	update(fn func(txn) error) error
	close() error
}
