package agent

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/mastership/mastership/agent/core"
	"github.com/mastership/mastership/naming/api"
)

// joinNaming makes the agent a member of its group at the naming node.
func (a *Agent) joinNaming(ctx context.Context, timeout time.Duration) (*api.JoinResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	resp, err := a.naming.Join(ctx, api.JoinRequest{Group: a.cfg.Group, ID: a.cfg.ID, Addr: a.advertisedAPI(),
		Priority: a.cfg.Priority, Mode: a.cfg.Mode, Policy: a.cfg.Policy, TTL: a.cfg.SessionTTL})
	if err != nil {
		return nil, err
	}
	return &resp, nil
}

// runSession keeps the agent a member of its group at the naming node: it
// joins (first is the join Start made, if it got through), renews at a
// third of the TTL, and joins again when the session was lost (a
// naming-node restart past its grace, a long pause). A join refused
// because another agent holds our ID ends the agent (Fatal).
func (a *Agent) runSession(first *api.JoinResponse) {
	backoff := 50 * time.Millisecond
	for a.ctx.Err() == nil {
		resp, err := first, error(nil)
		first = nil
		if resp == nil {
			resp, err = a.joinNaming(a.ctx, 2*time.Second)
		}
		if errors.Is(err, api.ErrIDTaken) {
			a.logger.Error("another agent holds this agent's ID at the naming node; stopping", "error", err)
			a.failFatal(fmt.Errorf("%w: %v", ErrIDTaken, err))
			return
		}
		if err != nil {
			if errors.Is(err, api.ErrMismatch) || errors.Is(err, api.ErrInvalid) {
				a.logger.Error("naming node refused to make us a member", "error", err)
			} else {
				a.logger.Debug("join naming node", "error", err)
			}
			if !a.sleep(backoff) {
				return
			}
			backoff = min(2*backoff, time.Second)
			continue
		}
		backoff = 50 * time.Millisecond
		a.mu.Lock()
		a.session = resp.Session
		a.mu.Unlock()
		a.logger.Debug("member session opened", "ttl", resp.TTL)
		a.noteRegistered(resp.Master)
		for a.sleep(resp.TTL / 3) {
			ctx, cancel := context.WithTimeout(a.ctx, resp.TTL/3)
			r, err := a.naming.Renew(ctx, api.RenewRequest{Group: a.cfg.Group, ID: a.cfg.ID, Session: resp.Session})
			cancel()
			if errors.Is(err, api.ErrSessionExpired) || errors.Is(err, api.ErrNotFound) {
				a.logger.Warn("member session lost; joining again")
				break
			}
			if err == nil {
				a.noteRegistered(r.Master)
			}
		}
	}
}

// noteRegistered keeps the registered master the naming node told us of, for
// status; the self-monitor asks the naming node itself.
// The registered epoch is also learnt by the core: the naming node is the
// one source an agent trusts for terms far above its own (a new agent of
// an old group), since every other input is bounded by what it knows.
func (a *Agent) noteRegistered(m *api.Registration) {
	a.mu.Lock()
	a.namingMaster = m
	known := a.status.MaxTerm
	a.mu.Unlock()
	if m != nil && m.Epoch.Term > known {
		a.do(func() {
			a.node.SeeEpoch(m.Epoch)
			a.handleReady()
		})
	}
}

func (a *Agent) sleep(d time.Duration) bool {
	select {
	case <-a.ctx.Done():
		return false
	case <-time.After(d):
		return true
	}
}

// Session is the member session at the naming node (0 before the join).
func (a *Agent) Session() uint64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.session
}

// register registers epoch at the naming node and renews it while we are
// master at that epoch. Each outcome goes to the core: a strict master
// serves only while its registration holds. A registration that is refused,
// or not retained, raises the event trigger.
func (a *Agent) register(epoch api.Epoch) {
	ttl := a.cfg.RegistrationTTL
	backoff := 20 * time.Millisecond
	for a.ctx.Err() == nil {
		a.mu.Lock()
		current := a.regFor == epoch && a.status.Role == api.RoleMaster && a.status.Epoch == epoch
		session := a.session
		a.mu.Unlock()
		if !current {
			return
		}
		if session == 0 {
			// A registration is bound to our member session: wait for the
			// session loop to open one.
			if !a.sleep(backoff) {
				return
			}
			backoff = min(2*backoff, ttl/3)
			continue
		}
		started := time.Now()
		a.mu.Lock()
		a.regInFlight = true
		a.mu.Unlock()
		ctx, cancel := context.WithTimeout(a.ctx, 2*time.Second)
		resp, err := a.naming.Register(ctx, api.RegisterRequest{Group: a.cfg.Group, ID: a.cfg.ID, Addr: a.advertisedAPI(),
			Epoch: epoch, Priority: a.cfg.Priority, Session: session, TTL: ttl, Mode: a.cfg.Mode, Policy: a.cfg.Policy})
		cancel()
		a.mu.Lock()
		a.regInFlight = false
		a.mu.Unlock()
		switch {
		case err == nil && resp.Accepted:
			// Valid until the TTL from when we asked, less a margin for
			// the naming node's clock running ahead.
			valid := ttl*9/10 - time.Since(started)
			a.mu.Lock()
			a.regOK, a.regRefused, a.regAt = true, false, time.Now()
			a.mu.Unlock()
			a.Do(func(n *core.Node) {
				n.Registered(epoch, true, n.Now()+uint64(valid/a.cfg.TickUnit))
			})
			backoff = 20 * time.Millisecond
			if !a.sleep(ttl / 4) {
				return
			}
			continue
		case err == nil:
			// The self-monitor takes it from here (figure 8: a master that
			// is not the retained one recovers); registering again would
			// only start another conflict.
			a.logger.Warn("registration not retained", "retained", resp.Master.ID, "epoch", resp.Master.Epoch)
			a.notRegistered(epoch, "registration not retained: master is "+resp.Master.Epoch.String())
			return
		case errors.Is(err, api.ErrRefused) || errors.Is(err, api.ErrMismatch) || errors.Is(err, api.ErrInvalid):
			a.logger.Warn("registration refused", "error", err)
			a.notRegistered(epoch, "registration refused: "+err.Error())
			return
		case errors.Is(err, api.ErrSessionExpired):
			// The session loop is joining again; retry with the new one.
		default:
			a.logger.Debug("register at naming node", "error", err)
		}
		if !a.sleep(backoff) {
			return
		}
		backoff = min(2*backoff, ttl/3)
	}
}

// Registering reports whether a registration of this master's current
// epoch is being asked right now (a decision at the naming node may be
// pending). A registration that keeps failing is not "registering": the
// self-monitor then trusts what the naming node says.
func (a *Agent) Registering() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.status.Role == api.RoleMaster && a.regFor == a.status.Epoch && !a.regOK && !a.regRefused && a.regInFlight
}

func (a *Agent) notRegistered(epoch api.Epoch, why string) {
	a.mu.Lock()
	a.regOK, a.regRefused = false, true
	a.mu.Unlock()
	a.Do(func(n *core.Node) { n.Registered(epoch, false, 0) })
	if a.opts.Monitor != nil {
		a.do(func() { a.opts.Monitor.Event("registration-refused", why) })
	}
}
