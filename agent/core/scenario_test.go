package core

import (
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/cockroachdb/datadriven"
	"github.com/mastership/mastership/naming/api"
	"github.com/mastership/mastership/recover/scenario"
)

// TestScenarios runs the scenario files of testdata/ through datadriven:
// each command drives a group of cores (simNet), and its output is what
// happened, as stable text. After a deliberate change of behaviour,
// rewrite the expected output with
//
//	go test ./agent/core -run TestScenarios -rewrite
//
// and read the diff.
//
// Commands:
//
//	group mode=strict|available prio=(P1,P2,...)   a new group, agents 1..N
//	      [snapshot=N window=W]  each agent snapshots every N applied entries,
//	                       keeping W entries of log behind the snapshot
//	      [downloads=held]  a download an agent asks for stays pending (the
//	                       agent syncing) until a download command
//	tick [n=1]             tick every agent up; messages stay queued
//	deliver [n=N]          deliver the queue until it is empty (or only its first
//	                       N messages), tracing each message
//	run n=N                N rounds of tick and deliver, tracing changes only
//	status                 one line per agent (and its log base, in a group
//	                       that snapshots)
//	put id=I key=K value=V [count=N]  propose on agent I (a strict master is
//	                       registered first); N writes, keys K0..K(N-1)
//	down id=I | up id=I    stop or restart agent I's process (state kept)
//	partition a=(..) b=(..)  cut every link between the two sides
//	heal                   remove every cut
//	handover id=I          agent I asks its master for a planned handover
//	switchover id=I [to=J] master I hands over to J (0: the best), pinning it
//	leave id=I [to=J]      the same, not pinned (a master that leaves)
//	endgrace id=I          agent I met its join addresses (group grace=N)
//	health id=I ok=B       I's service passes or fails its checks (views learn it)
//	promote id=I ok=B [term=T] answer the promotion gate of I's mastership (at T) (group gate=true)
//	download id=I [fail=true]  finish I's pending download: install its
//	                       master's state, or fail as the runtime's does (I
//	                       stops syncing and takes appends again)
func TestScenarios(t *testing.T) {
	datadriven.Walk(t, "testdata", func(t *testing.T, path string) {
		sc := &scenarioRun{}
		datadriven.RunTest(t, path, sc.run)
	})
}

type scenarioRun struct {
	s   *simNet
	out strings.Builder
}

