package e2e

// Mastership against etcd on the same test hosts, in one run, alternating:
// three strict agents with data dirs and a naming node against three etcd
// members; one HTTP JSON load generator (16 writers, 100-byte values) on a
// client host against the master or leader; failover is SIGKILL of the
// master or leader until a put through each one's command-line client
// succeeds. Not a CI gate (it takes minutes, and its figures are the
// machine's): run it by hand, as root, with Debian's etcd-server:
//
//	apt-get install etcd-server etcd-client
//	MASTERSHIP_E2E_BENCH=1 go test -run TestNetnsBenchAgainstEtcd -v -timeout 30m ./e2e/
//
// MASTERSHIP_E2E_BENCH_DURATION (8s) and MASTERSHIP_E2E_BENCH_ROUNDS (5)
// size it.

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

const (
	loadgenEnv     = "MASTERSHIP_E2E_LOADGEN"
	etcdClientPort = 2379
	etcdPeerPort   = 2380
)

func init() {
	if spec := os.Getenv(loadgenEnv); spec != "" {
		os.Exit(loadgen(spec, os.Stdout, os.Stderr))
	}
}

// loadResult is what the load generator prints.
type loadResult struct {
	Writes    int     `json:"writes"`
	Errors    int     `json:"errors"`
	PerSecond float64 `json:"writes_per_s"`
	P50MS     float64 `json:"p50_ms"`
	P99MS     float64 `json:"p99_ms"`
}

// loadgen runs "KIND URL WRITERS DURATION" (KIND mastership or etcd): each
// writer puts 100-byte values over HTTP JSON with keep-alive, as fast as
// the target answers.
func loadgen(spec string, stdout, stderr io.Writer) int {
	f := strings.Fields(spec)
	if len(f) != 4 {
		fmt.Fprintf(stderr, "%s: want KIND URL WRITERS DURATION, got %q\n", loadgenEnv, spec)
		return 2
	}
	kind, url := f[0], f[1]
	writers, err1 := strconv.Atoi(f[2])
	d, err2 := time.ParseDuration(f[3])
	if err1 != nil || err2 != nil || writers < 1 {
		fmt.Fprintf(stderr, "%s: bad %q\n", loadgenEnv, spec)
		return 2
	}
	value := strings.Repeat("v", 100)
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: writers}}
	body := func(w, k int) (string, []byte) {
		key := fmt.Sprintf("w%d-%d", w, k%1000)
		if kind == "etcd" {
			b, _ := json.Marshal(map[string]string{"key": base64.StdEncoding.EncodeToString([]byte(key)),
				"value": base64.StdEncoding.EncodeToString([]byte(value))})
			return url + "/v3/kv/put", b
		}
		b, _ := json.Marshal(map[string]any{"op": "put", "key": key, "value": value})
		return url + "/v1/kv", b
	}
	var mu sync.Mutex
	var lats []time.Duration
	errs := 0
	var wg sync.WaitGroup
	start := time.Now()
	deadline := start.Add(d)
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			var local []time.Duration
			bad := 0
			for k := 0; time.Now().Before(deadline); k++ {
				u, b := body(w, k)
				t := time.Now()
				resp, err := hc.Post(u, "application/json", bytes.NewReader(b))
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != 200 {
						err = fmt.Errorf("%s", resp.Status)
					}
				}
				if err != nil {
					bad++
					continue
				}
				local = append(local, time.Since(t))
			}
			mu.Lock()
			lats = append(lats, local...)
			errs += bad
			mu.Unlock()
		}(w)
	}
	wg.Wait()
	elapsed := time.Since(start)
	slices.Sort(lats)
	q := func(p float64) float64 {
		if len(lats) == 0 {
			return 0
		}
		return float64(lats[min(len(lats)-1, int(float64(len(lats))*p))].Microseconds()) / 1000
	}
	json.NewEncoder(stdout).Encode(loadResult{Writes: len(lats), Errors: errs, PerSecond: float64(len(lats)) / elapsed.Seconds(),
		P50MS: q(0.5), P99MS: q(0.99)})
	return 0
}

