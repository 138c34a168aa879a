package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	aclient "github.com/mastership/mastership/agent/client"
	"github.com/mastership/mastership/agent/kv"
	"github.com/mastership/mastership/agent/wire"
	"github.com/mastership/mastership/naming/api"
	"github.com/mastership/mastership/naming/client"
	"github.com/mastership/mastership/recover"
	"github.com/urfave/cli/v2"
)

func demoCommand() *cli.Command {
	return &cli.Command{
		Name:  "demo",
		Usage: "run a local group through a partition, a split brain and its self-healing, with a timeline",
		UsageText: "mastership demo [-agents N] [-json] [-keep] [-dir DIR]\n\n" +
			"Starts a naming node and a group of agents as child processes on 127.0.0.x with\n" +
			"fault control, runs a client workload, cuts the group into a majority and a\n" +
			"minority (the naming node reachable from the majority), shows the second master\n" +
			"appear, heals, and shows detection, the naming node's decision, the triggers and\n" +
			"each agent's recovery. Exits 0 when the group healed with no acknowledged write lost.",
		Flags: []cli.Flag{
			&cli.IntFlag{Name: "agents", Value: 5, Usage: "group size, 3 to 9"},
			&cli.DurationFlag{Name: "split", Value: 1500 * time.Millisecond, Usage: "how long the partition lasts once the second master serves"},
			&cli.StringFlag{Name: "dir", Usage: "working `DIR` for data and logs (default: a new temporary directory)"},
			&cli.BoolFlag{Name: "keep", Usage: "leave the cluster running and print the commands to explore it"},
			jsonFlag(),
		},
		Action: runDemo,
	}
}

// demoEvent is one line of the timeline.
type demoEvent struct {
	MS     int64  `json:"ms"`
	Source string `json:"source"`
	Kind   string `json:"kind"`
	Detail string `json:"detail"`
}

// demoSummary is the shape of `mastership demo -json`.
type demoSummary struct {
	Agents                 int    `json:"agents"`
	MastersDuringPartition int    `json:"masters_during_partition"`
	MastersAfterHeal       int    `json:"masters_after_heal"`
	Master                 uint64 `json:"master"`
	HealMS                 int64  `json:"heal_ms"`
	DigestsEqual           bool   `json:"digests_equal"`
	// Acked is InFinal + Diverged + Lost: each acknowledged write is read
	// back from the final state, else found in a divergence record (to
	// replay), else lost.
	Acked    int `json:"acked"`
	InFinal  int `json:"in_final_state"`
	Diverged int `json:"diverged"`
	Lost     int `json:"lost"`
	// RecordsAt is the API address of an agent holding divergence records.
	RecordsAt string      `json:"records_at,omitempty"`
	Healed    bool        `json:"healed"`
	Dir       string      `json:"dir"`
	Events    []demoEvent `json:"events"`
}

type demoAgent struct {
	id            uint64
	ip, bind, api string
	cmd           *exec.Cmd
	role          string
	master        uint64
	epoch         api.Epoch
	lastCheck     time.Time
}

type demo struct {
	c      *cli.Context
	start  time.Time
	mu     sync.Mutex
	events []demoEvent
	live   bool // print events as they happen
	hc     *http.Client
	naming *client.Client
	nAddr  string
	agents []*demoAgent
	procs  []*exec.Cmd
	seq    uint64 // last naming event seen
	ports  map[string]bool
	group  string // "" means "demo"
	// cli is how the printed commands run mastership: the binary's
	// absolute path, or a copy in the demo's dir when it is go run's
	// temporary build (removed when go run exits).
	cli string
}

func (d *demo) groupName() string {
	if d.group == "" {
		return "demo"
	}
	return d.group
}

func (d *demo) event(source, kind, format string, args ...any) {
	e := demoEvent{MS: time.Since(d.start).Milliseconds(), Source: source, Kind: kind, Detail: fmt.Sprintf(format, args...)}
	d.mu.Lock()
	d.events = append(d.events, e)
	d.mu.Unlock()
	if d.live {
		fmt.Fprintf(d.c.App.Writer, "  +%6dms  %-10s %-22s %s\n", e.MS, e.Source, e.Kind, e.Detail)
	}
}

