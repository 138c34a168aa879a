package main

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	aclient "github.com/mastership/mastership/agent/client"
	"github.com/mastership/mastership/agent/wire"
	"github.com/mastership/mastership/naming/api"
	"github.com/mastership/mastership/naming/client"
)

func benchCommand() *cli.Command {
	return &cli.Command{
		Name:  "bench",
		Usage: "measure a local group: durable writes/s and latency by group size and mode, failover over master kills, heal time over splits",
		UsageText: "mastership bench [-profile local|lan|wan] [-agents N] [-duration D] [-rounds N] [-writers N] [-json] [-dir DIR]\n" +
			"mastership bench -soak N [-profile P] [-writers N] [-json] [-dir DIR]\n\n" +
			"Starts naming nodes and agents as child processes on 127.0.0.x with data dirs, as the demo does,\n" +
			"and prints a table of what it measured and how. Every process shares this machine's cores: the\n" +
			"figures compare configurations on one machine, they are not a cluster's.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "profile", Value: "local", Usage: "timing profile of the agents and naming node: local, lan or wan"},
			&cli.IntFlag{Name: "agents", Value: 9, Usage: "the largest group of the write runs (back-ups 1, 2, 4, 8 up to agents-1), 2 to 9"},
			&cli.DurationFlag{Name: "duration", Value: 3 * time.Second, Usage: "how long each write run writes"},
			&cli.IntFlag{Name: "rounds", Value: 5, Usage: "master kills of the failover run, and splits of the heal run"},
			&cli.IntFlag{Name: "writers", Value: 16, Usage: "concurrent writers of the write runs"},
			&cli.Int64Flag{Name: "soak", Usage: "instead of the runs above, a soak run of `N` writes to 3 strict agents: RSS, data dir, snapshots and restarts (1000000 for the full soak)"},
			&cli.StringFlag{Name: "dir", Usage: "working `DIR` for data and logs (default: a new temporary directory, removed at the end)"},
			jsonFlag(),
		},
		Action: runBench,
	}
}

// benchWrites is one write run.
type benchWrites struct {
	Mode      string  `json:"mode"`
	Backups   int     `json:"backups"`
	Writes    int     `json:"writes"`
	PerSecond float64 `json:"writes_per_s"`
	P50MS     float64 `json:"p50_ms"`
	P99MS     float64 `json:"p99_ms"`
	Errors    int     `json:"errors"`
	// VsOne is PerSecond over that of the mode's run with 1 back-up: what
	// each back-up more costs (fan-out). 0 when there is no such run.
	VsOne float64 `json:"vs_1_backup,omitempty"`
	// The CPU time (user and system) per acknowledged write, in
	// microseconds, from /proc (absent where the system has none): the
	// master's, the mean of the back-ups', and the load generator's (this
	// process: the writers and their clients). Every process shares this
	// machine's cores, so what the back-ups use is taken from the
	// master's share: on hosts of their own, the master's CPU per write
	// is what more back-ups cost.
	MasterCPU float64 `json:"master_cpu_us_per_write,omitempty"`
	BackupCPU float64 `json:"backup_cpu_us_per_write,omitempty"`
	ClientCPU float64 `json:"client_cpu_us_per_write,omitempty"`
}

// procCPU is the CPU time process pid used so far, from /proc/<pid>/stat;
// false where there is no such file (not Linux) or it does not parse.
func procCPU(pid int) (time.Duration, bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, false
	}
	return parseProcStat(b)
}

// userHZ is the unit of /proc's CPU times: Linux's USER_HZ, 100 on every
// architecture it runs on.
const userHZ = 100

// parseProcStat reads utime and stime (fields 14 and 15, in 1/userHZ s)
// from the text of /proc/<pid>/stat. The command name (field 2) is in
// parentheses and may hold spaces and parentheses itself: the fields are
// counted from the last ')'.
func parseProcStat(b []byte) (time.Duration, bool) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(string(b[i+1:])) // f[0] is field 3
	if len(f) < 13 {
		return 0, false
	}
	u, err1 := strconv.ParseUint(f[11], 10, 64)
	s, err2 := strconv.ParseUint(f[12], 10, 64)
	const tick = time.Second / userHZ
	if err1 != nil || err2 != nil || u > math.MaxInt64/uint64(tick) || s > math.MaxInt64/uint64(tick)-u {
		return 0, false
	}
	return time.Duration(u+s) * tick, true
}

