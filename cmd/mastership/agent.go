package main

import (
	crand "crypto/rand"
	"encoding/binary"
	"fmt"
	"math/rand"
	"os"
	"os/signal"
	"syscall"

	"github.com/hashicorp/go-hclog"
	"github.com/mastership/mastership/agent"
	"github.com/mastership/mastership/config"
	"github.com/mastership/mastership/gossip/faulty"
	"github.com/mastership/mastership/recover"
	"github.com/urfave/cli/v2"
)

func agentCommand() *cli.Command {
	return &cli.Command{
		Name:  "agent",
		Usage: "run a peer agent: one replica of a group, with its self-monitor",
		UsageText: "mastership agent -group G -id N -bind ADDR -join ADDR[,ADDR] -naming ADDR [-api ADDR]\n" +
			"   [-priority P] [-mode strict|available] [-data-dir DIR] [-encrypt KEY] [-fault-control] [options]",
		Flags: agentConfigFlags(),
		Action: func(c *cli.Context) error {
			if err := noArgs(c); err != nil {
				return err
			}
			cfg, err := agentFromCLI(c)
			if err != nil {
				return usageErr("%v", err)
			}
			logger := newLogger(c)
			cfg.Logger = logger
			opts := agentOptions(cfg, logger)
			if opts.Metrics, err = processMetrics(); err != nil {
				return exitFor(err)
			}
			a, err := agent.New(cfg, opts)
			if err != nil {
				return exitFor(err)
			}
			if err := a.Start(); err != nil {
				a.Close()
				return exitFor(err)
			}
			logger.Info("agent running; SIGINT or SIGTERM leaves the group", "group", cfg.Group, "id", cfg.ID,
				"api", a.APIAddr(), "gossip", a.GossipAddr(), "naming", cfg.Naming)
			ctx, stop := signal.NotifyContext(c.Context, syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			select {
			case <-ctx.Done():
				logger.Info("leaving the group", "handover_timeout", cfg.LeaveTimeout)
				return a.Leave(cfg.LeaveTimeout)
			case err := <-a.Fatal():
				a.Close()
				return exitFor(err)
			}
		},
	}
}

// agentOptions builds the self-monitor and, with -fault-control, the fault
// controller of an agent process.
func agentOptions(cfg config.Agent, logger hclog.Logger) agent.Options {
	var opts agent.Options
	opts.Monitor = recover.New(recover.Config{
		Count: cfg.MonitorCount, Unit: cfg.MonitorUnit, OnFailure: cfg.OnFailure,
		// The monitor has logged the failure; the code tells a supervisor
		// that recovery failed (on-failure=terminate).
		Exit: func(code int) {
			logger.Error("exiting after a failed recovery", "code", code)
			os.Exit(code)
		},
	})
	if cfg.FaultControl {
		seed := randomSeed()
		opts.Faults = faulty.New(rand.New(rand.NewSource(seed)))
		logger.Warn("fault control is on: anyone who reaches the API can cut this agent off; tests only", "seed", seed)
	}
	return opts
}

func randomSeed() int64 {
	var b [8]byte
	if _, err := crand.Read(b[:]); err != nil {
		panic(fmt.Sprintf("crypto/rand: %v", err))
	}
	return int64(binary.LittleEndian.Uint64(b[:]))
}
