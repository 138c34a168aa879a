package naming

import (
	"bytes"
	"cmp"
	"context"
	"embed"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/mastership/mastership/naming/api"
)

// uiFiles are the dashboard's static files, in the binary: no build step,
// nothing fetched from elsewhere. Read-only data, fixed at compile time.
//
//go:embed ui
var uiFiles embed.FS

// Dashboard bounds: the groups shown (the first by name), the events of
// each, how long one member's /v1/info may take, how many are asked at
// once, how often a stream recomputes, and how many streams run at once.
const (
	dashGroups       = 50
	dashEvents       = 20
	dashLookBack     = 200 // events searched for members whose session expired
	dashProbe        = 500 * time.Millisecond
	dashParallel     = 32
	dashMaxAsked     = 256 // members asked per state; the rest are shown unasked
	dashInterval     = 300 * time.Millisecond
	dashMaxStreams   = 16
	dashStreamLimit  = 30 * time.Minute // a stream ends, and the page reconnects
	dashWriteTimeout = 10 * time.Second
)

// dashCache is the dashboard's latest state, shared by every viewer: one
// is computed at a time, and reused for dashInterval, so that however many
// viewers ask (streams and single reads alike), the naming node asks its
// members no more than once a dashInterval, dashParallel at once.
type dashCache struct {
	mu  sync.Mutex
	at  time.Time
	st  dashState
	err error
}

// sharedDashboard is dashboard through the node's cache. A viewer waits
// for the one computing; a viewer whose ctx ends first gets its error.
func (n *Node) sharedDashboard(ctx context.Context) (dashState, error) {
	c := &n.dash
	locked := make(chan struct{})
	go func() { c.mu.Lock(); close(locked) }()
	select {
	case <-locked:
	case <-ctx.Done():
		go func() { <-locked; c.mu.Unlock() }()
		return dashState{}, ctx.Err()
	}
	defer c.mu.Unlock()
	if !c.at.IsZero() && time.Since(c.at) < dashInterval {
		return c.st, c.err
	}
	// The computation is the node's, not this viewer's: a viewer that
	// leaves does not fail the others waiting on it.
	cctx, cancel := context.WithTimeout(n.ctx, 2*dashProbe)
	defer cancel()
	c.st, c.err = n.dashboard(cctx)
	c.at = time.Now()
	return c.st, c.err
}

// dashState is what the dashboard shows: the groups the naming node holds,
// each with its registered master, its members as they describe
// themselves (their /v1/info, asked by the naming node), and its latest
// events.
type dashState struct {
	Time   time.Time   `json:"time"`
	Node   string      `json:"node"`
	Role   string      `json:"role"`
	Groups []dashGroup `json:"groups"`
	// More: the node holds more groups than dashGroups.
	More bool `json:"more"`
}

type dashGroup struct {
	Group   string            `json:"group"`
	Mode    api.Mode          `json:"mode"`
	Policy  api.Policy        `json:"policy"`
	Paused  bool              `json:"paused"`
	Master  *api.MasterStatus `json:"master"`
	Members []dashMember      `json:"members"`
	// Masters counts the members that say they are master: more than one
	// is a split brain.
	Masters int         `json:"masters"`
	Events  []api.Event `json:"events"`
}

type dashMember struct {
	ID       uint64 `json:"id"`
	Addr     string `json:"addr"`
	Priority int    `json:"priority"`
	// From the member's own /v1/info; Error when it did not answer.
	Role    string `json:"role,omitempty"`
	Epoch   string `json:"epoch,omitempty"`
	Master  uint64 `json:"master,omitempty"`
	Digest  string `json:"digest,omitempty"`
	Serving bool   `json:"serving,omitempty"`
	Error   string `json:"error,omitempty"`
	// Expired: no member of the group at the naming node any more (its
	// session expired, as a cut-off side's do), shown from the group's
	// recent events and asked all the same: a split brain's other master
	// is often one.
	Expired bool `json:"expired,omitempty"`
}

