package config

import (
	"encoding/base64"
	"net"
	"net/url"
	"strconv"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/mastership/mastership/naming/api"
)

// APIPortOffset is added to Bind's port to give the default API address, so
// that agents started with only -bind on one machine (127.0.0.1:7946,
// 127.0.0.1:7947, ...) get distinct API ports (8946, 8947, ...) without
// colliding with the gossip ports of their neighbours.
const APIPortOffset = 1000

// Failure actions of Agent.OnFailure: what an agent does when recovery
// fails (recovery step 5, package recover).
const (
	// OnFailureQuarantine stops serving, reports, and retries on the next
	// trigger. The default: a transient failure heals without an operator.
	OnFailureQuarantine = "quarantine"
	// OnFailureTerminate exits the process with a distinct code, as in the
	// patent, for supervisors that restart from a clean state.
	OnFailureTerminate = "terminate"
)

// Agent configures a peer agent (`mastership agent`). The core counts ticks
// (HeartbeatTicks, ElectionTicks, ...); only the runtime knows TickUnit, so
// the decisions stay pure and tests drive them tick by tick.
type Agent struct {
	// Group is the group this agent replicates: 1 to 63 of [a-z0-9._-],
	// starting with [a-z0-9]. Required, no default.
	Group string `json:"group"`

	// ID identifies the agent in its group: any uint64 but 0. Required, no
	// default: two agents with one ID would be one agent to the naming node.
	ID uint64 `json:"id"`

	// Bind is the gossip host:port (memberlist, TCP and UDP). Default
	// "127.0.0.1:7946"; the host must be non-empty (0.0.0.0 for every
	// interface).
	Bind string `json:"bind"`

	// Advertise is the host:port other agents reach this one at, when it
	// differs from Bind (NAT, 0.0.0.0). Optional; empty means Bind. Its
	// host, with the API's port, is also the API address the agent
	// announces (to its peers, the naming node and clients) when the API
	// listens on every interface; it is required then.
	Advertise string `json:"advertise"`

	// Join lists gossip addresses (host:port) to join at start and to keep
	// retrying after a partition. Default empty (the first agent); at most
	// 64 addresses.
	Join []string `json:"join"`

	// Naming is the host:port of the naming node, or of the nodes of a
	// naming cluster, comma-separated (at most 9): the agent fails over
	// between them. Required; the default "127.0.0.1:7400" is the naming
	// node's own default Bind.
	Naming string `json:"naming"`

	// API is the host:port of the agent's RPC and HTTP API. Default empty,
	// meaning Bind's host with Bind's port + APIPortOffset (see APIAddr);
	// must differ from Bind.
	API string `json:"api"`

	// Priority ranks agents for election and retention: higher wins.
	// Default 0; limits -1,000,000 to 1,000,000.
	Priority int `json:"priority"`

	// Mode is the group's consistency mode: "strict" or "available"
	// (default; empty means available); api.Mode says what each promises.
	Mode string `json:"mode"`

	// Policy is the retention policy the group asks the naming node for:
	// "lowest-id", "priority", or empty (default) for the naming node's
	// default-policy.
	Policy string `json:"policy"`

	// DataDir holds the agent's log, snapshots and divergence records.
	// Default empty: everything in memory, for tests and the demo only,
	// since divergence records then die with the process.
	DataDir string `json:"data_dir"`

	// Encrypt is the gossip encryption key, base64 (standard encoding) of 16,
	// 24 or 32 bytes (AES-128, -192, -256). Default empty: no encryption.
	// Every agent of a cluster needs the same key.
	Encrypt string `json:"encrypt"`

	// FaultControl enables the test-only fault-injection API (`mastership
	// fault`). Default false; never enable it in production.
	FaultControl bool `json:"fault_control"`

	// Pprof serves Go's profiler at /debug/pprof/ on the API address, to
	// the operator capability where an ACL is on (a profile may show the
	// command line). Default false.
	Pprof bool `json:"pprof"`

	// TickUnit is the wall time of one core tick. Default 50ms (local
	// profile 10ms, wan 200ms); limits 1ms to 10s.
	TickUnit time.Duration `json:"tick_unit"`

	// HeartbeatTicks is how many ticks pass between the master's
	// heartbeats. Default 4 (200ms on lan; local 5 ticks = 50ms, wan 5 ticks
	// = 1s); limits 1 to 1000.
	HeartbeatTicks int `json:"heartbeat_ticks"`

	// ElectionTicks is how many ticks of silence make a back-up suspect the
	// master. Default 20 (1s on lan; local 30 = 300ms, wan 25 = 5s); limits
	// above 2 x HeartbeatTicks, so one lost heartbeat starts no election,
	// and at most 100,000.
	ElectionTicks int `json:"election_ticks"`

	// ElectionStaggerTicks delays a back-up's election timer per priority
	// rank, so the highest-priority live back-up fires first and the others
	// hear its claim before they fire. Default 6 (300ms on lan; local 10 =
	// 100ms, wan 5 = 1s); limits 1 to ElectionTicks.
	ElectionStaggerTicks int `json:"election_stagger_ticks"`

	// MonitorCount is the self-monitor timer in units of MonitorUnit: the
	// patent's 100 x 3ms. Default 100 on every profile; limits 1 to 100,000.
	MonitorCount int `json:"monitor_count"`

	// MonitorUnit is the unit of the self-monitor timer; groups align their
	// periods to multiples of it. Default 3ms on every profile (lan and wan
	// deployments may choose larger units); limits 1ms to 1m. The period,
	// MonitorCount x MonitorUnit, must be 10ms to 10m.
	MonitorUnit time.Duration `json:"monitor_unit"`

	// OnFailure is what the agent does when recovery fails: "quarantine"
	// (default) or "terminate".
	OnFailure string `json:"on_failure"`

	// SessionTTL is the member session lifetime asked of the naming node.
	// Default 10s (local 2s, wan 30s); limits 100ms to 10m, and at least 3
	// heartbeat periods and 3 self-monitor periods, so a live agent renews
	// well before expiry.
	SessionTTL time.Duration `json:"session_ttl"`

	// RegistrationTTL is the master registration lifetime asked of the
	// naming node. Default 10s (local 2s, wan 30s); limits as SessionTTL.
	RegistrationTTL time.Duration `json:"registration_ttl"`

	// ReconnectInterval is how often the agent retries failed members and
	// the join addresses, so the two sides of a healed partition find each
	// other (serf's reconnect). Default 1s (local 200ms, wan 5s); limits
	// 10ms to 10m.
	ReconnectInterval time.Duration `json:"reconnect_interval"`

	// WriteTimeout bounds how long a master in available mode waits for
	// back-ups' acknowledgements of a write. Default 2s (local 500ms, wan
	// 10s); limits 10ms to 5m.
	WriteTimeout time.Duration `json:"write_timeout"`

	// MaxKeyBytes caps a key of a client request. Default 1024; limits 1 to
	// 65,536.
	MaxKeyBytes int `json:"max_key_bytes"`

	// MaxValueBytes caps a value of a client request. Default 65,536 (64
	// KiB); limits 1 to 524,287, and MaxKeyBytes + MaxValueBytes at most
	// 524,288 (half of api.MaxMessageBytes), so a request and its envelope
	// fit one message.
	MaxValueBytes int `json:"max_value_bytes"`

	// Expect is the number of agents the group is meant to have, as
	// Consul's -bootstrap-expect. A strict quorum is a majority of at least
	// this many members, so that an agent that has not yet heard of the
	// others (at start, or cut off) can never make a majority of its own
	// view. Required (1 to 1000) in strict mode; optional in available
	// mode, where 0 (the default) counts the members gossip knows of.
	Expect int `json:"expect"`

	// MaxConns caps the connections the agent's API listener holds open at
	// once (HTTP and message streams); past it a new connection is closed
	// at once. Default 1024; limits 16 to 100,000.
	MaxConns int `json:"max_conns"`

	// ACL is a JSON file of tokens and their capabilities (see package
	// naming/auth); every call to the agent's API and every message stream
	// then needs a token that grants what it asks. Default empty: the
	// agent is open (it says so at start).
	ACL string `json:"acl"`

	// Token is the secret the agent presents to its peers and the naming
	// node. Default empty. Prefer TokenFile or MASTERSHIP_TOKEN: a flag is
	// visible to other users of the machine. Never logged.
	Token string `json:"token"`

	// TokenFile holds the token on its first line; not with Token.
	TokenFile string `json:"token_file"`

	// TLSCA, TLSCert and TLSKey are PEM files: the cluster's CA, and this
	// agent's certificate and key (mastership tls makes them). All three
	// or none. With them the API port (HTTP and streams) takes only TLS
	// with a client certificate the CA signed, and every call the agent
	// makes is TLS with its own.
	TLSCA   string `json:"tls_ca"`
	TLSCert string `json:"tls_cert"`
	TLSKey  string `json:"tls_key"`

	// OnRoleChange is an executable the agent runs whenever its role, its
	// epoch or the master it follows changes, and once at start, so that
	// the managed service follows its role (package agent/hook: arguments
	// ROLE PREVIOUS_ROLE GROUP ID and MASTERSHIP_* environment). Runs are
	// one at a time, coalesced to the latest state. Default empty: none.
	// Set by a flag or the config file only, never through the API.
	OnRoleChange string `json:"on_role_change"`

	// PrePromote is an executable the agent runs after it wins an election
	// and before it serves or registers as master, with the environment
	// of OnRoleChange (role "master"). A non-zero exit or a timeout vetoes:
	// the agent stays a back-up, campaigns for nothing during
	// PromoteBackoff, and the next-ranked agent takes over. Default empty:
	// none. Set by a flag or the config file only.
	PrePromote string `json:"pre_promote"`

	// PromoteBackoff is how long an agent whose promotion was vetoed
	// neither campaigns nor asks for a handover. Default 10s (local 2s,
	// wan 30s); limits 10ms to 1h.
	PromoteBackoff time.Duration `json:"promote_backoff"`

	// Check is an executable that checks the managed service: exit 0 means
	// healthy (it gets the environment of OnRoleChange). CheckHTTP is a
	// URL instead: a 2xx answer means healthy. At most one of them;
	// default none. After CheckFailures failed checks in a row the agent
	// is unhealthy: it does not campaign, and as master it hands over to
	// the best healthy back-up in sync. One passing check makes it
	// healthy again.
	Check     string `json:"check"`
	CheckHTTP string `json:"check_http"`

	// CheckInterval is the time between health checks, and the most one
	// check may take. Default 1s (local 200ms, wan 5s); limits 10ms to 10m.
	CheckInterval time.Duration `json:"check_interval"`

	// CheckFailures is how many failed checks in a row make the agent
	// unhealthy. Default 3; limits 1 to 100.
	CheckFailures int `json:"check_failures"`

	// HookTimeout bounds each run of a hook; past it the hook and every
	// process it started are killed. Default 30s; limits 10ms to 10m.
	HookTimeout time.Duration `json:"hook_timeout"`

	// StartGrace bounds how long an agent started with Join waits, before
	// it may campaign, to meet every join address as a member (and so
	// learn the group's members, claims and master): agents started
	// together elect one master rather than one each. It campaigns as
	// soon as it met them all. Default 5s (local 1s, wan 20s); limits 0
	// (none) to 10m. An agent without Join has none.
	StartGrace time.Duration `json:"start_grace"`

	// LeaveTimeout bounds how long a master told to stop (SIGTERM,
	// SIGINT) waits for a back-up to take mastership over before it
	// leaves anyway. Default 5s; limits 0 (leave at once, no handover) to
	// 10m.
	LeaveTimeout time.Duration `json:"leave_timeout"`

	// SnapshotEntries schedules the agent's own snapshots: once this many
	// entries were applied since the last one, the state machine's
	// snapshot is stored and the stored log is cut behind it (the
	// in-memory log keeps the last 512 entries, core.SyncThreshold, for
	// back-ups a little behind; one further behind downloads the state).
	// Restart cost and disk then depend on the state and this count, not
	// on every write ever applied. Default 10000 (local 2000); 0 (only
	// SnapshotBytes schedules) or 64 to 100000000.
	SnapshotEntries int `json:"snapshot_entries"`

	// SnapshotBytes schedules a snapshot too, once this many bytes of
	// operations were applied since the last one, so that large writes
	// do not let the log grow to SnapshotEntries times their size.
	// Default 64 MiB (local 8 MiB); 0 (only SnapshotEntries schedules) or
	// 64 KiB to 64 GiB.
	SnapshotBytes int `json:"snapshot_bytes"`

	// RetainEntries bounds, in available mode, how far a snapshot waits
	// for members that may lack entries (the divergent writes of a split
	// brain): a log is compacted past what some member lacks only after
	// this many more entries. A recovery from a log compacted past its
	// fork keeps the whole state as a divergence record instead of the
	// writes one by one. Default 0: 16 x SnapshotEntries, at least 10000;
	// else 64 to 1000000000.
	RetainEntries int `json:"retain_entries"`

	// GossipProfile picks memberlist's DefaultLocalConfig, DefaultLANConfig
	// or DefaultWANConfig: "local", "lan" or "wan". Default: the profile the
	// agent config came from.
	GossipProfile string `json:"gossip_profile"`

	// Logger receives the agent's logs; nil means a null logger.
	Logger hclog.Logger `json:"-"`
}