// cpuSample is the CPU time of a write run's processes at one moment, and
// who they were: the processes and the master's epoch.
type cpuSample struct {
	master, backups, client time.Duration
	pids                    []int
	epoch                   api.Epoch
	ok                      bool
}

// sampleCPU reads the CPU time of the master, the sum of the other
// agents', and this process's; not ok when the master is not known or
// does not answer as master.
func (d *demo) sampleCPU(master uint64) cpuSample {
	if master == 0 {
		return cpuSample{}
	}
	s := cpuSample{ok: true}
	for _, a := range d.agents {
		if a.cmd == nil || a.cmd.Process == nil {
			return cpuSample{}
		}
		t, ok := procCPU(a.cmd.Process.Pid)
		if !ok {
			return cpuSample{}
		}
		s.pids = append(s.pids, a.cmd.Process.Pid)
		if a.id != master {
			s.backups += t
			continue
		}
		s.master = t
		info, err := d.info(a)
		if err != nil || info.Role != api.RoleMaster.String() {
			return cpuSample{}
		}
		s.epoch = info.Epoch
	}
	t, ok := procCPU(os.Getpid())
	s.client, s.ok = t, ok
	return s
}

// perWrite sets w's CPU per write from the samples before and after its
// run of writes; none when either failed, the processes or the master's
// epoch are not the same in both (whose time was whose is not known), or
// a time went backwards.
func (w *benchWrites) perWrite(before, after cpuSample) {
	if !before.ok || !after.ok || w.Writes == 0 || w.Backups == 0 || !slices.Equal(before.pids, after.pids) || before.epoch != after.epoch ||
		after.master < before.master || after.backups < before.backups || after.client < before.client {
		return
	}
	us := func(d time.Duration) float64 { return float64(d.Microseconds()) / float64(w.Writes) }
	w.MasterCPU = us(after.master - before.master)
	w.BackupCPU = us(after.backups-before.backups) / float64(w.Backups)
	w.ClientCPU = us(after.client - before.client)
}

// fanOut sets VsOne of every write run from its mode's run with 1
// back-up.
func fanOut(ws []benchWrites) {
	one := map[string]float64{}
	for _, w := range ws {
		if w.Backups == 1 {
			one[w.Mode] = w.PerSecond
		}
	}
	for i := range ws {
		if base := one[ws[i].Mode]; base > 0 {
			ws[i].VsOne = ws[i].PerSecond / base
		}
	}
}

// benchTimes are the times of a failover or heal run, in milliseconds.
type benchTimes struct {
	Mode     string    `json:"mode"`
	Agents   int       `json:"agents"`
	Rounds   int       `json:"rounds"`
	MedianMS float64   `json:"median_ms"`
	MaxMS    float64   `json:"max_ms"`
	AllMS    []float64 `json:"all_ms"`
}

// benchReport is `mastership bench -json`.
type benchReport struct {
	How      benchHow      `json:"how"`
	Writes   []benchWrites `json:"writes"`
	Failover benchTimes    `json:"failover"`
	Heal     benchTimes    `json:"heal"`
}

type benchHow struct {
	Profile    string `json:"profile"`
	CPUs       int    `json:"cpus"`
	Writers    int    `json:"writers"`
	ValueBytes int    `json:"value_bytes"`
	Duration   string `json:"duration"`
	Failover   string `json:"failover"`
	Heal       string `json:"heal"`
	Storage    string `json:"storage"`
	CPU        string `json:"cpu"`
}

const benchValueBytes = 100

