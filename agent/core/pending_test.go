package core

import (
	"errors"
	"fmt"
	"math/rand"
	"strings"
	"testing"

	"github.com/mastership/mastership/agent/kv"
	"github.com/mastership/mastership/naming/api"
)

// A strict master cut off from its back-ups while its registration holds
// (it still reaches the naming node, the others do not) takes writes for
// an election timeout, then refuses them at once instead of taking writes
// that can never commit; one back-up still in reach is a majority, and
// refuses nothing. Once the others are heard again, it takes writes again.
func TestCutOffStrictMasterRefusesWrites(t *testing.T) {
	s, n := cutOffMaster(t, false)
	et := n.cfg.ElectionTicks

	// One back-up cut: a majority still answers.
	s.partition([]uint64{1}, []uint64{3})
	s.tick(3 * et)
	if _, err := s.put(1, "k", "v"); err != nil {
		t.Fatalf("with 2 of 3 in reach: %v", err)
	}
	s.heal()
	s.tick(et)

	// Both cut: refused once no majority answered for an election timeout.
	s.partition([]uint64{1}, []uint64{2, 3})
	taken, refusedAt := 0, -1
	for tick := 0; tick < 2*et && refusedAt < 0; tick++ {
		last := n.log.LastIndex()
		_, err := s.put(1, "k", "v")
		switch {
		case err == nil:
			taken++
		case errors.Is(err, ErrNotServing) && strings.Contains(err.Error(), "majority"):
			refusedAt = tick
			if n.log.LastIndex() != last {
				t.Fatalf("a refused write was appended: last %d, was %d", n.log.LastIndex(), last)
			}
		default:
			t.Fatalf("tick %d: %v", tick, err)
		}
		s.tick(1)
	}
	if n.Role() != api.RoleMaster {
		t.Fatalf("1 is %s; the test wants a master that is still registered", n.Role())
	}
	if refusedAt < 0 {
		t.Fatalf("cut off for %d ticks, %d writes taken and none refused", 2*et, taken)
	}
	if refusedAt < et-1 || refusedAt > et+1 {
		t.Fatalf("refused after %d ticks, want about the election timeout (%d)", refusedAt, et)
	}

	// Heard again: the writes go through.
	s.heal()
	s.tick(2 * n.cfg.HeartbeatTicks)
	if ms := s.masters(); len(ms) != 1 {
		t.Fatalf("masters %v after the heal", ms)
	}
	m := s.masters()[0]
	ref, err := s.put(m, "k", "after")
	if err != nil {
		t.Fatalf("after the heal: %v", err)
	}
	s.tick(2)
	if r, ok := s.results[ref]; !ok || r.Err != nil {
		t.Fatalf("write after the heal: %+v (answered %t)", r, ok)
	}
}

// cutOffMaster is a strict group of three whose master, 1, is registered
// for long; cut, the messages between it and the others are lost (no tick
// has passed, and the views still see everyone).
func cutOffMaster(t *testing.T, cut bool) (*simNet, *Node) {
	t.Helper()
	s := newSim(t, api.ModeStrict, 3, 2, 1)
	s.tick(60)
	n := s.nodes[1]
	if n.Role() != api.RoleMaster {
		t.Fatalf("1 is %s", n.Role())
	}
	n.Registered(n.Epoch(), true, n.Now()+1000)
	if cut {
		s.cut[[2]uint64{1, 2}], s.cut[[2]uint64{1, 3}] = true, true
	}
	return s, n
}

