package agent

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/mastership/mastership/agent/hook"
	"github.com/mastership/mastership/agent/wire"
	"github.com/mastership/mastership/gossip"
	"github.com/mastership/mastership/naming/api"
)

// checking tells whether the agent checks its managed service.
func (a *Agent) checking() bool { return a.cfg.Check != "" || a.cfg.CheckHTTP != "" }

// serviceHealth is the health gossip announces: "" when no check runs;
// unhealthy until the first check passed (a restarted agent whose service
// is down must not campaign or take a handover in the meantime).
func (a *Agent) serviceHealth() string {
	if !a.checking() {
		return ""
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.service.Healthy {
		return gossip.ServiceHealthy
	}
	return gossip.ServiceUnhealthy
}

// ServiceHealth is the managed service's health as the checks see it, or
// nil when the agent runs no check.
func (a *Agent) ServiceHealth() *wire.ServiceHealth {
	if !a.checking() {
		return nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	h := a.service
	return &h
}

// runHealth checks the managed service every CheckInterval (hook.Health
// decides): a change of health goes to the core and to gossip, and a
// master that is unhealthy hands over to the best healthy back-up in sync,
// again at each failed check until one takes over.
func (a *Agent) runHealth() {
	t := time.NewTicker(a.cfg.CheckInterval)
	defer t.Stop()
	h := hook.Health{Failures: a.cfg.CheckFailures}
	for {
		select {
		case <-a.ctx.Done():
			return
		case <-t.C:
		}
		o := a.checkOnce()
		healthy, changed := h.Observe(o.OK())
		a.mu.Lock()
		a.service.Checks++
		first := a.service.Checks == 1
		a.service.Healthy, a.service.Failures, a.service.Last = healthy, h.Failed(), &o
		a.mu.Unlock()
		if changed || first {
			if healthy {
				a.logger.Info("service healthy", "check", a.checkName())
			} else {
				a.logger.Warn("service unhealthy: no campaign, and a master hands over", "check", a.checkName(),
					"failures", h.Failed(), "error", o.Error, "exit", o.ExitCode, "stderr", o.StderrTail)
			}
			a.do(func() {
				a.node.SetHealthy(healthy)
				a.handleReady()
			})
			select {
			case a.publishCh <- struct{}{}:
			default:
			}
		}
		if st := a.Status(); !healthy && st.Role == api.RoleMaster && st.Transfer == 0 && !a.Paused() {
			ctx, cancel := context.WithTimeout(a.ctx, 2*a.electionTimeout()+time.Second)
			sw, err := a.HandOver(ctx, 0, false)
			cancel()
			if err != nil {
				a.logger.Warn("unhealthy master: no handover yet; serving on", "error", err)
			} else {
				a.logger.Info("unhealthy master handed mastership over", "to", sw.To, "epoch", sw.Epoch, "gap_ms", sw.GapMS)
			}
		}
	}
}

func (a *Agent) checkName() string {
	if a.cfg.Check != "" {
		return a.cfg.Check
	}
	return a.cfg.CheckHTTP
}

// checkOnce runs one check, bounded by CheckInterval.
func (a *Agent) checkOnce() hook.Outcome {
	st := a.Status()
	if a.cfg.Check != "" {
		role, _ := hook.RoleOf(st.Role)
		s := hook.State{Role: role, Group: a.cfg.Group, ID: a.cfg.ID, Epoch: st.Epoch, Master: st.Master}
		return hook.Exec(a.ctx, "check", a.cfg.Check, s, a.cfg.CheckInterval)
	}
	o := hook.Outcome{Hook: "check-http", Role: st.Role.String(), Epoch: st.Epoch, Start: time.Now(), ExitCode: -1}
	ctx, cancel := context.WithTimeout(a.ctx, a.cfg.CheckInterval)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, a.cfg.CheckHTTP, nil)
	if err == nil {
		var resp *http.Response
		if resp, err = a.checkHTTP.Do(req); err == nil {
			b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
			resp.Body.Close()
			if resp.StatusCode/100 == 2 {
				o.ExitCode = 0
			} else {
				o.Error = fmt.Sprintf("HTTP %s", resp.Status)
				o.StderrTail = string(b)
			}
		}
	}
	if err != nil {
		o.Error = err.Error()
	}
	o.DurationMS = float64(time.Since(o.Start).Microseconds()) / 1000
	return o
}
