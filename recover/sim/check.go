package sim

import (
	"fmt"
	"os"
	"sort"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/mastership/mastership/agent/kv"
	"github.com/mastership/mastership/naming/api"
)

// Input is one client operation on the key-value store, as porcupine's
// model sees it.
type Input struct {
	Kind   string // kv.KindPut, kv.KindGet or kv.KindCAS
	Key    string
	Value  string // put, cas
	Expect string // cas
	Absent bool   // cas: expect the key absent
}

// Output is an operation's answer. Unknown marks a write whose outcome the
// client never learnt (a timeout, a failed proposal): it may or may not
// have taken effect.
type Output struct {
	Value   string
	Found   bool
	OK      bool
	Unknown bool
}

// Unreturned is the return time of an operation whose outcome is unknown:
// later than every other event, so porcupine may linearize it anywhere
// after its call, or never observe it.
const Unreturned = int64(1) << 62

type kvState struct {
	value string
	found bool
}

// KVModel is porcupine's sequential model of one key of the store,
// partitioned by key.
func KVModel() porcupine.Model {
	return porcupine.Model{
		Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
			byKey := map[string][]porcupine.Operation{}
			var keys []string
			for _, op := range history {
				k := op.Input.(Input).Key
				if _, ok := byKey[k]; !ok {
					keys = append(keys, k)
				}
				byKey[k] = append(byKey[k], op)
			}
			sort.Strings(keys)
			out := make([][]porcupine.Operation, 0, len(keys))
			for _, k := range keys {
				out = append(out, byKey[k])
			}
			return out
		},
		Init: func() interface{} { return kvState{} },
		Step: func(state, input, output interface{}) (bool, interface{}) {
			st, in, out := state.(kvState), input.(Input), output.(Output)
			switch in.Kind {
			case kv.KindGet:
				return out.Unknown || (out.Found == st.found && (!st.found || out.Value == st.value)), st
			case kv.KindPut:
				return true, kvState{value: in.Value, found: true}
			case kv.KindCAS:
				match := st.found && st.value == in.Expect
				if in.Absent {
					match = !st.found
				}
				if out.Unknown {
					if match {
						return true, kvState{value: in.Value, found: true}
					}
					return true, st
				}
				if out.OK != match {
					return false, st
				}
				if match {
					return true, kvState{value: in.Value, found: true}
				}
				return true, st
			}
			return false, st
		},
		DescribeOperation: func(input, output interface{}) string {
			in, out := input.(Input), output.(Output)
			res := "?"
			switch {
			case out.Unknown:
				res = "unknown"
			case in.Kind == kv.KindGet && !out.Found:
				res = "absent"
			case in.Kind == kv.KindGet:
				res = fmt.Sprintf("%q", out.Value)
			default:
				res = fmt.Sprintf("ok=%v", out.OK)
			}
			switch in.Kind {
			case kv.KindPut:
				return fmt.Sprintf("put(%s, %s) -> %s", in.Key, in.Value, res)
			case kv.KindCAS:
				exp := in.Expect
				if in.Absent {
					exp = "<absent>"
				}
				return fmt.Sprintf("cas(%s, %s, %s) -> %s", in.Key, exp, in.Value, res)
			}
			return fmt.Sprintf("get(%s) -> %s", in.Key, res)
		},
		DescribeState: func(state interface{}) string {
			st := state.(kvState)
			if !st.found {
				return "<absent>"
			}
			return st.value
		},
	}
}

// CheckLinearizable checks a history with porcupine (invariant 2). When it
// is not linearizable, the visualisation is written to an HTML file in dir
// (the system's temporary directory when empty) and its path returned.
// Unknown counts as linearizable: the check gave up after timeout.
func CheckLinearizable(history []porcupine.Operation, dir string, timeout time.Duration) (ok bool, htmlPath string) {
	model := KVModel()
	res, info := porcupine.CheckOperationsVerbose(model, history, timeout)
	if res != porcupine.Illegal {
		return true, ""
	}
	f, err := os.CreateTemp(dir, "mastership-sim-*.html")
	if err != nil {
		return false, ""
	}
	defer f.Close()
	if err := porcupine.Visualize(model, info, f); err != nil {
		return false, ""
	}
	return false, f.Name()
}

// WriteID names a client request: client and sequence.
type WriteID struct{ Client, Seq uint64 }

// Write is an acknowledged write.
type Write struct {
	WriteID
	Key, Value string
	Epoch      api.Epoch
	Index      uint64
}

func (w Write) String() string {
	return fmt.Sprintf("client %d seq %d %s=%s (acked at %s index %d)", w.Client, w.Seq, w.Key, w.Value, w.Epoch, w.Index)
}

// LostWrites returns the acknowledged writes that are neither in the final
// state nor in a divergence record (invariant 3).
func LostWrites(acked []Write, final, kept func(WriteID) bool) []Write {
	var lost []Write
	for _, w := range acked {
		if !final(w.WriteID) && !kept(w.WriteID) {
			lost = append(lost, w)
		}
	}
	return lost
}