// A master holds at most MaxPendingWrites proposals and MaxPendingBytes of
// their operations unanswered: past either it refuses, appends nothing,
// and takes writes again once the ones it holds commit.
func TestPendingWritesAreBounded(t *testing.T) {
	t.Run("count", func(t *testing.T) {
		s, n := cutOffMaster(t, true)
		op, _ := kv.EncodeOp(kv.Op{Kind: kv.KindPut, Key: "k", Value: []byte("v")})
		for i := range MaxPendingWrites {
			s.nextRef++
			if err := n.Propose(s.nextRef, 1, s.nextRef, op); err != nil {
				t.Fatalf("proposal %d: %v", i, err)
			}
		}
		last := n.log.LastIndex()
		s.nextRef++
		err := n.Propose(s.nextRef, 1, s.nextRef, op)
		if !errors.Is(err, ErrNotServing) || !strings.Contains(err.Error(), "wait to commit") {
			t.Fatalf("proposal past %d pending: %v", MaxPendingWrites, err)
		}
		if n.log.LastIndex() != last {
			t.Fatalf("the refused proposal was appended: last %d, was %d", n.log.LastIndex(), last)
		}
		s.drain(1)
		s.cut = map[[2]uint64]bool{}
		s.tick(2 * n.cfg.HeartbeatTicks)
		if n.commit != n.log.LastIndex() || len(n.proposals) != 0 || n.pendingBytes != 0 {
			t.Fatalf("after the heal: commit %d of %d, %d proposals of %d bytes still held", n.commit, n.log.LastIndex(), len(n.proposals), n.pendingBytes)
		}
		if _, err := s.put(1, "k", "v"); err != nil {
			t.Fatalf("after the proposals committed: %v", err)
		}
	})
	t.Run("bytes", func(t *testing.T) {
		s, n := cutOffMaster(t, true)
		big := make([]byte, MaxPendingBytes/8+1) // the core takes any bytes; kv's own cap is lower
		taken := 0
		for ; taken < 16; taken++ {
			s.nextRef++
			if err := n.Propose(s.nextRef, 1, s.nextRef, big); err != nil {
				if !errors.Is(err, ErrNotServing) || !strings.Contains(err.Error(), "wait to commit") {
					t.Fatalf("proposal %d: %v", taken, err)
				}
				break
			}
		}
		if taken != 7 || n.pendingBytes > MaxPendingBytes {
			t.Fatalf("took %d writes of %d bytes (%d pending), want 7 under %d", taken, len(big), n.pendingBytes, MaxPendingBytes)
		}
		// A small one still fits beside them.
		small, _ := kv.EncodeOp(kv.Op{Kind: kv.KindPut, Key: "k", Value: []byte("v")})
		s.nextRef++
		if err := n.Propose(s.nextRef, 1, s.nextRef, small); err != nil {
			t.Fatalf("a small write under the cap: %v", err)
		}
	})
	t.Run("one write larger than the cap", func(t *testing.T) {
		s, n := cutOffMaster(t, false)
		huge := make([]byte, MaxPendingBytes+1)
		s.nextRef++
		if err := n.Propose(s.nextRef, 1, s.nextRef, huge); err != nil {
			t.Fatalf("one write of %d bytes with nothing pending: %v", len(huge), err)
		}
		s.nextRef++
		if err := n.Propose(s.nextRef, 1, s.nextRef, []byte{1}); !errors.Is(err, ErrNotServing) {
			t.Fatalf("a write behind one past the cap: %v", err)
		}
	})
}

// A strict master that re-elects itself at a new term (Reassert) keeps its
// proposals for the campaign; when the campaign is lost they fail at once
// (another master's appends will replace their entries), and none of them
// is ever answered as done with another write's entry, or crashes the node
// once it is master again and applies past them.
func TestProposalsFailWhenAReelectionIsLost(t *testing.T) {
	s, n := cutOffMaster(t, true)
	var refs []uint64
	for range 3 {
		ref, err := s.put(1, "k", "lost")
		if err != nil {
			t.Fatal(err)
		}
		refs = append(refs, ref)
	}
	s.queue = nil
	n.Reassert()
	s.drain(1)
	s.queue = nil
	for i := 0; i < 3*n.cfg.ElectionTicks && n.Role() == api.RoleCandidate; i++ {
		n.Tick()
		s.drain(1)
		s.queue = nil
	}
	if n.Role() != api.RoleBackup {
		t.Fatalf("1 is %s after a campaign no voter heard", n.Role())
	}
	for _, ref := range refs {
		if r, ok := s.results[ref]; !ok || !errors.Is(r.Err, ErrNotMaster) {
			t.Fatalf("write %d after the lost campaign: %+v (answered %t); want ErrNotMaster", ref, r, ok)
		}
	}
	// The others elect one of them while 1 is cut off, and take a write;
	// after the heal that master's log replaces 1's tail. Then it dies and
	// the rest elect again, 1 the best ranked of them: it applies past
	// the indices its failed writes once held.
	s.partition([]uint64{1}, []uint64{2, 3})
	s.tick(60)
	ms := s.masters()
	if len(ms) != 1 || ms[0] == 1 {
		t.Fatalf("masters %v, want one of 2 and 3", ms)
	}
	m := ms[0]
	if _, err := s.put(m, "other", "v"); err != nil {
		t.Fatal(err)
	}
	s.tick(5)
	s.heal()
	s.tick(40)
	if st := n.Status(); st.Role != api.RoleBackup || st.Master != m {
		t.Fatalf("1 after the heal: %s of %d, want a back-up of %d", st.Role, st.Master, m)
	}
	s.down[m] = true
	s.updateViews()
	s.tick(80)
	if ms := s.masters(); len(ms) != 1 {
		t.Fatalf("masters %v after %d died", ms, m)
	}
	for _, ref := range refs {
		if r := s.results[ref]; !errors.Is(r.Err, ErrNotMaster) {
			t.Fatalf("write %d later answered %+v", ref, r)
		}
	}
	for _, id := range s.ids() {
		if v, ok := s.stores[id].Get("k"); ok && !s.down[id] {
			t.Fatalf("%d holds k=%q: a write whose entry was replaced applied", id, v)
		}
	}
}

