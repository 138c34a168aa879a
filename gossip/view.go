package gossip

import (
	"math/rand"
	"sort"
	"strconv"
	"time"
)

// Health is a member's state as this agent sees it.
type Health uint8

// Healths. memberlist's StateAlive is HealthAlive; StateSuspect cannot be
// read from memberlist and is derived (doc.go, "Suspect"); StateDead is
// HealthDead; StateLeft members are dropped from the view.
const (
	HealthAlive Health = iota
	HealthSuspect
	HealthDead
)

var healthNames = [...]string{"alive", "suspect", "dead"}

// String returns "alive", "suspect" or "dead".
func (h Health) String() string {
	if int(h) < len(healthNames) {
		return healthNames[h]
	}
	return "health(" + strconv.Itoa(int(h)) + ")"
}

// MarshalText renders the health as its name in JSON.
func (h Health) MarshalText() ([]byte, error) { return []byte(h.String()), nil }

// Member is one agent of the cluster as this agent sees it.
type Member struct {
	// Name is the memberlist node name, NodeName(Meta.Group, Meta.ID).
	Name string `json:"name"`
	// Addr is the member's gossip address (host:port).
	Addr string `json:"addr"`
	Meta Meta   `json:"meta"`
	// Health is alive, suspect or dead.
	Health Health `json:"health"`
	// Since is when Health last changed, on this agent's clock.
	Since time.Time `json:"since"`
	// Self marks this agent's own entry.
	Self bool `json:"self,omitempty"`
}

// memberState is the view's record of one member.
type memberState struct {
	Member
	lastAck time.Time // last successful probe ack, or the join
	leaving bool      // its metadata or a leave intent said it is leaving
	boot    uint64    // its run, from its metadata
}

// view is the membership view: every member memberlist reported, with the
// health derived from memberlist's events and our probe acks. It does no I/O
// and reads no clock: the caller passes now. Gossip guards it with its
// mutex.
type view struct {
	self    string
	members map[string]*memberState
	// peak is the most members known alive at once, less those that left
	// or were forgotten since: "fewer members than it once did" is alive <
	// peak.
	peak int
}

func newView(self string) *view {
	return &view{self: self, members: make(map[string]*memberState)}
}

// alive counts alive and suspect members, this agent included.
func (v *view) alive() int {
	n := 0
	for _, m := range v.members {
		if m.Health != HealthDead {
			n++
		}
	}
	return n
}

func (v *view) raisePeak() {
	if a := v.alive(); a > v.peak {
		v.peak = a
	}
}

func (v *view) lowerPeak() {
	if v.peak > 1 {
		v.peak--
	}
	if a := v.alive(); v.peak < a {
		v.peak = a
	}
}

// join records a member memberlist reports alive (new, or back from dead).
func (v *view) join(name, addr string, meta Meta, leaving bool, boot uint64, now time.Time) []MemberEvent {
	m := &memberState{
		Member:  Member{Name: name, Addr: addr, Meta: meta, Health: HealthAlive, Since: now, Self: name == v.self},
		lastAck: now,
		leaving: leaving,
		boot:    boot,
	}
	v.members[name] = m
	v.raisePeak()
	return []MemberEvent{{Kind: EventJoin, Member: m.Member}}
}

// update records new metadata of a member. A member unknown to the view
// (its join was refused or missed) is treated as a join.
func (v *view) update(name, addr string, meta Meta, leaving bool, boot uint64, now time.Time) []MemberEvent {
	m, ok := v.members[name]
	if !ok || m.Health == HealthDead {
		return v.join(name, addr, meta, leaving, boot, now)
	}
	if m.boot == boot {
		leaving = leaving || m.leaving // a leave intent may have come first
	}
	m.Addr, m.Meta, m.leaving, m.boot = addr, meta, leaving, boot
	return []MemberEvent{{Kind: EventUpdate, Member: m.Member}}
}

// leave records memberlist's NotifyLeave: left when the member announced it
// was leaving, dead otherwise. A left member is forgotten at once.
func (v *view) leave(name string, now time.Time) []MemberEvent {
	m, ok := v.members[name]
	if !ok || m.Self {
		return nil
	}
	if m.leaving {
		delete(v.members, name)
		v.lowerPeak()
		mm := m.Member
		mm.Health, mm.Since = HealthDead, now
		return []MemberEvent{{Kind: EventLeave, Member: mm}}
	}
	if m.Health == HealthDead {
		return nil
	}
	m.Health, m.Since = HealthDead, now
	return []MemberEvent{{Kind: EventDead, Member: m.Member}}
}

