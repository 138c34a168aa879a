package config

import (
	"context"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/mastership/mastership/naming/api"
)

// Naming configures a naming node (`mastership naming`). Durations are wall
// time: the naming node is I/O at the edge, its decisions take "now" as input.
type Naming struct {
	// Bind is the one host:port that serves agents (msgpack RPC), the command
	// line and the HTTP JSON API. Default "127.0.0.1:7400"; a host:port with
	// a non-empty host (use 0.0.0.0 for every interface).
	Bind string `json:"bind"`

	// DataDir holds the node's raft log, snapshots and state. Required;
	// created if missing with mode 0700. No default: DefaultNaming leaves
	// it empty because a store in whatever directory the node starts in
	// would be lost or shared by accident.
	DataDir string `json:"data_dir"`

	// Advertise is the host:port the other naming nodes reach this one at
	// (its raft address and its ID in the cluster). Default empty: Bind.
	// Required with Peers or Join when Bind's host is 0.0.0.0 or ::.
	Advertise string `json:"advertise"`

	// Peers lists the advertised addresses of every initial voter of a new
	// cluster, this node's included: a node with an empty data dir
	// bootstraps the cluster with them. Default empty: a one-voter cluster
	// of this node alone (the single naming node). A node restarted with
	// the same data dir rejoins whatever cluster its data dir holds, and
	// refuses a list that does not match it. At most 9, no duplicates.
	Peers []string `json:"peers"`

	// Join lists naming nodes of a running cluster: a node with an empty
	// data dir does not bootstrap but asks them to add it as a voter
	// (`mastership peers add` does the same by hand). Not with Peers; at
	// most 9.
	Join []string `json:"join"`

	// ElectionTimeout is the raft heartbeat and election timeout between
	// naming nodes: a follower that hears no leader for this long starts
	// an election. Default 1s (local profile 100ms, wan 3s); limits 10ms to
	// 1m.
	ElectionTimeout time.Duration `json:"election_timeout"`

	// DefaultPolicy is the retention policy of a group created without one:
	// "lowest-id" (default, as in the patent) or "priority"; empty means
	// "lowest-id".
	DefaultPolicy string `json:"default_policy"`

	// SessionTTL is the member session lifetime granted when a join asks for
	// none. Default 10s (local profile 2s, wan 30s); limits 100ms to 10m.
	SessionTTL time.Duration `json:"session_ttl"`

	// RegistrationTTL is the registration lifetime granted when a register
	// asks for none. Default 10s (local profile 2s, wan 30s); limits 100ms
	// to 10m.
	RegistrationTTL time.Duration `json:"registration_ttl"`

	// MaxTTL caps any TTL a request asks for. Default 10m; limits: at least
	// SessionTTL and RegistrationTTL (the TTLs granted by default must not
	// exceed the cap), at most 24h.
	MaxTTL time.Duration `json:"max_ttl"`

	// SweepInterval is how often sessions and registrations are expired and
	// every group is re-checked for several live registrations. Default 1s
	// (local profile 100ms, wan 3s); limits 10ms to 1m; at most SessionTTL/2
	// and RegistrationTTL/2, so that an expired entry lives at most half a
	// TTL past its deadline.
	SweepInterval time.Duration `json:"sweep_interval"`

	// ConflictWindow is how long the node gathers competing registrations of
	// one group, once a conflict is seen, before it decides once for all of
	// them. Default 20ms (wan 100ms); limits 0 to 1s; below SessionTTL.
	ConflictWindow time.Duration `json:"conflict_window"`

	// RestartGrace is added to every session and registration loaded from
	// the store at start, so that members have time to renew instead of all
	// expiring at once. Default 2 x SessionTTL; limits 0 to 10m.
	RestartGrace time.Duration `json:"restart_grace"`

	// TriggerTimeout bounds one delivery of a trigger to a member. Default
	// 1s (local profile 250ms, wan 5s); limits 10ms to 30s.
	TriggerTimeout time.Duration `json:"trigger_timeout"`

	// TriggerBackoffMin and TriggerBackoffMax bound the delay between
	// retries of a failed trigger delivery (doubling from min to max).
	// Defaults 50ms and 2s (wan 200ms and 10s); min at least 1ms, max at
	// least min and at most 10m.
	TriggerBackoffMin time.Duration `json:"trigger_backoff_min"`
	TriggerBackoffMax time.Duration `json:"trigger_backoff_max"`

	// MaxEventsPerGroup bounds each group's event history; the oldest
	// events are dropped first. Default 10000; limits 16 to 1,000,000.
	MaxEventsPerGroup int `json:"max_events_per_group"`

	// MaxEvents bounds the event history of all groups together; the
	// oldest events of any group are dropped first. Default 200000;
	// limits 1000 to 100,000,000.
	MaxEvents int `json:"max_events"`

	// MaxGroups caps the groups the node keeps: a join or registration
	// that would create one more is refused (code too-large), so that
	// nobody can exhaust the node's memory with made-up groups. Default
	// 10000; limits 1 to 1,000,000.
	MaxGroups int `json:"max_groups"`

	// MaxConns caps the connections the node's listener holds open at
	// once; past it a new connection is closed at once. Default 1024;
	// limits 16 to 100,000.
	MaxConns int `json:"max_conns"`

	// Pprof serves Go's profiler at /debug/pprof/ on the node's address,
	// to the operator capability where an ACL is on (a profile may show
	// the command line). Default false.
	Pprof bool `json:"pprof"`

	// ACL is a JSON file of tokens and their capabilities (see package
	// naming/auth); every call then needs a token that grants what it
	// asks. Default empty: the node is open (it says so at start).
	ACL string `json:"acl"`

	// Token is the secret the node presents to agents when it delivers
	// triggers and probes candidates (the agent and read capabilities).
	// Default empty. Prefer TokenFile or MASTERSHIP_TOKEN. Never logged.
	Token string `json:"token"`

	// TokenFile holds the token on its first line; not with Token.
	TokenFile string `json:"token_file"`

	// TLSCA, TLSCert and TLSKey are PEM files: the cluster's CA, and this
	// node's certificate and key. All three or none. With them the node
	// takes only TLS with a client certificate the CA signed, and calls
	// agents over TLS with its own.
	TLSCA   string `json:"tls_ca"`
	TLSCert string `json:"tls_cert"`
	TLSKey  string `json:"tls_key"`

	// Logger receives the node's logs; nil means a null logger.
	Logger hclog.Logger `json:"-"`
	// Metrics, when set, is served at GET /metrics beside the node's own
	// metrics: the process's (raft's and memberlist's through go-metrics,
	// the Go runtime's).
	Metrics prometheus.Gatherer `json:"-"`

	// Dial opens the connections that deliver triggers; nil means a plain
	// net.Dialer. Tests pass a fault-injecting dialer to cut the node off
	// from some agents.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error) `json:"-"`
}

