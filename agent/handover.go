package agent

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/mastership/mastership/agent/core"
	"github.com/mastership/mastership/agent/hook"
	"github.com/mastership/mastership/agent/wire"
	"github.com/mastership/mastership/naming/api"
)

// ErrHandoverFailed means a handover was started but the target did not
// take mastership over in time: this agent serves again as master.
var ErrHandoverFailed = errors.New("agent: handover did not complete")

// electionTimeout is the wall time of the core's election timeout.
func (a *Agent) electionTimeout() time.Duration {
	return time.Duration(a.cfg.ElectionTicks) * a.cfg.TickUnit
}

// HandOver moves mastership from this agent, the master, to the member to
// (0: the best-ranked one that qualifies): an operator's switchover (pin:
// priorities do not move mastership away from the new master until the
// next election) or a master that leaves. It returns once this agent
// follows the target at a newer epoch. A refusal (core.ErrHandover, or
// core.ErrNotMaster) changed nothing; ErrHandoverFailed means the target
// did not take over within two election timeouts, and this agent serves
// again. The master takes no write from the start of the handover to its
// end: Switchover.GapMS says for how long.
func (a *Agent) HandOver(ctx context.Context, to uint64, pin bool) (wire.Switchover, error) {
	var target uint64
	var herr error
	from := a.Status()
	started := time.Now()
	if err := a.do(func() {
		target, herr = a.node.HandOver(to, pin)
		a.handleReady()
	}); err != nil {
		return wire.Switchover{}, err
	}
	if herr != nil {
		return wire.Switchover{}, herr
	}
	a.logger.Info("handing mastership over", "to", target, "switchover", pin)
	ctx, cancel := context.WithTimeout(ctx, 2*a.electionTimeout()+time.Second)
	defer cancel()
	for {
		st, changed := a.statusAndChange()
		if st.Role != api.RoleMaster && st.Master == target && from.Epoch.Less(st.Epoch) {
			return wire.Switchover{Group: a.cfg.Group, From: a.cfg.ID, To: target, Epoch: st.Epoch,
				GapMS: float64(time.Since(started).Microseconds()) / 1000}, nil
		}
		if st.Role == api.RoleMaster && st.Transfer == 0 && time.Since(started) > a.cfg.TickUnit {
			return wire.Switchover{}, fmt.Errorf("%w: %d did not take over; %d serves again", ErrHandoverFailed, target, a.cfg.ID)
		}
		select {
		case <-changed:
		case <-time.After(a.cfg.TickUnit):
		case <-ctx.Done():
			return wire.Switchover{}, fmt.Errorf("%w: %d has not taken over after %s (now %s following %d)",
				ErrHandoverFailed, target, time.Since(started).Round(time.Millisecond), st.Role, st.Master)
		}
	}
}

// serveSwitchover is POST /v1/switchover: an operator's planned move of
// mastership (HandOver, pinned). On a back-up it answers 421 naming the
// master, as a write would.
func (a *Agent) serveSwitchover(w http.ResponseWriter, r *http.Request) {
	fail := func(status int, code, msg string) {
		body := wire.Error{Code: code, Message: msg}
		if st := a.Status(); code == wire.CodeNotMaster && st.Master != 0 && st.Master != a.cfg.ID {
			body.Master, body.MasterAddr = st.Master, a.PeerAPI(st.Master)
		}
		writeJSON(w, status, body)
	}
	body, err := readBody(w, r)
	if err != nil {
		e := api.ToError(err)
		fail(e.Code.HTTPStatus(), string(e.Code), e.Message)
		return
	}
	var req wire.SwitchoverRequest
	if err := decodeJSON(body, &req, "switchover request"); err != nil {
		fail(http.StatusBadRequest, string(api.CodeInvalid), api.ToError(err).Message)
		return
	}
	if req.Group != "" && req.Group != a.cfg.Group {
		fail(http.StatusBadRequest, string(api.CodeInvalid), fmt.Sprintf("agent %d is in group %q, not %q", a.cfg.ID, a.cfg.Group, req.Group))
		return
	}
	sw, err := a.HandOver(r.Context(), req.To, true)
	switch {
	case err == nil:
		writeJSON(w, http.StatusOK, sw)
	case errors.Is(err, core.ErrNotMaster):
		fail(http.StatusMisdirectedRequest, wire.CodeNotMaster, fmt.Sprintf("agent %d is not the master", a.cfg.ID))
	case errors.Is(err, core.ErrHandover):
		fail(http.StatusConflict, string(api.CodeRefused), err.Error())
	default:
		fail(http.StatusServiceUnavailable, string(api.CodeUnavailable), err.Error())
	}
}

// gated tells whether promotions wait for a gate (pre-promote).
func (a *Agent) gated() bool { return a.cfg.PrePromote != "" || a.opts.PrePromote != nil }

// runGate runs the promotion gate of the mastership at epoch off the loop
// (the Go callback, then the executable, each vetoing on failure) and
// gives the core its answer. Run only.
func (a *Agent) runGate(epoch api.Epoch) {
	s := hook.State{Role: hook.RoleMaster, Group: a.cfg.Group, ID: a.cfg.ID, Epoch: epoch, Master: a.cfg.ID,
		MasterAddr: a.advertisedAPI(), Previous: a.hooks.LastRole()}
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		ok := true
		// One at a time with the role hook: a gate must not probe the
		// service while the hook reconfigures it.
		a.hooks.Exclusive(func() {
			if f := a.opts.PrePromote; f != nil {
				o := a.callGate(f, s)
				a.hooks.Record(o)
				ok = o.OK()
			}
			if ok && a.cfg.PrePromote != "" {
				o := hook.Exec(a.ctx, "pre-promote", a.cfg.PrePromote, s, a.cfg.HookTimeout)
				a.hooks.Record(o)
				ok = o.OK()
			}
		})
		if a.ctx.Err() != nil {
			return
		}
		if ok {
			a.logger.Info("promotion gate passed", "epoch", epoch)
		} else {
			a.logger.Warn("promotion vetoed by the gate; staying a back-up", "epoch", epoch, "backoff", a.cfg.PromoteBackoff)
		}
		a.do(func() {
			a.node.Promote(epoch, ok)
			a.handleReady()
		})
	}()
}

// callGate calls the Go promotion gate, bounded by HookTimeout: a callback
// that does not return in time is a veto (it keeps running; its answer is
// dropped).
func (a *Agent) callGate(f func(hook.State) error, s hook.State) hook.Outcome {
	o := hook.Outcome{Hook: "pre-promote callback", Role: s.Role, Epoch: s.Epoch, Start: time.Now()}
	done := make(chan error, 1)
	go func() { done <- f(s) }()
	t := time.NewTimer(a.cfg.HookTimeout)
	defer t.Stop()
	select {
	case err := <-done:
		if err != nil {
			o.ExitCode, o.Error = -1, err.Error()
		}
	case <-t.C:
		o.ExitCode, o.TimedOut, o.Error = -1, true, fmt.Sprintf("no answer within %s", a.cfg.HookTimeout)
	case <-a.ctx.Done():
		o.ExitCode, o.Error = -1, "the agent stopped"
	}
	o.DurationMS = float64(time.Since(o.Start).Microseconds()) / 1000
	return o
}
