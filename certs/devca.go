package certs

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"tlsedge/internal/boundedread"
)

// DevCA is the local development CA of the internal SSL module: created on
// first use under the data directory, reused afterwards, so a developer trusts
// it once (curl --cacert, or the system store) and every restart verifies.
// Leaves are issued in memory and never written to disk.
type DevCA struct {
	certFile string
	cert     *x509.Certificate
	key      crypto.Signer

	mu     sync.Mutex
	leaves map[string]*tls.Certificate // by sorted name list
}

const (
	caValidity   = 10 * 365 * 24 * time.Hour
	leafValidity = 7 * 24 * time.Hour
	leafRenew    = 24 * time.Hour // reissue a leaf this close to its expiry
)

// OpenDevCA loads the CA kept in dir, creating it (dir 0700, key 0600) if it
// does not exist or has expired. A key file readable by other users is
// refused: whoever reads it can impersonate any site to whoever trusts the CA.
func OpenDevCA(dir string) (*DevCA, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("certs: local CA directory: %w", err)
	}
	ca := &DevCA{certFile: filepath.Join(dir, "ca.pem"), leaves: map[string]*tls.Certificate{}}
	keyFile := filepath.Join(dir, "ca-key.pem")
	err := ca.load(keyFile)
	if errors.Is(err, os.ErrNotExist) || err == nil && time.Now().After(ca.cert.NotAfter.Add(-24*time.Hour)) {
		err = ca.create(keyFile)
	}
	if err != nil {
		return nil, err
	}
	return ca, nil
}

// CertFile is the path of the CA certificate to give clients (curl --cacert).
func (ca *DevCA) CertFile() string { return ca.certFile }

// Cert is the CA certificate.
func (ca *DevCA) Cert() *x509.Certificate { return ca.cert }

func (ca *DevCA) load(keyFile string) error {
	fi, err := os.Stat(keyFile)
	if err != nil {
		return err
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return fmt.Errorf("certs: %s is readable by other users (mode %04o): run chmod 600 %s, or remove its directory to create a new CA", keyFile, fi.Mode().Perm(), keyFile)
	}
	keyPEM, err := boundedread.ReadFile(keyFile)
	if err != nil {
		return fmt.Errorf("certs: local CA key: %w", err)
	}
	certPEM, err := boundedread.ReadFile(ca.certFile)
	if err != nil {
		return fmt.Errorf("certs: local CA certificate: %w (remove %s to create a new CA)", err, filepath.Dir(keyFile))
	}
	cb, _ := pem.Decode(certPEM)
	kb, _ := pem.Decode(keyPEM)
	if cb == nil || kb == nil {
		return fmt.Errorf("certs: local CA files in %s are not PEM; remove the directory to create a new CA", filepath.Dir(keyFile))
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return fmt.Errorf("certs: local CA certificate %s: %w", ca.certFile, err)
	}
	k, err := x509.ParsePKCS8PrivateKey(kb.Bytes)
	if err != nil {
		return fmt.Errorf("certs: local CA key %s: %w", keyFile, err)
	}
	signer, ok := k.(crypto.Signer)
	if !ok || !publicKeysEqual(signer.Public(), cert.PublicKey) {
		return fmt.Errorf("certs: local CA key %s does not match %s; remove the directory to create a new CA", keyFile, ca.certFile)
	}
	ca.cert, ca.key = cert, signer
	return nil
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	ea, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && ea.Equal(b)
}

func (ca *DevCA) create(keyFile string) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("certs: local CA key: %w", err)
	}
	owner := "unknown"
	if u, err := user.Current(); err == nil {
		owner = u.Username
	}
	host, _ := os.Hostname()
	tmpl := &x509.Certificate{
		SerialNumber:          randomSerial(),
		Subject:               pkix.Name{Organization: []string{"tlsedge local development CA"}, CommonName: fmt.Sprintf("tlsedge local CA %s@%s", owner, host)},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(caValidity),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return fmt.Errorf("certs: creating the local CA: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("certs: local CA key: %w", err)
	}
	if err := writeAtomic(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return err
	}
	if err := writeAtomic(ca.certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return err
	}
	ca.cert, _ = x509.ParseCertificate(der)
	ca.key = key
	return nil
}

// writeAtomic writes data to a new file beside path, with mode set at
// creation, then renames it over path: a reader never sees half a file, and a
// key is never briefly readable by others.
func writeAtomic(path string, data []byte, mode os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return fmt.Errorf("certs: writing %s: %w", path, err)
	}
	defer os.Remove(f.Name())
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return fmt.Errorf("certs: writing %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("certs: writing %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("certs: writing %s: %w", path, err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("certs: writing %s: %w", path, err)
	}
	return nil
}

func randomSerial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(err) // crypto/rand never fails on supported platforms
	}
	return n
}

// Certificate returns a leaf for names (DNS names or IP addresses), issuing a
// new one when none is cached or the cached one is within a day of expiry.
func (ca *DevCA) Certificate(names ...string) (*tls.Certificate, error) {
	names = slices.Clone(names)
	slices.Sort(names)
	names = slices.Compact(names)
	key := fmt.Sprint(names)
	ca.mu.Lock()
	defer ca.mu.Unlock()
	if c := ca.leaves[key]; c != nil && time.Until(c.Leaf.NotAfter) > leafRenew {
		return c, nil
	}
	c, err := ca.issue(names)
	if err != nil {
		return nil, err
	}
	ca.leaves[key] = c
	return c, nil
}

func (ca *DevCA) issue(names []string) (*tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("certs: leaf key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: randomSerial(),
		Subject:      pkix.Name{Organization: []string{"tlsedge development certificate"}},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(leafValidity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	if len(tmpl.DNSNames) > 0 {
		tmpl.Subject.CommonName = tmpl.DNSNames[0]
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		return nil, fmt.Errorf("certs: issuing a leaf for %v: %w", names, err)
	}
	leaf, _ := x509.ParseCertificate(der)
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}