func runBench(c *cli.Context) error {
	if err := noArgs(c); err != nil {
		return err
	}
	profile, agents, rounds, writers, duration := c.String("profile"), c.Int("agents"), c.Int("rounds"), c.Int("writers"), c.Duration("duration")
	switch {
	case profile != "local" && profile != "lan" && profile != "wan":
		return usageErr("-profile %q: want local, lan or wan", profile)
	case agents < 2 || agents > 9:
		return usageErr("-agents %d: want 2 to 9", agents)
	case rounds < 1 || rounds > 100:
		return usageErr("-rounds %d: want 1 to 100", rounds)
	case writers < 1 || writers > 256:
		return usageErr("-writers %d: want 1 to 256", writers)
	case duration < 100*time.Millisecond || duration > 10*time.Minute:
		return usageErr("-duration %s: want 100ms to 10m", duration)
	}
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find the mastership binary: %w", err)
	}
	dir := c.String("dir")
	if dir == "" {
		if dir, err = os.MkdirTemp("", "mastership-bench-"); err != nil {
			return err
		}
		defer os.RemoveAll(dir)
	} else if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	live := !c.Bool("json")
	progress := func(format string, args ...any) {
		if live {
			fmt.Fprintf(c.App.ErrWriter, format+"\n", args...)
		}
	}
	if n := c.Int64("soak"); n != 0 {
		if n < 1000 || n > 100_000_000 {
			return usageErr("-soak %d: want 1000 to 100000000 writes", n)
		}
		rep, err := benchSoak(c, exe, dir, profile, n, writers, progress)
		if err != nil {
			return err
		}
		if c.Bool("json") {
			return writeJSON(c.App.Writer, rep)
		}
		printSoak(c, rep)
		return nil
	}
	rep := benchReport{How: benchHow{Profile: profile, CPUs: runtime.NumCPU(), Writers: writers, ValueBytes: benchValueBytes,
		CPU: "CPU time (user and system, /proc, 10ms ticks) over the run, idle work (ticks, gossip, snapshots) and the clients' set-up included, " +
			"per acknowledged write: the master's, the mean of the back-ups', and the load generator's (CLIENT); " +
			"on one machine the back-ups' is taken from the master's share of the cores",
		Duration: duration.String(), Storage: "every agent with -data-dir (the log in a write-ahead log, one fdatasync per batch; the rest in bbolt)",
		Failover: fmt.Sprintf("strict, 3 agents: SIGKILL of the master until a put through the Go client (naming node and every agent) succeeds; %d kills, the killed agent restarted each time", rounds),
		Heal:     fmt.Sprintf("available, 5 agents: cut {1,2,3} | {4,5} (the naming node with the majority) until the minority elects, heal, until one registered master is followed by all with equal digests; %d splits", rounds)}}
	run := 0
	for _, mode := range []string{"strict", "available"} {
		for _, backups := range []int{1, 2, 4, 8} {
			if backups+1 > agents {
				continue
			}
			run++
			progress("writes: %s, %d back-up(s), %s ...", mode, backups, duration)
			w, err := benchWriteRun(c, exe, filepath.Join(dir, fmt.Sprintf("writes-%d", run)), profile, mode, backups+1, writers, duration)
			if err != nil {
				return err
			}
			rep.Writes = append(rep.Writes, w)
		}
	}
	fanOut(rep.Writes)
	progress("failover: %d master kills ...", rounds)
	if rep.Failover, err = benchFailover(c, exe, filepath.Join(dir, "failover"), profile, rounds); err != nil {
		return err
	}
	progress("heal: %d splits ...", rounds)
	if rep.Heal, err = benchHeal(c, exe, filepath.Join(dir, "heal"), profile, rounds); err != nil {
		return err
	}
	if c.Bool("json") {
		return writeJSON(c.App.Writer, rep)
	}
	printBench(c, rep)
	return nil
}

// benchGroup starts a naming node and n agents of mode on the demo's
// launcher and waits for a stable master.
func benchGroup(c *cli.Context, exe, dir, profile, mode string, n int, faults bool) (*demo, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	d := &demo{c: c, start: time.Now(), hc: &http.Client{Timeout: 2 * time.Second}, ports: map[string]bool{}, group: "bench"}
	nAddr, err := d.freeAddr("127.0.0.2")
	if err != nil {
		return nil, err
	}
	d.nAddr = nAddr
	if _, err := d.spawn(exe, filepath.Join(dir, "naming.log"), "-log-level", "warn", "naming", "-profile", profile,
		"-bind", nAddr, "-data-dir", filepath.Join(dir, "naming")); err != nil {
		return nil, err
	}
	if d.naming, err = client.New(nAddr, client.WithTimeout(time.Second)); err != nil {
		d.stop()
		return nil, err
	}
	if !d.waitFor(20*time.Second, func() bool { _, err := d.naming.Health(context.Background()); return err == nil }) {
		d.stop()
		return nil, fmt.Errorf("the naming node did not start on %s: see %s", nAddr, filepath.Join(dir, "naming.log"))
	}
	for i := 1; i <= n; i++ {
		a := &demoAgent{id: uint64(i), ip: fmt.Sprintf("127.0.0.%d", 10+i)}
		if a.bind, err = d.freeAddr(a.ip); err == nil {
			a.api, err = d.freeAddr(a.ip)
		}
		if err != nil {
			d.stop()
			return nil, err
		}
		d.agents = append(d.agents, a)
	}
	for _, a := range d.agents {
		if err := d.startBenchAgent(exe, dir, profile, mode, a, faults); err != nil {
			d.stop()
			return nil, err
		}
	}
	if !d.waitFor(30*time.Second, func() bool { ok, _ := d.stable(); return ok }) {
		d.stop()
		return nil, fmt.Errorf("the %s group of %d did not elect a master within 30s: see the logs in %s", mode, n, dir)
	}
	return d, nil
}

