package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/mastership/mastership/agent/rlog"
)

// segFiles returns the segment files in a Bolt store's directory, in order.
func segFiles(t testing.TB, dir string) []string {
	t.Helper()
	ms, err := filepath.Glob(filepath.Join(dir, walDirName, "*"+segExt))
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(ms)
	return ms
}

// openSeg opens the Bolt store in dir with segments of segBytes.
func openSeg(t testing.TB, dir string, segBytes int64) *Bolt {
	t.Helper()
	s := mustOpen(t, dir)
	s.segBytes = segBytes
	return s
}

// testSalt is the salt of the stores newSaltedMemory makes.
const testSalt = 0x5a17

// newSaltedMemory returns a Memory with a known salt and segments of at
// least 8 bytes, for tests that put segment files in place themselves.
func newSaltedMemory(t testing.TB) *Memory {
	t.Helper()
	m := NewMemory()
	m.segBytes = 8
	v, err := encodeBounded(uint64(testSalt))
	if err != nil {
		t.Fatal(err)
	}
	if err := m.update(func(t txn) error { return t.put(bucketMeta, []byte(keySalt), v) }); err != nil {
		t.Fatal(err)
	}
	return m
}

// patch overwrites the bytes at off in file with b.
func patch(t testing.TB, file string, off int64, b []byte) {
	t.Helper()
	f, err := os.OpenFile(file, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

// frameSize is the size on disk of a frame holding es.
func frameSize(t testing.TB, es []rlog.Entry) int64 {
	vals, err := encodeEntries(es)
	if err != nil {
		t.Fatal(err)
	}
	return int64(len(encodeFrame(0, 1, nil, vals)))
}

// mustLoad loads s and checks the log chains.
func mustLoad(t testing.TB, s Storage) (rlog.Pos, []rlog.Entry) {
	t.Helper()
	_, _, base, es, err := s.Load()
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if err := rlog.NewAt(base).Append(es...); err != nil {
		t.Fatalf("loaded log does not chain: %v", err)
	}
	return base, es
}

func sameEntries(t testing.TB, got, want []rlog.Entry) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%d entries, want %d", len(got), len(want))
	}
	for i := range got {
		if rlog.PosOf(got[i]) != rlog.PosOf(want[i]) || string(got[i].Op) != string(want[i].Op) {
			t.Fatalf("entry %d is %s, want %s", i, got[i], want[i])
		}
	}
}

// A crash in the middle of writing the last frame leaves part of it on
// disk. The frame was never acknowledged: Load ends the log before it, and
// what is written next reads back cleanly, even when it is shorter than
// the torn frame.
func TestWALTornLastFrame(t *testing.T) {
	for _, tear := range []struct {
		name string
		at   func(frame int64) int64 // offset in the frame of 8 zero bytes
	}{
		{"header", func(int64) int64 { return 0 }},
		{"payload", func(n int64) int64 { return n / 2 &^ 7 }},
		{"end", func(n int64) int64 { return n - 8 }},
	} {
		t.Run(tear.name, func(t *testing.T) {
			dir := t.TempDir()
			s := mustOpen(t, dir)
			b1 := chain(rlog.Pos{}, ep(1, 1), 3)
			b2 := chain(last(rlog.Pos{}, b1), ep(1, 1), 6)
			// A segment that b1 and b2 fill.
			s.segBytes = frameSize(t, b1) + frameSize(t, b2)
			if err := s.Append(b1); err != nil {
				t.Fatal(err)
			}
			if err := s.Append(b2); err != nil {
				t.Fatal(err)
			}
			s.Close()
			segs := segFiles(t, dir)
			if len(segs) != 1 {
				t.Fatalf("segments %v", segs)
			}
			off := frameSize(t, b1)
			patch(t, segs[0], off+tear.at(frameSize(t, b2)), make([]byte, 8))

			s = openSeg(t, dir, frameSize(t, b1)+frameSize(t, b2))
			defer s.Close()
			_, es := mustLoad(t, s)
			sameEntries(t, es, b1)
			// A shorter frame over the torn one, at another epoch, then
			// one that does not fit in what is left of the segment: the
			// segment is no longer the last, so what is left of the torn
			// frame after b3 must be gone.
			b3 := chain(last(rlog.Pos{}, b1), ep(2, 1), 1)
			b4 := chain(last(rlog.Pos{}, b3), ep(2, 1), 6)
			if err := s.Append(b3); err != nil {
				t.Fatal(err)
			}
			if err := s.Append(b4); err != nil {
				t.Fatal(err)
			}
			s.Close()
			if n := len(segFiles(t, dir)); n != 2 {
				t.Fatalf("%d segments, want 2", n)
			}
			s = openSeg(t, dir, frameSize(t, b1)+frameSize(t, b2))
			_, es = mustLoad(t, s)
			sameEntries(t, es, slices.Concat(b1, b3, b4))
		})
	}
}

