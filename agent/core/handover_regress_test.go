package core

import (
	"math/rand"
	"testing"

	"github.com/mastership/mastership/agent/kv"
	"github.com/mastership/mastership/agent/rlog"
	"github.com/mastership/mastership/naming/api"
)

// deliverExcept delivers the queue, holding every message to or from id.
func (s *simNet) deliverExcept(id uint64) (held []Message) {
	for len(s.queue) > 0 {
		m := s.queue[0]
		s.queue = s.queue[1:]
		if m.To == id || m.From == id {
			held = append(held, m)
			continue
		}
		s.deliverOne(m)
	}
	return held
}

// A handover whose target was told to campaign (MsgTimeoutNow) but whose
// link is slow times out: the old master must not serve again, since the
// target's voters grant while they still hear it, and a write the old
// master then committed would be cut away by the new master's first
// append. It steps down; the target takes over; nothing acknowledged is
// lost.
func TestHandoverTimeoutAfterTimeoutNowStepsDown(t *testing.T) {
	s := newSim(t, api.ModeStrict, 3, 2, 1)
	s.tick(30)
	if ms := s.masters(); len(ms) != 1 || ms[0] != 1 {
		t.Fatalf("masters %v", ms)
	}
	ref, _ := s.put(1, "a", "1")
	s.deliver()
	if r := s.results[ref]; r.Err != nil || r.Index == 0 {
		t.Fatalf("first write: %+v", r)
	}
	if to, err := s.nodes[1].HandOver(2, false); err != nil || to != 2 {
		t.Fatalf("handover: %d %v", to, err)
	}
	s.drain(1)
	if s.nodes[1].serving() {
		t.Fatal("1 serves after telling 2 to campaign")
	}
	// The link to 2 is slow: everything to and from it is held while 1 and
	// 3 go on, past the handover's deadline.
	var held []Message
	for i := 0; i < 12; i++ {
		for _, id := range []uint64{1, 3} {
			s.nodes[id].Tick()
			s.drain(id)
		}
		held = append(held, s.deliverExcept(2)...)
	}
	if st := s.nodes[1].Status(); st.Role == api.RoleMaster || st.Serving {
		t.Fatalf("1 after the handover's deadline: %+v; want it stepped down", st)
	}
	if _, err := s.put(1, "b", "2"); err == nil {
		t.Fatal("1 took a write after its handover timed out")
	}
	// The held messages arrive; the group settles.
	s.queue = append(held, s.queue...)
	s.deliver()
	s.tick(60)
	ms := s.masters()
	if len(ms) != 1 {
		t.Fatalf("masters %v", ms)
	}
	if v, ok := s.stores[ms[0]].Get("a"); !ok || string(v) != "1" {
		t.Fatalf("acknowledged a=1 reads %q on master %d", v, ms[0])
	}
}

// A switchover in available mode where the target wins its campaign at
// once (the only other live member is the master it replaces): the new
// master is pinned, and the old one, which ranks first, does not take
// mastership back.
func TestSwitchoverPinHoldsWhenTheCampaignWinsAtOnce(t *testing.T) {
	s := newSim(t, api.ModeAvailable, 2, 1)
	s.tick(30)
	if ms := s.masters(); len(ms) != 1 || ms[0] != 1 {
		t.Fatalf("masters %v", ms)
	}
	if _, err := s.nodes[1].HandOver(2, true); err != nil {
		t.Fatal(err)
	}
	s.drain(1)
	s.deliver()
	if n := s.nodes[2]; n.Role() != api.RoleMaster || !n.pinned || n.transferPin {
		t.Fatalf("2 after the switchover: role %s pinned=%t transferPin=%t", n.Role(), n.pinned, n.transferPin)
	}
	s.tick(10)
	if s.nodes[1].RequestHandover() {
		t.Fatal("1 asks the pinned 2 for mastership")
	}
	s.tick(10)
	if ms := s.masters(); len(ms) != 1 || ms[0] != 2 {
		t.Fatalf("masters %v, want 2", ms)
	}
}

// A promotion gate that never answers counts as a veto at its deadline:
// no master is left holding the group without serving.
func TestGateWithoutAnswerIsAVeto(t *testing.T) {
	st := kv.NewStore()
	n := NewNode(Config{ID: 1, Group: "g", Priority: 1, Mode: api.ModeAvailable, HeartbeatTicks: 2, ElectionTicks: 10,
		StaggerTicks: 5, WriteTicks: 20, Gate: true, GateBackoffTicks: 100, GateTimeoutTicks: 15,
		Rand: rand.New(rand.NewSource(1))}, st, rlog.New(), HardState{})
	for i := 0; i < 40 && n.Role() != api.RoleMaster; i++ {
		n.Tick()
		n.Ready()
	}
	if !n.Status().Gated {
		t.Fatalf("status %+v, want a gated master", n.Status())
	}
	for i := 0; i < 15; i++ {
		n.Tick()
		n.Ready()
	}
	if st := n.Status(); st.Role == api.RoleMaster || n.blockedUntil <= n.now {
		t.Fatalf("after the gate's deadline: %+v, blocked until %d at %d", st, n.blockedUntil, n.now)
	}
}
