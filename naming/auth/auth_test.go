package auth

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mastership/mastership/naming/api"
)

const aclJSON = `{"tokens": [
  {"name": "agents", "secret": "agents-secret-0123456789", "capabilities": ["agent", "client", "read"]},
  {"name": "ops", "secret": "ops-secret-0123456789abc", "capabilities": ["operator", "read"]}
]}`

func TestParseACL(t *testing.T) {
	if _, err := ParseACL([]byte(aclJSON)); err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct{ json, want string }{
		"no tokens":                  {`{"tokens": []}`, "no tokens"},
		"short secret":               {`{"tokens": [{"name": "a", "secret": "short", "capabilities": ["read"]}]}`, "at least 16"},
		"unknown cap":                {`{"tokens": [{"name": "a", "secret": "0123456789abcdef", "capabilities": ["root"]}]}`, "unknown capability"},
		"no caps":                    {`{"tokens": [{"name": "a", "secret": "0123456789abcdef", "capabilities": []}]}`, "no capabilities"},
		"no name":                    {`{"tokens": [{"secret": "0123456789abcdef", "capabilities": ["read"]}]}`, "name"},
		"repeated name":              {`{"tokens": [{"name": "a", "secret": "0123456789abcdef", "capabilities": ["read"]}, {"name": "a", "secret": "0123456789abcdeX", "capabilities": ["read"]}]}`, "used twice"},
		"repeated secret":            {`{"tokens": [{"name": "a", "secret": "0123456789abcdef", "capabilities": ["read"]}, {"name": "b", "secret": "0123456789abcdef", "capabilities": ["agent"]}]}`, "used by another"},
		"unknown key":                {`{"tokens": [], "admin": true}`, "unknown field"},
		"trailing data":              {aclJSON + `{}`, "after the JSON"},
		"not json":                   {`tokens`, "want"},
		"secret ends in a newline":   {`{"tokens": [{"name": "a", "secret": "0123456789abcdef\n", "capabilities": ["read"]}]}`, "white space at an end"},
		"secret starts with a space": {`{"tokens": [{"name": "a", "secret": " 0123456789abcdef", "capabilities": ["read"]}]}`, "white space at an end"},
		"secret with a tab inside":   {`{"tokens": [{"name": "a", "secret": "01234567\t89abcdef", "capabilities": ["read"]}]}`, "control character"},
		"secret with a NUL inside":   {`{"tokens": [{"name": "a", "secret": "01234567\u000089abcdef", "capabilities": ["read"]}]}`, "control character"},
		"secret in message":          {`{"tokens": [{"name": "a", "secret": "sekrit", "capabilities": ["read"]}]}`, "6 bytes"},
	} {
		_, err := ParseACL([]byte(tc.json))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error with %q", name, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "sekrit") {
			t.Errorf("%s: the error shows the secret: %v", name, err)
		}
	}
}

func TestACLCheck(t *testing.T) {
	acl, err := ParseACL([]byte(aclJSON))
	if err != nil {
		t.Fatal(err)
	}
	if name, err := acl.Check("agents-secret-0123456789", Agent); err != nil || name != "agents" {
		t.Fatalf("agent token for agent: %q %v", name, err)
	}
	cases := []struct {
		secret string
		need   Capability
		want   error
		code   api.Code
	}{
		{"", Read, ErrNoToken, api.CodeUnauthorized},
		{"nope-nope-nope-nope", Read, ErrBadToken, api.CodeUnauthorized},
		{"agents-secret-012345678", Read, ErrBadToken, api.CodeUnauthorized}, // a prefix
		{"ops-secret-0123456789abc", Client, ErrForbidden, api.CodeForbidden},
		{"agents-secret-0123456789", Operator, ErrForbidden, api.CodeForbidden},
	}
	for _, tc := range cases {
		_, err := acl.Check(tc.secret, tc.need)
		if !errors.Is(err, tc.want) || ToAPIError(err).Code != tc.code {
			t.Errorf("%q for %s: %v, want %v (%s)", tc.secret, tc.need, err, tc.want, tc.code)
		}
		if tc.secret != "" && strings.Contains(err.Error(), tc.secret) {
			t.Errorf("the error shows the secret: %v", err)
		}
	}
	if _, err := acl.Check("ops-secret-0123456789abc", Client); !strings.Contains(err.Error(), "client capability") {
		t.Errorf("forbidden does not name the capability: %v", err)
	}
	// One of several: discovery takes read or client.
	if name, err := acl.Check("ops-secret-0123456789abc", Discovery()...); err != nil || name != "ops" {
		t.Errorf("ops (read) for discovery: %q %v", name, err)
	}
	if _, err := acl.Check("ops-secret-0123456789abc", Client, Agent); !errors.Is(err, ErrForbidden) || !strings.Contains(err.Error(), "client or agent capability") {
		t.Errorf("ops for client or agent: %v, want forbidden naming both", err)
	}
	if _, err := acl.Check("", Discovery()...); !errors.Is(err, ErrNoToken) || !strings.Contains(err.Error(), "read or client") {
		t.Errorf("no token for discovery: %v", err)
	}
	var open *ACL
	if _, err := open.Check("", Operator); err != nil || !open.Open() {
		t.Fatalf("open ACL: %v", err)
	}
}

