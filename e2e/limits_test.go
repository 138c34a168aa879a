package e2e

import (
	"bufio"
	"bytes"
	bin "encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mastership/mastership/agent/transport"
	"github.com/mastership/mastership/naming/api"
	bolt "go.etcd.io/bbolt"
)

// rssKB reads a process's resident set size from /proc.
func rssKB(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, err := strconv.Atoi(f[1])
			if err != nil {
				t.Fatal(err)
			}
			return kb
		}
	}
	t.Fatalf("no VmRSS for %d", pid)
	return 0
}

// waitOneMaster waits for one master that the naming node registered and
// every other agent follows, and returns every agent's info then.
func waitOneMaster(t *testing.T, hc *http.Client, g *startupGroup) map[uint64]agentInfo {
	t.Helper()
	var infos map[uint64]agentInfo
	waitFor(t, 30*time.Second, "one registered master", func() bool {
		infos = map[uint64]agentInfo{}
		master := uint64(0)
		for _, a := range g.agents {
			in, err := fetchInfo(hc, a.api)
			if err != nil {
				return false
			}
			infos[a.id] = in
			if in.Role == "master" {
				master = a.id
			}
		}
		if master == 0 {
			return false
		}
		for _, in := range infos {
			if in.Master != master {
				return false
			}
		}
		return cliRegistered(t, g.naming, "g") == master
	})
	return infos
}

// Resource limits against hostile connections, on real processes: 200
// message streams that announce 8 MiB frames and send nothing cost the
// master little memory and start no election; request bodies that trickle
// in are cut at the read timeout, on the naming node and on an agent.
func TestStalledConnections(t *testing.T) {
	hc := &http.Client{Timeout: time.Second}
	defer hc.CloseIdleConnections()
	g := startStrictGroup(t, 90)
	before := waitOneMaster(t, hc, g)
	var master cliAgent
	for _, a := range g.agents {
		if before[a.id].Role == "master" {
			master = a
		}
	}
	pid := g.procs[master.id].cmd.Process.Pid
	rss0 := rssKB(t, pid)

	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := 0; i < 200; i++ {
		c, err := net.DialTimeout("tcp", master.api, time.Second)
		if err != nil {
			t.Fatalf("stream %d: %v", i, err)
		}
		conns = append(conns, c)
		// The stream's magic, an empty hello (no token, no address),
		// and a frame header.
		var b [14]byte
		copy(b[:4], transport.Magic[:])
		bin.BigEndian.PutUint32(b[10:], 8<<20)
		if _, err := c.Write(b[:]); err != nil {
			t.Fatalf("stream %d: %v", i, err)
		}
	}

	// Slow bodies, meanwhile: one byte every half second.
	type slow struct {
		target string
		took   time.Duration
		err    error
	}
	var mu sync.Mutex
	var slows []slow
	var wg sync.WaitGroup
	for _, target := range []string{g.naming, master.api} {
		for i := 0; i < 10; i++ {
			wg.Add(1)
			go func(target string) {
				defer wg.Done()
				start := time.Now()
				err := trickle(target, api.ReadTimeout+10*time.Second)
				mu.Lock()
				slows = append(slows, slow{target, time.Since(start), err})
				mu.Unlock()
			}(target)
		}
	}

	// For the read timeout and more (dozens of election timeouts), no
	// election starts and the master keeps its epoch. The master's RSS is
	// sampled all along; its peak while every stalled stream is still
	// open (until shortly before the frame timeout) is what they cost.
	opened := time.Now()
	peak := rss0
	deadline := time.Now().Add(api.ReadTimeout + 2*time.Second)
	for time.Now().Before(deadline) {
		if time.Since(opened) < transport.FrameTimeout-time.Second {
			peak = max(peak, rssKB(t, pid))
		}
		for _, a := range g.agents {
			in, err := fetchInfo(hc, a.api)
			if err != nil {
				t.Fatalf("agent %d stopped answering: %v", a.id, err)
			}
			if in.Epoch != before[a.id].Epoch || in.Role != before[a.id].Role {
				t.Fatalf("agent %d changed from %+v to %+v under the stalled connections", a.id, before[a.id], in)
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	rss1 := rssKB(t, pid)
	t.Logf("master RSS %d KiB before 200 stalled 8 MiB frames, peak %d KiB while they stalled (grew %d KiB), %d KiB after",
		rss0, peak, peak-rss0, rss1)
	if peak-rss0 > 64<<10 {
		t.Fatalf("RSS grew by %d KiB while the streams stalled, limit 64 MiB", peak-rss0)
	}
	// The frame timeout has passed: the master closed every stalled
	// stream itself.
	for i, c := range conns {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Read(make([]byte, 1)); err == nil || os.IsTimeout(err) {
			t.Fatalf("stalled stream %d still open %s after it stalled (%v); frame timeout %s", i, time.Since(opened), err, transport.FrameTimeout)
		}
	}
	wg.Wait()
	for _, s := range slows {
		if s.err != nil {
			t.Errorf("slow body to %s: %v", s.target, s.err)
		} else if s.took > api.ReadTimeout+5*time.Second {
			t.Errorf("slow body to %s held %s, read timeout %s", s.target, s.took, api.ReadTimeout)
		}
	}
	if len(slows) > 0 {
		t.Logf("%d slow bodies cut after %s (read timeout %s)", len(slows), slows[0].took.Round(time.Millisecond), api.ReadTimeout)
	}
}

// trickle sends a request whose 100 kB body comes one byte every half
// second, and returns once the server closes the connection; an error if
// it is still open after limit.
func trickle(addr string, limit time.Duration) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	if _, err := fmt.Fprintf(c, "POST /rpc/join HTTP/1.1\r\nHost: x\r\nContent-Type: application/msgpack\r\nContent-Length: 100000\r\n\r\n"); err != nil {
		return err
	}
	closed := make(chan struct{})
	go func() {
		// The server's answer (if any) and then EOF.
		io.Copy(io.Discard, bufio.NewReader(c))
		close(closed)
	}()
	end := time.After(limit)
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-closed:
			return nil
		case <-end:
			return fmt.Errorf("still open after %s", limit)
		case <-tick.C:
			c.SetWriteDeadline(time.Now().Add(time.Second))
			if _, err := c.Write([]byte{0x80}); err != nil {
				return nil // closed by the server
			}
		}
	}
}

