package naming

import (
	"bufio"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	"github.com/mastership/mastership/naming/api"
)

// command is one raft log entry: what registry calls on the leader changed,
// as state. The leader decides (it alone holds the live expiry of sessions
// and registrations, and the probes of a conflict window); every node
// applies the outcome, so that applying is deterministic whatever the
// clocks of the followers say.
type command struct {
	// Groups are the changed groups' durable records.
	Groups []groupPut `codec:"g"`
	// Events are the history entries recorded, numbered by the leader.
	Events []GroupEvent `codec:"e"`
	// Notices are triggers to deliver: they stay in the outbox until the
	// leader delivered them or gave up, so that a new leader resumes them.
	Notices []Notice `codec:"n"`
	// Done removes delivered notices from the outbox.
	Done []NoticeKey `codec:"d"`
}

type groupPut struct {
	Name   string `codec:"n"`
	Record []byte `codec:"r"`
}

// Notice is one trigger to one target, kept until delivered.
type Notice struct {
	Notify api.Notify `codec:"n"`
	Target Target     `codec:"t"`
}

// Key is the outbox slot of the notice: the newest notice to a target
// replaces an older one.
func (nt Notice) Key() NoticeKey {
	return NoticeKey{Group: nt.Notify.Group, ID: nt.Target.ID, Seq: nt.Notify.Seq}
}

// NoticeKey names a notice in the outbox; Seq makes a stale removal a no-op.
type NoticeKey struct {
	Group string `codec:"g"`
	ID    uint64 `codec:"i"`
	Seq   uint64 `codec:"s"`
}

func (c *command) empty() bool {
	return len(c.Groups) == 0 && len(c.Events) == 0 && len(c.Notices) == 0 && len(c.Done) == 0
}

// fsm is the raft state machine of a naming node: the committed records of
// every group, their event histories and the outbox of triggers, kept in
// the node's state store. Every node applies every command; the leader
// serves from its live Registry, which it builds from this state when it
// takes office.
type fsm struct {
	store  *Store
	logger hclog.Logger

	mu     sync.Mutex
	failed error // set when applying failed: the node's state is behind the log
}

var _ raft.BatchingFSM = (*fsm)(nil)

// Apply applies one entry.
func (f *fsm) Apply(l *raft.Log) any { return f.ApplyBatch([]*raft.Log{l})[0] }

// ApplyBatch applies committed entries in one store transaction.
func (f *fsm) ApplyBatch(logs []*raft.Log) []any {
	out := make([]any, len(logs))
	cmds := make([]*command, 0, len(logs))
	for i, l := range logs {
		if l.Type != raft.LogCommand {
			continue
		}
		c := &command{}
		if err := api.Decode(l.Data, c); err != nil {
			// Only a leader of this cluster writes the log: an entry that
			// does not decode is a bug or a damaged log, not input.
			out[i] = fmt.Errorf("naming: entry %d does not decode: %w", l.Index, err)
			f.fail(out[i].(error))
			continue
		}
		cmds = append(cmds, c)
	}
	if len(cmds) == 0 {
		return out
	}
	if err := f.store.apply(cmds); err != nil {
		err = fmt.Errorf("naming: apply entries %d..%d: %w", logs[0].Index, logs[len(logs)-1].Index, err)
		f.fail(err)
		for i := range out {
			if out[i] == nil {
				out[i] = err
			}
		}
	}
	return out
}

func (f *fsm) fail(err error) {
	f.logger.Error("state store failed; the node stops accepting changes", "error", err)
	f.mu.Lock()
	if f.failed == nil {
		f.failed = err
	}
	f.mu.Unlock()
}

// Failed returns the error that stopped the state machine, if any.
func (f *fsm) Failed() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.failed
}

// Snapshot captures the state as of the last applied entry: a read
// transaction of the store, which Persist streams while applying goes on.
func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	tx, err := f.store.db.Begin(false)
	if err != nil {
		return nil, fmt.Errorf("naming: snapshot: %w", err)
	}
	return &fsmSnapshot{store: f.store, tx: tx}, nil
}

// Restore replaces the state with a snapshot's, after checking it whole.
func (f *fsm) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	if err := f.store.restore(rc); err != nil {
		return fmt.Errorf("naming: restore snapshot: %w", err)
	}
	return nil
}

// The snapshot format: a header, frames of one item each (a 4-byte length,
// then the item in msgpack), and a last frame that counts the items and
// carries the SHA-256 of every byte before it. A truncated, damaged or
// foreign file is refused whole.
var snapshotMagic = [8]byte{'M', 'S', 'H', 'I', 'P', 'S', 'N', '1'}

// maxSnapshotFrame bounds one item of a snapshot (a group record or an
// event); a larger frame is a damaged file.
const maxSnapshotFrame = 16 << 20

type snapshotItem struct {
	Kind   byte   `codec:"k"` // 'g' group, 'e' event, 'o' outbox, 'z' end
	Group  string `codec:"g"`
	Record []byte `codec:"r"`
	Seq    uint64 `codec:"s"`
	ID     uint64 `codec:"i"`
	Count  uint64 `codec:"c"`
	Sum    []byte `codec:"h"`
}