// Bytes that were synced and then damaged are not a torn write: a frame that
// no longer reads, with readable frames after it, is an error naming the
// file and offset, never a log silently cut short.
func TestWALDamagedFrame(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir)
	b1 := chain(rlog.Pos{}, ep(1, 1), 3)
	b2 := chain(last(rlog.Pos{}, b1), ep(1, 1), 2)
	b3 := chain(last(rlog.Pos{}, b2), ep(1, 1), 2)
	for _, b := range [][]rlog.Entry{b1, b2, b3} {
		if err := s.Append(b); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	seg := segFiles(t, dir)[0]
	off := frameSize(t, b1)
	patch(t, seg, off+frameHeader+5, []byte{0xff})
	s = mustOpen(t, dir)
	defer s.Close()
	_, _, _, _, err := s.Load()
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), filepath.Base(seg)) ||
		!strings.Contains(err.Error(), fmt.Sprintf("offset %d", off)) {
		t.Fatalf("Load of a damaged frame: %v", err)
	}
	// Writers refuse too: the log is not open.
	if err := s.Append(chain(last(rlog.Pos{}, b3), ep(1, 1), 1)); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Append after a damaged frame: %v", err)
	}
}

// One frame per segment (segments of 1 byte get the size of their frame):
// damage in a segment that is not the last, and a missing segment, are
// errors.
func TestWALSegments(t *testing.T) {
	build := func(t *testing.T) (string, []rlog.Entry) {
		dir := t.TempDir()
		s := openSeg(t, dir, 1)
		var all []rlog.Entry
		for range 4 {
			b := chain(last(rlog.Pos{}, all), ep(1, 1), 2)
			if err := s.Append(b); err != nil {
				t.Fatal(err)
			}
			all = append(all, b...)
		}
		s.Close()
		if n := len(segFiles(t, dir)); n != 4 {
			t.Fatalf("%d segments, want 4", n)
		}
		return dir, all
	}
	t.Run("intact", func(t *testing.T) {
		dir, all := build(t)
		s := openSeg(t, dir, 1)
		defer s.Close()
		_, es := mustLoad(t, s)
		sameEntries(t, es, all)
	})
	t.Run("damaged", func(t *testing.T) {
		dir, _ := build(t)
		seg := segFiles(t, dir)[1]
		patch(t, seg, frameHeader+3, []byte{0xee})
		s := openSeg(t, dir, 1)
		defer s.Close()
		if _, _, _, _, err := s.Load(); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), filepath.Base(seg)) {
			t.Fatalf("Load: %v", err)
		}
	})
	t.Run("missing", func(t *testing.T) {
		dir, _ := build(t)
		os.Remove(segFiles(t, dir)[2])
		s := openSeg(t, dir, 1)
		defer s.Close()
		if _, _, _, _, err := s.Load(); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "starts at frame") {
			t.Fatalf("Load: %v", err)
		}
	})
	t.Run("last missing", func(t *testing.T) {
		// Entries 7 and 8 were acknowledged: a shorter log is not an
		// answer.
		dir, _ := build(t)
		os.Remove(segFiles(t, dir)[3])
		s := openSeg(t, dir, 1)
		defer s.Close()
		if _, _, _, _, err := s.Load(); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "is missing") {
			t.Fatalf("Load: %v", err)
		}
	})
	t.Run("all missing", func(t *testing.T) {
		// agent.db copied alone.
		dir, _ := build(t)
		os.RemoveAll(filepath.Join(dir, walDirName))
		s := openSeg(t, dir, 1)
		defer s.Close()
		if _, _, _, _, err := s.Load(); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "is missing") {
			t.Fatalf("Load: %v", err)
		}
	})
	t.Run("cut short", func(t *testing.T) {
		// Segments never change size: one cut in its frame is damage.
		dir, _ := build(t)
		if err := os.Truncate(segFiles(t, dir)[3], 30); err != nil {
			t.Fatal(err)
		}
		s := openSeg(t, dir, 1)
		defer s.Close()
		if _, _, _, _, err := s.Load(); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "cut short") {
			t.Fatalf("Load: %v", err)
		}
	})
}