// A second agent started with an ID that a live agent holds exits with
// code 4 within seconds, before it campaigns, whether gossip (it joins the
// group) or the naming node (it joins nobody) tells it; the group's master
// and epoch are the same before and after.
func TestDuplicateIDExits(t *testing.T) {
	hc := &http.Client{Timeout: time.Second}
	defer hc.CloseIdleConnections()
	g := startStrictGroup(t, 91)
	before := waitOneMaster(t, hc, g)
	var join []string
	for _, a := range g.agents {
		join = append(join, a.bind)
	}
	for _, how := range []string{"gossip", "naming"} {
		t.Run(how, func(t *testing.T) {
			ip := "127.0.91.40"
			if how == "naming" {
				ip = "127.0.91.41"
			}
			args := []string{"agent", "-profile", e2eProfile(), "-group", "g", "-id", "2", "-bind", freeAddr(t, ip),
				"-api", freeAddr(t, ip), "-naming", g.naming, "-mode", "strict", "-expect", "3"}
			if how == "gossip" {
				args = append(args, "-join", strings.Join(join, ","))
			}
			start := time.Now()
			p := start4(t, "duplicate", args...)
			select {
			case <-p.done:
			case <-time.After(10 * time.Second):
				t.Fatalf("the duplicate of agent 2 still runs after 10s:\n%s", p.output())
			}
			code := -1
			if ee, ok := p.err.(interface{ ExitCode() int }); ok {
				code = ee.ExitCode()
			}
			if code != 4 || !strings.Contains(p.output(), "ID taken") {
				t.Fatalf("duplicate exited with %d (%v) after %s, want 4:\n%s", code, p.err, time.Since(start), p.output())
			}
			if strings.Contains(p.output(), "candidate") {
				t.Fatalf("the duplicate campaigned:\n%s", p.output())
			}
			t.Logf("the duplicate found by %s exited with code 4 after %s: %s", how, time.Since(start).Round(time.Millisecond), lastLine(p.output()))
		})
	}
	// The group is undisturbed, then and for a few election timeouts
	// (3 s: ten of the local profile's, three of lan's) after the last
	// duplicate exited: no agent campaigns over what the duplicates did.
	hold := time.Now().Add(3 * time.Second)
	for {
		after := waitOneMaster(t, hc, g)
		for id, in := range before {
			if after[id].Role != in.Role || after[id].Epoch != in.Epoch {
				t.Fatalf("agent %d: %+v before the duplicates, %+v after", id, in, after[id])
			}
		}
		if time.Now().After(hold) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// start4 starts a process that is expected to exit by itself.
func start4(t *testing.T, name string, args ...string) *proc {
	t.Helper()
	return start(t, name, append([]string{"-log-level", "info"}, args...)...)
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// A truncated data file of an agent or a naming node: the process exits
// with code 5 and a message that names the file and what to do, and no Go
// stack trace.
func TestTruncatedDataFileExits(t *testing.T) {
	hc := &http.Client{Timeout: 2 * time.Second}
	defer hc.CloseIdleConnections()
	namingDir, agentDir := t.TempDir(), t.TempDir()
	namingAddr := freeAddr(t, "127.0.92.2")
	bind, apiAddr := freeAddr(t, "127.0.92.11"), freeAddr(t, "127.0.92.11")
	naming := startNaming(t, namingAddr, namingDir)
	agentArgs := []string{"agent", "-profile", "local", "-group", "g", "-id", "1", "-bind", bind, "-api", apiAddr,
		"-naming", namingAddr, "-data-dir", agentDir}
	a := start4(t, "agent", agentArgs...)
	waitFor(t, 20*time.Second, "the agent serving writes", func() bool {
		resp, err := hc.Post("http://"+apiAddr+"/v1/kv", "application/json", strings.NewReader(`{"op":"put","key":"k","value":"v"}`))
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	value := strings.Repeat("v", 2000)
	for i := 0; i < 300; i++ {
		resp, err := hc.Post("http://"+apiAddr+"/v1/kv", "application/json",
			strings.NewReader(fmt.Sprintf(`{"op":"put","key":"k%d","value":"%s"}`, i, value)))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	a.kill()
	naming.kill()

	segs, err := filepath.Glob(filepath.Join(agentDir, "wal", "*.wal"))
	if err != nil || len(segs) != 1 {
		t.Fatalf("log segments %v, %v", segs, err)
	}
	for _, tc := range []struct {
		name   string
		file   string
		damage func(t *testing.T, file string)
		args   []string
	}{
		// Bytes of the first of 300 frames overwritten: not a torn write.
		{"agent log", segs[0], overwriteAt(40), agentArgs},
		{"agent", filepath.Join(agentDir, "agent.db"), truncateUsed, agentArgs},
		{"naming", filepath.Join(namingDir, "raft", "raft.db"), truncateUsed, []string{"naming", "-profile", "local", "-bind", namingAddr, "-data-dir", namingDir}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.damage(t, tc.file)
			out, errOut, code := run(t, tc.args...)
			if code != 5 {
				t.Fatalf("exit %d, want 5; stdout %q stderr:\n%s", code, out, errOut)
			}
			for _, want := range []string{"damaged data file", tc.file, "restore the data dir from a backup"} {
				if !strings.Contains(errOut, want) {
					t.Errorf("stderr lacks %q:\n%s", want, errOut)
				}
			}
			for _, bad := range []string{"goroutine ", "panic", "fatal error"} {
				if strings.Contains(errOut, bad) {
					t.Errorf("stderr has %q:\n%s", bad, errOut)
				}
			}
			t.Logf("%s", lastLine(errOut))
		})
	}
}

// overwriteAt returns a damage that writes 8 bytes of 0xff at off.
func overwriteAt(off int64) func(t *testing.T, path string) {
	return func(t *testing.T, path string) {
		t.Helper()
		f, err := os.OpenFile(path, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := f.WriteAt(bytes.Repeat([]byte{0xff}, 8), off); err != nil {
			t.Fatal(err)
		}
	}
}

// truncateUsed cuts a bbolt file to half the pages it uses.
func truncateUsed(t *testing.T, path string) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	var used int64
	db.View(func(tx *bolt.Tx) error { used = tx.Size(); return nil })
	db.Close()
	if err := os.Truncate(path, used/2); err != nil {
		t.Fatal(err)
	}
}

// -max-conns caps the connections a listener holds open: a naming node
// and an agent started with the smallest cap (16) hold that many idle
// connections, close the ones past it at once, and serve again once the
// idle ones go away.
func TestMaxConns(t *testing.T) {
	const limit = 16
	namingAddr := freeAddr(t, "127.0.93.2")
	start(t, "naming", "-log-level", "warn", "naming", "-profile", "local", "-bind", namingAddr,
		"-data-dir", t.TempDir(), "-max-conns", strconv.Itoa(limit))
	bind, apiAddr := freeAddr(t, "127.0.93.11"), freeAddr(t, "127.0.93.11")
	start(t, "agent", "-log-level", "warn", "agent", "-profile", "local", "-group", "g", "-id", "1", "-bind", bind,
		"-api", apiAddr, "-naming", namingAddr, "-max-conns", strconv.Itoa(limit))
	hc := &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	healthy := func(addr string) bool {
		resp, err := hc.Get("http://" + addr + "/v1/health")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}
	for _, side := range []struct{ name, addr string }{{"naming node", namingAddr}, {"agent", apiAddr}} {
		t.Run(side.name, func(t *testing.T) {
			waitFor(t, 20*time.Second, side.name+" serving", func() bool { return healthy(side.addr) })
			// Twice the cap, opened at once and left idle; each is then
			// read for 500 ms: a refused one ends (closed at accept), a
			// held one times out.
			conns := make([]net.Conn, 2*limit)
			for i := range conns {
				c, err := net.DialTimeout("tcp", side.addr, time.Second)
				if err != nil {
					t.Fatal(err)
				}
				conns[i] = c
			}
			var held, refused atomic.Int64
			var wg sync.WaitGroup
			for _, c := range conns {
				wg.Go(func() {
					c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
					if _, err := c.Read(make([]byte, 1)); os.IsTimeout(err) {
						held.Add(1)
					} else {
						refused.Add(1)
					}
				})
			}
			wg.Wait()
			// The process's own connections (the agent's to the naming
			// node, its sessions) count in the cap too.
			if held.Load() > limit || held.Load() < limit-4 || refused.Load() < limit {
				t.Fatalf("%d idle connections held, %d refused; want at most %d held", held.Load(), refused.Load(), limit)
			}
			if healthy(side.addr) {
				t.Fatalf("the %s served a new connection past its cap", side.name)
			}
			for _, c := range conns {
				c.Close()
			}
			waitFor(t, 10*time.Second, side.name+" serving again", func() bool { return healthy(side.addr) })
			t.Logf("%s: %d idle connections held, %d refused at accept", side.name, held.Load(), refused.Load())
		})
	}
}