// Limits of Naming fields, named once so Validate and the doc agree.
const (
	minNamingTTL      = 100 * time.Millisecond
	maxNamingTTL      = 10 * time.Minute
	maxMaxTTL         = 24 * time.Hour
	minSweepInterval  = 10 * time.Millisecond
	maxSweepInterval  = time.Minute
	maxConflictWindow = time.Second
	maxRestartGrace   = 10 * time.Minute
	minTriggerTimeout = 10 * time.Millisecond
	maxTriggerTimeout = 30 * time.Second
	minTriggerBackoff = time.Millisecond
	maxTriggerBackoff = 10 * time.Minute
	minEventsPerGroup = 16
	maxEventsPerGroup = 1_000_000
	minEvents         = 1000
	maxEvents         = 100_000_000
	maxMaxGroups      = 1_000_000
	minMaxConns       = 16
	maxMaxConns       = 100_000
	maxPeers          = 9
	minElection       = 10 * time.Millisecond
	maxElection       = time.Minute
)

// DefaultNaming returns the naming node defaults of a profile: "local",
// "lan" (also for "") or "wan". DataDir is left empty and must be set.
func DefaultNaming(profile string) (Naming, error) {
	profile, err := checkProfile(profile)
	if err != nil {
		return Naming{}, err
	}
	n := Naming{
		Bind:              "127.0.0.1:7400",
		DefaultPolicy:     "lowest-id",
		SessionTTL:        10 * time.Second,
		RegistrationTTL:   10 * time.Second,
		MaxTTL:            10 * time.Minute,
		SweepInterval:     time.Second,
		ConflictWindow:    20 * time.Millisecond,
		TriggerTimeout:    time.Second,
		TriggerBackoffMin: 50 * time.Millisecond,
		TriggerBackoffMax: 2 * time.Second,
		MaxEventsPerGroup: 10000,
		MaxEvents:         200_000,
		MaxGroups:         10000,
		MaxConns:          api.DefaultMaxConns,
		ElectionTimeout:   time.Second,
	}
	switch profile {
	case ProfileLocal:
		n.ElectionTimeout = 100 * time.Millisecond
		n.SessionTTL = 2 * time.Second
		n.RegistrationTTL = 2 * time.Second
		n.SweepInterval = 100 * time.Millisecond
		n.TriggerTimeout = 250 * time.Millisecond
	case ProfileWAN:
		// Three times lan: round trips between sites are slower and a
		// flaky link should not expire a healthy member.
		n.SessionTTL = 30 * time.Second
		n.RegistrationTTL = 30 * time.Second
		n.SweepInterval = 3 * time.Second
		n.ConflictWindow = 100 * time.Millisecond
		n.TriggerTimeout = 5 * time.Second
		n.TriggerBackoffMin = 200 * time.Millisecond
		n.TriggerBackoffMax = 10 * time.Second
		n.ElectionTimeout = 3 * time.Second
	}
	n.RestartGrace = 2 * n.SessionTTL
	return n, nil
}

