package core

import (
	"errors"
	"fmt"
	"testing"

	"github.com/mastership/mastership/agent/kv"
	"github.com/mastership/mastership/naming/api"
)

// Snapshots on the agent's own schedule: every SnapshotEntries applied
// entries each node (master and back-ups alike) hands a snapshot of its
// state at the applied index to the runtime, and its log keeps only the
// window behind it. The snapshot restores to the state at that index.
func TestScheduledSnapshotsCompactTheLog(t *testing.T) {
	for _, mode := range []api.Mode{api.ModeStrict, api.ModeAvailable} {
		t.Run(string(mode), func(t *testing.T) {
			s := newSimSnap(t, mode, false, 0, 100, 10, 3, 2, 1)
			s.tick(30)
			for i := range 350 {
				if _, err := s.put(1, fmt.Sprintf("k%d", i%40), fmt.Sprint(i)); err != nil {
					t.Fatal(err)
				}
				s.deliver()
			}
			s.tick(5)
			for _, id := range s.ids() {
				snaps := s.snaps[id]
				if len(snaps) != 3 {
					t.Fatalf("agent %d took %d snapshots over 350 writes, every 100 applied: %v", id, len(snaps), snaps)
				}
				for i, sn := range snaps {
					if i > 0 && sn.Pos.Index-snaps[i-1].Pos.Index < 100 {
						t.Errorf("agent %d: snapshots at %d and %d, less than 100 apart", id, snaps[i-1].Pos.Index, sn.Pos.Index)
					}
					st := kv.NewStore()
					if err := st.Restore(sn.Data); err != nil {
						t.Fatalf("agent %d snapshot %d: %v", id, i, err)
					}
					if st.Digest().Index != sn.Pos.Index {
						t.Errorf("agent %d snapshot at %d restores to index %d", id, sn.Pos.Index, st.Digest().Index)
					}
				}
				n := s.nodes[id]
				last := snaps[len(snaps)-1].Pos.Index
				if got, want := n.Log().Base().Index, last-10; got != want {
					t.Errorf("agent %d: log base %d, want %d (the window behind the snapshot at %d)", id, got, want, last)
				}
				if st := n.Status(); st.SnapshotIndex != last || st.Snapshots != 3 || st.LogEntries != int(n.Log().LastIndex()-n.Log().Base().Index) {
					t.Errorf("agent %d status %+v", id, st)
				}
				if got, want := s.stores[id].Digest(), s.stores[1].Digest(); got != want {
					t.Errorf("agent %d digest %v, master %v", id, got, want)
				}
			}
		})
	}
}

// A back-up that fell behind the window (down while the master wrote and
// compacted) gets the snapshot, by download; one within the window
// catches up from the log.
func TestBehindTheWindowDownloads(t *testing.T) {
	for _, c := range []struct {
		missed   int
		download bool
	}{{5, false}, {150, true}} {
		t.Run(fmt.Sprint(c.missed), func(t *testing.T) {
			s := newSimSnap(t, api.ModeStrict, false, 0, 100, 10, 3, 2, 1)
			s.tick(30)
			for i := range 95 {
				s.put(1, fmt.Sprintf("k%d", i), "v")
				s.deliver()
			}
			s.down[3] = true
			s.updateViews()
			for i := range c.missed {
				if _, err := s.put(1, fmt.Sprintf("m%d", i), "v"); err != nil {
					t.Fatal(err)
				}
				s.deliver()
			}
			s.down[3] = false
			s.updateViews()
			downloaded := false
			s.trace = func(line string) {
				if line == "3: downloads the state of 1" {
					downloaded = true
				}
			}
			s.tick(20)
			if downloaded != c.download {
				t.Fatalf("missed %d writes (master's log base %d): downloaded %t, want %t", c.missed, s.nodes[1].Log().Base().Index, downloaded, c.download)
			}
			if got, want := s.stores[3].Digest(), s.stores[1].Digest(); got != want {
				t.Fatalf("3's digest %v, master's %v", got, want)
			}
		})
	}
}

