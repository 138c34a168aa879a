package api

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"time"
)

// Registration is a master's entry at the naming node.
type Registration struct {
	Group    string `json:"group" codec:"g"`
	ID       uint64 `json:"id" codec:"i"`
	Addr     string `json:"addr" codec:"a"`
	Epoch    Epoch  `json:"epoch" codec:"e"`
	Priority int    `json:"priority" codec:"p"`
	// TTL is the registration's lifetime from its last renewal.
	TTL time.Duration `json:"ttl" codec:"t"`
	// Manual marks a registration made by hand (`mastership register`, the
	// operator capability) rather than by the agent itself.
	Manual bool `json:"manual,omitempty" codec:"h"`
}

// Member is one agent of a group as the naming node knows it.
type Member struct {
	ID       uint64 `json:"id" codec:"i"`
	Addr     string `json:"addr" codec:"a"`
	Priority int    `json:"priority" codec:"p"`
}

// JoinRequest makes an agent a member of a group and opens its session.
// Addr is the agent's API address, where triggers are delivered.
type JoinRequest struct {
	Group    string        `codec:"g"`
	ID       uint64        `codec:"i"`
	Addr     string        `codec:"a"`
	Priority int           `codec:"p"`
	Mode     string        `codec:"m"`
	Policy   string        `codec:"o"`
	TTL      time.Duration `codec:"t"`
	// Proof is random bytes the agent drew for this join (at most
	// MaxJoinProof); the agent serves their JoinProofOf in its /v1/info.
	// A join that would replace a live session of the same ID and address
	// is taken only once the agent at that address shows that hash, so
	// nobody can take a running agent's session by naming its address.
	Proof []byte `codec:"pf,omitempty"`
}

// MaxJoinProof bounds JoinRequest.Proof.
const MaxJoinProof = 64

// JoinProofOf is what an agent that joined with proof serves as its join
// proof: the hex SHA-256 of proof ("" for none).
func JoinProofOf(proof []byte) string {
	if len(proof) == 0 {
		return ""
	}
	sum := sha256.Sum256(proof)
	return hex.EncodeToString(sum[:])
}

// JoinResponse carries the new session and the group's registered master.
type JoinResponse struct {
	Session uint64        `codec:"s"`
	TTL     time.Duration `codec:"t"`
	Master  *Registration `codec:"m"`
	// Paused: the group is in maintenance (PauseRequest).
	Paused bool `codec:"pz,omitempty"`
}

// RenewRequest extends a member session.
type RenewRequest struct {
	Group   string `codec:"g"`
	ID      uint64 `codec:"i"`
	Session uint64 `codec:"s"`
}

// RenewResponse carries the group's registered master so that every renewal
// is also a cheap check of the registration.
type RenewResponse struct {
	TTL    time.Duration `codec:"t"`
	Master *Registration `codec:"m"`
	Paused bool          `codec:"pz,omitempty"`
}

// PauseRequest puts a group in maintenance (Paused) or takes it out: while
// paused, no automatic election, handover or recovery changes a role
// (the self-monitors still detect and report). Operators only.
type PauseRequest struct {
	Group  string `codec:"g"`
	Paused bool   `codec:"pz"`
	Reason string `codec:"r"`
}

// MaxReasonBytes bounds the reason an operator gives a pause.
const MaxReasonBytes = 1024

// PauseResponse says whether the request changed anything.
type PauseResponse struct {
	Paused  bool `codec:"pz"`
	Changed bool `codec:"c"`
}

// LeaveRequest ends a member session at once.
type LeaveRequest struct {
	Group   string `codec:"g"`
	ID      uint64 `codec:"i"`
	Session uint64 `codec:"s"`
}