// A strict master whose stored term is the last one (a corrupted data dir)
// cannot campaign at a new term: Reassert leaves it master, holding and
// then answering its proposals, rather than a back-up of itself holding
// them.
func TestReassertWithNoTermLeftKeepsTheMaster(t *testing.T) {
	s := newSim(t, api.ModeStrict, 3, 2, 1)
	s.tick(60)
	n := s.nodes[1]
	ref, err := s.put(1, "k", "v")
	if err != nil {
		t.Fatal(err)
	}
	epoch := n.Epoch()
	n.maxTerm = ^uint64(0)
	n.Reassert()
	s.drain(1)
	if n.Role() != api.RoleMaster || n.Epoch() != epoch || len(n.proposals) != 1 {
		t.Fatalf("after Reassert with no term left: %s at %s with %d proposals; want master at %s with 1", n.Role(), n.Epoch(), len(n.proposals), epoch)
	}
	s.tick(2)
	if r, ok := s.results[ref]; !ok || r.Err != nil {
		t.Fatalf("the write: %+v (answered %t)", r, ok)
	}
}

// Seeded runs of writes, re-elections (Reassert), partitions and heals,
// in both modes: at every Ready the simulator checks that only a master or
// a candidate re-electing itself holds proposals, that their bytes add
// up, and that a write answered as done is the one at its index.
func TestProposalsUnderRandomReassertsAndPartitions(t *testing.T) {
	for seed := int64(1); seed <= 60; seed++ {
		mode := api.ModeStrict
		if seed%3 == 0 {
			mode = api.ModeAvailable
		}
		rng := rand.New(rand.NewSource(seed))
		prios := []int{3, 2, 1}
		if seed%2 == 0 {
			prios = []int{5, 4, 3, 2, 1}
		}
		s := newSim(t, mode, prios...)
		s.tick(60)
		for step := range 400 {
			ids := s.ids()
			switch r := rng.Intn(10); {
			case r < 4:
				for _, m := range s.masters() {
					s.put(m, fmt.Sprintf("k%d", rng.Intn(8)), fmt.Sprintf("s%d-%d", seed, step))
				}
			case r < 5:
				if ms := s.masters(); len(ms) > 0 {
					n := s.nodes[ms[rng.Intn(len(ms))]]
					n.maxTerm++ // a newer term seen: what makes the self-monitor reassert
					n.Reassert()
					s.drain(n.cfg.ID)
				}
			case r < 6:
				k := 1 + rng.Intn(len(ids)-1)
				rng.Shuffle(len(ids), func(i, j int) { ids[i], ids[j] = ids[j], ids[i] })
				s.heal()
				s.partition(ids[:k], ids[k:])
			case r < 7:
				s.heal()
			default:
				s.tick(1 + rng.Intn(5))
			}
		}
		s.heal()
		s.tick(100)
		if ms := s.masters(); len(ms) == 0 {
			t.Fatalf("seed %d (%s): no master after the heal", seed, mode)
		}
	}
}
