package config

import (
	"errors"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

func writeFile(t *testing.T, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "config.json")
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestNamingPrecedence(t *testing.T) {
	dir := t.TempDir()
	file := writeFile(t, `{
		"data_dir": "`+dir+`",
		"session_ttl": "3s",
		"sweep_interval": "200ms",
		"default_policy": "priority"
	}`)
	env := []string{"PATH=/bin", "MASTERSHIP_SESSION_TTL=4s", "MASTERSHIP_MAX_EVENTS_PER_GROUP=20"}
	flags := map[string]string{"session-ttl": "5s"}
	tests := []struct {
		name        string
		s           Sources
		wantSession time.Duration
		wantEvents  int
		wantPolicy  string
	}{
		{"flag over env over file", Sources{File: file, Env: env, Flags: flags}, 5 * time.Second, 20, "priority"},
		{"env over file", Sources{File: file, Env: env}, 4 * time.Second, 20, "priority"},
		{"file over defaults", Sources{File: file}, 3 * time.Second, 10000, "priority"},
		{"flag over defaults", Sources{Flags: map[string]string{"session-ttl": "5s", "data-dir": dir}}, 5 * time.Second, 10000, "lowest-id"},
		{"config file from env", Sources{Env: []string{"MASTERSHIP_CONFIG=" + file}}, 3 * time.Second, 10000, "priority"},
		{"profile from env", Sources{Env: []string{"MASTERSHIP_PROFILE=local", "MASTERSHIP_DATA_DIR=" + dir}}, 2 * time.Second, 10000, "lowest-id"},
		{"profile flag over env", Sources{Profile: "wan", Env: []string{"MASTERSHIP_PROFILE=local", "MASTERSHIP_DATA_DIR=" + dir}}, 30 * time.Second, 10000, "lowest-id"},
		{"empty env ignored", Sources{File: file, Env: []string{"MASTERSHIP_SESSION_TTL="}}, 3 * time.Second, 10000, "priority"},
		{"foreign env ignored", Sources{File: file, Env: []string{"MASTERSHIP_GROUP=g", "MASTERSHIP_LOG_LEVEL=debug", "NOEQUALS"}}, 3 * time.Second, 10000, "priority"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, err := LoadNaming(tt.s)
			if err != nil {
				t.Fatal(err)
			}
			if n.SessionTTL != tt.wantSession || n.MaxEventsPerGroup != tt.wantEvents || n.DefaultPolicy != tt.wantPolicy {
				t.Errorf("session-ttl %v, max-events %d, policy %q; want %v, %d, %q",
					n.SessionTTL, n.MaxEventsPerGroup, n.DefaultPolicy, tt.wantSession, tt.wantEvents, tt.wantPolicy)
			}
		})
	}
}

func TestAgentPrecedence(t *testing.T) {
	file := writeFile(t, `{
		"group": "g", "id": 7,
		"join": ["10.0.0.1:7946"],
		"tick_unit": "20ms",
		"fault_control": true,
		"priority": -3
	}`)
	env := []string{"MASTERSHIP_JOIN=10.0.0.2:7946, 10.0.0.3:7946", "MASTERSHIP_FAULT_CONTROL=false", "MASTERSHIP_ID=8"}
	flags := map[string]string{"join": "10.0.0.4:7946", "id": "9"}
	tests := []struct {
		name  string
		s     Sources
		join  []string
		fault bool
		id    uint64
	}{
		{"flag over env over file", Sources{File: file, Env: env, Flags: flags}, []string{"10.0.0.4:7946"}, false, 9},
		{"env over file", Sources{File: file, Env: env}, []string{"10.0.0.2:7946", "10.0.0.3:7946"}, false, 8},
		{"file", Sources{File: file}, []string{"10.0.0.1:7946"}, true, 7},
		{"flag clears list", Sources{File: file, Flags: map[string]string{"join": ""}}, nil, true, 7},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := LoadAgent(tt.s)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(a.Join, tt.join) || a.FaultControl != tt.fault || a.ID != tt.id {
				t.Errorf("join %q, fault-control %v, id %d; want %q, %v, %d", a.Join, a.FaultControl, a.ID, tt.join, tt.fault, tt.id)
			}
			if a.TickUnit != 20*time.Millisecond || a.Priority != -3 || a.Group != "g" {
				t.Errorf("file values lost: tick-unit %v, priority %d, group %q", a.TickUnit, a.Priority, a.Group)
			}
			if a.SessionTTL != 10*time.Second || a.GossipProfile != ProfileLAN {
				t.Errorf("lan defaults lost: session-ttl %v, gossip-profile %q", a.SessionTTL, a.GossipProfile)
			}
		})
	}
}

