package agent_test

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mastership/mastership/agent"
	"github.com/mastership/mastership/agent/agenttest"
	"github.com/mastership/mastership/agent/core"
	"github.com/mastership/mastership/agent/kv"
	"github.com/mastership/mastership/agent/rlog"
	"github.com/mastership/mastership/agent/store"
	"github.com/mastership/mastership/agent/wire"
)

// counter is a state machine that is not the kv: it counts the entries
// with an operation and sums their lengths. corrupt, when set, makes its
// snapshots lie about the state (a fault on the master's side).
type counter struct {
	index, ops, bytes uint64
	corrupt           *atomic.Bool
}

func (c *counter) Apply(e rlog.Entry) rlog.Result {
	if e.Index != c.index+1 {
		panic(fmt.Sprintf("counter: apply %d after %d", e.Index, c.index))
	}
	c.index = e.Index
	if len(e.Op) > 0 {
		c.ops++
		c.bytes += uint64(len(e.Op))
	}
	return rlog.Result{OK: true}
}

func (c *counter) Snapshot() ([]byte, error) {
	b := binary.BigEndian.AppendUint64(nil, c.index)
	b = binary.BigEndian.AppendUint64(b, c.ops)
	b = binary.BigEndian.AppendUint64(b, c.bytes)
	if c.corrupt != nil && c.corrupt.Load() {
		b[len(b)-1] ^= 0xff
	}
	return b, nil
}

func decodeCounter(b []byte) (*counter, error) {
	if len(b) != 24 {
		return nil, errors.New("counter: snapshot of the wrong size")
	}
	return &counter{index: binary.BigEndian.Uint64(b), ops: binary.BigEndian.Uint64(b[8:]), bytes: binary.BigEndian.Uint64(b[16:])}, nil
}

func (c *counter) Restore(b []byte) error {
	r, err := decodeCounter(b)
	if err != nil {
		return err
	}
	c.index, c.ops, c.bytes = r.index, r.ops, r.bytes
	return nil
}

func (c *counter) Digest() rlog.Digest {
	var b [24]byte
	binary.BigEndian.PutUint64(b[:], c.index)
	binary.BigEndian.PutUint64(b[8:], c.ops)
	binary.BigEndian.PutUint64(b[16:], c.bytes)
	return rlog.Digest{Index: c.index, Sum: sha256.Sum256(b[:])}
}

func (c *counter) SnapshotDigest(b []byte) (rlog.Digest, error) {
	r, err := decodeCounter(b)
	if err != nil {
		return rlog.Digest{}, err
	}
	return r.Digest(), nil
}

var _ rlog.StateMachine = (*counter)(nil)