func TestLoadToken(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "token")
	os.WriteFile(f, []byte("  s3cret-token  \nignored\n"), 0o600)
	if tok, err := LoadToken("", f); err != nil || tok != "s3cret-token" {
		t.Fatalf("token file: %q %v", tok, err)
	}
	if _, err := LoadToken("x", f); err == nil {
		t.Fatal("both -token and -token-file accepted")
	}
	os.WriteFile(f, []byte("\n"), 0o600)
	if _, err := LoadToken("", f); err == nil {
		t.Fatal("empty token file accepted")
	}
	if tok, err := LoadToken("direct", ""); err != nil || tok != "direct" {
		t.Fatalf("direct token: %q %v", tok, err)
	}
}

// pki makes a CA and a certificate for 127.0.0.1 in dir; a second CA
// signs an impostor's certificate.
func pki(t *testing.T) (good, impostor TLSFiles) {
	t.Helper()
	dir := t.TempDir()
	now := time.Now()
	ca, other := filepath.Join(dir, "ca"), filepath.Join(dir, "other")
	for _, d := range []string{ca, other} {
		if err := GenerateCA(d, now); err != nil {
			t.Fatal(err)
		}
	}
	if err := GenerateCA(ca, now); err == nil {
		t.Fatal("GenerateCA overwrote a CA")
	}
	if err := GenerateCert(ca, "node", []string{"127.0.0.1"}, nil, dir, now); err != nil {
		t.Fatal(err)
	}
	if err := GenerateCert(other, "impostor", []string{"127.0.0.1"}, nil, dir, now); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []struct{ name, ip string }{{"bad name!", "127.0.0.1"}, {"x", "not-an-ip"}, {"y", ""}} {
		var ips []string
		if bad.ip != "" {
			ips = []string{bad.ip}
		}
		if err := GenerateCert(ca, bad.name, ips, nil, dir, now); err == nil {
			t.Errorf("GenerateCert(%q, %v) accepted", bad.name, ips)
		}
	}
	if st, _ := os.Stat(filepath.Join(ca, CAKeyFile)); st.Mode().Perm() != 0o600 {
		t.Errorf("CA key mode %v", st.Mode())
	}
	good = TLSFiles{CA: filepath.Join(ca, CAFile), Cert: filepath.Join(dir, "node.pem"), Key: filepath.Join(dir, "node-key.pem")}
	impostor = TLSFiles{CA: filepath.Join(ca, CAFile), Cert: filepath.Join(dir, "impostor.pem"), Key: filepath.Join(dir, "impostor-key.pem")}
	return good, impostor
}

// Mutual TLS: a server with the cluster's CA accepts a client with a
// certificate it signed, and refuses a client without one, one signed by
// another CA, and plain HTTP; a client refuses a server the CA did not
// sign.
func TestMutualTLS(t *testing.T) {
	good, impostor := pki(t)
	srvTLS, err := ServerTLS(good)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := Server{TLS: srvTLS}
	hs := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }),
		ErrorLog: nil}
	go hs.Serve(srv.Listen(ln))
	defer hs.Close()
	addr := ln.Addr().String()
	get := func(c Creds) error {
		hc := &http.Client{Transport: c.Transport(&http.Transport{}), Timeout: 5 * time.Second}
		defer hc.CloseIdleConnections()
		resp, err := hc.Get(c.URL(addr, "/"))
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if string(b) != "ok" {
			return errors.New("unexpected body " + string(b))
		}
		return nil
	}
	clientTLS, err := ClientTLS(good)
	if err != nil {
		t.Fatal(err)
	}
	if err := get(Creds{TLS: clientTLS}); err != nil {
		t.Fatalf("client with the cluster's certificate: %v", err)
	}
	noCert := clientTLS.Clone()
	noCert.Certificates = nil
	impTLS, _ := ClientTLS(impostor)
	plainErr := get(Creds{})
	for name, c := range map[string]Creds{"no certificate": {TLS: noCert}, "another CA": {TLS: impTLS}} {
		if err := get(c); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if plainErr == nil {
		t.Error("plain HTTP accepted by a TLS server")
	}
	// The client side: a server whose certificate another CA signed.
	impSrv, _ := ServerTLS(TLSFiles{CA: impostor.CA, Cert: impostor.Cert, Key: impostor.Key})
	ln2, _ := net.Listen("tcp", "127.0.0.1:0")
	hs2 := &http.Server{Handler: hs.Handler}
	go hs2.Serve(tls.NewListener(ln2, impSrv))
	defer hs2.Close()
	addr = ln2.Addr().String()
	if err := get(Creds{TLS: clientTLS}); err == nil {
		t.Error("the client trusted a server another CA signed")
	}
	if err := (TLSFiles{CA: good.CA}).Check(); err == nil {
		t.Error("a CA without certificate and key accepted")
	}
}