// intent records a member's leave intent (Gossip.Leave broadcasts one
// before memberlist's own leave, which may overtake it): a dead member of
// the same run is forgotten as left, a live one is marked leaving.
func (v *view) intent(name string, boot uint64, now time.Time) []MemberEvent {
	m, ok := v.members[name]
	if !ok || m.Self || m.boot != boot {
		return nil
	}
	if m.Health != HealthDead {
		m.leaving = true
		return nil
	}
	delete(v.members, name)
	v.lowerPeak()
	mm := m.Member
	mm.Since = now
	return []MemberEvent{{Kind: EventLeave, Member: mm}}
}

// ack records a successful probe of a member; a suspect member is alive
// again.
func (v *view) ack(name string, now time.Time) []MemberEvent {
	m, ok := v.members[name]
	if !ok || m.Health == HealthDead {
		return nil
	}
	m.lastAck = now
	if m.Health == HealthSuspect {
		m.Health, m.Since = HealthAlive, now
		return []MemberEvent{{Kind: EventAlive, Member: m.Member}}
	}
	return nil
}

// gone reports whether name is a member known dead or left (not in the view
// at all is not gone: its join may simply not have arrived yet).
func (v *view) gone(name string) bool {
	m, ok := v.members[name]
	return ok && m.Health == HealthDead
}

// tick marks suspect the alive members not acked within suspectAfter, and
// forgets the dead ones older than reconnectTimeout. It returns the events
// and the names forgotten.
func (v *view) tick(now time.Time, suspectAfter, reconnectTimeout time.Duration) ([]MemberEvent, []string) {
	var evs []MemberEvent
	var reaped []string
	for _, name := range v.sortedNames() {
		m := v.members[name]
		switch {
		case m.Self:
		case m.Health == HealthAlive && suspectAfter > 0 && now.Sub(m.lastAck) > suspectAfter:
			m.Health, m.Since = HealthSuspect, now
			evs = append(evs, MemberEvent{Kind: EventSuspect, Member: m.Member})
		case m.Health == HealthDead && now.Sub(m.Since) > reconnectTimeout:
			delete(v.members, name)
			reaped = append(reaped, name)
			v.lowerPeak()
		}
	}
	return evs, reaped
}

func (v *view) sortedNames() []string {
	names := make([]string, 0, len(v.members))
	for n := range v.members {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// list returns the members sorted by ID, then group.
func (v *view) list() []Member {
	out := make([]Member, 0, len(v.members))
	for _, m := range v.members {
		out = append(out, m.Member)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Meta.ID != out[j].Meta.ID {
			return out[i].Meta.ID < out[j].Meta.ID
		}
		return out[i].Meta.Group < out[j].Meta.Group
	})
	return out
}

// reconnectView is what the reconnect decision needs to know.
type reconnectView struct {
	Self   string   // this agent's gossip address, never a target
	Alive  int      // members alive or suspect, this agent included
	Peak   int      // most members known alive at once (see view.peak)
	Failed []string // gossip addresses of dead members, sorted
	Join   []string // configured join addresses
}

func (v *view) reconnectView(self string, join []string) reconnectView {
	rv := reconnectView{Self: self, Alive: v.alive(), Peak: v.peak, Join: join}
	for _, name := range v.sortedNames() {
		if m := v.members[name]; m.Health == HealthDead {
			rv.Failed = append(rv.Failed, m.Addr)
		}
	}
	return rv
}

// reconnectTargets decides whom the reconnect loop joins this round, as
// serf's reconnect does: one dead member picked at random; plus the join
// addresses when this agent knows fewer members than it once did, or is
// alone (its first join failed). Never itself; no duplicates. It is pure
// given r.
func reconnectTargets(v reconnectView, r *rand.Rand) []string {
	var out []string
	seen := map[string]bool{v.Self: true}
	add := func(a string) {
		if a != "" && !seen[a] {
			seen[a] = true
			out = append(out, a)
		}
	}
	if len(v.Failed) > 0 {
		add(v.Failed[r.Intn(len(v.Failed))])
	}
	if v.Alive < v.Peak || v.Alive <= 1 {
		for _, j := range v.Join {
			add(j)
		}
	}
	return out
}

// suspectAfter derives the probe-ack age that makes a member suspect when
// Config.SuspectAfter is 0. memberlist probes one member per probe interval
// in a list it shuffles every round, so two probes of one member are at most
// 2*others-1 intervals apart; one more interval and the probe timeout make a
// bound a healthy member never reaches.
func suspectAfter(probeInterval, probeTimeout time.Duration, others int) time.Duration {
	if others < 1 {
		others = 1
	}
	return time.Duration(2*others)*probeInterval + probeTimeout
}