// A segment shorter than segments are made, cut at a frame boundary, or
// larger than any segment is made (a sparse file would otherwise be read
// whole into memory), is refused.
func TestWALSegmentSize(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir)
	var ends []int64
	var end int64
	var all []rlog.Entry
	for range 3 {
		b := chain(last(rlog.Pos{}, all), ep(1, 1), 2)
		if err := s.Append(b); err != nil {
			t.Fatal(err)
		}
		all = append(all, b...)
		end += frameSize(t, b)
		ends = append(ends, end)
	}
	s.Close()
	seg := segFiles(t, dir)[0]
	for _, size := range []int64{ends[1], 64 << 30} {
		if err := os.Truncate(seg, size); err != nil {
			t.Fatal(err)
		}
		s := mustOpen(t, dir)
		if _, _, _, _, err := s.Load(); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "segments are made with") {
			t.Fatalf("Load of a segment of %d bytes: %v", size, err)
		}
		s.Close()
	}
}

// Compaction deletes the segments behind the snapshot and keeps the rest;
// a log cut and rewritten across segments compacts the same way.
func TestWALCompaction(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir)
	s.segBytes = 2048
	var all []rlog.Entry
	for range 40 {
		b := chain(last(rlog.Pos{}, all), ep(1, 1), 5)
		if err := s.Append(b); err != nil {
			t.Fatal(err)
		}
		all = append(all, b...)
	}
	// Cut back into an older segment and go on at a new epoch.
	if err := s.TruncateAfter(120); err != nil {
		t.Fatal(err)
	}
	all = all[:120]
	for range 20 {
		b := chain(last(rlog.Pos{}, all), ep(2, 1), 5)
		if err := s.Append(b); err != nil {
			t.Fatal(err)
		}
		all = append(all, b...)
	}
	before := len(segFiles(t, dir))
	if err := s.SaveSnapshot(rlog.PosOf(all[199]), []byte("snap")); err != nil {
		t.Fatal(err)
	}
	after := len(segFiles(t, dir))
	if after >= before || after == 0 {
		t.Fatalf("segments %d before the snapshot, %d after", before, after)
	}
	s.Close()
	s = openSeg(t, dir, 2048)
	defer s.Close()
	base, es := mustLoad(t, s)
	if base != rlog.PosOf(all[199]) {
		t.Fatalf("base %s", base)
	}
	sameEntries(t, es, all[200:])
	// The segments left replay to the same log even though the oldest
	// holds entries below the base and the cut at 120 is gone.
	if err := s.Append(chain(last(base, es), ep(2, 1), 1)); err != nil {
		t.Fatal(err)
	}
}

// A snapshot the log does not hold replaces the log: the old generation's
// segments go, and if a crash kept one, the next open deletes it unread.
func TestWALNewGeneration(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir)
	es := chain(rlog.Pos{}, ep(1, 1), 10)
	if err := s.Append(es); err != nil {
		t.Fatal(err)
	}
	old := segFiles(t, dir)
	oldBytes, err := os.ReadFile(old[0])
	if err != nil {
		t.Fatal(err)
	}
	other := chain(rlog.Pos{}, ep(3, 2), 20)
	base := rlog.PosOf(other[19])
	if err := s.SaveSnapshot(base, []byte("theirs")); err != nil {
		t.Fatal(err)
	}
	if got := segFiles(t, dir); len(got) != 0 {
		t.Fatalf("segments after a replacing snapshot: %v", got)
	}
	next := chain(base, ep(3, 2), 2)
	if err := s.Append(next); err != nil {
		t.Fatal(err)
	}
	s.Close()
	// As if the old segment's removal had not reached the disk; with a
	// half-made segment and a file that is not ours.
	os.WriteFile(old[0], oldBytes, 0o600)
	os.WriteFile(filepath.Join(dir, walDirName, "x"+segExt+tmpSuffix), []byte("half"), 0o600)
	os.WriteFile(filepath.Join(dir, walDirName, "README"), []byte("mine"), 0o600)
	s = mustOpen(t, dir)
	defer s.Close()
	b, got := mustLoad(t, s)
	if b != base {
		t.Fatalf("base %s, want %s", b, base)
	}
	sameEntries(t, got, next)
	left, _ := os.ReadDir(filepath.Join(dir, walDirName))
	var names []string
	for _, de := range left {
		names = append(names, de.Name())
	}
	if len(names) != 2 || !slices.Contains(names, "README") {
		t.Fatalf("files left: %v", names)
	}
}

