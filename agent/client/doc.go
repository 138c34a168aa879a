// Package client is the Go client of the agents' API. Client is the
// client of a group's key-value API: it finds the group's master, sends
// requests to it, retries through failovers and never returns a reply
// from a master older than one it has already seen. API calls one agent's
// API (info, members, divergence records, fault control, keyring); the
// command line, the demo and the naming node's probe use it. The JSON
// shapes of both are package wire's, the ones the agent serves.
//
// # Usage
//
//	c, err := client.New(client.Config{
//		Group:  "orders",
//		Naming: "10.0.0.9:7400",                       // the naming node
//		Agents: []string{"10.0.0.1:7500", "10.0.0.2:7500"}, // fall-back, any agents
//	})
//	if err != nil {
//		return err
//	}
//	defer c.Close()
//	if _, err := c.Put(ctx, "leader", []byte("a")); err != nil {
//		// errors.Is(err, client.ErrRefused): bad input, do not retry.
//		// errors.Is(err, client.ErrNoMaster), client.ErrStaleEpoch or a
//		// deadline: the operation may or may not have taken effect.
//		return err
//	}
//	r, err := c.CAS(ctx, "leader", []byte("a"), false, []byte("b"))
//	if err == nil && !r.OK {
//		fmt.Printf("leader is %q, not a\n", r.Value) // r.Found, r.Value: current state
//	}
//	r, err = c.Get(ctx, "leader") // r.Found, r.Value, r.Epoch
//
//	ag, err := client.NewAPI(client.APIConfig{Addr: "10.0.0.1:7500", Creds: creds})
//	info, _, err := ag.Info(ctx) // info.Role, info.Epoch, info.LastCheck
//	// a reply other than 200 is a *client.StatusError (code, master hint)
//
// # Finding the master
//
// The client asks the naming node for the group's registered master (its
// registration carries the master's API address). When the naming node is
// unreachable or has no master, or its registration is older than the
// newest epoch the client has seen, the client asks the agents it knows
// (Config.Agents, the members the naming node lists, and the members those
// agents list): GET /v1/info gives an agent's role, epoch and master,
// GET /v1/members maps the master's ID to its API address. The master found
// is cached until a request to it fails.
//
// # Retries and fencing
//
// One operation is bounded by Config.Timeout (and the caller's context). A
// "not-master" reply (421) is followed to the master it names; "not-serving"
// and "unavailable" replies (503), time-outs (504) and connection errors are
// retried after a back-off of 10 ms doubling up to 200 ms, with jitter, until
// the deadline. The error at the deadline wraps what the last attempt got.
// A refusal of bad input (400, 413, or a state machine error) wraps
// ErrRefused and is never retried; empty keys, keys over 1024 bytes, values
// over 64 KiB and text that is not valid UTF-8 (the API carries keys and
// values as JSON strings) are refused before anything is sent.
//
// Every reply carries its master's epoch. The client keeps the newest epoch
// it has seen (MaxEpoch, from every reply including refusals and /v1/info)
// and discards any reply at an older epoch: a master that an election or the
// naming node has superseded can never answer a caller of this client, even
// if it still believes it is master. After a discarded reply the client
// looks the master up again.
//
// # Exactly once
//
// Writes (Put, CAS, Delete) carry the client's ID and a sequence number, and
// every retry of a write re-sends the same sequence, so the group applies a
// write once however many times it is sent. The agents remember one
// sequence per client (the last applied; an older one is refused), so the
// client sends one write at a time: concurrent writers of one Client queue
// in the order they call, and the time queued counts against their
// deadline. Use several Clients (distinct IDs) for parallel writes. Reads
// (Get) are not queued; they carry no client ID and are served by the
// master from its state under its lease and registration checks.
//
// # Goroutines
//
// The client starts none. A Client is safe for concurrent use: its sequence
// counter is atomic; its newest epoch, cached master, known agents and
// random source are guarded by one mutex, held only to read or update them.
package client
