// Package wire is the agent API's JSON shapes: what an agent serves and
// what every client of it (agent/client, the command line, the demo, the
// naming node's probe) decodes. It is a leaf: it imports nothing of the
// agent, so a client pulls in no runtime.
package wire

import (
	"time"

	"github.com/mastership/mastership/naming/api"
)

// Info is GET /v1/info: one agent's state, as `mastership info -json`
// prints it.
type Info struct {
	// Index counts the agent's changes of role, epoch or master: a
	// blocking GET /v1/info?index=N answers once it passes N.
	Index uint64 `json:"index"`
	ID    uint64 `json:"id"`
	Group string `json:"group"`
	Role  string `json:"role"`
	// Epoch is the agent's epoch, {"term", "id"} as everywhere.
	Epoch    api.Epoch `json:"epoch"`
	Master   uint64    `json:"master"`
	Applied  uint64    `json:"applied"`
	Commit   uint64    `json:"commit"`
	Last     uint64    `json:"last"`
	Digest   string    `json:"digest"`
	Priority int       `json:"priority"`
	Mode     string    `json:"mode"`
	Serving  bool      `json:"serving"`
	// Paused: the group is in maintenance (mastership pause).
	Paused bool `json:"paused,omitempty"`
	// Refused counts messages and announcements refused for an epoch out
	// of range or not in their sender's name.
	Refused uint64 `json:"refused_inputs"`
	// Transfer is the back-up a master hands mastership over to (0: none).
	Transfer uint64 `json:"transfer,omitempty"`
	// Pinned: a master in office through an operator's switchover; nobody
	// asks it to hand over by priority until the next election.
	Pinned bool `json:"pinned,omitempty"`
	// HandoverHeld: the agent asks for no planned handover now, whatever
	// its rank: a vetoed promotion's back-off runs, the group is paused,
	// or the agent is stopping.
	HandoverHeld bool   `json:"handover_held,omitempty"`
	API          string `json:"api"`
	Gossip       string `json:"gossip"`
	// JoinProof is the hash of the proof of the agent's last naming join
	// (api.JoinProofOf): the naming node checks it before the agent's
	// rejoin replaces its live session.
	JoinProof string    `json:"join_proof,omitempty"`
	Monitor   *Counters `json:"monitor,omitempty"`
	// Log describes the replication log: snapshots and compaction.
	Log *LogInfo `json:"log,omitempty"`
	// LastCheck is the self-monitor's last check; Trigger, Decision and
	// Recovery are its fields of the same names.
	LastCheck *Check `json:"last_check,omitempty"`
	Trigger   string `json:"trigger,omitempty"`
	Decision  string `json:"decision,omitempty"`
	Recovery  string `json:"recovery,omitempty"`
	// LastAction is the last check that recovered, reasserted or released.
	LastAction *Check `json:"last_action,omitempty"`
	// Hooks are the role hooks and their recent runs (package agent/hook).
	Hooks *Hooks `json:"hooks,omitempty"`
	// Service is the managed service's health, when the agent checks it.
	Service *ServiceHealth `json:"service,omitempty"`
}

// ServiceHealth is the managed service's health as -check or -check-http
// sees it.
type ServiceHealth struct {
	Check    string   `json:"check"`
	Healthy  bool     `json:"healthy"`
	Failures int      `json:"failures"` // failed checks in a row
	Checks   uint64   `json:"checks"`
	Last     *HookRun `json:"last,omitempty"`
}

// Role is GET /v1/health, /v1/role/master and /v1/role/backup: 200 with
// OK true when the agent is what the endpoint asks (running and not
// quarantined; the serving master; a caught-up back-up of the retained
// master), 503 with the reason otherwise.
type Role struct {
	OK         bool      `json:"ok"`
	Reason     string    `json:"reason,omitempty"`
	ID         uint64    `json:"id"`
	Group      string    `json:"group"`
	Role       string    `json:"role"`
	Epoch      api.Epoch `json:"epoch"`
	Master     uint64    `json:"master"`
	MasterAddr string    `json:"master_addr,omitempty"`
	Serving    bool      `json:"serving"`
}

// SwitchoverRequest is POST /v1/switchover: move mastership to To (0:
// the best-ranked member that qualifies).
type SwitchoverRequest struct {
	Group string `json:"group,omitempty"` // checked when set
	To    uint64 `json:"to"`
}

// Switchover is the answer of a switchover that happened: mastership moved
// From -> To at Epoch; GapMS is how long the old master took no write.
type Switchover struct {
	Group string    `json:"group"`
	From  uint64    `json:"from"`
	To    uint64    `json:"to"`
	Epoch api.Epoch `json:"epoch"`
	GapMS float64   `json:"gap_ms"`
}

// Hooks are an agent's role hooks: what runs, and how the runs went.
type Hooks struct {
	OnRoleChange string    `json:"on_role_change,omitempty"`
	PrePromote   string    `json:"pre_promote,omitempty"`
	Runs         uint64    `json:"runs"`
	Failed       uint64    `json:"failed"`
	Recent       []HookRun `json:"recent,omitempty"` // oldest first
}

