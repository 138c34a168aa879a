// Package faulty injects network faults between Mastership agents, for tests
// and demos: a memberlist.Transport wrapper (gossip) and a net dialer
// wrapper (the agents' RPC), both driven by one Faults controller per node.
//
// Faults: Partition(peers...) cuts this node from those addresses in both
// directions, Drop(p) loses outgoing packets and dials at random (from the
// seeded *rand.Rand given to New, so a failing run replays), Delay(d) holds
// outgoing traffic in user space, Stall(peers...) makes the RPC dialer's
// connections to those peers hang (accepted, never answered, as with a hung
// process) while gossip still sees them alive, Heal() removes everything,
// Status() is a snapshot with counters.
//
// Peers are addresses: "host:port" (one memberlist or RPC endpoint) or
// "host" (every port of that host). Incoming packets carry the sender's
// gossip address and are filtered exactly; an accepted TCP stream only shows
// the dialer's ephemeral port, so it is matched by "host" entries only, and
// the RPC Dialer filters the dialing side only. The design is therefore:
// apply a partition on both sides (each node partitions the other side),
// which is what a test harness and `mastership fault` do, and what iptables
// rules on each host would do. Give each node its own 127.0.0.x address and
// "host" entries work one-sided too.
//
// Usage:
//
//	f := faulty.New(rand.New(rand.NewSource(seed)))
//	cfg.WrapTransport = func(t memberlist.NodeAwareTransport) memberlist.Transport {
//		return faulty.NewTransport(t, f)
//	}
//	rpcDialer := faulty.NewDialer(f) // DialContext for the agent's RPC client
//	f.Partition("127.0.0.14", "127.0.0.15")
//	f.Heal()
//
// For an in-process cluster, Network keeps one Faults per node and applies
// partitions on both sides:
//
//	nw := faulty.NewNetwork(seed) // print nw.Seed() on failure
//	f1 := nw.Node("127.0.0.11")   // give it to node 1's Transport and Dialer
//	nw.Partition([]string{"127.0.0.11", "127.0.0.12"}, []string{"127.0.0.13"})
//	nw.Heal()
//
// Goroutines: each Transport runs two, one filtering the wrapped transport's
// packet channel and one its stream channel; both stop at Shutdown. Delayed
// packets are sent from time.AfterFunc timers.
package faulty
