package agent_test

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mastership/mastership/agent/agenttest"
	"github.com/mastership/mastership/agent/core"
	"github.com/mastership/mastership/agent/rlog"
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
		if _, err := c.Put(1, fmt.Sprintf("k%d", i), "v"); err != nil {
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
