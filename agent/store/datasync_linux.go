package store

import (
	"os"
	"syscall"
)

// datasync flushes f's data and what is needed to read it back (fdatasync):
// a segment's size never changes after it is created, so its metadata need
// not be written again.
func datasync(f *os.File) error {
	for {
		err := syscall.Fdatasync(int(f.Fd()))
		if err != syscall.EINTR {
			return err
		}
	}
}

// preallocate gives f its size with its blocks allocated, so that writes
// into it change no metadata a later fdatasync must write; where the file
// system cannot, the file is only sized.
func preallocate(f *os.File, size int64) error {
	if size == 0 {
		return nil
	}
	for {
		err := syscall.Fallocate(int(f.Fd()), 0, 0, size)
		switch err {
		case nil:
			return nil
		case syscall.EINTR:
			continue
		case syscall.EOPNOTSUPP, syscall.ENOSYS:
			return f.Truncate(size)
		}
		return err
	}
}