// freeAddr returns a host:port on ip free for TCP and UDP a moment ago,
// never one the demo already gave out (a port freed a moment ago is often
// the next the kernel picks, and an agent's -bind and -api must differ).
func (d *demo) freeAddr(ip string) (string, error) {
	for {
		ln, err := net.Listen("tcp", ip+":0")
		if err != nil {
			return "", fmt.Errorf("no free port on %s: %w", ip, err)
		}
		addr := ln.Addr().String()
		ln.Close()
		if d.ports[addr] {
			continue
		}
		pc, err := net.ListenPacket("udp", addr)
		if err != nil {
			continue
		}
		pc.Close()
		d.ports[addr] = true
		return addr, nil
	}
}

func runDemo(c *cli.Context) error {
	if err := noArgs(c); err != nil {
		return err
	}
	n := c.Int("agents")
	if n < 3 || n > 9 {
		return usageErr("-agents %d: want 3 to 9", n)
	}
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find the mastership binary: %w", err)
	}
	dir := c.String("dir")
	if dir == "" {
		if dir, err = os.MkdirTemp("", "mastership-demo-"); err != nil {
			return err
		}
	} else if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	d := &demo{c: c, start: time.Now(), live: !c.Bool("json"), hc: &http.Client{Timeout: 2 * time.Second}, ports: map[string]bool{}, cli: exe}
	keep := c.Bool("keep")
	if keep && goRunBuild(exe) {
		if d.cli, err = copyExecutable(exe, filepath.Join(dir, "mastership")); err != nil {
			if c.String("dir") == "" {
				os.RemoveAll(dir)
			}
			return fmt.Errorf("keep a copy of the binary for the printed commands: %w", err)
		}
		exe = d.cli
	}
	var sum *demoSummary
	defer func() {
		if !keep {
			d.stop()
			// The logs go with a temporary dir, unless the demo failed.
			if c.String("dir") == "" && err == nil && sum != nil && sum.Healed && sum.Lost == 0 {
				os.RemoveAll(dir)
			}
		}
	}()
	if d.live {
		where := "logs in " + dir
		if !keep && c.String("dir") == "" {
			where += ", removed at the end unless the demo fails; -dir DIR keeps them"
		}
		fmt.Fprintf(c.App.Writer, "Mastership demo: a naming node and %d agents on 127.0.0.x (%s)\n\n", n, where)
	}
	sum, err = d.run(exe, dir, n)
	if err != nil {
		return err
	}
	sum.Dir = dir
	if c.Bool("json") {
		sum.Events = d.events
		if err = writeJSON(c.App.Writer, sum); err != nil {
			return err // the deferred cleanup keeps the logs: err is set
		}
	} else {
		d.printSummary(sum)
	}
	if keep {
		d.printKeep(dir)
	}
	if !sum.Healed || sum.Lost > 0 {
		return cli.Exit("", exitError)
	}
	return nil
}

// goRunBuild tells a binary that `go run` built in a temporary dir, which
// it removes when the demo exits.
func goRunBuild(exe string) bool {
	return strings.Contains(filepath.ToSlash(exe), "/go-build")
}

// copyExecutable copies the binary at from to to, executable, and returns
// to. It writes a new file and renames it: a kept cluster of an earlier
// demo may still run the old one (which cannot be written while it runs).
func copyExecutable(from, to string) (string, error) {
	b, err := os.ReadFile(from)
	if err != nil {
		return "", err
	}
	tmp := to + ".new"
	if err := os.WriteFile(tmp, b, 0o755); err != nil {
		return "", err
	}
	if err := os.Rename(tmp, to); err != nil {
		os.Remove(tmp)
		return "", err
	}
	return to, nil
}

func (d *demo) spawn(exe, logPath string, args ...string) (*exec.Cmd, error) {
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe, args...)
	cmd.Stdout, cmd.Stderr = f, f
	// Own process group: a Ctrl-C on the demo does not kill a -keep cluster
	// before the demo stops it itself.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", strings.Join(args[:3], " "), err)
	}
	f.Close()
	d.procs = append(d.procs, cmd)
	return cmd, nil
}

