package auth

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"time"
)

// TLSFiles names the PEM files of mutual TLS: the CA that signs every
// certificate of the cluster, and this process's certificate and key.
// All three or none.
type TLSFiles struct {
	CA, Cert, Key string
}

// Empty reports whether no file is named (TLS off).
func (f TLSFiles) Empty() bool { return f.CA == "" && f.Cert == "" && f.Key == "" }

// Check tells whether the files are all given or none.
func (f TLSFiles) Check() error {
	if f.Empty() || (f.CA != "" && f.Cert != "" && f.Key != "") {
		return nil
	}
	return errors.New("give -tls-ca, -tls-cert and -tls-key together, or none")
}

func (f TLSFiles) load() (*x509.CertPool, tls.Certificate, error) {
	if err := f.Check(); err != nil {
		return nil, tls.Certificate{}, err
	}
	pem, err := os.ReadFile(f.CA)
	if err != nil {
		return nil, tls.Certificate{}, fmt.Errorf("auth: tls ca: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, tls.Certificate{}, fmt.Errorf("auth: tls ca %s: no PEM certificate in it", f.CA)
	}
	cert, err := tls.LoadX509KeyPair(f.Cert, f.Key)
	if err != nil {
		return nil, tls.Certificate{}, fmt.Errorf("auth: tls cert %s, key %s: %w", f.Cert, f.Key, err)
	}
	return pool, cert, nil
}

// ServerTLS is the TLS configuration of a server: its certificate, and
// only clients that present a certificate the CA signed. nil when no file
// is named.
func ServerTLS(f TLSFiles) (*tls.Config, error) {
	if f.Empty() {
		return nil, nil
	}
	pool, cert, err := f.load()
	if err != nil {
		return nil, err
	}
	return &tls.Config{
		Certificates: []tls.Certificate{cert},
		ClientCAs:    pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
		MinVersion:   tls.VersionTLS13,
	}, nil
}

// ClientTLS is the TLS configuration of a client: the CA it verifies
// servers against, and the certificate it presents. nil when no file is
// named.
func ClientTLS(f TLSFiles) (*tls.Config, error) {
	if f.Empty() {
		return nil, nil
	}
	pool, cert, err := f.load()
	if err != nil {
		return nil, err
	}
	return &tls.Config{
		Certificates: []tls.Certificate{cert},
		RootCAs:      pool,
		MinVersion:   tls.VersionTLS13,
	}, nil
}

// forAddr returns c with ServerName set from addr's host, for connections
// dialed by hand (message streams); http.Transport does it by itself.
func forAddr(c *tls.Config, addr string) *tls.Config {
	cc := c.Clone()
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	cc.ServerName = strings.Trim(host, "[]")
	return cc
}

// AnswerClearText answers a caller that spoke clear-text HTTP to a TLS
// listener, as net/http does, so that it learns why it fails instead of
// seeing its connection closed: err is the first read's error on the TLS
// connection. It reports whether it answered (the caller still closes the
// connection).
func AnswerClearText(err error) bool {
	var re tls.RecordHeaderError
	if !errors.As(err, &re) || re.Conn == nil || !looksLikeHTTP(re.RecordHeader) {
		return false
	}
	re.Conn.SetWriteDeadline(time.Now().Add(time.Second))
	io.WriteString(re.Conn, "HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n")
	return true
}

// looksLikeHTTP tells whether a TLS record header is the start of an HTTP
// request.
func looksLikeHTTP(hdr [5]byte) bool {
	switch string(hdr[:]) {
	case "GET /", "HEAD ", "POST ", "PUT /", "DELET", "OPTIO", "PATCH":
		return true
	}
	return false
}

// ErrAddrNotCovered is CoversAddr's refusal: the certificate a connection
// presented does not name the address its holder claims.
var ErrAddrNotCovered = errors.New("auth: the peer's certificate does not cover the address it claims")

// CoversAddr checks that the client certificate of the TLS connection c
// (found under the wrappers that expose NetConn) is valid for addr's
// host: a peer that claims to be reached at addr must be able to answer
// there as a server, with that certificate (others dial it there and
// verify it so). A certificate names hosts, not ports: this tells one
// host from another, not two processes of one host. For servers that take
// TLS only: a connection with no *tls.Conn under it is refused, not waved
// through.
func CoversAddr(c net.Conn, addr string) error {
	for c != nil {
		if tc, ok := c.(*tls.Conn); ok {
			return certCovers(tc.ConnectionState(), addr)
		}
		u, ok := c.(interface{ NetConn() net.Conn })
		if !ok {
			break
		}
		c = u.NetConn()
	}
	return fmt.Errorf("%w: not a TLS connection (address %q)", ErrAddrNotCovered, addr)
}

func certCovers(st tls.ConnectionState, addr string) error {
	if !st.HandshakeComplete || len(st.PeerCertificates) == 0 {
		return fmt.Errorf("%w: no client certificate (address %q)", ErrAddrNotCovered, addr)
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil || host == "" {
		return fmt.Errorf("%w: %q is not a host and port", ErrAddrNotCovered, addr)
	}
	cert := st.PeerCertificates[0]
	if err := cert.VerifyHostname(host); err != nil {
		return fmt.Errorf("%w: certificate %q, address %s: %v", ErrAddrNotCovered, cert.Subject.CommonName, addr, err)
	}
	return nil
}
