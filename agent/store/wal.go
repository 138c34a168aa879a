package store

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"slices"
	"strings"

	"github.com/mastership/mastership/agent/rlog"
)

// The replication log is an append-only write-ahead log (WAL) of segment
// files, so that appending a batch costs one write and one fdatasync, where
// a bbolt commit costs two fsyncs and a page rewrite per level of its tree.
//
// A segment is a file of a fixed size made at once (allocated, all zero),
// named GEN-SEQ.wal with both numbers 16 hex digits: GEN is the log's
// generation, kept in bbolt's meta bucket, and SEQ the sequence number of
// the first frame in it. Frames follow each other from offset 0, each
// padded to 8 bytes:
//
//	0   magic    "LWSM" (0x4d53574c little-endian)
//	4   length   uint32, bytes of payload
//	8   seq      uint64, one more than the frame before it, across segments
//	16  crc      CRC-32C of the store's salt and the payload
//	20  hcrc     CRC-32C of the store's salt and bytes 0..20
//	24  payload  flags byte (1: truncate), truncate-after index uint64,
//	             count uint32, then count times (length uint32, msgpack of
//	             an rlog.Entry)
//
// The salt is a random number made with the store and kept in its meta
// bucket: a frame image inside an entry (a client chooses what its writes
// hold) never checks out as a frame, and the header checksum lets open
// look for frames without hashing payloads.
//
// A frame replaces the log's entries after its truncate-after index (when
// flagged) and then appends its entries, which must follow the last one. A
// write is one frame (or, for a batch over maxFrameBytes, several, each
// synced before the next is written), so only the last frame can be torn
// by a crash. At open, the first unreadable frame ends the log. It was
// torn, never acknowledged, unless something shows the bytes were synced
// once: a readable header with a later sequence number after it, a
// readable header of the expected frame whose payload runs past the end of
// the file (files never change size), a segment other than the last, a
// segment shorter than segments are made, or a last segment older than
// the newest one the meta bucket records (keyWalSeg, committed when a
// segment is made, before anything is written to it). Those are errors
// wrapping ErrCorrupt. A torn frame's bytes are zeroed so that later
// frames written over it read cleanly. Damage to the very last frame
// cannot be told from a torn write: it is dropped as one.
//
// Compaction deletes whole segments from the front once everything they
// hold is at or below the snapshot base. A snapshot that replaces the log
// entirely starts a new generation: the bbolt commit that stores the
// snapshot raises GEN, and the segments of older generations are deleted,
// at once or at the next open. Segments of a newer generation than the
// meta bucket's mean agent.db went back (restored alone from a backup):
// an error, except for the one generation a crashed move of a legacy log
// bucket leaves.
const (
	walDirName  = "wal"
	segExt      = ".wal"
	tmpSuffix   = ".tmp"
	frameMagic  = 0x4d53574c
	frameHeader = 24
	// DefaultSegmentBytes is the size of a segment file. A batch larger
	// than a segment gets a segment of its own size.
	DefaultSegmentBytes = 16 << 20
	// maxFrameBytes bounds one frame's payload; it is what open trusts a
	// frame's length field to be at most.
	maxFrameBytes = 64 << 20
	payloadHeader = 1 + 8 + 4
)

// crc is the frame checksum: CRC-32C of the salt, then b.
func crc(salt uint64, b ...[]byte) uint32 {
	t := crc32.MakeTable(crc32.Castagnoli)
	var sb [8]byte
	binary.LittleEndian.PutUint64(sb[:], salt)
	c := crc32.Update(0, t, sb[:])
	for _, p := range b {
		c = crc32.Update(c, t, p)
	}
	return c
}

// maxSegment is the largest size a segment is made with.
func maxSegment(segBytes int64) int64 { return max(segBytes, padded(frameHeader+maxFrameBytes)) }

