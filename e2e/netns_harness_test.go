package e2e

// The root-only tier of e2e (testing layer 4, package documentation): every process
// on its own test host, a network namespace joined to the others through a
// bridge, and real packet drops by iptables between hosts.
//
// Layout of one test's network, all of it made by the test and removed at
// its cleanup:
//
//	msb-ID          bridge namespace: br0, and one veth end hN per host
//	msh-ID-0        host 0 (the naming node): eth0 at 10.213.X.10/24
//	msh-ID-N        host N (agent N): eth0 at 10.213.X.(10+N)/24
//
// ID is random per test, X is random per test. The root namespace's
// networking is never touched: the test talks to its processes by running
// commands inside a host namespace (`ip netns exec NS ...`), either the
// mastership binary's own query commands or this test binary re-executed
// as a one-shot HTTP client (see netnsHTTPEnv).
//
// A test that finds itself without root, `ip netns` or iptables skips with
// the reason; MASTERSHIP_E2E_NO_NETNS=1 forces the skip.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mastership/mastership/agent/kv"
	"github.com/mastership/mastership/agent/wire"
	"github.com/mastership/mastership/recover"
)

const (
	// netnsSkipEnv, set to anything but "" or "0", skips the netns tier.
	netnsSkipEnv = "MASTERSHIP_E2E_NO_NETNS"
	// netnsHTTPEnv turns this test binary into a one-shot HTTP client:
	// "METHOD URL", the body on stdin; it prints the status code on the
	// first line and the body after it. Run inside a host namespace, it is
	// how the test reaches agent APIs the binary has no command for.
	netnsHTTPEnv = "MASTERSHIP_E2E_NETNS_HTTP"
	// netnsLockDir holds one lock file per live test network; a network
	// whose lock nobody holds is a leftover of a crashed run.
	netnsLockDir = "/run/mastership-e2e-netns"
	bridgePrefix = "msb-"
	hostPrefix   = "msh-"
)

func init() {
	if req := os.Getenv(netnsHTTPEnv); req != "" {
		os.Exit(httpHelper(req, os.Stdin, os.Stdout, os.Stderr))
	}
}

// httpHelper is the body of the one-shot HTTP client.
func httpHelper(req string, stdin io.Reader, stdout, stderr io.Writer) int {
	method, url, ok := strings.Cut(req, " ")
	if !ok {
		fmt.Fprintf(stderr, "%s: want \"METHOD URL\", got %q\n", netnsHTTPEnv, req)
		return 2
	}
	var body io.Reader
	if method == http.MethodPost || method == http.MethodPut {
		b, err := io.ReadAll(stdin)
		if err != nil {
			fmt.Fprintln(stderr, "read body:", err)
			return 1
		}
		body = bytes.NewReader(b)
	}
	r, err := http.NewRequest(method, url, body)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	if body != nil {
		r.Header.Set("Content-Type", "application/json")
	}
	resp, err := (&http.Client{Timeout: 4 * time.Second}).Do(r)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	defer resp.Body.Close()
	fmt.Fprintln(stdout, resp.StatusCode)
	io.Copy(stdout, resp.Body)
	return 0
}

var netnsCheck struct {
	once   sync.Once
	reason string // why the tier skips; "" when it can run
}

// requireNetns skips t unless the netns tier can run here. The first call
// also removes leftovers of crashed runs.
func requireNetns(t *testing.T) {
	t.Helper()
	netnsCheck.once.Do(func() { netnsCheck.reason = netnsUnavailable() })
	if netnsCheck.reason != "" {
		t.Skip("netns e2e tier skipped: " + netnsCheck.reason)
	}
}

