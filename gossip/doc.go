// Package gossip is the peer agent's membership layer, built on
// hashicorp/memberlist: the membership view with each member's metadata and
// health, master claims broadcast to every member and merged on push/pull,
// detection of competing claims, and serf-style reconnection so that the two
// sides of a healed partition merge with no operator action. Sub-package
// faulty injects partitions, drops and delays for tests and demos.
//
// # Usage
//
//	cfg := gossip.DefaultConfig("lan")
//	cfg.Group, cfg.ID = "orders", 3
//	cfg.BindAddr = "10.0.0.3:7946"
//	cfg.Join = []string{"10.0.0.1:7946", "10.0.0.2:7946"}
//	cfg.Meta = gossip.Meta{Priority: 10, Role: api.RoleBackup, API: "10.0.0.3:8946"}
//	cfg.Logger = logger
//	g, err := gossip.New(cfg, agentEvents) // agentEvents implements gossip.Events
//	if err != nil { ... }
//	if _, err := g.Join(); errors.Is(err, gossip.ErrDuplicateID) {
//		// another agent runs with this group and ID: exit
//	} // any other join error: the reconnect loop keeps trying
//
//	// on becoming master at epoch e:
//	g.UpdateMeta(gossip.Meta{Role: api.RoleMaster, Epoch: e, Master: 3, API: apiAddr})
//	g.Claim(gossip.Claim{Epoch: e, API: apiAddr})
//	// on stepping down: UpdateMeta with the new role withdraws the claim.
//
//	g.Members()          // view sorted by ID, with health alive|suspect|dead
//	g.Claims("orders")   // live claims of the group
//	g.Leave(time.Second) // then g.Shutdown()
//
// Events.CompetingClaim(theirs) is called when this agent is master and a
// live claim of another agent of its group arrives, or is already known when
// it becomes master: the agent raises its event trigger, sends a trigger to
// theirs.API and asks the naming node to re-check the group.
//
// # Names and metadata
//
// The memberlist node name is NodeName(group, ID) = "group/ID". A node whose
// metadata does not decode, does not validate or names another node is
// refused (alive delegate). A node announcing a name already alive at
// another address is refused by memberlist (conflict delegate): Join
// returns ErrDuplicateID and shuts the newcomer down; members already in the
// cluster get an EventConflict. A dead member's name is not reclaimed before
// memberlist forgets it (DeadNodeReclaimTime is 0), so an agent restarted on
// another address with the same ID waits until then; on the same address it
// simply rejoins.
//
// # Claims
//
// Each agent's newest claim is kept per (group, ID): an older epoch is
// ignored, a withdrawal beats the claim at its epoch, a newer epoch beats
// both (mergeClaim). Accepted claims are re-broadcast through memberlist's
// TransmitLimitedQueue (a newer claim of the same agent replaces a queued
// older one) and sent whole in every push/pull exchange. Claims of members
// seen dead or left are dropped (their epoch still fences older claims) and
// revived when the member comes back with its claim. A claim in this
// agent's own name that it does not hold is refuted with a withdrawal.
//
// # Suspect
//
// memberlist does not tell its delegates that a node is suspect (its
// Node.State is not filled in for delegates either), nor whether a node it
// reports gone was dead or left. The package derives both: a member is
// suspect when memberlist still counts it alive but no probe of it has been
// acked (PingDelegate.NotifyPingComplete) for Config.SuspectAfter, by
// default 2 x (members - 1) probe intervals plus the probe timeout, a bound
// memberlist's round-robin probing keeps for a healthy member; it is alive
// again on the next ack, dead on memberlist's NotifyLeave. A member that
// calls Leave first announces it in its metadata, so the others record
// "left" (forget it) instead of "dead" (retry it).
//
// # Reconnect
//
// Every ReconnectInterval (plus up to 50% jitter from Config.Rand) the
// reconnect goroutine joins one dead member picked at random, and the join
// addresses when this agent knows fewer members alive than it once did or
// is alone (reconnectTargets). Dead members are retried until
// ReconnectTimeout, then forgotten.
//
// # Goroutines
//
// Besides memberlist's own (which call the delegates), New starts:
//   - the dispatcher: owns the event queue and is the only caller of Events
//     methods, one at a time, in order;
//   - the maintenance goroutine: every PollInterval derives suspect members
//     and forgets old dead ones (it owns nothing but its timer; the view is
//     under Gossip's mutex);
//   - the reconnect goroutine: owns Config.Rand and calls memberlist Join.
//
// All stop at Shutdown. Gossip's mutex is a leaf: it is never held while
// calling memberlist or Events, since memberlist holds its node lock while
// calling the delegates.
package gossip
