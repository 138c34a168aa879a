package agent

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/mastership/mastership/agent/core"
	"github.com/mastership/mastership/agent/wire"
	"github.com/mastership/mastership/naming/api"
)

// StatsReporter is implemented by a Monitor that counts its checks and
// recoveries for the agent's metrics (package recover).
type StatsReporter interface {
	Stats() wire.MonitorStats
}

// metrics are one agent's Prometheus metrics, in a registry of its own (an
// agent embedded beside others in one process keeps its own). All but
// the writes are read at each scrape from the core's Status, the
// self-monitor's Stats and the role history the loop keeps (roleStats):
// nothing else in the code counts for them.
type metrics struct {
	reg                  *prometheus.Registry
	writesOK, writesFail prometheus.Counter // of one CounterVec, resolved once: the write path
	writeLat             prometheus.Histogram
	// Stores of log entries (one write and one fdatasync each with a data
	// dir) and the entries they carried: their ratio is how well writes
	// share an fsync.
	logWriteLat prometheus.Histogram
	logEntries  prometheus.Counter
}

// writeBuckets are the buckets, in seconds, of a write's latency: a
// durable write on a LAN takes a few milliseconds.
func writeBuckets() []float64 {
	return []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5}
}

// failoverBounds are the buckets, in seconds, of a failover.
func failoverBounds() []float64 {
	return []float64{0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60}
}

func newMetrics(a *Agent) *metrics {
	labels := prometheus.Labels{"group": a.cfg.Group}
	m := &metrics{reg: prometheus.NewRegistry()}
	writes := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mastership_agent_writes_total",
		Help: "Writes proposed through this agent as master, by result: ok (acknowledged) or failed.", ConstLabels: labels},
		[]string{"result"})
	m.writesOK, m.writesFail = writes.WithLabelValues("ok"), writes.WithLabelValues("failed")
	m.writeLat = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "mastership_agent_write_seconds",
		Help: "Latency of the writes this agent acknowledged as master, from proposal to commit.", ConstLabels: labels,
		Buckets: writeBuckets()})
	m.logWriteLat = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "mastership_agent_log_write_seconds",
		Help: "Duration of each store of log entries (with a data dir: one write and one fdatasync).", ConstLabels: labels,
		Buckets: logWriteBuckets()})
	m.logEntries = prometheus.NewCounter(prometheus.CounterOpts{Name: "mastership_agent_log_entries_written_total",
		Help: "Log entries stored; over the count of mastership_agent_log_write_seconds, entries per store.", ConstLabels: labels})
	m.reg.MustRegister(writes, m.writeLat, m.logWriteLat, m.logEntries, newCollector(a, labels))
	return m
}

// logWriteBuckets are the buckets, in seconds, of a store of log entries:
// an fdatasync takes from tens of microseconds to tens of milliseconds.
func logWriteBuckets() []float64 {
	return []float64{0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1}
}

// observeLogWrite counts one store, of entries log entries, that took d.
func (m *metrics) observeLogWrite(d time.Duration, entries int) {
	m.logWriteLat.Observe(d.Seconds())
	m.logEntries.Add(float64(entries))
}

// observeWrite counts one write proposed at start; err is its outcome.
func (m *metrics) observeWrite(start time.Time, err error) {
	if err != nil {
		m.writesFail.Inc()
		return
	}
	m.writesOK.Inc()
	m.writeLat.Observe(time.Since(start).Seconds())
}

// roleStats is what the loop notes of role changes for the metrics, under
// Agent.mu: elections won, and failovers (from the moment the agent lost
// its master until it follows one again or is one).
type roleStats struct {
	elections uint64
	lostAt    time.Time
	failover  wire.Histogram
}

func newRoleStats() roleStats { return roleStats{failover: wire.NewHistogram(failoverBounds())} }

