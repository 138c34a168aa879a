package agent_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"math/rand"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/mastership/mastership/agent"
	"github.com/mastership/mastership/agent/agenttest"
	"github.com/mastership/mastership/agent/core"
	"github.com/mastership/mastership/agent/transport"
	"github.com/mastership/mastership/gossip"
	"github.com/mastership/mastership/naming/api"
)

// rawFrames opens a message stream to an agent's API address, as any
// process that reaches the port can, and writes messages on it.
func rawFrames(t *testing.T, addr string, msgs ...core.Message) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var b bytes.Buffer
	b.Write(transport.Magic[:])
	b.Write([]byte{0, 0, 0, 0, 0, 0}) // the hello: no token, no address
	for _, m := range msgs {
		body := core.AppendWire(nil, &m)
		var hdr [4]byte
		binary.BigEndian.PutUint32(hdr[:], uint32(len(body)))
		b.Write(hdr[:])
		b.Write(body)
	}
	c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write(b.Bytes()); err != nil {
		t.Fatal(err)
	}
}

// Epochs of 2^64-1 and term + 2^40, and a client sequence of 2^64-1,
// through every path into a running strict group: agent message streams,
// gossip metadata and claims (a rogue member), the naming node's RPC, the
// naming node's trigger, and the kv API. Each is refused; no agent learns
// the term or panics; the master and its epoch are unchanged; and after
// the master is killed the group elects at the next term and serves.
func TestHostileEpochsEveryPath(t *testing.T) {
	c := agenttest.New(t, agenttest.Options{Agents: 3, Mode: "strict", Priorities: []int{3, 2, 1}, Base: 17})
	if m := c.WaitStable(20 * time.Second); m != 1 {
		t.Fatalf("master %d, want 1", m)
	}
	if _, err := c.Put(1, "k", "v"); err != nil {
		t.Fatal(err)
	}
	epoch := c.Members[1].Agent.Status().Epoch
	known := epoch.Term
	maxE := func(id uint64) api.Epoch { return api.Epoch{Term: ^uint64(0), ID: id} }
	farE := func(id uint64) api.Epoch { return api.Epoch{Term: known + 1<<40, ID: id} }

	// Streams: to the master and to a back-up, in the name of agent 3.
	for _, to := range []uint64{1, 2} {
		var msgs []core.Message
		for _, e := range []api.Epoch{maxE(3), farE(3)} {
			for _, typ := range []core.MsgType{core.MsgTrigger, core.MsgAppend, core.MsgVote, core.MsgAppendResp, core.MsgTimeoutNow} {
				msgs = append(msgs, core.Message{Type: typ, Group: "g", From: 3, To: to, Epoch: e})
			}
		}
		rawFrames(t, c.Members[to].Config.API, msgs...)
	}

	// Gossip: a rogue member announcing and claiming 2^64-1.
	gcfg := gossip.DefaultConfig(gossip.ProfileLocal)
	gcfg.Group, gcfg.ID = "g", 99
	gcfg.BindAddr = "127.0.17.99:0"
	gcfg.Join = []string{c.Members[2].Config.Bind}
	gcfg.Meta = gossip.Meta{Role: api.RoleMaster, Epoch: maxE(99), Master: 99, API: "127.0.17.99:1"}
	gcfg.Rand = rand.New(rand.NewSource(99))
	rogue, err := gossip.New(gcfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rogue.Join(); err != nil {
		t.Fatal(err)
	}
	for _, e := range []api.Epoch{farE(99), maxE(99)} { // rising: a claimant's claims only go up
		if err := rogue.Claim(gossip.Claim{Epoch: e, API: "127.0.17.99:1"}); err != nil {
			t.Fatal(err)
		}
	}
	c.WaitFor(10*time.Second, "every agent to see the rogue member", func() bool {
		for _, id := range c.Running() {
			if !c.Members[id].Agent.PeerAlive(99) {
				return false
			}
		}
		return true
	})

	// The naming node's RPC.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, e := range []api.Epoch{maxE(3), farE(3)} {
		_, err := c.Client.Register(ctx, api.RegisterRequest{Group: "g", ID: 3, Addr: c.Members[3].Config.API, Epoch: e,
			Session: c.Members[3].Agent.Session()})
		if !errors.Is(err, api.ErrEpochRange) {
			t.Fatalf("register at %s: %v, want %v", e, err, api.ErrEpochRange)
		}
	}

	// The naming node's trigger, and the kv API.
	refusedBefore := c.Members[3].Agent.Info().Refused
	for _, id := range c.Running() {
		for _, e := range []api.Epoch{maxE(3), farE(3)} {
			body, _ := api.Encode(&api.Notify{Group: "g", Master: &api.Registration{Group: "g", ID: 3, Epoch: e}, Reason: "forged"})
			resp, err := http.Post("http://"+c.Members[id].Config.API+"/rpc/notify", "application/msgpack", bytes.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusBadRequest {
				t.Fatalf("forged notify at %s to %d: %s", e, id, resp.Status)
			}
		}
	}
	if n := c.Members[3].Agent.Info().Refused - refusedBefore; n < 2 {
		t.Fatalf("agent 3 counted %d refused triggers, want the 2 forged ones", n)
	}
	resp, err := http.Post("http://"+c.Members[1].Config.API+"/v1/kv", "application/json",
		bytes.NewReader([]byte(`{"op":"put","key":"k","value":"x","client":7,"seq":18446744073709551615}`)))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("put at seq 2^64-1: %s", resp.Status)
	}

	// Nothing was learnt; the streams' epochs were counted as refused.
	c.WaitFor(10*time.Second, "the forged stream messages refused", func() bool {
		return c.Members[1].Agent.Status().Refused >= 10 && c.Members[2].Agent.Status().Refused >= 10
	})
	for _, id := range c.Running() {
		st := c.Members[id].Agent.Status()
		if st.MaxTerm != known || st.Epoch != epoch || st.MaxEpoch != epoch {
			t.Fatalf("agent %d learnt a forged epoch: %+v", id, st)
		}
	}
	if ms := c.Masters(); len(ms) != 1 || ms[0] != 1 || c.Registered() != 1 {
		t.Fatalf("masters %v, registered %d", ms, c.Registered())
	}
	if v, _ := c.Members[1].Agent.Get("k"); v != "v" {
		t.Fatalf("k = %q after the forged put", v)
	}

	// The group still elects: the rogue leaves, the master dies.
	rogue.Leave(time.Second)
	rogue.Shutdown()
	// The rogue's leave has reached every agent (a member still in the
	// view counts in the strict quorum), and every back-up holds the
	// master's log (a back-up behind it rightly loses its votes, and
	// nothing here would hand over later).
	c.WaitFor(10*time.Second, "the rogue gone from every view", func() bool {
		for _, id := range c.Running() {
			for _, m := range c.Members[id].Agent.MembersJSON() {
				if m.ID == 99 {
					return false
				}
			}
		}
		return true
	})
	c.WaitStable(10 * time.Second)
	c.Kill(1)
	c.WaitFor(20*time.Second, "2 master and registered", func() bool {
		ms := c.Masters()
		return len(ms) == 1 && ms[0] == 2 && c.Registered() == 2
	})
	if e := c.Members[2].Agent.Status().Epoch; e.Term > known+2 {
		t.Fatalf("new epoch %s, want a term just above %d", e, known)
	}
	c.WaitFor(10*time.Second, "the new master serving", func() bool {
		_, err := c.Put(2, "after", "v")
		return err == nil
	})
}