func netnsUnavailable() string {
	if v := os.Getenv(netnsSkipEnv); v != "" && v != "0" {
		return netnsSkipEnv + "=" + v
	}
	if os.Geteuid() != 0 {
		return "not root"
	}
	for _, tool := range []string{"ip", "iptables", "iptables-restore"} {
		if _, err := exec.LookPath(tool); err != nil {
			return tool + " not found (apt-get install -y iproute2 iptables)"
		}
	}
	if out, err := exec.Command("ip", "netns", "list").CombinedOutput(); err != nil {
		return fmt.Sprintf("ip netns list: %v: %s", err, bytes.TrimSpace(out))
	}
	sweepLeftovers()
	// One throwaway namespace proves we may make namespaces and run
	// iptables inside them.
	ns := bridgePrefix + "probe" + randHex(2)
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		return fmt.Sprintf("ip netns add: %v: %s", err, bytes.TrimSpace(out))
	}
	defer exec.Command("ip", "netns", "del", ns).Run()
	if out, err := exec.Command("ip", "netns", "exec", ns, "iptables", "-w", "-S").CombinedOutput(); err != nil {
		return fmt.Sprintf("iptables in a namespace: %v: %s", err, bytes.TrimSpace(out))
	}
	return ""
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// netnsOwner returns the run ID a test namespace belongs to, or "".
func netnsOwner(ns string) string {
	switch {
	case strings.HasPrefix(ns, bridgePrefix):
		return strings.TrimPrefix(ns, bridgePrefix)
	case strings.HasPrefix(ns, hostPrefix):
		id, _, _ := strings.Cut(strings.TrimPrefix(ns, hostPrefix), "-")
		return id
	}
	return ""
}

// lockHeld reports whether a live run holds the lock of network id.
func lockHeld(id string) bool {
	f, err := os.Open(filepath.Join(netnsLockDir, id+".lock"))
	if err != nil {
		return false
	}
	defer f.Close()
	return syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) != nil
}

// sweepLeftovers removes the msb-/msh- namespaces of crashed runs (those
// whose lock no live process holds), with the processes left inside them.
// Namespaces of other live runs, and every other namespace, are left alone.
func sweepLeftovers() {
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		return
	}
	stale := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 {
			continue
		}
		ns := fields[0]
		id := netnsOwner(ns)
		if id == "" {
			continue
		}
		held, seen := stale[id]
		if !seen {
			held = !lockHeld(id)
			stale[id] = held
		}
		if held {
			deleteNetns(ns)
		}
	}
	for id, s := range stale {
		if s {
			os.Remove(filepath.Join(netnsLockDir, id+".lock"))
		}
	}
}

