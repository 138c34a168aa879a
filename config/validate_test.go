package config

import (
	"encoding/base64"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mastership/mastership/naming/api"
)

// fieldsOfErr lists the fields a (joined) Validate error names, sorted.
func fieldsOfErr(t *testing.T, err error) []string {
	t.Helper()
	var out []string
	var walk func(error)
	walk = func(e error) {
		var fe *FieldError
		if errors.As(e, &fe) && e == error(fe) {
			out = append(out, fe.Field)
			if !errors.Is(e, ErrInvalid) {
				t.Errorf("%v does not wrap ErrInvalid", e)
			}
			if !strings.Contains(e.Error(), fe.Field) {
				t.Errorf("%q does not name field %s", e, fe.Field)
			}
			return
		}
		if j, ok := e.(interface{ Unwrap() []error }); ok {
			for _, x := range j.Unwrap() {
				walk(x)
			}
			return
		}
		if e != nil {
			t.Errorf("Validate returned %T %v, want *FieldError", e, e)
		}
	}
	walk(err)
	slices.Sort(out)
	return slices.Compact(out)
}

const ns = time.Nanosecond

func testNaming(t *testing.T, profile string) Naming {
	t.Helper()
	n, err := DefaultNaming(profile)
	if err != nil {
		t.Fatal(err)
	}
	n.DataDir = t.TempDir()
	return n
}

func testAgent(t *testing.T, profile string) Agent {
	t.Helper()
	a, err := DefaultAgent(profile)
	if err != nil {
		t.Fatal(err)
	}
	a.Group, a.ID = "g", 1
	return a
}

func TestProfilesValidate(t *testing.T) {
	for _, p := range append(Profiles(), "") {
		t.Run("naming-"+p, func(t *testing.T) {
			if err := testNaming(t, p).Validate(); err != nil {
				t.Error(err)
			}
		})
		t.Run("agent-"+p, func(t *testing.T) {
			if err := testAgent(t, p).Validate(); err != nil {
				t.Error(err)
			}
		})
	}
	// The defaults alone miss exactly the fields that have none.
	n, _ := DefaultNaming("")
	if got := fieldsOfErr(t, n.Validate()); !slices.Equal(got, []string{"data-dir"}) {
		t.Errorf("DefaultNaming: fields %v, want [data-dir]", got)
	}
	a, _ := DefaultAgent("")
	if got := fieldsOfErr(t, a.Validate()); !slices.Equal(got, []string{"group", "id"}) {
		t.Errorf("DefaultAgent: fields %v, want [group id]", got)
	}
}

func TestProfileOrder(t *testing.T) {
	// wan is slower than lan, lan slower than local: the memberlist idea.
	l, _ := DefaultAgent(ProfileLocal)
	m, _ := DefaultAgent(ProfileLAN)
	w, _ := DefaultAgent(ProfileWAN)
	for _, get := range []func(Agent) time.Duration{
		func(a Agent) time.Duration { return a.TickUnit },
		func(a Agent) time.Duration { return time.Duration(a.ElectionTicks) * a.TickUnit },
		func(a Agent) time.Duration { return a.SessionTTL },
		func(a Agent) time.Duration { return a.ReconnectInterval },
		func(a Agent) time.Duration { return a.WriteTimeout },
	} {
		if !(get(l) < get(m) && get(m) < get(w)) {
			t.Errorf("want local %v < lan %v < wan %v", get(l), get(m), get(w))
		}
	}
	if hb := time.Duration(l.HeartbeatTicks) * l.TickUnit; hb != 50*time.Millisecond {
		t.Errorf("local heartbeat period %v, want 50ms", hb)
	}
	if m.GossipProfile != ProfileLAN || w.GossipProfile != ProfileWAN {
		t.Errorf("gossip profiles %q %q", m.GossipProfile, w.GossipProfile)
	}
}

func TestUnknownProfile(t *testing.T) {
	for _, f := range []func(string) error{
		func(p string) error { _, err := DefaultNaming(p); return err },
		func(p string) error { _, err := DefaultAgent(p); return err },
	} {
		err := f("dev")
		if !errors.Is(err, ErrUnknownProfile) || !strings.Contains(err.Error(), `"dev"`) {
			t.Errorf("got %v, want ErrUnknownProfile naming \"dev\"", err)
		}
	}
}

