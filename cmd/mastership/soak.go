package main

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	aclient "github.com/mastership/mastership/agent/client"
	"github.com/mastership/mastership/agent/store"
)

// soakSample is the state of every agent after a number of writes.
type soakSample struct {
	Writes   int64        `json:"writes"`
	Seconds  float64      `json:"seconds"`
	Agents   []soakAgent  `json:"agents"`
	Restart  *soakRestart `json:"restart,omitempty"`
	CatchUp  *soakRestart `json:"catch_up,omitempty"`
	Failures int64        `json:"failed_writes"`
}

type soakAgent struct {
	ID            uint64 `json:"id"`
	Role          string `json:"role"`
	RSSBytes      int64  `json:"rss_bytes"`
	DataBytes     int64  `json:"data_bytes"`
	SnapshotIndex uint64 `json:"snapshot_index"`
	LogEntries    int    `json:"log_entries"`
}

// soakRestart is a back-up restarted on its data dir: how long until its
// digest equals the master's, and what it holds then.
type soakRestart struct {
	ID        uint64  `json:"id"`
	Missed    int64   `json:"missed_writes"`
	SyncMS    float64 `json:"sync_ms"`
	RSSBefore int64   `json:"rss_before_bytes"`
	RSSAfter  int64   `json:"rss_after_bytes"`
	BySnap    bool    `json:"by_snapshot"`
}

// soakReport is `mastership bench -soak N -json`.
type soakReport struct {
	How     string       `json:"how"`
	Samples []soakSample `json:"samples"`
}

// benchSoak writes total writes over 1,000 keys to three strict agents
// with data dirs, samples every agent each tenth of the way, then restarts
// a back-up on its data dir, and restarts one that missed a tenth more.
func benchSoak(c *cli.Context, exe, dir, profile string, total int64, writers int, progress func(string, ...any)) (soakReport, error) {
	rep := soakReport{How: fmt.Sprintf("strict, 3 agents with data dirs, profile %s: %d writes of %d-byte values over 1000 keys by %d writers through the Go client; "+
		"every agent sampled each %d writes (RSS from /proc, the data dir's files); then a back-up killed and restarted on its data dir, "+
		"and one killed, %d more writes, restarted", profile, total, benchValueBytes, writers, total/10, total/10)}
	d, err := benchGroup(c, exe, dir, profile, "strict", 3, false)
	if err != nil {
		return rep, err
	}
	defer d.stop()
	start := time.Now()
	var failed atomic.Int64
	write := func(n int64) error {
		var next atomic.Int64
		var wg sync.WaitGroup
		errc := make(chan error, writers)
		value := []byte(strings.Repeat("v", benchValueBytes))
		for i := 0; i < writers; i++ {
			cl, err := aclient.New(aclient.Config{Group: d.groupName(), Naming: d.nAddr, Agents: d.apis(), Timeout: 10 * time.Second})
			if err != nil {
				return err
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer cl.Close()
				for {
					k := next.Add(1)
					if k > n || c.Context.Err() != nil {
						return
					}
					if _, err := cl.Put(c.Context, fmt.Sprintf("k%d", k%1000), value); err != nil {
						if failed.Add(1) > 1000 {
							errc <- fmt.Errorf("more than 1000 failed writes; the last: %w", err)
							return
						}
					}
				}
			}()
		}
		wg.Wait()
		select {
		case err := <-errc:
			return err
		default:
			return c.Context.Err()
		}
	}
	sample := func(written int64) soakSample {
		s := soakSample{Writes: written, Seconds: time.Since(start).Seconds(), Failures: failed.Load()}
		for _, a := range d.agents {
			sa := soakAgent{ID: a.id, RSSBytes: rssOf(a), DataBytes: store.DirBytes(filepath.Join(dir, fmt.Sprintf("agent-%d", a.id)))}
			if in, err := d.info(a); err == nil {
				sa.Role = in.Role
				if in.Log != nil {
					sa.SnapshotIndex, sa.LogEntries = in.Log.SnapshotIndex, in.Log.Entries
				}
			}
			s.Agents = append(s.Agents, sa)
		}
		return s
	}
	rep.Samples = append(rep.Samples, sample(0))
	step := max(total/10, 1)
	for done := int64(0); done < total; done += step {
		if err := write(min(step, total-done)); err != nil {
			return rep, err
		}
		rep.Samples = append(rep.Samples, sample(min(done+step, total)))
		progress("soak: %d of %d writes", min(done+step, total), total)
	}
	backup := func() *demoAgent {
		m := uint64(0)
		d.waitFor(30*time.Second, func() bool { ok, master := d.stable(); m = master; return ok })
		for _, a := range d.agents {
			if a.id != m {
				return a
			}
		}
		return nil
	}
	restart := func(missed int64) (*soakRestart, error) {
		a := backup()
		r := &soakRestart{ID: a.id, Missed: missed, RSSBefore: rssOf(a)}
		before, _ := d.info(a)
		a.cmd.Process.Signal(syscall.SIGKILL)
		a.cmd.Wait()
		if missed > 0 {
			if err := write(missed); err != nil {
				return r, err
			}
		}
		t0 := time.Now()
		if err := d.startBenchAgent(exe, dir, profile, "strict", a, false); err != nil {
			return r, err
		}
		synced := d.waitFor(60*time.Second, func() bool {
			in, err := d.info(a)
			if err != nil {
				return false
			}
			ok, m := d.stable()
			if !ok || m == 0 || m == a.id {
				return false
			}
			mi, err := d.info(d.agents[m-1])
			return err == nil && in.Master == m && in.Digest == mi.Digest
		})
		if !synced {
			return r, fmt.Errorf("the restarted agent %d was not in sync within 60s", a.id)
		}
		r.SyncMS = ms(time.Since(t0))
		r.RSSAfter = rssOf(a)
		if in, err := d.info(a); err == nil && in.Log != nil {
			r.BySnap = in.Log.SnapshotIndex > before.Applied
		}
		return r, nil
	}
	progress("soak: restarting a back-up on its data dir ...")
	r, err := restart(0)
	if err != nil {
		return rep, err
	}
	s := sample(total)
	s.Restart = r
	progress("soak: a back-up down during %d writes ...", step)
	if s.CatchUp, err = restart(step); err != nil {
		return rep, err
	}
	rep.Samples = append(rep.Samples, s)
	return rep, nil
}

