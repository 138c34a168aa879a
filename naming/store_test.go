package naming

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	"github.com/mastership/mastership/naming/api"
	bolt "go.etcd.io/bbolt"
)

// eventCommand is the command that records event seq of group at t, with
// the group's record, as the registry makes it.
func eventCommand(t *testing.T, group string, seq uint64, at time.Time) *command {
	t.Helper()
	rec, err := api.Encode(&groupRecord{Name: group, Policy: api.PolicyLowestID, Seq: seq})
	if err != nil {
		t.Fatal(err)
	}
	return &command{Groups: []groupPut{{Name: group, Record: rec}},
		Events: []GroupEvent{{Group: group, Event: api.Event{Seq: seq, Time: at, Kind: "recheck"}}}}
}

// storedEvents lists every stored event as "group/seq", and checks the
// order index and the count agree with it.
func storedEvents(t *testing.T, s *Store) map[string]bool {
	t.Helper()
	got := map[string]bool{}
	if err := s.allEvents(func(ge GroupEvent) error {
		got[fmt.Sprintf("%s/%d", ge.Group, ge.Event.Seq)] = true
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	var indexed int
	var count uint64
	s.view(func(tx *bolt.Tx) error {
		indexed = tx.Bucket(bucketEventOrder).Stats().KeyN
		count = eventCount(tx.Bucket(bucketMeta))
		return nil
	})
	if indexed != len(got) || count != uint64(len(got)) {
		t.Fatalf("%d events stored, %d indexed, count %d", len(got), indexed, count)
	}
	return got
}

// The history is bounded over all groups: past -max-events the oldest
// event of any group is dropped, whatever group records the new one; each
// group keeps its own bound too, and its index (the last sequence) stays
// when all its events are gone. Recording an event again (a replay)
// changes nothing, one already dropped included.
func TestEventHistoryBoundedOverAllGroups(t *testing.T) {
	s, err := openStateStore(t.TempDir(), 16, 50)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	t0 := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	var cmds []*command
	// 10 groups, 30 events each, interleaved in time; then group "busy"
	// alone records 40 more.
	for seq := uint64(1); seq <= 30; seq++ {
		for g := 0; g < 10; g++ {
			cmds = append(cmds, eventCommand(t, fmt.Sprintf("g%d", g), seq, t0.Add(time.Duration(len(cmds))*time.Millisecond)))
		}
	}
	for seq := uint64(1); seq <= 40; seq++ {
		cmds = append(cmds, eventCommand(t, "busy", seq, t0.Add(time.Duration(len(cmds))*time.Millisecond)))
	}
	for _, c := range cmds {
		if err := s.apply([]*command{c}); err != nil {
			t.Fatal(err)
		}
	}
	got := storedEvents(t, s)
	// The newest 50 over all: busy's 40, of which its bound keeps 16, so
	// 34 more from the others, each of which keeps at most 16 anyway.
	want := map[string]bool{}
	kept := 0
	for i := len(cmds) - 1; i >= 0 && kept < 50; i-- {
		ev := cmds[i].Events[0]
		last := uint64(30)
		if ev.Group == "busy" {
			last = 40
		}
		if ev.Event.Seq+16 <= last {
			continue // dropped by its group's bound
		}
		want[fmt.Sprintf("%s/%d", ev.Group, ev.Event.Seq)] = true
		kept++
	}
	if len(got) != 50 || fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("%d events kept:\n%v\nwant the newest 50 within each group's bound:\n%v", len(got), got, want)
	}
	for g := 0; g < 10; g++ {
		name := fmt.Sprintf("g%d", g)
		if seq, err := s.LastEventSeq(name); err != nil || seq != 30 {
			t.Errorf("%s: last event %d (%v), want 30 though its history is gone", name, seq, err)
		}
	}
	// Replays: the newest command, and one whose event was dropped long
	// ago, applied again.
	if err := s.apply([]*command{cmds[len(cmds)-1], cmds[0]}); err != nil {
		t.Fatal(err)
	}
	if again := storedEvents(t, s); fmt.Sprint(again) != fmt.Sprint(got) {
		t.Fatalf("a replay changed the history:\n%v\nwant\n%v", again, got)
	}

	// A snapshot restored into a node with a smaller bound keeps its
	// newest events only, and rebuilds the index.
	snap, err := s.db.Begin(false)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	err = (&fsmSnapshot{store: s, tx: snap}).writeTo(&buf)
	snap.Rollback()
	if err != nil {
		t.Fatal(err)
	}
	small, err := openStateStore(t.TempDir(), 16, 20)
	if err != nil {
		t.Fatal(err)
	}
	defer small.Close()
	if err := small.restore(&buf); err != nil {
		t.Fatal(err)
	}
	restored := storedEvents(t, small)
	if len(restored) != 20 {
		t.Fatalf("restored %d events, want 20", len(restored))
	}
	for i := len(cmds) - 1; i >= len(cmds)-16; i-- {
		if k := fmt.Sprintf("busy/%d", cmds[i].Events[0].Event.Seq); !restored[k] {
			t.Errorf("restore dropped %s, one of the newest", k)
		}
	}
}

// Events stamped with any time, the zero time of a forged snapshot and
// equal times included, are indexed and dropped oldest first.
func TestEventOrderAnyTime(t *testing.T) {
	s, err := openStateStore(t.TempDir(), 1000, 3)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	same := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	for i, at := range []time.Time{same, same, {}, same.Add(time.Second), time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC), same} {
		if err := s.apply([]*command{eventCommand(t, "g", uint64(i+1), at)}); err != nil {
			t.Fatal(err)
		}
	}
	got := storedEvents(t, s)
	// By time: 3 (year 1), then 1, 2, 6 (equal, by sequence), 4, 5.
	if want := map[string]bool{"g/6": true, "g/4": true, "g/5": true}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("kept %v, want %v", got, want)
	}
}
