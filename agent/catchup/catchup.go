// Package catchup decides when a back-up's catch-up download runs: the
// state download of a back-up whose log left its master's or fell too far
// behind it (the core's syncing role). It is a pure state machine: the
// core's role and master after every Ready, the download's outcome and the
// self-monitor's recoveries go in, Effects come out. The agent runtime and
// the simulator (recover/sim) both drive this one code.
//
// The rules:
//   - while the core is syncing with a master, one download runs, from that
//     master; the machine looks at the core's role after every Ready, not
//     at a one-shot request, so that a request made while an older
//     download ran is not lost;
//   - a download from a master the core left (it syncs with a newer one
//     now) is cancelled and replaced;
//   - a recovery of the self-monitor cancels the download: the recovery
//     replaces it;
//   - a download that failed, while the core still syncs with its master,
//     ends the syncing state: the back-up takes appends again (the next one
//     that does not fit asks for a new download) and may campaign if the
//     master is gone. A back-up must never stay syncing with a master that
//     died during the download;
//   - the answer of a cancelled download changes nothing.
package catchup

import (
	"fmt"
	"strings"

	"github.com/mastership/mastership/naming/api"
)

// Kind is what an Effect asks.
type Kind uint8

// Effects.
const (
	// Start: run download Job from Master (keep the divergence, download
	// and verify the state, install it); answer Done.
	Start Kind = iota + 1
	// Cancel: abandon download Job; its answer, if it comes, is ignored.
	Cancel
	// EndSync: download Job failed while the core still syncs with
	// Master: make the core a back-up of Master again
	// (core.Node.EndRecovery).
	EndSync
)

var kindNames = [...]string{"", "start", "cancel", "end-sync"}

func (k Kind) String() string {
	if int(k) < len(kindNames) && k != 0 {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", k)
}

// Effect is one thing the driver must do.
type Effect struct {
	Kind   Kind
	Job    uint64
	Master uint64
}

func (e Effect) String() string { return fmt.Sprintf("%s job=%d master=%d", e.Kind, e.Job, e.Master) }

// Describe renders effects for tests and traces, "" for none.
func Describe(fx []Effect) string {
	s := make([]string, len(fx))
	for i, e := range fx {
		s[i] = e.String()
	}
	return strings.Join(s, "; ")
}

// Machine is the catch-up download of one agent: at most one in flight.
// It does no I/O. The zero value is ready to use.
type Machine struct {
	job    uint64 // the download in flight (0: none)
	master uint64 // the master it downloads from
	seq    uint64
}

// Running returns the download in flight and its master (0, 0: none).
func (m *Machine) Running() (job, master uint64) { return m.job, m.master }

// Observe is called after every Ready with the core's role and the master
// it follows: it starts a download while the core syncs and none runs from
// that master, and cancels one from a master the core left.
func (m *Machine) Observe(role api.Role, master uint64) []Effect {
	if role != api.RoleSyncing {
		return nil
	}
	var fx []Effect
	if m.job != 0 && m.master != master {
		fx = append(fx, m.cancel())
	}
	if m.job != 0 || master == 0 {
		return fx
	}
	m.seq++
	m.job, m.master = m.seq, master
	return append(fx, Effect{Kind: Start, Job: m.job, Master: master})
}

// Abandon cancels the download in flight, if any: a recovery of the
// self-monitor replaces it (its alignment, or its quarantine).
func (m *Machine) Abandon() []Effect {
	if m.job == 0 {
		return nil
	}
	return []Effect{m.cancel()}
}

func (m *Machine) cancel() Effect {
	e := Effect{Kind: Cancel, Job: m.job, Master: m.master}
	m.job, m.master = 0, 0
	return e
}

// Done answers Start: err is the download's outcome, role and master the
// core's now. The answer of a download no longer in flight (cancelled)
// changes nothing. A failure while the core still syncs with the
// download's master ends the syncing state (EndSync).
func (m *Machine) Done(job uint64, err error, role api.Role, master uint64) []Effect {
	if job == 0 || job != m.job {
		return nil
	}
	from := m.master
	m.job, m.master = 0, 0
	if err != nil && role == api.RoleSyncing && master == from {
		return []Effect{{Kind: EndSync, Job: job, Master: from}}
	}
	return nil
}
