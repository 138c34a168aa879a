package api

import (
	"errors"
	"fmt"
	"net"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// Epoch is the fencing token of a mastership: the pair (term, master ID),
// ordered by term then ID. Two sides of a partition that elect at the same
// term still hold different epochs because their masters differ. The zero
// Epoch is older than every real one.
type Epoch struct {
	Term uint64 `json:"term" codec:"t"`
	ID   uint64 `json:"id" codec:"i"`
}

// Less reports whether e is older than o.
func (e Epoch) Less(o Epoch) bool {
	if e.Term != o.Term {
		return e.Term < o.Term
	}
	return e.ID < o.ID
}

// Compare returns -1, 0 or +1 as e is older than, equal to or newer than o.
func (e Epoch) Compare(o Epoch) int {
	switch {
	case e.Less(o):
		return -1
	case o.Less(e):
		return 1
	}
	return 0
}

// IsZero reports whether e is the zero epoch (no mastership yet).
func (e Epoch) IsZero() bool { return e.Term == 0 && e.ID == 0 }

// Max returns the newer of e and o.
func (e Epoch) Max(o Epoch) Epoch {
	if e.Less(o) {
		return o
	}
	return e
}

// String renders the epoch as "term.id", for example "3.4".
func (e Epoch) String() string { return fmt.Sprintf("%d.%d", e.Term, e.ID) }

// MaxTermLead bounds how far above the highest term a receiver knows an
// epoch it takes in may be: 2^20 elections. An epoch beyond it (a forged
// 2^64-1, a corrupted counter) is refused with ErrEpochRange and never
// adopted, so no input can exhaust the term space or fence a group for
// good, and term arithmetic never overflows.
const MaxTermLead = 1 << 20

// ErrEpochRange is wrapped by every refusal of an epoch beyond MaxTermLead
// above the receiver's highest known term.
var ErrEpochRange = errors.New("epoch out of range")

// CheckTerm refuses a term more than MaxTermLead above known.
func CheckTerm(term, known uint64) error {
	if term > known && term-known > MaxTermLead {
		return fmt.Errorf("%w: term %d is more than %d above the highest known term %d", ErrEpochRange, term, MaxTermLead, known)
	}
	return nil
}

// MaxLearnedTerm is the highest term an agent learns from its naming node,
// the one source it takes far-off terms from (a new agent of an old group):
// the last MaxTermLead terms of the space are refused even there, so that
// a forged reply cannot leave an agent with no term to campaign at.
const MaxLearnedTerm = ^uint64(0) - MaxTermLead

// CheckLearnedTerm refuses a term above MaxLearnedTerm.
func CheckLearnedTerm(term uint64) error {
	if term > MaxLearnedTerm {
		return fmt.Errorf("%w: term %d is within %d of the end of the term space", ErrEpochRange, term, MaxTermLead)
	}
	return nil
}

// NextTerm returns the term after t, or false when t is the last one.
func NextTerm(t uint64) (uint64, bool) {
	if t == ^uint64(0) {
		return 0, false
	}
	return t + 1, true
}

// Role is what an agent is doing for its group.
type Role uint8

// Roles. The zero value is RoleUnknown so a missing field is never taken for
// a real role.
const (
	RoleUnknown Role = iota
	RoleBackup
	RoleCandidate
	RoleMaster
	RoleRecovering
	RoleQuarantined
	RoleSyncing
)

var roleNames = [...]string{"unknown", "backup", "candidate", "master", "recovering", "quarantined", "syncing"}

// String returns the role's lower-case name as used in JSON output.
func (r Role) String() string {
	if int(r) < len(roleNames) {
		return roleNames[r]
	}
	return "role(" + strconv.Itoa(int(r)) + ")"
}

// ParseRole is the inverse of Role.String.
func ParseRole(s string) (Role, error) {
	for i, n := range roleNames {
		if n == s {
			return Role(i), nil
		}
	}
	return RoleUnknown, fmt.Errorf("api: unknown role %q", s)
}

// Mode is a group's consistency mode. strict: a candidate needs the votes
// of a majority of the group's fixed size (-expect); a master serves writes
// only while its registration holds and acknowledges a write only once a
// majority applied it; back-ups refuse older epochs; a minority side
// cannot elect; no acknowledged write is lost and histories are
// linearizable. available (the patent's own setting): each side of a
// partition may elect and serve; after the heal the naming node keeps one
// master, the others recover, and their divergent writes are kept as
// records, never silently dropped.
type Mode string

// Modes.
const (
	ModeAvailable Mode = "available"
	ModeStrict    Mode = "strict"
)

// ParseMode validates a mode name; the empty string is ModeAvailable.
func ParseMode(s string) (Mode, error) {
	switch Mode(s) {
	case "", ModeAvailable:
		return ModeAvailable, nil
	case ModeStrict:
		return ModeStrict, nil
	}
	return "", fmt.Errorf("api: mode %q: want %q or %q", s, ModeStrict, ModeAvailable)
}

// Policy is a group's retention policy at the naming node (patent figure 12,
// act 1220): which registration is kept when several are live.
type Policy string

// Policies.
const (
	// PolicyLowestID keeps the registration with the lowest agent ID, as in
	// the patent.
	PolicyLowestID Policy = "lowest-id"
	// PolicyPriority keeps the highest priority, then the lowest ID.
	PolicyPriority Policy = "priority"
)

// ParsePolicy validates a policy name; the empty string is PolicyLowestID.
func ParsePolicy(s string) (Policy, error) {
	switch Policy(s) {
	case "", PolicyLowestID:
		return PolicyLowestID, nil
	case PolicyPriority:
		return PolicyPriority, nil
	}
	return "", fmt.Errorf("api: policy %q: want %q or %q", s, PolicyLowestID, PolicyPriority)
}

// Limits on names and messages, documented in README.md.
const (
	// MaxGroupLen is the longest group name.
	MaxGroupLen = 63
	// MaxAddrLen is the longest address accepted in any message.
	MaxAddrLen = 255
	// MaxMessageBytes caps every RPC and HTTP request body.
	MaxMessageBytes = 1 << 20
)

var groupRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,62}$`)

// ErrInvalid is wrapped by every validation error.
var ErrInvalid = errors.New("invalid")

// ValidateGroup checks a group name against [a-z0-9][a-z0-9._-]{0,62}.
func ValidateGroup(g string) error {
	if !groupRE.MatchString(g) {
		return fmt.Errorf("%w group %q: want 1 to 63 of [a-z0-9._-], starting with [a-z0-9]", ErrInvalid, g)
	}
	return nil
}

// ValidateID checks an agent ID: any uint64 but 0.
func ValidateID(id uint64) error {
	if id == 0 {
		return fmt.Errorf("%w id 0: agent IDs start at 1", ErrInvalid)
	}
	return nil
}

// ValidateAddr checks a "host:port" address with a numeric or named host and
// a port from 1 to 65535.
func ValidateAddr(field, addr string) error {
	if addr == "" {
		return fmt.Errorf("%w %s: empty address, want host:port", ErrInvalid, field)
	}
	if len(addr) > MaxAddrLen {
		return fmt.Errorf("%w %s: address of %d bytes, limit %d", ErrInvalid, field, len(addr), MaxAddrLen)
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%w %s %q: %v", ErrInvalid, field, addr, err)
	}
	if host == "" {
		return fmt.Errorf("%w %s %q: no host", ErrInvalid, field, addr)
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 1 || p > 65535 {
		return fmt.Errorf("%w %s %q: port %q is not in 1..65535", ErrInvalid, field, addr, port)
	}
	for _, c := range host {
		if c <= ' ' || c == '/' || c == '?' || c == '#' || c == '@' {
			return fmt.Errorf("%w %s %q: host has %q", ErrInvalid, field, addr, c)
		}
	}
	return nil
}

// MaxNamingNodes bounds the naming nodes a list names.
const MaxNamingNodes = 9

// ParseAddrList splits a comma-separated list of addresses (the naming
// nodes of a cluster) and checks each: not empty, no duplicates, at most
// MaxNamingNodes.
func ParseAddrList(field, list string) ([]string, error) {
	var out []string
	for _, a := range strings.Split(list, ",") {
		a = strings.TrimSpace(a)
		if err := ValidateAddr(field, a); err != nil {
			return nil, err
		}
		if slices.Contains(out, a) {
			return nil, fmt.Errorf("%w %s: %s listed twice", ErrInvalid, field, a)
		}
		out = append(out, a)
	}
	if len(out) > MaxNamingNodes {
		return nil, fmt.Errorf("%w %s: %d addresses, want at most %d", ErrInvalid, field, len(out), MaxNamingNodes)
	}
	return out, nil
}
