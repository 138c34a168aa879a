package recover

import (
	"errors"
	"testing"

	"github.com/mastership/mastership/agent/core"
	"github.com/mastership/mastership/naming/api"
)

// Every branch of figure 8, and the cases we add to it.
func TestDetect(t *testing.T) {
	reg := func(id, term uint64) *api.Registration {
		return &api.Registration{ID: id, Epoch: api.Epoch{Term: term, ID: id}, Addr: "127.0.0.1:1"}
	}
	e := func(term, id uint64) api.Epoch { return api.Epoch{Term: term, ID: id} }
	tests := []struct {
		name string
		in   Input
		want Decision
	}{
		{"master retained (act 860 yes)", Input{Self: 1, Role: api.RoleMaster, Master: 1, Epoch: e(3, 1), MaxTerm: 3, Retained: reg(1, 3), RetainedAlive: true}, Consistent},
		{"master not retained (act 860 no)", Input{Self: 4, Role: api.RoleMaster, Master: 4, Epoch: e(2, 4), MaxTerm: 2, Retained: reg(1, 1), RetainedAlive: true}, Recover},
		{"master not retained, retained unreachable: recovery fails, quarantine", Input{Self: 4, Role: api.RoleMaster, Master: 4, Epoch: e(2, 4), Retained: reg(1, 1)}, Recover},
		{"master registering", Input{Self: 2, Role: api.RoleMaster, Master: 2, Epoch: e(2, 2), Retained: reg(1, 1), Registering: true}, Wait},
		{"backup of retained (act 850 yes)", Input{Self: 2, Role: api.RoleBackup, Master: 1, Epoch: e(3, 1), Retained: reg(1, 3), RetainedAlive: true}, Consistent},
		{"backup of another master (act 850 no)", Input{Self: 5, Role: api.RoleBackup, Master: 4, Epoch: e(2, 4), Retained: reg(1, 3), RetainedAlive: true}, Recover},
		{"backup of no master", Input{Self: 5, Role: api.RoleBackup, Retained: reg(1, 3), RetainedAlive: true}, Recover},
		{"strict backup of a newer master than registered", Input{Self: 3, Role: api.RoleBackup, Master: 2, Epoch: e(4, 2), Retained: reg(1, 3), RetainedAlive: true, Strict: true}, Wait},
		{"available backup of a newer master than registered", Input{Self: 5, Role: api.RoleBackup, Master: 4, Epoch: e(4, 4), Retained: reg(1, 3), RetainedAlive: true}, Recover},
		{"backup, retained unreachable: recovery fails, quarantine", Input{Self: 5, Role: api.RoleBackup, Master: 4, Epoch: e(2, 4), Retained: reg(1, 3)}, Recover},
		{"quarantined, no registration: released", Input{Self: 4, Role: api.RoleQuarantined}, Release},
		{"retained master saw a newer term", Input{Self: 1, Role: api.RoleMaster, Master: 1, Epoch: e(1, 1), MaxTerm: 2, Retained: reg(1, 1), RetainedAlive: true}, Reassert},
		{"retained master saw a newer epoch of the same term", Input{Self: 3, Role: api.RoleMaster, Master: 3, Epoch: e(7, 3), MaxTerm: 7, MaxEpoch: e(7, 5), Retained: reg(3, 7), RetainedAlive: true}, Reassert},
		{"strict retained master saw a newer term: no term without votes", Input{Self: 1, Role: api.RoleMaster, Master: 1, Epoch: e(1, 1), MaxTerm: 2, Retained: reg(1, 1), RetainedAlive: true, Strict: true}, Consistent},
		{"strict retained master saw a newer epoch", Input{Self: 3, Role: api.RoleMaster, Master: 3, Epoch: e(7, 3), MaxTerm: 8, MaxEpoch: e(8, 5), Retained: reg(3, 7), RetainedAlive: true, Strict: true}, Consistent},
		{"strict master registered at a newer epoch of its own: re-election", Input{Self: 3, Role: api.RoleMaster, Master: 3, Epoch: e(7, 3), MaxTerm: 7, Retained: reg(3, 9), RetainedAlive: true, Strict: true}, Reassert},
		{"naming unreachable", Input{Self: 1, Role: api.RoleMaster, NamingErr: errors.New("down")}, Wait},
		{"no registration, master", Input{Self: 1, Role: api.RoleMaster, Master: 1}, Consistent},
		{"no registration, backup", Input{Self: 2, Role: api.RoleBackup, Master: 1}, Wait},
		{"candidate", Input{Self: 2, Role: api.RoleCandidate, Retained: reg(1, 1), RetainedAlive: true}, Wait},
		{"recovery in flight towards the retained master", Input{Self: 2, Role: api.RoleRecovering, Master: 1, Recovering: 1, Retained: reg(1, 1), RetainedAlive: true}, Wait},
		{"recovery in flight, no master registered now", Input{Self: 2, Role: api.RoleRecovering, Master: 1, Recovering: 1}, Wait},
		{"recovery in flight towards a master no longer retained: realign", Input{Self: 2, Role: api.RoleRecovering, Master: 3, Recovering: 3, Retained: reg(1, 2), RetainedAlive: true}, Recover},
		{"recovery in flight, the naming node names us", Input{Self: 2, Role: api.RoleRecovering, Master: 3, Recovering: 3, Retained: reg(2, 2), RetainedAlive: true}, Wait},
		{"recovering with no recovery running", Input{Self: 2, Role: api.RoleRecovering, Master: 1, Retained: reg(1, 1), RetainedAlive: true}, Recover},
		{"recovering with no recovery running, retained unreachable", Input{Self: 2, Role: api.RoleRecovering, Master: 1, Retained: reg(1, 1)}, Wait},
		{"syncing with the retained master", Input{Self: 2, Role: api.RoleSyncing, Master: 1, Retained: reg(1, 1), RetainedAlive: true}, Wait},
		{"syncing with a master not retained", Input{Self: 2, Role: api.RoleSyncing, Master: 3, Epoch: e(1, 3), Retained: reg(1, 2), RetainedAlive: true}, Recover},
		{"strict, syncing with a newer master than registered", Input{Self: 2, Role: api.RoleSyncing, Master: 3, Epoch: e(3, 3), Retained: reg(1, 2), RetainedAlive: true, Strict: true}, Wait},
		{"quarantined retries", Input{Self: 4, Role: api.RoleQuarantined, Retained: reg(1, 3), RetainedAlive: true}, Recover},
		{"quarantined, retained unreachable: no flapping", Input{Self: 4, Role: api.RoleQuarantined, Retained: reg(1, 3)}, Wait},
		{"quarantined and registered", Input{Self: 4, Role: api.RoleQuarantined, Retained: reg(4, 3), RetainedAlive: true}, Wait},
		{"backup named by the naming node", Input{Self: 4, Role: api.RoleBackup, Master: 1, Retained: reg(4, 3), RetainedAlive: true}, Wait},
	}
	for _, tt := range tests {
		if got := Detect(tt.in); got.Decision != tt.want || got.Reason == "" {
			t.Errorf("%s: %s (%q), want %s", tt.name, got.Decision, got.Reason, tt.want)
		}
	}
}