// benchSystem is one of the two systems under load: how to start member
// i (1..3), find the master or leader, and put through its CLI.
type benchSystem struct {
	name   string
	start  func(i int)
	leader func() (int, error)
	url    func(i int) string // the load generator's target on member i
	// put writes through the system's command-line client; down is the
	// member killed (0: none), which a client told of it skips.
	put  func(from *host, down int) error
	kind string
}

type benchRow struct {
	config              string
	load                loadResult
	failMedian, failMax time.Duration
}

func envDuration(t *testing.T, key string, def time.Duration) time.Duration {
	if s := os.Getenv(key); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			t.Fatalf("%s=%q: want a duration", key, s)
		}
		return d
	}
	return def
}

func TestNetnsBenchAgainstEtcd(t *testing.T) {
	if os.Getenv("MASTERSHIP_E2E_BENCH") == "" {
		t.Skip("a benchmark, not a gate: MASTERSHIP_E2E_BENCH=1 runs it (see the file's comment)")
	}
	for _, bin := range []string{"etcd", "etcdctl"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("%s is not installed (apt-get install etcd-server etcd-client)", bin)
		}
	}
	duration := envDuration(t, "MASTERSHIP_E2E_BENCH_DURATION", 8*time.Second)
	rounds := loopRuns(t, "MASTERSHIP_E2E_BENCH_ROUNDS", 5)
	etcdPath, _ := exec.LookPath("etcd")
	etcdctl, _ := exec.LookPath("etcdctl")

	var rows []benchRow
	for _, cfg := range []struct {
		config  string
		profile string // mastership
		hb, el  int    // etcd, ms
	}{
		{"Mastership lan (heartbeat 200 ms, election 1 s)", "lan", 0, 0},
		{"etcd default (heartbeat 100 ms, election 1 s)", "", 100, 1000},
		{"Mastership local (heartbeat 50 ms, election 300 ms)", "local", 0, 0},
		{"etcd tuned (heartbeat 10 ms, election 100 ms)", "", 10, 100},
	} {
		t.Run(strings.Fields(cfg.config)[0]+"-"+strings.Fields(cfg.config)[1], func(t *testing.T) {
			// hosts: 0 naming, 1..3 members, 4 the client.
			tn := newTestNet(t, 5)
			client := tn.hosts[4]
			var sys benchSystem
			procs := map[int]*proc{}
			if cfg.profile != "" {
				sys = mastershipSystem(t, tn, cfg.profile, procs)
			} else {
				sys = etcdSystem(t, tn, etcdPath, etcdctl, cfg.hb, cfg.el, procs)
			}
			for i := 1; i <= 3; i++ {
				sys.start(i)
			}
			var leader int
			waitFor(t, 60*time.Second, sys.name+" electing", func() bool {
				l, err := sys.leader()
				leader = l
				return err == nil && l > 0 && sys.put(client, 0) == nil
			})
			out, err := execIn(client, duration+30*time.Second,
				[]string{fmt.Sprintf("%s=%s %s 16 %s", loadgenEnv, sys.kind, sys.url(leader), duration)}, nil, testBinary())
			if err != nil {
				t.Fatal(err)
			}
			var row benchRow
			row.config = cfg.config
			if err := json.Unmarshal([]byte(out), &row.load); err != nil {
				t.Fatalf("load generator: %v: %q", err, out)
			}
			var fails []time.Duration
			for r := 0; r < rounds; r++ {
				l, err := sys.leader()
				if err != nil || l == 0 {
					t.Fatalf("round %d: no leader: %v", r, err)
				}
				procs[l].kill()
				killed := time.Now()
				deadline := killed.Add(60 * time.Second)
				for sys.put(client, l) != nil {
					if time.Now().After(deadline) {
						t.Fatalf("round %d: no put 60s after killing %d", r, l)
					}
				}
				fails = append(fails, time.Since(killed))
				sys.start(l)
				waitFor(t, 60*time.Second, "the killed member back", func() bool {
					l2, err := sys.leader()
					return err == nil && l2 > 0 && sys.put(client, 0) == nil
				})
				// Let the restarted member catch up before the next kill.
				time.Sleep(2 * time.Second)
			}
			slices.Sort(fails)
			row.failMedian, row.failMax = fails[len(fails)/2], fails[len(fails)-1]
			t.Logf("%s: %.0f writes/s (p50 %.1f ms, p99 %.1f ms, %d errors); failover median %s max %s over %d kills: %v",
				cfg.config, row.load.PerSecond, row.load.P50MS, row.load.P99MS, row.load.Errors,
				row.failMedian.Round(time.Millisecond), row.failMax.Round(time.Millisecond), rounds, fails)
			rows = append(rows, row)
		})
	}
	if len(rows) != 4 {
		return
	}
	var b strings.Builder
	b.WriteString("\n| config | writes/s (p50, p99) | failover median / max |\n|---|---|---|\n")
	for _, r := range rows {
		fmt.Fprintf(&b, "| %s | %.0f (%.1f ms, %.1f ms) | %d / %d ms |\n", r.config, r.load.PerSecond, r.load.P50MS, r.load.P99MS,
			r.failMedian.Milliseconds(), r.failMax.Milliseconds())
	}
	ratio := func(a, b float64) float64 { return a / b }
	fmt.Fprintf(&b, "\nwrites/s, Mastership / etcd: lan/default %.2fx, local/tuned %.2fx\n",
		ratio(rows[0].load.PerSecond, rows[1].load.PerSecond), ratio(rows[2].load.PerSecond, rows[3].load.PerSecond))
	fmt.Fprintf(&b, "p99, Mastership / etcd: lan/default %.2fx, local/tuned %.2fx\n",
		ratio(rows[0].load.P99MS, rows[1].load.P99MS), ratio(rows[2].load.P99MS, rows[3].load.P99MS))
	fmt.Fprintf(&b, "failover median, Mastership / etcd: lan/default %.2fx, local/tuned %.2fx; Mastership max / median: lan %.2f, local %.2f\n",
		ratio(float64(rows[0].failMedian), float64(rows[1].failMedian)), ratio(float64(rows[2].failMedian), float64(rows[3].failMedian)),
		ratio(float64(rows[0].failMax), float64(rows[0].failMedian)), ratio(float64(rows[2].failMax), float64(rows[2].failMedian)))
	t.Log(b.String())
}

