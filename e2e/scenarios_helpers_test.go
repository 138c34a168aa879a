package e2e

// Helpers of the unprivileged fault scenarios (scenarios_test.go): a
// cluster of real processes on its own 127.0.S.x range, faults through the
// agents' -fault-control API, clients that record a history, and the
// checks of the invariants 1 to 4 of package recover.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	aclient "github.com/mastership/mastership/agent/client"
	"github.com/mastership/mastership/agent/kv"
	"github.com/mastership/mastership/agent/store"
	"github.com/mastership/mastership/agent/wire"
	"github.com/mastership/mastership/naming/api"
	"github.com/mastership/mastership/naming/auth"
	nclient "github.com/mastership/mastership/naming/client"
	"github.com/mastership/mastership/recover"
)

const (
	scGroup    = "scn"
	scAgents   = 5
	scLogLevel = "debug"
	// scHealBound is invariant 1's bound for these scenarios.
	scHealBound = 15 * time.Second
	// scClientTimeout bounds one client operation with its retries.
	scClientTimeout = 2 * time.Second
	// scLogTail is how many lines of each process's log a failure shows.
	scLogTail = 60
)

// scProc is one process whose output goes to a log file.
type scProc struct {
	name string
	log  string
	cmd  *exec.Cmd
	done chan struct{}
}

