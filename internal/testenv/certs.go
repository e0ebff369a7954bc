package testenv

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// CA is a certificate authority minted for one test.
type CA struct {
	Cert    *x509.Certificate
	Key     crypto.Signer
	CertPEM []byte
	Pool    *x509.CertPool
	dir     string
}

// Issued is a certificate issued by a CA, with its files on disk.
type Issued struct {
	Cert     *x509.Certificate
	Key      crypto.Signer
	TLS      tls.Certificate // leaf + issuing chain (not the root)
	CertFile string          // PEM: the leaf
	KeyFile  string          // PEM: PKCS#8 key, mode 0600
}

// NewCA mints a root CA valid from an hour ago for a day; its PEM is written to
// t.TempDir()/name-ca.pem.
func NewCA(t testing.TB, name string) *CA {
	t.Helper()
	key := newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber:          serial(t),
		Subject:               pkix.Name{CommonName: name + " Test Root"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	ca := &CA{Cert: cert, Key: key, CertPEM: pemBlock("CERTIFICATE", der), Pool: x509.NewCertPool(), dir: t.TempDir()}
	ca.Pool.AddCert(cert)
	writeFile(t, filepath.Join(ca.dir, name+"-ca.pem"), ca.CertPEM, 0o644)
	return ca
}

// File returns the path of the CA's PEM file.
func (ca *CA) File() string {
	m, _ := filepath.Glob(filepath.Join(ca.dir, "*-ca.pem"))
	return m[0]
}

// Leaf issues a server and client certificate for names (DNS names or IPs),
// valid from an hour ago for a day. Its files are written to a new temp dir.
func (ca *CA) Leaf(t testing.TB, names ...string) *Issued {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber: serial(t),
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	if len(names) > 0 {
		tmpl.Subject.CommonName = names[0]
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	return ca.Issue(t, tmpl)
}

// Issue signs tmpl (its SerialNumber may be nil) with a fresh P-256 key.
func (ca *CA) Issue(t testing.TB, tmpl *x509.Certificate) *Issued {
	t.Helper()
	if tmpl.SerialNumber == nil {
		tmpl.SerialNumber = serial(t)
	}
	key := newKey(t)
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	is := &Issued{
		Cert:     cert,
		Key:      key,
		TLS:      tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: cert},
		CertFile: filepath.Join(dir, "cert.pem"),
		KeyFile:  filepath.Join(dir, "key.pem"),
	}
	writeFile(t, is.CertFile, pemBlock("CERTIFICATE", der), 0o644)
	writeFile(t, is.KeyFile, pemBlock("PRIVATE KEY", keyDER), 0o600)
	return is
}

func newKey(t testing.TB) *ecdsa.PrivateKey {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

func serial(t testing.TB) *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func writeFile(t testing.TB, path string, data []byte, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, data, mode); err != nil {
		t.Fatal(err)
	}
}
