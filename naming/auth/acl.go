package auth

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"unicode"

	"github.com/mastership/mastership/naming/api"
)

// Capability is one right a token grants.
type Capability string

// Capabilities.
const (
	Agent    Capability = "agent"
	Client   Capability = "client"
	Operator Capability = "operator"
	Read     Capability = "read"
)

// Discovery is what finding a group's master needs (a naming node's lookup
// and status, an agent's info and members): read, or client, since a kv
// client finds the master before it reads or writes.
func Discovery() []Capability { return []Capability{Read, Client} }

// Capabilities lists every capability, in the order help text gives them.
func Capabilities() []Capability { return []Capability{Agent, Client, Operator, Read} }

// Errors of Check, carried in replies as the codes unauthorized (HTTP 401)
// and forbidden (HTTP 403).
var (
	// ErrNoToken: the request carries no token.
	ErrNoToken = errors.New("auth: no token")
	// ErrBadToken: the token is not in the ACL.
	ErrBadToken = errors.New("auth: unknown token")
	// ErrForbidden: the token lacks the capability the call needs.
	ErrForbidden = errors.New("auth: capability missing")
)

// MinSecretBytes is the shortest secret an ACL file may hold.
const MinSecretBytes = 16

// maxACLBytes bounds an ACL file.
const maxACLBytes = 1 << 20

// ACL maps tokens to capabilities. A nil *ACL is open: every call is
// allowed. It is immutable once loaded and safe for concurrent use.
type ACL struct {
	tokens []token
}

type token struct {
	name string
	sum  [sha256.Size]byte
	caps []Capability
}

// aclFile is the JSON form of an ACL.
type aclFile struct {
	Tokens []struct {
		Name         string       `json:"name"`
		Secret       string       `json:"secret"`
		Capabilities []Capability `json:"capabilities"`
	} `json:"tokens"`
}

// LoadACL reads an ACL file. Every problem (a bad capability, a short or
// repeated secret, a repeated name, unknown keys, trailing data) is an
// error that names the token but never shows a secret.
func LoadACL(path string) (*ACL, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("auth: acl: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxACLBytes+1))
	if err != nil {
		return nil, fmt.Errorf("auth: acl %s: %w", path, err)
	}
	if len(b) > maxACLBytes {
		return nil, fmt.Errorf("auth: acl %s: over %d bytes", path, maxACLBytes)
	}
	acl, err := ParseACL(b)
	if err != nil {
		return nil, fmt.Errorf("auth: acl %s: %w", path, err)
	}
	return acl, nil
}

// ParseACL parses the JSON form of an ACL.
func ParseACL(b []byte) (*ACL, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var f aclFile
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("want {\"tokens\": [{\"name\", \"secret\", \"capabilities\"}]}: %v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("data after the JSON object")
	}
	if len(f.Tokens) == 0 {
		return nil, errors.New("no tokens: every call would be refused; leave -acl out for an open node")
	}
	acl := &ACL{}
	names := map[string]bool{}
	sums := map[[sha256.Size]byte]bool{}
	for i, t := range f.Tokens {
		who := fmt.Sprintf("token %d (%q)", i+1, t.Name)
		if t.Name == "" || len(t.Name) > 64 || strings.ContainsFunc(t.Name, func(r rune) bool { return r < ' ' || r == 0x7f }) {
			return nil, fmt.Errorf("%s: want a name of 1 to 64 printable characters", who)
		}
		if names[t.Name] {
			return nil, fmt.Errorf("%s: the name is used twice", who)
		}
		names[t.Name] = true
		if len(t.Secret) < MinSecretBytes {
			return nil, fmt.Errorf("%s: the secret has %d bytes, want at least %d", who, len(t.Secret), MinSecretBytes)
		}
		if strings.TrimSpace(t.Secret) != t.Secret || strings.ContainsFunc(t.Secret, unicode.IsControl) {
			// A bearer token is trimmed (BearerToken), and so is a token
			// file's line; no header carries a control character.
			return nil, fmt.Errorf("%s: the secret has white space at an end or a control character: no call could present it", who)
		}
		sum := sha256.Sum256([]byte(t.Secret))
		if sums[sum] {
			return nil, fmt.Errorf("%s: the secret is used by another token", who)
		}
		sums[sum] = true
		if len(t.Capabilities) == 0 {
			return nil, fmt.Errorf("%s: no capabilities", who)
		}
		for _, c := range t.Capabilities {
			if !slices.Contains(Capabilities(), c) {
				return nil, fmt.Errorf("%s: unknown capability %q: want agent, client, operator or read", who, c)
			}
		}
		acl.tokens = append(acl.tokens, token{name: t.Name, sum: sum, caps: slices.Clone(t.Capabilities)})
	}
	return acl, nil
}

// Open reports whether the ACL lets every call through (nil).
func (a *ACL) Open() bool { return a == nil }

// Check tells whether secret grants one of need, and names the token. The
// secret is compared to every token in constant time, whatever matches.
func (a *ACL) Check(secret string, need ...Capability) (string, error) {
	if a == nil {
		return "", nil
	}
	if secret == "" {
		return "", fmt.Errorf("%w: this call needs a token with the %s capability (-token, -token-file or MASTERSHIP_TOKEN)", ErrNoToken, anyOf(need))
	}
	sum := sha256.Sum256([]byte(secret))
	match := -1
	for i := range a.tokens {
		if subtle.ConstantTimeCompare(sum[:], a.tokens[i].sum[:]) == 1 {
			match = i
		}
	}
	if match < 0 {
		return "", fmt.Errorf("%w: the token is not in the ACL", ErrBadToken)
	}
	t := a.tokens[match]
	for _, c := range need {
		if slices.Contains(t.caps, c) {
			return t.name, nil
		}
	}
	return t.name, fmt.Errorf("%w: token %q lacks the %s capability", ErrForbidden, t.name, anyOf(need))
}

// anyOf names capabilities for an error: "read", "read or client".
func anyOf(caps []Capability) string {
	names := make([]string, len(caps))
	for i, c := range caps {
		names[i] = string(c)
	}
	return strings.Join(names, " or ")
}

// BearerToken returns the token of an Authorization: Bearer header.
func BearerToken(r *http.Request) string {
	h := r.Header.Get("Authorization")
	if len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
		return strings.TrimSpace(h[7:])
	}
	return ""
}

// ToAPIError gives a Check error its typed code.
func ToAPIError(err error) *api.Error {
	switch {
	case errors.Is(err, ErrForbidden):
		return &api.Error{Code: api.CodeForbidden, Message: err.Error()}
	case errors.Is(err, ErrNoToken), errors.Is(err, ErrBadToken):
		return &api.Error{Code: api.CodeUnauthorized, Message: err.Error()}
	}
	return api.ToError(err)
}