func (d *demo) stop() {
	for _, p := range d.procs {
		p.Process.Signal(syscall.SIGTERM)
	}
	for _, p := range d.procs {
		done := make(chan struct{})
		go func() { p.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(3 * time.Second):
			p.Process.Kill()
			<-done
		}
	}
}

// agentAPI is the API client of one of the demo's agents.
func (d *demo) agentAPI(a *demoAgent) (*aclient.API, error) {
	return aclient.NewAPI(aclient.APIConfig{Addr: a.api, HTTP: d.hc})
}

func (d *demo) info(a *demoAgent) (wire.Info, error) {
	ag, err := d.agentAPI(a)
	if err != nil {
		return wire.Info{}, err
	}
	info, _, err := ag.Info(d.c.Context)
	return info, err
}

func (d *demo) fault(a *demoAgent, req wire.FaultRequest) error {
	ag, err := d.agentAPI(a)
	if err == nil {
		_, err = ag.Fault(d.c.Context, req)
	}
	if err != nil {
		return fmt.Errorf("fault on agent %d: %w", a.id, err)
	}
	return nil
}

// stable reports one master, registered at the naming node, followed by
// every agent, with equal digests (recover.CheckConverged).
func (d *demo) stable() (bool, uint64) {
	var states []recover.MemberState
	for _, a := range d.agents {
		info, err := d.info(a)
		if err != nil {
			return false, 0
		}
		states = append(states, recover.StateOfInfo(info))
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	look, err := d.naming.Lookup(ctx, api.LookupRequest{Group: d.groupName()})
	if err != nil || look.Master == nil {
		return false, 0
	}
	if recover.CheckConverged(states, look.Master.ID) != nil {
		return false, 0
	}
	return true, look.Master.ID
}

func (d *demo) masters() []uint64 {
	var ms []uint64
	for _, a := range d.agents {
		if info, err := d.info(a); err == nil && info.Role == api.RoleMaster.String() {
			ms = append(ms, a.id)
		}
	}
	return ms
}

// settledMasters is masters as two reads in a row agree on it (ten reads
// at most). One read asks the agents one after the other: a side's
// election that a better-ranked member takes over, or a handover, can show
// its old master and its new one in one read, a third master that never
// was at one moment.
func (d *demo) settledMasters() []uint64 {
	ms := d.masters()
	for i := 0; i < 10; i++ {
		again := d.masters()
		if slices.Equal(again, ms) {
			break
		}
		ms = again
	}
	return ms
}

func (d *demo) waitFor(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
	return true
}

// watch turns changes of roles, self-monitor checks and naming events into
// timeline events until ctx ends.
func (d *demo) watch(ctx context.Context) {
	for ctx.Err() == nil {
		for _, a := range d.agents {
			info, err := d.info(a)
			if err != nil {
				continue
			}
			src := fmt.Sprintf("agent %d", a.id)
			if info.Role != a.role || info.Master != a.master || info.Epoch != a.epoch {
				switch {
				case a.role == "":
				case a.role == info.Role && info.Role == api.RoleMaster.String():
					d.event(src, "reassert", "master at a new epoch %s, above every epoch seen", info.Epoch)
				case a.role == info.Role:
					d.event(src, "follow", "%s of %d at epoch %s", info.Role, info.Master, info.Epoch)
				default:
					d.event(src, "role", "%s -> %s (epoch %s, follows %d)", a.role, info.Role, info.Epoch, info.Master)
				}
				a.role, a.master, a.epoch = info.Role, info.Master, info.Epoch
			}
			if lc := info.LastAction; lc != nil && lc.Time.After(a.lastCheck) {
				a.lastCheck = lc.Time
				d.event(src, "self-monitor", "trigger %q: %s in %.1fms", short(lc.Trigger), lc.Decision, lc.DetectMS)
				if lc.Error != "" {
					d.event(src, "recovery-failed", "%s: %s", lc.Recovery, lc.Error)
				} else {
					d.event(src, "recovery", "%s (%.0fms)", lc.Recovery, lc.RecoveryMS)
				}
			}
		}
		evctx, cancel := context.WithTimeout(ctx, time.Second)
		evs, err := d.naming.AllEvents(evctx, "demo", d.seq)
		cancel()
		if err == nil {
			for _, e := range evs {
				d.seq = e.Seq
				switch e.Kind {
				case api.EventMemberJoined, api.EventTriggerFailed, api.EventRecheck:
					continue
				case api.EventTriggerSent:
					if e.Reason != "recheck" {
						d.event("naming", "trigger", "agent %d notified (%s)", e.Target, e.Reason)
					}
					continue
				}
				d.event("naming", e.Kind, "%s", describeEvent(e))
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func short(s string) string {
	if len(s) > 60 {
		return s[:57] + "..."
	}
	return s
}

// workload writes keys through a client until ctx ends and returns the
// acknowledged ones.
func workload(ctx context.Context, cl *aclient.Client, prefix string, acked map[string]string, mu *sync.Mutex) {
	for i := 0; ctx.Err() == nil; i++ {
		key, val := fmt.Sprintf("%s-%d", prefix, i), fmt.Sprintf("v%d", i)
		octx, cancel := context.WithTimeout(ctx, time.Second)
		_, err := cl.Put(octx, key, []byte(val))
		cancel()
		if err == nil {
			mu.Lock()
			acked[key] = val
			mu.Unlock()
		}
		select {
		case <-ctx.Done():
		case <-time.After(15 * time.Millisecond):
		}
	}
}

func (d *demo) run(exe, dir string, n int) (*demoSummary, error) {
	sum := &demoSummary{Agents: n}
	nAddr, err := d.freeAddr("127.0.0.2")
	if err != nil {
		return nil, err
	}
	d.nAddr = nAddr
	if _, err := d.spawn(exe, filepath.Join(dir, "naming.log"), "-log-level", "info", "naming", "-profile", "local",
		"-bind", nAddr, "-data-dir", filepath.Join(dir, "naming")); err != nil {
		return nil, err
	}
	if d.naming, err = client.New(nAddr, client.WithTimeout(time.Second)); err != nil {
		return nil, err
	}
	if !d.waitFor(10*time.Second, func() bool { _, err := d.naming.Health(context.Background()); return err == nil }) {
		return nil, fmt.Errorf("the naming node did not start on %s: see %s", nAddr, filepath.Join(dir, "naming.log"))
	}
	d.event("naming", "started", "naming node on %s", nAddr)
	for i := 1; i <= n; i++ {
		a := &demoAgent{id: uint64(i), ip: fmt.Sprintf("127.0.0.%d", 10+i)}
		if a.bind, err = d.freeAddr(a.ip); err != nil {
			return nil, err
		}
		if a.api, err = d.freeAddr(a.ip); err != nil {
			return nil, err
		}
		args := []string{"-log-level", "info", "agent", "-profile", "local", "-group", "demo", "-id", fmt.Sprint(i),
			"-bind", a.bind, "-api", a.api, "-naming", nAddr, "-priority", fmt.Sprint(n + 1 - i), "-mode", "available",
			"-fault-control", "-data-dir", filepath.Join(dir, fmt.Sprintf("agent-%d", i))}
		if i > 1 {
			args = append(args, "-join", d.agents[0].bind)
		}
		if a.cmd, err = d.spawn(exe, filepath.Join(dir, fmt.Sprintf("agent-%d.log", i)), args...); err != nil {
			return nil, err
		}
		d.agents = append(d.agents, a)
	}
	d.event("demo", "started", "%d agents in group \"demo\", available mode, priorities %d..1, policy lowest-id", n, n)
	var first uint64
	if !d.waitFor(30*time.Second, func() bool { ok, m := d.stable(); first = m; return ok }) {
		return nil, fmt.Errorf("the group did not elect a master within 30s: see the logs in %s", dir)
	}
	d.event("demo", "stable", "agent %d is master, registered, followed by all, digests equal", first)

	watchCtx, stopWatch := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); d.watch(watchCtx) }()
	defer func() { stopWatch(); wg.Wait() }()

	// The workload: one client finds the master through the naming node.
	var allAPIs []string
	for _, a := range d.agents {
		allAPIs = append(allAPIs, a.api)
	}
	acked := map[string]string{}
	var amu sync.Mutex
	main, err := aclient.New(aclient.Config{Group: "demo", Naming: nAddr, Agents: allAPIs, Timeout: 2 * time.Second})
	if err != nil {
		return nil, err
	}
	defer main.Close()
	wctx, stopWrites := context.WithCancel(context.Background())
	defer stopWrites()
	var wwg sync.WaitGroup
	wwg.Add(1)
	go func() { defer wwg.Done(); workload(wctx, main, "w", acked, &amu) }()
	time.Sleep(300 * time.Millisecond)

	// The partition: {1..k} | {k+1..n}, the naming node on the majority side.
	k := n/2 + 1
	var majorityIPs, minorityIPs []string
	for _, a := range d.agents {
		if int(a.id) <= k {
			majorityIPs = append(majorityIPs, a.ip)
		} else {
			minorityIPs = append(minorityIPs, a.ip)
		}
	}
	namingIP, _, _ := net.SplitHostPort(nAddr)
	for _, a := range d.agents {
		peers := minorityIPs
		if int(a.id) > k {
			peers = append(append([]string{}, majorityIPs...), namingIP)
		}
		if err := d.fault(a, wire.FaultRequest{Action: "partition", Peers: peers}); err != nil {
			return nil, err
		}
	}
	d.event("demo", "partition", "cut {%s} | {%s}; the naming node is reachable from the majority only", ids(1, k), ids(k+1, n))
	if d.waitFor(10*time.Second, func() bool { return len(d.masters()) >= 2 }) {
		ms := d.settledMasters()
		sum.MastersDuringPartition = len(ms)
		d.event("demo", "split-brain", "%d masters: %v", len(ms), ms)
	} else {
		sum.MastersDuringPartition = len(d.masters())
		d.event("demo", "no-split", "the minority did not elect a master")
	}
	// A second client writes to the minority side only.
	var minorityAPIs []string
	for _, a := range d.agents[k:] {
		minorityAPIs = append(minorityAPIs, a.api)
	}
	side, err := aclient.New(aclient.Config{Group: "demo", Agents: minorityAPIs, Timeout: time.Second})
	if err != nil {
		return nil, err
	}
	defer side.Close()
	wwg.Add(1)
	mctx, stopMinority := context.WithCancel(wctx)
	go func() { defer wwg.Done(); workload(mctx, side, "m", acked, &amu) }()
	time.Sleep(d.c.Duration("split"))
	stopMinority()

	heal := time.Now()
	for _, a := range d.agents {
		if err := d.fault(a, wire.FaultRequest{Action: "heal"}); err != nil {
			return nil, err
		}
	}
	d.event("demo", "heal", "every link restored")
	var final uint64
	sum.Healed = d.waitFor(30*time.Second, func() bool { ok, m := d.stable(); final = m; return ok })
	sum.HealMS = time.Since(heal).Milliseconds()
	if sum.Healed {
		d.event("demo", "healed", "one master (agent %d), every member follows it, digests equal: %dms after the heal", final, sum.HealMS)
	} else {
		d.event("demo", "not-healed", "no single synced master 30s after the heal")
	}
	time.Sleep(300 * time.Millisecond)
	stopWrites()
	wwg.Wait()
	time.Sleep(100 * time.Millisecond) // let the watcher print the last events
	stopWatch()
	wg.Wait()

	ok, m := d.stable()
	sum.DigestsEqual, sum.Master = ok, m
	sum.MastersAfterHeal = len(d.masters())
	// Every acknowledged write is in the final state or a divergence record.
	diverged := map[string]bool{}
	for _, a := range d.agents {
		ag, err := d.agentAPI(a)
		if err != nil {
			continue
		}
		recs, _, err := ag.Records(d.c.Context)
		if err != nil {
			continue
		}
		for _, r := range recs {
			if op, err := kv.DecodeOp(r.Op); err == nil {
				diverged[op.Key] = true
			}
		}
		if len(recs) > 0 && sum.RecordsAt == "" {
			sum.RecordsAt = a.api
		}
	}
	amu.Lock()
	defer amu.Unlock()
	sum.Acked = len(acked)
	keys := make([]string, 0, len(acked))
	for k := range acked {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, key := range keys {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		r, err := main.Get(ctx, key)
		cancel()
		switch {
		case err == nil && r.Found && string(r.Value) == acked[key]:
			sum.InFinal++
		case diverged[key]:
			sum.Diverged++
		default:
			sum.Lost++
			if errors.Is(err, aclient.ErrNoMaster) {
				d.event("demo", "read-failed", "%s: %v", key, err)
			}
		}
	}
	return sum, nil
}

func ids(from, to int) string {
	var s []string
	for i := from; i <= to; i++ {
		s = append(s, fmt.Sprint(i))
	}
	return strings.Join(s, ",")
}

func (d *demo) printSummary(s *demoSummary) {
	w := d.c.App.Writer
	fmt.Fprintf(w, "\nSummary\n")
	fmt.Fprintf(w, "  masters during the partition: %d\n", s.MastersDuringPartition)
	fmt.Fprintf(w, "  masters after the heal:       %d (agent %d)\n", s.MastersAfterHeal, s.Master)
	fmt.Fprintf(w, "  heal to one synced master:    %dms\n", s.HealMS)
	fmt.Fprintf(w, "  digests equal:                %v\n", s.DigestsEqual)
	fmt.Fprintf(w, "  writes acknowledged:          %d\n", s.Acked)
	fmt.Fprintf(w, "    in the final state:         %d\n", s.InFinal)
	fmt.Fprintf(w, "    in divergence records:      %d", s.Diverged)
	switch {
	case s.Diverged == 0 || s.RecordsAt == "":
	case d.c.Bool("keep"):
		fmt.Fprintf(w, " (the losing side's, kept for replay: %s divergence list -agent %s, then divergence replay -agent %s ID)",
			d.cli, s.RecordsAt, s.RecordsAt)
	default:
		// The cluster stops with the demo: its records go with it.
		fmt.Fprintf(w, " (the losing side's, kept for replay; -keep leaves the cluster running to list and replay them)")
	}
	fmt.Fprintf(w, "\n    lost:                       %d\n", s.Lost)
	if s.Healed && s.Lost == 0 {
		fmt.Fprintf(w, "  result:                       healed\n")
	} else {
		fmt.Fprintf(w, "  result:                       NOT healed\n")
	}
}

func (d *demo) printKeep(dir string) {
	w := d.c.App.Writer
	m := d.cli
	fmt.Fprintf(w, "\nThe cluster keeps running (logs in %s). Explore it:\n", dir)
	fmt.Fprintf(w, "  %s status -naming %s -group demo\n", m, d.nAddr)
	fmt.Fprintf(w, "  %s events -naming %s -group demo\n", m, d.nAddr)
	fmt.Fprintf(w, "  %s members -agent %s\n", m, d.agents[0].api)
	fmt.Fprintf(w, "  %s info -agent %s\n", m, d.agents[len(d.agents)-1].api)
	fmt.Fprintf(w, "  %s kv put -group demo -naming %s hello world\n", m, d.nAddr)
	fmt.Fprintf(w, "  %s divergence list -agent %s\n", m, d.agents[len(d.agents)-1].api)
	fmt.Fprintf(w, "  curl -s http://%s/metrics | grep ^mastership_agent_is_master\n", d.agents[0].api)
	fmt.Fprintf(w, "The dashboard: http://%s/ui/\n", d.nAddr)
	var pids []string
	for _, p := range d.procs {
		pids = append(pids, fmt.Sprint(p.Process.Pid))
	}
	fmt.Fprintf(w, "Stop it with: kill %s\n", strings.Join(pids, " "))
}