// Limits of Agent fields, named once so Validate and the doc agree.
const (
	maxJoin            = 64
	maxPriority        = 1_000_000
	minTickUnit        = time.Millisecond
	maxTickUnit        = 10 * time.Second
	maxHeartbeatTicks  = 1000
	maxElectionTicks   = 100_000
	maxMonitorCount    = 100_000
	minMonitorUnit     = time.Millisecond
	maxMonitorUnit     = time.Minute
	minMonitorPeriod   = 10 * time.Millisecond
	maxMonitorPeriod   = 10 * time.Minute
	minAgentTTL        = 100 * time.Millisecond
	maxAgentTTL        = 10 * time.Minute
	ttlPeriods         = 3
	minReconnect       = 10 * time.Millisecond
	maxReconnect       = 10 * time.Minute
	minWriteTimeout    = 10 * time.Millisecond
	maxWriteTimeout    = 5 * time.Minute
	maxKeyBytesLimit   = 64 << 10
	maxRequestBytes    = api.MaxMessageBytes / 2
	maxValueBytesLimit = maxRequestBytes - 1
	maxExpect          = 1000
	minHookTimeout     = 10 * time.Millisecond
	maxHookTimeout     = 10 * time.Minute
	maxLeaveTimeout    = 10 * time.Minute
	minPromoteBackoff  = 10 * time.Millisecond
	maxPromoteBackoff  = time.Hour
	minCheckInterval   = 10 * time.Millisecond
	maxCheckInterval   = 10 * time.Minute
	maxCheckFailures   = 100
	maxStartGrace      = 10 * time.Minute
	minSnapshotEntries = 64
	maxSnapshotEntries = 100_000_000
	maxRetainEntries   = 1_000_000_000
	minSnapshotBytes   = 64 << 10
	maxSnapshotBytes   = 64 << 30
)

