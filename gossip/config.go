package gossip

import (
	"fmt"
	"math/rand"
	"net"
	"strconv"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/memberlist"

	"github.com/mastership/mastership/naming/api"
)

// Profiles pick memberlist's default timings.
const (
	ProfileLocal = "local" // memberlist.DefaultLocalConfig: one host or a fast LAN
	ProfileLAN   = "lan"   // memberlist.DefaultLANConfig
	ProfileWAN   = "wan"   // memberlist.DefaultWANConfig
)

// Config configures one agent's membership layer. Zero fields take the
// defaults named on each; DefaultConfig fills them in explicitly.
type Config struct {
	// Group and ID name the agent; the memberlist node name is
	// NodeName(Group, ID). Required.
	Group string
	ID    uint64

	// Meta is the metadata announced at start. Its Group and ID are set
	// from the fields above when zero and must match them otherwise.
	Meta Meta

	// BindAddr is the host:port memberlist listens on (UDP and TCP).
	// Default "127.0.0.1:7946"; port 0 picks a free port (see
	// Gossip.LocalAddr). Ignored when Transport is set.
	BindAddr string

	// AdvertiseAddr is the "host:port" or "host" the others reach this
	// agent at. Optional; empty means the bound address (or a private IP
	// when bound to 0.0.0.0). A host without port advertises the bound port.
	AdvertiseAddr string

	// Join lists host:port addresses joined by Join and retried by the
	// reconnect loop. Optional; at most 64.
	Join []string

	// Profile is "local", "lan" (default, also for "") or "wan".
	Profile string

	// SecretKey turns on memberlist's encryption: 16, 24 or 32 bytes
	// (AES-128/192/256). Empty means clear text. Members with different
	// keys cannot join each other.
	SecretKey []byte

	// ExtraKeys are further keys the keyring accepts for decryption (a
	// rotation under way); SecretKey stays the one that encrypts. Only
	// with SecretKey.
	ExtraKeys [][]byte

	// CheckEpoch, when set, vets the epoch of every claim received before
	// it is merged (the agent refuses epochs far above the terms it
	// knows). A claim it refuses is dropped; CheckEpoch reports it.
	CheckEpoch func(api.Epoch) error

	// ReconnectInterval is the mean time between two reconnect attempts,
	// with up to +50% jitter. Default 1s (local 200ms, wan 5s); limits 10ms
	// to 10m.
	ReconnectInterval time.Duration

	// ReconnectTimeout is how long a dead member is remembered, and retried,
	// before it is forgotten. Default 24h (as serf); at least
	// ReconnectInterval.
	ReconnectTimeout time.Duration

	// SuspectAfter is how long without a successful probe ack from a member
	// makes it suspect (see doc.go, "Suspect"). Default 0: derived from
	// memberlist's probe interval and the member count so that a healthy
	// member is never suspected. Limits 0 to 1h.
	SuspectAfter time.Duration

	// PollInterval is how often the maintenance goroutine derives suspect
	// members and reaps old dead ones. Default 0: memberlist's
	// ProbeInterval. Limits 0 to 1m.
	PollInterval time.Duration

	// Logger receives the package's logs, and memberlist's through an
	// hclog standard logger; nil means a null logger. Named "gossip".
	Logger hclog.Logger

	// Transport replaces memberlist's NetTransport (BindAddr is then
	// unused). Optional.
	Transport memberlist.Transport

	// MaxStreams caps the gossip TCP connections handled at once (0:
	// DefaultMaxStreams); past it a new one is closed at once. Ignored
	// when Transport is set.
	MaxStreams int

	// WrapTransport, when set, wraps the NetTransport built from BindAddr,
	// for example with faulty.NewTransport. Ignored when Transport is set.
	WrapTransport func(memberlist.NodeAwareTransport) memberlist.Transport

	// Tune, when set, is called last on the memberlist configuration; tests
	// use it to shorten memberlist's timers. It must not change Name,
	// Delegate, Events, Conflict, Alive, Ping or Transport.
	Tune func(*memberlist.Config)

	// Clock gives the time to the maintenance goroutine and the member view.
	// Default: the system clock. (memberlist keeps its own real timers.)
	Clock Clock

	// Rand jitters the reconnect interval and picks which dead member to
	// retry. Owned by the maintenance goroutine after New. Default: seeded
	// from the time.
	Rand *rand.Rand
}

// Clock is the time source of the package. Implementations must be safe for
// concurrent use.
type Clock interface {
	Now() time.Time
	After(d time.Duration) <-chan time.Time
}

type systemClock struct{}

