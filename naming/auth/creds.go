package auth

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"strconv"
	"strings"
	"time"
)

// Creds are what a client presents to agents and naming nodes: a bearer
// token and, with mutual TLS, its certificate and the CA it trusts. The
// zero Creds is an anonymous client over plain TCP.
type Creds struct {
	Token string
	TLS   *tls.Config
}

// Scheme is "https" with TLS, else "http".
func (c Creds) Scheme() string {
	if c.TLS != nil {
		return "https"
	}
	return "http"
}

// URL is the URL of path at addr (host:port).
func (c Creds) URL(addr, path string) string { return c.Scheme() + "://" + addr + path }

// Transport completes base (its dialer and pool settings) with the TLS
// configuration and returns a RoundTripper that adds the bearer token to
// every request.
func (c Creds) Transport(base *http.Transport) http.RoundTripper {
	if c.TLS != nil {
		base.TLSClientConfig = c.TLS.Clone()
	}
	if c.Token == "" {
		return base
	}
	return &bearer{rt: base, token: c.Token}
}

// Authorize sets the bearer token of a request built by hand.
func (c Creds) Authorize(r *http.Request) {
	if c.Token != "" {
		r.Header.Set("Authorization", "Bearer "+c.Token)
	}
}

type bearer struct {
	rt    *http.Transport
	token string
}

func (b *bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return b.rt.RoundTrip(r)
}

// CloseIdleConnections lets http.Client.CloseIdleConnections reach the
// transport under the token.
func (b *bearer) CloseIdleConnections() { b.rt.CloseIdleConnections() }

// Dial wraps a dialer of raw connections (message streams) with the TLS
// handshake, bounded by ctx.
func (c Creds) Dial(dial func(ctx context.Context, network, addr string) (net.Conn, error)) func(ctx context.Context, network, addr string) (net.Conn, error) {
	if c.TLS == nil {
		return dial
	}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		raw, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		tc := tls.Client(raw, forAddr(c.TLS, addr))
		if err := tc.HandshakeContext(ctx); err != nil {
			raw.Close()
			return nil, fmt.Errorf("tls handshake with %s: %w", addr, err)
		}
		return tc, nil
	}
}

// LoadToken returns the token given directly, or read from file (its
// first line, trimmed). Both set is an error.
func LoadToken(token, file string) (string, error) {
	if token != "" && file != "" {
		return "", errors.New("give -token or -token-file, not both")
	}
	if file == "" {
		return token, nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("auth: token file: %w", err)
	}
	t, _, _ := strings.Cut(string(b), "\n")
	t = strings.TrimSpace(t)
	if t == "" {
		return "", fmt.Errorf("auth: token file %s is empty", file)
	}
	return t, nil
}

// Server is a server's side of trust: the ACL it checks tokens against
// (nil: open) and the TLS configuration it requires of every connection
// (nil: plain TCP).
type Server struct {
	ACL *ACL
	TLS *tls.Config
}

// Listen wraps ln with TLS when the server has it; the handshake (and the
// client certificate check) runs on each connection's first read, which
// the caller bounds with a deadline.
func (s Server) Listen(ln net.Listener) net.Listener {
	if s.TLS == nil {
		return ln
	}
	return tls.NewListener(ln, s.TLS)
}

// HandshakeTimeout bounds a TLS handshake on a server's connection.
const HandshakeTimeout = 5 * time.Second

// Require wraps h so that it runs only for a request whose bearer token
// grants need; otherwise fail answers with the typed error (401 or 403).
func (s Server) Require(need Capability, h http.HandlerFunc, fail func(http.ResponseWriter, error)) http.HandlerFunc {
	return s.RequireAny([]Capability{need}, h, fail)
}

// RequireAny is Require for a request that any one of needs grants.
func (s Server) RequireAny(needs []Capability, h http.HandlerFunc, fail func(http.ResponseWriter, error)) http.HandlerFunc {
	if s.ACL.Open() {
		return h
	}
	return func(w http.ResponseWriter, r *http.Request) {
		if _, err := s.ACL.Check(BearerToken(r), needs...); err != nil {
			fail(w, ToAPIError(err))
			return
		}
		h(w, r)
	}
}

// Allowed tells whether r's token grants one of need (always, on an open
// server).
func (s Server) Allowed(r *http.Request, need ...Capability) error {
	if _, err := s.ACL.Check(BearerToken(r), need...); err != nil {
		return ToAPIError(err)
	}
	return nil
}

// Load builds a process's trust from its settings: the ACL it checks (none:
// open), the TLS it requires as a server and presents as a client, and the
// token it presents.
func Load(aclPath, token, tokenFile string, files TLSFiles) (Server, Creds, error) {
	var srv Server
	var creds Creds
	var err error
	if aclPath != "" {
		if srv.ACL, err = LoadACL(aclPath); err != nil {
			return srv, creds, err
		}
	}
	if srv.TLS, err = ServerTLS(files); err != nil {
		return srv, creds, err
	}
	if creds.TLS, err = ClientTLS(files); err != nil {
		return srv, creds, err
	}
	if creds.Token, err = LoadToken(token, tokenFile); err != nil {
		return srv, creds, err
	}
	return srv, creds, nil
}

// HandlePprof serves Go's profiler (net/http/pprof) under /debug/pprof/ on
// mux, each handler wrapped by guard (the operator capability where an
// ACL is on: a profile may show the command line). A CPU profile or trace
// lasts ?seconds (30 by default), at most MaxProfileSeconds.
func HandlePprof(mux *http.ServeMux, guard func(http.HandlerFunc) http.HandlerFunc) {
	mux.HandleFunc("GET /debug/pprof/", guard(pprof.Index))
	mux.HandleFunc("GET /debug/pprof/cmdline", guard(pprof.Cmdline))
	mux.HandleFunc("GET /debug/pprof/profile", guard(boundedSeconds(pprof.Profile)))
	mux.HandleFunc("GET /debug/pprof/symbol", guard(pprof.Symbol))
	mux.HandleFunc("GET /debug/pprof/trace", guard(boundedSeconds(pprof.Trace)))
}

// MaxProfileSeconds bounds a CPU profile's or a trace's duration.
const MaxProfileSeconds = 120

// boundedSeconds refuses a ?seconds that is no number from 1 to
// MaxProfileSeconds.
func boundedSeconds(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if s := r.URL.Query().Get("seconds"); s != "" {
			if n, err := strconv.Atoi(s); err != nil || n < 1 || n > MaxProfileSeconds {
				http.Error(w, fmt.Sprintf("seconds %q: want 1 to %d", s, MaxProfileSeconds), http.StatusBadRequest)
				return
			}
		}
		h(w, r)
	}
}