// DefaultAgent returns the agent defaults of a profile: "local", "lan" (also
// for "") or "wan". Group and ID are left empty and must be set.
func DefaultAgent(profile string) (Agent, error) {
	profile, err := checkProfile(profile)
	if err != nil {
		return Agent{}, err
	}
	a := Agent{
		Bind:                 "127.0.0.1:7946",
		Naming:               "127.0.0.1:7400",
		Mode:                 string(api.ModeAvailable),
		OnFailure:            OnFailureQuarantine,
		MonitorCount:         100,
		MonitorUnit:          3 * time.Millisecond,
		MaxKeyBytes:          1024,
		MaxValueBytes:        64 << 10,
		GossipProfile:        profile,
		TickUnit:             50 * time.Millisecond,
		HeartbeatTicks:       4,
		ElectionTicks:        20,
		ElectionStaggerTicks: 6,
		SessionTTL:           10 * time.Second,
		RegistrationTTL:      10 * time.Second,
		ReconnectInterval:    time.Second,
		WriteTimeout:         2 * time.Second,
		MaxConns:             api.DefaultMaxConns,
		HookTimeout:          30 * time.Second,
		LeaveTimeout:         5 * time.Second,
		PromoteBackoff:       10 * time.Second,
		CheckInterval:        time.Second,
		CheckFailures:        3,
		StartGrace:           5 * time.Second,
		SnapshotEntries:      10_000,
		SnapshotBytes:        64 << 20,
	}
	switch profile {
	case ProfileLocal:
		a.TickUnit = 10 * time.Millisecond
		a.HeartbeatTicks = 5
		a.ElectionTicks = 30
		a.ElectionStaggerTicks = 10
		a.SessionTTL = 2 * time.Second
		a.RegistrationTTL = 2 * time.Second
		a.ReconnectInterval = 200 * time.Millisecond
		a.WriteTimeout = 500 * time.Millisecond
		a.PromoteBackoff = 2 * time.Second
		a.CheckInterval = 200 * time.Millisecond
		a.StartGrace = time.Second
		a.SnapshotEntries = 2000
		a.SnapshotBytes = 8 << 20
	case ProfileWAN:
		a.TickUnit = 200 * time.Millisecond
		a.HeartbeatTicks = 5
		a.ElectionTicks = 25
		a.ElectionStaggerTicks = 5
		a.SessionTTL = 30 * time.Second
		a.RegistrationTTL = 30 * time.Second
		a.ReconnectInterval = 5 * time.Second
		a.WriteTimeout = 10 * time.Second
		a.PromoteBackoff = 30 * time.Second
		a.CheckInterval = 5 * time.Second
		a.StartGrace = 20 * time.Second
	}
	return a, nil
}

