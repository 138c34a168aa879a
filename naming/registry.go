package naming

import (
	"crypto/subtle"
	"fmt"
	"math"
	"math/rand"
	"slices"
	"sort"
	"time"

	"github.com/mastership/mastership/naming/api"
)

// RegistryConfig holds the decision parameters of a Registry.
type RegistryConfig struct {
	// DefaultPolicy is the policy of a group created without one.
	DefaultPolicy api.Policy
	// SessionTTL and RegistrationTTL are granted when a request asks for 0.
	SessionTTL      time.Duration
	RegistrationTTL time.Duration
	// MaxTTL caps any TTL a request asks for; more is refused.
	MaxTTL time.Duration
	// ConflictWindow is how long competing registrations of one group are
	// gathered before one decision covers them all; 0 decides at once.
	ConflictWindow time.Duration
	// MaxGroups caps the groups kept; 0 means no cap.
	MaxGroups int
}

// Registry is the naming node's pure core: members, sessions, master
// registrations, multiple-registration detection, retention and removal
// (patent figures 11 and 12). It holds no goroutines, clock, sockets or
// disk: every call takes "now" and appends what must be persisted, recorded,
// triggered and timed to an *Effects that the runtime (Node) carries out.
// A Registry is not safe for concurrent use; the Node serialises calls.
type Registry struct {
	cfg    RegistryConfig
	rand   *rand.Rand
	groups map[string]*group
}

type member struct {
	api.Member
	Session uint64
	TTL     time.Duration
	Expires time.Time
	// Proof is api.JoinProofOf the proof of the join that opened the
	// session: a join retried with the same proof (its answer was lost)
	// gets the same session back.
	Proof string
}

// registration is a master's entry. Session ties it to the member session
// of its holder (the registration ends when that session does); it is a
// secret and never leaves the node.
type registration struct {
	api.Registration
	Session uint64
	Expires time.Time
}

type group struct {
	Name     string
	Policy   api.Policy
	Mode     api.Mode
	Members  map[uint64]*member
	Master   *registration
	MaxEpoch api.Epoch
	// Seq is the sequence of the group's last event.
	Seq uint64
	// Pending holds the competing registrations gathered in an open
	// conflict window; no reader sees them as registered.
	Pending  map[uint64]*registration
	Deadline time.Time
	// Paused: in maintenance (Pause).
	Paused bool
}

// Effects is what one Registry call asks the runtime to do. Calls append;
// the runtime drains it.
type Effects struct {
	// Persist names the groups whose durable record changed.
	Persist []string
	// Events are the history entries recorded, already numbered.
	Events []GroupEvent
	// Triggers are notifications to deliver (act 1240).
	Triggers []Trigger
	// Decisions are multiple-registration decisions taken, for the runtime
	// to answer the registrations that waited on them.
	Decisions []Decision
	// Timers ask for Decide(group) to be called at a time.
	Timers []Timer
	// Delivered names trigger notices delivered (or given up): the
	// runtime removes them from the outbox. The registry sets none.
	Delivered []NoticeKey
}

// GroupEvent is an event of one group.
type GroupEvent struct {
	Group string
	Event api.Event
}

// Target is one recipient of a trigger. Session is 0 for a target that is
// not a member (a removed registrant known only by its address).
type Target struct {
	ID      uint64
	Addr    string
	Session uint64
}

// Trigger asks the runtime to deliver Notify to every target concurrently.
type Trigger struct {
	Notify  api.Notify
	Targets []Target
}

// Decision is the outcome of a multiple-registration decision.
type Decision struct {
	Group   string
	Master  api.Registration
	Removed []uint64
}

// Timer asks the runtime to call Decide(now, Group) at At.
type Timer struct {
	Group string
	At    time.Time
}

func (fx *Effects) persist(g string) {
	if !slices.Contains(fx.Persist, g) {
		fx.Persist = append(fx.Persist, g)
	}
}

// NewRegistry returns an empty registry. rnd draws session IDs.
func NewRegistry(cfg RegistryConfig, rnd *rand.Rand) *Registry {
	if cfg.DefaultPolicy == "" {
		cfg.DefaultPolicy = api.PolicyLowestID
	}
	return &Registry{cfg: cfg, rand: rnd, groups: make(map[string]*group)}
}

func (r *Registry) record(fx *Effects, g *group, now time.Time, ev api.Event) {
	g.Seq++
	ev.Seq = g.Seq
	ev.Time = now.UTC()
	fx.Events = append(fx.Events, GroupEvent{Group: g.Name, Event: ev})
	fx.persist(g.Name)
}

