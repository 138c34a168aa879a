package gossip

import (
	"errors"
	"math"
	"math/rand"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/mastership/mastership/naming/api"
)

func TestCompete(t *testing.T) {
	master := Meta{Group: "g", ID: 1, Role: api.RoleMaster, Epoch: api.Epoch{Term: 3, ID: 1}}
	backup := master
	backup.Role = api.RoleBackup
	e := func(term, id uint64) api.Epoch { return api.Epoch{Term: term, ID: id} }
	tests := []struct {
		name   string
		self   Meta
		theirs Claim
		want   bool
	}{
		{"master hears another master of its group", master, Claim{Group: "g", ID: 2, Epoch: e(4, 2)}, true},
		{"older epoch still competes (a stale master)", master, Claim{Group: "g", ID: 2, Epoch: e(1, 2)}, true},
		{"same epoch term, other agent", master, Claim{Group: "g", ID: 2, Epoch: e(3, 2)}, true},
		{"own claim", master, Claim{Group: "g", ID: 1, Epoch: e(3, 1)}, false},
		{"other group", master, Claim{Group: "h", ID: 2, Epoch: e(4, 2)}, false},
		{"withdrawn claim", master, Claim{Group: "g", ID: 2, Epoch: e(4, 2), Withdrawn: true}, false},
		{"back-up never competes", backup, Claim{Group: "g", ID: 2, Epoch: e(4, 2)}, false},
		{"candidate never competes", Meta{Group: "g", ID: 1, Role: api.RoleCandidate}, Claim{Group: "g", ID: 2}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := Compete(tt.self, tt.theirs)
			if ok != tt.want {
				t.Fatalf("Compete = %v, want %v", ok, tt.want)
			}
			if ok && got != tt.theirs {
				t.Fatalf("Compete returned %v, want %v", got, tt.theirs)
			}
		})
	}
}

func TestMergeClaim(t *testing.T) {
	c := func(term uint64, withdrawn bool) Claim {
		return Claim{Group: "g", ID: 2, Epoch: api.Epoch{Term: term, ID: 2}, Withdrawn: withdrawn}
	}
	live := func(cl Claim) claimEntry { return claimEntry{claim: cl} }
	dropped := func(cl Claim) claimEntry { return claimEntry{claim: cl, dropped: true} }
	tests := []struct {
		name     string
		have     claimEntry
		ok       bool
		in       Claim
		want     claimEntry
		accepted bool
	}{
		{"first claim", claimEntry{}, false, c(3, false), live(c(3, false)), true},
		{"newer epoch", live(c(3, false)), true, c(4, false), live(c(4, false)), true},
		{"older epoch ignored", live(c(3, false)), true, c(2, false), live(c(3, false)), false},
		{"duplicate ignored", live(c(3, false)), true, c(3, false), live(c(3, false)), false},
		{"withdrawal of the same epoch", live(c(3, false)), true, c(3, true), live(c(3, true)), true},
		{"claim after its withdrawal ignored", live(c(3, true)), true, c(3, false), live(c(3, true)), false},
		{"newer claim after a withdrawal", live(c(3, true)), true, c(4, false), live(c(4, false)), true},
		{"older withdrawal ignored", live(c(4, false)), true, c(3, true), live(c(4, false)), false},
		{"dropped claim revived by its member", dropped(c(3, false)), true, c(3, false), live(c(3, false)), true},
		{"dropped claim still fences older", dropped(c(3, false)), true, c(2, false), dropped(c(3, false)), false},
		{"dropped then newer", dropped(c(3, false)), true, c(5, false), live(c(5, false)), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, acc := mergeClaim(tt.have, tt.ok, tt.in)
			if got != tt.want || acc != tt.accepted {
				t.Fatalf("mergeClaim = %+v, %v; want %+v, %v", got, acc, tt.want, tt.accepted)
			}
		})
	}
}

