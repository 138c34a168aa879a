package catchup

import (
	"errors"
	"testing"

	"github.com/mastership/mastership/naming/api"
)

var errFailed = errors.New("download failed")

// Each case drives a fresh machine through steps and checks the effects of
// each one.
func TestMachine(t *testing.T) {
	type step struct {
		do     string // observe, abandon, done
		role   api.Role
		master uint64
		job    uint64 // done: the job answered
		err    error  // done: its outcome
		want   string
	}
	syncing, backup, recovering := api.RoleSyncing, api.RoleBackup, api.RoleRecovering
	for _, tc := range []struct {
		name  string
		steps []step
	}{
		{"a syncing core starts one download", []step{
			{do: "observe", role: syncing, master: 5, want: "start job=1 master=5"},
			{do: "observe", role: syncing, master: 5, want: ""},
			{do: "observe", role: syncing, master: 5, want: ""},
		}},
		{"no download for a role that is not syncing", []step{
			{do: "observe", role: backup, master: 5, want: ""},
			{do: "observe", role: recovering, master: 5, want: ""},
			{do: "observe", role: api.RoleMaster, master: 1, want: ""},
		}},
		{"no download from nobody", []step{
			{do: "observe", role: syncing, master: 0, want: ""},
		}},
		{"a download from a master the core left is replaced", []step{
			{do: "observe", role: syncing, master: 5, want: "start job=1 master=5"},
			{do: "observe", role: syncing, master: 6, want: "cancel job=1 master=5; start job=2 master=6"},
			{do: "done", job: 1, err: errFailed, role: syncing, master: 6, want: ""},
			{do: "done", job: 2, role: backup, master: 6, want: ""},
		}},
		{"syncing with nobody cancels and starts nothing", []step{
			{do: "observe", role: syncing, master: 5, want: "start job=1 master=5"},
			{do: "observe", role: syncing, master: 0, want: "cancel job=1 master=5"},
		}},
		{"a role change alone cancels nothing", []step{
			// The install checks the role and master itself.
			{do: "observe", role: syncing, master: 5, want: "start job=1 master=5"},
			{do: "observe", role: backup, master: 6, want: ""},
			{do: "done", job: 1, err: errFailed, role: backup, master: 6, want: ""},
			{do: "observe", role: syncing, master: 6, want: "start job=2 master=6"},
		}},
		{"a failure while still syncing with the master ends the syncing", []step{
			{do: "observe", role: syncing, master: 5, want: "start job=1 master=5"},
			{do: "done", job: 1, err: errFailed, role: syncing, master: 5, want: "end-sync job=1 master=5"},
			{do: "observe", role: backup, master: 5, want: ""},
			{do: "observe", role: syncing, master: 5, want: "start job=2 master=5"},
		}},
		{"a success ends the job and nothing else", []step{
			{do: "observe", role: syncing, master: 5, want: "start job=1 master=5"},
			{do: "done", job: 1, role: backup, master: 5, want: ""},
			{do: "done", job: 1, err: errFailed, role: syncing, master: 5, want: ""},
		}},
		{"a failure after the core moved on changes nothing", []step{
			{do: "observe", role: syncing, master: 5, want: "start job=1 master=5"},
			{do: "done", job: 1, err: errFailed, role: syncing, master: 6, want: ""},
			{do: "observe", role: syncing, master: 6, want: "start job=2 master=6"},
		}},
		{"a failure while recovering changes nothing", []step{
			{do: "observe", role: syncing, master: 5, want: "start job=1 master=5"},
			{do: "done", job: 1, err: errFailed, role: recovering, master: 5, want: ""},
		}},
		{"a recovery abandons the download and its answer is ignored", []step{
			{do: "abandon", want: ""},
			{do: "observe", role: syncing, master: 5, want: "start job=1 master=5"},
			{do: "abandon", want: "cancel job=1 master=5"},
			{do: "abandon", want: ""},
			{do: "done", job: 1, err: errFailed, role: syncing, master: 5, want: ""},
			{do: "observe", role: syncing, master: 5, want: "start job=2 master=5"},
		}},
		{"an answer of no job or an unknown one is ignored", []step{
			{do: "done", job: 0, err: errFailed, role: syncing, master: 5, want: ""},
			{do: "observe", role: syncing, master: 5, want: "start job=1 master=5"},
			{do: "done", job: 7, err: errFailed, role: syncing, master: 5, want: ""},
			{do: "done", job: 1, err: errFailed, role: syncing, master: 5, want: "end-sync job=1 master=5"},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var m Machine
			for i, s := range tc.steps {
				var fx []Effect
				switch s.do {
				case "observe":
					fx = m.Observe(s.role, s.master)
				case "abandon":
					fx = m.Abandon()
				case "done":
					fx = m.Done(s.job, s.err, s.role, s.master)
				}
				if got := Describe(fx); got != s.want {
					t.Fatalf("step %d (%s %s %d): effects %q, want %q", i, s.do, s.role, s.master, got, s.want)
				}
			}
		})
	}
}

// Running names the download in flight.
func TestRunning(t *testing.T) {
	var m Machine
	if j, ms := m.Running(); j != 0 || ms != 0 {
		t.Fatalf("idle machine runs %d from %d", j, ms)
	}
	m.Observe(api.RoleSyncing, 4)
	if j, ms := m.Running(); j != 1 || ms != 4 {
		t.Fatalf("running %d from %d, want 1 from 4", j, ms)
	}
	m.Abandon()
	if j, _ := m.Running(); j != 0 {
		t.Fatalf("abandoned machine still runs %d", j)
	}
}