// The naming node is the one source an agent learns far-off terms from,
// but not the last terms of the space: a registration at 2^64-1 (a forged
// naming node without TLS) is refused and counted; one far above but
// below the end is learned, as a new agent of an old group needs.
func TestLearnedTermBounded(t *testing.T) {
	c := agenttest.New(t, agenttest.Options{Agents: 1, Mode: "available", Base: 24})
	if m := c.WaitStable(20 * time.Second); m != 1 {
		t.Fatalf("master %d, want 1", m)
	}
	a := c.Members[1].Agent
	before, refused := a.Status().MaxTerm, a.Info().Refused
	agent.NoteRegisteredForTest(a, &api.Registration{ID: 9, Addr: "127.0.0.9:1", Epoch: api.Epoch{Term: ^uint64(0), ID: 9}})
	if got := a.Status().MaxTerm; got != before {
		t.Fatalf("learned term %d from a registration at 2^64-1 (knew %d)", got, before)
	}
	if a.Info().Refused != refused+1 {
		t.Fatalf("refused inputs %d, want %d", a.Info().Refused, refused+1)
	}
	far := before + 1<<30
	agent.NoteRegisteredForTest(a, &api.Registration{ID: 9, Addr: "127.0.0.9:1", Epoch: api.Epoch{Term: far, ID: 9}})
	c.WaitFor(10*time.Second, "the far term learned", func() bool { return a.Status().MaxTerm >= far })
}