// dashboard gathers the state: a stale read of the store (any node of the
// naming cluster can show it), the members whose sessions expired taken
// from the recent events, and every member asked at once, each within
// dashProbe.
func (n *Node) dashboard(ctx context.Context) (dashState, error) {
	st, err := n.Status(api.StatusRequest{Limit: dashGroups, Read: api.ReadStale})
	if err != nil {
		return dashState{}, err
	}
	h := n.Health()
	out := dashState{Time: n.clock.Now().UTC(), Node: n.Self(), Role: h.Role, More: st.More, Groups: []dashGroup{}}
	for _, g := range st.Groups {
		dg := dashGroup{Group: g.Group, Mode: g.Mode, Policy: g.Policy, Paused: g.Paused, Master: g.Master,
			Members: make([]dashMember, len(g.Members)), Events: []api.Event{}}
		for i, m := range g.Members {
			dg.Members[i] = dashMember{ID: m.ID, Addr: m.Addr, Priority: m.Priority}
		}
		if last, err := n.store.LastEventSeq(g.Group); err == nil {
			after := uint64(0)
			if last > dashLookBack {
				after = last - dashLookBack
			}
			if evs, err := n.store.Events(g.Group, after, dashLookBack); err == nil {
				dg.Members = withExpired(dg.Members, evs.Events)
				dg.Events = append(dg.Events, evs.Events[max(0, len(evs.Events)-dashEvents):]...)
			}
		}
		out.Groups = append(out.Groups, dg)
	}
	sem := make(chan struct{}, dashParallel)
	var wg sync.WaitGroup
	asked := 0
	for gi := range out.Groups {
		g := &out.Groups[gi]
		for mi := range g.Members {
			m := &g.Members[mi]
			if asked++; asked > dashMaxAsked {
				// A state costs the naming node a call per member: its
				// groups' sizes do not multiply what a viewer makes it do.
				m.Error = fmt.Sprintf("not asked: the dashboard asks %d members at most", dashMaxAsked)
				continue
			}
			wg.Go(func() {
				select {
				case sem <- struct{}{}:
				case <-ctx.Done():
					m.Error = ctx.Err().Error()
					return
				}
				defer func() { <-sem }()
				pctx, cancel := context.WithTimeout(ctx, dashProbe)
				defer cancel()
				info, err := n.agentInfoCtx(pctx, m.Addr)
				switch {
				case err != nil:
					m.Error = err.Error()
				case info.ID != m.ID || info.Group != g.Group:
					m.Error = "another agent answers at this address"
				default:
					m.Role, m.Master, m.Digest, m.Serving = info.Role, info.Master, info.Digest, info.Serving
					m.Epoch = info.Epoch.String()
				}
			})
		}
	}
	wg.Wait()
	for gi := range out.Groups {
		for _, m := range out.Groups[gi].Members {
			if m.Role == api.RoleMaster.String() {
				out.Groups[gi].Masters++
			}
		}
	}
	return out, nil
}

// withExpired adds to members those whose session expired in events (by
// ID, at the address the event names), once each, unless they are
// members again.
func withExpired(members []dashMember, events []api.Event) []dashMember {
	known := map[uint64]bool{}
	for _, m := range members {
		known[m.ID] = true
	}
	for i := len(events) - 1; i >= 0; i-- {
		e := events[i]
		if e.Kind != api.EventMemberExpired || e.ID == 0 || e.Addr == "" || known[e.ID] {
			continue
		}
		known[e.ID] = true
		members = append(members, dashMember{ID: e.ID, Addr: e.Addr, Expired: true})
	}
	slices.SortFunc(members, func(a, b dashMember) int { return cmp.Compare(a.ID, b.ID) })
	return members
}

// serveUIState answers GET /v1/ui/state: the dashboard's state once.
func (n *Node) serveUIState(w http.ResponseWriter, r *http.Request) {
	st, err := n.sharedDashboard(r.Context())
	if err != nil {
		writeJSONError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

// serveUIStream answers GET /v1/ui/stream: server-sent events, one
// "state" event with the dashboard's state at once and another each time
// it changes (recomputed every dashInterval), until the client leaves or
// dashStreamLimit passes. At most dashMaxStreams run at once.
func (n *Node) serveUIStream(w http.ResponseWriter, r *http.Request) {
	select {
	case n.uiStreams <- struct{}{}:
		defer func() { <-n.uiStreams }()
	default:
		writeJSONError(w, api.Errorf(api.CodeUnavailable, "%d dashboard streams open already; try again later", dashMaxStreams))
		return
	}
	rc := http.NewResponseController(w)
	// Every write has its own deadline: a viewer that stops reading
	// gives its place up within dashWriteTimeout, not at the stream's end.
	write := func(b []byte) error {
		if err := rc.SetWriteDeadline(time.Now().Add(n.uiWriteTimeout)); err != nil {
			return err
		}
		if _, err := w.Write(b); err != nil {
			return err
		}
		return rc.Flush()
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	if write(nil) != nil {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), dashStreamLimit)
	defer cancel()
	var last []byte
	tick := time.NewTicker(dashInterval)
	defer tick.Stop()
	for {
		st, err := n.sharedDashboard(ctx)
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			st.Time = time.Time{} // the state alone decides what is new
			b, _ := json.Marshal(st)
			if !bytes.Equal(b, last) {
				last = b
				if write(append(append([]byte("event: state\ndata: "), b...), "\n\n"...)) != nil {
					return
				}
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// uiHandler serves the dashboard's static files under /ui/.
func uiHandler() http.Handler {
	sub, err := fs.Sub(uiFiles, "ui")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	return http.StripPrefix("/ui/", http.FileServer(http.FS(sub)))
}
