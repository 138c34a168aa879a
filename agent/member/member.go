// Package member is an agent's standing at the naming node as a pure state
// machine: its member session (join, renew at a third of the TTL, join
// again when the session is lost) and its master registration (register
// the epoch it was elected at, renew while master at it, report each
// outcome to the core). Events go in, Effects come out, counted in ticks
// of the driver's unit; the agent runtime and the simulator (recover/sim)
// both drive this one code, as the naming node's Registry is driven.
package member

import (
	"errors"
	"fmt"
	"strings"

	"github.com/mastership/mastership/naming/api"
)

// Config is the machine's timings, in ticks.
type Config struct {
	// RegistrationTTL is the registration lifetime asked of the naming
	// node. A registration is renewed every quarter of it.
	RegistrationTTL uint64
	// RetryTicks is the first pause after a failed registration; it
	// doubles up to a third of the TTL.
	RetryTicks uint64
	// JoinRetryTicks is the first pause after a failed join; it doubles
	// up to MaxJoinRetryTicks.
	JoinRetryTicks    uint64
	MaxJoinRetryTicks uint64
}

// Kind is what an Effect asks.
type Kind uint8

// Effects.
const (
	// Join: ask the naming node to make us a member; answer Joined.
	Join Kind = iota + 1
	// Renew: renew Session; answer Renewed.
	Renew
	// Register: register Epoch, bound to Session; answer RegisterDone.
	Register
	// Registered: tell the core the outcome for Epoch: Accepted, valid
	// for ValidTicks from now.
	Registered
	// Refused: raise the self-monitor's event trigger (Reason): the naming
	// node refused or did not retain the registration.
	Refused
	// SeeMaster: the naming node named Master as the group's registered
	// master: the core learns its epoch when NewTerm says so
	// (core.Node.SeeEpoch).
	SeeMaster
	// Fatal: another agent holds our ID (Err); the agent must stop.
	Fatal
)

var kindNames = [...]string{"", "join", "renew", "register", "registered", "refused", "see-master", "fatal"}