// RecordEvent numbers and records an event that happened outside a
// decision, such as the outcome of a trigger delivery.
func (r *Registry) RecordEvent(now time.Time, groupName string, ev api.Event, fx *Effects) {
	if g := r.groups[groupName]; g != nil {
		r.record(fx, g, now, ev)
	}
}

func (r *Registry) ttl(asked, def time.Duration) (time.Duration, error) {
	switch {
	case asked < 0:
		return 0, api.Errorf(api.CodeInvalid, "ttl %s is negative", asked)
	case asked == 0:
		return def, nil
	case asked > r.cfg.MaxTTL:
		return 0, api.Errorf(api.CodeInvalid, "ttl %s is over the node's limit of %s", asked, r.cfg.MaxTTL)
	case asked < time.Millisecond:
		return 0, api.Errorf(api.CodeInvalid, "ttl %s is under 1ms", asked)
	}
	return asked, nil
}

// groupFor returns the named group, creating it when create is set. A mode or
// policy that differs from an existing group's is refused.
func (r *Registry) groupFor(name, mode, policy string, create bool) (*group, bool, error) {
	m, err := api.ParseMode(mode)
	if err != nil {
		return nil, false, api.Errorf(api.CodeInvalid, "%v", err)
	}
	p := r.cfg.DefaultPolicy
	if policy != "" {
		if p, err = api.ParsePolicy(policy); err != nil {
			return nil, false, api.Errorf(api.CodeInvalid, "%v", err)
		}
	}
	g := r.groups[name]
	if g == nil {
		if !create {
			return nil, false, api.Errorf(api.CodeNotFound, "group %q is not known", name)
		}
		if r.cfg.MaxGroups > 0 && len(r.groups) >= r.cfg.MaxGroups {
			return nil, false, api.Errorf(api.CodeTooLarge, "group %q: the node holds its maximum of %d groups (-max-groups)", name, r.cfg.MaxGroups)
		}
		g = &group{Name: name, Policy: p, Mode: m, Members: make(map[uint64]*member)}
		return g, true, nil
	}
	if mode != "" && m != g.Mode {
		return nil, false, api.Errorf(api.CodeMismatch, "group %q is in mode %s; the request says %s", name, g.Mode, m)
	}
	if policy != "" && p != g.Policy {
		return nil, false, api.Errorf(api.CodeMismatch, "group %q has policy %s; the request says %s", name, g.Policy, p)
	}
	return g, false, nil
}

func validateMember(group string, id uint64, addr string) error {
	if err := api.ValidateGroup(group); err != nil {
		return api.Errorf(api.CodeInvalid, "%v", err)
	}
	if err := api.ValidateID(id); err != nil {
		return api.Errorf(api.CodeInvalid, "%v", err)
	}
	if err := api.ValidateAddr("addr", addr); err != nil {
		return api.Errorf(api.CodeInvalid, "%v", err)
	}
	return nil
}

// JoinReplaces returns the live session of the same ID at the same
// address that req would replace (0: none): the runtime then asks the
// agent at that address for req's join proof, and passes the session it
// proved the join against to Join. A join retried with the proof of the
// live session's own join replaces nothing (Join gives that session back).
func (r *Registry) JoinReplaces(now time.Time, req api.JoinRequest) uint64 {
	m := r.liveMember(now, req)
	if m == nil || m.sameJoin(req) {
		return 0
	}
	return m.Session
}

// liveMember is the live member of req's ID at req's address, or nil.
func (r *Registry) liveMember(now time.Time, req api.JoinRequest) *member {
	g := r.groups[req.Group]
	if g == nil {
		return nil
	}
	m := g.Members[req.ID]
	if m == nil || !now.Before(m.Expires) || m.Addr != req.Addr {
		return nil
	}
	return m
}

// sameJoin reports whether req is the join that opened m's session.
func (m *member) sameJoin(req api.JoinRequest) bool {
	p := api.JoinProofOf(req.Proof)
	return p != "" && subtle.ConstantTimeCompare([]byte(p), []byte(m.Proof)) == 1
}

