package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	aclient "github.com/mastership/mastership/agent/client"
	"github.com/mastership/mastership/naming/api"
	"github.com/mastership/mastership/naming/client"
)

// Loop counts of the start-up tests: small by default (CI), larger by
// environment, as the acceptance runs do:
//
//	MASTERSHIP_E2E_START_RUNS=50 MASTERSHIP_E2E_KILL_RUNS=100 \
//	  MASTERSHIP_E2E_PROFILE=lan go test -run 'TestStrictStart' -v ./e2e/
func loopRuns(t *testing.T, env string, def int) int {
	t.Helper()
	s := os.Getenv(env)
	if s == "" {
		return def
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		t.Fatalf("%s=%q: want a count of at least 1", env, s)
	}
	return n
}

func e2eProfile() string {
	if p := os.Getenv("MASTERSHIP_E2E_PROFILE"); p != "" {
		return p
	}
	return "local"
}

// A strict agent needs the group's size: without -expect it refuses to
// start and says why, before it binds or joins anything.
func TestStrictNeedsExpect(t *testing.T) {
	_, errOut, code := run(t, "agent", "-group", "g", "-id", "1", "-bind", freeAddr(t, "127.0.0.1"), "-mode", "strict")
	if code != 2 || !strings.Contains(errOut, "expect") || !strings.Contains(errOut, "strict") {
		t.Fatalf("strict agent without -expect: exit %d, stderr %q; want exit 2 naming -expect", code, errOut)
	}
	for _, bad := range []string{"0", "-1", "1001", "three"} {
		_, errOut, code := run(t, "agent", "-group", "g", "-id", "1", "-bind", freeAddr(t, "127.0.0.1"), "-mode", "strict", "-expect", bad)
		if code != 2 || !strings.Contains(errOut, "expect") {
			t.Errorf("-expect %s: exit %d, stderr %q; want exit 2 naming -expect", bad, code, errOut)
		}
	}
}

// startupGroup is a naming node and three strict agents (-expect 3)
// started at the same instant, each on its own loopback address.
type startupGroup struct {
	naming string
	// namingProc runs the naming node on namingDir.
	namingProc *proc
	namingDir  string
	agents     []cliAgent
	procs      map[uint64]*proc
	nc         *client.Client
}

func startStrictGroup(t *testing.T, run int) *startupGroup {
	t.Helper()
	return startGroupAt(t, run, 3, "strict", false, e2eProfile())
}

