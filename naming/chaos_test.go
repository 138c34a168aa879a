package naming

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/mastership/mastership/naming/api"
)

// regInput and regOutput are one operation of the history porcupine
// checks: a registration (its final answer, over every retry) or a
// consistent lookup.
type regInput struct {
	group  string
	lookup bool
	id     uint64
}

type regOutput struct {
	master uint64
}

// registryModel is porcupine's model of one group's retained master. A
// registration moves the group to the master its answer names (the
// decision it took part in); a consistent lookup must return the master
// at its linearization point.
var registryModel = porcupine.Model{
	// Each group is its own object.
	Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
		by := map[string][]porcupine.Operation{}
		var order []string
		for _, op := range history {
			g := op.Input.(regInput).group
			if by[g] == nil {
				order = append(order, g)
			}
			by[g] = append(by[g], op)
		}
		out := make([][]porcupine.Operation, 0, len(order))
		for _, g := range order {
			out = append(out, by[g])
		}
		return out
	},
	Init: func() any { return uint64(0) },
	Step: func(state, input, output any) (bool, any) {
		in, out := input.(regInput), output.(regOutput)
		if in.lookup {
			return out.master == state.(uint64), state
		}
		return true, out.master
	},
	DescribeOperation: func(input, output any) string {
		in, out := input.(regInput), output.(regOutput)
		if in.lookup {
			return fmt.Sprintf("lookup -> %d", out.master)
		}
		return fmt.Sprintf("register %d -> %d", in.id, out.master)
	},
}