// APIAddr returns API, or when it is empty Bind's host with Bind's port +
// APIPortOffset. It returns "" when Bind does not parse or the port would
// pass 65535; Validate reports both.
func (a Agent) APIAddr() string {
	if a.API != "" {
		return a.API
	}
	host, port, err := net.SplitHostPort(a.Bind)
	if err != nil {
		return ""
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 1 || p+APIPortOffset > 65535 {
		return ""
	}
	return net.JoinHostPort(host, strconv.Itoa(p+APIPortOffset))
}

// AnnouncedAPI is the API address to give peers, the naming node and
// clients for an API listening at listen: listen itself, or, when it
// listens on every interface, Advertise's host with listen's port
// (Validate requires Advertise then).
func (a Agent) AnnouncedAPI(listen string) string {
	_, port, err := net.SplitHostPort(listen)
	if err != nil || a.Advertise == "" || !unspecifiedHost(listen) {
		return listen
	}
	host, _, err := net.SplitHostPort(a.Advertise)
	if err != nil {
		return listen
	}
	return net.JoinHostPort(host, port)
}

// EncryptKey decodes Encrypt: nil when it is empty (no encryption), else a
// key of 16, 24 or 32 bytes for memberlist's SecretKey.
func (a Agent) EncryptKey() ([]byte, error) {
	if a.Encrypt == "" {
		return nil, nil
	}
	key, err := base64.StdEncoding.DecodeString(a.Encrypt)
	if err != nil {
		// The value is a secret: name the field, never echo the key.
		return nil, &FieldError{Field: "encrypt", Reason: "not standard base64", Err: err}
	}
	switch len(key) {
	case 16, 24, 32:
		return key, nil
	}
	return nil, &FieldError{Field: "encrypt", Reason: "decodes to " + strconv.Itoa(len(key)) + " bytes, want 16, 24 or 32"}
}

// Validate checks every field against the limits in its comment and the
// rules between fields. It reports all problems at once, joined; each is a
// *FieldError naming the field by its flag name and wrapping ErrInvalid.
func (a Agent) Validate() error {
	var p problems
	p.wrap("group", a.Group, api.ValidateGroup(a.Group))
	if a.ID == 0 {
		p.add("id", "0", "required; agent IDs start at 1")
	}
	p.wrap("bind", a.Bind, api.ValidateAddr("bind", a.Bind))
	if a.Advertise != "" {
		p.wrap("advertise", a.Advertise, api.ValidateAddr("advertise", a.Advertise))
	}
	if len(a.Join) > maxJoin {
		p.add("join", strconv.Itoa(len(a.Join))+" addresses", "want at most %d", maxJoin)
	}
	for _, j := range a.Join {
		p.wrap("join", j, api.ValidateAddr("join", j))
	}
	_, err := api.ParseAddrList("naming", a.Naming)
	p.wrap("naming", a.Naming, err)
	if a.API != "" {
		p.wrap("api", a.API, api.ValidateAddr("api", a.API))
		if a.API == a.Bind {
			p.add("api", a.API, "equals bind; the API needs its own port")
		}
	} else if api.ValidateAddr("bind", a.Bind) == nil && a.APIAddr() == "" {
		p.add("api", "", "bind port + %d passes 65535; set api", APIPortOffset)
	}
	if a.Advertise == "" && unspecifiedHost(a.APIAddr()) {
		p.add("advertise", "", "required when the API (%s) listens on every interface: its host is the address the agent's peers, the naming node and clients reach the API at", a.APIAddr())
	}
	p.intRange("priority", a.Priority, -maxPriority, maxPriority)
	if _, err := api.ParseMode(a.Mode); err != nil {
		p.wrap("mode", a.Mode, err)
	}
	if a.Policy != "" {
		if _, err := api.ParsePolicy(a.Policy); err != nil {
			p.wrap("policy", a.Policy, err)
		}
	}
	if _, err := a.EncryptKey(); err != nil {
		p = append(p, err)
	}

	p.durRange("tick-unit", a.TickUnit, minTickUnit, maxTickUnit)
	p.intRange("heartbeat-ticks", a.HeartbeatTicks, 1, maxHeartbeatTicks)
	p.intRange("election-ticks", a.ElectionTicks, 1, maxElectionTicks)
	if a.ElectionTicks <= 2*a.HeartbeatTicks {
		p.add("election-ticks", strconv.Itoa(a.ElectionTicks), "want above 2 x heartbeat-ticks = %d", 2*a.HeartbeatTicks)
	}
	p.intRange("election-stagger-ticks", a.ElectionStaggerTicks, 1, max(1, a.ElectionTicks))

	p.intRange("monitor-count", a.MonitorCount, 1, maxMonitorCount)
	p.durRange("monitor-unit", a.MonitorUnit, minMonitorUnit, maxMonitorUnit)
	monitorOK := a.MonitorCount >= 1 && a.MonitorCount <= maxMonitorCount &&
		a.MonitorUnit >= minMonitorUnit && a.MonitorUnit <= maxMonitorUnit
	monitor := time.Duration(a.MonitorCount) * a.MonitorUnit
	if monitorOK && (monitor < minMonitorPeriod || monitor > maxMonitorPeriod) {
		p.add("monitor-count", strconv.Itoa(a.MonitorCount),
			"monitor-count x monitor-unit = %s, want %s to %s", fmtDur(monitor), fmtDur(minMonitorPeriod), fmtDur(maxMonitorPeriod))
		monitorOK = false
	}
	switch a.OnFailure {
	case OnFailureQuarantine, OnFailureTerminate:
	default:
		p.add("on-failure", a.OnFailure, "want %q or %q", OnFailureQuarantine, OnFailureTerminate)
	}

	// A session must outlive a few heartbeat and monitor periods: the
	// agent renews on those periods, and one late renewal must not expire
	// a live agent. Only checked when the periods themselves are sane, so
	// one bad tick-unit gives one error, not three.
	heartbeatOK := a.TickUnit >= minTickUnit && a.TickUnit <= maxTickUnit &&
		a.HeartbeatTicks >= 1 && a.HeartbeatTicks <= maxHeartbeatTicks
	period := time.Duration(0)
	if heartbeatOK {
		period = time.Duration(a.HeartbeatTicks) * a.TickUnit
	}
	if monitorOK {
		period = max(period, monitor)
	}
	for _, t := range []struct {
		field string
		ttl   time.Duration
	}{{"session-ttl", a.SessionTTL}, {"registration-ttl", a.RegistrationTTL}} {
		p.durRange(t.field, t.ttl, minAgentTTL, maxAgentTTL)
		if t.ttl < ttlPeriods*period {
			p.add(t.field, fmtDur(t.ttl), "want at least %d x max(heartbeat period, monitor period) = %s", ttlPeriods, fmtDur(ttlPeriods*period))
		}
	}
	p.durRange("reconnect-interval", a.ReconnectInterval, minReconnect, maxReconnect)
	p.durRange("write-timeout", a.WriteTimeout, minWriteTimeout, maxWriteTimeout)
	p.intRange("max-key-bytes", a.MaxKeyBytes, 1, maxKeyBytesLimit)
	p.intRange("max-value-bytes", a.MaxValueBytes, 1, maxValueBytesLimit)
	p.intRange("expect", a.Expect, 0, maxExpect)
	p.intRange("max-conns", a.MaxConns, minMaxConns, maxMaxConns)
	p.durRange("hook-timeout", a.HookTimeout, minHookTimeout, maxHookTimeout)
	p.durRange("leave-timeout", a.LeaveTimeout, 0, maxLeaveTimeout)
	p.durRange("start-grace", a.StartGrace, 0, maxStartGrace)
	p.durRange("promote-backoff", a.PromoteBackoff, minPromoteBackoff, maxPromoteBackoff)
	if heartbeatOK := a.TickUnit >= minTickUnit && a.TickUnit <= maxTickUnit; heartbeatOK && a.PrePromote != "" {
		// Shorter, and the vetoed agent, which ranks first, fires again
		// before the next-ranked one ever does.
		if least := 2 * time.Duration(a.ElectionTicks+a.ElectionStaggerTicks) * a.TickUnit; a.PromoteBackoff < least {
			p.add("promote-backoff", fmtDur(a.PromoteBackoff), "want at least 2 x (election-ticks + election-stagger-ticks) x tick-unit = %s, so that the next-ranked agent takes over", fmtDur(least))
		}
	}
	p.durRange("check-interval", a.CheckInterval, minCheckInterval, maxCheckInterval)
	p.intRange("check-failures", a.CheckFailures, 1, maxCheckFailures)
	if a.SnapshotEntries != 0 {
		p.intRange("snapshot-entries", a.SnapshotEntries, minSnapshotEntries, maxSnapshotEntries)
	}
	if a.SnapshotBytes != 0 {
		p.intRange("snapshot-bytes", a.SnapshotBytes, minSnapshotBytes, maxSnapshotBytes)
	}
	if a.RetainEntries != 0 {
		p.intRange("retain-entries", a.RetainEntries, minSnapshotEntries, maxRetainEntries)
	}
	if a.SnapshotEntries == 0 && a.SnapshotBytes == 0 {
		p.add("snapshot-entries", "0", "with snapshot-bytes 0 too, the log would grow forever; set one of them")
	}
	if a.Check != "" && a.CheckHTTP != "" {
		p.add("check-http", a.CheckHTTP, "give check or check-http, not both")
	}
	if a.CheckHTTP != "" {
		if u, err := url.Parse(a.CheckHTTP); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			p.add("check-http", a.CheckHTTP, "want an http:// or https:// URL with a host")
		}
	}
	checkSecurity(&p, a.Token, a.TokenFile, a.TLSCA, a.TLSCert, a.TLSKey)
	if m, err := api.ParseMode(a.Mode); err == nil && m == api.ModeStrict && a.Expect == 0 {
		// A strict quorum counted from the gossip view shrinks to one at
		// start-up, when each agent knows only itself: every agent would
		// elect itself.
		p.add("expect", "0", "required in strict mode: the number of agents of the group (a strict quorum is a majority of it), for example -expect 3")
	}
	keyOK := a.MaxKeyBytes >= 1 && a.MaxKeyBytes <= maxKeyBytesLimit
	valueOK := a.MaxValueBytes >= 1 && a.MaxValueBytes <= maxValueBytesLimit
	if keyOK && valueOK && a.MaxKeyBytes+a.MaxValueBytes > maxRequestBytes {
		p.add("max-value-bytes", strconv.Itoa(a.MaxValueBytes), "max-key-bytes + max-value-bytes = %d, want at most %d", a.MaxKeyBytes+a.MaxValueBytes, maxRequestBytes)
	}
	if _, err := checkProfile(a.GossipProfile); err != nil || a.GossipProfile == "" {
		p.add("gossip-profile", a.GossipProfile, "want %q, %q or %q", ProfileLocal, ProfileLAN, ProfileWAN)
	}
	return p.err()
}
