package agent_test

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mastership/mastership/agent/agenttest"
	"github.com/mastership/mastership/agent/wire"
	"github.com/mastership/mastership/config"
)

// GET /v1/info answers a client token (an application finding the master)
// without the hooks: their executables' paths and the tail of what they
// wrote to stderr are the operator's, and a script's stderr may hold what
// no application should read. A read token sees them.
func TestInfoKeepsHooksFromClientTokens(t *testing.T) {
	dir := t.TempDir()
	hookPath := filepath.Join(dir, "on-role-change")
	if err := os.WriteFile(hookPath, []byte("#!/bin/sh\necho 'db password: hunter2' >&2\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	const (
		agentSecret  = "agent-secret-0123456789"
		readSecret   = "read-secret-0123456789"
		clientSecret = "client-secret-0123456789"
	)
	acl := `{"tokens": [
		{"name": "agents", "secret": "` + agentSecret + `", "capabilities": ["agent", "client", "read"]},
		{"name": "monitor", "secret": "` + readSecret + `", "capabilities": ["read"]},
		{"name": "app", "secret": "` + clientSecret + `", "capabilities": ["client"]}]}`
	aclPath := filepath.Join(dir, "acl.json")
	if err := os.WriteFile(aclPath, []byte(acl), 0o600); err != nil {
		t.Fatal(err)
	}
	c := agenttest.New(t, agenttest.Options{Agents: 1, Base: 26, Tune: func(cfg *config.Agent) {
		cfg.ACL, cfg.Token, cfg.OnRoleChange = aclPath, agentSecret, hookPath
	}})
	c.WaitStable(20 * time.Second)
	info := func(token string) (wire.Info, string) {
		t.Helper()
		req, _ := http.NewRequest("GET", "http://"+c.Members[1].Config.API+"/v1/info", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var raw json.RawMessage
		if err := json.NewDecoder(resp.Body).Decode(&raw); err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != 200 {
			t.Fatalf("GET /v1/info: %s %s", resp.Status, raw)
		}
		var in wire.Info
		if err := json.Unmarshal(raw, &in); err != nil {
			t.Fatal(err)
		}
		return in, string(raw)
	}
	c.WaitFor(10*time.Second, "the hook's run recorded", func() bool {
		in, _ := info(readSecret)
		return in.Hooks != nil && len(in.Hooks.Recent) > 0
	})
	in, raw := info(readSecret)
	if in.Hooks.OnRoleChange != hookPath || !strings.Contains(in.Hooks.Recent[len(in.Hooks.Recent)-1].StderrTail, "hunter2") {
		t.Fatalf("the read token's info lacks the hook or its stderr: %s", raw)
	}
	in, raw = info(clientSecret)
	if in.Hooks != nil || strings.Contains(raw, "hunter2") || strings.Contains(raw, hookPath) {
		t.Fatalf("the client token's info shows the hooks: %s", raw)
	}
	if in.Role != "master" || in.ID != 1 || in.Group != "g" {
		t.Fatalf("the client token's info lacks what finding the master needs: %s", raw)
	}
}