// A crash after the commit of divergence records but before the log was
// cut: Load cuts it, so the entries are in the records and not in the log.
// If the cut had happened and new entries took the place, Load keeps them.
func TestWALCutFinishedAtLoad(t *testing.T) {
	es := chain(rlog.Pos{}, ep(1, 1), 5)
	mark := func(t *testing.T, m *Memory) {
		v, err := encodeBounded(&cut{After: 3, Removed: rlog.PosOf(es[3])})
		if err != nil {
			t.Fatal(err)
		}
		if err := m.eng.update(func(t txn) error { return t.put(bucketMeta, []byte(keyCut), v) }); err != nil {
			t.Fatal(err)
		}
	}
	t.Run("not cut", func(t *testing.T) {
		m := NewMemory()
		if err := m.Append(es); err != nil {
			t.Fatal(err)
		}
		mark(t, m)
		m.Close()
		_, got := mustLoad(t, m)
		sameEntries(t, got, es[:3])
		m.Close()
		_, got = mustLoad(t, m)
		sameEntries(t, got, es[:3])
	})
	t.Run("cut", func(t *testing.T) {
		m := NewMemory()
		if err := m.Append(es); err != nil {
			t.Fatal(err)
		}
		fresh := chain(rlog.PosOf(es[2]), ep(2, 1), 3)
		if err := m.Persist(Update{TruncateAfter: new(uint64(3)), Entries: fresh}); err != nil {
			t.Fatal(err)
		}
		mark(t, m)
		m.Close()
		_, got := mustLoad(t, m)
		sameEntries(t, got, append(slices.Clone(es[:3]), fresh...))
	})
}

// A store made before the write-ahead log keeps its log in a bbolt bucket;
// opening it moves the entries to segments once.
func TestWALMovesLegacyLog(t *testing.T) {
	file := fixture(t)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, FileName), file, 0o600); err != nil {
		t.Fatal(err)
	}
	want := chain(rlog.Pos{}, ep(1, 1), 5)
	for range 2 {
		s := mustOpen(t, dir)
		base, es := mustLoad(t, s)
		if base != rlog.PosOf(want[1]) {
			t.Fatalf("base %s", base)
		}
		sameEntries(t, es, want[2:])
		var n int
		s.view(func(t txn) error { return t.scan(bucketLog, nil, func(k, v []byte) error { n++; return nil }) })
		if n != 0 {
			t.Fatalf("%d entries left in the log bucket", n)
		}
		s.Close()
	}
	if len(segFiles(t, dir)) != 1 {
		t.Fatal("no segment written")
	}
}

