// Package recover is the self-monitoring mechanism of every agent (patent
// figures 5 to 10): a time-out mechanism (figure 5: a timer of Count x Unit,
// 100 x 3 ms by default, aligned to common boundaries across the group and
// reset after every check) and an external event mechanism (figure 6: the
// naming node's triggers, competing claims, refused registrations, messages
// with a foreign epoch) both run one detector (figures 7 and 8, Detect,
// pure), and an inconsistent mastership runs the recovery (figures 9 and
// 10): align to the retained master, keep the divergent writes as records,
// download its state, synchronize and verify the digest, then take the
// back-up role. A failed recovery quarantines the agent (it serves nothing
// and retries on the next trigger) or terminates it with exit code 3.
//
// Usage:
//
//	mon := recover.New(recover.Config{Count: cfg.MonitorCount, Unit: cfg.MonitorUnit, OnFailure: cfg.OnFailure})
//	a, err := agent.New(cfg, agent.Options{Monitor: mon})
//	// a.Start() runs mon.Start(ctx, a): one goroutine that alone runs checks
//	// and recoveries; Event is called from any goroutine and never blocks.
package recover
