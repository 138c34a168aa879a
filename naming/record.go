package naming

import (
	"fmt"
	"sort"
	"time"

	"github.com/mastership/mastership/naming/api"
)

// groupRecord is the durable form of a group. Expiry times are not kept:
// after a restart every session and registration is re-armed with the grace
// period, so that members renew instead of all expiring at once.
type groupRecord struct {
	Name     string         `codec:"n"`
	Policy   api.Policy     `codec:"p"`
	Mode     api.Mode       `codec:"m"`
	Members  []memberRecord `codec:"s"`
	Master   *masterRecord  `codec:"r"`
	MaxEpoch api.Epoch      `codec:"e"`
	Seq      uint64         `codec:"q"`
	Paused   bool           `codec:"pz,omitempty"`
}

// masterRecord is a registration with its session, in the keys an
// api.Registration had when it carried the session itself.
type masterRecord struct {
	api.Registration
	Session uint64 `codec:"s"`
}

type memberRecord struct {
	api.Member
	Session uint64        `codec:"x"`
	TTL     time.Duration `codec:"t"`
	// Proof is the hash of the proof the session's join carried ("" for
	// none, and in records written before joins carried one).
	Proof string `codec:"pf,omitempty"`
}

// Record returns the durable record of a group, or nil if it is unknown.
func (r *Registry) Record(name string) ([]byte, error) {
	g := r.groups[name]
	if g == nil {
		return nil, nil
	}
	rec := groupRecord{Name: g.Name, Policy: g.Policy, Mode: g.Mode, MaxEpoch: g.MaxEpoch, Seq: g.Seq, Paused: g.Paused}
	for _, m := range g.Members {
		rec.Members = append(rec.Members, memberRecord{Member: m.Member, Session: m.Session, TTL: m.TTL, Proof: m.Proof})
	}
	sort.Slice(rec.Members, func(i, j int) bool { return rec.Members[i].ID < rec.Members[j].ID })
	if g.Master != nil {
		rec.Master = &masterRecord{Registration: g.Master.Registration, Session: g.Master.Session}
	}
	return api.Encode(&rec)
}

// Restore loads a group's durable record. Sessions and the registration are
// re-armed to expire no sooner than now + grace.
func (r *Registry) Restore(now time.Time, grace time.Duration, b []byte) error {
	var rec groupRecord
	if err := api.Decode(b, &rec); err != nil {
		return fmt.Errorf("naming: restore group: %w", err)
	}
	if err := api.ValidateGroup(rec.Name); err != nil {
		return fmt.Errorf("naming: restore group: %w", err)
	}
	g := &group{Name: rec.Name, Policy: rec.Policy, Mode: rec.Mode, MaxEpoch: rec.MaxEpoch, Seq: rec.Seq, Paused: rec.Paused,
		Members: make(map[uint64]*member, len(rec.Members))}
	for _, m := range rec.Members {
		g.Members[m.ID] = &member{Member: m.Member, Session: m.Session, TTL: m.TTL, Proof: m.Proof, Expires: now.Add(max(grace, m.TTL))}
	}
	if rec.Master != nil {
		g.Master = &registration{Registration: rec.Master.Registration, Session: rec.Master.Session,
			Expires: now.Add(max(grace, rec.Master.TTL))}
	}
	r.groups[g.Name] = g
	return nil
}
