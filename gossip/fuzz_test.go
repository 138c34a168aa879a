package gossip

import (
	"testing"

	"github.com/hashicorp/memberlist"

	"github.com/mastership/mastership/naming/api"
)

// FuzzGossipInput feeds arbitrary bytes to every way gossip input reaches
// an agent: broadcast messages, push/pull state, and a member's metadata
// (join, update, the alive check). No input may panic, and no claim whose
// epoch the agent refuses may be kept.
func FuzzGossipInput(f *testing.F) {
	claim, _ := encodeClaimMsg(Claim{Group: "g", ID: 2, Epoch: api.Epoch{Term: ^uint64(0), ID: 2}})
	f.Add(claim)
	st, _ := api.Encode(pushPullState{Version: 1, Claims: []Claim{{Group: "g", ID: 3, Epoch: api.Epoch{Term: 1 << 40, ID: 3}}}})
	f.Add(st)
	meta, _ := encodeMeta(Meta{Group: "g", ID: 2, Role: api.RoleMaster, Epoch: api.Epoch{Term: ^uint64(0), ID: 2}}, false, 1)
	f.Add(meta)
	f.Add([]byte{msgLeave, 0x80})
	f.Add([]byte{0xff})
	nd, err := startNode(f, "g", 1, 81, nil, func(c *Config) {
		c.CheckEpoch = func(e api.Epoch) error { return api.CheckTerm(e.Term, 100) }
	})
	if err != nil {
		f.Fatal(err)
	}
	d := &delegate{g: nd.g}
	f.Fuzz(func(t *testing.T, b []byte) {
		d.NotifyMsg(b)
		d.MergeRemoteState(b, false)
		d.MergeRemoteState(b, true)
		node := &memberlist.Node{Name: "g/2", Meta: b}
		if d.NotifyAlive(node) == nil {
			d.NotifyJoin(node)
			d.NotifyUpdate(node)
		}
		for _, c := range nd.g.Claims("") {
			if api.CheckTerm(c.Epoch.Term, 100) != nil || c.Epoch.ID != c.ID {
				t.Fatalf("kept claim %v", c)
			}
		}
	})
}
