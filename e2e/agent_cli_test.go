package e2e

import (
	"encoding/json"
	"fmt"
	"maps"
	"net"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mastership/mastership/agent/wire"
	"github.com/mastership/mastership/recover"
)

// cliAgent is one agent process of the command-line test.
type cliAgent struct {
	id   uint64
	ip   string // its own loopback address: fault partitions cut by host
	bind string // gossip
	api  string
}

// cliJSON runs the binary and decodes its stdout into v; it returns the exit
// code and stderr, and fails the test on output that does not decode.
func cliJSON(t *testing.T, v any, args ...string) (int, string) {
	t.Helper()
	out, errOut, code := run(t, args...)
	if code == 0 || out != "" {
		if err := json.Unmarshal([]byte(out), v); err != nil {
			t.Fatalf("%v: exit %d, stdout %q does not decode: %v (stderr %q)", args, code, out, err, errOut)
		}
	}
	return code, errOut
}

// cliInfos asks every agent for its info; ok is false if one did not answer.
func cliInfos(t *testing.T, agents []cliAgent) (map[uint64]wire.Info, bool) {
	t.Helper()
	infos := map[uint64]wire.Info{}
	for _, a := range agents {
		var in wire.Info
		out, _, code := run(t, "info", "-agent", a.api, "-json")
		if code != 0 || json.Unmarshal([]byte(out), &in) != nil {
			return nil, false
		}
		infos[a.id] = in
	}
	return infos, true
}

// cliRegistered is the master the naming node has registered for group, or 0.
func cliRegistered(t *testing.T, naming, group string) uint64 {
	t.Helper()
	var st struct {
		Master *struct {
			ID uint64 `json:"id"`
		} `json:"master"`
	}
	out, _, code := run(t, "status", "-naming", naming, "-group", group, "-json")
	if code != 0 || json.Unmarshal([]byte(out), &st) != nil || st.Master == nil {
		return 0
	}
	return st.Master.ID
}