// An available agent takes no snapshot that would compact what a member
// may lack (should the member's side elect its own master, those are the
// writes recovery keeps as divergence records), for RetainEntries entries
// at most, and snapshots again once every member holds the log; a strict
// one, whose committed entries never diverge, keeps the window only.
func TestAvailableMasterRetainsWhatAMemberLacks(t *testing.T) {
	for _, c := range []struct {
		mode   api.Mode
		retain int
		// wantBase computes the master's log base during the partition
		// from 3's last entry and the master's latest snapshot (0: none).
		wantBase func(held, snap uint64) uint64
	}{
		{api.ModeAvailable, 1000, func(uint64, uint64) uint64 { return 0 }},
		{api.ModeAvailable, 50, func(_, snap uint64) uint64 { return snap - 10 - 50 }},
		{api.ModeStrict, 1000, func(_, snap uint64) uint64 { return snap - 10 }},
	} {
		t.Run(fmt.Sprintf("%s/retain=%d", c.mode, c.retain), func(t *testing.T) {
			s := newSimSnap(t, c.mode, false, 0, 100, 10, 3, 2, 1)
			for _, id := range s.ids() {
				s.nodes[id].cfg.RetainEntries = c.retain
			}
			s.tick(30)
			for i := range 20 {
				s.put(1, fmt.Sprintf("k%d", i), "v")
				s.deliver()
			}
			s.partition([]uint64{1, 2}, []uint64{3})
			held := s.nodes[3].Log().LastIndex()
			for i := range 300 {
				if _, err := s.put(1, fmt.Sprintf("k%d", i), "w"); err != nil {
					t.Fatal(err)
				}
				s.deliver()
			}
			m := s.nodes[1]
			var snap uint64
			if n := len(s.snaps[1]); n > 0 {
				snap = s.snaps[1][n-1].Pos.Index
			}
			if got, want := m.Log().Base().Index, c.wantBase(held, snap); got != want || (c.retain == 1000 && c.mode == api.ModeAvailable && snap != 0) {
				t.Fatalf("master's log starts after %d, want %d (3 holds up to %d, snapshot at %d)", got, want, held, snap)
			}
			if c.mode == api.ModeAvailable && c.retain == 1000 {
				// The back-up on the master's side waits too (Held).
				if len(s.snaps[2]) != 0 || s.nodes[2].Log().Base().Index != 0 {
					t.Fatalf("back-up 2 snapshotted %v while 3 lacks entries", s.snaps[2])
				}
			}
			s.heal()
			s.tick(20)
			for i := range 120 {
				s.put(1, fmt.Sprintf("k%d", i), "x")
				s.deliver()
			}
			s.tick(5)
			if len(s.snaps[1]) == 0 || m.Log().Base().Index+10 != s.snaps[1][len(s.snaps[1])-1].Pos.Index {
				t.Fatalf("after the heal: snapshots %d, log base %d", len(s.snaps[1]), m.Log().Base().Index)
			}
		})
	}
}

// A snapshot the storage asks for to free a log segment (CompactWanted)
// comes off the schedule, once the applied index reaches it, and only
// once: the next one waits for the schedule or a new request.
func TestCompactWantedSnapshots(t *testing.T) {
	s := newSimSnap(t, api.ModeStrict, false, 0, 1000, 10, 3, 2, 1)
	s.tick(30)
	put := func(from, to int) {
		for i := from; i < to; i++ {
			if _, err := s.put(1, fmt.Sprintf("k%d", i%40), fmt.Sprint(i)); err != nil {
				t.Fatal(err)
			}
			s.deliver()
		}
	}
	put(0, 50)
	n := s.nodes[1]
	applied := n.Status().Applied
	if len(s.snaps[1]) != 0 {
		t.Fatalf("%d snapshots before the schedule's 1000 entries", len(s.snaps[1]))
	}
	// Asked for an index already applied: taken at once, at the applied
	// index; asked again for the same: nothing more.
	n.CompactWanted(applied - 5)
	s.drain(1)
	if len(s.snaps[1]) != 1 || s.snaps[1][0].Pos.Index != applied {
		t.Fatalf("snapshots %v after CompactWanted(%d) at applied %d; want one at %d", s.snaps[1], applied-5, applied, applied)
	}
	n.CompactWanted(applied - 5)
	s.drain(1)
	put(50, 60)
	if len(s.snaps[1]) != 1 {
		t.Fatalf("%d snapshots after a repeated request", len(s.snaps[1]))
	}
	// Asked for an index ahead: taken once the core applied it.
	ahead := n.Status().Applied + 20
	n.CompactWanted(ahead)
	s.drain(1)
	put(60, 70)
	if len(s.snaps[1]) != 1 {
		t.Fatalf("a snapshot before the wanted index %d was applied", ahead)
	}
	put(70, 90)
	if len(s.snaps[1]) != 2 || s.snaps[1][1].Pos.Index < ahead {
		t.Fatalf("snapshots %v; want a second at %d or beyond", s.snaps[1], ahead)
	}
	if got := n.Status().Snapshots; got != 2 {
		t.Fatalf("status counts %d snapshots", got)
	}
}

