// Package config holds the configuration of agents and naming nodes:
// defaults, profiles, validation, files, environment variables and flags.
//
// # Usage
//
// The package has no command-line dependency: it describes every key
// (NamingKeys, AgentKeys: file key, flag, environment variable, help,
// default per profile), and the `mastership` binary builds its flags from
// those and loads the result with LoadAgent or LoadNaming:
//
//	for _, k := range config.AgentKeys() {
//		flags = append(flags, &cli.StringFlag{Name: k.Flag, Usage: k.Usage, DefaultText: k.DefaultText})
//	}
//	cfg, err := config.LoadAgent(config.Sources{Env: os.Environ(), Flags: set}) // validated
//
// Embedders and tests build a config without a command line, from the
// defaults of a profile:
//
//	cfg, _ := config.DefaultAgent(config.ProfileLocal)
//	cfg.Group, cfg.ID = "orders", 1
//	if err := cfg.Validate(); err != nil { ... }
//
// or from every source at once, with the environment passed in:
//
//	cfg, err := config.LoadAgent(config.Sources{File: "agent.json", Env: os.Environ()})
//
// # Profiles
//
// As memberlist's DefaultLocalConfig, DefaultLANConfig and DefaultWANConfig,
// three profiles set every timing at once: "local" (short timings for tests
// and demos on one machine), "lan" (the default) and "wan" (three to five
// times longer than lan). Pick one with -profile or MASTERSHIP_PROFILE.
//
// # Precedence
//
// A setting comes from the first of these that has it, highest first:
//
//  1. a command-line flag the user set (-session-ttl 5s);
//  2. an environment variable MASTERSHIP_<KEY>, the key in upper case
//     (MASTERSHIP_SESSION_TTL=5s); empty variables are ignored;
//  3. the JSON config file given by -config FILE or MASTERSHIP_CONFIG
//     ({"session_ttl": "5s"});
//  4. the defaults of the profile.
//
// One mechanism serves both Naming and Agent: the keys are the json tags of
// the struct, the flags are the keys with '-' for '_', and the environment
// variables are MASTERSHIP_ and the key in upper case. Durations are written
// as Go durations ("250ms", "2s", "1m30s") everywhere, as JSON strings in the
// file; a bare JSON number is rejected rather than read as nanoseconds.
// Lists (join) are JSON arrays in the file and comma-separated in variables
// and flags; a list flag may also be repeated (-join a:1 -join b:2). The
// profile itself and the file path come only from flags and variables.
//
// The file must be one JSON object; a key that names no field is an error
// (a typo must not leave a default silently in place), and so is null.
// MASTERSHIP_ variables that name no field are ignored, because naming
// nodes, agents and the binary's global flags share the prefix. Every bad
// value is reported with its source (file path and key, variable name, or
// flag) and all of them at once; then the result is validated and every
// problem is reported with the flag name of the field and the value.
//
// # Keys
//
// The naming node (`mastership naming`, type Naming):
//
//	| key | env | flag | local | lan | wan |
//	|---|---|---|---|---|---|
//	| bind | MASTERSHIP_BIND | -bind | 127.0.0.1:7400 | 127.0.0.1:7400 | 127.0.0.1:7400 |
//	| data_dir | MASTERSHIP_DATA_DIR | -data-dir | none | none | none |
//	| advertise | MASTERSHIP_ADVERTISE | -advertise | none | none | none |
//	| peers | MASTERSHIP_PEERS | -peers | none | none | none |
//	| join | MASTERSHIP_JOIN | -join | none | none | none |
//	| election_timeout | MASTERSHIP_ELECTION_TIMEOUT | -election-timeout | 100ms | 1s | 3s |
//	| default_policy | MASTERSHIP_DEFAULT_POLICY | -default-policy | lowest-id | lowest-id | lowest-id |
//	| session_ttl | MASTERSHIP_SESSION_TTL | -session-ttl | 2s | 10s | 30s |
//	| registration_ttl | MASTERSHIP_REGISTRATION_TTL | -registration-ttl | 2s | 10s | 30s |
//	| max_ttl | MASTERSHIP_MAX_TTL | -max-ttl | 10m | 10m | 10m |
//	| sweep_interval | MASTERSHIP_SWEEP_INTERVAL | -sweep-interval | 100ms | 1s | 3s |
//	| conflict_window | MASTERSHIP_CONFLICT_WINDOW | -conflict-window | 20ms | 20ms | 100ms |
//	| restart_grace | MASTERSHIP_RESTART_GRACE | -restart-grace | 4s | 20s | 1m |
//	| trigger_timeout | MASTERSHIP_TRIGGER_TIMEOUT | -trigger-timeout | 250ms | 1s | 5s |
//	| trigger_backoff_min | MASTERSHIP_TRIGGER_BACKOFF_MIN | -trigger-backoff-min | 50ms | 50ms | 200ms |
//	| trigger_backoff_max | MASTERSHIP_TRIGGER_BACKOFF_MAX | -trigger-backoff-max | 2s | 2s | 10s |
//	| max_events_per_group | MASTERSHIP_MAX_EVENTS_PER_GROUP | -max-events-per-group | 10000 | 10000 | 10000 |
//	| max_events | MASTERSHIP_MAX_EVENTS | -max-events | 200000 | 200000 | 200000 |
//	| max_groups | MASTERSHIP_MAX_GROUPS | -max-groups | 10000 | 10000 | 10000 |
//	| max_conns | MASTERSHIP_MAX_CONNS | -max-conns | 1024 | 1024 | 1024 |
//	| pprof | MASTERSHIP_PPROF | -pprof | false | false | false |
//	| acl | MASTERSHIP_ACL | -acl | none | none | none |
//	| token | MASTERSHIP_TOKEN | -token | none | none | none |
//	| token_file | MASTERSHIP_TOKEN_FILE | -token-file | none | none | none |
//	| tls_ca | MASTERSHIP_TLS_CA | -tls-ca | none | none | none |
//	| tls_cert | MASTERSHIP_TLS_CERT | -tls-cert | none | none | none |
//	| tls_key | MASTERSHIP_TLS_KEY | -tls-key | none | none | none |
//
// The agent (`mastership agent`, type Agent); group and id are required,
// and api "none" means bind's host with bind's port + APIPortOffset (1000):
//
//	| key | env | flag | local | lan | wan |
//	|---|---|---|---|---|---|
//	| group | MASTERSHIP_GROUP | -group | none | none | none |
//	| id | MASTERSHIP_ID | -id | none | none | none |
//	| bind | MASTERSHIP_BIND | -bind | 127.0.0.1:7946 | 127.0.0.1:7946 | 127.0.0.1:7946 |
//	| advertise | MASTERSHIP_ADVERTISE | -advertise | none | none | none |
//	| join | MASTERSHIP_JOIN | -join | none | none | none |
//	| naming | MASTERSHIP_NAMING | -naming | 127.0.0.1:7400 | 127.0.0.1:7400 | 127.0.0.1:7400 |
//	| api | MASTERSHIP_API | -api | none | none | none |
//	| priority | MASTERSHIP_PRIORITY | -priority | 0 | 0 | 0 |
//	| mode | MASTERSHIP_MODE | -mode | available | available | available |
//	| policy | MASTERSHIP_POLICY | -policy | none | none | none |
//	| data_dir | MASTERSHIP_DATA_DIR | -data-dir | none | none | none |
//	| encrypt | MASTERSHIP_ENCRYPT | -encrypt | none | none | none |
//	| fault_control | MASTERSHIP_FAULT_CONTROL | -fault-control | false | false | false |
//	| pprof | MASTERSHIP_PPROF | -pprof | false | false | false |
//	| tick_unit | MASTERSHIP_TICK_UNIT | -tick-unit | 10ms | 50ms | 200ms |
//	| heartbeat_ticks | MASTERSHIP_HEARTBEAT_TICKS | -heartbeat-ticks | 5 | 4 | 5 |
//	| election_ticks | MASTERSHIP_ELECTION_TICKS | -election-ticks | 30 | 20 | 25 |
//	| election_stagger_ticks | MASTERSHIP_ELECTION_STAGGER_TICKS | -election-stagger-ticks | 10 | 6 | 5 |
//	| monitor_count | MASTERSHIP_MONITOR_COUNT | -monitor-count | 100 | 100 | 100 |
//	| monitor_unit | MASTERSHIP_MONITOR_UNIT | -monitor-unit | 3ms | 3ms | 3ms |
//	| on_failure | MASTERSHIP_ON_FAILURE | -on-failure | quarantine | quarantine | quarantine |
//	| session_ttl | MASTERSHIP_SESSION_TTL | -session-ttl | 2s | 10s | 30s |
//	| registration_ttl | MASTERSHIP_REGISTRATION_TTL | -registration-ttl | 2s | 10s | 30s |
//	| reconnect_interval | MASTERSHIP_RECONNECT_INTERVAL | -reconnect-interval | 200ms | 1s | 5s |
//	| write_timeout | MASTERSHIP_WRITE_TIMEOUT | -write-timeout | 500ms | 2s | 10s |
//	| max_key_bytes | MASTERSHIP_MAX_KEY_BYTES | -max-key-bytes | 1024 | 1024 | 1024 |
//	| max_value_bytes | MASTERSHIP_MAX_VALUE_BYTES | -max-value-bytes | 65536 | 65536 | 65536 |
//	| expect | MASTERSHIP_EXPECT | -expect | 0 | 0 | 0 |
//	| max_conns | MASTERSHIP_MAX_CONNS | -max-conns | 1024 | 1024 | 1024 |
//	| acl | MASTERSHIP_ACL | -acl | none | none | none |
//	| token | MASTERSHIP_TOKEN | -token | none | none | none |
//	| token_file | MASTERSHIP_TOKEN_FILE | -token-file | none | none | none |
//	| tls_ca | MASTERSHIP_TLS_CA | -tls-ca | none | none | none |
//	| tls_cert | MASTERSHIP_TLS_CERT | -tls-cert | none | none | none |
//	| tls_key | MASTERSHIP_TLS_KEY | -tls-key | none | none | none |
//	| on_role_change | MASTERSHIP_ON_ROLE_CHANGE | -on-role-change | none | none | none |
//	| pre_promote | MASTERSHIP_PRE_PROMOTE | -pre-promote | none | none | none |
//	| promote_backoff | MASTERSHIP_PROMOTE_BACKOFF | -promote-backoff | 2s | 10s | 30s |
//	| check | MASTERSHIP_CHECK | -check | none | none | none |
//	| check_http | MASTERSHIP_CHECK_HTTP | -check-http | none | none | none |
//	| check_interval | MASTERSHIP_CHECK_INTERVAL | -check-interval | 200ms | 1s | 5s |
//	| check_failures | MASTERSHIP_CHECK_FAILURES | -check-failures | 3 | 3 | 3 |
//	| hook_timeout | MASTERSHIP_HOOK_TIMEOUT | -hook-timeout | 30s | 30s | 30s |
//	| start_grace | MASTERSHIP_START_GRACE | -start-grace | 1s | 5s | 20s |
//	| leave_timeout | MASTERSHIP_LEAVE_TIMEOUT | -leave-timeout | 5s | 5s | 5s |
//	| snapshot_entries | MASTERSHIP_SNAPSHOT_ENTRIES | -snapshot-entries | 2000 | 10000 | 10000 |
//	| snapshot_bytes | MASTERSHIP_SNAPSHOT_BYTES | -snapshot-bytes | 8388608 | 67108864 | 67108864 |
//	| retain_entries | MASTERSHIP_RETAIN_ENTRIES | -retain-entries | 0 | 0 | 0 |
//	| gossip_profile | MASTERSHIP_GOSSIP_PROFILE | -gossip-profile | local | lan | wan |
//
// Limits, units and the reasons for each default are in the comments of the
// fields of Naming and Agent, and in the help of each flag.
package config