// waitConverged waits until the naming node registers a master that every
// agent follows with one digest, and returns it.
func waitConverged(t *testing.T, what, naming, group string, agents []cliAgent) uint64 {
	t.Helper()
	var master uint64
	var last map[uint64]wire.Info
	deadline := time.Now().Add(20 * time.Second)
	for {
		infos, ok := cliInfos(t, agents)
		if ok {
			last = infos
			var states []recover.MemberState
			for _, in := range infos {
				states = append(states, recover.StateOfInfo(in))
			}
			reg := cliRegistered(t, naming, group)
			if recover.CheckConverged(states, reg) == nil {
				master = reg
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s; last infos %+v", what, last)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return master
}

// cliEventually polls check until it returns nil, and fails the test with
// its last error at the deadline.
func cliEventually(t *testing.T, timeout time.Duration, what string, check func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s: %v", timeout, what, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// The agent-side command line against real processes: agent, members,
// info, kv (through the naming node and through a back-up), fault
// (partition of the master, heal), divergence, and bad input.
func TestAgentCommandLine(t *testing.T) {
	const group = "clitest"
	naming := freeAddr(t, "127.0.0.1")
	startNaming(t, naming, t.TempDir())

	var agents []cliAgent
	for i := 1; i <= 3; i++ {
		ip := fmt.Sprintf("127.0.0.%d", 20+i)
		agents = append(agents, cliAgent{id: uint64(i), ip: ip, bind: freeAddr(t, ip), api: freeAddr(t, ip)})
	}
	for _, a := range agents {
		// strict with three expected: only a majority elects, and its new
		// epoch supersedes the cut-off master at the naming node, so the
		// partition below has one outcome whichever agent was master.
		start(t, fmt.Sprintf("agent%d", a.id), "-log-level", "info", "agent", "-profile", "local",
			"-group", group, "-id", strconv.FormatUint(a.id, 10), "-bind", a.bind, "-api", a.api,
			"-join", agents[0].bind, "-naming", naming, "-fault-control", "-mode", "strict", "-expect", "3")
	}
	master := waitConverged(t, "a registered master with equal digests", naming, group, agents)
	var backup, master0 cliAgent
	for _, a := range agents {
		if a.id == master {
			master0 = a
		} else {
			backup = a
		}
	}
	t.Logf("master %d, back-up %d", master, backup.id)

	t.Run("kv", func(t *testing.T) {
		viaNaming := []string{"-group", group, "-naming", naming}
		viaBackup := []string{"-group", group, "-agent", backup.api}
		kvArgs := func(op string, via []string, rest ...string) []string {
			return append(append([]string{"kv", op}, via...), rest...)
		}
		okLine := regexp.MustCompile(`^ok \(epoch \d+\.\d+, index \d+\)\n$`)

		out, errOut, code := run(t, kvArgs("put", viaNaming, "k1", "v1")...)
		if code != 0 || !okLine.MatchString(out) {
			t.Fatalf("put via naming: exit %d, %q, %q", code, out, errOut)
		}
		out, errOut, code = run(t, kvArgs("get", viaBackup, "k1")...)
		if code != 0 || out != "v1\n" {
			t.Fatalf("get via back-up: exit %d, %q, %q", code, out, errOut)
		}

		// The JSON shape, exactly.
		var put map[string]any
		if code, errOut := cliJSON(t, &put, kvArgs("put", viaBackup, "-json", "k2", "v2")...); code != 0 {
			t.Fatalf("put -json via back-up: exit %d, %q", code, errOut)
		}
		if keys := slices.Sorted(maps.Keys(put)); !slices.Equal(keys, []string{"epoch", "found", "index", "master", "ok", "value"}) {
			t.Fatalf("kv JSON keys %v", keys)
		}
		if put["ok"] != true || put["master"] != float64(master) || put["epoch"].(map[string]any)["term"].(float64) < 1 || put["index"].(float64) < 1 {
			t.Fatalf("put -json: %v", put)
		}
		var get map[string]any
		if code, errOut := cliJSON(t, &get, kvArgs("get", viaNaming, "-json", "k2")...); code != 0 || get["value"] != "v2" || get["found"] != true || get["ok"] != true {
			t.Fatalf("get -json: exit %d, %v, %q", code, get, errOut)
		}

		out, _, code = run(t, kvArgs("cas", viaNaming, "k1", "wrong", "v9")...)
		if code != 1 || out != "not applied (value differs)\n" {
			t.Fatalf("cas with a wrong expectation: exit %d, %q", code, out)
		}
		out, errOut, code = run(t, kvArgs("cas", viaBackup, "k1", "v1", "v1b")...)
		if code != 0 || out != "ok\n" {
			t.Fatalf("cas: exit %d, %q, %q", code, out, errOut)
		}
		if _, _, code = run(t, kvArgs("cas", viaNaming, "-absent", "k1", "v3")...); code != 1 {
			t.Fatalf("cas -absent of a present key: exit %d", code)
		}
		var cas map[string]any
		if code, errOut := cliJSON(t, &cas, kvArgs("cas", viaNaming, "-absent", "-json", "k3", "v3")...); code != 0 || cas["ok"] != true {
			t.Fatalf("cas -absent -json: exit %d, %v, %q", code, cas, errOut)
		}
		out, errOut, code = run(t, kvArgs("del", viaBackup, "k1")...)
		if code != 0 || !okLine.MatchString(out) {
			t.Fatalf("del: exit %d, %q, %q", code, out, errOut)
		}
		out, errOut, code = run(t, kvArgs("get", viaNaming, "k1")...)
		if code != 1 || out != "" || !strings.Contains(errOut, "not found") {
			t.Fatalf("get of a deleted key: exit %d, %q, %q", code, out, errOut)
		}
		get = nil
		if code, _ := cliJSON(t, &get, kvArgs("get", viaBackup, "-json", "k1")...); code != 1 || get["found"] != false || get["value"] != nil {
			t.Fatalf("get -json of a deleted key: exit %d, %v", code, get)
		}
	})

	t.Run("members and info", func(t *testing.T) {
		// Gossip metadata trails the roles: an agent's view may show a
		// member's older epoch for a while, so only the master's own
		// entry is checked for its role.
		cliEventually(t, 20*time.Second, "every gossip view to show 3 alive members, one master", func() error {
			for _, a := range agents {
				var members []map[string]any
				if code, errOut := cliJSON(t, &members, "members", "-agent", a.api, "-json"); code != 0 {
					return fmt.Errorf("members -json at %d: exit %d, %q", a.id, code, errOut)
				}
				masters := 0
				for _, m := range members {
					for _, k := range []string{"id", "group", "addr", "role", "epoch", "master", "health"} {
						if _, ok := m[k]; !ok {
							t.Fatalf("member without %q: %v", k, m)
						}
					}
					if m["health"] != "alive" || m["group"] != group {
						return fmt.Errorf("members at %d: %v", a.id, members)
					}
					if m["role"] == "master" {
						masters++
						if m["id"] != float64(master) {
							return fmt.Errorf("members at %d: %v", a.id, members)
						}
					}
				}
				if len(members) != 3 || masters != 1 {
					return fmt.Errorf("members at %d: %v", a.id, members)
				}
			}
			return nil
		})
		out, _, code := run(t, "members", "-agent", backup.api)
		// A header, three members, and the line that explains the mark on
		// the master the agent follows.
		if code != 0 || !strings.HasPrefix(out, "ID ") || strings.Count(out, "\n") != 5 || !strings.Contains(out, " master * ") ||
			!strings.Contains(out, "* the master this agent follows") {
			t.Fatalf("members table: exit %d, %q", code, out)
		}

		var info map[string]any
		if code, errOut := cliJSON(t, &info, "info", "-agent", backup.api, "-json"); code != 0 {
			t.Fatalf("info -json: exit %d, %q", code, errOut)
		}
		for _, k := range []string{"id", "group", "role", "epoch", "master", "applied", "digest", "last_check", "trigger", "decision"} {
			if _, ok := info[k]; !ok {
				t.Fatalf("info -json without %q: %v", k, info)
			}
		}
		if info["id"] != float64(backup.id) || info["role"] != "backup" || info["master"] != float64(master) {
			t.Fatalf("info -json: %v", info)
		}
		out, _, code = run(t, "info", "-agent", master0.api)
		if code != 0 || !strings.Contains(out, "role: master\n") || !strings.Contains(out, "digest: ") {
			t.Fatalf("info text: exit %d, %q", code, out)
		}
	})

	t.Run("partition and heal", func(t *testing.T) {
		var others []cliAgent
		var otherIPs []string
		for _, a := range agents {
			if a.id != master {
				others = append(others, a)
				otherIPs = append(otherIPs, a.ip)
			}
		}
		// A partition is per agent: cut both sides.
		fault := func(a cliAgent, args ...string) {
			t.Helper()
			out, errOut, code := run(t, append([]string{"fault", "-agent", a.api}, args...)...)
			if code != 0 {
				t.Fatalf("fault %v at %d: exit %d, %q, %q", args, a.id, code, out, errOut)
			}
		}
		fault(master0, "partition", "-from", strings.Join(otherIPs, ","))
		var st map[string]any
		if code, errOut := cliJSON(t, &st, "fault", "-agent", others[0].api, "partition", "-from", master0.ip, "-json"); code != 0 || fmt.Sprint(st["partitioned"]) != "["+master0.ip+"]" {
			t.Fatalf("fault partition -json: exit %d, %v, %q", code, st, errOut)
		}
		fault(others[1], "partition", "-from", master0.ip)

		var newMaster uint64
		waitFor(t, 15*time.Second, "a new master on the majority side", func() bool {
			infos, ok := cliInfos(t, others)
			if !ok {
				return false
			}
			for id, in := range infos {
				if in.Role == "master" && in.Epoch.Term > 0 && cliRegistered(t, naming, group) == id {
					newMaster = id
					return true
				}
			}
			return false
		})
		t.Logf("master %d cut off; %d took over", master, newMaster)
		out, errOut, code := run(t, "kv", "put", "-group", group, "-naming", naming, "during", "partition")
		if code != 0 {
			t.Fatalf("put during the partition: exit %d, %q, %q", code, out, errOut)
		}

		for _, a := range agents {
			fault(a, "heal")
		}
		master = waitConverged(t, "one master with equal digests after the heal", naming, group, agents)
		out, errOut, code = run(t, "kv", "get", "-group", group, "-agent", master0.api, "during")
		if code != 0 || out != "partition\n" {
			t.Fatalf("get after the heal through the old master: exit %d, %q, %q", code, out, errOut)
		}
	})

	t.Run("divergence", func(t *testing.T) {
		for _, a := range agents {
			var recs []map[string]any
			if code, errOut := cliJSON(t, &recs, "divergence", "list", "-agent", a.api, "-json"); code != 0 || recs == nil {
				t.Fatalf("divergence list -json at %d: exit %d, %v, %q", a.id, code, recs, errOut)
			}
		}
		out, errOut, code := run(t, "divergence", "discard", "-agent", agents[0].api, "1")
		if code != 2 || !strings.Contains(errOut, "discard removes record 1 for good; add -yes") {
			t.Fatalf("discard without -yes: exit %d, %q, %q", code, out, errOut)
		}
	})

	t.Run("bad input", func(t *testing.T) {
		// An agent without -fault-control, alone in its group.
		solo := cliAgent{id: 1, ip: "127.0.0.24"}
		solo.bind, solo.api = freeAddr(t, solo.ip), freeAddr(t, solo.ip)
		start(t, "solo", "-log-level", "warn", "agent", "-profile", "local", "-group", "solo", "-id", "1",
			"-bind", solo.bind, "-api", solo.api, "-naming", naming)
		waitFor(t, 10*time.Second, "the solo agent's API", func() bool {
			_, _, code := run(t, "info", "-agent", solo.api)
			return code == 0
		})
		a := agents[0].api
		for _, tc := range []struct {
			args []string
			code int
			want string
		}{
			{[]string{"kv", "frob", "-group", group}, 2, `unknown operation "frob"`},
			{[]string{"kv"}, 2, "missing operation"},
			{[]string{"kv", "put", "-group", group, "-naming", naming, "onlykey"}, 2, "want KEY VALUE"},
			{[]string{"kv", "get", "-naming", naming, "k"}, 2, "-group is required"},
			{[]string{"kv", "get", "-group", "Bad!", "-naming", naming, "k"}, 2, "-group"},
			{[]string{"kv", "cas", "-group", group, "-naming", naming, "k", "x"}, 2, "want KEY EXPECT NEW"},
			{[]string{"kv", "get", "-group", group, "-bogus", "k"}, 2, "-bogus"},
			{[]string{"kv", "get", "-group", group, "-agent", "127.0.0.1:1", "-timeout", "500ms", "k"}, 1, "127.0.0.1:1"},
			{[]string{"info", "-agent", "127.0.0.1:1"}, 1, "127.0.0.1:1"},
			{[]string{"members", "-agent", "nohost"}, 2, "-agent"},
			{[]string{"members", "-agent", a, "extra"}, 2, "unexpected argument"},
			{[]string{"divergence", "show", "-agent", a, "x"}, 2, "record ID"},
			{[]string{"divergence", "show", "-agent", a, "999"}, 1, "not-found"},
			{[]string{"divergence", "frob", "-agent", a}, 2, "unknown action"},
			{[]string{"fault", "-agent", a, "frob"}, 2, "unknown action"},
			{[]string{"fault", "-agent", a, "drop"}, 2, "-p is required"},
			{[]string{"fault", "-agent", a, "drop", "-p", "2"}, 2, "want 0 to 1"},
			{[]string{"fault", "-agent", a, "partition"}, 2, "-from is required"},
			{[]string{"fault", "-agent", solo.api, "heal"}, 1, "fault control is off"},
			{[]string{"frob"}, 2, "unknown command"},
			{[]string{"agent", "-group", group, "-id", "0", "-naming", naming}, 2, "id"},
			// The API address is taken by a running agent.
			{[]string{"agent", "-profile", "local", "-group", group, "-id", "9", "-bind", freeAddr(t, "127.0.0.25"), "-api", agents[1].api, "-naming", naming}, 1, "address already in use"},
		} {
			out, errOut, code := run(t, tc.args...)
			if code != tc.code || !strings.Contains(errOut, tc.want) {
				t.Errorf("%v: exit %d, stdout %q, stderr %q; want exit %d and %q", tc.args, code, out, errOut, tc.code, tc.want)
			}
		}
		// None of that changed the group.
		if m := waitConverged(t, "the group unchanged", naming, group, agents); m != master {
			t.Fatalf("master %d after bad input; was %d", m, master)
		}
		out, _, code := run(t, "members", "-agent", solo.api, "-json")
		if code != 0 || !strings.Contains(out, `"group": "solo"`) {
			t.Fatalf("solo members: %d %q", code, out)
		}
	})
}

// Agents whose gossip and API listen on every interface (-bind 0.0.0.0)
// announce the API at their -advertise host: the naming node registers the
// master there, peers and clients reach it there, and a write through the
// naming node goes through. Without -advertise such an agent is refused
// at start, saying why (it would announce 0.0.0.0, an address no other
// host can reach).
func TestAgentsOnEveryInterface(t *testing.T) {
	naming := freeAddr(t, "127.0.58.2")
	startNaming(t, naming, t.TempDir())
	onHost := func(addr, ip string) string { _, port, _ := net.SplitHostPort(addr); return net.JoinHostPort(ip, port) }
	var agents []cliAgent
	for i := 1; i <= 2; i++ {
		ip := fmt.Sprintf("127.0.58.%d", 10+i)
		gossip, api := freeAddr(t, "0.0.0.0"), freeAddr(t, "0.0.0.0")
		// bind and api: where the others reach it.
		a := cliAgent{id: uint64(i), ip: ip, bind: onHost(gossip, ip), api: onHost(api, ip)}
		agents = append(agents, a)
		args := []string{"-log-level", "info", "agent", "-profile", "local", "-group", "g", "-id", strconv.Itoa(i),
			"-bind", gossip, "-api", api, "-advertise", a.bind, "-naming", naming, "-mode", "available"}
		if i > 1 {
			args = append(args, "-join", agents[0].bind)
		}
		start(t, fmt.Sprintf("agent%d", i), args...)
	}
	master := waitConverged(t, "one master followed by both", naming, "g", agents)
	var st struct {
		Master *struct {
			Addr string `json:"addr"`
		} `json:"master"`
	}
	if code, errOut := cliJSON(t, &st, "status", "-naming", naming, "-group", "g", "-json"); code != 0 || st.Master == nil {
		t.Fatalf("status: exit %d %s", code, errOut)
	}
	if want := agents[master-1].api; st.Master.Addr != want {
		t.Fatalf("the master is registered at %q, want its advertised host with its API port, %q", st.Master.Addr, want)
	}
	for _, a := range agents {
		var info wire.Info
		if code, errOut := cliJSON(t, &info, "info", "-agent", a.api, "-json"); code != 0 || info.API != a.api {
			t.Fatalf("agent %d announces its API at %q (exit %d %s), want %q", a.id, info.API, code, errOut, a.api)
		}
	}
	mustRun(t, "kv", "put", "-group", "g", "-naming", naming, "k", "v")

	_, errOut, code := run(t, "agent", "-group", "g", "-id", "3", "-bind", freeAddr(t, "0.0.0.0"), "-naming", naming)
	if code == 0 || !strings.Contains(errOut, "advertise") || !strings.Contains(errOut, "every interface") {
		t.Fatalf("an agent on every interface without -advertise: exit %d, %q; want refused, naming advertise", code, errOut)
	}
}