// Join makes an agent a member of its group and opens a session. An ID held
// by a live session at another address is refused (a second agent with a
// taken ID); the same address rejoining replaces its session, once the
// agent serving that address showed the join's proof while that session
// was the live one (provenOver; 0: not proven). A proof checked over an
// older session (a slow join that a newer one overtook) proves nothing.
func (r *Registry) Join(now time.Time, req api.JoinRequest, provenOver uint64, fx *Effects) (api.JoinResponse, error) {
	if err := validateMember(req.Group, req.ID, req.Addr); err != nil {
		return api.JoinResponse{}, err
	}
	if len(req.Proof) > api.MaxJoinProof {
		return api.JoinResponse{}, api.Errorf(api.CodeInvalid, "join proof of %d bytes, at most %d", len(req.Proof), api.MaxJoinProof)
	}
	ttl, err := r.ttl(req.TTL, r.cfg.SessionTTL)
	if err != nil {
		return api.JoinResponse{}, err
	}
	g, created, err := r.groupFor(req.Group, req.Mode, req.Policy, true)
	if err != nil {
		return api.JoinResponse{}, err
	}
	if m := g.Members[req.ID]; m != nil && now.Before(m.Expires) && m.Addr != req.Addr {
		return api.JoinResponse{}, api.Errorf(api.CodeIDTaken,
			"id %d of group %q is held by %s with a live session", req.ID, req.Group, m.Addr)
	}
	if m := r.liveMember(now, req); m != nil && m.sameJoin(req) {
		// The same join again (its answer was lost, or the call was
		// retried through another naming node): the same session, renewed.
		m.Expires = now.Add(m.TTL)
		return api.JoinResponse{Session: m.Session, TTL: m.TTL, Master: r.liveMaster(g, now), Paused: g.Paused}, nil
	}
	if live := r.JoinReplaces(now, req); live != 0 && live != provenOver {
		return api.JoinResponse{}, api.Errorf(api.CodeRefused,
			"agent %d of group %q at %s has a live session; it is replaced only for the agent serving that address (join again once its API answers, or after the session's TTL)",
			req.ID, req.Group, req.Addr)
	}
	if created {
		r.groups[g.Name] = g
	}
	m := &member{
		Member:  api.Member{ID: req.ID, Addr: req.Addr, Priority: req.Priority},
		Session: r.newSession(),
		TTL:     ttl,
		Expires: now.Add(ttl),
		Proof:   api.JoinProofOf(req.Proof),
	}
	g.Members[req.ID] = m
	r.record(fx, g, now, api.Event{Kind: api.EventMemberJoined, ID: req.ID, Addr: req.Addr})
	return api.JoinResponse{Session: m.Session, TTL: ttl, Master: r.liveMaster(g, now), Paused: g.Paused}, nil
}

func (r *Registry) newSession() uint64 {
	for {
		if s := r.rand.Uint64(); s != 0 {
			return s
		}
	}
}

func (r *Registry) session(g *group, id, session uint64, now time.Time) (*member, error) {
	m := g.Members[id]
	if m == nil || m.Session != session || !now.Before(m.Expires) {
		return nil, api.Errorf(api.CodeSessionExpired, "agent %d of group %q has no live session %d; join again", id, g.Name, session)
	}
	return m, nil
}

// Renew extends a member session. It changes nothing durable: sessions are
// re-armed with a grace period when the node restarts.
func (r *Registry) Renew(now time.Time, req api.RenewRequest) (api.RenewResponse, error) {
	g, _, err := r.groupFor(req.Group, "", "", false)
	if err != nil {
		return api.RenewResponse{}, err
	}
	m, err := r.session(g, req.ID, req.Session, now)
	if err != nil {
		return api.RenewResponse{}, err
	}
	m.Expires = now.Add(m.TTL)
	return api.RenewResponse{TTL: m.TTL, Master: r.liveMaster(g, now), Paused: g.Paused}, nil
}

// Leave ends a member session and any registration it held.
func (r *Registry) Leave(now time.Time, req api.LeaveRequest, fx *Effects) error {
	g, _, err := r.groupFor(req.Group, "", "", false)
	if err != nil {
		return err
	}
	if _, err := r.session(g, req.ID, req.Session, now); err != nil {
		return err
	}
	r.dropMember(g, req.ID, api.EventMemberLeft, now, fx)
	return nil
}

func (r *Registry) dropMember(g *group, id uint64, kind string, now time.Time, fx *Effects) {
	m := g.Members[id]
	delete(g.Members, id)
	r.record(fx, g, now, api.Event{Kind: kind, ID: id, Addr: m.Addr})
	if g.Master != nil && g.Master.ID == id && g.Master.Session == m.Session {
		g.Master = nil
		r.record(fx, g, now, api.Event{Kind: api.EventMasterExpired, ID: id, Reason: "member session ended"})
	}
	if p := g.Pending[id]; p != nil && p.Session == m.Session {
		delete(g.Pending, id)
	}
}