// RegisterRequest registers (or renews) a master. A registration is bound
// to a live member of the group at that member's own API address (Addr):
// an agent's carries its member session (Session, a secret that no reply
// returns); a registration by hand sets Manual instead (the operator
// capability) and is probed before it counts. An Epoch with Term 0 asks the
// node to assign the next term of the group, for registrations by hand.
type RegisterRequest struct {
	Group    string        `codec:"g"`
	ID       uint64        `codec:"i"`
	Addr     string        `codec:"a"`
	Epoch    Epoch         `codec:"e"`
	Priority int           `codec:"p"`
	Session  uint64        `codec:"s"`
	TTL      time.Duration `codec:"t"`
	Mode     string        `codec:"m"`
	Policy   string        `codec:"o"`
	Manual   bool          `codec:"h"`
}

// RegisterResponse says whether the registrant is the retained master, and
// which registration the node keeps.
type RegisterResponse struct {
	// Accepted is true when Master is the registrant.
	Accepted bool `codec:"a"`
	// Master is the retained registration after this request.
	Master Registration `codec:"m"`
	// Conflict is true when the request took part in a multiple-registration
	// decision; Removed lists the registrations that decision removed.
	Conflict bool     `codec:"c"`
	Removed  []uint64 `codec:"r"`
}

// ReadMode says which naming node answers a read, and how fresh the answer
// is.
type ReadMode string

// Read modes.
const (
	// ReadDefault: the leader answers from its live state, which shows a
	// change from the moment the leader takes it (a change whose commit
	// then fails, because the leader lost office, was shown).
	ReadDefault ReadMode = ""
	// ReadConsistent: the leader first confirms with a quorum that it
	// leads and that every change before the read is committed, then
	// answers from the committed state: linearizable.
	ReadConsistent ReadMode = "consistent"
	// ReadStale: any node answers from the state it applied, however far
	// behind; the answer says so (Stale, LastContactMS).
	ReadStale ReadMode = "stale"
)

// ParseReadMode checks a read mode.
func ParseReadMode(s string) (ReadMode, error) {
	switch m := ReadMode(s); m {
	case ReadDefault, ReadConsistent, ReadStale:
		return m, nil
	}
	return "", fmt.Errorf("%w: read mode %q: want consistent, stale or none", ErrInvalid, s)
}

// ReadMeta says how a read was served.
type ReadMeta struct {
	// Stale is set when a node answered from the state it applied,
	// without asking the leader.
	Stale bool `json:"stale,omitempty" codec:"st"`
	// LastContactMS is, for a stale answer of a follower, how long ago it
	// last heard from the leader (-1: never since it started).
	LastContactMS int64 `json:"last_contact_ms,omitempty" codec:"lc"`
}

// LookupRequest asks for a group's registered master.
type LookupRequest struct {
	Group string   `codec:"g"`
	Read  ReadMode `codec:"rd"`
}

// LookupResponse is the group's retained master, or nil when none is live.
type LookupResponse struct {
	Master *Registration `codec:"m"`
	Policy Policy        `codec:"p"`
	Mode   Mode          `codec:"o"`
	Paused bool          `codec:"pz,omitempty"`
	ReadMeta
}

// StatusRequest asks for one group (Group set), or for a page of every
// group sorted by name: the groups after After, at most Limit of them (0
// means DefaultStatusPage; more than MaxStatusPage is cut to it).
type StatusRequest struct {
	Group string   `codec:"g"`
	After string   `codec:"a"`
	Limit int      `codec:"l"`
	Read  ReadMode `codec:"rd"`
	// Index and Wait make a blocking read of one group (Consul style):
	// the answer comes once the group's index passes Index, or after Wait
	// (at most MaxWait) with nothing new. The reply's Index is the
	// group's: the sequence of its newest event.
	Index uint64        `codec:"ix,omitempty"`
	Wait  time.Duration `codec:"w,omitempty"`
}

// MaxWait bounds the wait of a blocking read; DefaultWait is the wait of
// one that gives an index and no wait.
const (
	MaxWait     = time.Minute
	DefaultWait = 30 * time.Second
)

