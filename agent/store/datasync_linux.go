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
