package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mastership/mastership/naming/auth"
)

// e2eSecurity is the trust set-up of a secured cluster, made with the
// binary's own commands (tls ca, tls cert, keygen): a CA, a certificate per
// process, an ACL with the agents', the naming node's and an operator's
// tokens, and a gossip key.
type e2eSecurity struct {
	dir string
	ca  string
	key string // the gossip key
	// Token files; the secrets themselves stay in the files.
	agentsToken, namingToken, opsToken, readToken, clientToken string
	acl                                                        string
	// Creds of the harness: the operator's and client's token (it writes,
	// reads and injects faults) and its own certificate.
	harness auth.Creds
}

const (
	secAgents = "agents-0123456789abcdef"
	secNaming = "naming-0123456789abcdef"
	secOps    = "ops-0123456789abcdef0000"
	secRead   = "read-0123456789abcdef000"
	secClient = "client-0123456789abcdef0"
)

func newSecurity(t *testing.T, ips ...string) *e2eSecurity {
	t.Helper()
	s := &e2eSecurity{dir: t.TempDir()}
	s.ca = filepath.Join(s.dir, "ca")
	mustRun(t, "tls", "ca", "-out", s.ca)
	mustRun(t, "tls", "cert", "-ca", s.ca, "-name", "harness", "-ip", "127.0.0.1", "-out", s.dir)
	for _, ip := range ips {
		mustRun(t, "tls", "cert", "-ca", s.ca, "-name", ip, "-ip", ip, "-out", s.dir)
	}
	s.key = strings.TrimSpace(mustRun(t, "keygen"))
	acl := fmt.Sprintf(`{"tokens": [
  {"name": "agents", "secret": %q, "capabilities": ["agent", "client", "read"]},
  {"name": "naming", "secret": %q, "capabilities": ["agent", "read"]},
  {"name": "ops", "secret": %q, "capabilities": ["operator", "client", "read"]},
  {"name": "reader", "secret": %q, "capabilities": ["read"]},
  {"name": "app", "secret": %q, "capabilities": ["client"]}
]}`, secAgents, secNaming, secOps, secRead, secClient)
	s.acl = filepath.Join(s.dir, "acl.json")
	write := func(name, content string) string {
		p := filepath.Join(s.dir, name)
		if err := os.WriteFile(p, []byte(content+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	write("acl.json", acl)
	s.agentsToken, s.namingToken = write("agents.token", secAgents), write("naming.token", secNaming)
	s.opsToken, s.readToken = write("ops.token", secOps), write("read.token", secRead)
	s.clientToken = write("client.token", secClient)
	tlsCfg, err := auth.ClientTLS(s.files("harness"))
	if err != nil {
		t.Fatal(err)
	}
	s.harness = auth.Creds{Token: secOps, TLS: tlsCfg}
	return s
}

// files are the TLS files of the certificate named name.
func (s *e2eSecurity) files(name string) auth.TLSFiles {
	return auth.TLSFiles{CA: filepath.Join(s.ca, auth.CAFile), Cert: filepath.Join(s.dir, name+".pem"), Key: filepath.Join(s.dir, name+"-key.pem")}
}

func (s *e2eSecurity) tlsArgs(name string) []string {
	f := s.files(name)
	return []string{"-tls-ca", f.CA, "-tls-cert", f.Cert, "-tls-key", f.Key}
}

// namingArgs are the naming node's trust flags, for its certificate ip.
func (s *e2eSecurity) namingArgs(ip string) []string {
	return append([]string{"-acl", s.acl, "-token-file", s.namingToken}, s.tlsArgs(ip)...)
}

// agentArgs are an agent's trust flags, for its certificate ip.
func (s *e2eSecurity) agentArgs(ip string) []string {
	return append([]string{"-acl", s.acl, "-token-file", s.agentsToken, "-encrypt", s.key}, s.tlsArgs(ip)...)
}

// cliArgs are the trust flags of a command run as the holder of the token
// file, with the harness's certificate.
func (s *e2eSecurity) cliArgs(tokenFile string) []string {
	return append([]string{"-token-file", tokenFile}, s.tlsArgs("harness")...)
}

// mustRun runs the binary and returns its stdout; a non-zero exit fails.
func mustRun(t *testing.T, args ...string) string {
	t.Helper()
	out, errOut, code := run(t, args...)
	if code != 0 {
		t.Fatalf("%v: exit %d: %s", args, code, errOut)
	}
	return out
}
