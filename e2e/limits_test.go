package e2e

import (
	"bufio"
	bin "encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mastership/mastership/naming/api"
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
// returns every agent's info then.
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
		return master != 0 && cliRegistered(t, g.naming, "g") == master
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
		var b [8]byte
		copy(b[:4], "MSH1")
		bin.BigEndian.PutUint32(b[4:], 8<<20)
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
	// election starts and the master keeps its epoch.
	deadline := time.Now().Add(api.ReadTimeout + 2*time.Second)
	for time.Now().Before(deadline) {
		for _, a := range g.agents {
			in, err := fetchInfo(hc, a.api)
			if err != nil {
				t.Fatalf("agent %d stopped answering: %v", a.id, err)
			}
			if in.Epoch != before[a.id].Epoch || in.EpochID != before[a.id].EpochID || in.Role != before[a.id].Role {
				t.Fatalf("agent %d changed from %+v to %+v under the stalled connections", a.id, before[a.id], in)
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	rss1 := rssKB(t, pid)
	t.Logf("master RSS %d KiB before 200 stalled 8 MiB frames, %d KiB after (grew %d KiB)", rss0, rss1, rss1-rss0)
	if rss1-rss0 > 64<<10 {
		t.Fatalf("RSS grew by %d KiB, limit 64 MiB", rss1-rss0)
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