// note records the change from old to cur at now.
func (r *roleStats) note(old, cur core.Status, now time.Time) {
	if cur.Role == api.RoleMaster && old.Role != api.RoleMaster {
		r.elections++
	}
	switch {
	case old.Master != 0 && cur.Master == 0 && r.lostAt.IsZero():
		r.lostAt = now
	case cur.Master != 0 && !r.lostAt.IsZero():
		r.failover.Observe(now.Sub(r.lostAt).Seconds())
		r.lostAt = time.Time{}
	}
}

// handler serves GET /metrics: the agent's registry and the extra one the
// process gave (Options.Metrics: memberlist's metrics, the Go runtime's).
func (m *metrics) handler(extra prometheus.Gatherer) http.Handler {
	g := prometheus.Gatherers{m.reg}
	if extra != nil {
		g = append(g, extra)
	}
	return promhttp.HandlerFor(g, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}

// collector turns the agent's snapshots into metrics at each scrape.
type collector struct {
	a *Agent

	isMaster, role, epochTerm, epochID, master, applied, commit, last,
	snapIndex, logEntries, pending, pendingBytes, snapshots, refused, lag, elections, failover,
	checks, recoveries, recoverySecs, stepSecs, info *prometheus.Desc
}

func newCollector(a *Agent, labels prometheus.Labels) *collector {
	d := func(name, help string, vars ...string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, vars, labels)
	}
	return &collector{a: a,
		isMaster:     d("mastership_agent_is_master", "1 on the group's serving master, else 0."),
		role:         d("mastership_agent_role", "1 for the agent's current role, 0 for the others.", "role"),
		epochTerm:    d("mastership_agent_epoch_term", "Term of the epoch the agent is in."),
		epochID:      d("mastership_agent_epoch_id", "ID of the master that opened the agent's epoch."),
		master:       d("mastership_agent_master_id", "ID of the master the agent follows (itself as master); 0 when none."),
		applied:      d("mastership_agent_applied_index", "Last log index applied to the state machine."),
		commit:       d("mastership_agent_commit_index", "Last log index known committed."),
		last:         d("mastership_agent_last_index", "Last log index held."),
		snapIndex:    d("mastership_agent_snapshot_index", "Index of the latest snapshot."),
		logEntries:   d("mastership_agent_log_entries", "Entries the in-memory log holds."),
		pending:      d("mastership_agent_pending_writes", "Writes taken as master and not answered yet."),
		pendingBytes: d("mastership_agent_pending_write_bytes", "Bytes of the operations of the writes taken as master and not answered yet."),
		snapshots:    d("mastership_agent_snapshots_total", "Snapshots taken on the agent's own schedule since start."),
		refused:      d("mastership_agent_refused_inputs_total", "Messages and announcements refused for an epoch out of range or not in their sender's name."),
		lag:          d("mastership_agent_replication_lag_entries", "On the master: entries each back-up's log is known to lack.", "backup"),
		elections:    d("mastership_agent_elections_total", "Times the agent became master since start."),
		failover:     d("mastership_agent_failover_seconds", "From the moment the agent lost its master to following one again or being one."),
		checks:       d("mastership_monitor_checks_total", "Self-monitor checks, by trigger kind and decision.", "trigger", "decision"),
		recoveries:   d("mastership_monitor_recoveries_total", "Recoveries that ended, by outcome: ok, failed or abandoned.", "outcome"),
		recoverySecs: d("mastership_monitor_recovery_seconds", "Duration of the recoveries that ended."),
		stepSecs:     d("mastership_monitor_recovery_step_seconds", "Duration of each recovery step that answered, by step.", "step"),
		info:         d("mastership_agent_info", "1, with the agent's ID and mode as labels.", "id", "mode"),
	}
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.isMaster, c.role, c.epochTerm, c.epochID, c.master, c.applied, c.commit,
		c.last, c.snapIndex, c.logEntries, c.pending, c.pendingBytes, c.snapshots, c.refused, c.lag, c.elections, c.failover, c.checks,
		c.recoveries, c.recoverySecs, c.stepSecs, c.info} {
		ch <- d
	}
}