func TestLoadErrors(t *testing.T) {
	good := writeFile(t, `{"group": "g", "id": 1}`)
	tests := []struct {
		name string
		s    Sources
		is   error
		want []string // substrings of the message
	}{
		{"unknown file key", Sources{File: writeFile(t, `{"group": "g", "id": 1, "colour": "red"}`)}, ErrUnknownKey, []string{"config.json", `"colour"`}},
		{"flag-style file key", Sources{File: writeFile(t, `{"session-ttl": "2s"}`)}, ErrUnknownKey, []string{`"session-ttl"`, `did you mean "session_ttl"`}},
		{"key case matters", Sources{File: writeFile(t, `{"Group": "g"}`)}, ErrUnknownKey, []string{`"Group"`}},
		{"bad file duration", Sources{File: writeFile(t, `{"tick_unit": "2x"}`)}, ErrBadValue, []string{"config.json", `"tick_unit"`, "2x"}},
		{"numeric file duration", Sources{File: writeFile(t, `{"tick_unit": 10}`)}, ErrBadValue, []string{`"tick_unit"`, `"2s"`}},
		{"wrong file type", Sources{File: writeFile(t, `{"id": "one"}`)}, ErrBadValue, []string{`"id"`}},
		{"negative id in file", Sources{File: writeFile(t, `{"id": -1}`)}, ErrBadValue, []string{`"id"`}},
		{"null in file", Sources{File: writeFile(t, `{"group": null}`)}, ErrBadValue, []string{`"group"`, "null"}},
		{"file not an object", Sources{File: writeFile(t, `["group"]`)}, ErrBadValue, []string{"config.json", "JSON object"}},
		{"file null", Sources{File: writeFile(t, `null`)}, ErrBadValue, []string{"JSON object"}},
		{"file trailing data", Sources{File: writeFile(t, `{} {}`)}, ErrBadValue, []string{"after the JSON object"}},
		{"file missing", Sources{File: filepath.Join(t.TempDir(), "none.json")}, fs.ErrNotExist, []string{"none.json"}},
		{"bad env duration", Sources{File: good, Env: []string{"MASTERSHIP_SESSION_TTL=ten"}}, ErrBadValue, []string{"MASTERSHIP_SESSION_TTL", "ten"}},
		{"bad env int", Sources{File: good, Env: []string{"MASTERSHIP_PRIORITY=high"}}, ErrBadValue, []string{"MASTERSHIP_PRIORITY", "integer"}},
		{"bad env bool", Sources{File: good, Env: []string{"MASTERSHIP_FAULT_CONTROL=yes"}}, ErrBadValue, []string{"MASTERSHIP_FAULT_CONTROL", "true or false"}},
		{"env id out of range", Sources{File: good, Env: []string{"MASTERSHIP_ID=18446744073709551616"}}, ErrBadValue, []string{"MASTERSHIP_ID"}},
		{"bad flag", Sources{File: good, Flags: map[string]string{"write-timeout": "soon"}}, ErrBadValue, []string{"flag -write-timeout", "soon"}},
		{"unknown flag", Sources{File: good, Flags: map[string]string{"colour": "red"}}, ErrUnknownKey, []string{"flag -colour"}},
		{"unknown profile flag", Sources{Profile: "dev"}, ErrUnknownProfile, []string{"flag -profile", `"dev"`}},
		{"unknown profile env", Sources{Env: []string{"MASTERSHIP_PROFILE=dev"}}, ErrUnknownProfile, []string{"env MASTERSHIP_PROFILE", `"dev"`}},
		{"loaded then validated", Sources{File: good, Flags: map[string]string{"election-ticks": "2"}}, ErrInvalid, []string{"election-ticks"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := LoadAgent(tt.s)
			if !errors.Is(err, tt.is) {
				t.Fatalf("got %v, want %v", err, tt.is)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("%q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestLoadJoinsLayerErrors(t *testing.T) {
	// One run shows every bad value, whatever layer it is in.
	_, err := LoadNaming(Sources{
		File:  writeFile(t, `{"sweep_interval": "x", "colour": 1}`),
		Env:   []string{"MASTERSHIP_SESSION_TTL=y"},
		Flags: map[string]string{"max-ttl": "z"},
	})
	for _, w := range []string{`"sweep_interval"`, `"colour"`, "MASTERSHIP_SESSION_TTL", "flag -max-ttl"} {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("%v does not contain %q", err, w)
		}
	}
}

func TestFileSizeLimit(t *testing.T) {
	big := `{"group": "` + strings.Repeat("a", MaxFileBytes) + `"}`
	_, err := LoadAgent(Sources{File: writeFile(t, big)})
	if !errors.Is(err, ErrBadValue) || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("got %v, want a size error", err)
	}
}

// TestEveryFieldLoads sets every field from a file, the environment and a
// flag, so a field of a type the loader cannot parse fails here rather than
// panicking for a user.
func TestEveryFieldLoads(t *testing.T) {
	sample := func(typ reflect.Type) (str, js string) {
		switch {
		case typ == durationType:
			return "1s", `"1s"`
		case typ.Kind() == reflect.String:
			return "x", `"x"`
		case typ.Kind() == reflect.Bool:
			return "true", "true"
		case typ.Kind() == reflect.Int, typ.Kind() == reflect.Uint64:
			return "5", "5"
		case typ.Kind() == reflect.Slice:
			return "a:1,b:2", `["a:1","b:2"]`
		}
		t.Fatalf("no sample for %s", typ)
		return "", ""
	}
	for _, cfg := range []any{&Naming{}, &Agent{}} {
		fields := fieldsOf(reflect.TypeOf(cfg).Elem())
		if len(fields) == 0 {
			t.Fatalf("%T: no fields", cfg)
		}
		for _, f := range fields {
			str, js := sample(f.typ)
			if err := decodeFile(cfg, "f.json", []byte(`{"`+f.key+`": `+js+`}`)); err != nil {
				t.Errorf("%T file %s: %v", cfg, f.key, err)
			}
			fromFile := reflect.ValueOf(cfg).Elem().Field(f.index).Interface()
			if err := applyEnv(cfg, []string{f.env + "=" + str}); err != nil {
				t.Errorf("%T env %s: %v", cfg, f.env, err)
			}
			if err := applyFlags(cfg, map[string]string{f.flag: str}); err != nil {
				t.Errorf("%T flag %s: %v", cfg, f.flag, err)
			}
			fromFlag := reflect.ValueOf(cfg).Elem().Field(f.index).Interface()
			if !reflect.DeepEqual(fromFile, fromFlag) {
				t.Errorf("%T %s: file gave %v, flag gave %v", cfg, f.key, fromFile, fromFlag)
			}
			if f.key != strings.ReplaceAll(f.flag, "-", "_") || f.env != "MASTERSHIP_"+strings.ToUpper(f.key) {
				t.Errorf("%T %s: flag %s, env %s", cfg, f.key, f.flag, f.env)
			}
		}
	}
	// The Logger is not configuration.
	for _, f := range append(fieldsOf(reflect.TypeFor[Agent]()), fieldsOf(reflect.TypeFor[Naming]())...) {
		if f.typ.Kind() == reflect.Interface {
			t.Errorf("%s of type %s is loadable", f.key, f.typ)
		}
	}
}

func FuzzLoadFile(f *testing.F) {
	for _, seed := range []string{
		`{}`,
		`{"group": "g", "id": 1, "join": ["a:1"], "tick_unit": "10ms", "fault_control": true}`,
		`{"data_dir": "/d", "session_ttl": "2s", "max_events_per_group": 16}`,
		`{"session_ttl": 5}`,
		`{"id": 18446744073709551615, "priority": -9223372036854775808}`,
		`{"monitor_count": 9223372036854775807, "monitor_unit": "2562047h"}`,
		`{"join": null}`,
		`[1,2]`,
		`{"a":`,
		`{} x`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, profile := range Profiles() {
			n, _ := DefaultNaming(profile)
			if err := decodeFile(&n, "fuzz.json", data); err == nil {
				// Validate must be pure: no panic, and the same answer twice.
				if e1, e2 := n.Validate(), n.Validate(); (e1 == nil) != (e2 == nil) || (e1 != nil && e1.Error() != e2.Error()) {
					t.Errorf("Validate answers %v then %v", e1, e2)
				}
			}
			a, _ := DefaultAgent(profile)
			if err := decodeFile(&a, "fuzz.json", data); err == nil {
				if err := a.Validate(); err == nil {
					if a.APIAddr() == "" {
						t.Errorf("valid agent %+v has no API address", a)
					}
					if _, err := a.EncryptKey(); err != nil {
						t.Errorf("valid agent has a bad key: %v", err)
					}
				}
			}
		}
	})
}

// Strict mode needs -expect whichever layer sets the mode, and any layer
// may give it.
func TestStrictNeedsExpectFromEveryLayer(t *testing.T) {
	strictFile := writeFile(t, `{"group": "g", "id": 1, "mode": "strict"}`)
	expectFile := writeFile(t, `{"group": "g", "id": 1, "mode": "strict", "expect": 3}`)
	base := map[string]string{"group": "g", "id": "1"}
	with := func(kv ...string) map[string]string {
		m := maps.Clone(base)
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	for _, tt := range []struct {
		name string
		s    Sources
		ok   bool
	}{
		{"flag", Sources{Flags: with("mode", "strict")}, false},
		{"env", Sources{Env: []string{"MASTERSHIP_MODE=strict"}, Flags: base}, false},
		{"file", Sources{File: strictFile}, false},
		{"file with expect", Sources{File: expectFile}, true},
		{"env expect over a file without", Sources{File: strictFile, Env: []string{"MASTERSHIP_EXPECT=3"}}, true},
		{"flag expect 0 over a file with", Sources{File: expectFile, Flags: map[string]string{"expect": "0"}}, false},
		{"available without expect", Sources{Flags: with("mode", "available")}, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := LoadAgent(tt.s)
			if tt.ok != (err == nil) {
				t.Fatalf("LoadAgent: %v; want ok %t", err, tt.ok)
			}
			if err != nil && !strings.Contains(err.Error(), "required in strict mode") {
				t.Fatalf("error %q does not say why", err)
			}
		})
	}
}
