package auth

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"time"
)

// Lifetimes of the certificates GenerateCA and GenerateCert write.
const (
	CALifetime   = 10 * 365 * 24 * time.Hour
	CertLifetime = 2 * 365 * 24 * time.Hour
)

// File names of a CA directory.
const (
	CAFile    = "ca.pem"
	CAKeyFile = "ca-key.pem"
)

var certNameRE = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9._-]{0,62}$`)

// GenerateCA writes a new CA (ECDSA P-256) to dir/ca.pem and
// dir/ca-key.pem (0600), creating dir (0700). It refuses to overwrite an
// existing CA.
func GenerateCA(dir string, now time.Time) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("auth: ca dir: %w", err)
	}
	certPath, keyPath := filepath.Join(dir, CAFile), filepath.Join(dir, CAKeyFile)
	for _, p := range []string{certPath, keyPath} {
		if _, err := os.Stat(p); err == nil {
			return fmt.Errorf("auth: %s exists; a new CA would orphan every certificate it signed (remove it first)", p)
		}
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "Mastership CA", Organization: []string{"Mastership"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(CALifetime),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return fmt.Errorf("auth: create CA: %w", err)
	}
	return writePair(certPath, keyPath, der, key)
}

// GenerateCert writes a certificate for name, signed by the CA in caDir,
// to outDir/NAME.pem and outDir/NAME-key.pem (0600). It is valid for the
// IP addresses and DNS names given (at least one), as a server and as a
// client: every process of the cluster is both.
func GenerateCert(caDir, name string, ips []string, dns []string, outDir string, now time.Time) error {
	if !certNameRE.MatchString(name) {
		return fmt.Errorf("auth: certificate name %q: want 1 to 63 of [a-zA-Z0-9._-]", name)
	}
	var ipAddrs []net.IP
	for _, s := range ips {
		ip := net.ParseIP(s)
		if ip == nil {
			return fmt.Errorf("auth: -ip %q is not an IP address", s)
		}
		ipAddrs = append(ipAddrs, ip)
	}
	if len(ipAddrs) == 0 && len(dns) == 0 {
		return errors.New("auth: a certificate needs at least one -ip or -dns: the name clients dial it by")
	}
	ca, caKey, err := loadCA(caDir)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(outDir, 0o700); err != nil {
		return fmt.Errorf("auth: out dir: %w", err)
	}
	certPath, keyPath := filepath.Join(outDir, name+".pem"), filepath.Join(outDir, name+"-key.pem")
	for _, p := range []string{certPath, keyPath} {
		if _, err := os.Stat(p); err == nil {
			return fmt.Errorf("auth: %s exists (remove it first)", p)
		}
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: name, Organization: []string{"Mastership"}},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(CertLifetime),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses:  ipAddrs,
		DNSNames:     dns,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return fmt.Errorf("auth: create certificate: %w", err)
	}
	return writePair(certPath, keyPath, der, key)
}

func loadCA(dir string) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	certPEM, err := os.ReadFile(filepath.Join(dir, CAFile))
	if err != nil {
		return nil, nil, fmt.Errorf("auth: ca: %w (make one with mastership tls ca -out DIR)", err)
	}
	keyPEM, err := os.ReadFile(filepath.Join(dir, CAKeyFile))
	if err != nil {
		return nil, nil, fmt.Errorf("auth: ca key: %w", err)
	}
	cb, _ := pem.Decode(certPEM)
	kb, _ := pem.Decode(keyPEM)
	if cb == nil || kb == nil {
		return nil, nil, fmt.Errorf("auth: ca in %s: not PEM", dir)
	}
	ca, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("auth: ca certificate: %w", err)
	}
	key, err := x509.ParseECPrivateKey(kb.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("auth: ca key: %w", err)
	}
	if !ca.IsCA {
		return nil, nil, fmt.Errorf("auth: %s is not a CA certificate", filepath.Join(dir, CAFile))
	}
	return ca, key, nil
}

func writePair(certPath, keyPath string, der []byte, key *ecdsa.PrivateKey) error {
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		return fmt.Errorf("auth: write key: %w", err)
	}
	if err := os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return fmt.Errorf("auth: write certificate: %w", err)
	}
	return nil
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(fmt.Sprintf("auth: crypto/rand: %v", err))
	}
	return n
}