// IndexHeader carries the index of a blocking read's reply (the naming
// node's GET /v1/groups/{group}, the agent's GET /v1/info).
const IndexHeader = "X-Mastership-Index"

// ParseBlocking reads the ?index=N&wait=D of a blocking read: it answers
// once the index passes N, or after D (DefaultWait when only an index is
// given, at most MaxWait; wait=0 answers at once).
func ParseBlocking(q url.Values) (index uint64, wait time.Duration, err error) {
	if s := q.Get("index"); s != "" {
		if index, err = strconv.ParseUint(s, 10, 64); err != nil {
			return 0, 0, Errorf(CodeInvalid, "index %q: want a count", s)
		}
	}
	if s := q.Get("wait"); s != "" {
		if wait, err = time.ParseDuration(s); err != nil || wait < 0 {
			return 0, 0, Errorf(CodeInvalid, "wait %q: want a duration such as 30s", s)
		}
		if wait > MaxWait {
			return 0, 0, Errorf(CodeInvalid, "wait %s: at most %s", wait, MaxWait)
		}
		if wait == 0 {
			wait = time.Millisecond // wait=0: answer at once
		}
	}
	return index, wait, nil
}

// Pages of status without a group.
const (
	DefaultStatusPage = 100
	MaxStatusPage     = 1000
)

// GroupStatus is the shape of `mastership status -json` for one group.
type GroupStatus struct {
	Group   string        `json:"group" codec:"g"`
	Policy  Policy        `json:"policy" codec:"p"`
	Mode    Mode          `json:"mode" codec:"o"`
	Master  *MasterStatus `json:"master" codec:"m"`
	Members []Member      `json:"members" codec:"s"`
	// Paused: in maintenance (mastership pause).
	Paused bool `json:"paused" codec:"pz"`
}

// MasterStatus is the registered master in status output.
type MasterStatus struct {
	ID   uint64 `json:"id" codec:"i"`
	Addr string `json:"addr" codec:"a"`
	// Epoch and EpochID are the registration's epoch, TERM.ID; in JSON
	// one {"term", "id"}, as every epoch (MarshalJSON).
	Epoch   uint64 `json:"epoch" codec:"e"`
	EpochID uint64 `json:"-" codec:"ei,omitempty"`
}

// masterStatusJSON is MasterStatus's JSON shape.
type masterStatusJSON struct {
	ID    uint64 `json:"id"`
	Addr  string `json:"addr"`
	Epoch Epoch  `json:"epoch"`
}

// MarshalJSON gives the epoch as {"term", "id"}.
func (m MasterStatus) MarshalJSON() ([]byte, error) {
	return json.Marshal(masterStatusJSON{ID: m.ID, Addr: m.Addr, Epoch: Epoch{Term: m.Epoch, ID: m.EpochID}})
}

// UnmarshalJSON reads what MarshalJSON writes.
func (m *MasterStatus) UnmarshalJSON(b []byte) error {
	var j masterStatusJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	*m = MasterStatus{ID: j.ID, Addr: j.Addr, Epoch: j.Epoch.Term, EpochID: j.Epoch.ID}
	return nil
}

// StatusResponse lists groups sorted by name. For a page of every group,
// Next is the After of the following page and More tells whether there is
// one.
type StatusResponse struct {
	Groups []GroupStatus `codec:"g"`
	Next   string        `codec:"n"`
	More   bool          `codec:"m"`
	// Index is the group's index, for a status of one group (see
	// StatusRequest.Index).
	Index uint64 `codec:"ix,omitempty"`
	ReadMeta
}

// RecheckRequest asks the node to re-check a group and trigger its members,
// for example after an agent saw a competing master claim over gossip.
type RecheckRequest struct {
	Group  string `codec:"g"`
	From   uint64 `codec:"f"`
	Reason string `codec:"r"`
}

