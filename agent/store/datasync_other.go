//go:build !linux

package store

import "os"

// datasync flushes f (fsync where fdatasync is not available).
func datasync(f *os.File) error { return f.Sync() }

// preallocate sizes f.
func preallocate(f *os.File, size int64) error { return f.Truncate(size) }
