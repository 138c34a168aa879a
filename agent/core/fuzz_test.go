package core

import (
	"math/rand"
	"testing"

	"github.com/mastership/mastership/agent/kv"
	"github.com/mastership/mastership/agent/rlog"
	"github.com/mastership/mastership/naming/api"
)

// FuzzStep feeds arbitrary decoded messages to agents in every role: no
// input may panic the core, and no epoch out of range may be learnt.
func FuzzStep(f *testing.F) {
	seeds := []Message{
		{Type: MsgTrigger, From: 2, Epoch: api.Epoch{Term: ^uint64(0), ID: 2}},
		{Type: MsgAppend, From: 2, Epoch: api.Epoch{Term: 1 << 40, ID: 2}, Entries: []rlog.Entry{{Index: 1}}},
		{Type: MsgAppend, From: 2, Epoch: api.Epoch{Term: 5, ID: 2}, PrevIndex: ^uint64(0), Commit: ^uint64(0)},
		{Type: MsgAppend, From: 2, Epoch: api.Epoch{Term: 5, ID: 2}, Entries: []rlog.Entry{{Index: 3, Epoch: api.Epoch{Term: 5, ID: 2}}}, Commit: 3},
		{Type: MsgAppendResp, From: 2, Epoch: api.Epoch{Term: 1, ID: 1}, Match: ^uint64(0), LastIndex: ^uint64(0)},
		{Type: MsgVote, From: 3, Epoch: api.Epoch{Term: 9, ID: 3}, LastIndex: ^uint64(0), LastEpoch: api.Epoch{Term: 9, ID: 3}},
		{Type: MsgVoteResp, From: 3, Epoch: api.Epoch{Term: 2, ID: 3}},
		{Type: MsgTransferReq, From: 3, Epoch: api.Epoch{Term: 1, ID: 1}},
		{Type: MsgTimeoutNow, From: 1, Epoch: api.Epoch{Term: 1, ID: 1}},
	}
	for _, m := range seeds {
		m.Group, m.To = "g", 1
		b, err := api.Encode(&m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, uint8(0))
	}
	f.Fuzz(func(t *testing.T, b []byte, role uint8) {
		var m Message
		if api.Decode(b, &m) != nil {
			return
		}
		m.Group = "g"
		n := fuzzNode(t, role%3)
		before := n.Status().MaxTerm
		n.Step(m)
		n.Ready()
		for i := 0; i < 25; i++ {
			n.Tick()
			n.Ready()
		}
		if st := n.Status(); st.MaxTerm > before+api.MaxTermLead+1 {
			t.Fatalf("learnt term %d from %s (was %d)", st.MaxTerm, m, before)
		}
	})
}

// fuzzNode returns agent 1 of a group of three as back-up (0), master (1)
// or candidate (2), with a few entries.
func fuzzNode(t *testing.T, role uint8) *Node {
	n := NewNode(Config{ID: 1, Group: "g", Mode: api.ModeStrict, HeartbeatTicks: 2, ElectionTicks: 10, StaggerTicks: 3,
		WriteTicks: 20, Expect: 3, Rand: rand.New(rand.NewSource(1))}, kv.NewStore(), rlog.New(), HardState{})
	n.SetView([]Peer{{ID: 2, Alive: true, Epoch: api.Epoch{Term: 1, ID: 2}}, {ID: 3, Alive: true}})
	switch role {
	case 1:
		n.becomeCandidate()
		n.Step(Message{Type: MsgVoteResp, Group: "g", From: 2, Epoch: api.Epoch{Term: 1, ID: 2}})
		n.Registered(n.Epoch(), true, 1000)
		op, _ := kv.EncodeOp(kv.Op{Kind: kv.KindPut, Key: "k", Value: []byte("v")})
		n.Propose(1, 7, 1, op)
	case 2:
		n.becomeCandidate()
	}
	n.Ready()
	return n
}
