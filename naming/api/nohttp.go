package api

import (
	"errors"
	"io"
	"strings"
	"syscall"
)

// SpeaksNoHTTP tells an HTTP call that reached a listener which then
// answered no HTTP (it closed, reset, or wrote something else): a gossip
// port, say, given where an API address was meant. The clients of the
// naming node and of the agents say so, naming the address to give.
func SpeaksNoHTTP(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) ||
		strings.Contains(err.Error(), "malformed HTTP response")
}
