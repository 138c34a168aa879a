package agent_test

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/mastership/mastership/agent"
	"github.com/mastership/mastership/agent/rlog"
	"github.com/mastership/mastership/config"
	"github.com/mastership/mastership/naming"
)

// total is a replicated service's state: the sum of the numbers written
// to it. It implements rlog.StateMachine.
type total struct {
	index uint64 // the last entry applied
	sum   uint64
}

// Apply adds an 8-byte big-endian number; any other operation is refused
// (a Result with Err), and still takes its index.
func (t *total) Apply(e rlog.Entry) rlog.Result {
	t.index = e.Index
	if len(e.Op) == 0 {
		return rlog.Result{OK: true} // a no-op of a new master's
	}
	if len(e.Op) != 8 {
		return rlog.Result{Err: "want an 8-byte number"}
	}
	t.sum += binary.BigEndian.Uint64(e.Op)
	return rlog.Result{OK: true, Value: binary.BigEndian.AppendUint64(nil, t.sum)}
}

func (t *total) Snapshot() ([]byte, error) {
	return binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64(nil, t.index), t.sum), nil
}

func (t *total) Restore(b []byte) error {
	if len(b) != 16 {
		return errors.New("total: a snapshot is 16 bytes")
	}
	t.index, t.sum = binary.BigEndian.Uint64(b), binary.BigEndian.Uint64(b[8:])
	return nil
}

func (t *total) Digest() rlog.Digest {
	b, _ := t.Snapshot()
	return rlog.Digest{Index: t.index, Sum: sha256.Sum256(b)}
}

// SnapshotDigest works on a scratch value: it runs beside the other
// methods, on another goroutine.
func (t *total) SnapshotDigest(b []byte) (rlog.Digest, error) {
	var s total
	if err := s.Restore(b); err != nil {
		return rlog.Digest{}, err
	}
	return s.Digest(), nil
}

// freeAddr is a loopback address with a port free a moment ago (the
// example's; a service has its own).
func freeAddr() string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return ""
	}
	defer ln.Close()
	return ln.Addr().String()
}

// Embedding an agent around a state machine of one's own: a naming node
// and one agent in this process, on loopback; the agent becomes master
// and replicates what Propose gives it.
func Example_customStateMachine() {
	dir, err := os.MkdirTemp("", "mastership-example-")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer os.RemoveAll(dir)
	ncfg, _ := config.DefaultNaming("local")
	ncfg.DataDir = dir
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	ncfg.Bind = ln.Addr().String()
	nn, err := naming.New(ncfg)
	if err != nil {
		fmt.Println(err)
		return
	}
	go nn.Serve(ln)
	defer nn.Close()

	cfg, _ := config.DefaultAgent("local")
	cfg.Group, cfg.ID, cfg.Mode = "totals", 1, "available"
	cfg.Bind, cfg.API, cfg.Naming = freeAddr(), freeAddr(), ncfg.Bind
	a, err := agent.New(cfg, agent.Options{StateMachine: &total{}})
	if err != nil {
		fmt.Println(err)
		return
	}
	if err := a.Start(); err != nil {
		fmt.Println(err)
		return
	}
	defer a.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for !a.Status().Serving {
		select {
		case <-ctx.Done():
			fmt.Println("no master")
			return
		case <-time.After(10 * time.Millisecond):
		}
	}
	var res rlog.Result
	for _, n := range []uint64{40, 2} {
		r, err := a.Propose(ctx, 0, 0, binary.BigEndian.AppendUint64(nil, n))
		if err != nil {
			fmt.Println(err)
			return
		}
		res = r.Result
	}
	fmt.Println("total:", binary.BigEndian.Uint64(res.Value), "role:", a.Status().Role)
	// Output: total: 42 role: master
}
