package certs

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"tlsedge/internal/testenv"
)

// FuzzLoadPair feeds arbitrary certificate, key and password bytes through
// the loader and the checks: bad files must come back as errors or findings,
// never a panic, and a pair that loads must have a leaf.
func FuzzLoadPair(f *testing.F) {
	ca := testenv.NewCA(f, "fuzz")
	leaf := ca.Leaf(f, "localhost")
	cert, _ := os.ReadFile(leaf.CertFile)
	key, _ := os.ReadFile(leaf.KeyFile)
	f.Add(cert, key, []byte(nil))
	f.Add(append(append([]byte{}, cert...), key...), []byte(nil), []byte(nil))
	f.Add(cert, []byte("-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIBvTBXBgkqhkiG9w0BBQ0wSjApBgkqhkiG9w0BBQwwHAQI\n-----END ENCRYPTED PRIVATE KEY-----\n"), []byte("pw"))
	f.Add([]byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), key, []byte(nil))
	f.Add([]byte("not pem"), []byte("-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\n\nAAAA\n-----END RSA PRIVATE KEY-----\n"), []byte("x"))
	f.Fuzz(func(t *testing.T, certPEM, keyPEM, password []byte) {
		dir := t.TempDir()
		cf, kf := filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
		os.WriteFile(cf, certPEM, 0o600)
		os.WriteFile(kf, keyPEM, 0o600)
		files := PairFiles{Cert: cf}
		if len(keyPEM) > 0 {
			files.Key = kf
		}
		p, err := LoadPair(files, password)
		if err != nil {
			return
		}
		if p.Leaf() == nil || len(p.TLS.Certificate) == 0 {
			t.Fatal("a pair loaded without a leaf")
		}
		CheckPair(p, nil, time.Now(), 14*24*time.Hour)
	})
}