// wal is the log in segment files. Its caller (core) serialises every call
// and validates what it writes; wal keeps the segments and where the live
// entries are.
type wal struct {
	fs       segFS
	segBytes int64
	salt     uint64
	// made commits the name of a segment made, before it is written to.
	made    func(gen, seq uint64) error
	gen     uint64
	segs    []*segment
	nextSeq uint64
	base    rlog.Pos
	last    rlog.Pos
	// live lists the frames holding entries above base that are still in
	// the log, in index order, with the range each still holds.
	live []frameRef
	// err is the first failed write: what is on disk after it is unknown,
	// so every later write fails too.
	err error
	// frame is the memory the last frame was encoded in, for the next.
	frame []byte
}

type segment struct {
	name string
	f    segFile
	seq  uint64 // sequence number of its first frame
	size int64
	end  int64 // where the next frame goes
	// endIndex is the last index of the log when the segment was closed
	// (at most the base if it ended with no entry above it); for the last
	// segment it is not used.
	endIndex uint64
}

type frameRef struct {
	seg         *segment
	off         int64
	first, last uint64
}

func segName(gen, seq uint64) string { return fmt.Sprintf("%016x-%016x%s", gen, seq, segExt) }

// parseSegName returns the generation and sequence number in a segment's
// name, and whether it is one.
func parseSegName(name string) (gen, seq uint64, ok bool) {
	stem, found := strings.CutSuffix(name, segExt)
	if !found || len(stem) != 33 || stem[16] != '-' {
		return 0, 0, false
	}
	if _, err := fmt.Sscanf(stem, "%016x-%016x", &gen, &seq); err != nil {
		return 0, 0, false
	}
	return gen, seq, segName(gen, seq) == name
}

// frame is one decoded frame.
type frame struct {
	seq     uint64
	trunc   *uint64
	entries []rlog.Entry
	size    int64 // header, payload and padding
}

// header checks the frame header at off in data and returns the payload
// length and sequence number it gives; ok is false when there is no
// readable header there.
func header(salt uint64, data []byte, off int64) (n int64, seq uint64, ok bool) {
	if off < 0 || off+frameHeader > int64(len(data)) {
		return 0, 0, false
	}
	h := data[off : off+frameHeader]
	if binary.LittleEndian.Uint32(h[0:]) != frameMagic || crc(salt, h[:20]) != binary.LittleEndian.Uint32(h[20:]) {
		return 0, 0, false
	}
	return int64(binary.LittleEndian.Uint32(h[4:])), binary.LittleEndian.Uint64(h[8:]), true
}

// readFrame reads the frame at off in data. ok is false when there is no
// readable frame there (zeros, a torn or damaged frame); hdr is true when
// its header still reads, and then seq and size are what it says.
func readFrame(salt uint64, data []byte, off int64) (payload []byte, seq uint64, size int64, ok, hdr bool) {
	n, seq, hdr := header(salt, data, off)
	if !hdr {
		return nil, 0, 0, false, false
	}
	size = padded(frameHeader + n)
	if n > maxFrameBytes || off+size > int64(len(data)) {
		return nil, seq, size, false, true
	}
	payload = data[off+frameHeader : off+frameHeader+n]
	if crc(salt, payload) != binary.LittleEndian.Uint32(data[off+16:]) {
		return nil, seq, size, false, true
	}
	return payload, seq, size, true, true
}

func padded(n int64) int64 { return (n + 7) &^ 7 }

// encodeFrame builds the frame for a truncation (if trunc is set) and
// entries already encoded as vals.
func encodeFrame(salt, seq uint64, trunc *uint64, vals [][]byte) []byte {
	return appendFrame(nil, salt, seq, trunc, vals)
}