// propose writes op through agent id, waiting out a master not serving
// yet.
func propose(c *agenttest.Cluster, id uint64, op []byte) (core.Result, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	for {
		res, err := c.Members[id].Agent.Propose(ctx, 0, 0, op)
		if !errors.Is(err, core.ErrNotServing) || ctx.Err() != nil {
			return res, err
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Recovery verifies every state machine's download, not only the kv's
// (figure 10, act 1040): with a counter as the service, a back-up far
// behind the master refuses the master's state while its snapshot does not
// match the digest the master reports, and takes it once it does.
func TestDownloadVerifiedForAnyStateMachine(t *testing.T) {
	var corrupt atomic.Bool
	c := agenttest.New(t, agenttest.Options{Agents: 3, Mode: "strict", Priorities: []int{3, 2, 1}, Base: 19,
		StateMachine: func(id uint64) rlog.StateMachine {
			if id == 1 {
				return &counter{corrupt: &corrupt}
			}
			return &counter{}
		}})
	if m := c.WaitStable(20 * time.Second); m != 1 {
		t.Fatalf("master %d, want 1", m)
	}
	c.Partition([]uint64{1, 2}, []uint64{3})
	for i := 0; i < 2*core.SyncThreshold; i++ {
		if _, err := propose(c, 1, fmt.Appendf(nil, "op%d", i)); err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
	}
	corrupt.Store(true)
	c.Heal()
	// 3 asks for the master's state and refuses it, again and again.
	c.WaitFor(20*time.Second, "3 back in the group", func() bool { return c.Members[1].Agent.PeerAlive(3) })
	// Installed, even a corrupted state would bring 3's applied index to
	// the master's: it must stay behind, whatever its digest.
	behind := c.Members[3].Agent.Status().Applied
	if behind >= c.Members[1].Agent.Status().Applied {
		t.Fatalf("3 applied %d before the heal, not behind the master", behind)
	}
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		st3, st1 := c.Members[3].Agent.Status(), c.Members[1].Agent.Status()
		if st3.Digest == st1.Digest || st3.Applied != behind {
			t.Fatalf("3 installed a state whose snapshot does not match the master's digest: applied %d (was %d), master %d",
				st3.Applied, behind, st1.Applied)
		}
		time.Sleep(10 * time.Millisecond)
	}
	corrupt.Store(false)
	c.WaitFor(20*time.Second, "3 in sync once the master's snapshot is sound", c.Stable)
}

// The kv API refuses on an agent whose state machine is not a kv, with
// 501 and the JSON error body on HTTP: no kv operation reaches the
// counter (its applied index and digest stay put), Get finds nothing, and
// the agent still takes the counter's own operations.
func TestKVAPIRefusedForOtherStateMachines(t *testing.T) {
	put, err := kv.EncodeOp(kv.Op{Kind: kv.KindPut, Key: "k", Value: []byte("v")})
	if err != nil {
		t.Fatal(err)
	}
	c := agenttest.New(t, agenttest.Options{Agents: 3, Mode: "strict", Priorities: []int{3, 2, 1}, Base: 23,
		StateMachine: func(uint64) rlog.StateMachine { return &counter{} },
		// A divergence record on every agent, for replay to refuse.
		WrapStorage: func(id uint64, s store.Storage) store.Storage {
			if _, err := s.AddRecords([]store.Record{{Group: "g", Index: 1, Client: 5, Seq: 1, Op: put}}); err != nil {
				t.Fatal(err)
			}
			return s
		}})
	if m := c.WaitStable(20 * time.Second); m != 1 {
		t.Fatalf("master %d, want 1", m)
	}
	if _, err := propose(c, 1, []byte("op")); err != nil {
		t.Fatalf("the counter's own operation: %v", err)
	}
	c.WaitFor(10*time.Second, "the operation applied everywhere", c.Stable)
	before := c.Members[1].Agent.Status()

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	for _, op := range []kv.Op{{Kind: kv.KindPut, Key: "k", Value: []byte("v")}, {Kind: kv.KindGet, Key: "k"}} {
		for _, id := range []uint64{1, 2} { // the master and a back-up
			if _, err := c.Members[id].Agent.Execute(ctx, op, 0, 0); !errors.Is(err, agent.ErrNotKV) {
				t.Errorf("Execute %s at %d: %v, want ErrNotKV", op.Kind, id, err)
			}
		}
	}
	if _, err := c.Members[2].Agent.Replay(ctx, 1); !errors.Is(err, agent.ErrNotKV) {
		t.Errorf("Replay: %v, want ErrNotKV", err)
	}
	if v, found := c.Members[1].Agent.Get("k"); found || v != "" {
		t.Errorf("Get on the counter: %q, %v", v, found)
	}
	for _, req := range []struct {
		id         uint64
		path, body string
	}{
		{1, "/v1/kv", `{"op":"put","key":"k","value":"v"}`},
		{1, "/v1/kv", `{"op":"get","key":"k"}`},
		{2, "/v1/kv?forward=1", `{"op":"put","key":"k","value":"v"}`},
		{1, "/v1/kv", `not even JSON`},
		{2, "/v1/divergence/1/replay", ``},
	} {
		resp, err := http.Post("http://"+c.Members[req.id].Config.API+req.path, "application/json", strings.NewReader(req.body))
		if err != nil {
			t.Fatal(err)
		}
		var body wire.KVResponse
		derr := json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotImplemented || derr != nil || body.Code != "not-kv" ||
			!strings.Contains(body.Error, "not a kv store") || body.OK {
			t.Errorf("POST %s at %d: %s, %+v (decode: %v), want 501 with code not-kv", req.path, req.id, resp.Status, body, derr)
		}
	}
	for _, id := range c.IDs() {
		if st := c.Members[id].Agent.Status(); st.Applied != before.Applied || st.Digest != before.Digest {
			t.Errorf("agent %d applied %d (digest %s) after the refused kv operations, was %d (%s)",
				id, st.Applied, st.Digest, before.Applied, before.Digest)
		}
	}
	if _, err := propose(c, 1, []byte("op")); err != nil {
		t.Fatalf("the counter's own operation after the refusals: %v", err)
	}
}
