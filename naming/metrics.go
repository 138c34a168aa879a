package naming

import (
	"net/http"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// collector turns the node's state into metrics at each scrape: the
// groups, members and masters its store holds, the events it applied by
// kind, and its place in the naming cluster. Nothing else in the code
// counts for them.
type collector struct {
	n *Node

	groups, members, masters, events, leader, raftState *prometheus.Desc
}

func newCollector(n *Node) *collector {
	return &collector{n: n,
		groups:    prometheus.NewDesc("mastership_naming_groups", "Groups the naming node holds.", nil, nil),
		members:   prometheus.NewDesc("mastership_naming_members", "Members of all groups, with a live session or not yet expired.", nil, nil),
		masters:   prometheus.NewDesc("mastership_naming_masters", "Groups with a registered master.", nil, nil),
		events:    prometheus.NewDesc("mastership_naming_events_total", "Events this node applied since it started, by kind (conflict-detected, conflict-resolved, trigger-sent, trigger-failed, registration-refused, ...).", []string{"kind"}, nil),
		leader:    prometheus.NewDesc("mastership_naming_is_leader", "1 on the naming cluster's leader, else 0.", nil, nil),
		raftState: prometheus.NewDesc("mastership_naming_raft_state", "1 for this node's raft state, 0 for the others.", []string{"state"}, nil),
	}
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.groups, c.members, c.masters, c.events, c.leader, c.raftState} {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	n := c.n
	gauge := func(d *prometheus.Desc, v float64, lv ...string) {
		if m, err := prometheus.NewConstMetric(d, prometheus.GaugeValue, v, lv...); err == nil {
			ch <- m
		}
	}
	if groups, members, masters, err := n.store.countMembers(); err == nil {
		gauge(c.groups, float64(groups))
		gauge(c.members, float64(members))
		gauge(c.masters, float64(masters))
	} else {
		ch <- prometheus.NewInvalidMetric(c.groups, err)
	}
	for kind, v := range n.store.AppliedEvents() {
		if m, err := prometheus.NewConstMetric(c.events, prometheus.CounterValue, float64(v), kind); err == nil {
			ch <- m
		}
	}
	state := n.raft.State()
	isLeader := 0.0
	if state == raft.Leader {
		isLeader = 1
	}
	gauge(c.leader, isLeader)
	for _, s := range []raft.RaftState{raft.Follower, raft.Candidate, raft.Leader, raft.Shutdown} {
		v := 0.0
		if s == state {
			v = 1
		}
		gauge(c.raftState, v, roleName(s))
	}
}

// metricsHandler serves GET /metrics: the node's metrics and the extra
// ones the process gave (Config.Metrics: raft's and memberlist's through
// go-metrics, the Go runtime's).
func (n *Node) metricsHandler() http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(newCollector(n))
	g := prometheus.Gatherers{reg}
	if n.metricsExtra != nil {
		g = append(g, n.metricsExtra)
	}
	return promhttp.HandlerFor(g, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}