// appendFrame is encodeFrame into dst's memory (when it is large enough).
func appendFrame(dst []byte, salt, seq uint64, trunc *uint64, vals [][]byte) []byte {
	n := int64(payloadHeader)
	for _, v := range vals {
		n += 4 + int64(len(v))
	}
	size := padded(frameHeader + n)
	if int64(cap(dst)) < size {
		dst = make([]byte, size)
	}
	b := dst[:size]
	clear(b[:frameHeader+payloadHeader])
	clear(b[frameHeader+n:]) // the padding
	binary.LittleEndian.PutUint32(b[0:], frameMagic)
	binary.LittleEndian.PutUint32(b[4:], uint32(n))
	binary.LittleEndian.PutUint64(b[8:], seq)
	p := b[frameHeader:]
	if trunc != nil {
		p[0] = 1
		binary.LittleEndian.PutUint64(p[1:], *trunc)
	}
	binary.LittleEndian.PutUint32(p[9:], uint32(len(vals)))
	at := payloadHeader
	for _, v := range vals {
		binary.LittleEndian.PutUint32(p[at:], uint32(len(v)))
		copy(p[at+4:], v)
		at += 4 + len(v)
	}
	binary.LittleEndian.PutUint32(b[16:], crc(salt, b[frameHeader:frameHeader+n]))
	binary.LittleEndian.PutUint32(b[20:], crc(salt, b[:20]))
	return b
}

// decodePayload decodes a frame's payload. Its checksum was right, so
// anything wrong in it is damage the checksum missed or a forged file.
func decodePayload(p []byte) (trunc *uint64, es []rlog.Entry, err error) {
	if len(p) < payloadHeader || p[0] > 1 {
		return nil, nil, errors.New("bad payload header")
	}
	if p[0] == 1 {
		t := binary.LittleEndian.Uint64(p[1:])
		trunc = &t
	}
	count := binary.LittleEndian.Uint32(p[9:])
	rest := p[payloadHeader:]
	// Every entry takes at least its length field: a count the payload
	// cannot hold is refused before anything is allocated for it.
	if uint64(count)*4 > uint64(len(rest)) {
		return nil, nil, fmt.Errorf("count %d in %d bytes", count, len(rest))
	}
	es = make([]rlog.Entry, 0, min(count, 1024))
	for i := range count {
		if len(rest) < 4 {
			return nil, nil, fmt.Errorf("entry %d of %d: truncated", i+1, count)
		}
		n := binary.LittleEndian.Uint32(rest)
		if uint64(n) > uint64(len(rest)-4) {
			return nil, nil, fmt.Errorf("entry %d of %d: %d bytes, %d left", i+1, count, n, len(rest)-4)
		}
		e, err := decodeStoredEntry(rest[4 : 4+n])
		if err != nil {
			return nil, nil, fmt.Errorf("entry %d of %d: %w", i+1, count, err)
		}
		es = append(es, e)
		rest = rest[4+n:]
	}
	if len(rest) != 0 {
		return nil, nil, fmt.Errorf("%d bytes after the last entry", len(rest))
	}
	return trunc, es, nil
}

// laterFrame reports whether a readable frame header with a sequence
// number of at least seq starts at off or an 8-byte boundary after it.
// Headers carry their own checksum, so the scan is linear.
func laterFrame(salt uint64, data []byte, off int64, seq uint64) bool {
	for at := off; at+frameHeader <= int64(len(data)); at += 8 {
		if binary.LittleEndian.Uint32(data[at:]) != frameMagic {
			continue
		}
		if _, s, ok := header(salt, data, at); ok && s >= seq {
			return true
		}
	}
	return false
}

// lastNonZero returns one past the last non-zero byte of data at or after
// off, or off if there is none.
func lastNonZero(data []byte, off int64) int64 {
	i := int64(len(data)) - 1
	// Eight bytes at a time through the zeros a segment mostly ends in.
	for i-7 >= off && binary.LittleEndian.Uint64(data[i-7:]) == 0 {
		i -= 8
	}
	for ; i >= off; i-- {
		if data[i] != 0 {
			return i + 1
		}
	}
	return off
}

// walConfig is what openWAL needs from the meta bucket.
type walConfig struct {
	gen      uint64
	base     rlog.Pos
	segBytes int64
	salt     uint64
	// newest is the sequence number of the newest segment of gen made
	// (0: none); the last segment must be at least that new.
	newest uint64
	// legacy is set while a log kept in the legacy bucket waits to be
	// moved: segments of generation gen+1 are then a move a crash
	// interrupted, to be deleted.
	legacy bool
	// made is wal.made.
	made func(gen, seq uint64) error
}