// ErrBadSnapshot means a snapshot is truncated, damaged or not one.
var ErrBadSnapshot = errors.New("naming: not a whole naming snapshot")

type snapshotWriter struct {
	w     *bufio.Writer
	h     hash.Hash
	count uint64
}

func newSnapshotWriter(w io.Writer) (*snapshotWriter, error) {
	sw := &snapshotWriter{w: bufio.NewWriterSize(w, 64<<10), h: sha256.New()}
	if _, err := sw.write(snapshotMagic[:]); err != nil {
		return nil, err
	}
	return sw, nil
}

func (sw *snapshotWriter) write(b []byte) (int, error) {
	sw.h.Write(b)
	return sw.w.Write(b)
}

func (sw *snapshotWriter) item(it *snapshotItem) error {
	b, err := api.Encode(it)
	if err != nil {
		return err
	}
	var n [4]byte
	binary.BigEndian.PutUint32(n[:], uint32(len(b)))
	if _, err := sw.write(n[:]); err != nil {
		return err
	}
	if _, err := sw.write(b); err != nil {
		return err
	}
	sw.count++
	return nil
}

// close writes the end frame (not itself hashed) and flushes.
func (sw *snapshotWriter) close() error {
	end, err := api.Encode(&snapshotItem{Kind: 'z', Count: sw.count, Sum: sw.h.Sum(nil)})
	if err != nil {
		return err
	}
	var n [4]byte
	binary.BigEndian.PutUint32(n[:], uint32(len(end)))
	if _, err := sw.w.Write(n[:]); err != nil {
		return err
	}
	if _, err := sw.w.Write(end); err != nil {
		return err
	}
	return sw.w.Flush()
}

// readSnapshot calls fn with every item of a snapshot in order and checks
// the end frame; fn's work is to be discarded when it returns an error.
func readSnapshot(r io.Reader, fn func(*snapshotItem) error) error {
	br := bufio.NewReaderSize(r, 64<<10)
	h := sha256.New()
	var magic [8]byte
	if _, err := io.ReadFull(br, magic[:]); err != nil || magic != snapshotMagic {
		return fmt.Errorf("%w: no snapshot header", ErrBadSnapshot)
	}
	h.Write(magic[:])
	var count uint64
	for {
		var n [4]byte
		if _, err := io.ReadFull(br, n[:]); err != nil {
			return fmt.Errorf("%w: truncated after %d items", ErrBadSnapshot, count)
		}
		size := binary.BigEndian.Uint32(n[:])
		if size > maxSnapshotFrame {
			return fmt.Errorf("%w: a frame of %d bytes", ErrBadSnapshot, size)
		}
		b := make([]byte, size)
		if _, err := io.ReadFull(br, b); err != nil {
			return fmt.Errorf("%w: truncated after %d items", ErrBadSnapshot, count)
		}
		var it snapshotItem
		if err := api.Decode(b, &it); err != nil {
			return fmt.Errorf("%w: item %d: %v", ErrBadSnapshot, count, err)
		}
		if it.Kind == 'z' {
			if it.Count != count || string(it.Sum) != string(h.Sum(nil)) {
				return fmt.Errorf("%w: checksum or count does not match (%d items)", ErrBadSnapshot, count)
			}
			if _, err := br.ReadByte(); err != io.EOF {
				return fmt.Errorf("%w: data after the end", ErrBadSnapshot)
			}
			return nil
		}
		h.Write(n[:])
		h.Write(b)
		count++
		if err := fn(&it); err != nil {
			return err
		}
	}
}

// CheckSnapshot reads a whole snapshot and reports whether it is intact:
// the checksum, and every item decoding as what it says it is (a group
// record the registry loads, an event, a notice).
func CheckSnapshot(r io.Reader) error {
	scratch := NewRegistry(RegistryConfig{}, nil)
	return readSnapshot(r, func(it *snapshotItem) error { return checkItem(scratch, it) })
}

// checkItem refuses an item the state machine could not use.
func checkItem(scratch *Registry, it *snapshotItem) error {
	switch it.Kind {
	case 'g':
		if err := scratch.Restore(time.Time{}, 0, it.Record); err != nil {
			return fmt.Errorf("%w: group %q: %v", ErrBadSnapshot, it.Group, err)
		}
		if !scratch.HasGroup(it.Group) {
			return fmt.Errorf("%w: the record under %q is of another group", ErrBadSnapshot, it.Group)
		}
		delete(scratch.groups, it.Group)
	case 'e':
		if err := api.ValidateGroup(it.Group); err != nil {
			return fmt.Errorf("%w: event of group %q: %v", ErrBadSnapshot, it.Group, err)
		}
		var ev api.Event
		if err := api.Decode(it.Record, &ev); err != nil || ev.Seq != it.Seq {
			return fmt.Errorf("%w: event %d of %q does not decode as itself", ErrBadSnapshot, it.Seq, it.Group)
		}
	case 'o':
		var nt Notice
		if err := api.Decode(it.Record, &nt); err != nil || api.ValidateGroup(nt.Notify.Group) != nil {
			return fmt.Errorf("%w: a notice does not decode", ErrBadSnapshot)
		}
	default:
		return fmt.Errorf("%w: item of kind %q", ErrBadSnapshot, it.Kind)
	}
	return nil
}