func TestNamingValidate(t *testing.T) {
	tests := []struct {
		name string
		set  func(*Naming)
		want []string // fields named in the error; none means valid
	}{
		{"bind any interface", func(n *Naming) { n.Bind = "0.0.0.0:1" }, nil},
		{"bind empty", func(n *Naming) { n.Bind = "" }, []string{"bind"}},
		{"bind no port", func(n *Naming) { n.Bind = "localhost" }, []string{"bind"}},
		{"bind port 0", func(n *Naming) { n.Bind = "127.0.0.1:0" }, []string{"bind"}},
		{"data-dir empty", func(n *Naming) { n.DataDir = "" }, []string{"data-dir"}},
		{"policy empty", func(n *Naming) { n.DefaultPolicy = "" }, nil},
		{"policy priority", func(n *Naming) { n.DefaultPolicy = "priority" }, nil},
		{"policy unknown", func(n *Naming) { n.DefaultPolicy = "newest" }, []string{"default-policy"}},

		{"session-ttl min", func(n *Naming) { n.SessionTTL, n.SweepInterval = 100*time.Millisecond, 10*time.Millisecond }, nil},
		{"session-ttl below", func(n *Naming) { n.SessionTTL, n.SweepInterval = 100*time.Millisecond-ns, 10*time.Millisecond }, []string{"session-ttl"}},
		{"session-ttl max", func(n *Naming) { n.SessionTTL = 10 * time.Minute }, nil},
		{"session-ttl above", func(n *Naming) { n.SessionTTL, n.MaxTTL = 10*time.Minute+ns, time.Hour }, []string{"session-ttl"}},
		{"registration-ttl min", func(n *Naming) { n.RegistrationTTL, n.SweepInterval = 100*time.Millisecond, 10*time.Millisecond }, nil},
		{"registration-ttl below", func(n *Naming) { n.RegistrationTTL, n.SweepInterval = 100*time.Millisecond-ns, 10*time.Millisecond }, []string{"registration-ttl"}},
		{"registration-ttl max", func(n *Naming) { n.RegistrationTTL = 10 * time.Minute }, nil},
		{"registration-ttl above", func(n *Naming) { n.RegistrationTTL, n.MaxTTL = 10*time.Minute+ns, time.Hour }, []string{"registration-ttl"}},

		{"max-ttl max", func(n *Naming) { n.MaxTTL = 24 * time.Hour }, nil},
		{"max-ttl above", func(n *Naming) { n.MaxTTL = 24*time.Hour + ns }, []string{"max-ttl"}},
		{"max-ttl equals ttls", func(n *Naming) { n.MaxTTL = 10 * time.Second }, nil},
		{"max-ttl below session-ttl", func(n *Naming) { n.MaxTTL, n.RegistrationTTL = 10*time.Second-ns, 4*time.Second }, []string{"max-ttl"}},
		{"max-ttl below registration-ttl", func(n *Naming) { n.MaxTTL, n.SessionTTL = 10*time.Second-ns, 4*time.Second }, []string{"max-ttl"}},

		{"sweep-interval min", func(n *Naming) { n.SweepInterval = 10 * time.Millisecond }, nil},
		{"sweep-interval below", func(n *Naming) { n.SweepInterval = 10*time.Millisecond - ns }, []string{"sweep-interval"}},
		{"sweep-interval max", func(n *Naming) {
			n.SweepInterval, n.SessionTTL, n.RegistrationTTL = time.Minute, 10*time.Minute, 10*time.Minute
		}, nil},
		{"sweep-interval above", func(n *Naming) {
			n.SweepInterval, n.SessionTTL, n.RegistrationTTL = time.Minute+ns, 10*time.Minute, 10*time.Minute
		}, []string{"sweep-interval"}},
		{"sweep-interval half session-ttl", func(n *Naming) { n.SweepInterval = 5 * time.Second }, nil},
		{"sweep-interval over half session-ttl", func(n *Naming) { n.SweepInterval, n.RegistrationTTL = 5*time.Second+ns, time.Minute }, []string{"sweep-interval"}},
		{"sweep-interval half registration-ttl", func(n *Naming) { n.SweepInterval, n.RegistrationTTL = 2*time.Second, 4*time.Second }, nil},
		{"sweep-interval over half registration-ttl", func(n *Naming) { n.SweepInterval, n.RegistrationTTL = 2*time.Second+ns, 4*time.Second }, []string{"sweep-interval"}},

		{"conflict-window zero", func(n *Naming) { n.ConflictWindow = 0 }, nil},
		{"conflict-window negative", func(n *Naming) { n.ConflictWindow = -ns }, []string{"conflict-window"}},
		{"conflict-window max", func(n *Naming) { n.ConflictWindow = time.Second }, nil},
		{"conflict-window above", func(n *Naming) { n.ConflictWindow = time.Second + ns }, []string{"conflict-window"}},
		{"conflict-window below session-ttl", func(n *Naming) {
			n.SessionTTL, n.SweepInterval, n.ConflictWindow = time.Second, 100*time.Millisecond, time.Second-ns
		}, nil},
		{"conflict-window not below session-ttl", func(n *Naming) {
			n.SessionTTL, n.SweepInterval, n.ConflictWindow = time.Second, 100*time.Millisecond, time.Second
		}, []string{"conflict-window"}},

		{"restart-grace zero", func(n *Naming) { n.RestartGrace = 0 }, nil},
		{"restart-grace negative", func(n *Naming) { n.RestartGrace = -ns }, []string{"restart-grace"}},
		{"restart-grace max", func(n *Naming) { n.RestartGrace = 10 * time.Minute }, nil},
		{"restart-grace above", func(n *Naming) { n.RestartGrace = 10*time.Minute + ns }, []string{"restart-grace"}},

		{"trigger-timeout min", func(n *Naming) { n.TriggerTimeout = 10 * time.Millisecond }, nil},
		{"trigger-timeout below", func(n *Naming) { n.TriggerTimeout = 10*time.Millisecond - ns }, []string{"trigger-timeout"}},
		{"trigger-timeout max", func(n *Naming) { n.TriggerTimeout = 30 * time.Second }, nil},
		{"trigger-timeout above", func(n *Naming) { n.TriggerTimeout = 30*time.Second + ns }, []string{"trigger-timeout"}},

		{"trigger-backoff-min min", func(n *Naming) { n.TriggerBackoffMin = time.Millisecond }, nil},
		{"trigger-backoff-min below", func(n *Naming) { n.TriggerBackoffMin = time.Millisecond - ns }, []string{"trigger-backoff-min"}},
		{"trigger-backoff max", func(n *Naming) { n.TriggerBackoffMin, n.TriggerBackoffMax = 10*time.Minute, 10*time.Minute }, nil},
		{"trigger-backoff-max above", func(n *Naming) { n.TriggerBackoffMax = 10*time.Minute + ns }, []string{"trigger-backoff-max"}},
		{"trigger-backoff-max equals min", func(n *Naming) { n.TriggerBackoffMax = n.TriggerBackoffMin }, nil},
		{"trigger-backoff-max below min", func(n *Naming) { n.TriggerBackoffMax = n.TriggerBackoffMin - ns }, []string{"trigger-backoff-max"}},

		{"max-events-per-group min", func(n *Naming) { n.MaxEventsPerGroup = 16 }, nil},
		{"max-events-per-group below", func(n *Naming) { n.MaxEventsPerGroup = 15 }, []string{"max-events-per-group"}},
		{"max-events-per-group max", func(n *Naming) { n.MaxEventsPerGroup = 1_000_000 }, nil},
		{"max-events-per-group above", func(n *Naming) { n.MaxEventsPerGroup = 1_000_001 }, []string{"max-events-per-group"}},
		{"max-events min", func(n *Naming) { n.MaxEvents = 1000 }, nil},
		{"max-events below", func(n *Naming) { n.MaxEvents = 999 }, []string{"max-events"}},
		{"max-events max", func(n *Naming) { n.MaxEvents = 100_000_000 }, nil},
		{"max-events above", func(n *Naming) { n.MaxEvents = 100_000_001 }, []string{"max-events"}},

		{"max-groups min", func(n *Naming) { n.MaxGroups = 1 }, nil},
		{"max-groups below", func(n *Naming) { n.MaxGroups = 0 }, []string{"max-groups"}},
		{"max-groups above", func(n *Naming) { n.MaxGroups = 1_000_001 }, []string{"max-groups"}},
		{"max-conns min", func(n *Naming) { n.MaxConns = 16 }, nil},
		{"max-conns below", func(n *Naming) { n.MaxConns = 15 }, []string{"max-conns"}},
		{"max-conns above", func(n *Naming) { n.MaxConns = 100_001 }, []string{"max-conns"}},

		{"peers without this node", func(n *Naming) { n.Peers = []string{"10.0.0.2:7400", "10.0.0.3:7400"} }, []string{"peers"}},
		{"peers listed twice", func(n *Naming) {
			n.Peers = []string{n.Bind, "10.0.0.2:7400", "10.0.0.2:7400"}
		}, []string{"peers"}},
		{"peers of every interface", func(n *Naming) { n.Bind = "0.0.0.0:7400"; n.Peers = []string{"0.0.0.0:7400"} }, []string{"advertise", "peers"}},
		{"peers and join", func(n *Naming) { n.Peers = []string{n.Bind}; n.Join = []string{"10.0.0.2:7400"} }, []string{"join"}},
		{"join with a bad address", func(n *Naming) { n.Join = []string{"no-port"} }, []string{"join"}},
		{"too many peers", func(n *Naming) {
			n.Peers = []string{n.Bind}
			for i := 2; i <= 10; i++ {
				n.Peers = append(n.Peers, fmt.Sprintf("10.0.0.%d:7400", i))
			}
		}, []string{"peers"}},
		{"election timeout too short", func(n *Naming) { n.ElectionTimeout = time.Millisecond }, []string{"election-timeout"}},
		{"all wrong at once", func(n *Naming) { *n = Naming{} }, []string{
			"bind", "data-dir", "election-timeout", "max-conns", "max-events", "max-events-per-group", "max-groups", "max-ttl", "registration-ttl", "session-ttl",
			"sweep-interval", "trigger-backoff-max", "trigger-backoff-min", "trigger-timeout",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := testNaming(t, ProfileLAN)
			tt.set(&n)
			err := n.Validate()
			if got := fieldsOfErr(t, err); !slices.Equal(got, tt.want) {
				t.Errorf("fields %v, want %v; error: %v", got, tt.want, err)
			}
		})
	}
}

