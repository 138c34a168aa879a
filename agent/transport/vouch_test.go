package transport

import (
	"crypto/tls"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/mastership/mastership/agent/core"
	"github.com/mastership/mastership/naming/auth"
)

// certDir makes a CA and a certificate for each name, valid for the IP
// address it maps to, with the binary's own generator (auth.GenerateCert).
func certDir(t *testing.T, ips map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	now := time.Now()
	if err := auth.GenerateCA(dir, now); err != nil {
		t.Fatal(err)
	}
	for name, ip := range ips {
		if err := auth.GenerateCert(dir, name, []string{ip}, nil, dir, now); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func tlsFiles(dir, name string) auth.TLSFiles {
	return auth.TLSFiles{CA: dir + "/" + auth.CAFile, Cert: dir + "/" + name + ".pem", Key: dir + "/" + name + "-key.pem"}
}

// newTLSEnd is an agent's transport on a TLS listener at ip with the
// certificate name, dialing with it too, vouching for openers' addresses
// as the agent does (auth.CoversAddr). claim, when set, is the address
// its hello names instead of its own.
func newTLSEnd(t *testing.T, id uint64, ip, dir, name, claim string, logs *syncBuffer) *end {
	t.Helper()
	srv, err := auth.ServerTLS(tlsFiles(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	cli, err := auth.ClientTLS(tlsFiles(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	wrap := func(ln net.Listener) net.Listener { return tls.NewListener(ln, srv) }
	return newEndAt(t, ip, wrap, id, func(c *Config) {
		c.Dial = auth.Creds{TLS: cli}.Dial(c.Dial) // still counted
		c.Vouch = auth.CoversAddr
		if claim != "" {
			c.Addr = claim
		}
		if logs != nil {
			c.Logger = hclog.New(&hclog.LoggerOptions{Output: logs, Level: hclog.Warn})
		}
	})
}

// With TLS, an agent's stream serves the address its certificate covers,
// as without: the higher ID answers on the lower one's stream and dials
// nothing.
func TestAVouchedStreamCarriesTheAnswers(t *testing.T) {
	dir := certDir(t, map[string]string{"low": "127.0.0.31", "high": "127.0.0.32"})
	low := newTLSEnd(t, 1, "127.0.0.31", dir, "low", "", nil)
	high := newTLSEnd(t, 2, "127.0.0.32", dir, "high", "", nil)
	low.tr.Send(high.addr, core.Message{Type: core.MsgAppend, From: 1, To: 2})
	waitFor(t, "the lower one's message", func() bool { return high.box.len() == 1 })
	for i := 1; i <= 10; i++ {
		high.tr.Send(low.addr, core.Message{Type: core.MsgAppendResp, From: 2, To: 1, Commit: uint64(i)})
	}
	waitFor(t, "the answers", func() bool { return low.box.len() == 10 })
	if n := high.dials.Load(); n != 0 {
		t.Fatalf("the higher one dialed %d times: the lower one's stream was not vouched for", n)
	}
}

// An agent of the group (its token and a certificate the CA signed) that
// claims another agent's address in its hello is refused: its stream is
// closed unread, and the messages to that address go to the agent there,
// not to it. Without the check it would take them all (the stream of the
// latest opener that names an address serves it).
func TestAClaimTheCertificateDoesNotCoverIsRefused(t *testing.T) {
	dir := certDir(t, map[string]string{"low": "127.0.0.41", "high": "127.0.0.42", "evil": "127.0.0.43"})
	var logs syncBuffer
	high := newTLSEnd(t, 5, "127.0.0.42", dir, "high", "", &logs)
	low := newTLSEnd(t, 1, "127.0.0.41", dir, "low", "", nil)
	low.tr.Send(high.addr, core.Message{Type: core.MsgAppend, Group: "g", From: 1, To: 5})
	waitFor(t, "low's message", func() bool { return high.box.len() == 1 })
	// The impostor: ID 1 as well, reached (it says) at low's address.
	evil := newTLSEnd(t, 1, "127.0.0.43", dir, "evil", low.addr, nil)
	evil.tr.Send(high.addr, core.Message{Type: core.MsgAppend, Group: "g", From: 1, To: 5, Commit: 99})
	waitFor(t, "the impostor's stream refused or read", func() bool {
		return strings.Contains(logs.String(), "does not cover") || high.box.len() == 2
	})
	for i := 1; i <= 10; i++ {
		high.tr.Send(low.addr, core.Message{Type: core.MsgAppendResp, Group: "g", From: 5, To: 1, Commit: uint64(i)})
	}
	waitFor(t, "the ten answers", func() bool { return low.box.len()+evil.box.len() == 10 })
	if n := evil.box.len(); n != 0 {
		t.Fatalf("the impostor got %d messages meant for %s", n, low.addr)
	}
	if n := high.box.len(); n != 1 {
		t.Fatalf("high handled %d messages, want low's only: the impostor's stream was read", n)
	}
	if !strings.Contains(logs.String(), `certificate \"evil\"`) && !strings.Contains(logs.String(), `certificate "evil"`) {
		t.Errorf("the refusal does not name the certificate: %s", logs.String())
	}
}