// Hostile frames: lengths and counts far beyond the file are not believed
// (nothing is allocated for them), and a frame whose checksum is right but
// whose payload is not is corruption.
func TestWALHostileFrames(t *testing.T) {
	seg := func(frames ...[]byte) *Memory {
		m := newSaltedMemory(t)
		var data []byte
		for _, f := range frames {
			data = append(data, f...)
		}
		fs := m.fs.(*memFS)
		fs.files[segName(0, 1)] = memFileOf(append(data, make([]byte, 64)...))
		return m
	}
	good := encodeFrame(testSalt, 1, nil, mustVals(t, chain(rlog.Pos{}, ep(1, 1), 2)))
	huge := slices.Clone(good)
	binary.LittleEndian.PutUint32(huge[4:], 0xffffffff)
	t.Run("length beyond the file", func(t *testing.T) {
		// The header no longer checks out: torn.
		_, es := mustLoad(t, seg(huge))
		if len(es) != 0 {
			t.Fatalf("%d entries", len(es))
		}
	})
	t.Run("length beyond the file before a frame", func(t *testing.T) {
		m := seg(huge, encodeFrame(testSalt, 2, nil, nil))
		if _, _, _, _, err := m.Load(); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("Load: %v", err)
		}
	})
	t.Run("length beyond the file, header intact", func(t *testing.T) {
		// A checked header whose frame cannot fit: the file was cut.
		b := slices.Clone(huge)
		binary.LittleEndian.PutUint32(b[20:], crc(testSalt, b[:20]))
		if _, _, _, _, err := seg(b).Load(); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("Load: %v", err)
		}
	})
	t.Run("another salt", func(t *testing.T) {
		// A frame made for another store (or by a client) is not a frame.
		_, es := mustLoad(t, seg(encodeFrame(testSalt+1, 1, nil, mustVals(t, chain(rlog.Pos{}, ep(1, 1), 2)))))
		if len(es) != 0 {
			t.Fatalf("%d entries", len(es))
		}
	})
	forged := func(payload []byte) []byte {
		b := make([]byte, padded(frameHeader+int64(len(payload))))
		binary.LittleEndian.PutUint32(b[0:], frameMagic)
		binary.LittleEndian.PutUint32(b[4:], uint32(len(payload)))
		binary.LittleEndian.PutUint64(b[8:], 1)
		copy(b[frameHeader:], payload)
		binary.LittleEndian.PutUint32(b[16:], crc(testSalt, payload))
		binary.LittleEndian.PutUint32(b[20:], crc(testSalt, b[:20]))
		return b
	}
	for name, p := range map[string][]byte{
		"count of 4G":        {0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff},
		"entry of 4G":        {0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff},
		"flags":              {7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0},
		"short":              {0, 0},
		"bytes after":        {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1},
		"garbage entry":      {0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0xc1},
		"entry past the end": {0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0},
	} {
		t.Run(name, func(t *testing.T) {
			if _, _, _, _, err := seg(forged(p)).Load(); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Load: %v", err)
			}
		})
	}
	t.Run("entries out of order", func(t *testing.T) {
		es := chain(rlog.Pos{}, ep(1, 1), 3)
		f := encodeFrame(testSalt, 1, nil, mustVals(t, []rlog.Entry{es[0], es[2]}))
		if _, _, _, _, err := seg(f).Load(); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("Load: %v", err)
		}
	})
}

func mustVals(t testing.TB, es []rlog.Entry) [][]byte {
	vals, err := encodeEntries(es)
	if err != nil {
		t.Fatal(err)
	}
	return vals
}

// FuzzWAL writes arbitrary bytes over a segment of three frames. Load may
// refuse it, but must not panic, and a log it returns is a prefix of what
// was written: damage can lose the unacknowledged tail, never change an
// entry.
func FuzzWAL(f *testing.F) {
	es := chain(rlog.Pos{}, ep(1, 1), 9)
	b1 := encodeFrame(testSalt, 1, nil, mustVals(f, es[:3]))
	b2 := encodeFrame(testSalt, 2, new(uint64(2)), mustVals(f, es[2:6]))
	b3 := encodeFrame(testSalt, 3, nil, mustVals(f, es[6:]))
	image := slices.Concat(b1, b2, b3, make([]byte, 256))
	f.Add(uint16(0), []byte{0})
	f.Add(uint16(len(b1)), []byte{0, 0, 0, 0, 0, 0, 0, 0})
	f.Add(uint16(len(b1)+4), []byte{0xff, 0xff, 0xff, 0x7f})
	f.Add(uint16(len(b1)+len(b2)+30), []byte{1, 2, 3})
	f.Add(uint16(len(b1)+len(b2)+len(b3)), b1)
	f.Fuzz(func(t *testing.T, at uint16, v []byte) {
		data := slices.Clone(image)
		if int(at) < len(data) {
			copy(data[at:], v)
		}
		m := newSaltedMemory(t)
		m.fs.(*memFS).files[segName(0, 1)] = memFileOf(data)
		_, _, base, got, err := m.Load()
		if err != nil {
			return
		}
		if err := rlog.NewAt(base).Append(got...); err != nil {
			t.Fatalf("Load returned a log that does not chain: %v", err)
		}
		if len(got) > len(es) {
			t.Fatalf("%d entries from a log of %d", len(got), len(es))
		}
		for i := range got {
			if rlog.PosOf(got[i]) != rlog.PosOf(es[i]) {
				t.Fatalf("entry %d is %s, want %s", i, got[i], es[i])
			}
		}
		// And the store goes on.
		if err := m.Append(chain(last(base, got), ep(2, 1), 1)); err != nil {
			t.Fatalf("Append after Load: %v", err)
		}
	})
}