// A profile's or a trace's ?seconds is bounded: a number from 1 to
// MaxProfileSeconds, else 400 before any profiling starts.
func TestPprofSecondsBounded(t *testing.T) {
	mux := http.NewServeMux()
	HandlePprof(mux, func(h http.HandlerFunc) http.HandlerFunc { return h })
	for _, c := range []struct {
		path string
		code int
	}{
		{"/debug/pprof/profile?seconds=100000", 400},
		{"/debug/pprof/profile?seconds=-1", 400},
		{"/debug/pprof/trace?seconds=abc", 400},
		{"/debug/pprof/trace?seconds=0", 400},
		{"/debug/pprof/cmdline", 200},
	} {
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, c.path, nil))
		if rec.Code != c.code {
			t.Errorf("GET %s: %d, want %d", c.path, rec.Code, c.code)
		}
	}
}

// wrapped hides a connection as the stream router and the fault
// injector do, exposing it through NetConn or not.
type wrapped struct{ net.Conn }

func (w wrapped) NetConn() net.Conn { return w.Conn }

type opaque struct{ net.Conn }

// CoversAddr accepts an address the peer's certificate is valid for and
// refuses any other, a malformed one, and a connection without TLS or
// whose TLS it cannot find.
func TestCoversAddr(t *testing.T) {
	good, _ := pki(t) // a certificate for 127.0.0.1, as server and client
	srvTLS, err := ServerTLS(good)
	if err != nil {
		t.Fatal(err)
	}
	cliTLS, err := ClientTLS(good)
	if err != nil {
		t.Fatal(err)
	}
	raw, other := net.Pipe() // a connection without TLS
	defer raw.Close()
	defer other.Close()
	sc := handshaken(t, srvTLS, cliTLS)
	for _, ok := range []string{"127.0.0.1:7000", "127.0.0.1:1"} {
		if err := CoversAddr(sc, ok); err != nil {
			t.Errorf("CoversAddr(%q): %v", ok, err)
		}
		if err := CoversAddr(wrapped{wrapped{sc}}, ok); err != nil {
			t.Errorf("CoversAddr(wrapped, %q): %v", ok, err)
		}
	}
	for _, bad := range []string{"127.0.0.2:7000", "10.0.0.1:8946", "localhost:7000", "[::1]:7000", "127.0.0.1", ":7000", "", "127.0.0.1:7000:1", strings.Repeat("a", 300) + ":1"} {
		if err := CoversAddr(sc, bad); !errors.Is(err, ErrAddrNotCovered) {
			t.Errorf("CoversAddr(%q) = %v, want ErrAddrNotCovered", bad, err)
		}
	}
	for name, c := range map[string]net.Conn{"plain": raw, "opaque TLS": opaque{sc}, "wrapped plain": wrapped{raw}} {
		if err := CoversAddr(c, "127.0.0.1:7000"); !errors.Is(err, ErrAddrNotCovered) {
			t.Errorf("CoversAddr of a %s connection = %v, want ErrAddrNotCovered", name, err)
		}
	}
}

// handshaken returns the server end of a TLS connection over loopback
// whose handshake is done, with the client's certificate from cli.
func handshaken(t *testing.T, srv, cli *tls.Config) *tls.Conn {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	type res struct {
		c   *tls.Conn
		err error
	}
	done := make(chan res, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- res{nil, err}
			return
		}
		c.SetDeadline(time.Now().Add(10 * time.Second))
		sc := tls.Server(c, srv)
		done <- res{sc, sc.Handshake()}
	}()
	cc, err := Creds{TLS: cli}.Dial(func(ctx context.Context, network, addr string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	})(context.Background(), "tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	t.Cleanup(func() { r.c.Close() })
	return r.c
}
