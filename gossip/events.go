package gossip

import (
	"strconv"
	"sync"
)

// Events is the delegate through which Gossip tells the agent what changed.
// Gossip calls it from one goroutine of its own (the dispatcher), one call at
// a time and in the order the changes happened, never from memberlist's
// goroutines and never while holding a lock: a method may call any Gossip
// method, and may block for a while (later events wait, memberlist does not).
// Events still queued at Shutdown are dropped.
type Events interface {
	// MemberEvent reports a change in the membership view.
	MemberEvent(e MemberEvent)
	// CompetingClaim is called when this agent is master of its group and
	// learns a live claim of another agent for the same group: as the claim
	// arrives (broadcast or push/pull), or for the claims already known when
	// this agent becomes master or takes a new epoch (UpdateMeta). It is
	// called once per accepted claim: a duplicate or an older epoch of the
	// same agent does not call it again. The agent raises its event trigger,
	// sends a trigger to theirs.API and asks the naming node to re-check the
	// group (see "Claims" in the package documentation).
	CompetingClaim(theirs Claim)
}

// NopEvents ignores every event; embed it to implement only some methods.
type NopEvents struct{}

// MemberEvent does nothing.
func (NopEvents) MemberEvent(MemberEvent) {}

// CompetingClaim does nothing.
func (NopEvents) CompetingClaim(Claim) {}

var _ Events = NopEvents{}

// EventKind says what happened to a member.
type EventKind uint8

// Event kinds.
const (
	// EventJoin: a member joined, or came back after being dead.
	EventJoin EventKind = iota + 1
	// EventUpdate: a member's metadata changed.
	EventUpdate
	// EventSuspect: no probe ack from the member for SuspectAfter, while
	// memberlist still counts it alive (see doc.go, "Suspect").
	EventSuspect
	// EventAlive: a suspect member acked a probe again.
	EventAlive
	// EventDead: memberlist declared the member dead (it did not leave on
	// purpose). It is remembered and retried by the reconnect loop.
	EventDead
	// EventLeave: the member left on purpose (Gossip.Leave); it is
	// forgotten. memberlist's own leave message may overtake the leave
	// intent, so EventDead can come first for the same member.
	EventLeave
	// EventConflict: a node announced a name (group/ID) already used by
	// another live member at a different address; Member describes the
	// newcomer and memberlist refused it. When the name is this agent's own,
	// the agent should stop: two agents run with one ID.
	EventConflict
)

var eventNames = [...]string{"", "join", "update", "suspect", "alive", "dead", "leave", "conflict"}

// String returns the kind's lower-case name.
func (k EventKind) String() string {
	if int(k) < len(eventNames) && k != 0 {
		return eventNames[k]
	}
	return "event(" + strconv.Itoa(int(k)) + ")"
}

// MemberEvent is one change of the membership view.
type MemberEvent struct {
	Kind   EventKind
	Member Member
}

// dispatcher hands events to the delegate from its own goroutine, so that
// memberlist's goroutines (which call our delegates with memberlist's locks
// held) never wait on the agent. Its queue is unbounded: events are few
// (membership changes and claims) and dropping one would lose a trigger.
type dispatcher struct {
	events Events
	mu     sync.Mutex
	q      []func(Events)
	wake   chan struct{}
	stop   chan struct{}
	done   chan struct{}
}

func newDispatcher(ev Events) *dispatcher {
	if ev == nil {
		ev = NopEvents{}
	}
	return &dispatcher{
		events: ev,
		wake:   make(chan struct{}, 1),
		stop:   make(chan struct{}),
		done:   make(chan struct{}),
	}
}

// push queues f; it never blocks.
func (d *dispatcher) push(f func(Events)) {
	d.mu.Lock()
	d.q = append(d.q, f)
	d.mu.Unlock()
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

func (d *dispatcher) member(e MemberEvent) {
	d.push(func(ev Events) { ev.MemberEvent(e) })
}

func (d *dispatcher) competing(c Claim) {
	d.push(func(ev Events) { ev.CompetingClaim(c) })
}

// run is the dispatcher goroutine.
func (d *dispatcher) run() {
	defer close(d.done)
	for {
		select {
		case <-d.stop:
			return
		case <-d.wake:
		}
		for {
			d.mu.Lock()
			q := d.q
			d.q = nil
			d.mu.Unlock()
			if len(q) == 0 {
				break
			}
			for _, f := range q {
				select {
				case <-d.stop:
					return
				default:
				}
				f(d.events)
			}
		}
	}
}