// InstallState installs only while the agent still waits for that
// master's state: recovering or syncing towards it. Any other role, or a
// wait towards another master, is ErrSuperseded, and nothing changes.
func TestInstallOnlyWhileWaitingForThatMaster(t *testing.T) {
	for _, tc := range []struct {
		name    string
		prepare func(n *Node) // node 3, a back-up of master 1
		ok      bool
	}{
		{"back-up", func(n *Node) {}, false},
		{"recovering towards the master", func(n *Node) { n.BeginRecovery(1) }, true},
		{"recovering towards another", func(n *Node) { n.BeginRecovery(2) }, false},
		{"syncing with the master", func(n *Node) { n.needSync(1) }, true},
		{"syncing with another", func(n *Node) { n.BeginRecovery(2); n.needSync(2) }, false},
		{"quarantined", func(n *Node) { n.BeginRecovery(1); n.Quarantine() }, false},
		{"back-up again after a recovery", func(n *Node) { n.BeginRecovery(1); n.EndRecovery(1, n.Epoch()) }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newSim(t, api.ModeAvailable, 3, 2, 1)
			s.tick(30)
			for i := range 5 {
				s.put(1, fmt.Sprintf("k%d", i), "v")
				s.deliver()
			}
			s.down[3] = true
			s.updateViews()
			for i := range 5 {
				s.put(1, fmt.Sprintf("m%d", i), "v")
				s.deliver()
			}
			m, n := s.nodes[1], s.nodes[3]
			if n.Role() != api.RoleBackup || n.Master() != 1 {
				t.Fatalf("setup: 3 is %s following %d", n.Role(), n.Master())
			}
			tc.prepare(n)
			role, master, before := n.Role(), n.Master(), s.stores[3].Digest()
			snap, err := m.StateMachine().Snapshot()
			if err != nil {
				t.Fatal(err)
			}
			base, _ := m.Log().PosAt(m.applied)
			ents, _ := m.Log().Slice(m.applied+1, m.Log().LastIndex()+1)
			err = n.InstallState(snap, base, ents, 1, m.Epoch(), m.commit)
			if tc.ok {
				if err != nil {
					t.Fatalf("install: %v", err)
				}
				if n.Role() != api.RoleBackup || n.Master() != 1 || s.stores[3].Digest() != s.stores[1].Digest() {
					t.Fatalf("installed: %s following %d, digest %v, master's %v", n.Role(), n.Master(), s.stores[3].Digest(), s.stores[1].Digest())
				}
				return
			}
			if !errors.Is(err, ErrSuperseded) {
				t.Fatalf("install while %s following %d: %v, want ErrSuperseded", role, master, err)
			}
			if n.Role() != role || n.Master() != master || s.stores[3].Digest() != before {
				t.Fatalf("a superseded install changed the agent: %s following %d, digest %v (was %s following %d, %v)",
					n.Role(), n.Master(), s.stores[3].Digest(), role, master, before)
			}
		})
	}
}