// HookRun is one run of a hook.
type HookRun struct {
	Hook       string    `json:"hook"` // on-role-change, pre-promote, or callback
	Role       string    `json:"role"`
	Epoch      api.Epoch `json:"epoch"`
	Start      time.Time `json:"start"`
	DurationMS float64   `json:"duration_ms"`
	// ExitCode is the executable's exit code; -1 when it did not start,
	// was killed at its timeout, or died of a signal.
	ExitCode   int    `json:"exit_code"`
	TimedOut   bool   `json:"timed_out,omitempty"`
	Error      string `json:"error,omitempty"`
	StderrTail string `json:"stderr_tail,omitempty"`
}

// OK tells whether the run succeeded.
func (o HookRun) OK() bool { return o.ExitCode == 0 && o.Error == "" }

// Counters are the self-monitor's: checks run, recoveries started.
type Counters struct {
	Checks     uint64 `json:"checks"`
	Recoveries uint64 `json:"recoveries"`
}

// Check describes one run of the self-monitor's detector and what it did.
type Check struct {
	Time       time.Time `json:"time"`
	Trigger    string    `json:"trigger"`
	Decision   string    `json:"decision"`
	Retained   uint64    `json:"retained"`
	DetectMS   float64   `json:"detect_ms"`
	Recovery   string    `json:"recovery,omitempty"`
	RecoveryMS float64   `json:"recovery_ms,omitempty"`
	Error      string    `json:"error,omitempty"`
}

// Member is one entry of GET /v1/members, the agent's gossip view.
type Member struct {
	ID    uint64 `json:"id"`
	Group string `json:"group"`
	Addr  string `json:"addr"`
	API   string `json:"api"`
	// Role is the member's role while gossip holds it alive, "unknown"
	// while it is suspect or dead; LastRole is what it last claimed.
	Role     string `json:"role"`
	LastRole string `json:"last_role"`
	// Epoch is the member's epoch, as in Info.
	Epoch  api.Epoch `json:"epoch"`
	Master uint64    `json:"master"`
	Health string    `json:"health"`
	// Service is the member's managed service health (healthy,
	// unhealthy; empty when it runs no check).
	Service string `json:"service,omitempty"`
	// Followed marks the master the asked agent follows (itself, when it
	// is the master).
	Followed bool `json:"followed,omitempty"`
}

// KVRequest is a client request. Key, Value and Expect are UTF-8 text (the
// JSON API refuses other bytes rather than mangle them); Client and Seq make
// a retry apply once. A delete of an absent key succeeds (ok) with found
// false.
type KVRequest struct {
	Op           string  `json:"op"`
	Key          string  `json:"key"`
	Value        *string `json:"value,omitempty"`
	Expect       *string `json:"expect,omitempty"`
	ExpectAbsent bool    `json:"expect_absent,omitempty"`
	Client       uint64  `json:"client,omitempty"`
	Seq          uint64  `json:"seq,omitempty"`
}

// KVResponse answers a KVRequest; every reply carries the master's epoch.
type KVResponse struct {
	OK      bool      `json:"ok"`
	Found   bool      `json:"found"`
	Value   *string   `json:"value,omitempty"`
	Error   string    `json:"error,omitempty"`
	Code    string    `json:"code,omitempty"`
	Epoch   api.Epoch `json:"epoch"`
	Index   uint64    `json:"index,omitempty"`
	Master  uint64    `json:"master,omitempty"`
	MasterA string    `json:"master_addr,omitempty"`
}

// Error is the body of an agent API reply other than 200 (but a kv
// request's, which is a KVResponse with the same fields): Code is one of
// the naming node's (api.Code) or of the codes below; a back-up that
// refuses as not master names its master.
type Error struct {
	Code       string `json:"code"`
	Message    string `json:"error"`
	Master     uint64 `json:"master,omitempty"`
	MasterAddr string `json:"master_addr,omitempty"`
}

// Error codes of the agent API beyond the naming node's.
const (
	CodeNotMaster  = "not-master"
	CodeNotServing = "not-serving"
	CodeTimeout    = "timeout"
)

// FaultRequest drives the agent's fault control (tests and demos only).
type FaultRequest struct {
	Action string        `json:"action"` // partition, heal, drop, delay
	Peers  []string      `json:"peers,omitempty"`
	P      float64       `json:"p,omitempty"`
	Delay  time.Duration `json:"delay,omitempty"`
}

// KeyringRequest is the body of POST /v1/keyring: op is list, install, use
// or remove; key is a base64 key (not for list).
type KeyringRequest struct {
	Op  string `json:"op"`
	Key string `json:"key,omitempty"`
}

// KeyringResult is one agent's outcome of a keyring operation, as
// `mastership keyring -json` prints them.
type KeyringResult struct {
	ID      uint64   `json:"id"`
	Group   string   `json:"group"`
	API     string   `json:"api"`
	OK      bool     `json:"ok"`
	Error   string   `json:"error,omitempty"`
	Primary string   `json:"primary,omitempty"`
	Keys    []string `json:"keys,omitempty"`
}

