package main

import (
	"fmt"

	gometrics "github.com/hashicorp/go-metrics"
	gmprom "github.com/hashicorp/go-metrics/prometheus"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// processMetrics sets up what this process reports at GET /metrics beside
// its agent's or naming node's own metrics: the Go runtime and the
// process, and what memberlist and raft emit through go-metrics, whose
// global sink this sets (the one place a process does). A process runs
// one agent or one naming node, so this runs once.
func processMetrics() (prometheus.Gatherer, error) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	sink, err := gmprom.NewPrometheusSinkFrom(gmprom.PrometheusOpts{Registerer: reg, Name: "mastership_gometrics"})
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	cfg := gometrics.DefaultConfig("")
	cfg.EnableHostname, cfg.EnableHostnameLabel, cfg.EnableServiceLabel = false, false, false
	cfg.EnableRuntimeMetrics = false // the Go collector reports them
	if _, err := gometrics.NewGlobal(cfg, sink); err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	return reg, nil
}