func TestAgentValidate(t *testing.T) {
	key := func(n int) string { return base64.StdEncoding.EncodeToString(make([]byte, n)) }
	addrs := func(n int) []string {
		var out []string
		for i := range n {
			out = append(out, fmt.Sprintf("10.0.0.%d:7946", i))
		}
		return out
	}
	ms := time.Millisecond
	tests := []struct {
		name string
		set  func(*Agent)
		want []string
	}{
		{"group short", func(a *Agent) { a.Group = "a" }, nil},
		{"group longest", func(a *Agent) { a.Group = strings.Repeat("a", api.MaxGroupLen) }, nil},
		{"group too long", func(a *Agent) { a.Group = strings.Repeat("a", api.MaxGroupLen+1) }, []string{"group"}},
		{"group empty", func(a *Agent) { a.Group = "" }, []string{"group"}},
		{"group upper case", func(a *Agent) { a.Group = "G" }, []string{"group"}},
		{"id 0", func(a *Agent) { a.ID = 0 }, []string{"id"}},
		{"id max", func(a *Agent) { a.ID = math.MaxUint64 }, nil},

		{"bind empty", func(a *Agent) { a.Bind = "" }, []string{"bind"}},
		{"bind ipv6", func(a *Agent) { a.Bind = "[::1]:7946" }, nil},
		{"bind highest port for default api", func(a *Agent) { a.Bind = "127.0.0.1:64535" }, nil},
		{"bind port leaves no default api", func(a *Agent) { a.Bind = "127.0.0.1:64536" }, []string{"api"}},
		{"bind high port with api", func(a *Agent) { a.Bind, a.API = "127.0.0.1:65535", "127.0.0.1:9000" }, nil},
		{"advertise set", func(a *Agent) { a.Advertise = "10.0.0.1:7946" }, nil},
		{"advertise bad", func(a *Agent) { a.Advertise = "10.0.0.1" }, []string{"advertise"}},
		{"every interface, no advertise", func(a *Agent) { a.Bind = "0.0.0.0:7946" }, []string{"advertise"}},
		{"api on every interface, no advertise", func(a *Agent) { a.API = "[::]:8946" }, []string{"advertise"}},
		{"every interface, advertised", func(a *Agent) { a.Bind = "0.0.0.0:7946"; a.Advertise = "10.0.0.1:7946" }, nil},
		{"join one bad", func(a *Agent) { a.Join = []string{"10.0.0.1:1", "10.0.0.2"} }, []string{"join"}},
		{"join max", func(a *Agent) { a.Join = addrs(64) }, nil},
		{"join too many", func(a *Agent) { a.Join = addrs(65) }, []string{"join"}},
		{"naming empty", func(a *Agent) { a.Naming = "" }, []string{"naming"}},
		{"api bad", func(a *Agent) { a.API = "api" }, []string{"api"}},
		{"api equals bind", func(a *Agent) { a.API = a.Bind }, []string{"api"}},

		{"priority min", func(a *Agent) { a.Priority = -1_000_000 }, nil},
		{"priority below", func(a *Agent) { a.Priority = -1_000_001 }, []string{"priority"}},
		{"priority max", func(a *Agent) { a.Priority = 1_000_000 }, nil},
		{"priority above", func(a *Agent) { a.Priority = 1_000_001 }, []string{"priority"}},
		{"mode empty", func(a *Agent) { a.Mode = "" }, nil},
		{"mode strict", func(a *Agent) { a.Mode, a.Expect = "strict", 3 }, nil},
		{"mode strict without expect", func(a *Agent) { a.Mode = "strict" }, []string{"expect"}},
		{"mode strict expect 1", func(a *Agent) { a.Mode, a.Expect = "strict", 1 }, nil},
		{"expect max", func(a *Agent) { a.Expect = 1000 }, nil},
		{"expect above", func(a *Agent) { a.Expect = 1001 }, []string{"expect"}},
		{"expect negative", func(a *Agent) { a.Expect = -1 }, []string{"expect"}},
		{"mode unknown", func(a *Agent) { a.Mode = "eventual" }, []string{"mode"}},
		{"policy priority", func(a *Agent) { a.Policy = "priority" }, nil},
		{"policy unknown", func(a *Agent) { a.Policy = "x" }, []string{"policy"}},
		{"encrypt 16", func(a *Agent) { a.Encrypt = key(16) }, nil},
		{"encrypt 24", func(a *Agent) { a.Encrypt = key(24) }, nil},
		{"encrypt 32", func(a *Agent) { a.Encrypt = key(32) }, nil},
		{"encrypt 15", func(a *Agent) { a.Encrypt = key(15) }, []string{"encrypt"}},
		{"encrypt 33", func(a *Agent) { a.Encrypt = key(33) }, []string{"encrypt"}},
		{"encrypt not base64", func(a *Agent) { a.Encrypt = "not base64!" }, []string{"encrypt"}},

		{"tick-unit min", func(a *Agent) { a.TickUnit = ms }, nil},
		{"tick-unit below", func(a *Agent) { a.TickUnit = ms - ns }, []string{"tick-unit"}},
		{"tick-unit max", func(a *Agent) {
			a.TickUnit, a.HeartbeatTicks, a.SessionTTL, a.RegistrationTTL = 10*time.Second, 1, 30*time.Second, 30*time.Second
		}, nil},
		{"tick-unit above", func(a *Agent) { a.TickUnit = 10*time.Second + ns }, []string{"tick-unit"}},
		{"heartbeat-ticks min", func(a *Agent) { a.HeartbeatTicks = 1 }, nil},
		{"heartbeat-ticks below", func(a *Agent) { a.HeartbeatTicks = 0 }, []string{"heartbeat-ticks"}},
		{"heartbeat-ticks max", func(a *Agent) { a.TickUnit, a.HeartbeatTicks, a.ElectionTicks = ms, 1000, 2001 }, nil},
		{"heartbeat-ticks above", func(a *Agent) { a.TickUnit, a.HeartbeatTicks, a.ElectionTicks = ms, 1001, 2003 }, []string{"heartbeat-ticks"}},
		{"election-ticks just above 2 heartbeats", func(a *Agent) { a.ElectionTicks, a.ElectionStaggerTicks = 2*a.HeartbeatTicks+1, 1 }, nil},
		{"election-ticks 2 heartbeats", func(a *Agent) { a.ElectionTicks, a.ElectionStaggerTicks = 2*a.HeartbeatTicks, 1 }, []string{"election-ticks"}},
		{"election-ticks max", func(a *Agent) { a.ElectionTicks = 100_000 }, nil},
		{"election-ticks above", func(a *Agent) { a.ElectionTicks = 100_001 }, []string{"election-ticks"}},
		{"election-stagger-ticks min", func(a *Agent) { a.ElectionStaggerTicks = 1 }, nil},
		{"election-stagger-ticks below", func(a *Agent) { a.ElectionStaggerTicks = 0 }, []string{"election-stagger-ticks"}},
		{"election-stagger-ticks max", func(a *Agent) { a.ElectionStaggerTicks = a.ElectionTicks }, nil},
		{"election-stagger-ticks above", func(a *Agent) { a.ElectionStaggerTicks = a.ElectionTicks + 1 }, []string{"election-stagger-ticks"}},

		{"monitor-count min", func(a *Agent) { a.MonitorCount, a.MonitorUnit = 1, 10*ms }, nil},
		{"monitor-count below", func(a *Agent) { a.MonitorCount = 0 }, []string{"monitor-count"}},
		{"monitor-count max", func(a *Agent) {
			a.MonitorCount, a.MonitorUnit, a.SessionTTL, a.RegistrationTTL = 100_000, ms, 10*time.Minute, 10*time.Minute
		}, nil},
		{"monitor-count above", func(a *Agent) { a.MonitorCount, a.MonitorUnit = 100_001, ms }, []string{"monitor-count"}},
		{"monitor-unit min", func(a *Agent) { a.MonitorUnit = ms }, nil},
		{"monitor-unit below", func(a *Agent) { a.MonitorUnit = ms - ns }, []string{"monitor-unit"}},
		{"monitor-unit max", func(a *Agent) {
			a.MonitorCount, a.MonitorUnit, a.SessionTTL, a.RegistrationTTL = 1, time.Minute, 10*time.Minute, 10*time.Minute
		}, nil},
		{"monitor-unit above", func(a *Agent) { a.MonitorCount, a.MonitorUnit = 1, time.Minute+ns }, []string{"monitor-unit"}},
		{"monitor period min", func(a *Agent) { a.MonitorCount, a.MonitorUnit = 5, 2*ms }, nil},
		{"monitor period below", func(a *Agent) { a.MonitorCount, a.MonitorUnit = 9, ms }, []string{"monitor-count"}},
		{"monitor period max", func(a *Agent) {
			a.MonitorCount, a.MonitorUnit, a.SessionTTL, a.RegistrationTTL = 10, time.Minute, 10*time.Minute, 10*time.Minute
		}, []string{"registration-ttl", "session-ttl"}}, // 10m allowed, but no TTL can cover 3 of them
		{"monitor period above", func(a *Agent) { a.MonitorCount, a.MonitorUnit = 11, time.Minute }, []string{"monitor-count"}},
		{"on-failure terminate", func(a *Agent) { a.OnFailure = "terminate" }, nil},
		{"on-failure empty", func(a *Agent) { a.OnFailure = "" }, []string{"on-failure"}},
		{"on-failure unknown", func(a *Agent) { a.OnFailure = "exit" }, []string{"on-failure"}},

		{"session-ttl min", func(a *Agent) { a.TickUnit, a.MonitorCount, a.SessionTTL = ms, 10, 100*ms }, nil},
		{"session-ttl below", func(a *Agent) { a.TickUnit, a.MonitorCount, a.SessionTTL = ms, 10, 100*ms-ns }, []string{"session-ttl"}},
		{"session-ttl max", func(a *Agent) { a.SessionTTL = 10 * time.Minute }, nil},
		{"session-ttl above", func(a *Agent) { a.SessionTTL = 10*time.Minute + ns }, []string{"session-ttl"}},
		{"session-ttl 3 periods", func(a *Agent) { a.SessionTTL = 900 * ms }, nil}, // lan: max(4 x 50ms, 100 x 3ms) = 300ms
		{"session-ttl under 3 periods", func(a *Agent) { a.SessionTTL = 900*ms - ns }, []string{"session-ttl"}},
		{"session-ttl 3 heartbeats", func(a *Agent) { a.HeartbeatTicks, a.ElectionTicks, a.SessionTTL = 40, 100, 6*time.Second }, nil},
		{"session-ttl under 3 heartbeats", func(a *Agent) { a.HeartbeatTicks, a.ElectionTicks, a.SessionTTL = 40, 100, 6*time.Second-ns }, []string{"session-ttl"}},
		{"registration-ttl min", func(a *Agent) { a.TickUnit, a.MonitorCount, a.RegistrationTTL = ms, 10, 100*ms }, nil},
		{"registration-ttl below", func(a *Agent) { a.TickUnit, a.MonitorCount, a.RegistrationTTL = ms, 10, 100*ms-ns }, []string{"registration-ttl"}},
		{"registration-ttl above", func(a *Agent) { a.RegistrationTTL = 10*time.Minute + ns }, []string{"registration-ttl"}},
		{"registration-ttl under 3 periods", func(a *Agent) { a.RegistrationTTL = 900*ms - ns }, []string{"registration-ttl"}},

		{"reconnect-interval min", func(a *Agent) { a.ReconnectInterval = 10 * ms }, nil},
		{"reconnect-interval below", func(a *Agent) { a.ReconnectInterval = 10*ms - ns }, []string{"reconnect-interval"}},
		{"reconnect-interval max", func(a *Agent) { a.ReconnectInterval = 10 * time.Minute }, nil},
		{"reconnect-interval above", func(a *Agent) { a.ReconnectInterval = 10*time.Minute + ns }, []string{"reconnect-interval"}},
		{"write-timeout min", func(a *Agent) { a.WriteTimeout = 10 * ms }, nil},
		{"write-timeout below", func(a *Agent) { a.WriteTimeout = 10*ms - ns }, []string{"write-timeout"}},
		{"write-timeout max", func(a *Agent) { a.WriteTimeout = 5 * time.Minute }, nil},
		{"write-timeout above", func(a *Agent) { a.WriteTimeout = 5*time.Minute + ns }, []string{"write-timeout"}},

		{"max-key-bytes min", func(a *Agent) { a.MaxKeyBytes = 1 }, nil},
		{"max-key-bytes below", func(a *Agent) { a.MaxKeyBytes = 0 }, []string{"max-key-bytes"}},
		{"max-key-bytes max", func(a *Agent) { a.MaxKeyBytes = 65536 }, nil},
		{"max-key-bytes above", func(a *Agent) { a.MaxKeyBytes = 65537 }, []string{"max-key-bytes"}},
		{"max-value-bytes min", func(a *Agent) { a.MaxValueBytes = 1 }, nil},
		{"max-value-bytes below", func(a *Agent) { a.MaxValueBytes = 0 }, []string{"max-value-bytes"}},
		{"max-value-bytes max", func(a *Agent) { a.MaxKeyBytes, a.MaxValueBytes = 1, 524287 }, nil},
		{"max-value-bytes above", func(a *Agent) { a.MaxKeyBytes, a.MaxValueBytes = 1, 524288 }, []string{"max-value-bytes"}},
		{"key + value max", func(a *Agent) { a.MaxValueBytes = 524288 - 1024 }, nil},
		{"key + value above", func(a *Agent) { a.MaxValueBytes = 524288 - 1023 }, []string{"max-value-bytes"}},
		{"huge sizes do not overflow", func(a *Agent) { a.MaxKeyBytes, a.MaxValueBytes = math.MaxInt, math.MaxInt }, []string{"max-key-bytes", "max-value-bytes"}},

		{"gossip-profile wan", func(a *Agent) { a.GossipProfile = "wan" }, nil},
		{"gossip-profile empty", func(a *Agent) { a.GossipProfile = "" }, []string{"gossip-profile"}},
		{"gossip-profile unknown", func(a *Agent) { a.GossipProfile = "dc" }, []string{"gossip-profile"}},

		{"max-conns min", func(a *Agent) { a.MaxConns = 16 }, nil},
		{"max-conns below", func(a *Agent) { a.MaxConns = 15 }, []string{"max-conns"}},
		{"max-conns above", func(a *Agent) { a.MaxConns = 100_001 }, []string{"max-conns"}},
		{"hook-timeout min", func(a *Agent) { a.HookTimeout = 10 * time.Millisecond }, nil},
		{"hook-timeout below", func(a *Agent) { a.HookTimeout = time.Millisecond }, []string{"hook-timeout"}},
		{"hook-timeout above", func(a *Agent) { a.HookTimeout = 11 * time.Minute }, []string{"hook-timeout"}},
		{"leave-timeout none", func(a *Agent) { a.LeaveTimeout = 0 }, nil},
		{"start-grace none", func(a *Agent) { a.StartGrace = 0 }, nil},
		{"start-grace negative", func(a *Agent) { a.StartGrace = -time.Second }, []string{"start-grace"}},
		{"promote-backoff below", func(a *Agent) { a.PromoteBackoff = time.Millisecond }, []string{"promote-backoff"}},
		{"promote-backoff shorter than two election rounds", func(a *Agent) { a.PrePromote, a.PromoteBackoff = "/bin/gate", 100*time.Millisecond }, []string{"promote-backoff"}},
		{"promote-backoff two election rounds", func(a *Agent) {
			a.PrePromote = "/bin/gate"
			a.PromoteBackoff = 2 * time.Duration(a.ElectionTicks+a.ElectionStaggerTicks) * a.TickUnit
		}, nil},
		{"check and check-http", func(a *Agent) { a.Check, a.CheckHTTP = "/bin/true", "http://127.0.0.1/" }, []string{"check-http"}},
		{"check-http not a URL", func(a *Agent) { a.CheckHTTP = "127.0.0.1:80/health" }, []string{"check-http"}},
		{"check-http ftp", func(a *Agent) { a.CheckHTTP = "ftp://127.0.0.1/" }, []string{"check-http"}},
		{"check-http ok", func(a *Agent) { a.CheckHTTP = "https://db.local:8008/health" }, nil},
		{"check-failures 0", func(a *Agent) { a.CheckFailures = 0 }, []string{"check-failures"}},
		{"check-failures 101", func(a *Agent) { a.CheckFailures = 101 }, []string{"check-failures"}},
		{"check-interval below", func(a *Agent) { a.CheckInterval = time.Millisecond }, []string{"check-interval"}},
		{"promote-backoff above", func(a *Agent) { a.PromoteBackoff = 2 * time.Hour }, []string{"promote-backoff"}},
		{"leave-timeout negative", func(a *Agent) { a.LeaveTimeout = -time.Second }, []string{"leave-timeout"}},
		{"leave-timeout above", func(a *Agent) { a.LeaveTimeout = 11 * time.Minute }, []string{"leave-timeout"}},
		{"snapshot-entries below", func(a *Agent) { a.SnapshotEntries = 63 }, []string{"snapshot-entries"}},
		{"snapshot-entries above", func(a *Agent) { a.SnapshotEntries = 100_000_001 }, []string{"snapshot-entries"}},
		{"snapshot-entries negative", func(a *Agent) { a.SnapshotEntries = -1 }, []string{"snapshot-entries"}},
		{"snapshot-entries off", func(a *Agent) { a.SnapshotEntries = 0 }, nil},
		{"retain-entries below", func(a *Agent) { a.RetainEntries = 63 }, []string{"retain-entries"}},
		{"retain-entries above", func(a *Agent) { a.RetainEntries = 1_000_000_001 }, []string{"retain-entries"}},
		{"retain-entries negative", func(a *Agent) { a.RetainEntries = -1 }, []string{"retain-entries"}},
		{"retain-entries default", func(a *Agent) { a.RetainEntries = 0 }, nil},
		{"retain-entries least", func(a *Agent) { a.RetainEntries = 64 }, nil},
		{"snapshot-bytes below", func(a *Agent) { a.SnapshotBytes = 1000 }, []string{"snapshot-bytes"}},
		{"snapshot-bytes above", func(a *Agent) { a.SnapshotBytes = 65 << 30 }, []string{"snapshot-bytes"}},
		{"snapshot-bytes off", func(a *Agent) { a.SnapshotBytes = 0 }, nil},
		{"no snapshot schedule", func(a *Agent) { a.SnapshotEntries, a.SnapshotBytes = 0, 0 }, []string{"snapshot-entries"}},

		{"all wrong at once", func(a *Agent) { *a = Agent{} }, []string{
			"bind", "check-failures", "check-interval", "election-stagger-ticks", "election-ticks", "gossip-profile", "group", "heartbeat-ticks", "hook-timeout", "id",
			"max-conns", "max-key-bytes", "max-value-bytes", "monitor-count", "monitor-unit", "naming", "on-failure", "promote-backoff",
			"reconnect-interval", "registration-ttl", "session-ttl", "snapshot-entries", "tick-unit", "write-timeout",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := testAgent(t, ProfileLAN)
			tt.set(&a)
			err := a.Validate()
			if got := fieldsOfErr(t, err); !slices.Equal(got, tt.want) {
				t.Errorf("fields %v, want %v; error: %v", got, tt.want, err)
			}
		})
	}
}