func (systemClock) Now() time.Time                         { return time.Now() }
func (systemClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// Limits of Config fields.
const (
	maxJoin          = 64
	minReconnect     = 10 * time.Millisecond
	maxReconnect     = 10 * time.Minute
	maxSuspectAfter  = time.Hour
	maxPollInterval  = time.Minute
	defaultBindAddr  = "127.0.0.1:7946"
	defaultReconnTTL = 24 * time.Hour
)

// DefaultConfig returns the defaults of a profile ("local", "lan" or "",
// "wan"); Group and ID are left to set.
func DefaultConfig(profile string) Config {
	c := Config{Profile: profile}
	c.setDefaults()
	return c
}

func (c *Config) setDefaults() {
	if c.Profile == "" {
		c.Profile = ProfileLAN
	}
	if c.BindAddr == "" {
		c.BindAddr = defaultBindAddr
	}
	if c.ReconnectInterval == 0 {
		switch c.Profile {
		case ProfileLocal:
			c.ReconnectInterval = 200 * time.Millisecond
		case ProfileWAN:
			c.ReconnectInterval = 5 * time.Second
		default:
			c.ReconnectInterval = time.Second
		}
	}
	if c.ReconnectTimeout == 0 {
		c.ReconnectTimeout = defaultReconnTTL
	}
}

// Validate checks c after defaults, naming the field and value it rejects.
func (c Config) Validate() error {
	if err := api.ValidateGroup(c.Group); err != nil {
		return fmt.Errorf("%w group: %v", ErrConfig, err)
	}
	if err := api.ValidateID(c.ID); err != nil {
		return fmt.Errorf("%w id: %v", ErrConfig, err)
	}
	if c.Meta.Group != "" && c.Meta.Group != c.Group {
		return fmt.Errorf("%w meta group %q: differs from group %q", ErrConfig, c.Meta.Group, c.Group)
	}
	if c.Meta.ID != 0 && c.Meta.ID != c.ID {
		return fmt.Errorf("%w meta id %d: differs from id %d", ErrConfig, c.Meta.ID, c.ID)
	}
	switch c.Profile {
	case "", ProfileLocal, ProfileLAN, ProfileWAN:
	default:
		return fmt.Errorf("%w profile %q: want local, lan or wan", ErrConfig, c.Profile)
	}
	if c.Transport == nil {
		if err := api.ValidateAddr("bind", c.BindAddr); err != nil {
			// Port 0 is allowed here: it asks for a free port.
			host, port, serr := net.SplitHostPort(c.BindAddr)
			if serr != nil || host == "" || port != "0" {
				return fmt.Errorf("%w bind: %v", ErrConfig, err)
			}
		}
	}
	if c.AdvertiseAddr != "" {
		if _, _, err := splitAdvertise(c.AdvertiseAddr); err != nil {
			return fmt.Errorf("%w advertise %q: %v", ErrConfig, c.AdvertiseAddr, err)
		}
	}
	if len(c.Join) > maxJoin {
		return fmt.Errorf("%w join: %d addresses, want at most %d", ErrConfig, len(c.Join), maxJoin)
	}
	for _, j := range c.Join {
		if err := api.ValidateAddr("join", j); err != nil {
			return fmt.Errorf("%w join: %v", ErrConfig, err)
		}
	}
	if len(c.ExtraKeys) > 0 && len(c.SecretKey) == 0 {
		return fmt.Errorf("%w: extra keys without a secret key", ErrConfig)
	}
	for _, k := range c.ExtraKeys {
		if err := memberlist.ValidateKey(k); err != nil {
			return fmt.Errorf("%w extra key: %v", ErrConfig, err)
		}
	}
	switch len(c.SecretKey) {
	case 0, 16, 24, 32:
	default:
		return fmt.Errorf("%w secret key: %d bytes, want 16, 24 or 32", ErrConfig, len(c.SecretKey))
	}
	if c.ReconnectInterval < minReconnect || c.ReconnectInterval > maxReconnect {
		return fmt.Errorf("%w reconnect interval %v: want %v to %v", ErrConfig, c.ReconnectInterval, minReconnect, maxReconnect)
	}
	if c.ReconnectTimeout < c.ReconnectInterval {
		return fmt.Errorf("%w reconnect timeout %v: below reconnect interval %v", ErrConfig, c.ReconnectTimeout, c.ReconnectInterval)
	}
	if c.SuspectAfter < 0 || c.SuspectAfter > maxSuspectAfter {
		return fmt.Errorf("%w suspect after %v: want 0 to %v", ErrConfig, c.SuspectAfter, maxSuspectAfter)
	}
	if c.PollInterval < 0 || c.PollInterval > maxPollInterval {
		return fmt.Errorf("%w poll interval %v: want 0 to %v", ErrConfig, c.PollInterval, maxPollInterval)
	}
	return nil
}

// splitAdvertise parses "host" or "host:port" (port 0 when absent).
func splitAdvertise(s string) (string, int, error) {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		if net.ParseIP(s) == nil {
			return "", 0, fmt.Errorf("want an IP or IP:port")
		}
		return s, 0, nil
	}
	if net.ParseIP(host) == nil {
		return "", 0, fmt.Errorf("host %q is not an IP (memberlist advertises IPs)", host)
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 0 || p > 65535 {
		return "", 0, fmt.Errorf("port %q is not in 0..65535", port)
	}
	return host, p, nil
}

// profileConfig returns memberlist's defaults for a profile.
func profileConfig(profile string) *memberlist.Config {
	switch profile {
	case ProfileLocal:
		// memberlist's local profile still takes seconds to declare a
		// member dead; on one machine (tests, the demo) probes can be
		// quicker, so a cut-off side sees the other gone in well under a
		// second and elections do not wait on gossip.
		c := memberlist.DefaultLocalConfig()
		c.ProbeInterval = 200 * time.Millisecond
		c.ProbeTimeout = 100 * time.Millisecond
		c.GossipInterval = 50 * time.Millisecond
		c.SuspicionMult = 2
		c.PushPullInterval = 2 * time.Second
		return c
	case ProfileWAN:
		return memberlist.DefaultWANConfig()
	}
	return memberlist.DefaultLANConfig()
}