func printSoak(c *cli.Context, rep soakReport) {
	w := c.App.Writer
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "WRITES\tSECONDS\tAGENT\tROLE\tRSS\tDATA DIR\tSNAPSHOT AT\tLOG ENTRIES")
	for _, s := range rep.Samples {
		for _, a := range s.Agents {
			fmt.Fprintf(tw, "%d\t%.0f\t%d\t%s\t%.1f MiB\t%.1f MiB\t%d\t%d\n", s.Writes, s.Seconds, a.ID, a.Role,
				mib(a.RSSBytes), mib(a.DataBytes), a.SnapshotIndex, a.LogEntries)
		}
	}
	tw.Flush()
	last := rep.Samples[len(rep.Samples)-1]
	for _, r := range []*soakRestart{last.Restart, last.CatchUp} {
		if r == nil {
			continue
		}
		how := "from its data dir and the master's log"
		if r.BySnap {
			how = "by downloading the master's snapshot"
		}
		fmt.Fprintf(w, "\nback-up %d restarted after missing %d writes: in sync in %.0fms (%s), RSS %.1f MiB before, %.1f MiB after",
			r.ID, r.Missed, r.SyncMS, how, mib(r.RSSBefore), mib(r.RSSAfter))
	}
	fmt.Fprintf(w, "\nfailed writes: %d\n\nhow: %s.\n", last.Failures, rep.How)
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

// rssOf reads an agent process's resident set from /proc; 0 where there is
// none.
func rssOf(a *demoAgent) int64 {
	if a.cmd == nil || a.cmd.Process == nil {
		return 0
	}
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", a.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err == nil {
				return kb << 10
			}
		}
	}
	return 0
}