// TestMergeClaimOrderFree checks the merge against a reference model: the
// result of merging a set of claims does not depend on the order they
// arrive in, and equals the maximum by (epoch, withdrawn).
func TestMergeClaimOrderFree(t *testing.T) {
	r := rand.New(rand.NewSource(1))
	for round := 0; round < 500; round++ {
		var claims []Claim
		for i := 0; i < 1+r.Intn(6); i++ {
			claims = append(claims, Claim{Group: "g", ID: 2, Epoch: api.Epoch{Term: uint64(r.Intn(4)), ID: 2}, Withdrawn: r.Intn(2) == 0})
		}
		want := claims[0]
		for _, c := range claims[1:] {
			if want.Epoch.Less(c.Epoch) || (want.Epoch == c.Epoch && c.Withdrawn) {
				want = c
			}
		}
		for perm := 0; perm < 5; perm++ {
			r.Shuffle(len(claims), func(i, j int) { claims[i], claims[j] = claims[j], claims[i] })
			var e claimEntry
			ok := false
			for _, c := range claims {
				e, _ = mergeClaim(e, ok, c)
				ok = true
			}
			if e.claim != want {
				t.Fatalf("round %d: merged %v from %v, want %v", round, e.claim, claims, want)
			}
		}
	}
}

func TestLiveClaims(t *testing.T) {
	m := map[agentKey]claimEntry{
		{"g", 3}: {claim: Claim{Group: "g", ID: 3}},
		{"g", 1}: {claim: Claim{Group: "g", ID: 1}},
		{"g", 2}: {claim: Claim{Group: "g", ID: 2}, dropped: true},
		{"g", 4}: {claim: Claim{Group: "g", ID: 4, Withdrawn: true}},
		{"h", 1}: {claim: Claim{Group: "h", ID: 1}},
	}
	got := liveClaims(m, "g")
	if len(got) != 2 || got[0].ID != 1 || got[1].ID != 3 {
		t.Fatalf("liveClaims(g) = %v", got)
	}
	if all := liveClaims(m, ""); len(all) != 3 || all[0].Group != "g" || all[1].Group != "h" {
		t.Fatalf("liveClaims() = %v", all)
	}
}

func TestReconnectTargets(t *testing.T) {
	join := []string{"10.0.0.1:7946", "10.0.0.2:7946"}
	tests := []struct {
		name string
		v    reconnectView
		want []string
	}{
		{"whole cluster: nothing", reconnectView{Self: "10.0.0.3:7946", Alive: 5, Peak: 5, Join: join}, nil},
		{"alone: join addresses", reconnectView{Self: "10.0.0.3:7946", Alive: 1, Peak: 1, Join: join}, join},
		{"alone without join addresses: nothing", reconnectView{Alive: 1, Peak: 1}, nil},
		{"fewer than once: a dead member and the join addresses",
			reconnectView{Self: "10.0.0.3:7946", Alive: 3, Peak: 5, Failed: []string{"10.0.0.4:7946"}, Join: join},
			[]string{"10.0.0.4:7946", "10.0.0.1:7946", "10.0.0.2:7946"}},
		{"never self", reconnectView{Self: "10.0.0.1:7946", Alive: 1, Peak: 2, Join: join}, []string{"10.0.0.2:7946"}},
		{"no duplicates", reconnectView{Self: "x:1", Alive: 1, Peak: 2, Failed: []string{"10.0.0.1:7946"}, Join: join}, join},
		{"dead member at full peak (peak lowered by a leave): only it",
			reconnectView{Self: "x:1", Alive: 4, Peak: 4, Failed: []string{"10.0.0.9:7946"}, Join: join}, []string{"10.0.0.9:7946"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := reconnectTargets(tt.v, rand.New(rand.NewSource(1)))
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("reconnectTargets = %v, want %v", got, tt.want)
			}
		})
	}
	// One dead member per round, each picked over the rounds.
	v := reconnectView{Self: "x:1", Alive: 5, Peak: 5, Failed: []string{"a:1", "b:1", "c:1"}}
	r := rand.New(rand.NewSource(7))
	seen := map[string]int{}
	for i := 0; i < 100; i++ {
		got := reconnectTargets(v, r)
		if len(got) != 1 {
			t.Fatalf("round %d: %v, want one dead member", i, got)
		}
		seen[got[0]]++
	}
	if len(seen) != 3 {
		t.Fatalf("dead members picked: %v, want all three", seen)
	}
}