// openWAL opens the log of generation cfg.gen in fs above cfg.base: it
// replays every segment, zeroes a torn last frame, deletes files of older
// generations and half-made segments, and returns the entries above the
// base.
func openWAL(fs segFS, cfg walConfig) (*wal, []rlog.Entry, error) {
	base := cfg.base
	w := &wal{fs: fs, segBytes: cfg.segBytes, salt: cfg.salt, made: cfg.made, gen: cfg.gen, base: base, last: base, nextSeq: 1}
	names, err := fs.list()
	if err != nil {
		return nil, nil, fmt.Errorf("list segments: %w", err)
	}
	var stale []string
	type found struct {
		name string
		seq  uint64
	}
	var cur []found
	for _, n := range names {
		if strings.HasSuffix(n, tmpSuffix) {
			stale = append(stale, n)
			continue
		}
		g, s, ok := parseSegName(n)
		switch {
		case !ok:
			// Not ours; left alone.
		case g < cfg.gen || g == cfg.gen+1 && cfg.legacy:
			stale = append(stale, n)
		case g > cfg.gen:
			return nil, nil, fmt.Errorf("%w: segment %s is of generation %d, newer than the %d of %s: the data file is "+
				"older than the log (was it restored alone?)", ErrCorrupt, fs.path(n), g, cfg.gen, FileName)
		default:
			cur = append(cur, found{n, s})
		}
	}
	slices.SortFunc(cur, func(a, b found) int { return cmp.Compare(a.seq, b.seq) })
	if newest := cfg.newest; newest != 0 && (len(cur) == 0 || cur[len(cur)-1].seq < newest) {
		return nil, nil, fmt.Errorf("%w: segment %s is missing (the log's newest segment, made before it was written to)",
			ErrCorrupt, fs.path(segName(cfg.gen, newest)))
	}

	var kept []rlog.Entry
	var zeroSeg *segment
	var zeroFrom, zeroTo int64
	fail := func(err error) (*wal, []rlog.Entry, error) {
		w.closeFiles()
		return nil, nil, err
	}
	for i, fd := range cur {
		isLast := i == len(cur)-1
		path := fs.path(fd.name)
		if i == 0 {
			w.nextSeq = fd.seq
		} else if fd.seq != w.nextSeq {
			return fail(fmt.Errorf("%w: segment %s: starts at frame %d, the one before ends at %d", ErrCorrupt, path, fd.seq, w.nextSeq-1))
		}
		f, err := fs.open(fd.name)
		if err != nil {
			return fail(fmt.Errorf("open segment %s: %w", path, err))
		}
		sg := &segment{name: fd.name, f: f, seq: fd.seq}
		w.segs = append(w.segs, sg)
		if sg.size, err = f.size(); err != nil {
			return fail(fmt.Errorf("segment %s: %w", path, err))
		}
		// Segments are made with their size and never change it.
		if sg.size < cfg.segBytes || sg.size > maxSegment(cfg.segBytes) {
			return fail(fmt.Errorf("%w: segment %s is %d bytes; segments are made with %d to %d", ErrCorrupt, path,
				sg.size, cfg.segBytes, maxSegment(cfg.segBytes)))
		}
		data := make([]byte, sg.size)
		if _, err := f.ReadAt(data, 0); err != nil {
			return fail(fmt.Errorf("read segment %s: %w", path, err))
		}
		off := int64(0)
		for {
			payload, seq, size, ok, hdr := readFrame(w.salt, data, off)
			if !ok || seq != w.nextSeq {
				if hdr && seq == w.nextSeq && off+size > sg.size {
					return fail(fmt.Errorf("%w: segment %s: frame %d at offset %d runs past the end of the file "+
						"(was it cut short?)", ErrCorrupt, path, seq, off))
				}
				break
			}
			trunc, es, err := decodePayload(payload)
			if err != nil {
				return fail(fmt.Errorf("%w: segment %s: frame %d at offset %d: %v", ErrCorrupt, path, seq, off, err))
			}
			if kept, err = w.replay(kept, sg, off, trunc, es); err != nil {
				return fail(fmt.Errorf("%w: segment %s: frame %d at offset %d: %v", ErrCorrupt, path, seq, off, err))
			}
			off += size
			w.nextSeq++
		}
		sg.end = off
		if end := lastNonZero(data, off); end > off {
			// Look for later frames past the unreadable one: past all
			// of it if its header still reads.
			from := off + 8
			if _, seq, size, _, hdr := readFrame(w.salt, data, off); hdr {
				if seq > w.nextSeq {
					return fail(fmt.Errorf("%w: segment %s: frame %d at offset %d where frame %d was due", ErrCorrupt,
						path, seq, off, w.nextSeq))
				}
				if seq == w.nextSeq {
					from = off + size
				}
			}
			if !isLast || laterFrame(w.salt, data, from, w.nextSeq) {
				return fail(fmt.Errorf("%w: segment %s: unreadable bytes at offset %d before data written after them "+
					"(frame %d is missing)", ErrCorrupt, path, off, w.nextSeq))
			}
			zeroSeg, zeroFrom, zeroTo = sg, off, end
		}
		sg.endIndex = w.lastIndex(kept)
	}
	if err := rlog.NewAt(base).Append(kept...); err != nil {
		return fail(fmt.Errorf("%w: log does not chain from the snapshot base %s: %v", ErrCorrupt, base, err))
	}
	if len(kept) > 0 {
		w.last = rlog.PosOf(kept[len(kept)-1])
	}
	if zeroSeg != nil {
		// A torn frame: never acknowledged, and in the way of the next.
		if _, err := zeroSeg.f.WriteAt(make([]byte, zeroTo-zeroFrom), zeroFrom); err != nil {
			return fail(fmt.Errorf("clear torn frame in %s: %w", fs.path(zeroSeg.name), err))
		}
		if err := zeroSeg.f.sync(); err != nil {
			return fail(fmt.Errorf("clear torn frame in %s: %w", fs.path(zeroSeg.name), err))
		}
	}
	if err := fs.remove(stale...); err != nil {
		return fail(fmt.Errorf("remove old segments: %w", err))
	}
	return w, kept, nil
}