// matchesTimeout bounds how long a scrape waits for the loop to list the
// back-ups' progress; a busy loop leaves the lag out of that scrape.
const matchesTimeout = 250 * time.Millisecond

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	a := c.a
	a.mu.Lock()
	st, rs := a.status, a.roles
	rs.failover = rs.failover.Clone()
	a.mu.Unlock()

	// A metric that does not build (a label that is not UTF-8, say) is
	// left out, never the rest of the scrape with it.
	emit := func(m prometheus.Metric, err error) {
		if err == nil {
			ch <- m
		}
	}
	gauge := func(d *prometheus.Desc, v float64, lv ...string) {
		emit(prometheus.NewConstMetric(d, prometheus.GaugeValue, v, lv...))
	}
	counter := func(d *prometheus.Desc, v float64, lv ...string) {
		emit(prometheus.NewConstMetric(d, prometheus.CounterValue, v, lv...))
	}
	isMaster := 0.0
	if st.Role == api.RoleMaster && st.Serving {
		isMaster = 1
	}
	gauge(c.isMaster, isMaster)
	for r := api.RoleUnknown; r <= api.RoleSyncing; r++ {
		v := 0.0
		if r == st.Role {
			v = 1
		}
		gauge(c.role, v, r.String())
	}
	gauge(c.epochTerm, float64(st.Epoch.Term))
	gauge(c.epochID, float64(st.Epoch.ID))
	gauge(c.master, float64(st.Master))
	gauge(c.applied, float64(st.Applied))
	gauge(c.commit, float64(st.Commit))
	gauge(c.last, float64(st.Last))
	gauge(c.snapIndex, float64(st.SnapshotIndex))
	gauge(c.logEntries, float64(st.LogEntries))
	gauge(c.pending, float64(st.PendingWrites))
	gauge(c.pendingBytes, float64(st.PendingBytes))
	counter(c.snapshots, float64(st.Snapshots))
	counter(c.refused, float64(st.Refused))
	counter(c.elections, float64(rs.elections))
	emit(constHistogram(c.failover, rs.failover))
	gauge(c.info, 1, fmt.Sprint(a.cfg.ID), a.cfg.Mode)

	if st.Role == api.RoleMaster {
		var ms []core.Match
		var last uint64
		ctx, cancel := context.WithTimeout(context.Background(), matchesTimeout)
		err := a.doWithin(ctx, func() { ms, last = a.node.Matches(), a.node.Log().LastIndex() })
		cancel()
		if err == nil {
			for _, m := range ms {
				gauge(c.lag, float64(last-min(m.Match, last)), fmt.Sprint(m.ID))
			}
		}
	}

	sr, ok := a.opts.Monitor.(StatsReporter)
	if !ok || a.opts.Monitor == nil {
		return
	}
	ms := sr.Stats()
	for _, k := range ms.Checks {
		counter(c.checks, float64(k.Count), k.Trigger, k.Decision)
	}
	for outcome, n := range ms.Recoveries {
		counter(c.recoveries, float64(n), outcome)
	}
	emit(constHistogram(c.recoverySecs, ms.RecoverySeconds))
	for step, h := range ms.StepSeconds {
		emit(constHistogram(c.stepSecs, h, step))
	}
}

// constHistogram is h as a Prometheus histogram (cumulative buckets).
func constHistogram(d *prometheus.Desc, h wire.Histogram, lv ...string) (prometheus.Metric, error) {
	buckets := make(map[float64]uint64, len(h.Bounds))
	var cum uint64
	for i, b := range h.Bounds {
		if i < len(h.Counts) {
			cum += h.Counts[i]
		}
		buckets[b] = cum
	}
	return prometheus.NewConstHistogram(d, h.Count, h.Sum, buckets, lv...)
}