func TestViewHealth(t *testing.T) {
	t0 := time.Unix(1000, 0)
	v := newView("g/1")
	meta := func(id uint64) Meta { return Meta{Group: "g", ID: id, Role: api.RoleBackup} }
	v.join("g/1", "a:1", meta(1), false, 1, t0)
	v.join("g/2", "b:1", meta(2), false, 2, t0)
	v.join("g/3", "c:1", meta(3), false, 3, t0)
	if v.peak != 3 || v.alive() != 3 {
		t.Fatalf("peak %d alive %d", v.peak, v.alive())
	}
	kinds := func(evs []MemberEvent) string {
		var s []string
		for _, e := range evs {
			s = append(s, e.Kind.String()+":"+e.Member.Name)
		}
		return strings.Join(s, ",")
	}
	// No ack from 2 for longer than suspectAfter: suspect; self never.
	v.ack("g/3", t0.Add(900*time.Millisecond))
	evs, _ := v.tick(t0.Add(time.Second+time.Millisecond), time.Second, time.Hour)
	if got := kinds(evs); got != "suspect:g/2" {
		t.Fatalf("tick events %q", got)
	}
	if got := kinds(v.ack("g/2", t0.Add(2*time.Second))); got != "alive:g/2" {
		t.Fatalf("ack events %q", got)
	}
	// Dead, remembered for reconnect, then forgotten after the timeout.
	if got := kinds(v.leave("g/2", t0.Add(3*time.Second))); got != "dead:g/2" {
		t.Fatalf("leave events %q", got)
	}
	if rv := v.reconnectView("a:1", nil); !reflect.DeepEqual(rv.Failed, []string{"b:1"}) || rv.Alive != 2 || rv.Peak != 3 {
		t.Fatalf("reconnect view %+v", rv)
	}
	if !v.gone("g/2") || v.gone("g/9") {
		t.Fatalf("gone")
	}
	_, reaped := v.tick(t0.Add(3*time.Second+2*time.Hour), 0, time.Hour)
	if !reflect.DeepEqual(reaped, []string{"g/2"}) || v.peak != 2 {
		t.Fatalf("reaped %v peak %d", reaped, v.peak)
	}
	// A leave intent of the same run makes a dead member left; of another
	// run it is ignored.
	v.leave("g/3", t0.Add(4*time.Hour))
	if evs := v.intent("g/3", 99, t0.Add(4*time.Hour)); len(evs) != 0 {
		t.Fatalf("intent of another run: %v", evs)
	}
	if got := kinds(v.intent("g/3", 3, t0.Add(4*time.Hour))); got != "leave:g/3" {
		t.Fatalf("intent events %q", got)
	}
	if len(v.list()) != 1 || v.peak != 1 {
		t.Fatalf("view %v peak %d", v.list(), v.peak)
	}
	// Leaving announced first: NotifyLeave means left.
	v.join("g/4", "d:1", meta(4), false, 4, t0)
	v.update("g/4", "d:1", meta(4), true, 4, t0)
	if got := kinds(v.leave("g/4", t0)); got != "leave:g/4" {
		t.Fatalf("leave of a leaving member %q", got)
	}
}

func TestSuspectAfterBound(t *testing.T) {
	if got := suspectAfter(100*time.Millisecond, 50*time.Millisecond, 4); got != 850*time.Millisecond {
		t.Fatalf("suspectAfter = %v", got)
	}
	if got := suspectAfter(100*time.Millisecond, 0, 0); got != 200*time.Millisecond {
		t.Fatalf("suspectAfter alone = %v", got)
	}
}

func TestMetaFitsMemberlistLimit(t *testing.T) {
	group := strings.Repeat("g", api.MaxGroupLen)
	host := strings.Repeat("h", api.MaxAddrLen-len(":65535"))
	m := Meta{
		Group:    group,
		ID:       math.MaxUint64,
		Priority: math.MinInt64,
		Role:     api.RoleQuarantined,
		Epoch:    api.Epoch{Term: math.MaxUint64, ID: math.MaxUint64},
		Master:   math.MaxUint64,
		API:      host + ":65535",
		Mode:     string(api.ModeAvailable),
	}
	b, err := encodeMeta(m, true, math.MaxUint64)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("largest meta: %d bytes of %d", len(b), memberlist.MetaMaxSize)
	if len(b) > memberlist.MetaMaxSize {
		t.Fatalf("meta of %d bytes over %d", len(b), memberlist.MetaMaxSize)
	}
	got, w, err := decodeMeta(NodeName(group, math.MaxUint64), b)
	if err != nil || got != m || !w.Leaving || w.Boot != math.MaxUint64 {
		t.Fatalf("round trip: %+v %+v %v", got, w, err)
	}
}