// scSpawn runs the binary with its output appended to logPath; it is
// killed at t's cleanup (and by the kernel if the test binary dies).
func scSpawn(t *testing.T, name, logPath string, args ...string) *scProc {
	t.Helper()
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fmt.Fprintf(f, "=== %s: %s %s\n", time.Now().Format(time.RFC3339Nano), binary, strings.Join(args, " "))
	p := &scProc{name: name, log: logPath, cmd: exec.Command(binary, args...), done: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = f, f
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(p.kill)
	return p
}

// kill sends SIGKILL (a stopped process dies too) and waits for the exit.
func (p *scProc) kill() {
	p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

func (p *scProc) signal(sig syscall.Signal) error { return p.cmd.Process.Signal(sig) }

// tail returns the last n lines of the process's log.
func (p *scProc) tail(n int) string {
	f, err := os.Open(p.log)
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	total := 0
	for sc.Scan() {
		total++
		lines = append(lines, sc.Text())
		if len(lines) > n {
			lines = lines[1:]
		}
	}
	head := ""
	if total > n {
		head = fmt.Sprintf("[%d earlier lines in %s]\n", total-n, p.log)
	}
	return head + strings.Join(lines, "\n")
}

// scFreeAddr is a host:port on ip free for TCP and UDP a moment ago
// (memberlist binds both).
func scFreeAddr(t *testing.T, ip string) string {
	t.Helper()
	for i := 0; i < 20; i++ {
		addr := freeAddr(t, ip)
		pc, err := net.ListenPacket("udp", addr)
		if err == nil {
			pc.Close()
			return addr
		}
	}
	t.Fatalf("no port free for TCP and UDP on %s", ip)
	return ""
}

type scAgent struct {
	id             int
	ip, bind, api  string
	dir, log       string
	args           []string
	proc           *scProc
	priority       int
	killed, paused bool
}

// scCluster is a naming node on 127.0.S.2 and agents 1..5 on
// 127.0.S.31..35, priorities 5..1, one group.
type scCluster struct {
	t          *testing.T
	checkDir   string // where the -check script looks for sick-N files
	name, mode string
	octet      int
	start      time.Time
	namingIP   string
	namingAddr string
	namingDir  string
	namingLog  string
	naming     *scProc
	agents     []*scAgent // agents[i] has ID i+1
	hc         *http.Client
	nc         *nclient.Client
	sides      *scSides
	// sec, when set, runs the cluster with ACL tokens, mutual TLS and a
	// gossip key; creds are what the harness presents.
	sec   *e2eSecurity
	creds auth.Creds
}

func (c *scCluster) ip(n int) string { return fmt.Sprintf("127.0.%d.%d", c.octet, 30+n) }

// agent returns agent n (1-based).
func (c *scCluster) agent(n int) *scAgent { return c.agents[n-1] }

func (c *scCluster) ids() []int {
	ids := make([]int, len(c.agents))
	for i := range c.agents {
		ids[i] = i + 1
	}
	return ids
}

func (c *scCluster) apis() []string {
	var out []string
	for _, a := range c.agents {
		out = append(out, a.api)
	}
	return out
}

// elapsed is a timestamp for logs.
func (c *scCluster) elapsed() string {
	return fmt.Sprintf("+%5dms", time.Since(c.start).Milliseconds())
}

func (c *scCluster) logf(format string, args ...any) {
	c.t.Helper()
	c.t.Logf("%s %s", c.elapsed(), fmt.Sprintf(format, args...))
}

// newSCCluster starts the naming node and the agents and waits until agent
// 1 (the highest priority) is master, registered and followed by all.
func newSCCluster(t *testing.T, name, mode string, octet, expect int, secure, check bool, extra ...string) *scCluster {
	t.Helper()
	dir := t.TempDir()
	// MASTERSHIP_E2E_LOG_DIR keeps the data directories and logs.
	if keep := os.Getenv("MASTERSHIP_E2E_LOG_DIR"); keep != "" {
		var err error
		if dir, err = os.MkdirTemp(keep, strings.ReplaceAll(t.Name(), "/", "_")+"-"); err != nil {
			t.Fatal(err)
		}
		t.Logf("data and logs in %s", dir)
	}
	c := &scCluster{t: t, name: name, mode: mode, octet: octet, start: time.Now(),
		namingIP: fmt.Sprintf("127.0.%d.2", octet), namingDir: filepath.Join(dir, "naming"), namingLog: filepath.Join(dir, "naming.log"),
		sides: newSCSides()}
	if secure {
		ips := []string{c.namingIP}
		for n := 1; n <= scAgents; n++ {
			ips = append(ips, c.ip(n))
		}
		c.sec = newSecurity(t, ips...)
		c.creds = c.sec.harness
	}
	c.hc = &http.Client{Timeout: 2 * time.Second, Transport: c.creds.Transport(&http.Transport{})}
	t.Cleanup(c.hc.CloseIdleConnections)
	// A failure while starting shows the processes' logs (the scenarios
	// defer dumpOnFailure themselves, to run before the processes die).
	up := false
	defer func() {
		if !up {
			c.dumpOnFailure()
		}
	}()
	c.namingAddr = scFreeAddr(t, c.namingIP)
	c.startNaming()
	for n := 1; n <= scAgents; n++ {
		a := &scAgent{id: n, ip: c.ip(n), priority: scAgents + 1 - n, dir: filepath.Join(dir, fmt.Sprintf("agent-%d", n)),
			log: filepath.Join(dir, fmt.Sprintf("agent-%d.log", n))}
		a.bind, a.api = scFreeAddr(t, a.ip), scFreeAddr(t, a.ip)
		c.agents = append(c.agents, a)
	}
	for _, a := range c.agents {
		var join []string
		for _, b := range c.agents {
			if b != a {
				join = append(join, b.bind)
			}
		}
		a.args = []string{"-log-level", scLogLevel, "agent", "-profile", "local", "-group", scGroup, "-id", fmt.Sprint(a.id),
			"-bind", a.bind, "-api", a.api, "-naming", c.namingAddr, "-priority", fmt.Sprint(a.priority), "-mode", mode,
			"-fault-control", "-data-dir", a.dir, "-join", strings.Join(join, ",")}
		if c.sec != nil {
			a.args = append(a.args, c.sec.agentArgs(a.ip)...)
		}
		if expect > 0 {
			a.args = append(a.args, "-expect", fmt.Sprint(expect))
		}
		if check {
			a.args = append(a.args, "-check", c.checkScript(dir), "-check-interval", "50ms", "-check-failures", "2")
		}
		a.args = append(a.args, extra...)
		a.proc = scSpawn(t, fmt.Sprintf("agent %d", a.id), a.log, a.args...)
	}
	m, _ := c.waitStable(30*time.Second, "the first stable master", c.ids(), true)
	if m != 1 {
		t.Fatalf("first master is %d, want 1 (the highest priority)", m)
	}
	c.logf("cluster up: agent 1 master of %d agents in %s mode", scAgents, mode)
	up = true
	return c
}

// checkScript writes the agents' -check: healthy unless the file
// sick-ID is in dir (sicken makes it).
func (c *scCluster) checkScript(dir string) string {
	p := filepath.Join(dir, "check.sh")
	if _, err := os.Stat(p); err == nil {
		return p
	}
	body := "#!/bin/sh\n[ ! -e \"$(dirname \"$0\")/sick-$MASTERSHIP_ID\" ] || { echo \"service $MASTERSHIP_ID is sick\" >&2; exit 1; }\n"
	if err := os.WriteFile(p, []byte(body), 0o755); err != nil {
		c.t.Fatal(err)
	}
	c.checkDir = dir
	return p
}

// sicken makes agent n's service fail its checks (sick) or pass them.
func (c *scCluster) sicken(n int, sick bool) {
	p := filepath.Join(c.checkDir, fmt.Sprintf("sick-%d", n))
	var err error
	if sick {
		err = os.WriteFile(p, nil, 0o644)
	} else {
		err = os.Remove(p)
	}
	if err != nil {
		c.t.Fatal(err)
	}
}

// startNaming starts (or restarts on the same address and data directory)
// the naming node and waits until it answers.
func (c *scCluster) startNaming() {
	c.t.Helper()
	args := []string{"-log-level", scLogLevel, "naming", "-profile", "local", "-bind", c.namingAddr, "-data-dir", c.namingDir}
	if c.sec != nil {
		args = append(args, c.sec.namingArgs(c.namingIP)...)
	}
	c.naming = scSpawn(c.t, "naming", c.namingLog, args...)
	if c.nc == nil {
		nc, err := nclient.New(c.namingAddr, nclient.WithTimeout(time.Second), nclient.WithCreds(c.creds))
		if err != nil {
			c.t.Fatal(err)
		}
		c.nc = nc
		c.t.Cleanup(nc.Close)
	}
	waitFor(c.t, 10*time.Second, "the naming node answers", func() bool {
		_, err := c.nc.Health(context.Background())
		return err == nil
	})
}

// restartAgent starts a killed agent again on its addresses and data.
func (c *scCluster) restartAgent(n int) {
	a := c.agent(n)
	a.proc = scSpawn(c.t, fmt.Sprintf("agent %d", a.id), a.log, a.args...)
	a.killed = false
}

// dumpOnFailure shows every agent's info, the naming node's events and the
// tail of each process's log.
func (c *scCluster) dumpOnFailure() {
	if !c.t.Failed() {
		return
	}
	for _, a := range c.agents {
		b, err := c.get(a.api, "/v1/info")
		c.t.Logf("--- info of agent %d: %v %s", a.id, err, b)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if evs, err := c.nc.AllEvents(ctx, scGroup, 0); err == nil {
		var lines []string
		for _, e := range evs {
			b, _ := json.Marshal(e)
			lines = append(lines, string(b))
		}
		if len(lines) > 40 {
			lines = lines[len(lines)-40:]
		}
		c.t.Logf("--- naming events (last 40):\n%s", strings.Join(lines, "\n"))
	}
	for _, a := range c.agents {
		if a.proc != nil {
			c.t.Logf("--- log of agent %d (tail):\n%s", a.id, a.proc.tail(scLogTail))
		}
	}
	c.t.Logf("--- log of the naming node (tail):\n%s", c.naming.tail(scLogTail))
}

func (c *scCluster) get(addr, path string) ([]byte, error) {
	resp, err := c.hc.Get(c.creds.URL(addr, path))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != 200 {
		err = fmt.Errorf("GET %s%s: %s", addr, path, resp.Status)
	}
	return b, err
}

func (c *scCluster) info(n int) (wire.Info, error) {
	var in wire.Info
	b, err := c.get(c.agent(n).api, "/v1/info")
	if err != nil {
		return in, err
	}
	return in, json.Unmarshal(b, &in)
}

// infos asks agents ids at once; a failed query has Role "".
func (c *scCluster) infos(ids []int) map[int]wire.Info { return infosOf(ids, c.info) }

// infosOf asks info of every agent of ids at once; a failed query has
// Role "".
func infosOf(ids []int, info func(n int) (wire.Info, error)) map[int]wire.Info {
	var mu sync.Mutex
	out := map[int]wire.Info{}
	var wg sync.WaitGroup
	for _, n := range ids {
		wg.Go(func() {
			in, err := info(n)
			if err != nil {
				in = wire.Info{ID: uint64(n)}
			}
			mu.Lock()
			out[n] = in
			mu.Unlock()
		})
	}
	wg.Wait()
	return out
}

func scDescribe(infos map[int]wire.Info, ids []int) string {
	var parts []string
	for _, n := range ids {
		in := infos[n]
		if in.Role == "" {
			parts = append(parts, fmt.Sprintf("%d:unreachable", n))
			continue
		}
		parts = append(parts, fmt.Sprintf("%d:%s(master=%d epoch=%s applied=%d serving=%v digest=%.10s)",
			n, in.Role, in.Master, in.Epoch, in.Applied, in.Serving, in.Digest))
	}
	return strings.Join(parts, " ")
}

// scRoles reports the one serving master that every agent of ids follows
// at its epoch (the others as back-ups), or 0; with digests, every digest must equal
// the master's too.
func scRoles(infos map[int]wire.Info, ids []int, digests bool) uint64 {
	var states []recover.MemberState
	for _, n := range ids {
		states = append(states, recover.StateOfInfo(infos[n]))
	}
	master, err := recover.CheckFollowed(states)
	if err != nil || !infos[int(master)].Serving {
		return 0
	}
	if digests && recover.CheckConverged(states, master) != nil {
		return 0
	}
	return master
}

// registered is the naming node's retained master, 0 for none.
func (c *scCluster) registered() uint64 {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	look, err := c.nc.Lookup(ctx, api.LookupRequest{Group: scGroup})
	if err != nil || look.Master == nil {
		return 0
	}
	return look.Master.ID
}

// waitStable waits until ids have one master, registered at the naming
// node, that all follow (with equal digests when digests is set), seen
// twice 300ms apart; it returns the master and when it was first seen.
func (c *scCluster) waitStable(timeout time.Duration, what string, ids []int, digests bool) (uint64, time.Time) {
	c.t.Helper()
	m, at, last := c.pollStable(timeout, ids, digests)
	if m == 0 {
		c.t.Fatalf("%s: no %s within %s: %s (naming node registers %d)", c.name, what, timeout, scDescribe(last, ids), c.registered())
	}
	return m, at
}

func (c *scCluster) pollStable(timeout time.Duration, ids []int, digests bool) (uint64, time.Time, map[int]wire.Info) {
	deadline := time.Now().Add(timeout)
	var since time.Time
	var master uint64
	var last map[int]wire.Info
	for {
		now := time.Now()
		last = c.infos(ids)
		m := scRoles(last, ids, digests)
		if m != 0 && c.registered() != m {
			m = 0
		}
		switch {
		case m == 0:
			since, master = time.Time{}, 0
		case m != master:
			since, master = now, m
		case now.Sub(since) >= 300*time.Millisecond:
			return master, since, last
		}
		if now.After(deadline) && (master == 0 || now.After(deadline.Add(time.Second))) {
			return 0, time.Time{}, last
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitMaster waits until one of ids other than not is a serving master.
func (c *scCluster) waitMaster(timeout time.Duration, what string, not int, ids ...int) int {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		infos := c.infos(ids)
		for _, n := range ids {
			if n != not && infos[n].Role == api.RoleMaster.String() {
				return n
			}
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("%s: timed out after %s waiting for %s: %s", c.name, timeout, what, scDescribe(infos, ids))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// fault posts one fault request to agent n.
func (c *scCluster) fault(n int, req wire.FaultRequest) {
	c.t.Helper()
	b, _ := json.Marshal(req)
	resp, err := c.hc.Post(c.creds.URL(c.agent(n).api, "/v1/fault"), "application/json", strings.NewReader(string(b)))
	if err != nil {
		c.t.Fatalf("fault %s on agent %d: %v", req.Action, n, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		body, _ := io.ReadAll(resp.Body)
		c.t.Fatalf("fault %s on agent %d: %s %s", req.Action, n, resp.Status, body)
	}
}

// partition cuts the agents into sides (every agent on exactly one side);
// the naming node is reachable from the agents of namingWith only. Both
// ends of every cut are applied, each agent's faults replaced at once.
// The workload's clients follow: each client is on the side of its home
// agent.
func (c *scCluster) partition(sides [][]int, namingWith []int) {
	c.t.Helper()
	sideOf := map[int]int{}
	for s, ids := range sides {
		for _, n := range ids {
			sideOf[n] = s
		}
	}
	namingOK := map[int]bool{}
	for _, n := range namingWith {
		namingOK[n] = true
	}
	block := map[int][]string{}
	for _, n := range c.ids() {
		for _, m := range c.ids() {
			if sideOf[m] != sideOf[n] {
				block[n] = append(block[n], c.ip(m))
			}
		}
		if !namingOK[n] {
			block[n] = append(block[n], c.namingIP)
		}
	}
	for _, n := range c.ids() {
		if c.agent(n).killed {
			continue
		}
		c.fault(n, wire.FaultRequest{Action: "heal"})
		if len(block[n]) > 0 {
			c.fault(n, wire.FaultRequest{Action: "partition", Peers: block[n]})
		}
	}
	c.sides.set(block)
	var desc []string
	for _, s := range sides {
		desc = append(desc, fmt.Sprint(s))
	}
	c.logf("partition %s; the naming node reachable from %v", strings.Join(desc, "|"), namingWith)
}

// heal removes every fault of every agent and of the clients.
func (c *scCluster) heal() {
	c.t.Helper()
	for _, n := range c.ids() {
		if !c.agent(n).killed {
			c.fault(n, wire.FaultRequest{Action: "heal"})
		}
	}
	c.sides.set(nil)
	c.logf("heal")
}

// divergence returns every agent's divergence records, a state record
// with its state as its Op.
func (c *scCluster) divergence() ([]store.Record, error) {
	var all []store.Record
	for _, a := range c.agents {
		b, err := c.get(a.api, "/v1/divergence")
		if err != nil {
			return nil, fmt.Errorf("divergence of agent %d: %w", a.id, err)
		}
		var recs []store.Record
		if err := json.Unmarshal(b, &recs); err != nil {
			return nil, fmt.Errorf("divergence of agent %d: %v: %s", a.id, err, b)
		}
		for i, r := range recs {
			if !r.State {
				continue
			}
			// A state record's state comes apart; it stands in for the
			// record's operation here.
			st, err := c.get(a.api, fmt.Sprintf("/v1/divergence/%d/state", r.ID))
			if err != nil {
				return nil, fmt.Errorf("state of record %d of agent %d: %w", r.ID, a.id, err)
			}
			if len(st) != r.StateBytes {
				return nil, fmt.Errorf("state of record %d of agent %d: %d bytes, the record says %d", r.ID, a.id, len(st), r.StateBytes)
			}
			recs[i].Op = st
		}
		all = append(all, recs...)
	}
	return all, nil
}

// scSides is what the test's clients may reach: a client homed on agent n
// is cut from the hosts agent n is cut from, so a client "on the minority
// side" writes to the minority's master. Connections already open to a
// host fail on their next read or write once it is cut.
type scSides struct {
	mu    sync.Mutex
	block map[int]map[string]bool
}

func newSCSides() *scSides { return &scSides{} }

func (s *scSides) set(block map[int][]string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.block = map[int]map[string]bool{}
	for n, hosts := range block {
		s.block[n] = map[string]bool{}
		for _, h := range hosts {
			s.block[n][h] = true
		}
	}
}

func (s *scSides) cut(home int, addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.block[home][host]
}

var errSCCut = errors.New("e2e: cut by the scenario's partition")

// dialer is the Dial of a client homed on agent home.
func (s *scSides) dialer(home int) func(ctx context.Context, network, addr string) (net.Conn, error) {
	d := &net.Dialer{Timeout: time.Second}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		if s.cut(home, addr) {
			return nil, fmt.Errorf("dial %s: %w", addr, errSCCut)
		}
		conn, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return &scConn{Conn: conn, s: s, home: home, addr: addr}, nil
	}
}

type scConn struct {
	net.Conn
	s    *scSides
	home int
	addr string
}

func (c *scConn) Read(b []byte) (int, error) {
	if c.s.cut(c.home, c.addr) {
		c.Conn.Close()
		return 0, errSCCut
	}
	return c.Conn.Read(b)
}

func (c *scConn) Write(b []byte) (int, error) {
	if c.s.cut(c.home, c.addr) {
		c.Conn.Close()
		return 0, errSCCut
	}
	return c.Conn.Write(b)
}

// The history. Times are nanoseconds since the workload began; a failed
// operation (its outcome unknown) returns at +inf for porcupine.

type scInput struct {
	Kind         string // put, get, cas
	Key, Value   string
	Expect       string
	ExpectAbsent bool
}

type scOutput struct {
	Unknown bool // the operation failed: it may or may not take effect
	OK      bool // cas: swapped
	Found   bool
	Value   string
}

type scOp struct {
	Client    int
	In        scInput
	Out       scOutput
	Call, Ret int64
	Err       error
	Epoch     api.Epoch
	Master    uint64
	MaxEpoch  api.Epoch // the client's MaxEpoch after the operation
}

func (op scOp) String() string {
	in := fmt.Sprintf("%s(%s", op.In.Kind, op.In.Key)
	switch op.In.Kind {
	case kv.KindPut:
		in += ", " + op.In.Value
	case kv.KindCAS:
		in += fmt.Sprintf(", expect %q absent=%v, %s", op.In.Expect, op.In.ExpectAbsent, op.In.Value)
	}
	in += ")"
	out := fmt.Sprintf("ok=%v found=%v %q from master %d at epoch %s", op.Out.OK, op.Out.Found, op.Out.Value, op.Master, op.Epoch)
	if op.Err != nil {
		out = "error: " + op.Err.Error()
	}
	return fmt.Sprintf("client %d [%.3fs, %.3fs] %s -> %s", op.Client+1, float64(op.Call)/1e9, float64(op.Ret)/1e9, in, out)
}

// scWorkload runs the clients and records their history.
type scWorkload struct {
	c       *scCluster
	start   time.Time
	mu      sync.Mutex
	ops     []scOp
	clients []*aclient.Client
	homes   []int
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	stopped bool
}

// startWorkload starts one client per entry of homes (the agent each
// client's network follows), and one idle client for the scenario. Strict groups run puts and gets on each
// client's own keys and CAS on one shared key; available groups write a
// fresh key per put.
func (c *scCluster) startWorkload(homes ...int) *scWorkload {
	c.t.Helper()
	w := &scWorkload{c: c, start: time.Now(), homes: homes}
	ctx, cancel := context.WithCancel(context.Background())
	w.cancel = cancel
	// One more client, homed on agent 1, runs no loop: scenarios drive it
	// (index len(homes)).
	for i, home := range append(append([]int(nil), homes...), 1) {
		cl, err := aclient.New(aclient.Config{Group: scGroup, Naming: c.namingAddr, Agents: c.apis(),
			ClientID: uint64(c.octet)*1000 + uint64(i+1), Timeout: scClientTimeout, Dial: c.sides.dialer(home), Creds: c.creds})
		if err != nil {
			c.t.Fatal(err)
		}
		w.clients = append(w.clients, cl)
		c.t.Cleanup(cl.Close)
	}
	for i := range homes {
		w.wg.Add(1)
		go func(i int) {
			defer w.wg.Done()
			if c.mode == "strict" {
				w.strictLoop(ctx, i)
			} else {
				w.availableLoop(ctx, i)
			}
		}(i)
	}
	c.t.Cleanup(w.stop)
	return w
}

func (w *scWorkload) now() int64 { return time.Since(w.start).Nanoseconds() }

// stop ends the clients' loops and waits for them.
func (w *scWorkload) stop() {
	w.cancel()
	w.wg.Wait()
	w.mu.Lock()
	w.stopped = true
	w.mu.Unlock()
}

// do runs one operation through client i and records it.
func (w *scWorkload) do(ctx context.Context, i int, in scInput) scOp {
	cl := w.clients[i]
	op := scOp{Client: i, In: in, Call: w.now()}
	var r aclient.Reply
	var err error
	switch in.Kind {
	case kv.KindPut:
		r, err = cl.Put(ctx, in.Key, []byte(in.Value))
	case kv.KindGet:
		r, err = cl.Get(ctx, in.Key)
	case kv.KindCAS:
		r, err = cl.CAS(ctx, in.Key, []byte(in.Expect), in.ExpectAbsent, []byte(in.Value))
	}
	op.Ret = w.now()
	op.MaxEpoch = cl.MaxEpoch()
	if err != nil {
		// Whatever the error, the model takes the weaker claim: the
		// operation may or may not have taken effect.
		op.Err, op.Out.Unknown = err, true
	} else {
		op.Out = scOutput{OK: r.OK, Found: r.Found, Value: string(r.Value)}
		op.Epoch, op.Master = r.Epoch, r.Master
	}
	w.mu.Lock()
	w.ops = append(w.ops, op)
	w.mu.Unlock()
	return op
}

func (w *scWorkload) pause(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

func (w *scWorkload) availableLoop(ctx context.Context, i int) {
	for seq := 1; ctx.Err() == nil; seq++ {
		w.do(ctx, i, scInput{Kind: kv.KindPut, Key: fmt.Sprintf("c%d-w%d", i+1, seq), Value: fmt.Sprintf("v%d-%d", i+1, seq)})
		w.pause(ctx, 10*time.Millisecond)
	}
}

const (
	scSharedKey = "shared"
	scOwnKeys   = 4
)

func (w *scWorkload) strictLoop(ctx context.Context, i int) {
	rnd := rand.New(rand.NewSource(int64(w.c.octet*100 + i)))
	shared, sharedKnown := "", false // the shared key as last seen ("" = absent)
	for seq := 1; ctx.Err() == nil; seq++ {
		own := fmt.Sprintf("c%d-k%d", i+1, rnd.Intn(scOwnKeys))
		var in scInput
		switch p := rnd.Intn(10); {
		case p < 4:
			in = scInput{Kind: kv.KindPut, Key: own, Value: fmt.Sprintf("c%d-%d", i+1, seq)}
		case p < 6:
			in = scInput{Kind: kv.KindGet, Key: own}
		case p < 7:
			in = scInput{Kind: kv.KindGet, Key: scSharedKey}
		default:
			in = scInput{Kind: kv.KindCAS, Key: scSharedKey, Value: fmt.Sprintf("c%d-%d", i+1, seq), Expect: shared, ExpectAbsent: !sharedKnown || shared == ""}
			if in.ExpectAbsent {
				in.Expect = ""
			}
		}
		op := w.do(ctx, i, in)
		if in.Key == scSharedKey && !op.Out.Unknown {
			switch {
			case in.Kind == kv.KindCAS && op.Out.OK:
				shared, sharedKnown = in.Value, true
			case op.Out.Found:
				shared, sharedKnown = op.Out.Value, true
			default:
				shared, sharedKnown = "", true
			}
		}
		w.pause(ctx, 5*time.Millisecond)
	}
}

// history returns a copy of the operations so far.
func (w *scWorkload) history() []scOp {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]scOp(nil), w.ops...)
}

// firstAckBy returns when the first write acknowledged by a master other
// than old, invoked after since, returned; zero when none was.
func (w *scWorkload) firstAckBy(old uint64, since time.Time) time.Time {
	from := since.Sub(w.start).Nanoseconds()
	best := int64(math.MaxInt64)
	for _, op := range w.history() {
		if op.Err == nil && op.In.Kind != kv.KindGet && op.Master != old && op.Ret >= from && op.Ret < best {
			best = op.Ret
		}
	}
	if best == math.MaxInt64 {
		return time.Time{}
	}
	return w.start.Add(time.Duration(best))
}

// counts summarises the history by outcome.
func (w *scWorkload) counts() string {
	ok, failed := map[int]int{}, map[int]int{}
	var lastErr = map[int]error{}
	for _, op := range w.history() {
		if op.Err == nil {
			ok[op.Client]++
		} else {
			failed[op.Client]++
			lastErr[op.Client] = op.Err
		}
	}
	var parts []string
	for i := range w.homes {
		s := fmt.Sprintf("client %d (home %d): %d ok, %d failed", i+1, w.homes[i], ok[i], failed[i])
		if lastErr[i] != nil {
			s += fmt.Sprintf(" (last error: %v)", lastErr[i])
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, "; ")
}

// checkEpochs is invariant 4 for the clients: the epochs of each client's
// successful replies, in its order of operations, and its MaxEpoch never
// go backwards.
func (w *scWorkload) checkEpochs() error {
	type seen struct {
		reply, max api.Epoch
	}
	last := map[int]*seen{}
	for _, op := range w.history() {
		s := last[op.Client]
		if s == nil {
			s = &seen{}
			last[op.Client] = s
		}
		if op.MaxEpoch.Less(s.max) {
			return fmt.Errorf("client %d: MaxEpoch went back from %s to %s (after %s %q)", op.Client+1, s.max, op.MaxEpoch, op.In.Kind, op.In.Key)
		}
		s.max = op.MaxEpoch
		if op.Err != nil {
			continue
		}
		if op.Epoch.Less(s.reply) {
			return fmt.Errorf("client %d: reply to %s %q at epoch %s from master %d, after a reply at %s", op.Client+1, op.In.Kind, op.In.Key, op.Epoch, op.Master, s.reply)
		}
		s.reply = op.Epoch
	}
	return nil
}

// The porcupine model: a key-value store of strings, "" for absent (every
// value written is non-empty), partitioned by key.

func scKVModel() porcupine.Model {
	return porcupine.Model{
		Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
			byKey := map[string][]porcupine.Operation{}
			var keys []string
			for _, op := range history {
				k := op.Input.(scInput).Key
				if _, ok := byKey[k]; !ok {
					keys = append(keys, k)
				}
				byKey[k] = append(byKey[k], op)
			}
			sort.Strings(keys)
			var out [][]porcupine.Operation
			for _, k := range keys {
				out = append(out, byKey[k])
			}
			return out
		},
		Init: func() interface{} { return "" },
		Step: func(state, input, output interface{}) (bool, interface{}) {
			s, in, out := state.(string), input.(scInput), output.(scOutput)
			switch in.Kind {
			case kv.KindPut:
				return true, in.Value
			case kv.KindGet:
				if out.Unknown {
					return true, s
				}
				return out.Found == (s != "") && out.Value == s, s
			case kv.KindCAS:
				match := s == in.Expect && s != ""
				if in.ExpectAbsent {
					match = s == ""
				}
				if out.Unknown {
					if match {
						return true, in.Value
					}
					return true, s
				}
				if out.OK {
					return match, in.Value
				}
				return !match && out.Found == (s != "") && out.Value == s, s
			}
			return false, s
		},
		DescribeOperation: func(input, output interface{}) string {
			in, out := input.(scInput), output.(scOutput)
			res := fmt.Sprintf("ok=%v found=%v %q", out.OK, out.Found, out.Value)
			if out.Unknown {
				res = "unknown"
			}
			switch in.Kind {
			case kv.KindPut:
				return fmt.Sprintf("put(%s, %s) -> %s", in.Key, in.Value, res)
			case kv.KindGet:
				return fmt.Sprintf("get(%s) -> %s", in.Key, res)
			}
			return fmt.Sprintf("cas(%s, %q absent=%v -> %s) -> %s", in.Key, in.Expect, in.ExpectAbsent, in.Value, res)
		},
		DescribeState: func(state interface{}) string { return fmt.Sprintf("%q", state) },
	}
}

// checkLinearizable checks the history with porcupine. Failed reads are
// left out (they changed nothing); failed writes may take effect at any
// time after their call.
func checkLinearizable(t *testing.T, name string, ops []scOp) error {
	var hist []porcupine.Operation
	for _, op := range ops {
		if op.Out.Unknown && op.In.Kind == kv.KindGet {
			continue
		}
		ret := op.Ret
		if op.Out.Unknown {
			ret = math.MaxInt64
		}
		hist = append(hist, porcupine.Operation{ClientId: op.Client, Input: op.In, Output: op.Out, Call: op.Call, Return: ret})
	}
	model := scKVModel()
	res, info := porcupine.CheckOperationsVerbose(model, hist, 30*time.Second)
	switch res {
	case porcupine.Ok:
		return nil
	case porcupine.Unknown:
		return fmt.Errorf("porcupine could not decide within 30s on %d operations", len(hist))
	}
	path := filepath.Join(os.TempDir(), fmt.Sprintf("mastership-e2e-%s-%d.html", name, time.Now().UnixNano()))
	if err := porcupine.VisualizePath(model, info, path); err != nil {
		path = "(visualization failed: " + err.Error() + ")"
	}
	return fmt.Errorf("the history of %d operations is not linearizable; visualization in %s%s", len(hist), path, staleReplies(ops))
}

// staleReplies explains a failed check: successful replies from a master
// at an epoch older than one another reply had already carried, with the
// last acknowledged writes of the same key before them.
func staleReplies(ops []scOp) string {
	sorted := append([]scOp(nil), ops...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Call < sorted[j].Call })
	var b strings.Builder
	shown := 0
	for _, op := range sorted {
		if op.Err != nil || shown >= 5 {
			continue
		}
		var newest *scOp
		for i := range sorted {
			o := &sorted[i]
			if o.Err == nil && o.Ret < op.Call && op.Epoch.Less(o.Epoch) && (newest == nil || newest.Epoch.Less(o.Epoch)) {
				newest = o
			}
		}
		if newest == nil {
			continue
		}
		shown++
		fmt.Fprintf(&b, "\n  reply from a superseded master: %s\n    after a reply at epoch %s: %s", op, newest.Epoch, *newest)
		var writes []scOp
		for _, o := range sorted {
			if o.In.Key == op.In.Key && o.Err == nil && o.In.Kind != kv.KindGet && o.Ret < op.Call && (o.In.Kind == kv.KindPut || o.Out.OK) {
				writes = append(writes, o)
			}
		}
		if len(writes) > 3 {
			writes = writes[len(writes)-3:]
		}
		for _, o := range writes {
			fmt.Fprintf(&b, "\n    acknowledged before it: %s", o)
		}
	}
	return b.String()
}
