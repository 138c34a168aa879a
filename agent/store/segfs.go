package store

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sync"
)

// segFS is where the log's segment files live: a directory for Bolt, memory
// for Memory. The log's logic is written once over it.
type segFS interface {
	// list returns the names of the files there, in any order.
	list() ([]string, error)
	// create makes a new file of size bytes, all zero, under name; the file and
	// its name are durable when create returns.
	create(name string, size int64) (segFile, error)
	// open opens an existing file for reading and writing.
	open(name string) (segFile, error)
	// remove deletes the files, then makes their removal durable.
	remove(names ...string) error
	// path names a file in errors.
	path(name string) string
}

// segFile is one segment file.
type segFile interface {
	io.ReaderAt
	io.WriterAt
	// sync makes every write so far durable.
	sync() error
	// size is the file's length.
	size() (int64, error)
	close() error
}

// dirFS keeps segment files in a directory.
type dirFS struct{ dir string }

func (d dirFS) list() ([]string, error) {
	des, err := os.ReadDir(d.dir)
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(des))
	for _, de := range des {
		if de.Type().IsRegular() {
			names = append(names, de.Name())
		}
	}
	return names, nil
}

// create writes the file under a temporary name, sizes and syncs it, then
// renames it and syncs the directory: a crash leaves either no segment or
// a whole one.
func (d dirFS) create(name string, size int64) (segFile, error) {
	tmp := filepath.Join(d.dir, name+tmpSuffix)
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, err
	}
	err = preallocate(f, size)
	if err == nil {
		err = f.Sync()
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(d.dir, name))
	}
	if err == nil {
		err = syncDir(d.dir)
	}
	if err != nil {
		f.Close()
		os.Remove(tmp)
		return nil, err
	}
	return osFile{f}, nil
}

func (d dirFS) open(name string) (segFile, error) {
	f, err := os.OpenFile(filepath.Join(d.dir, name), os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	return osFile{f}, nil
}

func (d dirFS) remove(names ...string) error {
	if len(names) == 0 {
		return nil
	}
	for _, n := range names {
		if err := os.Remove(filepath.Join(d.dir, n)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	return syncDir(d.dir)
}

func (d dirFS) path(name string) string { return filepath.Join(d.dir, name) }

type osFile struct{ f *os.File }

func (o osFile) ReadAt(p []byte, off int64) (int, error)  { return o.f.ReadAt(p, off) }
func (o osFile) WriteAt(p []byte, off int64) (int, error) { return o.f.WriteAt(p, off) }
func (o osFile) sync() error                              { return datasync(o.f) }
func (o osFile) close() error                             { return o.f.Close() }

func (o osFile) size() (int64, error) {
	fi, err := o.f.Stat()
	if err != nil {
		return 0, err
	}
	return fi.Size(), nil
}

// memFS keeps segment files in memory. Every write is durable at once. It is
// safe for concurrent use, though the log makes its calls one at a time.
type memFS struct {
	mu    sync.Mutex
	files map[string]*memFile
}

func newMemFS() *memFS { return &memFS{files: map[string]*memFile{}} }

// memFile is a file made with made bytes, of which the chunks hold the
// ones written so far, memChunk bytes each; the rest read as zeros, as a
// new file's do. Fixed chunks keep a write from copying what the file
// already holds (a growing slice copies it at every doubling).
type memFile struct {
	mu     sync.Mutex
	made   int64
	end    int64 // one past the last byte written
	chunks [][]byte
}

// memChunk is the size of a memFile chunk.
const memChunk = 1 << 20

func (m *memFS) list() ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	names := make([]string, 0, len(m.files))
	for n := range m.files {
		names = append(names, n)
	}
	slices.Sort(names)
	return names, nil
}

func (m *memFS) create(name string, size int64) (segFile, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.files[name]; ok {
		return nil, fmt.Errorf("create %s: %w", name, os.ErrExist)
	}
	f := &memFile{made: size}
	m.files[name] = f
	return f, nil
}

func (m *memFS) open(name string) (segFile, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	f, ok := m.files[name]
	if !ok {
		return nil, fmt.Errorf("open %s: %w", name, os.ErrNotExist)
	}
	return f, nil
}

func (m *memFS) path(name string) string { return name }

func (m *memFS) remove(names ...string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, n := range names {
		delete(m.files, n)
	}
	return nil
}

func (f *memFile) ReadAt(p []byte, off int64) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	size := max(f.made, f.end)
	if off < 0 || off > size {
		return 0, io.EOF
	}
	n := int(min(int64(len(p)), size-off))
	for done := 0; done < n; {
		at := off + int64(done)
		c, in := at/memChunk, at%memChunk
		span := min(n-done, int(memChunk-in))
		if c < int64(len(f.chunks)) && f.chunks[c] != nil {
			copy(p[done:done+span], f.chunks[c][in:])
		} else {
			clear(p[done : done+span])
		}
		done += span
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (f *memFile) WriteAt(p []byte, off int64) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if off < 0 {
		return 0, errors.New("negative offset")
	}
	for done := 0; done < len(p); {
		at := off + int64(done)
		c, in := at/memChunk, at%memChunk
		for int64(len(f.chunks)) <= c {
			f.chunks = append(f.chunks, nil)
		}
		if f.chunks[c] == nil {
			f.chunks[c] = make([]byte, memChunk)
		}
		done += copy(f.chunks[c][in:], p[done:])
	}
	f.end = max(f.end, off+int64(len(p)))
	return len(p), nil
}

func (f *memFile) sync() error  { return nil }
func (f *memFile) close() error { return nil }

func (f *memFile) size() (int64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return max(f.made, f.end), nil
}