// Validate checks every field against the limits in its comment and the
// rules between fields. It reports all problems at once, joined; each is a
// *FieldError naming the field by its flag name and wrapping ErrInvalid.
func (n Naming) Validate() error {
	var p problems
	p.wrap("bind", n.Bind, api.ValidateAddr("bind", n.Bind))
	if n.DataDir == "" {
		p.add("data-dir", "", "required")
	}
	if n.Advertise != "" {
		p.wrap("advertise", n.Advertise, api.ValidateAddr("advertise", n.Advertise))
	}
	checkPeerList(&p, "peers", n.Peers)
	checkPeerList(&p, "join", n.Join)
	if len(n.Peers) > 0 && len(n.Join) > 0 {
		p.add("join", strings.Join(n.Join, ","), "not with -peers: a node either bootstraps a new cluster or joins a running one")
	}
	if self := n.RaftAddr(); len(n.Peers) > 0 && !slices.Contains(n.Peers, self) {
		p.add("peers", strings.Join(n.Peers, ","), "does not list this node's own address %s (-advertise, or -bind)", self)
	}
	if len(n.Peers)+len(n.Join) > 0 && n.Advertise == "" && unspecifiedHost(n.Bind) {
		p.add("advertise", "", "required with -peers or -join when -bind %s listens on every interface", n.Bind)
	}
	p.durRange("election-timeout", n.ElectionTimeout, minElection, maxElection)
	if _, err := api.ParsePolicy(n.DefaultPolicy); err != nil {
		p.wrap("default-policy", n.DefaultPolicy, err)
	}
	sessionOK := p.durRange("session-ttl", n.SessionTTL, minNamingTTL, maxNamingTTL)
	registrationOK := p.durRange("registration-ttl", n.RegistrationTTL, minNamingTTL, maxNamingTTL)
	p.durRange("max-ttl", n.MaxTTL, minNamingTTL, maxMaxTTL)
	if sessionOK && n.MaxTTL < n.SessionTTL {
		p.add("max-ttl", fmtDur(n.MaxTTL), "below session-ttl %s", fmtDur(n.SessionTTL))
	}
	if registrationOK && n.MaxTTL < n.RegistrationTTL {
		p.add("max-ttl", fmtDur(n.MaxTTL), "below registration-ttl %s", fmtDur(n.RegistrationTTL))
	}
	p.durRange("sweep-interval", n.SweepInterval, minSweepInterval, maxSweepInterval)
	if sessionOK && n.SweepInterval > n.SessionTTL/2 {
		p.add("sweep-interval", fmtDur(n.SweepInterval), "above session-ttl/2 = %s", fmtDur(n.SessionTTL/2))
	}
	if registrationOK && n.SweepInterval > n.RegistrationTTL/2 {
		p.add("sweep-interval", fmtDur(n.SweepInterval), "above registration-ttl/2 = %s", fmtDur(n.RegistrationTTL/2))
	}
	p.durRange("conflict-window", n.ConflictWindow, 0, maxConflictWindow)
	if sessionOK && n.ConflictWindow >= n.SessionTTL {
		p.add("conflict-window", fmtDur(n.ConflictWindow), "not below session-ttl %s", fmtDur(n.SessionTTL))
	}
	p.durRange("restart-grace", n.RestartGrace, 0, maxRestartGrace)
	p.durRange("trigger-timeout", n.TriggerTimeout, minTriggerTimeout, maxTriggerTimeout)
	minOK := p.durRange("trigger-backoff-min", n.TriggerBackoffMin, minTriggerBackoff, maxTriggerBackoff)
	p.durRange("trigger-backoff-max", n.TriggerBackoffMax, minTriggerBackoff, maxTriggerBackoff)
	if minOK && n.TriggerBackoffMax < n.TriggerBackoffMin {
		p.add("trigger-backoff-max", fmtDur(n.TriggerBackoffMax), "below trigger-backoff-min %s", fmtDur(n.TriggerBackoffMin))
	}
	p.intRange("max-events-per-group", n.MaxEventsPerGroup, minEventsPerGroup, maxEventsPerGroup)
	p.intRange("max-events", n.MaxEvents, minEvents, maxEvents)
	p.intRange("max-groups", n.MaxGroups, 1, maxMaxGroups)
	p.intRange("max-conns", n.MaxConns, minMaxConns, maxMaxConns)
	checkSecurity(&p, n.Token, n.TokenFile, n.TLSCA, n.TLSCert, n.TLSKey)
	return p.err()
}

// RaftAddr is the address the other naming nodes reach this one at, and its
// ID in the cluster: Advertise, or Bind.
func (n Naming) RaftAddr() string {
	if n.Advertise != "" {
		return n.Advertise
	}
	return n.Bind
}

// checkPeerList checks a list of naming node addresses.
func checkPeerList(p *problems, key string, addrs []string) {
	if len(addrs) > maxPeers {
		p.add(key, strconv.Itoa(len(addrs))+" addresses", "want at most %d", maxPeers)
	}
	seen := map[string]bool{}
	for _, a := range addrs {
		if err := api.ValidateAddr(key, a); err != nil {
			p.wrap(key, a, err)
			continue
		}
		if unspecifiedHost(a) {
			p.add(key, a, "names no host another node can reach")
		}
		if seen[a] {
			p.add(key, a, "listed twice")
		}
		seen[a] = true
	}
}

func unspecifiedHost(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsUnspecified()
}
