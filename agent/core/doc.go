// Package core is the peer agent's replica core: roles (master, back-up,
// candidate, syncing, recovering, quarantined), replication of client
// requests stamped with (epoch, index), staggered elections, and epoch
// fencing. It is pure, as etcd's raft is: no goroutines, clocks, sockets or
// disk. The runtime (package agent) calls Tick, Step, Propose and SetView
// from one goroutine and carries out each Ready: persist the hard state and
// entries, send the messages, answer the results, register, download state.
//
// # Rules
//
//   - Elections: a back-up whose master is silent (no append for
//     ElectionTicks, or dead in the gossip view) campaigns after
//     rank x StaggerTicks more, where rank orders the live back-ups by
//     priority then ID. Voters refuse while they still hear a master, so one
//     wave of 2(N-1) messages elects the best-ranked live back-up.
//     A strict candidate needs a majority of the known members; an
//     available one the votes of every member it can reach.
//   - Replication: strict commits an entry of the master's epoch once a
//     majority holds it; available once every reachable back-up holds it or
//     WriteTicks passed. Entries apply at the commit index everywhere; the
//     master answers a client once its entry applied. A master's new entry
//     is in the Ready that first sends or commits it (not necessarily the
//     one after its Propose): a Ready never sends nor answers what it does
//     not also hand over to store, and Stored tells how far that is.
//   - Serving: a strict master reads while its registration and its lease
//     (a majority heard within two fifths of the election timeout) hold,
//     and takes writes while its registration holds and a majority answered
//     within an election timeout. Any master holds at most MaxPendingWrites
//     proposals (MaxPendingBytes of operations) unanswered. A proposal is
//     answered with its own entry's result once that applied, or fails
//     (ErrNotMaster: it may yet commit elsewhere) when its master steps
//     down, but for a strict re-election of itself, which it waits for.
//   - Fencing: an append from an older epoch is refused with ours. A strict
//     master that sees a newer epoch steps down; an available one, and an
//     available back-up whose master is alive, raise an event for the
//     self-monitor instead: the naming node decides whom the group follows.
//   - A back-up whose log left the master's, or that is new or far behind,
//     syncs: the runtime downloads the master's state while the role is
//     syncing (package catchup; Ready.Sync names the master).
//
// # Layout
//
// node.go holds the Node, Ready and the entry points (Tick, Step, SetView);
// roles.go each role's tick and step, set when the role is taken;
// rules.go the one value, chosen by NewNode, that holds every decision the
// two modes take differently; election.go, replication.go, handover.go,
// lease.go and recovery.go the rest by concern.
//
// # Usage
//
//	n := core.NewNode(cfg, kv.NewStore(), rlog.New(), core.HardState{})
//	for {
//		select {
//		case <-ticker.C:
//			n.Tick()
//		case m := <-inbound:
//			n.Step(m)
//		}
//		rd := n.Ready()
//		// persist rd.HardState and rd.Entries, then send rd.Messages ...
//	}
package core