func (k Kind) String() string {
	if int(k) < len(kindNames) && k != 0 {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", k)
}

// Effect is one thing the driver must do.
type Effect struct {
	Kind       Kind
	Session    uint64
	Epoch      api.Epoch
	Accepted   bool
	ValidTicks uint64
	Master     *api.Registration
	Reason     string
	Err        error
}

func (e Effect) String() string {
	var b strings.Builder
	b.WriteString(e.Kind.String())
	switch e.Kind {
	case Renew:
		fmt.Fprintf(&b, " session=%d", e.Session)
	case Register:
		fmt.Fprintf(&b, " epoch=%s session=%d", e.Epoch, e.Session)
	case Registered:
		fmt.Fprintf(&b, " epoch=%s accepted=%t valid=%d", e.Epoch, e.Accepted, e.ValidTicks)
	case Refused:
		fmt.Fprintf(&b, " %s", e.Reason)
	case SeeMaster:
		if e.Master != nil {
			fmt.Fprintf(&b, " %d@%s", e.Master.ID, e.Master.Epoch)
		}
	case Fatal:
		fmt.Fprintf(&b, " %v", e.Err)
	}
	return b.String()
}

// NewTerm is SeeMaster's rule, shared by the runtime and the simulator:
// the epoch of the registered master the naming node named, to give the
// core, when its term is above maxTerm, the newest term the agent knows
// (false when master is nil or not newer). The naming node is the one
// source an agent trusts for terms far above its own (a new agent of an
// old group), since every other input is bounded by what it knows; even
// from it, a term in the last api.MaxTermLead of the term space is refused
// (api.CheckLearnedTerm), so that a forged reply cannot leave the agent no
// term to campaign at.
func NewTerm(master *api.Registration, maxTerm uint64) (api.Epoch, bool) {
	if master == nil || master.Epoch.Term <= maxTerm || api.CheckLearnedTerm(master.Epoch.Term) != nil {
		return api.Epoch{}, false
	}
	return master.Epoch, true
}

// Session is a join's or a renewal's answer: the session, its TTL in
// ticks, and the group's registered master as the naming node sees it.
type Session struct {
	ID     uint64
	TTL    uint64
	Master *api.Registration
}

// Machine is the member session and the registration of one agent. It does
// no I/O and reads no clock.
type Machine struct {
	cfg Config

	session  uint64
	ttl      uint64 // of the session, ticks
	joining  bool
	renewing bool
	joinAt   uint64
	joinWait uint64
	renewAt  uint64

	role  api.Role
	epoch api.Epoch
	reg   registration
}

// registration is the registration of one epoch.
type registration struct {
	epoch    api.Epoch
	active   bool // the epoch is to be registered and renewed
	ok       bool // the naming node accepted it
	refused  bool // the naming node refused it or retained another master
	inFlight bool
	tried    bool // an attempt was answered
	started  uint64
	next     uint64
	wait     uint64
}

// New returns a machine with no session: the first Tick joins.
func New(cfg Config) *Machine {
	cfg.RegistrationTTL = max(cfg.RegistrationTTL, 4)
	cfg.RetryTicks = max(cfg.RetryTicks, 1)
	cfg.JoinRetryTicks = max(cfg.JoinRetryTicks, 1)
	cfg.MaxJoinRetryTicks = max(cfg.MaxJoinRetryTicks, cfg.JoinRetryTicks)
	return &Machine{cfg: cfg, joinWait: cfg.JoinRetryTicks}
}

// Joining marks a join the driver asks on its own (the agent's Start asks
// once before its loops run); answer it with Joined.
func (m *Machine) Joining() { m.joining = true }

// Session is the member session (0: none).
func (m *Machine) Session() uint64 { return m.session }

// Status tells the machine the core's role and epoch; a registration is
// renewed only while the core is master at its epoch.
func (m *Machine) Status(role api.Role, epoch api.Epoch) {
	m.role, m.epoch = role, epoch
	if m.reg.active && !m.current() {
		m.reg.active = false
	}
}

// Campaigned starts the registration of epoch, at which the core was just
// elected (core.Ready.Register). It replaces any earlier one; an answer
// for an earlier epoch is ignored.
func (m *Machine) Campaigned(now uint64, epoch api.Epoch) {
	m.role, m.epoch = api.RoleMaster, epoch
	m.reg = registration{epoch: epoch, active: true, next: now, wait: m.cfg.RetryTicks}
}

func (m *Machine) current() bool { return m.role == api.RoleMaster && m.epoch == m.reg.epoch }

// Registering reports whether the registration of the master's current
// epoch is awaiting its first answer (a decision at the naming node may be
// pending). A registration that keeps failing is not "registering": the
// self-monitor then trusts what the naming node says.
func (m *Machine) Registering() bool {
	r := m.reg
	return r.active && m.current() && !r.ok && !r.refused && (r.inFlight || (!r.tried && m.session != 0))
}

// Deadline is the tick at which Tick has something to do next.
func (m *Machine) Deadline() uint64 {
	d := ^uint64(0)
	switch {
	case m.session == 0 && !m.joining:
		d = m.joinAt
	case m.session != 0 && !m.renewing:
		d = m.renewAt
	}
	if m.reg.active && !m.reg.inFlight {
		d = min(d, m.reg.next)
	}
	return d
}

// Tick advances the machine to now.
func (m *Machine) Tick(now uint64) []Effect {
	var fx []Effect
	switch {
	case m.session == 0 && !m.joining && now >= m.joinAt:
		m.joining = true
		fx = append(fx, Effect{Kind: Join})
	case m.session != 0 && !m.renewing && now >= m.renewAt:
		m.renewing = true
		fx = append(fx, Effect{Kind: Renew, Session: m.session})
	}
	r := &m.reg
	if !r.active || r.inFlight || now < r.next {
		return fx
	}
	if !m.current() {
		r.active = false
		return fx
	}
	if m.session == 0 {
		// A registration is bound to our member session: wait for the
		// session to open.
		m.backoff(now)
		return fx
	}
	r.inFlight, r.started = true, now
	return append(fx, Effect{Kind: Register, Epoch: r.epoch, Session: m.session})
}

func (m *Machine) backoff(now uint64) {
	m.reg.next = after(now, m.reg.wait)
	m.reg.wait = min(2*m.reg.wait, max(m.cfg.RegistrationTTL/3, 1))
}

// Joined answers Join.
func (m *Machine) Joined(now uint64, s Session, err error) []Effect {
	m.joining = false
	if errors.Is(err, api.ErrIDTaken) {
		m.joinAt = ^uint64(0)
		return []Effect{{Kind: Fatal, Err: err}}
	}
	if err != nil || s.ID == 0 {
		m.joinAt = after(now, m.joinWait)
		m.joinWait = min(2*m.joinWait, m.cfg.MaxJoinRetryTicks)
		return nil
	}
	m.joinWait = m.cfg.JoinRetryTicks
	m.session, m.ttl = s.ID, max(s.TTL, 3)
	m.renewAt = after(now, m.ttl/3)
	return []Effect{{Kind: SeeMaster, Master: s.Master}}
}

// Renewed answers Renew of session.
func (m *Machine) Renewed(now uint64, session uint64, s Session, err error) []Effect {
	if session != m.session {
		return nil
	}
	m.renewing = false
	if errors.Is(err, api.ErrSessionExpired) || errors.Is(err, api.ErrNotFound) {
		// Lost (a naming node restart past its grace, a long pause): join
		// again at once.
		m.session, m.joinAt = 0, now
		return nil
	}
	if s.TTL != 0 {
		m.ttl = max(s.TTL, 3)
	}
	m.renewAt = after(now, m.ttl/3)
	if err != nil {
		return nil
	}
	return []Effect{{Kind: SeeMaster, Master: s.Master}}
}

// RegisterDone answers Register of epoch: accepted (retained), or the
// master the naming node retains instead, or an error.
func (m *Machine) RegisterDone(now uint64, epoch api.Epoch, accepted bool, retained *api.Registration, err error) []Effect {
	r := &m.reg
	if epoch != r.epoch || !r.inFlight {
		return nil
	}
	r.inFlight, r.tried = false, true
	if !r.active {
		// Deposed meanwhile: the core no longer holds that epoch.
		return nil
	}
	switch {
	case err == nil && accepted:
		// Valid until the TTL from when we asked, less a margin for the
		// naming node's clock running ahead.
		valid := m.cfg.RegistrationTTL - m.cfg.RegistrationTTL/10
		valid -= min(valid, now-r.started)
		r.ok, r.refused = true, false
		r.wait = m.cfg.RetryTicks
		r.next = after(now, m.cfg.RegistrationTTL/4)
		return []Effect{{Kind: Registered, Epoch: epoch, Accepted: true, ValidTicks: valid}}
	case err == nil:
		// The self-monitor takes it from here (figure 8: a master that is
		// not the retained one recovers); registering again would only
		// start another conflict.
		why := "registration not retained"
		if retained != nil {
			why += ": master is " + retained.Epoch.String()
		}
		return m.refuse(why)
	case errors.Is(err, api.ErrRefused) || errors.Is(err, api.ErrMismatch) || errors.Is(err, api.ErrInvalid):
		return m.refuse("registration refused: " + err.Error())
	}
	// Unreachable, or the session expired (the session loop joins again):
	// retry.
	m.backoff(now)
	return nil
}

func (m *Machine) refuse(why string) []Effect {
	r := &m.reg
	r.ok, r.refused, r.active = false, true, false
	return []Effect{{Kind: Registered, Epoch: r.epoch}, {Kind: Refused, Epoch: r.epoch, Reason: why}}
}

// after is now+d, saturating: a TTL the naming node sends may be huge.
func after(now, d uint64) uint64 {
	if now > ^uint64(0)-d {
		return ^uint64(0)
	}
	return now + d
}