func TestValidateNamesValue(t *testing.T) {
	n := testNaming(t, ProfileLAN)
	n.SessionTTL = 50 * time.Millisecond
	n.SweepInterval = 10 * time.Millisecond
	if got, want := n.Validate().Error(), `config: invalid session-ttl "50ms": want 100ms to 10m`; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	a := testAgent(t, ProfileLAN)
	a.Mode = "eventual"
	err := a.Validate()
	if !strings.Contains(err.Error(), `mode "eventual"`) {
		t.Errorf("got %q, want the mode and its value", err)
	}
}

func TestAPIAddr(t *testing.T) {
	for _, tt := range []struct{ bind, api, want string }{
		{"127.0.0.1:7946", "", "127.0.0.1:8946"},
		{"[::1]:7946", "", "[::1]:8946"},
		{"127.0.0.1:7946", "10.0.0.1:80", "10.0.0.1:80"},
		{"127.0.0.1:65000", "", ""},
		{"nonsense", "", ""},
	} {
		a := Agent{Bind: tt.bind, API: tt.api}
		if got := a.APIAddr(); got != tt.want {
			t.Errorf("bind %q api %q: APIAddr %q, want %q", tt.bind, tt.api, got, tt.want)
		}
	}
}

func TestEncryptKey(t *testing.T) {
	if k, err := (Agent{}).EncryptKey(); k != nil || err != nil {
		t.Errorf("empty: %v %v, want nil nil", k, err)
	}
	want := []byte("0123456789abcdef")
	k, err := Agent{Encrypt: base64.StdEncoding.EncodeToString(want)}.EncryptKey()
	if err != nil || string(k) != string(want) {
		t.Errorf("got %q %v, want %q", k, err, want)
	}
	secret := base64.StdEncoding.EncodeToString([]byte("short secret"))
	_, err = Agent{Encrypt: secret}.EncryptKey()
	if !errors.Is(err, ErrInvalid) || strings.Contains(err.Error(), secret) || !strings.Contains(err.Error(), "encrypt") {
		t.Errorf("got %v, want ErrInvalid naming encrypt without echoing the key", err)
	}
}

// AnnouncedAPI: the listener's address, or on every interface the
// advertised host with the listener's port.
func TestAnnouncedAPI(t *testing.T) {
	for _, tc := range []struct{ advertise, listen, want string }{
		{"", "10.0.0.1:8946", "10.0.0.1:8946"},
		{"10.0.0.9:7946", "10.0.0.1:8946", "10.0.0.1:8946"},
		{"10.0.0.9:7946", "0.0.0.0:8946", "10.0.0.9:8946"},
		{"10.0.0.9:7946", "[::]:8946", "10.0.0.9:8946"},
		{"[fd00::9]:7946", "[::]:8946", "[fd00::9]:8946"},
		{"", "[::]:8946", "[::]:8946"}, // Validate refuses it
	} {
		if got := (Agent{Advertise: tc.advertise}).AnnouncedAPI(tc.listen); got != tc.want {
			t.Errorf("advertise %q, listen %q: %q, want %q", tc.advertise, tc.listen, got, tc.want)
		}
	}
}