func (r *Registry) liveMaster(g *group, now time.Time) *api.Registration {
	if g.Master == nil || !now.Before(g.Master.Expires) {
		return nil
	}
	reg := g.Master.Registration
	return &reg
}

// Supersedes reports whether req would at once make its agent the master
// of a strict group (a newer epoch than the group's, the group vacant or
// held by another ID): the runtime then probes the candidate first, as it
// probes the candidates of a decision.
// A registration Register refuses anyway (invalid, out of range, older
// than the group's epoch) needs no probe.
func (r *Registry) Supersedes(now time.Time, req api.RegisterRequest) bool {
	g, _, _, err := r.checkRegister(now, req)
	if err != nil || g.Mode != api.ModeStrict || req.Epoch.Term == 0 || api.CheckTerm(req.Epoch.Term, g.MaxEpoch.Term) != nil {
		return false
	}
	e := api.Epoch{Term: req.Epoch.Term, ID: req.ID}
	live := r.liveMaster(g, now)
	// Whenever req would make its agent the strict master, not only when
	// it replaces a live one: a vacant group (new, its master left or
	// lapsed) would otherwise be taken at a made-up epoch.
	return (live == nil || live.ID != req.ID) && !e.Less(g.MaxEpoch)
}

// Register registers or renews a master (figure 12 starts here). It returns
// pending=true when the registration competes with a live one of another ID
// in an available group: the decision comes from Decide when the conflict
// window closes, and the runtime answers the registrant then.
func (r *Registry) Register(now time.Time, req api.RegisterRequest, fx *Effects) (resp api.RegisterResponse, pending bool, err error) {
	g, m, ttl, err := r.checkRegister(now, req)
	if err != nil {
		return resp, false, err
	}
	r.expireMaster(g, now, fx)

	prio := req.Priority
	if m := g.Members[req.ID]; m != nil && prio == 0 {
		prio = m.Priority
	}
	epoch := req.Epoch
	var rangeErr error
	if epoch.Term == 0 {
		// By hand: keep the holder's epoch, or take the group's next term.
		if g.Master != nil && g.Master.ID == req.ID {
			epoch = g.Master.Epoch
		} else if next, ok := api.NextTerm(g.MaxEpoch.Term); ok {
			epoch = api.Epoch{Term: next, ID: req.ID}
		} else {
			rangeErr = fmt.Errorf("%w: the group's term %d is the last one", api.ErrEpochRange, g.MaxEpoch.Term)
		}
	} else {
		// An epoch far above every one the group held is forged or
		// corrupted: adopting it would fence the group for good.
		rangeErr = api.CheckTerm(epoch.Term, g.MaxEpoch.Term)
	}
	epoch.ID = req.ID
	reg := &registration{
		Registration: api.Registration{Group: g.Name, ID: req.ID, Addr: req.Addr, Epoch: epoch,
			Priority: prio, TTL: ttl, Manual: req.Manual},
		Session: m.Session,
		Expires: now.Add(ttl),
	}
	refuse := func(reason string) (api.RegisterResponse, bool, error) {
		e := epoch
		r.record(fx, g, now, api.Event{Kind: api.EventRegistrationRefused, ID: req.ID, Addr: req.Addr, Epoch: &e, Reason: reason, Manual: req.Manual})
		return api.RegisterResponse{}, false, api.Errorf(api.CodeRefused, "group %q: %s", g.Name, reason)
	}
	if rangeErr != nil {
		e := epoch
		r.record(fx, g, now, api.Event{Kind: api.EventRegistrationRefused, ID: req.ID, Addr: req.Addr, Epoch: &e, Reason: rangeErr.Error(), Manual: req.Manual})
		return api.RegisterResponse{}, false, api.Errorf(api.CodeEpochRange, "group %q: %v", g.Name, rangeErr)
	}

	// An operator's explicit epoch repairs a fenced group, one whose epoch
	// leaves less than MaxTermLead terms to elect in (a store from before
	// epochs were bounded): it becomes the group's epoch, and the agents'
	// next elections go on from it. Any other group stays fenced against
	// older epochs, by hand too.
	if req.Manual && req.Epoch.Term != 0 && epoch.Less(g.MaxEpoch) && g.MaxEpoch.Term > math.MaxUint64-api.MaxTermLead {
		e := epoch
		r.record(fx, g, now, api.Event{Kind: api.EventEpochReset, ID: req.ID, Addr: req.Addr, Epoch: &e, Manual: true,
			Reason: fmt.Sprintf("the group's epoch %s reset by hand to %s", g.MaxEpoch, epoch)})
		g.MaxEpoch = epoch
		if g.Master != nil && epoch.Less(g.Master.Epoch) && g.Master.ID == req.ID {
			g.Master.Epoch = epoch
		}
	}

	switch {
	case g.Master != nil && g.Master.ID == req.ID:
		// The holder renews or moves to a newer epoch.
		if epoch.Less(g.Master.Epoch) {
			return refuse(fmt.Sprintf("epoch %s is older than the registered %s of the same master", epoch, g.Master.Epoch))
		}
		changed := epoch != g.Master.Epoch || req.Addr != g.Master.Addr || reg.Session != g.Master.Session || ttl != g.Master.TTL ||
			prio != g.Master.Priority || req.Manual != g.Master.Manual
		g.Master = reg
		if changed {
			r.noteEpoch(g, epoch)
			e := epoch
			r.record(fx, g, now, api.Event{Kind: api.EventMasterRegistered, ID: req.ID, Addr: req.Addr, Epoch: &e, Manual: req.Manual})
		}
		return api.RegisterResponse{Accepted: true, Master: reg.Registration}, false, nil

	case g.Mode == api.ModeStrict && epoch.Less(g.MaxEpoch):
		// Fencing: a strict group never goes back to an older epoch.
		return refuse(fmt.Sprintf("epoch %s is older than the group's epoch %s", epoch, g.MaxEpoch))

	case g.Mode == api.ModeStrict && g.Master != nil:
		// A newer epoch in a strict group is a newer majority election: it
		// supersedes the holder, which is told at once.
		old := g.Master
		g.Master = reg
		r.noteEpoch(g, epoch)
		e := epoch
		r.record(fx, g, now, api.Event{Kind: api.EventMasterSuperseded, ID: req.ID, Addr: req.Addr, Epoch: &e, Removed: []uint64{old.ID}, Manual: req.Manual})
		r.trigger(g, now, "master-superseded", []*registration{old}, fx)
		return api.RegisterResponse{Accepted: true, Master: reg.Registration, Removed: []uint64{old.ID}}, false, nil

	case g.Master == nil && len(g.Pending) == 0:
		g.Master = reg
		r.noteEpoch(g, epoch)
		e := epoch
		r.record(fx, g, now, api.Event{Kind: api.EventMasterRegistered, ID: req.ID, Addr: req.Addr, Epoch: &e, Manual: req.Manual})
		return api.RegisterResponse{Accepted: true, Master: reg.Registration}, false, nil
	}

	// Several live registrations for one group (act 1210): gather them for
	// the conflict window, then decide once.
	if g.Pending == nil {
		g.Pending = make(map[uint64]*registration)
	}
	g.Pending[req.ID] = reg
	if g.Deadline.IsZero() {
		g.Deadline = now.Add(r.cfg.ConflictWindow)
		fx.Timers = append(fx.Timers, Timer{Group: g.Name, At: g.Deadline})
	}
	if r.cfg.ConflictWindow <= 0 {
		d := r.decide(g, now, nil, fx)
		return responseFor(d, req.ID), false, nil
	}
	return resp, true, nil
}

