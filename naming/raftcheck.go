package naming

import (
	"errors"
	"fmt"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"github.com/mastership/mastership/naming/boltfile"
)

// checkRaftStores reads what raft reads at start-up the way raft reads it:
// every log entry from the first to the last, the stable store's terms and
// every snapshot listed. A file can be whole as a bbolt file (boltfile.Open
// checked that) and still hold a value raft cannot decode, a gap in the
// log or a term of the wrong size; raft panics on those deep inside
// NewRaft. Here each is ErrDamaged naming the file and what is wrong.
func checkRaftStores(logs *raftboltdb.BoltStore, logPath string, snaps *raft.FileSnapshotStore, snapDir string) (err error) {
	damaged := func(path, format string, args ...any) error {
		return fmt.Errorf("%w %s: %s", boltfile.ErrDamaged, path, fmt.Sprintf(format, args...))
	}
	defer func() {
		if r := recover(); r != nil {
			err = damaged(logPath, "raft cannot read it (%v)", r)
		}
	}()
	for _, key := range []string{"CurrentTerm", "LastVoteTerm"} {
		v, err := logs.Get([]byte(key))
		switch {
		case errors.Is(err, raftboltdb.ErrKeyNotFound):
		case err != nil:
			return damaged(logPath, "read %s: %v", key, err)
		case len(v) != 8:
			return damaged(logPath, "%s is %d bytes long, not 8", key, len(v))
		}
	}
	first, err := logs.FirstIndex()
	if err != nil {
		return damaged(logPath, "first log index: %v", err)
	}
	last, err := logs.LastIndex()
	if err != nil {
		return damaged(logPath, "last log index: %v", err)
	}
	if last < first {
		return damaged(logPath, "the log ends at %d before it starts at %d", last, first)
	}
	if last > 0 {
		var l raft.Log
		for i := first; i <= last; i++ {
			if err := logs.GetLog(i, &l); err != nil {
				return damaged(logPath, "log entry %d of %d..%d: %v", i, first, last, err)
			}
			if l.Index != i {
				return damaged(logPath, "log entry %d says it is entry %d", i, l.Index)
			}
			if l.Type == raft.LogConfiguration {
				raft.DecodeConfiguration(l.Data) // panics on a bad one
			}
		}
	}
	metas, err := snaps.List()
	if err != nil {
		return damaged(snapDir, "list snapshots: %v", err)
	}
	for _, m := range metas {
		_, rc, err := snaps.Open(m.ID) // reads it whole to check its CRC
		if err != nil {
			return damaged(snapDir, "snapshot %s: %v", m.ID, err)
		}
		rc.Close()
	}
	// Entries before the log's first are in the newest snapshot, or lost.
	if first > 1 {
		var covered uint64
		if len(metas) > 0 {
			covered = metas[0].Index
		}
		if covered+1 < first {
			return damaged(snapDir, "the log starts at entry %d but the newest snapshot ends at %d: entries between are lost", first, covered)
		}
	}
	return nil
}
