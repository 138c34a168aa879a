package config

import (
	"time"

	"github.com/hashicorp/go-hclog"
)

// Naming configures a naming node (`mastership naming`). Durations are wall
// time: the naming node is I/O at the edge, its decisions take "now" as input.
type Naming struct {
	// Bind is the one host:port that serves agents (msgpack RPC), the command
	// line and the HTTP JSON API. Default "127.0.0.1:7400".
	Bind string `json:"bind"`

	// DataDir holds the node's store (naming.db). Required; created if
	// missing with mode 0700.
	DataDir string `json:"data_dir"`

	// DefaultPolicy is the retention policy of a group created without one:
	// "lowest-id" (default, as in the patent) or "priority".
	DefaultPolicy string `json:"default_policy"`

	// SessionTTL is the member session lifetime granted when a join asks for
	// none. Default 10s (local profile 2s); limits 100ms to 10m.
	SessionTTL time.Duration `json:"session_ttl"`

	// RegistrationTTL is the registration lifetime granted when a register
	// asks for none. Default 10s (local profile 2s); limits 100ms to 10m.
	RegistrationTTL time.Duration `json:"registration_ttl"`

	// MaxTTL caps any TTL a request asks for. Default 10m.
	MaxTTL time.Duration `json:"max_ttl"`

	// SweepInterval is how often sessions and registrations are expired and
	// every group is re-checked for several live registrations. Default 1s
	// (local profile 100ms); limits 10ms to 1m; at most SessionTTL/2.
	SweepInterval time.Duration `json:"sweep_interval"`

	// ConflictWindow is how long the node gathers competing registrations of
	// one group, once a conflict is seen, before it decides once for all of
	// them. Default 20ms; limits 0 to 1s; below SessionTTL.
	ConflictWindow time.Duration `json:"conflict_window"`

	// RestartGrace is added to every session and registration loaded from
	// the store at start, so that members have time to renew instead of all
	// expiring at once. Default 2 x SessionTTL; limits 0 to 10m.
	RestartGrace time.Duration `json:"restart_grace"`

	// TriggerTimeout bounds one delivery of a trigger to a member. Default
	// 1s (local profile 250ms); limits 10ms to 30s.
	TriggerTimeout time.Duration `json:"trigger_timeout"`

	// TriggerBackoffMin and TriggerBackoffMax bound the delay between
	// retries of a failed trigger delivery (doubling from min to max).
	// Defaults 50ms and 2s; min at least 1ms, max at least min.
	TriggerBackoffMin time.Duration `json:"trigger_backoff_min"`
	TriggerBackoffMax time.Duration `json:"trigger_backoff_max"`

	// MaxEventsPerGroup bounds each group's event history; the oldest
	// events are dropped first. Default 10000; limits 16 to 1,000,000.
	MaxEventsPerGroup int `json:"max_events_per_group"`

	// Logger receives the node's logs; nil means a null logger.
	Logger hclog.Logger `json:"-"`
}