// Record is one divergent write, as the agent's store keeps it and GET
// /v1/divergence serves it: an entry a losing
// master's side held that the retained master never saw. Operators list,
// replay through the current master, or discard records.
type Record struct {
	// ID is assigned by the store: increasing, never reused, even after
	// the record is deleted or the store reopened.
	ID uint64 `json:"id" codec:"id"`
	// Group is the group whose log held the entry.
	Group string `json:"group" codec:"g"`
	// Epoch and Index are the entry's stamp.
	Epoch api.Epoch `json:"epoch" codec:"e"`
	Index uint64    `json:"index" codec:"i"`
	// Client and Seq identify the client request, so that a replay through
	// the current master applies at most once.
	Client uint64 `json:"client" codec:"c"`
	Seq    uint64 `json:"seq" codec:"s"`
	// Op is the operation as logged (msgpack of kv.Op).
	Op []byte `json:"op" codec:"o"`
	// Acked reports whether the write had been committed (acknowledged to
	// the client) on its side.
	Acked bool `json:"acked" codec:"a"`
	// Retained is the ID of the master retained when the record was made.
	Retained uint64 `json:"retained" codec:"r"`
	// Recorded is when the record was made; AddRecords sets it from the
	// store's clock when zero. Stored times come back in UTC without a
	// monotonic reading.
	Recorded time.Time `json:"recorded" codec:"t"`
	// Replayed is set by MarkReplayed after a successful replay.
	Replayed bool `json:"replayed" codec:"p"`
	// Uncompared, when set, says that this side's log had been compacted
	// up to that index before the recovery that made the record could
	// find the fork with the master: the writes this side applied up to
	// it that diverged are not in records of their own, only in the state
	// record of that recovery (State), when one was kept. Records of that
	// recovery all carry it.
	Uncompared uint64 `json:"uncompared_before,omitempty" codec:"u"`
	// State, when set, makes this record the state of this side's state
	// machine when the recovery began (its snapshot, at Index), kept
	// because its log had been compacted past the fork (Uncompared): the
	// writes this side applied before Uncompared that diverged are in it.
	// The snapshot is not in Op but apart (GET
	// /v1/divergence/{id}/state), StateBytes long. It is shown and
	// discarded like any record but not replayed: an operator compares it
	// with the master's state.
	State      bool `json:"state,omitempty" codec:"st"`
	StateBytes int  `json:"state_bytes,omitempty" codec:"sb"`
}

// Discarded answers DELETE /v1/divergence/{id}.
type Discarded struct {
	Discarded uint64 `json:"discarded"`
}

// LogInfo is the log part of Info.
type LogInfo struct {
	// SnapshotIndex is the index of the latest snapshot (taken on the
	// agent's schedule, installed from a master, or loaded at start);
	// Snapshots counts those taken on the schedule since start.
	SnapshotIndex uint64 `json:"snapshot_index"`
	Snapshots     uint64 `json:"snapshots"`
	// First and Entries say which entries the in-memory log holds: from
	// First, Entries of them (the window behind the snapshot and what
	// followed it).
	First   uint64 `json:"first"`
	Entries int    `json:"entries"`
	// DataBytes is the size of the files in the data directory (0 for an
	// agent without one).
	DataBytes int64 `json:"data_bytes"`
}

// Histogram is a distribution of durations in seconds: Counts[i] counts
// the observations at or below Bounds[i] and above the bound before it,
// Counts[len(Bounds)] those above the last bound.
type Histogram struct {
	Bounds []float64 `json:"bounds"`
	Counts []uint64  `json:"counts"`
	Sum    float64   `json:"sum"`
	Count  uint64    `json:"count"`
}

// NewHistogram returns an empty histogram over bounds, which must rise.
func NewHistogram(bounds []float64) Histogram {
	return Histogram{Bounds: bounds, Counts: make([]uint64, len(bounds)+1)}
}

// Observe adds one observation of v seconds.
func (h *Histogram) Observe(v float64) {
	i := 0
	for i < len(h.Bounds) && v > h.Bounds[i] {
		i++
	}
	h.Counts[i]++
	h.Sum += v
	h.Count++
}

// Clone returns a copy that shares nothing with h.
func (h Histogram) Clone() Histogram {
	h.Counts = append([]uint64(nil), h.Counts...)
	return h
}

// CheckCount counts the self-monitor's checks of one trigger kind and
// decision.
type CheckCount struct {
	Trigger  string `json:"trigger"`
	Decision string `json:"decision"`
	Count    uint64 `json:"count"`
}

// MonitorStats is what the self-monitor counts since it started, for the
// agent's metrics: checks by trigger and decision, recoveries by outcome
// and how long they and each of their steps took.
type MonitorStats struct {
	Checks []CheckCount `json:"checks"`
	// Recoveries counts the recoveries that ended, by outcome: "ok",
	// "failed" or "abandoned".
	Recoveries map[string]uint64 `json:"recoveries"`
	// RecoverySeconds is the duration of the recoveries that ended.
	RecoverySeconds Histogram `json:"recovery_seconds"`
	// StepSeconds is the duration of each recovery step that answered,
	// by step: "keep-divergence", "fetch-state", "install".
	StepSeconds map[string]Histogram `json:"step_seconds"`
}