// deleteNetns kills what runs in ns (only ever a test namespace) and
// deletes it.
func deleteNetns(ns string) {
	if out, err := exec.Command("ip", "netns", "pids", ns).Output(); err == nil {
		for _, f := range strings.Fields(string(out)) {
			if pid, err := strconv.Atoi(f); err == nil && pid > 1 {
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
	exec.Command("ip", "netns", "del", ns).Run()
}

// testNet is one test's network of hosts.
type testNet struct {
	t      *testing.T
	id     string
	bridge string
	hosts  []*host
	lock   *os.File
}

// host is one test host: a namespace with one address.
type host struct {
	n  int
	ns string
	ip string
}

func (h *host) addr(port int) string { return fmt.Sprintf("%s:%d", h.ip, port) }

// newTestNet makes a bridge and hosts 0..n-1 on it; everything goes at
// t's cleanup, even when the test fails or panics.
func newTestNet(t *testing.T, n int) *testNet {
	t.Helper()
	requireNetns(t)
	tn := &testNet{t: t, id: randHex(3)}
	tn.bridge = bridgePrefix + tn.id
	if err := os.MkdirAll(netnsLockDir, 0o700); err != nil {
		t.Fatal(err)
	}
	lock, err := os.OpenFile(filepath.Join(netnsLockDir, tn.id+".lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	tn.lock = lock
	t.Cleanup(tn.destroy) // registered first: runs after every process is gone

	x := 1 + int(randByte())%254
	tn.ip("netns", "add", tn.bridge)
	tn.ip("-n", tn.bridge, "link", "set", "lo", "up")
	tn.ip("-n", tn.bridge, "link", "add", "br0", "type", "bridge")
	tn.ip("-n", tn.bridge, "link", "set", "br0", "up")
	for i := 0; i < n; i++ {
		h := &host{n: i, ns: fmt.Sprintf("%s%s-%d", hostPrefix, tn.id, i), ip: fmt.Sprintf("10.213.%d.%d", x, 10+i)}
		port := fmt.Sprintf("h%d", i)
		tn.ip("netns", "add", h.ns)
		tn.hosts = append(tn.hosts, h)
		tn.ip("-n", h.ns, "link", "set", "lo", "up")
		tn.ip("-n", h.ns, "link", "add", "eth0", "type", "veth", "peer", "name", port, "netns", tn.bridge)
		tn.ip("-n", tn.bridge, "link", "set", port, "master", "br0", "up")
		tn.ip("-n", h.ns, "addr", "add", h.ip+"/24", "dev", "eth0")
		tn.ip("-n", h.ns, "link", "set", "eth0", "up")
	}
	t.Logf("test network %s: hosts 10.213.%d.10-%d", tn.id, x, 10+n-1)
	return tn
}

func randByte() byte {
	var b [1]byte
	rand.Read(b[:])
	return b[0]
}

func (tn *testNet) ip(args ...string) {
	tn.t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		tn.t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
}

func (tn *testNet) destroy() {
	for _, h := range tn.hosts {
		deleteNetns(h.ns)
	}
	deleteNetns(tn.bridge)
	os.Remove(tn.lock.Name())
	tn.lock.Close() // releases the flock
}

// startIn runs the mastership binary inside h's namespace, as start does
// on localhost: killed at cleanup, output logged if the test failed. `ip
// netns exec` execs the binary in place, so signals to the proc reach it.
func startIn(t *testing.T, h *host, name string, args ...string) *proc {
	t.Helper()
	return execProcIn(t, h, name, binary, args...)
}

// execProcIn runs the executable at path inside h's namespace as startIn
// runs the binary (etcd, for the benchmark against it).
func execProcIn(t *testing.T, h *host, name, path string, args ...string) *proc {
	t.Helper()
	cmd := exec.Command("ip", append([]string{"netns", "exec", h.ns, path}, args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // no orphans if the test binary dies
	p := &proc{name: name, cmd: cmd, done: make(chan struct{})}
	var out io.Writer = lockedWriter{p}
	// MASTERSHIP_E2E_LOG_DIR keeps every process's whole output, for
	// runs at -log-level debug.
	if dir := os.Getenv("MASTERSHIP_E2E_LOG_DIR"); dir != "" {
		f, err := os.Create(filepath.Join(dir, strings.ReplaceAll(t.Name()+"-"+name, "/", "_")+fmt.Sprintf("-%d.log", time.Now().UnixNano())))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		out = io.MultiWriter(out, f)
	}
	p.cmd.Stdout, p.cmd.Stderr = out, out
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			t.Logf("--- output of %s:\n%s", name, lastLines(p.output(), 100))
		}
	})
	return p
}

func lastLines(s string, n int) string {
	lines := strings.SplitAfter(s, "\n")
	if len(lines) > n {
		lines = append([]string{fmt.Sprintf("[%d earlier lines]\n", len(lines)-n)}, lines[len(lines)-n:]...)
	}
	return strings.Join(lines, "")
}

func (p *proc) signal(sig syscall.Signal) error { return p.cmd.Process.Signal(sig) }

// execIn runs a command inside h's namespace with a deadline and returns
// its stdout; a non-zero exit is an error carrying stderr.
func execIn(h *host, timeout time.Duration, env []string, stdin []byte, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", h.ns, name}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("%s %s in %s: %w: %s", filepath.Base(name), strings.Join(args, " "), h.ns, err, bytes.TrimSpace(stderr.Bytes()))
	}
	return stdout.String(), nil
}

// mastershipIn runs a mastership query command inside h's namespace.
func mastershipIn(h *host, args ...string) (string, error) {
	return execIn(h, 5*time.Second, nil, nil, binary, args...)
}

var testBinary = sync.OnceValue(func() string {
	p, err := os.Executable()
	if err != nil {
		return os.Args[0]
	}
	return p
})

// httpIn sends one HTTP request from inside h's namespace and returns the
// status code and body.
func httpIn(h *host, method, url string, body any) (int, []byte, error) {
	var in []byte
	if body != nil {
		var err error
		if in, err = json.Marshal(body); err != nil {
			return 0, nil, err
		}
	}
	out, err := execIn(h, 6*time.Second, []string{netnsHTTPEnv + "=" + method + " " + url}, in, testBinary())
	if err != nil {
		return 0, nil, err
	}
	first, rest, _ := strings.Cut(out, "\n")
	code, err := strconv.Atoi(first)
	if err != nil {
		return 0, nil, fmt.Errorf("http helper output %q", out)
	}
	return code, []byte(rest), nil
}

var commands struct {
	mu  sync.Mutex
	has map[string]bool
}

// hasCommand reports whether the binary has subcommand name: some land
// after this tier, which uses them once they exist.
func hasCommand(name string) bool {
	commands.mu.Lock()
	defer commands.mu.Unlock()
	if commands.has == nil {
		commands.has = map[string]bool{}
	}
	has, ok := commands.has[name]
	if !ok {
		has = exec.Command(binary, "help", name).Run() == nil
		commands.has[name] = has
	}
	return has
}

// Cuts. A cut of a pair drops every packet between the two hosts, in both
// directions, by rules in both namespaces; heal flushes every rule.

type rule struct {
	chain string // INPUT or OUTPUT
	peer  *host
}

func (r rule) String() string {
	if r.chain == "INPUT" {
		return "-A INPUT -s " + r.peer.ip + "/32 -j DROP"
	}
	return "-A OUTPUT -d " + r.peer.ip + "/32 -j DROP"
}

// apply adds rules to each host's filter table, all hosts at once, one
// iptables-restore per host so a partition lands in one step.
func (tn *testNet) apply(rules map[*host][]rule, flush bool) {
	tn.t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, len(tn.hosts))
	for _, h := range tn.hosts {
		rs := rules[h]
		if len(rs) == 0 && !flush {
			continue
		}
		var b strings.Builder
		b.WriteString("*filter\n")
		if flush {
			b.WriteString(":INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n")
		}
		for _, r := range rs {
			b.WriteString(r.String() + "\n")
		}
		b.WriteString("COMMIT\n")
		args := []string{"-w"}
		if !flush {
			args = append(args, "--noflush")
		}
		wg.Add(1)
		go func(h *host, in string) {
			defer wg.Done()
			if _, err := execIn(h, 10*time.Second, nil, []byte(in), "iptables-restore", args...); err != nil {
				errs <- err
			}
		}(h, b.String())
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		tn.t.Fatal(err)
	}
}

// partition cuts every host of a from every host of b.
func (tn *testNet) partition(a, b []*host) {
	tn.t.Helper()
	rules := map[*host][]rule{}
	for _, x := range a {
		for _, y := range b {
			rules[x] = append(rules[x], rule{"INPUT", y}, rule{"OUTPUT", y})
			rules[y] = append(rules[y], rule{"INPUT", x}, rule{"OUTPUT", x})
		}
	}
	tn.apply(rules, false)
}

// dropOutput drops what from sends to each of to, and nothing else: an
// asymmetric cut.
func (tn *testNet) dropOutput(from *host, to ...*host) {
	tn.t.Helper()
	rules := map[*host][]rule{}
	for _, y := range to {
		rules[from] = append(rules[from], rule{"OUTPUT", y})
	}
	tn.apply(rules, false)
}

// heal removes every cut.
func (tn *testNet) heal() {
	tn.t.Helper()
	tn.apply(nil, true)
}

// A cluster on a test network: the naming node on host 0, agent N on
// host N, all in one group.

const (
	netGroup      = "orders"
	namingPort    = 7400
	gossipPort    = 7946
	agentAPIPort  = gossipPort + 1000 // the API's default: bind's port + 1000
	netnsLogLevel = "info"            // MASTERSHIP_E2E_LOG_LEVEL overrides
)

func logLevelArg() string {
	if l := os.Getenv("MASTERSHIP_E2E_LOG_LEVEL"); l != "" {
		return l
	}
	return netnsLogLevel
}

type netCluster struct {
	t      *testing.T
	net    *testNet
	mode   string
	count  int      // agents, on hosts 1..count
	nhosts []*host  // naming hosts: host 0, then the hosts after the agents'
	naming []*proc  // the naming nodes, by index in nhosts
	ndirs  []string // their data directories
	agents map[int]*proc
	args   map[int][]string // each agent's command line, for restarts
	// hookDir holds each agent's on-role-change log (hooks-N.log) when
	// the cluster runs with hooks.
	hookDir string
	// vantage, when set, is the host the harness asks the naming cluster
	// from (host 0 otherwise): a test that cuts host 0 off moves it.
	vantage *host
}

type clusterOpts struct {
	agents  int
	mode    string // strict or available
	expect  int    // -expect, 0 for none
	namings int    // naming nodes, 1 (default) or 3 (a cluster)
	// hooks gives every agent an -on-role-change script that appends its
	// arguments and environment to hooks-N.log in hookDir.
	hooks bool
	// veto gives every agent a -pre-promote script: exit 1 on agent veto,
	// exit 0 elsewhere (0: no gate). With veto 1 the first master is 2.
	veto int
}

// gateScript, the start of the -pre-promote scripts, appends a line per
// run to gates-N.log: the wall time, then the role and epoch it was asked
// about.
const gateScript = `#!/bin/sh
echo "$(date +%s%N) $MASTERSHIP_ROLE $MASTERSHIP_EPOCH.$MASTERSHIP_EPOCH_ID" >> "$(dirname "$0")/gates-$MASTERSHIP_ID.log"
`

// hookScript appends a line per run: the wall time in nanoseconds, then
// ROLE PREVIOUS GROUP ID, then the MASTERSHIP_* variables.
const hookScript = `#!/bin/sh
echo "$(date +%s%N) $1 ${2:--} $3 $4 epoch=$MASTERSHIP_EPOCH.$MASTERSHIP_EPOCH_ID master=${MASTERSHIP_MASTER:--} addr=${MASTERSHIP_MASTER_ADDR:--} role=$MASTERSHIP_ROLE previous=${MASTERSHIP_PREVIOUS_ROLE:--} group=$MASTERSHIP_GROUP id=$MASTERSHIP_ID" >> "$(dirname "$0")/hooks-$4.log"
`

// newNetCluster starts a naming node and the agents, priorities n..1 so
// agent 1 is the first master, and waits until agent 1 is master with
// every agent following it.
func newNetCluster(t *testing.T, o clusterOpts) *netCluster {
	t.Helper()
	requireNetns(t)
	if !hasCommand("agent") {
		t.Skip("netns e2e tier skipped: the binary has no `mastership agent` yet")
	}
	namings := max(o.namings, 1)
	c := &netCluster{t: t, net: newTestNet(t, o.agents+namings), mode: o.mode, count: o.agents, agents: map[int]*proc{},
		args: map[int][]string{}}
	if o.hooks || o.veto > 0 {
		c.hookDir = t.TempDir()
		for name, body := range map[string]string{"hook.sh": hookScript, "pass.sh": gateScript + "exit 0\n", "veto.sh": gateScript + "exit 1\n"} {
			if err := os.WriteFile(filepath.Join(c.hookDir, name), []byte(body), 0o755); err != nil {
				t.Fatal(err)
			}
		}
	}
	c.nhosts = append(c.nhosts, c.net.hosts[0])
	c.nhosts = append(c.nhosts, c.net.hosts[o.agents+1:]...)
	for range c.nhosts {
		c.ndirs = append(c.ndirs, t.TempDir())
	}
	c.naming = make([]*proc, len(c.nhosts))
	for i := range c.nhosts {
		c.startNamingAt(i)
	}
	c.waitNaming()
	var gossip []string
	for n := 1; n <= o.agents; n++ {
		gossip = append(gossip, c.net.hosts[n].addr(gossipPort))
	}
	for n := 1; n <= o.agents; n++ {
		h := c.net.hosts[n]
		var join []string
		for _, g := range gossip {
			if g != h.addr(gossipPort) {
				join = append(join, g)
			}
		}
		args := []string{"-log-level", logLevelArg(), "agent", "-group", netGroup, "-id", strconv.Itoa(n),
			"-bind", h.addr(gossipPort), "-join", strings.Join(join, ","), "-naming", c.namingList(),
			"-priority", strconv.Itoa(o.agents + 1 - n), "-mode", o.mode, "-profile", "local", "-data-dir", t.TempDir()}
		if o.expect > 0 {
			args = append(args, "-expect", strconv.Itoa(o.expect))
		}
		if o.hooks {
			args = append(args, "-on-role-change", filepath.Join(c.hookDir, "hook.sh"))
		}
		if o.veto > 0 {
			gate := map[bool]string{true: "veto.sh", false: "pass.sh"}[n == o.veto]
			args = append(args, "-pre-promote", filepath.Join(c.hookDir, gate))
		}
		c.args[n] = args
		c.startAgent(n)
	}
	t.Cleanup(c.dumpOnFailure) // runs before the processes are killed
	want := uint64(1)
	if o.veto == 1 {
		want = 2
	}
	m, _ := c.waitStable(30*time.Second, c.ids())
	if m != want {
		t.Fatalf("first master is %d, want %d", m, want)
	}
	return c
}

// startAgent starts (or restarts, on its data directory) agent n.
func (c *netCluster) startAgent(n int) {
	c.t.Helper()
	c.agents[n] = startIn(c.t, c.host(n), fmt.Sprintf("agent %d", n), c.args[n]...)
}

// dumpOnFailure logs what every agent and the naming node say of the
// group, when the test failed.
func (c *netCluster) dumpOnFailure() {
	if !c.t.Failed() {
		return
	}
	for _, n := range c.ids() {
		h := c.host(n)
		out, err := mastershipIn(h, "info", "-agent", h.addr(agentAPIPort), "-json")
		c.t.Logf("--- info of agent %d: %v\n%s", n, err, out)
	}
	h := c.namingHost()
	out, err := mastershipIn(h, "status", "-naming", c.namingList(), "-group", netGroup)
	c.t.Logf("--- naming status: %v\n%s", err, out)
	out, err = mastershipIn(h, "events", "-naming", c.namingList(), "-group", netGroup)
	c.t.Logf("--- naming events: %v\n%s", err, lastLines(out, 60))
	if len(c.nhosts) > 1 {
		out, err = mastershipIn(h, "peers", "-naming", c.namingList())
		c.t.Logf("--- naming peers: %v\n%s", err, out)
	}
}

func (c *netCluster) namingHost() *host {
	if c.vantage != nil {
		return c.vantage
	}
	return c.net.hosts[0]
}

func (c *netCluster) host(n int) *host { return c.net.hosts[n] }

func (c *netCluster) hosts(ns ...int) []*host {
	var hs []*host
	for _, n := range ns {
		hs = append(hs, c.net.hosts[n])
	}
	return hs
}

func (c *netCluster) ids() []int {
	var ids []int
	for n := 1; n <= c.count; n++ {
		ids = append(ids, n)
	}
	return ids
}

// namingList is every naming node's address, as agents and commands take it.
func (c *netCluster) namingList() string {
	var addrs []string
	for _, h := range c.nhosts {
		addrs = append(addrs, h.addr(namingPort))
	}
	return strings.Join(addrs, ",")
}

// startNaming starts (or restarts, on the same data directory and address)
// the first naming node and waits until the naming service answers.
func (c *netCluster) startNaming() {
	c.t.Helper()
	c.startNamingAt(0)
	c.waitNaming()
}

// startNamingAt starts naming node i (a member of the cluster of every
// naming host when there are several).
func (c *netCluster) startNamingAt(i int) {
	c.t.Helper()
	h := c.nhosts[i]
	args := []string{"-log-level", logLevelArg(), "naming", "-profile", "local", "-bind", h.addr(namingPort), "-data-dir", c.ndirs[i]}
	if len(c.nhosts) > 1 {
		args = append(args, "-peers", c.namingList())
	}
	c.naming[i] = startIn(c.t, h, fmt.Sprintf("naming %d", i), args...)
}

// waitNaming waits until the naming service answers a status.
func (c *netCluster) waitNaming() {
	c.t.Helper()
	waitFor(c.t, 20*time.Second, "the naming service answers", func() bool {
		_, err := mastershipIn(c.namingHost(), "status", "-naming", c.namingList(), "-json")
		return err == nil
	})
}

// namingLeader returns the index in nhosts of the naming node that says it
// leads, or -1.
func (c *netCluster) namingLeader() int {
	for i, h := range c.nhosts {
		code, b, err := httpIn(c.namingHost(), "GET", "http://"+h.addr(namingPort)+"/v1/health", nil)
		if err != nil || code != 200 {
			continue
		}
		var hr struct {
			Role string `json:"role"`
		}
		if json.Unmarshal(b, &hr) == nil && hr.Role == "leader" {
			return i
		}
	}
	return -1
}

// infoString is the part of an agent's info a failure shows.
func infoString(i wire.Info) string {
	return fmt.Sprintf("%d:%s(master=%d epoch=%s applied=%d digest=%.12s)", i.ID, i.Role, i.Master, i.Epoch, i.Applied, i.Digest)
}

// info asks agent n, from its own host, for its /v1/info (`mastership
// info -json` prints the agent's reply as it came).
func (c *netCluster) info(n int) (wire.Info, error) {
	h := c.host(n)
	api := h.addr(agentAPIPort)
	var body []byte
	if hasCommand("info") {
		out, err := mastershipIn(h, "info", "-agent", api, "-json")
		if err != nil {
			return wire.Info{}, err
		}
		body = []byte(out)
	} else {
		code, b, err := httpIn(h, "GET", "http://"+api+"/v1/info", nil)
		if err != nil {
			return wire.Info{}, err
		}
		if code != 200 {
			return wire.Info{}, fmt.Errorf("GET /v1/info of %d: %d %s", n, code, b)
		}
		body = b
	}
	var in wire.Info
	if err := json.Unmarshal(body, &in); err != nil {
		return wire.Info{}, fmt.Errorf("info of %d: %v: %q", n, err, body)
	}
	return in, nil
}

// infos asks every agent of ids at once; a failed query has Role "".
func (c *netCluster) infos(ids []int) map[int]wire.Info { return infosOf(ids, c.info) }

// stable reports the one master all of ids follow with equal digests, or
// 0 (recover.CheckConverged, the naming node aside).
func stable(infos map[int]wire.Info, ids []int) uint64 {
	var states []recover.MemberState
	for _, n := range ids {
		states = append(states, recover.StateOfInfo(infos[n]))
	}
	master, err := recover.CheckFollowed(states)
	if err != nil || recover.CheckConverged(states, master) != nil {
		return 0
	}
	return master
}

func describe(infos map[int]wire.Info, ids []int) string {
	var parts []string
	for _, n := range ids {
		if in := infos[n]; in.Role == "" {
			parts = append(parts, fmt.Sprintf("%d:unreachable", n))
		} else {
			parts = append(parts, infoString(in))
		}
	}
	return strings.Join(parts, " ")
}

// stableConfirm is how long a stable group must stay stable before
// waitStable believes it: longer than a few self-monitor periods (100 x
// 3ms), so a group about to find its second master is not taken for done.
const stableConfirm = time.Second

// waitStable waits until agents ids have one master they all follow with
// equal digests, for stableConfirm on end, and returns the master and the
// time the stable stretch began.
func (c *netCluster) waitStable(timeout time.Duration, ids []int) (uint64, time.Time) {
	c.t.Helper()
	deadline := time.Now().Add(timeout + stableConfirm)
	var since time.Time
	var master uint64
	last := map[int]wire.Info{}
	for {
		now := time.Now()
		last = c.infos(ids)
		m := stable(last, ids)
		switch {
		case m == 0:
			since, master = time.Time{}, 0
		case m != master:
			since, master = now, m
		case now.Sub(since) >= stableConfirm:
			return master, since
		}
		if now.After(deadline) {
			c.t.Fatalf("no stable master within %s: %s", timeout, describe(last, ids))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitMaster waits until one of ids is master and returns it and when it
// was first seen.
func (c *netCluster) waitMaster(timeout time.Duration, what string, ids ...int) (int, time.Time) {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		infos := c.infos(ids)
		for _, n := range ids {
			if infos[n].Role == "master" {
				return n, time.Now()
			}
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("timed out after %s waiting for %s: %s", timeout, what, describe(infos, ids))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// write is one client write and whether the agent acknowledged it.
type write struct {
	agent       int
	key, value  string
	client, seq uint64
	acked       bool
	resp        wire.KVResponse
}

// kv sends one kv request to agent n's API from n's host.
func (c *netCluster) kv(n int, req wire.KVRequest) (int, wire.KVResponse, error) {
	code, body, err := httpIn(c.host(n), "POST", "http://"+c.host(n).addr(agentAPIPort)+"/v1/kv", req)
	if err != nil {
		return 0, wire.KVResponse{}, err
	}
	var r wire.KVResponse
	if err := json.Unmarshal(body, &r); err != nil {
		return code, wire.KVResponse{}, fmt.Errorf("kv reply %d %q: %v", code, body, err)
	}
	return code, r, nil
}

// put writes key=value through agent n with a client ID and sequence (so
// a divergence record can be matched to it); an error reply is not an
// acknowledgement.
func (c *netCluster) put(n int, key, value string, client, seq uint64) write {
	w := write{agent: n, key: key, value: value, client: client, seq: seq}
	code, r, err := c.kv(n, wire.KVRequest{Op: kv.KindPut, Key: key, Value: &value, Client: client, Seq: seq})
	w.resp, w.acked = r, err == nil && code == 200 && r.OK
	return w
}

// get reads key through agent n (the master, for a linearizable read).
func (c *netCluster) get(n int, key string) (string, bool, error) {
	code, r, err := c.kv(n, wire.KVRequest{Op: kv.KindGet, Key: key})
	if err != nil {
		return "", false, err
	}
	if code != 200 || !r.OK {
		return "", false, fmt.Errorf("get %s from %d: %d %s %s", key, n, code, r.Code, r.Error)
	}
	if r.Value == nil {
		return "", r.Found, nil
	}
	return *r.Value, r.Found, nil
}

// divergence lists agent n's divergence records (`mastership divergence
// list -json` adds each record's operation decoded, which is not read).
func (c *netCluster) divergence(n int) ([]wire.Record, error) {
	h := c.host(n)
	api := h.addr(agentAPIPort)
	var body []byte
	if hasCommand("divergence") {
		out, err := mastershipIn(h, "divergence", "list", "-agent", api, "-json")
		if err != nil {
			return nil, err
		}
		body = []byte(out)
	} else {
		code, b, err := httpIn(h, "GET", "http://"+api+"/v1/divergence", nil)
		if err != nil {
			return nil, err
		}
		if code != 200 {
			return nil, fmt.Errorf("GET /v1/divergence of %d: %d %s", n, code, b)
		}
		body = b
	}
	var recs []wire.Record
	if err := json.Unmarshal(body, &recs); err != nil {
		return nil, fmt.Errorf("divergence of %d: %v: %q", n, err, body)
	}
	return recs, nil
}

// checkAcked checks invariant 3: every acknowledged write is in the final
// state (read through master) or in some agent's divergence record.
func (c *netCluster) checkAcked(master int, writes []write, agents []int) {
	c.t.Helper()
	recorded := map[[2]uint64]bool{}
	for _, n := range agents {
		recs, err := c.divergence(n)
		if err != nil {
			c.t.Fatal(err)
		}
		for _, r := range recs {
			recorded[[2]uint64{r.Client, r.Seq}] = true
		}
	}
	inState, inRecords := 0, 0
	for _, w := range writes {
		if !w.acked {
			continue
		}
		var v string
		var found bool
		var err error
		// A master just through recovery may not serve reads until an
		// entry of its epoch commits; give it a moment, not forever.
		deadline := time.Now().Add(5 * time.Second)
		for {
			if v, found, err = c.get(master, w.key); err == nil || time.Now().After(deadline) {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		if err != nil {
			c.t.Fatalf("master %d does not serve a read within 5s of being stable: %v", master, err)
		}
		switch {
		case found && v == w.value:
			inState++
		case recorded[[2]uint64{w.client, w.seq}]:
			inRecords++
		default:
			c.t.Errorf("acknowledged write %s=%s (client %d seq %d, through %d at epoch %d.%d index %d) is neither in the final state (found=%v value %q) nor in a divergence record",
				w.key, w.value, w.client, w.seq, w.agent, w.resp.Epoch.Term, w.resp.Epoch.ID, w.resp.Index, found, v)
		}
	}
	c.t.Logf("acknowledged writes: %d in the final state, %d in divergence records", inState, inRecords)
}

// registered returns the naming node's registered master of the group, 0
// for none.
func (c *netCluster) registered() (uint64, error) {
	out, err := mastershipIn(c.namingHost(), "status", "-naming", c.namingList(), "-group", netGroup, "-consistent", "-json")
	if err != nil {
		return 0, err
	}
	var st struct {
		Master *struct {
			ID uint64 `json:"id"`
		} `json:"master"`
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		return 0, fmt.Errorf("status -json: %v: %q", err, out)
	}
	if st.Master == nil {
		return 0, nil
	}
	return st.Master.ID, nil
}

// waitRegistered waits until the naming node registers master.
func (c *netCluster) waitRegistered(timeout time.Duration, master uint64) {
	c.t.Helper()
	var got uint64
	var err error
	deadline := time.Now().Add(timeout)
	for {
		if got, err = c.registered(); err == nil && got == master {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("naming node registers %d (%v) after %s, want %d", got, err, timeout, master)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// report logs the measured line the scenario table is built from; a
// duration of 0 is "-" (does not apply).
func report(t *testing.T, scenario, mode string, heal, failover time.Duration) {
	t.Helper()
	ms := func(d time.Duration) string {
		if d <= 0 {
			return "-"
		}
		return strconv.FormatInt(d.Milliseconds(), 10)
	}
	t.Logf("scenario=%s mode=%s heal_ms=%s failover_ms=%s", scenario, mode, ms(heal), ms(failover))
}
