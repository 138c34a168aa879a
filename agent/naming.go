package agent

import (
	"context"
	crand "crypto/rand"
	"errors"
	"fmt"
	"time"

	"github.com/mastership/mastership/agent/member"
	"github.com/mastership/mastership/naming/api"
)

// joinNaming makes the agent a member of its group at the naming node.
func (a *Agent) joinNaming(ctx context.Context, timeout time.Duration) (*api.JoinResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	// A fresh proof for each join: its hash, served in /v1/info before the
	// join is sent, shows the naming node that this process sent it.
	proof := make([]byte, 32)
	if _, err := crand.Read(proof); err != nil {
		return nil, fmt.Errorf("join proof: %w", err)
	}
	hash := api.JoinProofOf(proof)
	a.joinProof.Store(&hash)
	resp, err := a.naming.Join(ctx, api.JoinRequest{Group: a.cfg.Group, ID: a.cfg.ID, Addr: a.advertisedAPI(),
		Priority: a.cfg.Priority, Mode: a.cfg.Mode, Policy: a.cfg.Policy, TTL: a.cfg.SessionTTL, Proof: proof})
	if err != nil {
		return nil, err
	}
	return &resp, nil
}

// The naming loop's pauses, before they are counted in ticks.
const (
	registerRetry  = 20 * time.Millisecond
	joinRetry      = 50 * time.Millisecond
	maxJoinRetry   = time.Second
	namingCallWait = 2 * time.Second
)

// MemberConfig is the member machine's configuration for an agent whose
// ticks last unit: the registration TTL and the naming loop's pauses,
// counted in ticks.
func MemberConfig(unit, registrationTTL time.Duration) member.Config {
	return member.Config{RegistrationTTL: ticksOf(registrationTTL, unit), RetryTicks: ticksOf(registerRetry, unit),
		JoinRetryTicks: ticksOf(joinRetry, unit), MaxJoinRetryTicks: ticksOf(maxJoinRetry, unit)}
}

// ticksOf is d in ticks of unit, rounded up, at least 1.
func ticksOf(d, unit time.Duration) uint64 { return uint64(max((d+unit-1)/unit, 1)) }

// runNaming is the naming loop: it drives the member machine (the member
// session and the master registration, package member) in ticks of
// TickUnit and carries out its effects. The naming node's calls run on
// goroutines of their own, since a registration may wait out a conflict
// window; their answers come back to the loop. first and firstErr are the
// join Start made. A join refused because another agent holds our ID ends
// the agent (Fatal).
// reach follows whether the naming node answers, for the logs: an outage
// is logged once when it begins (its first call that found no node) and
// once when it ends (the first answer), with how long it lasted and how
// many calls failed. An answer that refuses is an answer.
type reach struct {
	down  bool
	since time.Time
	fails int
}

// unreachable tells a call that found no naming node from one it answered.
func unreachable(err error) bool {
	return errors.Is(err, api.ErrUnavailable) || errors.Is(err, context.DeadlineExceeded)
}

// note records one call's outcome at now and says whether an outage began
// or ended with it (then how long it lasted and how many calls failed).
func (r *reach) note(now time.Time, err error) (began, ended bool, lasted time.Duration, fails int) {
	switch {
	case err != nil && unreachable(err):
		r.fails++
		if !r.down {
			r.down, r.since = true, now
			return true, false, 0, r.fails
		}
	case r.down:
		lasted, fails = now.Sub(r.since), r.fails
		*r = reach{}
		return false, true, lasted, fails
	default:
		r.fails = 0
	}
	return false, false, 0, 0
}