// The detector's input, as the monitor and the simulator build it: the
// naming node's answer with what gossip says of the retained master.
func TestInputRetain(t *testing.T) {
	st := core.Status{Role: api.RoleBackup, Master: 2, Epoch: api.Epoch{Term: 3, ID: 2}, MaxTerm: 4, MaxEpoch: api.Epoch{Term: 4, ID: 1}}
	alive := func(id uint64) bool { return id == 2 }
	apiOf := func(id uint64) string {
		if id == 2 {
			return "127.0.0.2:1"
		}
		return ""
	}
	in := NewInput(3, st, true, false)
	if in.Self != 3 || in.Role != st.Role || in.Master != 2 || in.Epoch != st.Epoch || in.MaxTerm != 4 || in.MaxEpoch != st.MaxEpoch || !in.Strict {
		t.Fatalf("input %+v from %+v", in, st)
	}
	r := &api.Registration{ID: 2, Epoch: st.Epoch}
	in.Retain(r, nil, alive, apiOf)
	if in.Retained != r || !in.RetainedAlive || in.RetainedAPI != "127.0.0.2:1" || in.NamingErr != nil {
		t.Fatalf("retained 2: %+v", in)
	}
	in = NewInput(3, st, true, false)
	in.Retain(&api.Registration{ID: 1}, nil, alive, apiOf)
	if in.RetainedAlive || in.RetainedAPI != "" {
		t.Fatalf("retained 1, dead and unknown to gossip: %+v", in)
	}
	in = NewInput(3, st, true, false)
	in.Retain(&api.Registration{ID: 3}, nil, alive, apiOf)
	if !in.RetainedAlive {
		t.Fatal("retained self counts as alive")
	}
	in = NewInput(3, st, true, false)
	in.Retain(nil, api.Errorf(api.CodeNotFound, "no group"), alive, apiOf)
	if in.NamingErr != nil || in.Retained != nil {
		t.Fatalf("a group the node does not know yet: %+v", in)
	}
	in = NewInput(3, st, true, false)
	in.Retain(nil, errors.New("unreachable"), alive, apiOf)
	if in.NamingErr == nil {
		t.Fatal("a lookup that failed is no answer")
	}
}