// CheckRegister validates a registration without changing anything: the
// runtime runs it before it probes the agent a manual registration names.
func (r *Registry) CheckRegister(now time.Time, req api.RegisterRequest) error {
	_, _, _, err := r.checkRegister(now, req)
	return err
}

// checkRegister validates a registration and binds it to its member: an
// agent's carries the member's live session, a manual one names a live
// member, and both the member's own address.
func (r *Registry) checkRegister(now time.Time, req api.RegisterRequest) (*group, *member, time.Duration, error) {
	if err := validateMember(req.Group, req.ID, req.Addr); err != nil {
		return nil, nil, 0, err
	}
	if req.Epoch.ID != 0 && req.Epoch.ID != req.ID {
		return nil, nil, 0, api.Errorf(api.CodeInvalid, "epoch %s names master %d, but the registration is for %d", req.Epoch, req.Epoch.ID, req.ID)
	}
	ttl, err := r.ttl(req.TTL, r.cfg.RegistrationTTL)
	if err != nil {
		return nil, nil, 0, err
	}
	// Groups are made by their members' joins, not by registrations.
	g, _, err := r.groupFor(req.Group, req.Mode, req.Policy, false)
	if err != nil {
		return nil, nil, 0, err
	}
	m := g.Members[req.ID]
	switch {
	case req.Session != 0:
		if m, err = r.session(g, req.ID, req.Session, now); err != nil {
			return nil, nil, 0, err
		}
	case !req.Manual:
		return nil, nil, 0, api.Errorf(api.CodeInvalid, "a registration carries its member's session (an agent's) or is manual (an operator's)")
	case m == nil || !now.Before(m.Expires):
		return nil, nil, 0, api.Errorf(api.CodeRefused, "group %q: agent %d is not a live member; only a member can be registered", g.Name, req.ID)
	}
	if req.Addr != m.Addr {
		return nil, nil, 0, api.Errorf(api.CodeRefused, "group %q: %s is not the address of member %d (%s)", g.Name, req.Addr, req.ID, m.Addr)
	}
	if !req.Manual && req.Epoch.Term == 0 {
		// Term 0 takes the group's next term: an operator's choice, never
		// an agent's, which registers the epoch it was elected at.
		return nil, nil, 0, api.Errorf(api.CodeInvalid, "an agent's registration carries the epoch it was elected at, not term 0")
	}
	return g, m, ttl, nil
}

