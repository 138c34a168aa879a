package config

import (
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Flag names that choose the layers rather than set a field.
const (
	// FlagProfile names the profile of the defaults.
	FlagProfile = "profile"
	// FlagConfig names the JSON config file.
	FlagConfig = "config"
)

// Kind tells how a command line takes a key's value.
type Kind uint8

// Kinds of keys.
const (
	// KindValue is a single value, parsed from its text.
	KindValue Kind = iota
	// KindBool is a switch.
	KindBool
	// KindList is a comma-separated or repeated list.
	KindList
)

// Key describes one setting for a command line and its help: the file key,
// the flag and environment variable, how the flag takes its value, the
// one-line help (with the unit), and the default (one text for help, and
// one per profile for the doc's table). The command line (cmd/mastership)
// builds its flags from these, so the library needs no command-line
// package.
type Key struct {
	Key, Flag, Env string
	Kind           Kind
	Usage          string
	DefaultText    string
	Defaults       []string // in Profiles() order
}

// NamingKeys describes every key of a Naming, in field order.
func NamingKeys() []Key { return describe(DefaultNaming, namingUsage) }

// AgentKeys describes every key of an Agent, in field order.
func AgentKeys() []Key { return describe(DefaultAgent, agentUsage) }

func describe[T any](defaults func(string) (T, error), usage func(string) string) []Key {
	var out []Key
	for _, k := range keysOf(defaults) {
		kind := KindValue
		switch k.typ.Kind() {
		case reflect.Bool:
			kind = KindBool
		case reflect.Slice:
			kind = KindList
		}
		out = append(out, Key{Key: k.key, Flag: k.flag, Env: k.env, Kind: kind,
			Usage:       fmt.Sprintf("%s%s [$%s]", usage(k.key), unitOf(k.typ), k.env),
			DefaultText: k.defaultText(), Defaults: k.defaults})
	}
	return out
}

// key is a field with its default in each profile, for help and the doc.
type key struct {
	field
	defaults []string // formatted, in Profiles() order
}

func keysOf[T any](defaults func(string) (T, error)) []key {
	var vals []reflect.Value
	for _, p := range Profiles() {
		d, err := defaults(p)
		if err != nil {
			panic(fmt.Sprintf("config: profile %s has no defaults: %v", p, err))
		}
		vals = append(vals, reflect.ValueOf(d))
	}
	var keys []key
	for _, f := range fieldsOf(reflect.TypeFor[T]()) {
		k := key{field: f}
		for _, v := range vals {
			k.defaults = append(k.defaults, formatValue(v.Field(f.index)))
		}
		keys = append(keys, k)
	}
	return keys
}

// defaultText is one value when every profile agrees, else one per profile.
func (k key) defaultText() string {
	if slices.Equal(k.defaults, Profiles()) {
		return "the profile"
	}
	if k.defaults[0] == k.defaults[1] && k.defaults[1] == k.defaults[2] {
		return k.defaults[0]
	}
	var parts []string
	for i, p := range Profiles() {
		parts = append(parts, p+" "+k.defaults[i])
	}
	return strings.Join(parts, ", ")
}

// formatValue writes a default as an operator would type it.
func formatValue(v reflect.Value) string {
	if v.Type() == durationType {
		return fmtDur(time.Duration(v.Int()))
	}
	switch v.Kind() {
	case reflect.String:
		if v.String() == "" {
			return "none"
		}
		return v.String()
	case reflect.Slice:
		if v.Len() == 0 {
			return "none"
		}
		return strings.Join(v.Interface().([]string), ",")
	case reflect.Bool:
		return strconv.FormatBool(v.Bool())
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return strconv.FormatInt(v.Int(), 10)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		if v.Uint() == 0 {
			return "none"
		}
		return strconv.FormatUint(v.Uint(), 10)
	}
	panic(fmt.Sprintf("config: field of type %s has no string form", v.Type()))
}

func unitOf(t reflect.Type) string {
	switch {
	case t == durationType:
		return " (duration such as 1s or 250ms)"
	case t.Kind() == reflect.Slice:
		return " (comma-separated or repeated)"
	case t.Kind() == reflect.Int || t.Kind() == reflect.Uint64:
		return " (integer)"
	}
	return ""
}

// namingUsage is the one-line help of a Naming key; the field comments in
// naming.go give the reasons and limits.
func namingUsage(key string) string {
	switch key {
	case "bind":
		return "`HOST:PORT` serving agents, the command line and the HTTP API"
	case "data_dir":
		return "`DIR` of the node's raft log, snapshots and state, created with mode 0700; required"
	case "advertise":
		return "`HOST:PORT` the other naming nodes reach this one at (its ID); default -bind"
	case "peers":
		return "advertised `HOST:PORT` of every initial voter, this node's included, to bootstrap a cluster; at most 9"
	case "join":
		return "`HOST:PORT` of running naming nodes to ask to add this one as a voter; not with peers"
	case "election_timeout":
		return "raft heartbeat and election timeout between naming nodes; 10ms to 1m"
	case "default_policy":
		return "retention policy of groups that ask for none: lowest-id or priority"
	case "session_ttl":
		return "member session lifetime granted when a join asks for none; 100ms to 10m"
	case "registration_ttl":
		return "master registration lifetime granted when a register asks for none; 100ms to 10m"
	case "max_ttl":
		return "cap on any TTL a request asks for; at least both TTLs, at most 24h"
	case "sweep_interval":
		return "period of expiry and re-checks; 10ms to 1m, at most half of each TTL"
	case "conflict_window":
		return "time to gather competing registrations before deciding; 0 to 1s, below session-ttl"
	case "restart_grace":
		return "extra lifetime of sessions and registrations loaded at start; 0 to 10m"
	case "trigger_timeout":
		return "bound on one trigger delivery; 10ms to 30s"
	case "trigger_backoff_min":
		return "first retry delay of a failed trigger delivery; 1ms to 10m"
	case "trigger_backoff_max":
		return "longest retry delay of a failed trigger delivery; at least the min, at most 10m"
	case "max_events_per_group":
		return "events kept per group, oldest dropped first; 16 to 1000000"
	case "max_events":
		return "events kept over all groups, the oldest of any group dropped first; 1000 to 100000000"
	case "max_groups":
		return "cap on the groups kept; a join or registration creating one more is refused; 1 to 1000000"
	case "max_conns":
		return "cap on connections open at once; 16 to 100000"
	case "pprof":
		return "serve Go's profiler at /debug/pprof/ (operator token where an ACL is on)"
	case "token":
		return "`SECRET` presented to agents for triggers and probes; prefer token-file or the environment"
	}
	return securityUsage(key, "node")
}

// securityUsage is the help of the trust keys agents and naming nodes
// share; owner names the process in it.
func securityUsage(key, owner string) string {
	switch key {
	case "acl":
		return "JSON `FILE` of tokens and capabilities; empty leaves the " + owner + " open"
	case "token_file":
		return "`FILE` whose first line is the token"
	case "tls_ca":
		return "PEM `FILE` of the cluster's CA; with tls-cert and tls-key, TLS with client certificates"
	case "tls_cert":
		return "PEM `FILE` of this process's certificate"
	case "tls_key":
		return "PEM `FILE` of this process's key"
	}
	return ""
}

// agentUsage is the one-line help of an Agent key; the field comments in
// agent.go give the reasons and limits.
func agentUsage(key string) string {
	switch key {
	case "group":
		return "`GROUP` to replicate: [a-z0-9][a-z0-9._-]{0,62}; required"
	case "id":
		return "agent `ID`, unique in the group, not 0; required"
	case "bind":
		return "gossip `HOST:PORT` (TCP and UDP)"
	case "advertise":
		return "gossip `HOST:PORT` other agents reach this one at, when not bind"
	case "join":
		return "gossip `HOST:PORT` of agents to join and rejoin after partitions; at most 64"
	case "naming":
		return "`HOST:PORT` of the naming node, or of several, comma-separated, for a naming cluster"
	case "api":
		return fmt.Sprintf("`HOST:PORT` of the agent API; empty means bind's host and port + %d", APIPortOffset)
	case "priority":
		return "election and retention rank, higher wins; -1000000 to 1000000"
	case "mode":
		return "consistency mode of the group: strict or available"
	case "policy":
		return "retention policy asked of the naming node: lowest-id, priority, or empty for its default"
	case "data_dir":
		return "`DIR` of the log, snapshots and divergence records; empty keeps them in memory"
	case "encrypt":
		return "gossip key, base64 of 16, 24 or 32 bytes; empty for none"
	case "fault_control":
		return "enable the test-only fault-injection API"
	case "pprof":
		return "serve Go's profiler at /debug/pprof/ on the API address (operator token where an ACL is on)"
	case "tick_unit":
		return "wall time of one core tick; 1ms to 10s"
	case "heartbeat_ticks":
		return "ticks between master heartbeats; 1 to 1000"
	case "election_ticks":
		return "ticks of master silence before a back-up suspects it; above 2 x heartbeat-ticks"
	case "election_stagger_ticks":
		return "election delay per priority rank, in ticks; 1 to election-ticks"
	case "monitor_count":
		return "self-monitor period in monitor units; 1 to 100000"
	case "monitor_unit":
		return "unit of the self-monitor period; 1ms to 1m, period 10ms to 10m"
	case "on_failure":
		return "action when recovery fails: quarantine or terminate"
	case "session_ttl":
		return "member session lifetime asked of the naming node; 100ms to 10m, at least 3 heartbeat and monitor periods"
	case "registration_ttl":
		return "master registration lifetime asked of the naming node; limits as session-ttl"
	case "reconnect_interval":
		return "period of rejoining failed members and join addresses; 10ms to 10m"
	case "write_timeout":
		return "replication deadline of a write in available mode; 10ms to 5m"
	case "max_key_bytes":
		return "largest key of a request, in bytes; 1 to 65536"
	case "max_value_bytes":
		return "largest value of a request, in bytes; key + value at most 524288"
	case "gossip_profile":
		return "memberlist timings: local, lan or wan"
	case "max_conns":
		return "cap on API connections open at once (HTTP and message streams); 16 to 100000"
	case "token":
		return "`SECRET` presented to peers and the naming node; prefer token-file or the environment"
	case "on_role_change":
		return "executable `PATH` run on every change of role, epoch or followed master, and once at start: ROLE PREVIOUS_ROLE GROUP ID, MASTERSHIP_* environment"
	case "check":
		return "executable `PATH` that checks the managed service: exit 0 is healthy; not with -check-http"
	case "check_http":
		return "`URL` that checks the managed service: a 2xx answer is healthy; not with -check"
	case "check_interval":
		return "time between health checks, and the most one may take; 10ms to 10m"
	case "check_failures":
		return "failed checks in a row that make the agent unhealthy (no campaign; a master hands over); 1 to 100"
	case "pre_promote":
		return "executable `PATH` run after winning an election, before serving or registering as master; non-zero exit or timeout vetoes"
	case "promote_backoff":
		return "time an agent whose promotion was vetoed neither campaigns nor asks for a handover; 10ms to 1h"
	case "start_grace":
		return "time an agent started with -join waits to meet every join address before it may campaign; 0 (none) to 10m"
	case "leave_timeout":
		return "time a master told to stop (SIGTERM, SIGINT) waits for a back-up to take over before it leaves anyway; 0 (no handover) to 10m"
	case "hook_timeout":
		return "time each hook run may take before it is killed with what it started; 10ms to 10m"
	case "snapshot_entries":
		return "entries applied between two snapshots of the agent's own (the stored log is cut behind each); 0 or 64 to 100000000"
	case "snapshot_bytes":
		return "bytes of operations applied between two snapshots; 0 or 65536 to 68719476736"
	case "retain_entries":
		return "available mode: entries a snapshot waits for members that may lack some (a split brain's divergent writes) before it compacts past them; 0 (16 x snapshot-entries, at least 10000) or 64 to 1000000000"
	case "expect":
		return "number of agents the group is meant to have; required in strict mode (a strict quorum is a majority of it); 0 to 1000, 0 (available mode only) counts the members known"
	}
	return securityUsage(key, "agent")
}