// The naming cluster under a leader that keeps dying: three nodes, and in
// every round eight members registering competing masters of one group at
// once while a ninth goroutine looks the master up (consistent reads);
// every few rounds the leader is stopped, and started again some rounds
// later. Every round ends with exactly one retained master, the one the
// policy picks, every member hears of it, and the history of answers is
// linearizable. MASTERSHIP_NAMING_CHAOS_ROUNDS sets the rounds (default
// 200).
func TestClusterChaos(t *testing.T) {
	rounds := 200
	if s := os.Getenv("MASTERSHIP_NAMING_CHAOS_ROUNDS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			t.Fatalf("MASTERSHIP_NAMING_CHAOS_ROUNDS=%q: want a count", s)
		}
		rounds = n
	}
	const agents = 8
	c := newTestCluster(t, 3, 86)
	for i := range c.nodes {
		cfg := c.config(i)
		cfg.SessionTTL, cfg.RegistrationTTL, cfg.RestartGrace = time.Minute, time.Minute, 2*time.Minute
		cfg.ConflictWindow = 30 * time.Millisecond
		c.stop(i)
		c.start(i, cfg)
	}
	c.leader()
	cl := c.client()
	fakes := make([]*fakeAgent, agents)
	for i := range fakes {
		fakes[i] = newFakeAgent(t)
	}
	ctx := context.Background()
	down := -1 // the node stopped, if any
	kills := 0
	var history []porcupine.Operation
	var hmu sync.Mutex
	record := func(op porcupine.Operation) {
		hmu.Lock()
		history = append(history, op)
		hmu.Unlock()
	}
	clock := time.Now()
	now := func() int64 { return time.Since(clock).Nanoseconds() }
	// until retries a call while the cluster has no leader.
	until := func(what string, f func() error) error {
		deadline := time.Now().Add(30 * time.Second)
		for {
			err := f()
			if err == nil || !errors.Is(err, api.ErrUnavailable) || time.Now().After(deadline) {
				if err != nil {
					return fmt.Errorf("%s: %w", what, err)
				}
				return nil
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	for r := 0; r < rounds; r++ {
		group := fmt.Sprintf("chaos-%d", r)
		policy, want := api.PolicyLowestID, uint64(1)
		if r%2 == 1 {
			policy, want = api.PolicyPriority, uint64(agents)
		}
		sessions := make([]uint64, agents)
		for i := range sessions {
			id := uint64(i + 1)
			err := until("join", func() error {
				// A join retried after its answer was lost carries the
				// same proof: it gets the session it opened back.
				jr, err := cl.Join(ctx, api.JoinRequest{Group: group, ID: id, Addr: fakes[i].addr(), Priority: i, Policy: string(policy),
					Proof: []byte(fmt.Sprintf("%s/%d", group, id))})
				sessions[i] = jr.Session
				return err
			})
			if err != nil {
				t.Fatalf("round %d: %v", r, err)
			}
		}
		// Every fifth round the leader stops mid-round; two rounds later
		// it comes back.
		killAt := -1
		if r%5 == 2 && down < 0 {
			killAt = r
		}
		var wg sync.WaitGroup
		errs := make([]error, agents)
		for i := 0; i < agents; i++ {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				id := uint64(i + 1)
				call := now()
				var resp api.RegisterResponse
				errs[i] = until("register", func() error {
					var err error
					resp, err = cl.Register(ctx, api.RegisterRequest{Group: group, ID: id, Addr: fakes[i].addr(),
						Session: sessions[i], Epoch: api.Epoch{Term: 1}})
					return err
				})
				if errs[i] == nil {
					record(porcupine.Operation{ClientId: i, Input: regInput{group: group, id: id}, Call: call,
						Output: regOutput{master: resp.Master.ID}, Return: now()})
				}
			}(i)
		}
		lookups := make(chan struct{})
		go func() {
			defer close(lookups)
			for k := 0; k < 4; k++ {
				call := now()
				look, err := cl.Lookup(ctx, api.LookupRequest{Group: group, Read: api.ReadConsistent})
				if err == nil {
					m := uint64(0)
					if look.Master != nil {
						m = look.Master.ID
					}
					record(porcupine.Operation{ClientId: agents, Input: regInput{group: group, lookup: true}, Call: call,
						Output: regOutput{master: m}, Return: now()})
				}
				time.Sleep(10 * time.Millisecond)
			}
		}()
		if killAt == r {
			time.Sleep(5 * time.Millisecond)
			down = c.leader()
			c.stop(down)
			kills++
		}
		wg.Wait()
		<-lookups
		if err := errors.Join(errs...); err != nil {
			t.Fatalf("round %d: %v", r, err)
		}
		var look api.LookupResponse
		err := until("lookup", func() error {
			var err error
			look, err = cl.Lookup(ctx, api.LookupRequest{Group: group, Read: api.ReadConsistent})
			return err
		})
		if err != nil || look.Master == nil || look.Master.ID != want {
			t.Fatalf("round %d (%s): retained %+v (%v), want %d", r, policy, look.Master, err, want)
		}
		for i, fa := range fakes {
			waitFor(t, 30*time.Second, fmt.Sprintf("round %d: member %d notified of %d", r, i+1, want), func() bool {
				return fa.notified(group, want)
			})
		}
		if down >= 0 && killAt != r && r%5 == 4 {
			cfg := c.config(down)
			cfg.SessionTTL, cfg.RegistrationTTL, cfg.RestartGrace = time.Minute, time.Minute, 2*time.Minute
			cfg.ConflictWindow = 30 * time.Millisecond
			c.start(down, cfg)
			down = -1
		}
	}
	res, info := porcupine.CheckOperationsVerbose(registryModel, history, 30*time.Second)
	if res != porcupine.Ok {
		path := t.TempDir() + "/history.html"
		porcupine.VisualizePath(registryModel, info, path)
		t.Fatalf("history of %d operations not linearizable (%v); see %s", len(history), res, path)
	}
	t.Logf("%d rounds, %d leader kills, %d operations linearizable", rounds, kills, len(history))
}

// The model finds a stale read: a consistent lookup that, after a
// registration's answer named master 2, still returns 1.
func TestRegistryModelCatchesStaleRead(t *testing.T) {
	ops := []porcupine.Operation{
		{ClientId: 0, Input: regInput{group: "g", id: 1}, Call: 0, Output: regOutput{master: 1}, Return: 10},
		{ClientId: 1, Input: regInput{group: "g", id: 2}, Call: 20, Output: regOutput{master: 2}, Return: 30},
		{ClientId: 2, Input: regInput{group: "g", lookup: true}, Call: 40, Output: regOutput{master: 1}, Return: 50},
	}
	if res := porcupine.CheckOperations(registryModel, ops); res {
		t.Fatal("a stale consistent read passed the model")
	}
	ops[2].Output = regOutput{master: 2}
	if !porcupine.CheckOperations(registryModel, ops) {
		t.Fatal("a fresh read failed the model")
	}
}
