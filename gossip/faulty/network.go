package faulty

import (
	"math/rand"
	"sort"
	"sync"
)

// Network holds the Faults of every node of an in-process cluster, keyed by
// the node's address (gossip host:port, or a bare host when each node has
// its own 127.0.0.x), and applies partitions on both sides as the package
// design requires. Each node's random source is derived from the network's
// seed and the order nodes were added, so a printed seed replays the drops.
type Network struct {
	mu    sync.Mutex
	seed  int64
	nodes map[string]*Faults
	order []string
	rand  *rand.Rand
}

// NewNetwork returns an empty network drawing its randomness from seed.
func NewNetwork(seed int64) *Network {
	return &Network{seed: seed, nodes: make(map[string]*Faults), rand: rand.New(rand.NewSource(seed))}
}

// Seed returns the seed the network was made with, to print on failure.
func (n *Network) Seed() int64 { return n.seed }

// Node returns the Faults of the node at addr, creating it on first use.
// Give the same Faults to the node's Transport and RPC Dialer.
func (n *Network) Node(addr string) *Faults {
	n.mu.Lock()
	defer n.mu.Unlock()
	if f, ok := n.nodes[addr]; ok {
		return f
	}
	f := New(rand.New(rand.NewSource(n.rand.Int63())))
	n.nodes[addr] = f
	n.order = append(n.order, addr)
	return f
}

// Partition splits the nodes into the given sides: every node of a side is
// cut from every node of the other sides, on both ends. Nodes named in no
// side form one more side, "the rest". Partition adds to earlier
// partitions; Heal removes them.
func (n *Network) Partition(sides ...[]string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	sideOf := map[string]int{}
	for _, a := range n.order {
		sideOf[a] = -1
	}
	for i, s := range sides {
		for _, a := range s {
			sideOf[a] = i
		}
	}
	for a, sa := range sideOf {
		f, ok := n.nodes[a]
		if !ok {
			continue // named but not a node of this network
		}
		for b, sb := range sideOf {
			if sa != sb {
				f.Partition(b)
			}
		}
	}
}

// Heal removes every fault from every node.
func (n *Network) Heal() {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, f := range n.nodes {
		f.Heal()
	}
}

// Status returns every node's Status, by address.
func (n *Network) Status() map[string]Status {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := make(map[string]Status, len(n.nodes))
	for a, f := range n.nodes {
		out[a] = f.Status()
	}
	return out
}

// Addrs returns the nodes' addresses, sorted.
func (n *Network) Addrs() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := append([]string(nil), n.order...)
	sort.Strings(out)
	return out
}