// startBenchAgent starts (or restarts, on its data dir) agent a.
func (d *demo) startBenchAgent(exe, dir, profile, mode string, a *demoAgent, faults bool) error {
	n := len(d.agents)
	var join []string
	for _, b := range d.agents {
		if b != a {
			join = append(join, b.bind)
		}
	}
	args := []string{"-log-level", "warn", "agent", "-profile", profile, "-group", d.groupName(), "-id", fmt.Sprint(a.id),
		"-bind", a.bind, "-api", a.api, "-naming", d.nAddr, "-priority", fmt.Sprint(n + 1 - int(a.id)), "-mode", mode,
		"-data-dir", filepath.Join(dir, fmt.Sprintf("agent-%d", a.id)), "-join", strings.Join(join, ",")}
	if mode == "strict" {
		args = append(args, "-expect", fmt.Sprint(n))
	}
	if faults {
		args = append(args, "-fault-control")
	}
	var err error
	a.cmd, err = d.spawn(exe, filepath.Join(dir, fmt.Sprintf("agent-%d.log", a.id)), args...)
	return err
}

func (d *demo) apis() []string {
	var out []string
	for _, a := range d.agents {
		out = append(out, a.api)
	}
	return out
}

func benchWriteRun(c *cli.Context, exe, dir, profile, mode string, n, writers int, duration time.Duration) (benchWrites, error) {
	w := benchWrites{Mode: mode, Backups: n - 1}
	d, err := benchGroup(c, exe, dir, profile, mode, n, false)
	if err != nil {
		return w, err
	}
	defer d.stop()
	value := []byte(strings.Repeat("v", benchValueBytes))
	var (
		mu   sync.Mutex
		lats []time.Duration
		errs atomic.Int64
		wg   sync.WaitGroup
	)
	_, master := d.stable() // 0 when it cannot tell now: then no CPU figures
	ctx, cancel := context.WithTimeout(c.Context, duration)
	defer cancel()
	before := d.sampleCPU(master)
	start := time.Now()
	for i := 0; i < writers; i++ {
		cl, err := aclient.New(aclient.Config{Group: d.groupName(), Naming: d.nAddr, Agents: d.apis(), Timeout: 5 * time.Second})
		if err != nil {
			return w, err
		}
		defer cl.Close()
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			var local []time.Duration
			for k := 0; ctx.Err() == nil; k++ {
				t := time.Now()
				_, err := cl.Put(ctx, fmt.Sprintf("w%d-%d", i, k%1000), value)
				if ctx.Err() != nil {
					break
				}
				if err != nil {
					errs.Add(1)
					continue
				}
				local = append(local, time.Since(t))
			}
			mu.Lock()
			lats = append(lats, local...)
			mu.Unlock()
		}(i)
	}
	wg.Wait()
	elapsed := time.Since(start)
	after := d.sampleCPU(master)
	w.Writes, w.Errors = len(lats), int(errs.Load())
	w.perWrite(before, after)
	w.PerSecond = float64(len(lats)) / elapsed.Seconds()
	w.P50MS, w.P99MS = ms(quantile(lats, 0.5)), ms(quantile(lats, 0.99))
	return w, nil
}

func benchFailover(c *cli.Context, exe, dir, profile string, rounds int) (benchTimes, error) {
	t := benchTimes{Mode: "strict", Agents: 3, Rounds: rounds}
	d, err := benchGroup(c, exe, dir, profile, "strict", 3, false)
	if err != nil {
		return t, err
	}
	defer d.stop()
	cl, err := aclient.New(aclient.Config{Group: d.groupName(), Naming: d.nAddr, Agents: d.apis(), Timeout: 30 * time.Second})
	if err != nil {
		return t, err
	}
	defer cl.Close()
	var times []time.Duration
	for r := 0; r < rounds; r++ {
		ok, master := d.stable()
		if !ok {
			return t, fmt.Errorf("failover round %d: the group is not stable", r)
		}
		a := d.agents[master-1]
		if _, err := cl.Put(c.Context, "failover", []byte("before")); err != nil {
			return t, fmt.Errorf("failover round %d: a write before the kill: %w", r, err)
		}
		a.cmd.Process.Signal(syscall.SIGKILL)
		killed := time.Now()
		a.cmd.Wait()
		if _, err := cl.Put(c.Context, "failover", []byte(fmt.Sprint(r))); err != nil {
			return t, fmt.Errorf("failover round %d: no write after the kill: %w", r, err)
		}
		times = append(times, time.Since(killed))
		if err := d.startBenchAgent(exe, dir, profile, "strict", a, false); err != nil {
			return t, err
		}
		if !d.waitFor(30*time.Second, func() bool { ok, _ := d.stable(); return ok }) {
			return t, fmt.Errorf("failover round %d: the restarted agent %d did not rejoin within 30s", r, a.id)
		}
	}
	t.fill(times)
	return t, nil
}