// lastIndex is the log's last index while replaying: the last kept entry,
// or at most the base.
func (w *wal) lastIndex(kept []rlog.Entry) uint64 {
	if len(kept) > 0 {
		return kept[len(kept)-1].Index
	}
	return w.base.Index
}

// replay applies one frame read at open to kept, the entries above the
// base so far. Entries at or below the base are in the snapshot and are
// skipped; those above it must follow each other with no gap or overlap.
// The hash chain is checked once at the end.
func (w *wal) replay(kept []rlog.Entry, sg *segment, off int64, trunc *uint64, es []rlog.Entry) ([]rlog.Entry, error) {
	if trunc != nil {
		n := len(kept)
		for n > 0 && kept[n-1].Index > *trunc {
			n--
		}
		kept = kept[:n]
		w.trimLive(*trunc)
	}
	first := uint64(0)
	for _, e := range es {
		if e.Index <= w.base.Index {
			continue
		}
		if want := w.lastIndex(kept) + 1; e.Index != want {
			return nil, fmt.Errorf("entry %d where %d was due", e.Index, want)
		}
		if first == 0 {
			first = e.Index
		}
		kept = append(kept, e)
	}
	if first != 0 {
		w.live = append(w.live, frameRef{seg: sg, off: off, first: first, last: kept[len(kept)-1].Index})
	}
	return kept, nil
}

// trimLive forgets live entries after index i.
func (w *wal) trimLive(i uint64) {
	n := len(w.live)
	for n > 0 && w.live[n-1].first > i {
		n--
	}
	w.live = w.live[:n]
	if n > 0 && w.live[n-1].last > i {
		w.live[n-1].last = i
	}
}

