package sim

import (
	"fmt"

	"github.com/anishathalye/porcupine"
	"github.com/mastership/mastership/agent/core"
	"github.com/mastership/mastership/agent/kv"
	"github.com/mastership/mastership/naming/api"
)

// client issues one operation at a time to the agent it takes for the
// master, following redirects, and records the history.
type client struct {
	id     uint64 // the client ID in requests
	idx    int    // porcupine's client index
	target uint64
	seq    uint64
	next   int64
	n      int

	pending  *pendingOp
	epoch    api.Epoch // newest epoch seen in answers
	redirect int       // redirects followed in a row
}

type pendingOp struct {
	ref      uint64
	agent    uint64
	in       Input
	seq      uint64
	call     int64
	deadline int64
}

func (w *world) tickClock() int64 {
	w.clock++
	return w.clock
}

func (w *world) clientsIdle() bool {
	for _, c := range w.clients {
		if c.pending != nil {
			return false
		}
	}
	return true
}

func (w *world) clientTick() {
	for _, c := range w.clients {
		if p := c.pending; p != nil {
			if w.now >= p.deadline {
				// Timed out: the write may or may not take effect.
				w.unknown(c)
			}
			continue
		}
		if !w.clientsOn || w.now < c.next {
			continue
		}
		w.issue(c)
	}
}

func (w *world) unknown(c *client) {
	p := c.pending
	c.pending = nil
	delete(w.refs, p.ref)
	w.history = append(w.history, porcupine.Operation{ClientId: c.idx, Input: p.in, Call: p.call,
		Output: Output{Unknown: true}, Return: Unreturned})
	c.next = w.now + 1
}

// redirect points the client at the master the agent names, or anywhere.
func (w *world) redirect(c *client, a *simAgent) {
	c.redirect++
	if m := a.node.Master(); m != 0 && m != a.id && c.redirect < 3 {
		c.target = m
	} else {
		c.target = uint64(1 + w.rng.Intn(len(w.agents)))
		c.redirect = 0
	}
	c.next = w.now + 1 + int64(w.rng.Intn(5))
}

func (w *world) issue(c *client) {
	a := w.agent(c.target)
	if !a.live() {
		w.redirect(c, a)
		return
	}
	key := fmt.Sprintf("k%d", w.rng.Intn(w.cfg.Keys))
	in := Input{Key: key}
	switch k := w.rng.Intn(10); {
	case k < 3 && w.cfg.Mode == api.ModeStrict:
		in.Kind = kv.KindGet
	case k < 5:
		in.Kind = kv.KindCAS
		if vals := w.written[key]; len(vals) > 0 && w.rng.Intn(4) > 0 {
			in.Expect = vals[w.rng.Intn(len(vals))]
		} else {
			in.Absent = true
		}
	default:
		in.Kind = kv.KindPut
	}
	if in.Kind != kv.KindGet {
		c.n++
		in.Value = fmt.Sprintf("c%d.%d", c.id, c.n)
	}
	if in.Kind == kv.KindGet {
		// Agent.Execute: a read is served from the state machine when
		// the core allows it.
		if err := a.node.ReadIndex(); err != nil {
			w.redirect(c, a)
			return
		}
		call := w.tickClock()
		v, found := a.sm.Get(key)
		w.seeEpoch(c, a.node.Epoch())
		w.history = append(w.history, porcupine.Operation{ClientId: c.idx, Input: in, Call: call,
			Output: Output{Value: string(v), Found: found}, Return: w.tickClock()})
		c.redirect = 0
		c.next = w.now + int64(w.rng.Intn(4))
		return
	}
	op := kv.Op{Kind: in.Kind, Key: key, Value: []byte(in.Value)}
	if in.Kind == kv.KindCAS {
		op.Expect, op.ExpectAbsent = []byte(in.Expect), in.Absent
	}
	b, err := kv.EncodeOp(op)
	if err != nil {
		panic(fmt.Sprintf("sim: encode %+v: %v", op, err))
	}
	w.nextRef++
	c.seq++
	call := w.tickClock()
	if err := a.node.Propose(w.nextRef, c.id, c.seq, b); err != nil {
		// Refused before entering the log: it never takes effect.
		w.ready(a)
		w.redirect(c, a)
		return
	}
	c.pending = &pendingOp{ref: w.nextRef, agent: a.id, in: in, seq: c.seq, call: call, deadline: w.now + clientTimeout}
	w.refs[w.nextRef] = c
	w.written[key] = append(w.written[key], in.Value)
	w.ready(a)
}

// result answers a client's pending proposal.
func (w *world) result(r core.Result) {
	c := w.refs[r.Ref]
	if c == nil || c.pending == nil || c.pending.ref != r.Ref {
		return
	}
	p := c.pending
	if r.Err != nil {
		// The proposal was dropped by a master that stopped: it may still
		// commit elsewhere.
		w.unknown(c)
		w.redirect(c, w.agent(p.agent))
		return
	}
	c.pending = nil
	delete(w.refs, r.Ref)
	out := Output{Value: string(r.Result.Value), Found: r.Result.Found, OK: r.Result.OK}
	ret := w.tickClock()
	if r.Result.Err != "" {
		// Refused by the state machine: no effect.
		c.next = w.now + 1
		return
	}
	w.history = append(w.history, porcupine.Operation{ClientId: c.idx, Input: p.in, Call: p.call, Output: out, Return: ret})
	w.seeEpoch(c, r.Epoch)
	if p.in.Kind == kv.KindPut || (p.in.Kind == kv.KindCAS && r.Result.OK) {
		w.acked = append(w.acked, Write{WriteID: WriteID{c.id, p.seq}, Key: p.in.Key, Value: p.in.Value, Epoch: r.Epoch, Index: r.Index})
	}
	c.redirect = 0
	c.next = w.now + int64(w.rng.Intn(4))
}

// seeEpoch is invariant 4 for clients. An available group may answer from
// both sides of a partition, so only strict clients are held to it.
func (w *world) seeEpoch(c *client, e api.Epoch) {
	if w.cfg.Mode == api.ModeStrict && e.Less(c.epoch) {
		w.violate("invariant 4: client %d saw epoch %s after %s", c.id, e, c.epoch)
	}
	c.epoch = c.epoch.Max(e)
}