// A crash between making a segment and writing its first frame leaves it
// empty. If the next frame is too big for it, a new segment takes its
// name, and nothing later mistakes one for the other.
func TestWALEmptyLastSegment(t *testing.T) {
	m := NewMemory()
	m.segBytes = 1
	b1 := chain(rlog.Pos{}, ep(1, 1), 2)
	if err := m.Append(b1); err != nil {
		t.Fatal(err)
	}
	fs := m.fs.(*memFS)
	if _, err := fs.create(segName(0, 2), 8); err != nil {
		t.Fatal(err)
	}
	m.Close()
	base, es := mustLoad(t, m)
	b2 := chain(last(base, es), ep(1, 1), 3)
	if err := m.Append(b2); err != nil {
		t.Fatal(err)
	}
	b3 := chain(last(base, b2), ep(1, 1), 1)
	if err := m.Append(b3); err != nil {
		t.Fatal(err)
	}
	if err := m.SaveSnapshot(rlog.PosOf(b2[0]), nil); err != nil {
		t.Fatal(err)
	}
	m.Close()
	_, es = mustLoad(t, m)
	sameEntries(t, es, slices.Concat(b2[1:], b3))
}

// Segments of a newer generation than agent.db's mean agent.db went back
// (restored alone from a backup): an error, not a log deleted unread.
func TestWALNewerGeneration(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir)
	if err := s.Append(chain(rlog.Pos{}, ep(1, 1), 3)); err != nil {
		t.Fatal(err)
	}
	s.Close()
	backup, err := os.ReadFile(filepath.Join(dir, FileName))
	if err != nil {
		t.Fatal(err)
	}
	s = mustOpen(t, dir)
	base := last(rlog.Pos{}, chain(rlog.Pos{}, ep(2, 2), 5))
	if err := s.SaveSnapshot(base, []byte("x")); err != nil { // generation 1
		t.Fatal(err)
	}
	if err := s.Append(chain(base, ep(2, 2), 4)); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if err := os.WriteFile(filepath.Join(dir, FileName), backup, 0o600); err != nil {
		t.Fatal(err)
	}
	s = mustOpen(t, dir)
	defer s.Close()
	if _, _, _, _, err := s.Load(); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "restored alone") {
		t.Fatalf("Load with agent.db older than the log: %v", err)
	}
	if n := len(segFiles(t, dir)); n != 1 {
		t.Fatalf("%d segments left, want the 1 of generation 1", n)
	}
}

// frameImages returns bytes holding a frame with the largest sequence
// number at each of the 8 alignments, checksummed with salt: what a client
// could put in a write if it knew the salt.
func frameImages(salt uint64) []byte {
	f := encodeFrame(salt, ^uint64(0), nil, nil)
	var op []byte
	for range 8 {
		op = append(op, f...)
		op = append(op, make([]byte, 9)...) // 33 = 1 mod 8
	}
	return op
}

// A client's write holding frame images, in a frame torn by a crash: the
// images do not check out (the salt is the store's own, and secret), so
// the torn write is dropped, not taken for damage.
func TestWALFrameImagesInATornWrite(t *testing.T) {
	for _, tc := range []struct {
		salt       uint64
		headerLost bool // the sector with the torn frame's header did not land either
	}{{0, false}, {0, true}, {testSalt, true}} {
		salt := tc.salt
		dir := t.TempDir()
		s := mustOpen(t, dir)
		b1 := chain(rlog.Pos{}, ep(1, 1), 3)
		if err := s.Append(b1); err != nil {
			t.Fatal(err)
		}
		p := last(rlog.Pos{}, b1)
		e1 := rlog.Entry{Epoch: ep(1, 1), Index: p.Index + 1, Op: frameImages(salt)}
		e1.Hash = rlog.ChainHash(p.Hash, e1)
		e2 := rlog.Entry{Epoch: ep(1, 1), Index: e1.Index + 1, Op: make([]byte, 64<<10)}
		e2.Hash = rlog.ChainHash(e1.Hash, e2)
		b2 := []rlog.Entry{e1, e2}
		if err := s.Append(b2); err != nil {
			t.Fatal(err)
		}
		s.Close()
		// The write of b2 stopped after its first page.
		start := frameSize(t, b1)
		cut := (start + 4096) &^ 4095
		patch(t, segFiles(t, dir)[0], cut, make([]byte, start+frameSize(t, b2)-cut))
		if tc.headerLost {
			patch(t, segFiles(t, dir)[0], start, make([]byte, frameHeader))
		}
		s = mustOpen(t, dir)
		_, es := mustLoad(t, s)
		sameEntries(t, es, b1)
		s.Close()
	}
}

