package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/mastership/mastership/agent/kv"
	"github.com/mastership/mastership/agent/rlog"
	"github.com/mastership/mastership/agent/store"
	"github.com/mastership/mastership/agent/wire"
	"github.com/mastership/mastership/naming/api"
)

// fakeAgent serves canned replies of the agent API and counts DELETEs.
func fakeAgent(t *testing.T) (addr string, deletes *int) {
	t.Helper()
	op, err := kv.EncodeOp(kv.Op{Kind: kv.KindPut, Key: "k", Value: []byte("v")})
	if err != nil {
		t.Fatal(err)
	}
	rec := store.Record{ID: 7, Group: "g", Epoch: api.Epoch{Term: 2, ID: 1}, Index: 5, Client: 9, Seq: 3, Op: op, Acked: true,
		Recorded: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)}
	n := 0
	mux := http.NewServeMux()
	reply := func(w http.ResponseWriter, status int, v any) {
		w.WriteHeader(status)
		json.NewEncoder(w).Encode(v)
	}
	mux.HandleFunc("GET /v1/members", func(w http.ResponseWriter, r *http.Request) {
		reply(w, 200, []wire.Member{{ID: 2, Group: "g", Addr: "127.0.0.2:1", API: "127.0.0.2:2", Role: "backup", Epoch: api.Epoch{Term: 3, ID: 1}, Master: 1, Health: "alive"},
			{ID: 1, Group: "g", Addr: "127.0.0.1:1", API: "127.0.0.1:2", Role: "master", Epoch: api.Epoch{Term: 3, ID: 1}, Master: 1, Health: "alive"}})
	})
	mux.HandleFunc("GET /v1/info", func(w http.ResponseWriter, r *http.Request) {
		reply(w, 200, wire.Info{ID: 1, Group: "g", Role: "master", Epoch: api.Epoch{Term: 3, ID: 1}, Master: 1, Digest: "abc"})
	})
	mux.HandleFunc("GET /v1/divergence", func(w http.ResponseWriter, r *http.Request) { reply(w, 200, []store.Record{rec}) })
	mux.HandleFunc("DELETE /v1/divergence/{id}", func(w http.ResponseWriter, r *http.Request) {
		n++
		reply(w, 200, map[string]uint64{"discarded": 7})
	})
	mux.HandleFunc("POST /v1/fault", func(w http.ResponseWriter, r *http.Request) {
		reply(w, 403, api.Errorf(api.CodeRefused, "fault control is off: start the agent with -fault-control"))
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://"), &n
}

func runCLI(args ...string) (string, string, int) {
	var out, errOut bytes.Buffer
	code := run(context.Background(), append([]string{"mastership"}, args...), &out, &errOut)
	return out.String(), errOut.String(), code
}

func TestAgentQueries(t *testing.T) {
	addr, deletes := fakeAgent(t)
	for _, tc := range []struct {
		name string
		args []string
		code int
		out  []string // substrings of stdout
		err  string   // substring of stderr
	}{
		{"members table sorted by ID", []string{"members", "-agent", addr}, 0, []string{"ID  GROUP  ROLE    EPOCH  MASTER  HEALTH", "\n1   g      master", "\n2   g      backup"}, ""},
		{"members JSON as the agent gives it", []string{"members", "-agent", addr, "-json"}, 0, []string{`"id": 2,`, `"api": "127.0.0.2:2",`}, ""},
		{"info lines", []string{"info", "-agent", addr}, 0, []string{"role: master\n", "epoch: 3.1\n", "digest: abc\n", "last_check: none yet\n"}, ""},
		{"divergence table", []string{"divergence", "list", "-agent", addr}, 0, []string{"RECORDED", "7   2.1    5      9       3    put  \"k\"  true   false     2030-01-02T03:04:05Z"}, ""},
		{"divergence JSON with the operation", []string{"divergence", "-agent", addr, "list", "-json"}, 0, []string{`"operation": {`, `"value": "v"`}, ""},
		{"discard without -yes", []string{"divergence", "discard", "-agent", addr, "7"}, 2, nil, "discard removes record 7 for good; add -yes"},
		{"fault refused", []string{"fault", "-agent", addr, "heal"}, 1, nil, "fault control is off"},
		{"fault -agent after the action", []string{"fault", "heal", "-agent", addr}, 1, nil, "fault control is off"},
		{"unreachable agent", []string{"info", "-agent", "127.0.0.1:1"}, 1, nil, "agent 127.0.0.1:1 unreachable"},
		{"bad -agent", []string{"info", "-agent", "nohost"}, 2, nil, "-agent"},
		{"unknown flag", []string{"members", "-frob"}, 2, nil, "members: flag provided but not defined: -frob"},
		{"unknown command", []string{"frob"}, 2, nil, `unknown command "frob"`},
		{"required flag", []string{"register", "-naming", "127.0.0.1:1"}, 2, nil, "Required flags"},
		{"kv without group", []string{"kv", "get", "k"}, 2, nil, "-group is required"},
		{"kv flag after the key", []string{"kv", "get", "-group", "g", "k", "-json"}, 2, nil, "go before KEY"},
		{"cas -absent arguments", []string{"kv", "cas", "-group", "g", "-absent", "k", "old", "new"}, 2, nil, "KEY NEW (with -absent)"},
		{"fault delay over a minute", []string{"fault", "-agent", addr, "delay", "-d", "2m"}, 2, nil, "want 0 to 1m"},
		{"partition peer", []string{"fault", "-agent", addr, "partition", "-from", ":80"}, 2, nil, "no host"},
	} {
		out, errOut, code := runCLI(tc.args...)
		if code != tc.code || !strings.Contains(errOut, tc.err) {
			t.Errorf("%s: exit %d, stderr %q; want %d and %q", tc.name, code, errOut, tc.code, tc.err)
		}
		for _, want := range tc.out {
			if !strings.Contains(out, want) {
				t.Errorf("%s: stdout %q lacks %q", tc.name, out, want)
			}
		}
	}
	if *deletes != 0 {
		t.Fatalf("discard without -yes deleted")
	}
	// The operation is text in the JSON; the msgpack it was logged as is
	// not repeated beside it.
	if out, _, _ := runCLI("divergence", "list", "-agent", addr, "-json"); strings.Contains(out, `"op":`) || strings.Contains(out, `"op_msgpack"`) {
		t.Errorf("divergence list -json repeats the msgpack operation:\n%s", out)
	}
	if _, errOut, code := runCLI("divergence", "discard", "-agent", addr, "-yes", "7"); code != 0 || *deletes != 1 {
		t.Fatalf("discard -yes: exit %d, %q, %d deletes", code, errOut, *deletes)
	}
}

// The members table gives a member that is not alive no role, shows what
// it last claimed, and marks the master the agent follows.
func TestPrintMembers(t *testing.T) {
	var b bytes.Buffer
	err := printMembers(&b, []wire.Member{
		{ID: 2, Group: "g", Role: "master", LastRole: "master", Epoch: api.Epoch{Term: 3, ID: 2}, Master: 2, Health: "alive", Followed: true},
		{ID: 1, Group: "g", Role: "unknown", LastRole: "master", Epoch: api.Epoch{Term: 2, ID: 1}, Master: 1, Health: "dead"},
		{ID: 3, Group: "g", Role: "backup", LastRole: "backup", Epoch: api.Epoch{Term: 3, ID: 2}, Master: 2, Health: "alive"},
	})
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if len(lines) != 5 {
		t.Fatalf("members table:\n%s", b.String())
	}
	for i, want := range []string{"unknown (last master)", "master *", "backup"} {
		f := strings.Fields(lines[i+1])
		if f[0] != fmt.Sprint(i+1) || !strings.Contains(lines[i+1], want) {
			t.Errorf("row %d %q, want member %d with role %q", i+1, lines[i+1], i+1, want)
		}
	}
	if strings.Contains(lines[1], "master *") || !strings.HasPrefix(lines[4], "* ") {
		t.Errorf("members table:\n%s", b.String())
	}
}

// Records made by a recovery whose log was compacted past the fork say
// so, in the list and in the record.
func TestRecordsSayWhatWasNotCompared(t *testing.T) {
	op, _ := kv.EncodeOp(kv.Op{Kind: kv.KindPut, Key: "k", Value: []byte("v")})
	recs := []store.Record{
		{ID: 1, Group: "g", Index: 3, Op: op, Recorded: time.Unix(0, 0)},
		{ID: 2, Group: "g", Index: 9, Op: op, Uncompared: 7, Recorded: time.Unix(0, 0)},
	}
	var list, one bytes.Buffer
	if err := printRecords(&list, recs); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(list.String(), "compacted past the fork (up to index 7, see record 2)") {
		t.Fatalf("list:\n%s", list.String())
	}
	printRecord(&one, recs[1], nil)
	if !strings.Contains(one.String(), "uncompared_before: 7") {
		t.Fatalf("record:\n%s", one.String())
	}
	list.Reset()
	printRecords(&list, recs[:1])
	if strings.Contains(list.String(), "compacted") {
		t.Fatalf("a record of a compared recovery reads as uncompared:\n%s", list.String())
	}
}

// A state record (the side's whole state, kept because its log was
// compacted past the fork) is listed as one, and shown with its pairs;
// the list points at it.
func TestStateRecordShown(t *testing.T) {
	st := kv.NewStore()
	for i, kvp := range [][2]string{{"a", "1"}, {"b", "2"}} {
		op, _ := kv.EncodeOp(kv.Op{Kind: kv.KindPut, Key: kvp[0], Value: []byte(kvp[1])})
		st.Apply(rlog.Entry{Index: uint64(i + 1), Op: op})
	}
	snap, err := st.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	op, _ := kv.EncodeOp(kv.Op{Kind: kv.KindPut, Key: "c", Value: []byte("3")})
	recs := []store.Record{
		{ID: 4, Group: "g", Index: 2, StateBytes: len(snap), Uncompared: 2, State: true, Recorded: time.Unix(0, 0)},
		{ID: 5, Group: "g", Index: 3, Op: op, Uncompared: 2, Recorded: time.Unix(0, 0)},
	}
	var list, one bytes.Buffer
	if err := printRecords(&list, recs); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(list.String(), "state") || !strings.Contains(list.String(), "is record 4 (divergence show 4)") {
		t.Fatalf("list:\n%s", list.String())
	}
	if !strings.Contains(list.String(), fmt.Sprintf("(%d bytes)", len(snap))) {
		t.Fatalf("list does not give the state's size:\n%s", list.String())
	}
	printRecord(&one, recs[0], snap)
	for _, want := range []string{"state: this side's state", fmt.Sprintf("%d bytes", len(snap)), "pairs: 2", `"a" = "1"`, `"b" = "2"`} {
		if !strings.Contains(one.String(), want) {
			t.Fatalf("record lacks %q:\n%s", want, one.String())
		}
	}
	if j := newRecordJSON(recs[0], snap); j.Pairs["a"] != "1" || j.Pairs["b"] != "2" || j.Operation != nil {
		t.Fatalf("JSON of the state record: %+v", j)
	}
	if j := newRecordJSON(recs[0], nil); j.Pairs != nil || j.StateBytes != len(snap) {
		t.Fatalf("JSON of the state record, state not fetched (list): %+v", j)
	}
}
