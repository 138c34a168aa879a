package sim

import (
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/cockroachdb/datadriven"
	"github.com/mastership/mastership/agent/kv"
	"github.com/mastership/mastership/naming/api"
	"github.com/mastership/mastership/recover/scenario"
)

// TestScenarios runs the scenario files of testdata/ through datadriven:
// scripted stories over the whole simulated group (the cores, the naming
// node's Registry, each agent's member and self-monitor machines), with
// no random clients or faults. Rewrite the expected output after a
// deliberate change with
//
//	go test ./recover/sim -run TestScenarios -rewrite
//
// Commands:
//
//	start mode=M prio=(P1,...)      a group of agents 1..N
//	run ticks=N                     N ticks of virtual time
//	state                           every agent, and the naming node's master
//	put id=I key=K value=V          a client write sent to agent I
//	acked                           the writes acknowledged so far
//	partition a=(..) b=(..) naming=a|b|both|neither
//	heal                            the network whole again
//	kill id=I | restart id=I        end agent I's process; start it from its storage
//	settle                          run until converged (invariant 1), then
//	                                check that no acknowledged write was lost
//	counts                          recoveries, handovers completed and asked
//	records                         each agent's divergence records of
//	                                acknowledged writes
func TestScenarios(t *testing.T) {
	datadriven.Walk(t, "testdata", func(t *testing.T, path string) {
		datadriven.RunTest(t, path, newScenarioRun())
	})
}

// The scenario files are checked, not merely run: changing one line of
// expected output makes a file fail.
func TestScenarioFilesCanFail(t *testing.T) {
	scenario.FailsWhenChanged(t, "testdata", newScenarioRun)
}

// newScenarioRun returns the command interpreter of one scenario file.
func newScenarioRun() func(t *testing.T, d *datadriven.TestData) string {
	var w *world
	return func(t *testing.T, d *datadriven.TestData) string {
		if d.Cmd != "start" && w == nil {
			d.Fatalf(t, "%s before start", d.Cmd)
		}
		var out strings.Builder
		switch d.Cmd {
		case "start":
			var mode string
			d.ScanArgs(t, "mode", &mode)
			prios := ints(t, d, "prio")
			w = scriptedWorld(api.Mode(mode), prios)
		case "run":
			var n int
			d.ScanArgs(t, "ticks", &n)
			w.run(n)
		case "state":
			out.WriteString(w.describe())
		case "put":
			var id int
			var key, value string
			d.ScanArgs(t, "id", &id)
			d.ScanArgs(t, "key", &key)
			d.ScanArgs(t, "value", &value)
			if err := w.scriptedPut(uint64(id), key, value); err != nil {
				fmt.Fprintf(&out, "refused by %d: %v\n", id, err)
			} else {
				fmt.Fprintf(&out, "proposed to %d\n", id)
			}
		case "acked":
			for _, a := range w.acked {
				fmt.Fprintf(&out, "%s=%s at epoch %s index %d\n", a.Key, a.Value, a.Epoch, a.Index)
			}
		case "partition":
			a, b := ints(t, d, "a"), ints(t, d, "b")
			var naming string
			d.ScanArgs(t, "naming", &naming)
			w.scriptedPartition(a, b, naming)
		case "heal":
			w.heal()
		case "kill", "restart":
			var id int
			d.ScanArgs(t, "id", &id)
			if d.Cmd == "kill" {
				w.kill(w.agent(uint64(id)))
			} else {
				w.restart(w.agent(uint64(id)))
			}
		case "settle":
			w.settle()
			if len(w.rep.Converged) > 0 && len(w.viol) == 0 {
				fmt.Fprintf(&out, "converged after %d ticks; no acknowledged write lost\n", w.rep.Converged[len(w.rep.Converged)-1])
			}
		case "counts":
			fmt.Fprintf(&out, "recoveries=%d handovers=%d asked=%d\n", w.rep.Recoveries, w.rep.Handovers, w.rep.HandoverRequests)
		case "records":
			writes := map[WriteID]string{}
			for _, a := range w.acked {
				writes[a.WriteID] = a.Key + "=" + a.Value
			}
			for _, a := range w.agents {
				var recs []string
				for _, r := range a.records {
					if kv, ok := writes[r]; ok {
						recs = append(recs, kv)
					}
				}
				if len(recs) > 0 {
					fmt.Fprintf(&out, "%d: %s\n", a.id, strings.Join(recs, " "))
				}
			}
		default:
			d.Fatalf(t, "unknown command %s", d.Cmd)
		}
		for _, v := range w.viol {
			fmt.Fprintf(&out, "VIOLATION: %s\n", v)
		}
		w.viol = nil
		return out.String()
	}
}

func ints(t *testing.T, d *datadriven.TestData, key string) []int {
	arg, ok := d.Arg(key)
	if !ok {
		d.Fatalf(t, "%s: want %s=(...)", d.Cmd, key)
	}
	var out []int
	for _, v := range arg.Vals {
		n, err := strconv.Atoi(v)
		if err != nil {
			d.Fatalf(t, "%s %q: %v", key, v, err)
		}
		out = append(out, n)
	}
	return out
}

// scriptedWorld is a world with agents of the given priorities and no
// random clients.
func scriptedWorld(mode api.Mode, prios []int) *world {
	w := newWorld(Config{Seed: 1, Mode: mode, Agents: len(prios)})
	w.agents = nil
	for i, p := range prios {
		w.agents = append(w.agents, w.newAgent(uint64(i+1), p))
	}
	w.clients, w.clientsOn = nil, false
	w.rep.Schedule = nil
	return w
}

// settledWorld is a scriptedWorld run until agent 1, ranked first by prios,
// is its one master.
func settledWorld(t *testing.T, mode api.Mode, prios []int) *world {
	t.Helper()
	w := scriptedWorld(mode, prios)
	w.run(150)
	if ms := w.masters(); len(ms) != 1 || ms[0] != 1 {
		t.Fatalf("setup: masters %v, want [1]\n%s", ms, w.describe())
	}
	return w
}

// scriptedPut sends one put to agent id as a client would, through the
// simulator's result handling (acknowledgements, history).
func (w *world) scriptedPut(id uint64, key, value string) error {
	a := w.agent(id)
	op, err := kv.EncodeOp(kv.Op{Kind: kv.KindPut, Key: key, Value: []byte(value)})
	if err != nil {
		return err
	}
	w.nextRef++
	c := &client{id: 1000 + w.nextRef, idx: 900, target: id, seq: 1}
	if err := a.node.Propose(w.nextRef, c.id, c.seq, op); err != nil {
		w.ready(a)
		return err
	}
	c.pending = &pendingOp{ref: w.nextRef, agent: id, in: Input{Kind: kv.KindPut, Key: key, Value: value}, seq: 1,
		call: w.tickClock(), deadline: w.now + clientTimeout}
	w.refs[w.nextRef] = c
	w.ready(a)
	return nil
}

// scriptedPartition cuts every link between sides a and b; the naming node
// is reachable from side a, side b, both or neither.
func (w *world) scriptedPartition(a, b []int, naming string) {
	w.cut, w.nCut = map[[2]uint64]bool{}, map[uint64]bool{}
	for _, x := range a {
		for _, y := range b {
			w.cut[[2]uint64{uint64(x), uint64(y)}] = true
		}
	}
	cutFrom := func(side []int) {
		for _, x := range side {
			w.nCut[uint64(x)] = true
		}
	}
	switch naming {
	case "a":
		cutFrom(b)
	case "b":
		cutFrom(a)
	case "neither":
		cutFrom(a)
		cutFrom(b)
	}
}