// posAt returns the point of the log at index i, which must be between the
// base and the last entry.
func (w *wal) posAt(i uint64) (rlog.Pos, error) {
	switch {
	case i == w.base.Index:
		return w.base, nil
	case i == w.last.Index:
		return w.last, nil
	case i < w.base.Index || i > w.last.Index:
		return rlog.Pos{}, fmt.Errorf("index %d is outside the log (%d, %d]", i, w.base.Index, w.last.Index)
	}
	k, found := slices.BinarySearchFunc(w.live, i, func(r frameRef, i uint64) int {
		switch {
		case r.last < i:
			return -1
		case r.first > i:
			return 1
		}
		return 0
	})
	if !found {
		return rlog.Pos{}, fmt.Errorf("%w: index %d is in no frame", ErrCorrupt, i)
	}
	r := w.live[k]
	es, err := w.readAt(r)
	if err != nil {
		return rlog.Pos{}, err
	}
	for _, e := range es {
		if e.Index == i {
			return rlog.PosOf(e), nil
		}
	}
	return rlog.Pos{}, fmt.Errorf("%w: segment %s: frame at offset %d lacks entry %d", ErrCorrupt, w.fs.path(r.seg.name), r.off, i)
}

// readAt reads back the entries of the frame r names.
func (w *wal) readAt(r frameRef) ([]rlog.Entry, error) {
	var h [frameHeader]byte
	if _, err := r.seg.f.ReadAt(h[:], r.off); err != nil {
		return nil, fmt.Errorf("read segment %s at %d: %w", w.fs.path(r.seg.name), r.off, err)
	}
	n := int64(binary.LittleEndian.Uint32(h[4:]))
	if n > maxFrameBytes || r.off+padded(frameHeader+n) > r.seg.size {
		return nil, fmt.Errorf("%w: segment %s: frame at offset %d claims %d bytes", ErrCorrupt, w.fs.path(r.seg.name), r.off, n)
	}
	data := make([]byte, padded(frameHeader+n))
	if _, err := r.seg.f.ReadAt(data, r.off); err != nil {
		return nil, fmt.Errorf("read segment %s at %d: %w", w.fs.path(r.seg.name), r.off, err)
	}
	payload, _, _, ok, _ := readFrame(w.salt, data, 0)
	if !ok {
		return nil, fmt.Errorf("%w: segment %s: frame at offset %d no longer reads", ErrCorrupt, w.fs.path(r.seg.name), r.off)
	}
	_, es, err := decodePayload(payload)
	if err != nil {
		return nil, fmt.Errorf("%w: segment %s: frame at offset %d: %v", ErrCorrupt, w.fs.path(r.seg.name), r.off, err)
	}
	return es, nil
}

// write stores a truncation after *trunc (if set; the log's point there is
// truncPos) followed by es, encoded as vals, and syncs. core has checked
// that es extend the log so cut.
func (w *wal) write(trunc *uint64, truncPos rlog.Pos, es []rlog.Entry, vals [][]byte) error {
	if w.err != nil {
		return fmt.Errorf("log unusable after an earlier failed write: %w", w.err)
	}
	for first := true; first || len(es) > 0; first = false {
		// Split what exceeds one frame; only the first carries the
		// truncation.
		n, size := 0, int64(payloadHeader)
		for n < len(es) && (n == 0 || size+4+int64(len(vals[n])) <= maxFrameBytes) {
			size += 4 + int64(len(vals[n]))
			n++
		}
		var t *uint64
		if first {
			t = trunc
		}
		if err := w.writeFrame(t, truncPos, es[:n], vals[:n]); err != nil {
			w.err = err
			return err
		}
		es, vals = es[n:], vals[n:]
	}
	return nil
}