func (sc *scenarioRun) run(t *testing.T, d *datadriven.TestData) string {
	sc.out.Reset()
	if d.Cmd != "group" && sc.s == nil {
		d.Fatalf(t, "%s before group", d.Cmd)
	}
	switch d.Cmd {
	case "group":
		var mode string
		d.ScanArgs(t, "mode", &mode)
		arg, ok := d.Arg("prio")
		if !ok {
			d.Fatalf(t, "group: want prio=(...)")
		}
		var prios []int
		for _, v := range arg.Vals {
			p, err := strconv.Atoi(v)
			if err != nil {
				d.Fatalf(t, "prio %q: %v", v, err)
			}
			prios = append(prios, p)
		}
		gate := false
		if d.HasArg("gate") {
			d.ScanArgs(t, "gate", &gate)
		}
		grace := 0
		if d.HasArg("grace") {
			d.ScanArgs(t, "grace", &grace)
		}
		snapEntries, window := 0, 0
		d.MaybeScanArgs(t, "snapshot", &snapEntries)
		d.MaybeScanArgs(t, "window", &window)
		sc.s = newSimSnap(t, api.Mode(mode), gate, grace, snapEntries, window, prios...)
		if d.HasArg("downloads") {
			var downloads string
			d.ScanArgs(t, "downloads", &downloads)
			if downloads != "held" {
				d.Fatalf(t, "group: downloads=%s, want held", downloads)
			}
			sc.s.holdDownloads = true
		}
		sc.s.trace = func(line string) { sc.out.WriteString(line + "\n") }
		for _, id := range sc.s.ids() {
			sc.s.noteRole(id)
		}
	case "tick":
		n := 1
		d.MaybeScanArgs(t, "n", &n)
		for i := 0; i < n; i++ {
			for _, id := range sc.s.ids() {
				if !sc.s.down[id] {
					sc.s.nodes[id].Tick()
					sc.s.drain(id)
				}
			}
		}
	case "deliver":
		sc.s.traceMsgs = true
		if d.HasArg("n") {
			// Only the first n messages queued (and not what they cause).
			var n int
			d.ScanArgs(t, "n", &n)
			sc.s.deliverFirst(n)
		} else {
			sc.s.deliver()
		}
		sc.s.traceMsgs = false
	case "run":
		var n int
		d.ScanArgs(t, "n", &n)
		sc.s.traceMsgs = d.HasArg("trace")
		sc.s.tick(n)
		sc.s.traceMsgs = false
	case "status":
		for _, id := range sc.s.ids() {
			st := sc.s.nodes[id].Status()
			state := ""
			if sc.s.down[id] {
				state = " (down)"
			}
			fmt.Fprintf(&sc.out, "%d%s: %s epoch=%s master=%d commit=%d applied=%d last=%d", id, state, st.Role, st.Epoch,
				st.Master, st.Commit, st.Applied, st.Last)
			if sc.s.snapEntries > 0 {
				fmt.Fprintf(&sc.out, " base=%d", st.LogBase)
			}
			if st.Transfer != 0 {
				fmt.Fprintf(&sc.out, " handing-over-to=%d", st.Transfer)
			}
			if st.Gated {
				sc.out.WriteString(" gated")
			}
			sc.out.WriteString("\n")
		}
	case "put":
		var id uint64
		var key, value string
		d.ScanArgs(t, "id", &id)
		d.ScanArgs(t, "key", &key)
		d.ScanArgs(t, "value", &value)
		count := 1
		if d.HasArg("count") {
			d.ScanArgs(t, "count", &count)
		}
		if count == 1 {
			ref, err := sc.s.put(id, key, value)
			if err != nil {
				fmt.Fprintf(&sc.out, "ref %d refused: %v\n", ref, err)
			} else {
				fmt.Fprintf(&sc.out, "ref %d proposed at %d\n", ref, sc.s.nodes[id].Log().LastIndex())
			}
			break
		}
		from := sc.s.nodes[id].Log().LastIndex() + 1
		for i := range count {
			if ref, err := sc.s.put(id, fmt.Sprintf("%s%d", key, i), value); err != nil {
				fmt.Fprintf(&sc.out, "ref %d refused: %v\n", ref, err)
				break
			}
		}
		fmt.Fprintf(&sc.out, "%d writes proposed at %d..%d\n", count, from, sc.s.nodes[id].Log().LastIndex())
	case "down", "up":
		var id uint64
		d.ScanArgs(t, "id", &id)
		sc.s.down[id] = d.Cmd == "down"
		sc.s.updateViews()
	case "partition":
		side := func(key string) []uint64 {
			arg, ok := d.Arg(key)
			if !ok {
				d.Fatalf(t, "partition: want %s=(...)", key)
			}
			var ids []uint64
			for _, v := range arg.Vals {
				id, err := strconv.ParseUint(v, 10, 64)
				if err != nil {
					d.Fatalf(t, "%s: %q: %v", key, v, err)
				}
				ids = append(ids, id)
			}
			return ids
		}
		sc.s.partition(side("a"), side("b"))
	case "heal":
		sc.s.heal()
	case "handover":
		var id uint64
		d.ScanArgs(t, "id", &id)
		if sc.s.nodes[id].RequestHandover() {
			fmt.Fprintf(&sc.out, "%d asked %d for mastership\n", id, sc.s.nodes[id].Master())
		} else {
			fmt.Fprintf(&sc.out, "%d is no handover candidate\n", id)
		}
		sc.s.drain(id)
	case "endgrace":
		// The runtime met every join address of id.
		var id uint64
		d.ScanArgs(t, "id", &id)
		sc.s.nodes[id].EndGrace()
		sc.s.drain(id)
	case "health":
		// id's service passes (ok=true) or fails its checks; every view
		// learns it, as gossip would tell.
		var id uint64
		var ok bool
		d.ScanArgs(t, "id", &id)
		d.ScanArgs(t, "ok", &ok)
		sc.s.sick[id] = !ok
		sc.s.nodes[id].SetHealthy(ok)
		sc.s.updateViews()
	case "promote":
		// The runtime's answer to the promotion gate of id's mastership.
		var id uint64
		var ok bool
		d.ScanArgs(t, "id", &id)
		d.ScanArgs(t, "ok", &ok)
		epoch := sc.s.nodes[id].Epoch()
		if d.HasArg("term") {
			// An answer for the mastership id held at this term.
			d.ScanArgs(t, "term", &epoch.Term)
			epoch.ID = id
		}
		sc.s.nodes[id].Promote(epoch, ok)
		sc.s.drain(id)
	case "download":
		// The runtime's download of the master's state (agent.syncFrom)
		// ends: installed, or failed, after which the agent takes appends
		// again and the next that does not fit asks for a new download.
		var id uint64
		d.ScanArgs(t, "id", &id)
		fail := false
		d.MaybeScanArgs(t, "fail", &fail)
		master, ok := sc.s.pending[id]
		if !ok {
			fmt.Fprintf(&sc.out, "%d is downloading nothing\n", id)
			break
		}
		delete(sc.s.pending, id)
		n := sc.s.nodes[id]
		if fail {
			fmt.Fprintf(&sc.out, "%d's download from %d fails\n", id, master)
			if n.Role() == api.RoleSyncing && n.Master() == master {
				n.EndRecovery(master, n.Epoch())
			}
		} else if sc.s.sync(id, master) {
			fmt.Fprintf(&sc.out, "%d installs the state of %d\n", id, master)
		} else {
			fmt.Fprintf(&sc.out, "%d could not install the state of %d\n", id, master)
		}
		sc.s.drain(id)
	case "switchover", "leave":
		// The master hands over on its own initiative: switchover to=ID
		// (0: the best that qualifies) pins the new master; leave does not.
		var id, to uint64
		d.ScanArgs(t, "id", &id)
		if d.HasArg("to") {
			d.ScanArgs(t, "to", &to)
		}
		if got, err := sc.s.nodes[id].HandOver(to, d.Cmd == "switchover"); err != nil {
			fmt.Fprintf(&sc.out, "refused: %v\n", err)
		} else {
			fmt.Fprintf(&sc.out, "%d hands over to %d\n", id, got)
		}
		sc.s.drain(id)
	default:
		d.Fatalf(t, "unknown command %s", d.Cmd)
	}
	return sc.out.String()
}

// The scenario files are checked, not merely run: changing one line of any
// file's expected output makes it fail.
func TestScenarioFilesCanFail(t *testing.T) {
	scenario.FailsWhenChanged(t, "testdata", func() func(*testing.T, *datadriven.TestData) string {
		return (&scenarioRun{}).run
	})
}