// A torn region full of frame headers that do not check out (the scan for
// later frames looks at each header's own checksum, not at payloads) is a
// torn write.
func TestWALTornRegionOfHeaders(t *testing.T) {
	const size = 256 << 10
	data := make([]byte, size)
	for at := 8; at+frameHeader <= size; at += frameHeader {
		binary.LittleEndian.PutUint32(data[at:], frameMagic)
		binary.LittleEndian.PutUint32(data[at+4:], uint32(size-at-frameHeader))
		binary.LittleEndian.PutUint64(data[at+8:], 1)
	}
	data[0] = 1
	m := newSaltedMemory(t)
	m.fs.(*memFS).files[segName(0, 1)] = memFileOf(data)
	if _, es := mustLoad(t, m); len(es) != 0 {
		t.Fatalf("%d entries", len(es))
	}
	f, _ := m.fs.open(segName(0, 1))
	got := make([]byte, size)
	f.ReadAt(got, 0)
	if lastNonZero(got, 0) != 0 {
		t.Fatal("the torn region was not cleared")
	}
}

// readFailFS is a memFS whose files fail every read after the first.
type readFailFS struct{ *memFS }

type readFailFile struct {
	*memFile
	reads int
}

func (r readFailFS) open(name string) (segFile, error) {
	f, err := r.memFS.open(name)
	if err != nil {
		return nil, err
	}
	return &readFailFile{memFile: f.(*memFile)}, nil
}

func (f *readFailFile) ReadAt(p []byte, off int64) (int, error) {
	if f.reads++; f.reads > 1 {
		return 0, errors.New("input/output error")
	}
	return f.memFile.ReadAt(p, off)
}

// A truncation to finish at Load whose entries cannot be read back is an
// error: the mark stays, and the entries (also in divergence records) are
// not kept in the log as if the cut had been made.
func TestWALCutReadError(t *testing.T) {
	es := chain(rlog.Pos{}, ep(1, 1), 5)
	m := NewMemory()
	if err := m.Append(es); err != nil {
		t.Fatal(err)
	}
	v, err := encodeBounded(&cut{After: 3, Removed: rlog.PosOf(es[3])})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.update(func(t txn) error { return t.put(bucketMeta, []byte(keyCut), v) }); err != nil {
		t.Fatal(err)
	}
	m.Close()
	m.fs = readFailFS{m.fs.(*memFS)}
	if _, _, _, _, err := m.Load(); err == nil || !strings.Contains(err.Error(), "input/output error") {
		t.Fatalf("Load: %v", err)
	}
	var left bool
	m.view(func(t txn) error { left = t.get(bucketMeta, []byte(keyCut)) != nil; return nil })
	if !left {
		t.Fatal("the cut mark was cleared")
	}
}

// memFileOf is an in-memory file holding data.
func memFileOf(data []byte) *memFile {
	f := &memFile{}
	f.WriteAt(data, 0)
	return f
}