// startGroupAt starts a naming node and n agents of mode (strict: -expect
// n) at the same instant, each with every other one's address in -join;
// or, as README.md shows (readme), agent 1 with no -join and the others
// with agent 1's address.
func startGroupAt(t *testing.T, run, n int, mode string, readme bool, profile string, extra ...string) *startupGroup {
	t.Helper()
	third := 50 + run%150
	g := &startupGroup{naming: freeAddr(t, fmt.Sprintf("127.0.%d.2", third)), procs: map[uint64]*proc{}, namingDir: t.TempDir()}
	g.namingProc = startNaming(t, g.naming, g.namingDir)
	nc, err := client.New(g.naming, client.WithTimeout(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	g.nc = nc
	for i := 1; i <= n; i++ {
		ip := fmt.Sprintf("127.0.%d.%d", third, 10+i)
		g.agents = append(g.agents, cliAgent{id: uint64(i), ip: ip, bind: freeAddr(t, ip), api: freeAddr(t, ip)})
	}
	// Every process is started at once: each one's joins may find the
	// others not listening yet, as with agents started together by hand.
	var wg sync.WaitGroup
	var mu sync.Mutex
	release := make(chan struct{})
	for _, a := range g.agents {
		wg.Add(1)
		go func(a cliAgent) {
			defer wg.Done()
			var join []string
			for _, b := range g.agents {
				if b.id != a.id && (!readme || b.id == 1) {
					join = append(join, b.bind)
				}
			}
			args := []string{"-log-level", "info", "agent", "-profile", profile,
				"-group", "g", "-id", strconv.FormatUint(a.id, 10), "-bind", a.bind, "-api", a.api,
				"-naming", g.naming, "-mode", mode}
			if len(join) > 0 {
				args = append(args, "-join", strings.Join(join, ","))
			}
			if mode == "strict" {
				args = append(args, "-expect", strconv.Itoa(n))
			}
			args = append(args, extra...)
			<-release
			p := start(t, fmt.Sprintf("agent%d", a.id), args...)
			mu.Lock()
			g.procs[a.id] = p
			mu.Unlock()
		}(a)
	}
	close(release)
	wg.Wait()
	return g
}

// agentInfo is the part of an agent's GET /v1/info the start-up tests
// compare: its role and the mastership it holds or follows.
type agentInfo struct {
	ID     uint64
	Role   string
	Epoch  api.Epoch
	Master uint64
}

// fetchInfo reads an agent's info through the API client, over hc.
func fetchInfo(hc *http.Client, addr string) (agentInfo, error) {
	ag, err := aclient.NewAPI(aclient.APIConfig{Addr: addr, HTTP: hc})
	if err != nil {
		return agentInfo{}, err
	}
	in, _, err := ag.Info(context.Background())
	return agentInfo{ID: in.ID, Role: in.Role, Epoch: in.Epoch, Master: in.Master}, err
}

// Three strict agents started at the same instant, many times: at no
// sampled moment do two agents act as master, one is elected and
// registered, and the naming node records no competing start-up
// elections (no refused or superseded registration, no conflict).
func TestStrictStartSimultaneous(t *testing.T) {
	runs := loopRuns(t, "MASTERSHIP_E2E_START_RUNS", 3)
	hc := &http.Client{Timeout: time.Second}
	defer hc.CloseIdleConnections()
	var elected []time.Duration
	for r := 0; r < runs; r++ {
		t.Run(fmt.Sprintf("run%d", r), func(t *testing.T) {
			g := startStrictGroup(t, r)
			begin := time.Now()
			var settled time.Time
			rounds := 0
			for {
				// One round samples every agent's role.
				var masters []agentInfo
				for _, a := range g.agents {
					if in, err := fetchInfo(hc, a.api); err == nil && in.Role == "master" {
						masters = append(masters, in)
					}
				}
				rounds++
				if len(masters) > 1 {
					t.Fatalf("round %d, %s after start: %d masters at once: %+v", rounds, time.Since(begin), len(masters), masters)
				}
				if settled.IsZero() && len(masters) == 1 && cliRegistered(t, g.naming, "g") == masters[0].ID {
					settled = time.Now()
					elected = append(elected, settled.Sub(begin))
				}
				if !settled.IsZero() && time.Since(settled) > time.Second {
					break
				}
				if time.Since(begin) > 30*time.Second {
					t.Fatalf("no registered master %s after start", time.Since(begin))
				}
				time.Sleep(2 * time.Millisecond)
			}
			events, err := g.nc.AllEvents(context.Background(), "g", 0)
			if err != nil {
				t.Fatal(err)
			}
			for _, ev := range events {
				switch ev.Kind {
				case api.EventRegistrationRefused, api.EventMasterSuperseded, api.EventConflictDetected:
					t.Errorf("naming event %s (id %d, %s): competing start-up elections", ev.Kind, ev.ID, ev.Reason)
				}
			}
			t.Logf("%d sampling rounds, one master registered %s after start", rounds, elected[len(elected)-1])
		})
	}
	if len(elected) > 0 {
		slices.Sort(elected)
		t.Logf("%d starts (%s profile): elected and registered after median %s, max %s",
			len(elected), e2eProfile(), elected[len(elected)/2], elected[len(elected)-1])
	}
}

// Five available agents (the default mode, no -expect) started at the
// same instant as README.md shows (the first with no -join, the others
// joining it), many times: one master each time, and the naming node
// records no conflict. The start-up grace does it: an agent whose join
// found the first agent not listening yet campaigns only once it met it.
//
//	MASTERSHIP_E2E_START5_RUNS=20 go test -run TestAvailableStartTogether -v ./e2e/
func TestAvailableStartTogether(t *testing.T) {
	runs := loopRuns(t, "MASTERSHIP_E2E_START5_RUNS", 3)
	hc := &http.Client{Timeout: time.Second}
	defer hc.CloseIdleConnections()
	var elected []time.Duration
	for r := 0; r < runs; r++ {
		t.Run(fmt.Sprintf("run%d", r), func(t *testing.T) {
			// The lan profile: its election timeout (1 s) and reconnect
			// interval (1 s) are where agents that missed each other at
			// start used to elect one master each.
			g := startGroupAt(t, 200+r, 5, "available", true, "lan")
			begin := time.Now()
			var master uint64
			waitFor(t, 30*time.Second, "one master, registered, followed by all", func() bool {
				var masters []uint64
				followers := 0
				for _, a := range g.agents {
					in, err := fetchInfo(hc, a.api)
					if err != nil {
						return false
					}
					if in.Role == "master" {
						masters = append(masters, in.ID)
					}
					if in.Master != 0 {
						followers++
					}
				}
				if len(masters) != 1 || followers != len(g.agents) {
					return false
				}
				master = masters[0]
				return cliRegistered(t, g.naming, "g") == master
			})
			elected = append(elected, time.Since(begin))
			events, err := g.nc.AllEvents(context.Background(), "g", 0)
			if err != nil {
				t.Fatal(err)
			}
			for _, ev := range events {
				switch ev.Kind {
				case api.EventConflictDetected, api.EventRegistrationRefused, api.EventMasterSuperseded:
					t.Errorf("naming event %s (id %d, %s): more than one master at start-up", ev.Kind, ev.ID, ev.Reason)
				}
			}
			t.Logf("master %d, registered and followed by all %s after start", master, elected[len(elected)-1].Round(time.Millisecond))
		})
	}
	if len(elected) > 0 {
		slices.Sort(elected)
		t.Logf("%d starts of five (lan profile): one master after median %s, max %s",
			len(elected), elected[len(elected)/2], elected[len(elected)-1])
	}
}

// The three-agent start, one write, SIGKILL of the master, many times:
// every run serves a write from a new master. Failover is measured from
// the kill until `mastership kv put` through the naming node succeeds.
func TestStrictStartWriteKill(t *testing.T) {
	runs := loopRuns(t, "MASTERSHIP_E2E_KILL_RUNS", 3)
	var failovers []time.Duration
	for r := 0; r < runs; r++ {
		t.Run(fmt.Sprintf("run%d", r), func(t *testing.T) {
			g := startStrictGroup(t, 100+r)
			put := func(key, value string) kvReply {
				t.Helper()
				var rep kvReply
				code, errOut := cliJSON(t, &rep, "kv", "put", "-group", "g", "-naming", g.naming, "-timeout", "30s", "-json", key, value)
				if code != 0 || !rep.OK {
					t.Fatalf("put %s=%s: exit %d, %+v, stderr %q", key, value, code, rep, errOut)
				}
				return rep
			}
			put("k0", "before")
			first := put("k", "before")
			g.procs[first.Master].kill()
			killed := time.Now()
			second := put("k", "after")
			took := time.Since(killed)
			if second.Master == first.Master || second.Master == 0 {
				t.Fatalf("the write after the kill was served by %d; %d was killed", second.Master, first.Master)
			}
			failovers = append(failovers, took)
			t.Logf("master %d killed; %d served the write %s later", first.Master, second.Master, took)
			// The writes acknowledged before the kill are kept (k was
			// overwritten since: read k0, written before the kill too).
			var got kvGetReply
			code, errOut := cliJSON(t, &got, "kv", "get", "-group", "g", "-naming", g.naming, "-timeout", "30s", "-json", "k0")
			if code != 0 || !got.OK || !got.Found || got.Value == nil || *got.Value != "before" || got.Master == first.Master {
				t.Fatalf("get k0 after the kill: exit %d, %+v, stderr %q; want \"before\" from a new master", code, got, errOut)
			}
		})
	}
	if len(failovers) > 0 {
		slices.Sort(failovers)
		t.Logf("%d kills (%s profile): failover median %s, max %s", len(failovers), e2eProfile(),
			failovers[len(failovers)/2], failovers[len(failovers)-1])
	}
}

// kvGetReply is the part of `mastership kv get -json` the tests read.
type kvGetReply struct {
	OK     bool    `json:"ok"`
	Found  bool    `json:"found"`
	Value  *string `json:"value"`
	Master uint64  `json:"master"`
}

// kvReply is the part of `mastership kv put -json` the tests read.
type kvReply struct {
	OK     bool   `json:"ok"`
	Master uint64 `json:"master"`
}
