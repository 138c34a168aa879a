package kv

import (
	"crypto/sha256"
	"encoding/binary"
	"maps"
	"math/bits"
	"slices"

	"github.com/mastership/mastership/agent/rlog"
)

// The digest construction.
//
// Every key-value pair and every client record has its own SHA-256, with a
// one-byte domain tag and length prefixes so that no pair can be read as
// another or as a client record:
//
//	pair:   SHA-256('k' || u32 len(key) || key || value)
//	client: SHA-256('c' || u64 client || u64 seq || u8 found || u8 ok ||
//	                u32 len(value) || value || err)
//
// The state's hash is the sum of those hashes, each read as a 256-bit
// big-endian integer, modulo 2^256. Addition is commutative, so the sum does
// not depend on map iteration order, and it is updated in O(1) per write
// (subtract the old pair's hash, add the new one) instead of re-hashing the
// whole map. Keys and client IDs are unique, so, unlike XOR, no two equal
// terms could cancel. The digest is then
//
//	SHA-256("mastership/kv/v1" || u64 index || sum)
//
// so Digest is one small hash, and equal digests need equal applied
// indices. This is a check against accidental divergence between replicas,
// not a commitment against an adversary: sums of hashes admit crafted
// collisions (Wagner's generalized birthday attack) that the replicas,
// which all apply the same log, have no reason to produce.
//
// Integers are big-endian throughout.

// sum256 is a 256-bit integer, most significant limb first.
type sum256 [4]uint64

func (s *sum256) add(h [32]byte) {
	var c uint64
	for i := 3; i >= 0; i-- {
		s[i], c = bits.Add64(s[i], binary.BigEndian.Uint64(h[8*i:]), c)
	}
}

func (s *sum256) sub(h [32]byte) {
	var b uint64
	for i := 3; i >= 0; i-- {
		s[i], b = bits.Sub64(s[i], binary.BigEndian.Uint64(h[8*i:]), b)
	}
}

func (s sum256) bytes() [32]byte {
	var b [32]byte
	for i, v := range s {
		binary.BigEndian.PutUint64(b[8*i:], v)
	}
	return b
}

// smallHashed is the largest input pairHash and clientHash hash from a
// buffer on the stack (sha256.Sum256); a hash.Hash from sha256.New would
// be on the heap, twice per write on every member.
const smallHashed = 256

func pairHash(key string, value []byte) [32]byte {
	var small [smallHashed]byte
	buf := small[:0]
	if n := 5 + len(key) + len(value); n > smallHashed {
		buf = make([]byte, 0, n)
	}
	buf = append(buf, 'k')
	buf = binary.BigEndian.AppendUint32(buf, uint32(len(key)))
	buf = append(buf, key...)
	buf = append(buf, value...)
	return sha256.Sum256(buf)
}

func clientHash(id, seq uint64, r rlog.Result) [32]byte {
	var small [smallHashed]byte
	buf := small[:0]
	if n := 1 + 8 + 8 + 1 + 1 + 4 + len(r.Value) + len(r.Err); n > smallHashed {
		buf = make([]byte, 0, n)
	}
	var found, ok byte
	if r.Found {
		found = 1
	}
	if r.OK {
		ok = 1
	}
	buf = append(buf, 'c')
	buf = binary.BigEndian.AppendUint64(buf, id)
	buf = binary.BigEndian.AppendUint64(buf, seq)
	buf = append(buf, found, ok)
	buf = binary.BigEndian.AppendUint32(buf, uint32(len(r.Value)))
	buf = append(buf, r.Value...)
	buf = append(buf, r.Err...)
	return sha256.Sum256(buf)
}

func finalDigest(index uint64, s sum256) rlog.Digest {
	var buf [16 + 8 + 32]byte
	copy(buf[:], "mastership/kv/v1")
	binary.BigEndian.PutUint64(buf[16:], index)
	b := s.bytes()
	copy(buf[24:], b[:])
	return rlog.Digest{Index: index, Sum: sha256.Sum256(buf[:])}
}

// RecomputeDigest computes the digest from scratch, visiting keys and
// clients in sorted order and re-hashing every value. It is O(size of the
// state); tests use it to check the incremental Digest, and the agent may
// use it as a slow self-check before reporting a digest mismatch.
func (s *Store) RecomputeDigest() rlog.Digest {
	var sum sum256
	for _, k := range slices.Sorted(maps.Keys(s.data)) {
		sum.add(pairHash(k, s.data[k].value))
	}
	for _, id := range slices.Sorted(maps.Keys(s.clients)) {
		c := s.clients[id]
		sum.add(clientHash(id, c.seq, c.result))
	}
	return finalDigest(s.index, sum)
}