func benchHeal(c *cli.Context, exe, dir, profile string, rounds int) (benchTimes, error) {
	t := benchTimes{Mode: "available", Agents: 5, Rounds: rounds}
	d, err := benchGroup(c, exe, dir, profile, "available", 5, true)
	if err != nil {
		return t, err
	}
	defer d.stop()
	var times []time.Duration
	for r := 0; r < rounds; r++ {
		namingIP := strings.Split(d.nAddr, ":")[0]
		for _, a := range d.agents {
			peers := []string{"127.0.0.14", "127.0.0.15"}
			if a.id > 3 {
				peers = []string{"127.0.0.11", "127.0.0.12", "127.0.0.13", namingIP}
			}
			if err := d.fault(a, wire.FaultRequest{Action: "partition", Peers: peers}); err != nil {
				return t, err
			}
		}
		if !d.waitFor(20*time.Second, func() bool { return len(d.masters()) >= 2 }) {
			return t, fmt.Errorf("heal round %d: the minority elected no master within 20s", r)
		}
		for _, a := range d.agents {
			if err := d.fault(a, wire.FaultRequest{Action: "heal"}); err != nil {
				return t, err
			}
		}
		healed := time.Now()
		if !d.waitFor(30*time.Second, func() bool { ok, _ := d.stable(); return ok }) {
			return t, fmt.Errorf("heal round %d: no single synced master within 30s of the heal", r)
		}
		times = append(times, time.Since(healed))
	}
	t.fill(times)
	return t, nil
}

func (t *benchTimes) fill(times []time.Duration) {
	for _, d := range times {
		t.AllMS = append(t.AllMS, ms(d))
	}
	t.MedianMS, t.MaxMS = ms(quantile(times, 0.5)), ms(slices.Max(times))
}

func quantile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[min(len(s)-1, int(float64(len(s))*q))]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func printBench(c *cli.Context, rep benchReport) {
	w := c.App.Writer
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "MODE\tBACK-UPS\tWRITES/S\tVS 1\tP50\tP99\tWRITES\tERRORS\tMASTER CPU\tBACK-UP CPU\tCLIENT CPU")
	for _, r := range rep.Writes {
		vs := "-"
		if r.VsOne > 0 {
			vs = fmt.Sprintf("%.2fx", r.VsOne)
		}
		cpu := "-\t-\t-"
		if r.MasterCPU > 0 {
			cpu = fmt.Sprintf("%.0fµs\t%.0fµs\t%.0fµs", r.MasterCPU, r.BackupCPU, r.ClientCPU)
		}
		fmt.Fprintf(tw, "%s\t%d\t%.0f\t%s\t%.1fms\t%.1fms\t%d\t%d\t%s\n", r.Mode, r.Backups, r.PerSecond, vs, r.P50MS, r.P99MS, r.Writes, r.Errors, cpu)
	}
	tw.Flush()
	fmt.Fprintf(w, "\nfailover (%s, %d agents, %d kills): median %.0fms, max %.0fms\n", rep.Failover.Mode, rep.Failover.Agents,
		rep.Failover.Rounds, rep.Failover.MedianMS, rep.Failover.MaxMS)
	fmt.Fprintf(w, "heal (%s, %d agents, %d splits): median %.0fms, max %.0fms\n", rep.Heal.Mode, rep.Heal.Agents,
		rep.Heal.Rounds, rep.Heal.MedianMS, rep.Heal.MaxMS)
	h := rep.How
	fmt.Fprintf(w, "\nhow: profile %s on %d CPUs shared by every process; %d writers of %d-byte values for %s per run, through the Go client to the master;\n",
		h.Profile, h.CPUs, h.Writers, h.ValueBytes, h.Duration)
	fmt.Fprintf(w, "     %s.\n     failover: %s.\n     heal: %s.\n", h.Storage, h.Failover, h.Heal)
	fmt.Fprintf(w, "     CPU: %s.\n", h.CPU)
}