func (w *wal) writeFrame(trunc *uint64, truncPos rlog.Pos, es []rlog.Entry, vals [][]byte) error {
	b := appendFrame(w.frame, w.salt, w.nextSeq, trunc, vals)
	if cap(b) <= maxScratch {
		w.frame = b // the next frame reuses it
	}
	sg, err := w.segmentFor(int64(len(b)))
	if err != nil {
		return err
	}
	if _, err := sg.f.WriteAt(b, sg.end); err != nil {
		return fmt.Errorf("write segment %s: %w", w.fs.path(sg.name), err)
	}
	if err := sg.f.sync(); err != nil {
		return fmt.Errorf("sync segment %s: %w", w.fs.path(sg.name), err)
	}
	off := sg.end
	sg.end += int64(len(b))
	w.nextSeq++
	if trunc != nil && *trunc < w.last.Index {
		w.trimLive(*trunc)
		w.last = truncPos
	}
	if len(es) > 0 {
		w.live = append(w.live, frameRef{seg: sg, off: off, first: es[0].Index, last: es[len(es)-1].Index})
		w.last = rlog.PosOf(es[len(es)-1])
	}
	return nil
}

// segmentFor returns the segment the next frame of n bytes goes in,
// making a new one when the last is full.
func (w *wal) segmentFor(n int64) (*segment, error) {
	if k := len(w.segs); k > 0 && w.segs[k-1].end+n <= w.segs[k-1].size {
		return w.segs[k-1], nil
	}
	if k := len(w.segs); k > 0 && w.segs[k-1].end == 0 {
		// An empty segment too small for the frame (a crash came between
		// making it and writing to it): the new one takes its name.
		if err := w.dropRange(k-1, k); err != nil {
			return nil, err
		}
	}
	name := segName(w.gen, w.nextSeq)
	size := max(w.segBytes, n)
	f, err := w.fs.create(name, size)
	if err != nil {
		return nil, fmt.Errorf("create segment %s: %w", w.fs.path(name), err)
	}
	if w.made != nil {
		if err := w.made(w.gen, w.nextSeq); err != nil {
			f.close()
			return nil, fmt.Errorf("record segment %s: %w", w.fs.path(name), err)
		}
	}
	if k := len(w.segs); k > 0 {
		w.segs[k-1].endIndex = w.last.Index
	}
	sg := &segment{name: name, f: f, seq: w.nextSeq, size: size}
	w.segs = append(w.segs, sg)
	return sg, nil
}

// compact moves the base to base, which the log holds (or ends at), and
// deletes the segments in front that hold nothing above it.
func (w *wal) compact(base rlog.Pos) error {
	w.base = base
	if w.last.Index <= base.Index {
		w.last = base
	}
	n := 0
	for n < len(w.live) && w.live[n].last <= base.Index {
		n++
	}
	w.live = slices.Delete(w.live, 0, n)
	if len(w.live) > 0 && w.live[0].first <= base.Index {
		w.live[0].first = base.Index + 1
	}
	k := 0
	for k < len(w.segs)-1 && w.segs[k].endIndex <= base.Index {
		k++
	}
	return w.drop(k)
}

// reset empties the log and moves it to generation gen, whose number core
// has stored: the old segments are deleted.
func (w *wal) reset(gen uint64, base rlog.Pos) error {
	if err := w.drop(len(w.segs)); err != nil {
		return err
	}
	w.gen, w.base, w.last, w.live = gen, base, base, nil
	return nil
}

// drop closes and deletes the first k segments.
func (w *wal) drop(k int) error { return w.dropRange(0, k) }

// dropRange closes and deletes the segments from i to j.
func (w *wal) dropRange(i, j int) error {
	if i == j {
		return nil
	}
	names := make([]string, 0, j-i)
	for _, sg := range w.segs[i:j] {
		sg.f.close()
		names = append(names, sg.name)
	}
	w.segs = slices.Delete(w.segs, i, j)
	if err := w.fs.remove(names...); err != nil {
		w.err = err
		return fmt.Errorf("remove segments: %w", err)
	}
	return nil
}

func (w *wal) closeFiles() {
	for _, sg := range w.segs {
		sg.f.close()
	}
}