// mastershipSystem is a naming node on host 0 and strict agents 1..3
// (-expect 3, data dirs) on hosts 1..3.
func mastershipSystem(t *testing.T, tn *testNet, profile string, procs map[int]*proc) benchSystem {
	naming := tn.hosts[0]
	procs[0] = startIn(t, naming, "naming", "-log-level", "warn", "naming", "-profile", profile,
		"-bind", naming.addr(namingPort), "-data-dir", t.TempDir())
	dirs := map[int]string{1: t.TempDir(), 2: t.TempDir(), 3: t.TempDir()}
	var gossip []string
	for i := 1; i <= 3; i++ {
		gossip = append(gossip, tn.hosts[i].addr(gossipPort))
	}
	return benchSystem{
		name: "Mastership " + profile,
		kind: "mastership",
		start: func(i int) {
			h := tn.hosts[i]
			var join []string
			for _, g := range gossip {
				if g != h.addr(gossipPort) {
					join = append(join, g)
				}
			}
			procs[i] = startIn(t, h, fmt.Sprintf("agent %d", i), "-log-level", "warn", "agent", "-profile", profile,
				"-group", "bench", "-id", strconv.Itoa(i), "-bind", h.addr(gossipPort), "-join", strings.Join(join, ","),
				"-naming", naming.addr(namingPort), "-priority", strconv.Itoa(4-i), "-mode", "strict", "-expect", "3",
				"-data-dir", dirs[i])
		},
		leader: func() (int, error) {
			out, err := mastershipIn(tn.hosts[4], "status", "-naming", naming.addr(namingPort), "-group", "bench", "-json")
			if err != nil {
				return 0, err
			}
			var st struct {
				Master *struct {
					ID int `json:"id"`
				} `json:"master"`
			}
			if err := json.Unmarshal([]byte(out), &st); err != nil || st.Master == nil {
				return 0, fmt.Errorf("no master: %v %q", err, out)
			}
			return st.Master.ID, nil
		},
		url: func(i int) string { return "http://" + tn.hosts[i].addr(agentAPIPort) },
		put: func(from *host, _ int) error {
			// Through the naming node, which is never the one killed.
			_, err := execIn(from, 30*time.Second, nil, nil, binary, "kv", "put", "-group", "bench",
				"-naming", naming.addr(namingPort), "-timeout", "20s", "failover", "x")
			return err
		},
	}
}