func TestMetaRejected(t *testing.T) {
	good := Meta{Group: "g", ID: 2, Role: api.RoleBackup, API: "127.0.0.1:9000"}
	b, err := encodeMeta(good, false, 1)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := decodeMeta("g/3", b); !errors.Is(err, ErrBadMeta) {
		t.Errorf("name mismatch: %v", err)
	}
	if _, _, err := decodeMeta("g/2", []byte{0xc1}); !errors.Is(err, ErrBadMeta) {
		t.Errorf("malformed: %v", err)
	}
	if _, _, err := decodeMeta("g/2", nil); !errors.Is(err, ErrBadMeta) {
		t.Errorf("empty: %v", err)
	}
	bad := []Meta{
		{Group: "G", ID: 1},
		{Group: "g", ID: 0},
		{Group: "g", ID: 1, API: "nohost"},
		{Group: "g", ID: 1, Mode: "fast"},
		{Group: "g", ID: 1, Role: 99},
	}
	for _, m := range bad {
		if _, err := encodeMeta(m, false, 0); !errors.Is(err, ErrBadMeta) {
			t.Errorf("encodeMeta(%+v) = %v, want ErrBadMeta", m, err)
		}
	}
	d := &delegate{}
	if err := d.NotifyAlive(&memberlist.Node{Name: "g/3", Meta: b}); err == nil {
		t.Errorf("alive delegate accepted a node whose name does not match its meta")
	}
	if err := d.NotifyAlive(&memberlist.Node{Name: "g/2", Meta: b}); err != nil {
		t.Errorf("alive delegate refused a good node: %v", err)
	}
	for _, name := range []string{"g/2", "a.b-c/18446744073709551615"} {
		grp, id, err := ParseNodeName(name)
		if err != nil || NodeName(grp, id) != name {
			t.Errorf("ParseNodeName(%q) = %q %d %v", name, grp, id, err)
		}
	}
	if _, _, err := ParseNodeName("g-2"); err == nil {
		t.Errorf("ParseNodeName accepted g-2")
	}
}

func TestConfigValidate(t *testing.T) {
	base := DefaultConfig(ProfileLAN)
	base.Group, base.ID = "g", 1
	if err := base.Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	tests := []struct {
		name   string
		mutate func(*Config)
		field  string
	}{
		{"group", func(c *Config) { c.Group = "Bad Group" }, "group"},
		{"id", func(c *Config) { c.ID = 0 }, "id"},
		{"meta group", func(c *Config) { c.Meta.Group = "h" }, "meta group"},
		{"profile", func(c *Config) { c.Profile = "moon" }, "profile"},
		{"bind", func(c *Config) { c.BindAddr = "nowhere" }, "bind"},
		{"advertise", func(c *Config) { c.AdvertiseAddr = "example.com:1" }, "advertise"},
		{"join", func(c *Config) { c.Join = []string{"x"} }, "join"},
		{"key", func(c *Config) { c.SecretKey = make([]byte, 17) }, "secret key"},
		{"reconnect", func(c *Config) { c.ReconnectInterval = time.Millisecond }, "reconnect interval"},
		{"reconnect timeout", func(c *Config) { c.ReconnectTimeout = time.Millisecond }, "reconnect timeout"},
		{"suspect", func(c *Config) { c.SuspectAfter = -1 }, "suspect after"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := base
			tt.mutate(&c)
			err := c.Validate()
			if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tt.field) {
				t.Fatalf("Validate = %v, want ErrConfig naming %q", err, tt.field)
			}
		})
	}
	ok := base
	ok.BindAddr = "127.0.0.1:0"
	ok.AdvertiseAddr = "10.0.0.1"
	if err := ok.Validate(); err != nil {
		t.Fatalf("port 0 and a bare advertise host: %v", err)
	}
	if c := DefaultConfig(ProfileLocal); c.ReconnectInterval != 200*time.Millisecond {
		t.Fatalf("local reconnect interval %v", c.ReconnectInterval)
	}
}

func TestEventAndHealthNames(t *testing.T) {
	if EventSuspect.String() != "suspect" || EventKind(0).String() != "event(0)" || EventConflict.String() != "conflict" {
		t.Fatal("event names")
	}
	if HealthDead.String() != "dead" || Health(9).String() != "health(9)" {
		t.Fatal("health names")
	}
}