func (a *Agent) runNaming(first *api.JoinResponse, firstErr error) {
	var naming reach
	noteNaming := func(err error) {
		if a.ctx.Err() != nil {
			return // stopping: our own calls were cancelled
		}
		began, ended, lasted, fails := naming.note(time.Now(), err)
		switch {
		case began:
			a.logger.Warn("naming node unreachable: the group's registration and the self-monitor's checks wait for it; check that it runs and that -naming names it",
				"naming", a.cfg.Naming, "error", err)
		case ended:
			a.logger.Warn("naming node reachable again", "naming", a.cfg.Naming, "unreachable_for", lasted.Round(time.Millisecond), "failed_calls", fails)
		}
	}
	unit := a.cfg.TickUnit
	base := time.Now()
	now := func() uint64 { return uint64(time.Since(base) / unit) }
	ticks := func(d time.Duration) uint64 { return ticksOf(d, unit) }
	m := member.New(MemberConfig(unit, a.cfg.RegistrationTTL))
	results := make(chan func(now uint64) []member.Effect, 8)
	sessionTTL := a.cfg.SessionTTL
	answer := func(f func(now uint64) []member.Effect) {
		select {
		case results <- f:
		case <-a.ctx.Done():
		}
	}
	sessionOf := func(id uint64, ttl time.Duration, master *api.Registration) member.Session {
		if ttl > 0 {
			sessionTTL = ttl
		}
		return member.Session{ID: id, TTL: ticks(ttl), Master: master}
	}

	// apply carries out effects in order; it reports false once the agent
	// must stop.
	apply := func(fx []member.Effect) bool {
		for _, e := range fx {
			switch e.Kind {
			case member.Join:
				go func() {
					resp, err := a.joinNaming(a.ctx, namingCallWait)
					if err == nil {
						a.setPaused(resp.Paused)
					}
					if err != nil && !errors.Is(err, api.ErrIDTaken) {
						if errors.Is(err, api.ErrMismatch) || errors.Is(err, api.ErrInvalid) {
							a.logger.Error("naming node refused to make us a member", "error", err)
						} else {
							a.logger.Debug("join naming node", "error", err)
						}
					}
					answer(func(now uint64) []member.Effect {
						noteNaming(err)
						if err != nil {
							return m.Joined(now, member.Session{}, err)
						}
						a.logger.Debug("member session opened", "ttl", resp.TTL)
						return m.Joined(now, sessionOf(resp.Session, resp.TTL, resp.Master), nil)
					})
				}()
			case member.Renew:
				session, wait := e.Session, min(namingCallWait, max(sessionTTL/3, 10*time.Millisecond))
				go func() {
					ctx, cancel := context.WithTimeout(a.ctx, wait)
					r, err := a.naming.Renew(ctx, api.RenewRequest{Group: a.cfg.Group, ID: a.cfg.ID, Session: session})
					cancel()
					if errors.Is(err, api.ErrSessionExpired) || errors.Is(err, api.ErrNotFound) {
						a.logger.Warn("member session lost; joining again")
					} else if err == nil {
						a.setPaused(r.Paused)
					}
					answer(func(now uint64) []member.Effect {
						noteNaming(err)
						return m.Renewed(now, session, sessionOf(session, r.TTL, r.Master), err)
					})
				}()
			case member.Register:
				epoch, session := e.Epoch, e.Session
				go func() {
					ctx, cancel := context.WithTimeout(a.ctx, namingCallWait)
					resp, err := a.naming.Register(ctx, api.RegisterRequest{Group: a.cfg.Group, ID: a.cfg.ID,
						Addr: a.advertisedAPI(), Epoch: epoch, Priority: a.cfg.Priority, Session: session,
						TTL: a.cfg.RegistrationTTL, Mode: a.cfg.Mode, Policy: a.cfg.Policy})
					cancel()
					switch {
					case err == nil && !resp.Accepted:
						a.logger.Warn("registration not retained", "retained", resp.Master.ID, "epoch", resp.Master.Epoch)
					case errors.Is(err, api.ErrRefused) || errors.Is(err, api.ErrMismatch) || errors.Is(err, api.ErrInvalid):
						a.logger.Warn("registration refused", "error", err)
					case err != nil:
						a.logger.Debug("register at naming node", "error", err)
					}
					answer(func(now uint64) []member.Effect {
						noteNaming(err)
						return m.RegisterDone(now, epoch, resp.Accepted, &resp.Master, err)
					})
				}()
			case member.Registered:
				a.do(func() {
					a.node.Registered(e.Epoch, e.Accepted, a.node.Now()+e.ValidTicks)
					a.handleReady()
				})
			case member.Refused:
				if a.opts.Monitor != nil {
					a.opts.Monitor.Event("registration-refused", e.Reason)
				}
			case member.SeeMaster:
				a.noteRegistered(e.Master)
			case member.Fatal:
				a.logger.Error("another agent holds this agent's ID at the naming node; stopping", "error", e.Err)
				a.failFatal(fmt.Errorf("%w: %v", ErrIDTaken, e.Err))
				return false
			}
		}
		return true
	}

	if first != nil || firstErr != nil {
		noteNaming(firstErr)
		m.Joining()
		var s member.Session
		if first != nil {
			a.logger.Debug("member session opened", "ttl", first.TTL)
			s = sessionOf(first.Session, first.TTL, first.Master)
		}
		if !apply(m.Joined(now(), s, firstErr)) {
			return
		}
	}
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		a.mu.Lock()
		st, want := a.status, a.regWant
		a.regWant = nil
		a.mu.Unlock()
		if want != nil {
			m.Campaigned(now(), *want)
		}
		m.Status(st.Role, st.Epoch)
		if !apply(m.Tick(now())) {
			return
		}
		a.mu.Lock()
		a.session, a.registering = m.Session(), m.Registering()
		a.mu.Unlock()

		wait := time.Hour
		if d := m.Deadline(); d != ^uint64(0) {
			wait = time.Until(base.Add(time.Duration(d) * unit))
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(wait)
		select {
		case <-a.ctx.Done():
			return
		case done := <-a.leaveNaming:
			// A clean stop: end the session at once (the naming node
			// records member-left and removes our registration), and
			// keep away from the naming node from now on.
			var err error
			if session := m.Session(); session != 0 {
				ctx, cancel := context.WithTimeout(a.ctx, namingCallWait)
				err = a.naming.Leave(ctx, api.LeaveRequest{Group: a.cfg.Group, ID: a.cfg.ID, Session: session})
				cancel()
			}
			done <- err
			return
		case <-timer.C:
		case <-a.namingWake:
		case r := <-results:
			if !apply(r(now())) {
				return
			}
		}
	}
}

// noteRegistered gives the core the epoch of the registered master the
// naming node told us of, as member.NewTerm decides; a term it refuses at
// the end of the term space is counted as a refused input.
func (a *Agent) noteRegistered(m *api.Registration) {
	if m != nil {
		if err := api.CheckLearnedTerm(m.Epoch.Term); err != nil {
			a.noteRefused("naming node's registration", err)
			return
		}
	}
	a.mu.Lock()
	known := a.status.MaxTerm
	a.mu.Unlock()
	if e, ok := member.NewTerm(m, known); ok {
		a.do(func() {
			a.node.SeeEpoch(e)
			a.handleReady()
		})
	}
}

// Session is the member session at the naming node (0 before the join).
func (a *Agent) Session() uint64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.session
}

// Registering reports whether a registration of this master's current
// epoch awaits its answer (a decision at the naming node may be pending),
// including one the naming loop has not taken up yet. A registration that
// keeps failing is not "registering": the self-monitor then trusts what the
// naming node says.
func (a *Agent) Registering() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.status.Role != api.RoleMaster {
		return false
	}
	if a.regWant != nil {
		return *a.regWant == a.status.Epoch
	}
	return a.registering
}