// The in-memory file reads back what was written across its chunks, reads
// the bytes never written (holes, the made size) as zeros, and ends at the
// larger of its made size and its last byte written.
func TestMemFileChunks(t *testing.T) {
	f := &memFile{made: 3 * memChunk}
	rnd := rand.New(rand.NewSource(1))
	want := make([]byte, 5*memChunk/2)
	writes := []struct{ off, n int }{{0, 10}, {memChunk - 5, 10}, {memChunk + 100, 2 * memChunk / 3}, {2*memChunk - 1, 2}, {memChunk/2 + 7, 3}}
	for _, w := range writes {
		p := make([]byte, w.n)
		rnd.Read(p)
		copy(want[w.off:], p)
		if n, err := f.WriteAt(p, int64(w.off)); n != w.n || err != nil {
			t.Fatalf("WriteAt(%d bytes at %d) = %d, %v", w.n, w.off, n, err)
		}
	}
	got := make([]byte, len(want))
	if n, err := f.ReadAt(got, 0); n != len(got) || err != nil {
		t.Fatalf("ReadAt = %d, %v", n, err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("read back differs from what was written")
	}
	if sz, _ := f.size(); sz != 3*memChunk {
		t.Fatalf("size %d, want the made %d", sz, 3*memChunk)
	}
	tail := make([]byte, 10)
	if n, err := f.ReadAt(tail, 3*memChunk-4); n != 4 || err != io.EOF || !bytes.Equal(tail[:4], make([]byte, 4)) {
		t.Fatalf("read across the end: %d, %v, %x", n, err, tail[:4])
	}
	f.WriteAt([]byte{1}, 4*memChunk)
	if sz, _ := f.size(); sz != 4*memChunk+1 {
		t.Fatalf("size %d after a write past the made size", sz)
	}
	if _, err := f.WriteAt([]byte{1}, -1); err == nil {
		t.Fatal("a write at a negative offset")
	}
	if n, err := f.ReadAt(tail, -1); n != 0 || err == nil {
		t.Fatalf("a read at a negative offset: %d, %v", n, err)
	}
}

// CompactWanted names the last entry of the first segment once the log
// spans two; a snapshot there leaves one segment, and asks nothing more.
func TestCompactWanted(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir)
	defer s.Close()
	s.segBytes = 2048
	var all []rlog.Entry
	if got := s.CompactWanted(); got != 0 {
		t.Fatalf("CompactWanted of an unopened log: %d", got)
	}
	for len(segFiles(t, dir)) < 2 {
		b := chain(last(rlog.Pos{}, all), ep(1, 1), 3)
		if err := s.Append(b); err != nil {
			t.Fatal(err)
		}
		all = append(all, b...)
		if len(segFiles(t, dir)) == 1 && s.CompactWanted() != 0 {
			t.Fatalf("CompactWanted %d with one segment", s.CompactWanted())
		}
	}
	want := s.CompactWanted()
	if want == 0 || want >= all[len(all)-1].Index {
		t.Fatalf("CompactWanted %d with two segments and %d entries", want, len(all))
	}
	// A snapshot short of it keeps both; one at it drops the first.
	if err := s.SaveSnapshot(rlog.PosOf(all[want-2]), []byte("snap")); err != nil {
		t.Fatal(err)
	}
	if n := len(segFiles(t, dir)); n != 2 || s.CompactWanted() != want {
		t.Fatalf("after a snapshot at %d: %d segments, CompactWanted %d", want-1, n, s.CompactWanted())
	}
	if err := s.SaveSnapshot(rlog.PosOf(all[want-1]), []byte("snap")); err != nil {
		t.Fatal(err)
	}
	if n := len(segFiles(t, dir)); n != 1 || s.CompactWanted() != 0 {
		t.Fatalf("after a snapshot at %d: %d segments, CompactWanted %d", want, n, s.CompactWanted())
	}
}

// A frame encoded into memory that held another (the wal reuses its
// buffer) is the same as one encoded afresh: nothing of the old frame, a
// truncation mark or padding, shows through.
func TestAppendFrameReusesMemoryCleanly(t *testing.T) {
	es := chain(rlog.Pos{}, ep(1, 1), 3)
	old := appendFrame(nil, testSalt, 7, new(uint64(9)), mustVals(t, es))
	for i := range old {
		old[i] = 0xff
	}
	for _, trunc := range []*uint64{nil, new(uint64(2))} {
		want := encodeFrame(testSalt, 8, trunc, mustVals(t, es[:2]))
		got := appendFrame(old, testSalt, 8, trunc, mustVals(t, es[:2]))
		if !bytes.Equal(got, want) {
			t.Fatalf("trunc %v: reused memory gives\n%x\nwant\n%x", trunc, got, want)
		}
		if &got[0] != &old[0] {
			t.Fatal("the frame did not reuse the memory it was given")
		}
	}
}