// ResponseFor is the answer a registrant of ID id gets from decision d.
func responseFor(d Decision, id uint64) api.RegisterResponse {
	return api.RegisterResponse{Accepted: d.Master.ID == id, Master: d.Master, Conflict: true, Removed: d.Removed}
}

// ResponseFor exposes responseFor to the runtime.
func ResponseFor(d Decision, id uint64) api.RegisterResponse { return responseFor(d, id) }

func (r *Registry) noteEpoch(g *group, e api.Epoch) { g.MaxEpoch = g.MaxEpoch.Max(e) }

func (r *Registry) expireMaster(g *group, now time.Time, fx *Effects) {
	if g.Master != nil && !now.Before(g.Master.Expires) {
		id := g.Master.ID
		g.Master = nil
		r.record(fx, g, now, api.Event{Kind: api.EventMasterExpired, ID: id, Reason: "registration ttl lapsed"})
	}
}

// Candidates lists the registrations a due decision would weigh: the
// registered master and the pending ones. The runtime probes them before
// it calls Decide.
func (r *Registry) Candidates(groupName string) []api.Registration {
	g := r.groups[groupName]
	if g == nil {
		return nil
	}
	var out []api.Registration
	if g.Master != nil {
		out = append(out, g.Master.Registration)
	}
	for _, p := range g.Pending {
		out = append(out, p.Registration)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Decide closes a group's conflict window if it is due: it takes the live
// candidates, keeps one by the group's policy (act 1220), removes the others
// in the same step (act 1230) and triggers every member (act 1240).
//
// alive, when not nil, says which candidates answered the runtime's probe as
// masters: a registration whose holder is gone (its TTL not yet lapsed) is
// not kept over a live one. When none answered, all are weighed.
func (r *Registry) Decide(now time.Time, groupName string, alive func(id uint64) bool, fx *Effects) {
	g := r.groups[groupName]
	if g == nil || g.Deadline.IsZero() || now.Before(g.Deadline) {
		return
	}
	r.decide(g, now, alive, fx)
}

func (r *Registry) decide(g *group, now time.Time, alive func(id uint64) bool, fx *Effects) Decision {
	r.expireMaster(g, now, fx)
	var all []*registration
	if g.Master != nil {
		all = append(all, g.Master)
	}
	for _, p := range g.Pending {
		if now.Before(p.Expires) && (g.Master == nil || p.ID != g.Master.ID) {
			all = append(all, p)
		}
	}
	g.Pending, g.Deadline = nil, time.Time{}
	sort.Slice(all, func(i, j int) bool { return all[i].ID < all[j].ID })
	regs := all
	var gone []uint64
	if alive != nil {
		var live []*registration
		for _, reg := range all {
			if alive(reg.ID) {
				live = append(live, reg)
			} else {
				gone = append(gone, reg.ID)
			}
		}
		if len(live) > 0 {
			regs = live
		} else {
			gone = nil
		}
	}
	if len(regs) == 0 {
		return Decision{Group: g.Name}
	}
	cands := make([]Candidate, len(regs))
	ids := make([]uint64, len(regs))
	for i, reg := range regs {
		cands[i] = Candidate{ID: reg.ID, Priority: reg.Priority, Epoch: reg.Epoch}
		ids[i] = reg.ID
	}
	kept, removed := Retain(g.Policy, cands)
	var keep *registration
	var losers []*registration
	for _, reg := range regs {
		if reg.ID == kept.ID {
			keep = reg
		} else {
			losers = append(losers, reg)
		}
	}
	prev := g.Master
	g.Master = keep
	r.noteEpoch(g, keep.Epoch)
	e := keep.Epoch
	// Registrations whose holders did not answer are removed too.
	for _, reg := range all {
		if slices.Contains(gone, reg.ID) {
			losers = append(losers, reg)
		}
	}
	removed = append(removed, gone...)
	slices.Sort(removed)
	if len(all) == 1 {
		if prev != keep {
			r.record(fx, g, now, api.Event{Kind: api.EventMasterRegistered, ID: keep.ID, Addr: keep.Addr, Epoch: &e})
		}
	} else {
		allIDs := make([]uint64, len(all))
		for i, reg := range all {
			allIDs[i] = reg.ID
		}
		det := api.Event{Kind: api.EventConflictDetected, Candidates: allIDs, Policy: g.Policy}
		if len(gone) > 0 {
			det.Reason = fmt.Sprintf("%v did not answer as master and were not weighed", gone)
		}
		r.record(fx, g, now, det)
		r.record(fx, g, now, api.Event{Kind: api.EventConflictResolved, Policy: g.Policy, Retained: keep.ID, Removed: removed, Epoch: &e})
		r.trigger(g, now, "conflict-resolved", losers, fx)
	}
	d := Decision{Group: g.Name, Master: keep.Registration, Removed: removed}
	fx.Decisions = append(fx.Decisions, d)
	return d
}

// trigger notifies every live member of g, and every removed registrant that
// is not a member, of the retained master.
func (r *Registry) trigger(g *group, now time.Time, reason string, removed []*registration, fx *Effects) {
	t := Trigger{Notify: api.Notify{Group: g.Name, Master: r.liveMaster(g, now), Reason: reason, Seq: g.Seq, Paused: g.Paused}}
	for _, m := range g.Members {
		if now.Before(m.Expires) {
			t.Targets = append(t.Targets, Target{ID: m.ID, Addr: m.Addr, Session: m.Session})
		}
	}
	for _, reg := range removed {
		if m := g.Members[reg.ID]; m != nil && now.Before(m.Expires) {
			continue
		}
		t.Targets = append(t.Targets, Target{ID: reg.ID, Addr: reg.Addr})
	}
	sort.Slice(t.Targets, func(i, j int) bool { return t.Targets[i].ID < t.Targets[j].ID })
	fx.Triggers = append(fx.Triggers, t)
}

// Recheck re-runs detection on a group at an agent's request (a competing
// claim seen over gossip): every member is triggered with the retained
// master.
func (r *Registry) Recheck(now time.Time, req api.RecheckRequest, fx *Effects) (api.RecheckResponse, error) {
	if err := api.ValidateGroup(req.Group); err != nil {
		return api.RecheckResponse{}, api.Errorf(api.CodeInvalid, "%v", err)
	}
	g, _, err := r.groupFor(req.Group, "", "", false)
	if err != nil {
		return api.RecheckResponse{}, err
	}
	// An open conflict window is decided when it closes, after the probe.
	r.expireMaster(g, now, fx)
	r.record(fx, g, now, api.Event{Kind: api.EventRecheck, ID: req.From, Reason: req.Reason})
	r.trigger(g, now, "recheck", nil, fx)
	return api.RecheckResponse{Master: r.liveMaster(g, now)}, nil
}

// Pause puts a group in maintenance or takes it out of it, records the
// event and triggers every member, which learns it from the trigger (and
// from every later join, renewal and lookup). Asking for the state the
// group is in changes nothing.
func (r *Registry) Pause(now time.Time, req api.PauseRequest, fx *Effects) (api.PauseResponse, error) {
	if err := api.ValidateGroup(req.Group); err != nil {
		return api.PauseResponse{}, api.Errorf(api.CodeInvalid, "%v", err)
	}
	if len(req.Reason) > api.MaxReasonBytes {
		return api.PauseResponse{}, api.Errorf(api.CodeInvalid, "reason of %d bytes, at most %d", len(req.Reason), api.MaxReasonBytes)
	}
	g, _, err := r.groupFor(req.Group, "", "", false)
	if err != nil {
		return api.PauseResponse{}, err
	}
	if g.Paused == req.Paused {
		return api.PauseResponse{Paused: g.Paused}, nil
	}
	g.Paused = req.Paused
	kind, reason := api.EventGroupResumed, "resumed"
	if req.Paused {
		kind, reason = api.EventGroupPaused, "paused"
	}
	r.record(fx, g, now, api.Event{Kind: kind, Reason: req.Reason, Manual: true})
	r.trigger(g, now, reason, nil, fx)
	return api.PauseResponse{Paused: g.Paused, Changed: true}, nil
}

// Sweep expires lapsed sessions and registrations and decides every conflict
// whose window has closed: the periodic half of act 1210.
func (r *Registry) Sweep(now time.Time, fx *Effects) {
	for _, g := range r.groups {
		for id, m := range g.Members {
			if !now.Before(m.Expires) {
				r.dropMember(g, id, api.EventMemberExpired, now, fx)
			}
		}
		r.expireMaster(g, now, fx)
		if !g.Deadline.IsZero() && !now.Before(g.Deadline.Add(r.cfg.ConflictWindow)) {
			// The window's timer is overdue: ask for it again.
			fx.Timers = append(fx.Timers, Timer{Group: g.Name, At: now})
		}
	}
}

// Lookup returns the group's retained master.
func (r *Registry) Lookup(now time.Time, req api.LookupRequest) (api.LookupResponse, error) {
	if err := api.ValidateGroup(req.Group); err != nil {
		return api.LookupResponse{}, api.Errorf(api.CodeInvalid, "%v", err)
	}
	g, _, err := r.groupFor(req.Group, "", "", false)
	if err != nil {
		return api.LookupResponse{}, err
	}
	return api.LookupResponse{Master: r.liveMaster(g, now), Policy: g.Policy, Mode: g.Mode, Paused: g.Paused}, nil
}

// Status describes one group, or every group sorted by name.
func (r *Registry) Status(now time.Time, req api.StatusRequest) (api.StatusResponse, error) {
	if req.Group != "" {
		if err := api.ValidateGroup(req.Group); err != nil {
			return api.StatusResponse{}, api.Errorf(api.CodeInvalid, "%v", err)
		}
		g, _, err := r.groupFor(req.Group, "", "", false)
		if err != nil {
			return api.StatusResponse{}, err
		}
		return api.StatusResponse{Groups: []api.GroupStatus{r.status(g, now)}}, nil
	}
	switch {
	case req.Limit < 0:
		return api.StatusResponse{}, api.Errorf(api.CodeInvalid, "limit %d is negative", req.Limit)
	case req.Limit == 0:
		req.Limit = api.DefaultStatusPage
	case req.Limit > api.MaxStatusPage:
		req.Limit = api.MaxStatusPage
	}
	names := make([]string, 0, len(r.groups))
	for name := range r.groups {
		if name > req.After {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	out := api.StatusResponse{Groups: []api.GroupStatus{}}
	if len(names) > req.Limit {
		names, out.More = names[:req.Limit], true
	}
	for _, name := range names {
		out.Groups = append(out.Groups, r.status(r.groups[name], now))
	}
	if len(names) > 0 {
		out.Next = names[len(names)-1]
	}
	return out, nil
}

func (r *Registry) status(g *group, now time.Time) api.GroupStatus {
	st := api.GroupStatus{Group: g.Name, Policy: g.Policy, Mode: g.Mode, Members: []api.Member{}, Paused: g.Paused}
	if m := r.liveMaster(g, now); m != nil {
		st.Master = &api.MasterStatus{ID: m.ID, Addr: m.Addr, Epoch: m.Epoch.Term, EpochID: m.Epoch.ID}
	}
	for _, m := range g.Members {
		if now.Before(m.Expires) {
			st.Members = append(st.Members, m.Member)
		}
	}
	sort.Slice(st.Members, func(i, j int) bool { return st.Members[i].ID < st.Members[j].ID })
	return st
}

// SessionLive reports whether a trigger target is still worth retrying: a
// member whose session lives.
func (r *Registry) SessionLive(now time.Time, groupName string, id, session uint64) bool {
	g := r.groups[groupName]
	if g == nil {
		return false
	}
	m := g.Members[id]
	return m != nil && m.Session == session && now.Before(m.Expires)
}

// Groups returns the number of groups.
func (r *Registry) Groups() int { return len(r.groups) }

// HasGroup reports whether a group is known.
func (r *Registry) HasGroup(name string) bool { return r.groups[name] != nil }