// etcdSystem is etcd members 1..3 on hosts 1..3 with the given heartbeat
// and election timeouts.
func etcdSystem(t *testing.T, tn *testNet, etcdPath, etcdctl string, hb, el int, procs map[int]*proc) benchSystem {
	var initial, endpoints []string
	for i := 1; i <= 3; i++ {
		h := tn.hosts[i]
		initial = append(initial, fmt.Sprintf("m%d=http://%s", i, h.addr(etcdPeerPort)))
		endpoints = append(endpoints, "http://"+h.addr(etcdClientPort))
	}
	dirs := map[int]string{1: t.TempDir(), 2: t.TempDir(), 3: t.TempDir()}
	started := map[int]bool{}
	ctl := func(from *host, down int, timeout string, args ...string) (string, error) {
		var live []string
		for i, e := range endpoints {
			if i+1 != down {
				live = append(live, e)
			}
		}
		return execIn(from, 30*time.Second, []string{"ETCDCTL_API=3"}, nil, etcdctl,
			append([]string{"--endpoints", strings.Join(live, ","), "--command-timeout", timeout, "--dial-timeout", "500ms"}, args...)...)
	}
	return benchSystem{
		name: "etcd",
		kind: "etcd",
		start: func(i int) {
			h := tn.hosts[i]
			state := "new"
			if started[i] {
				state = "existing"
			}
			started[i] = true
			procs[i] = execProcIn(t, h, fmt.Sprintf("etcd %d", i), etcdPath, "--name", fmt.Sprintf("m%d", i),
				"--data-dir", dirs[i], "--listen-peer-urls", "http://"+h.addr(etcdPeerPort),
				"--initial-advertise-peer-urls", "http://"+h.addr(etcdPeerPort),
				"--listen-client-urls", "http://"+h.addr(etcdClientPort), "--advertise-client-urls", "http://"+h.addr(etcdClientPort),
				"--initial-cluster", strings.Join(initial, ","), "--initial-cluster-state", state,
				"--heartbeat-interval", strconv.Itoa(hb), "--election-timeout", strconv.Itoa(el), "--log-level", "warn")
		},
		leader: func() (int, error) {
			out, err := ctl(tn.hosts[4], 0, "5s", "endpoint", "status", "-w", "json")
			if err != nil {
				return 0, err
			}
			var sts []struct {
				Endpoint string `json:"Endpoint"`
				Status   struct {
					Header struct {
						MemberID uint64 `json:"member_id"`
					} `json:"header"`
					Leader uint64 `json:"leader"`
				} `json:"Status"`
			}
			if err := json.Unmarshal([]byte(out), &sts); err != nil {
				return 0, fmt.Errorf("endpoint status: %v: %q", err, out)
			}
			for _, s := range sts {
				if s.Status.Leader != 0 && s.Status.Leader == s.Status.Header.MemberID {
					for i, e := range endpoints {
						if e == s.Endpoint {
							return i + 1, nil
						}
					}
				}
			}
			return 0, fmt.Errorf("no leader among %s", out)
		},
		url: func(i int) string { return "http://" + tn.hosts[i].addr(etcdClientPort) },
		put: func(from *host, down int) error {
			// The client is told which member is gone, and each attempt
			// is bounded to 500 ms and retried (a put sent while the
			// members still follow the dead leader waits out the whole
			// command timeout, 5 s by default): the figure is the
			// cluster's failover, not the client's timeouts.
			_, err := ctl(from, down, "500ms", "put", "failover", "x")
			return err
		},
	}
}
