package api

import (
	"errors"
	"fmt"
	"io"
	"syscall"
	"testing"
)

// A listener that closes, resets or answers something else speaks no
// HTTP; one that refuses the connection is only down.
func TestSpeaksNoHTTP(t *testing.T) {
	for _, c := range []struct {
		err  error
		want bool
	}{
		{fmt.Errorf("post: %w", io.EOF), true},
		{fmt.Errorf("read: %w", io.ErrUnexpectedEOF), true},
		{fmt.Errorf("read: %w", syscall.ECONNRESET), true},
		{errors.New(`net/http: HTTP/1.x transport connection broken: malformed HTTP response "\x00\x01"`), true},
		{fmt.Errorf("dial: %w", syscall.ECONNREFUSED), false},
		{errors.New("context deadline exceeded"), false},
	} {
		if got := SpeaksNoHTTP(c.err); got != c.want {
			t.Errorf("SpeaksNoHTTP(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}
