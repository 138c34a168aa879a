package config

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/mastership/mastership/naming/api"
)

// Sentinel errors. Every error this package returns wraps one of them, so a
// caller can tell a bad setting (exit code 2, print usage) from an I/O error
// while reading a config file.
var (
	// ErrInvalid is wrapped by every error of Validate: a value outside its
	// limits or a broken rule between two fields.
	ErrInvalid = errors.New("config: invalid")
	// ErrUnknownProfile is returned for a profile other than local, lan, wan.
	ErrUnknownProfile = errors.New("config: unknown profile")
	// ErrUnknownKey is returned for a config file key that names no field;
	// a typo must not silently leave a default in place.
	ErrUnknownKey = errors.New("config: unknown key")
	// ErrBadValue is returned when a file, environment variable or flag
	// holds a value that does not parse as its field's type.
	ErrBadValue = errors.New("config: bad value")
)

// FieldError is one problem Validate found. Validate joins all of them with
// errors.Join, so an operator fixes a config file in one pass.
type FieldError struct {
	// Field is the flag name of the field (e.g. "session-ttl"), the one name
	// an operator sees in the file key, env var and flag alike.
	Field string
	// Value is the rejected value as the operator would write it.
	Value string
	// Reason says which limit or rule the value breaks.
	Reason string
	// Err is an underlying error (from naming/api), or nil.
	Err error
}

// Error reads "config: invalid session-ttl 50ms: want 100ms to 10m".
func (e *FieldError) Error() string {
	if e.Reason == "" && errors.Is(e.Err, api.ErrInvalid) {
		// naming/api already wrote "invalid <field> <value>: <reason>".
		return "config: " + e.Err.Error()
	}
	var b strings.Builder
	b.WriteString("config: invalid ")
	b.WriteString(e.Field)
	if e.Value != "" {
		b.WriteString(" ")
		b.WriteString(strconv.Quote(e.Value))
	}
	if e.Reason != "" {
		b.WriteString(": ")
		b.WriteString(e.Reason)
	}
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

// Unwrap lets errors.Is find ErrInvalid and the underlying error.
func (e *FieldError) Unwrap() []error {
	if e.Err != nil {
		return []error{ErrInvalid, e.Err}
	}
	return []error{ErrInvalid}
}

// problems gathers FieldErrors for errors.Join.
type problems []error

func (p *problems) add(field, value, format string, args ...any) {
	*p = append(*p, &FieldError{Field: field, Value: value, Reason: fmt.Sprintf(format, args...)})
}

func (p *problems) wrap(field, value string, err error) {
	if err != nil {
		*p = append(*p, &FieldError{Field: field, Value: value, Err: err})
	}
}

// durRange reports d outside lo..hi and says whether it was inside, so
// that a rule between two fields runs only on sane inputs: one bad value
// gives one error, not a cascade.
func (p *problems) durRange(field string, d, lo, hi time.Duration) bool {
	if d < lo || d > hi {
		p.add(field, fmtDur(d), "want %s to %s", fmtDur(lo), fmtDur(hi))
		return false
	}
	return true
}

// intRange is durRange for integers.
func (p *problems) intRange(field string, v, lo, hi int) bool {
	if v < lo || v > hi {
		p.add(field, strconv.Itoa(v), "want %d to %d", lo, hi)
		return false
	}
	return true
}

func (p *problems) err() error { return errors.Join(*p...) }

// fmtDur prints a duration the way an operator writes it: "10m", not
// "10m0s", so that messages and the key table read like the input.
func fmtDur(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// checkSecurity checks the rules between the trust settings of a process;
// the files themselves are read when it starts. A token is never echoed.
func checkSecurity(p *problems, token, tokenFile, ca, cert, key string) {
	if token != "" && tokenFile != "" {
		p.add("token-file", tokenFile, "give token or token-file, not both")
	}
	if (ca != "" || cert != "" || key != "") && (ca == "" || cert == "" || key == "") {
		p.add("tls-ca", ca, "give tls-ca, tls-cert and tls-key together, or none")
	}
}