// RecheckResponse is the retained master after the re-check.
type RecheckResponse struct {
	Master *Registration `codec:"m"`
}

// EventsRequest pages through a group's history: events with Seq > After,
// at most Limit of them (0 means the node's default page).
type EventsRequest struct {
	Group string   `codec:"g"`
	After uint64   `codec:"a"`
	Limit int      `codec:"l"`
	Read  ReadMode `codec:"rd"`
}

// EventsResponse is one page; Next is the After for the following page, and
// More tells whether there is one.
type EventsResponse struct {
	Events []Event `codec:"e"`
	Next   uint64  `codec:"n"`
	More   bool    `codec:"m"`
	ReadMeta
}

// Event kinds recorded by the naming node.
const (
	EventMemberJoined        = "member-joined"
	EventMemberLeft          = "member-left"
	EventMemberExpired       = "member-expired"
	EventMasterRegistered    = "master-registered"
	EventMasterExpired       = "master-expired"
	EventMasterSuperseded    = "master-superseded"
	EventConflictDetected    = "conflict-detected"
	EventConflictResolved    = "conflict-resolved"
	EventRegistrationRefused = "registration-refused"
	EventRecheck             = "recheck"
	EventGroupPaused         = "group-paused"
	EventGroupResumed        = "group-resumed"
	EventTriggerSent         = "trigger-sent"
	EventTriggerFailed       = "trigger-failed"
	EventNodeRestarted       = "node-restarted"
	// EventEpochReset: an operator's register -epoch set a strict group's epoch
	// below the one it held (a repair of a fenced group).
	EventEpochReset = "epoch-reset"
)

// Event is one entry of a group's history, the shape of `mastership events
// -json`. Fields that do not apply to a kind are left out.
type Event struct {
	Seq        uint64    `json:"seq" codec:"q"`
	Time       time.Time `json:"time" codec:"t"`
	Kind       string    `json:"kind" codec:"k"`
	ID         uint64    `json:"id,omitempty" codec:"i"`
	Addr       string    `json:"addr,omitempty" codec:"a"`
	Epoch      *Epoch    `json:"epoch,omitempty" codec:"e"`
	Policy     Policy    `json:"policy,omitempty" codec:"p"`
	Candidates []uint64  `json:"candidates,omitempty" codec:"c"`
	Retained   uint64    `json:"retained,omitempty" codec:"r"`
	Removed    []uint64  `json:"removed,omitempty" codec:"x"`
	Target     uint64    `json:"target,omitempty" codec:"g"`
	Attempt    int       `json:"attempt,omitempty" codec:"n"`
	Reason     string    `json:"reason,omitempty" codec:"s"`
	Error      string    `json:"error,omitempty" codec:"z"`
	// Manual marks a registration made by hand.
	Manual bool `json:"manual,omitempty" codec:"h"`
}

// Notify is the trigger the naming node delivers to every member of a group
// (patent figure 12, act 1240): the retained master and why.
type Notify struct {
	Group  string        `codec:"g"`
	Master *Registration `codec:"m"`
	Reason string        `codec:"r"`
	// Paused: the group is in maintenance.
	Paused bool `codec:"pz,omitempty"`
	// Seq is the event sequence of the decision, so a member can ignore a
	// trigger it already acted on.
	Seq uint64 `codec:"q"`
}

// HealthResponse is the answer of /v1/health: the node's state, its role
// in the naming cluster and the leader it knows ("" when none).
type HealthResponse struct {
	Status string `json:"status" codec:"s"`
	Groups int    `json:"groups" codec:"g"`
	Role   string `json:"role" codec:"r"`
	Leader string `json:"leader" codec:"l"`
}

// Peer is one voter of the naming cluster, as `mastership peers -json`
// prints it.
type Peer struct {
	Addr  string `json:"addr" codec:"a"`
	State string `json:"state" codec:"s"` // leader, follower, candidate, or unknown
	Voter bool   `json:"voter" codec:"v"`
	// LastContactMS is how long ago the leader last heard from the peer
	// (0 for the leader itself, -1 unknown).
	LastContactMS int64 `json:"last_contact_ms" codec:"c"`
}

