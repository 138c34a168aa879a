package core

// Recovery: the self-monitor's commands (figure 10) and the state
// install of a download.

import (
	"errors"
	"fmt"

	"github.com/mastership/mastership/agent/rlog"
	"github.com/mastership/mastership/naming/api"
)

// BeginRecovery stops acting as master and follows the retained master
// (figure 10, act 1010: alignment). The agent serves nothing until
// InstallState or EndRecovery.
func (n *Node) BeginRecovery(master uint64) {
	n.failProposals(ErrNotMaster)
	n.master = master
	n.hsChanged = true
	n.setRole(api.RoleRecovering)
}

// Quarantine stops serving after a failed recovery.
func (n *Node) Quarantine() {
	n.failProposals(ErrNotMaster)
	n.setRole(api.RoleQuarantined)
}

// ErrSuperseded is InstallState's answer to a state downloaded for a wait
// that is over: the agent no longer recovers or syncs towards that master
// (it follows another one now, or serves again). Nothing was installed.
var ErrSuperseded = errors.New("agent: download superseded")

// InstallState replaces the state machine and log with a master's state:
// snapshot at base, then the entries after it (figure 10, acts 1020-1030).
// The caller has verified the digest. The agent must still recover or sync
// towards master (ErrSuperseded otherwise: the download finished after the
// agent stopped waiting for it); it becomes a back-up of master at epoch,
// which must not be older than ours.
func (n *Node) InstallState(snapshot []byte, base rlog.Pos, entries []rlog.Entry, master uint64, epoch api.Epoch, commit uint64) error {
	if (n.role != api.RoleRecovering && n.role != api.RoleSyncing) || n.master != master {
		return fmt.Errorf("%w: the agent is now %s following %d", ErrSuperseded, n.role, n.master)
	}
	if epoch.Less(n.epoch) {
		return fmt.Errorf("install state of epoch %s: older than ours %s", epoch, n.epoch)
	}
	if err := api.CheckTerm(epoch.Term, n.maxTerm); err != nil {
		return fmt.Errorf("install state of epoch %s: %w", epoch, err)
	}
	if epoch.ID != master {
		return fmt.Errorf("install state of epoch %s: not the epoch of master %d", epoch, master)
	}
	for _, e := range entries {
		if epoch.Less(e.Epoch) {
			return fmt.Errorf("install state of epoch %s: entry %d at the newer epoch %s", epoch, e.Index, e.Epoch)
		}
	}
	l := rlog.NewAt(base)
	if err := l.Append(entries...); err != nil {
		return fmt.Errorf("install log: %w", err)
	}
	if err := n.sm.Restore(snapshot); err != nil {
		return fmt.Errorf("restore snapshot: %w", err)
	}
	// Proposals name entries of the log being replaced: they fail before
	// anything of the new one applies (answerApplied would otherwise meet
	// them against another master's entries).
	n.failProposals(ErrNotMaster)
	n.log = l
	// The runtime stores the installed log itself; what this Ready held
	// of the old one (a step earlier in the same batch) would not extend it.
	n.rd.Entries, n.rd.Truncated = nil, nil
	n.applied = n.sm.Digest().Index
	n.commit = n.applied
	n.snapIndex, n.sinceBytes = base.Index, 0 // the runtime stores this snapshot
	if c := min(commit, l.LastIndex()); c > n.commit {
		n.commit = c
		n.apply()
	}
	n.becomeBackup(master, epoch)
	return nil
}

// EndRecovery makes a recovering agent whose state already matches the
// master's a back-up of it.
func (n *Node) EndRecovery(master uint64, epoch api.Epoch) {
	if epoch.Less(n.epoch) {
		epoch = n.epoch
	}
	n.becomeBackup(master, epoch)
}