// PeersResponse lists the voters.
type PeersResponse struct {
	Peers []Peer `codec:"p"`
}

// PeerRequest adds or removes a voter by its advertised address.
type PeerRequest struct {
	Addr string `codec:"a"`
}

// Code is a typed error code carried in RPC and HTTP error replies.
type Code string

// Error codes.
const (
	CodeInvalid        Code = "invalid"
	CodeNotFound       Code = "not-found"
	CodeRefused        Code = "refused"
	CodeSessionExpired Code = "session-expired"
	CodeIDTaken        Code = "id-taken"
	CodeMismatch       Code = "mismatch"
	CodeTooLarge       Code = "too-large"
	CodeUnavailable    Code = "unavailable"
	CodeInternal       Code = "internal"
	CodeEpochRange     Code = "epoch-out-of-range"
	CodeUnauthorized   Code = "unauthorized"
	CodeForbidden      Code = "forbidden"
)

// Sentinel errors, one per code, for errors.Is on replies.
var (
	ErrNotFound       = errors.New("not found")
	ErrRefused        = errors.New("refused")
	ErrSessionExpired = errors.New("session expired")
	ErrIDTaken        = errors.New("id taken")
	ErrMismatch       = errors.New("mismatch")
	ErrTooLarge       = errors.New("too large")
	ErrUnavailable    = errors.New("unavailable")
	ErrInternal       = errors.New("internal error")
	// ErrUnauthorized: no token, or one the server does not know.
	ErrUnauthorized = errors.New("unauthorized")
	// ErrForbidden: the token lacks the capability the call needs.
	ErrForbidden = errors.New("forbidden")
)

var codeSentinels = map[Code]error{
	CodeInvalid:        ErrInvalid,
	CodeNotFound:       ErrNotFound,
	CodeRefused:        ErrRefused,
	CodeSessionExpired: ErrSessionExpired,
	CodeIDTaken:        ErrIDTaken,
	CodeMismatch:       ErrMismatch,
	CodeTooLarge:       ErrTooLarge,
	CodeUnavailable:    ErrUnavailable,
	CodeInternal:       ErrInternal,
	CodeEpochRange:     ErrEpochRange,
	CodeUnauthorized:   ErrUnauthorized,
	CodeForbidden:      ErrForbidden,
}

// Error is the body of every failed RPC or HTTP reply.
type Error struct {
	Code    Code   `json:"code" codec:"c"`
	Message string `json:"error" codec:"m"`
}

// Error implements error.
func (e *Error) Error() string { return fmt.Sprintf("%s: %s", e.Code, e.Message) }

// Is lets errors.Is match an *Error against the sentinel of its code.
func (e *Error) Is(target error) bool { return codeSentinels[e.Code] == target }

// Errorf builds an *Error wrapping the sentinel of code.
func Errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// ToError converts any error into an *Error, mapping wrapped sentinels to
// their codes and everything else to CodeInternal.
func ToError(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	for code, s := range codeSentinels {
		if errors.Is(err, s) {
			return &Error{Code: code, Message: err.Error()}
		}
	}
	return &Error{Code: CodeInternal, Message: err.Error()}
}

// HTTPStatus is the HTTP status that carries code.
func (c Code) HTTPStatus() int {
	switch c {
	case CodeInvalid, CodeEpochRange:
		return 400
	case CodeNotFound:
		return 404
	case CodeRefused, CodeIDTaken, CodeMismatch:
		return 409
	case CodeSessionExpired:
		return 410
	case CodeTooLarge:
		return 413
	case CodeUnavailable:
		return 503
	case CodeUnauthorized:
		return 401
	case CodeForbidden:
		return 403
	}
	return 500
}
