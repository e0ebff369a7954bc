package certs

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"tlsedge/internal/testenv"
)

func write(t *testing.T, dir, name string, blocks ...*pem.Block) string {
	t.Helper()
	var b []byte
	for _, bl := range blocks {
		b = append(b, pem.EncodeToMemory(bl)...)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func certBlock(c *x509.Certificate) *pem.Block { return &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw} }

// issueWith signs a leaf for names with ca around key.
func issueWith(t *testing.T, ca *testenv.CA, key crypto.Signer, mod func(*x509.Certificate), names ...string) *x509.Certificate {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: names[0]},
		DNSNames:     names,
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	if mod != nil {
		mod(tmpl)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return c
}

func TestLoadKeyFormats(t *testing.T) {
	ca := testenv.NewCA(t, "k")
	dir := t.TempDir()
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	pkcs8 := func(k crypto.Signer) []byte { b, _ := x509.MarshalPKCS8PrivateKey(k); return b }
	sec1, _ := x509.MarshalECPrivateKey(ecKey)
	//lint:ignore SA1019 testing the legacy format on purpose
	legacy, err := x509.EncryptPEMBlock(rand.Reader, "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rsaKey), []byte("s3cret"), x509.PEMCipherAES256) //nolint:staticcheck
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		key      crypto.Signer
		block    *pem.Block
		password []byte
		wantErr  error
	}{
		{"PKCS#1 RSA", rsaKey, &pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rsaKey)}, nil, nil},
		{"PKCS#8 RSA", rsaKey, &pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8(rsaKey)}, nil, nil},
		{"SEC1 EC", ecKey, &pem.Block{Type: "EC PRIVATE KEY", Bytes: sec1}, nil, nil},
		{"PKCS#8 EC", ecKey, &pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8(ecKey)}, nil, nil},
		{"legacy encrypted", rsaKey, legacy, []byte("s3cret"), nil},
		{"legacy encrypted, no password", rsaKey, legacy, nil, ErrEncryptedKey},
		{"legacy encrypted, wrong password", rsaKey, legacy, []byte("nope"), ErrWrongPassword},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			leaf := issueWith(t, ca, tt.key, nil, "a.test")
			certFile := write(t, dir, "c.pem", certBlock(leaf))
			keyFile := write(t, dir, "k.pem", tt.block)
			p, err := LoadPair(PairFiles{Cert: certFile, Key: keyFile}, tt.password)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) || !strings.Contains(err.Error(), keyFile) {
					t.Fatalf("err = %v, want %v naming %s", err, tt.wantErr, keyFile)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !p.KeyMatches() {
				t.Fatal("key does not match")
			}
		})
	}
}

func TestLoadEncryptedPKCS8(t *testing.T) {
	openssl := testenv.RequireTool(t, "openssl", "openssl")
	ca := testenv.NewCA(t, "k")
	dir := t.TempDir()
	for _, alg := range []struct{ name, args string }{
		{"rsa aes-256 sha256", "-algorithm RSA -pkeyopt rsa_keygen_bits:2048 -aes-256-cbc"},
		{"ec aes-128", "-algorithm EC -pkeyopt ec_paramgen_curve:P-256 -aes-128-cbc"},
	} {
		t.Run(alg.name, func(t *testing.T) {
			keyFile := filepath.Join(dir, "enc.key")
			args := append([]string{"genpkey"}, strings.Fields(alg.args)...)
			args = append(args, "-pass", "pass:open sesame", "-out", keyFile)
			if out, err := exec.Command(openssl, args...).CombinedOutput(); err != nil {
				t.Fatalf("%v: %s", err, out)
			}
			b, _ := os.ReadFile(keyFile)
			if !strings.Contains(string(b), "ENCRYPTED PRIVATE KEY") {
				t.Fatalf("openssl wrote %q", b[:40])
			}
			plain, err := exec.Command(openssl, "pkey", "-in", keyFile, "-passin", "pass:open sesame").Output()
			if err != nil {
				t.Fatal(err)
			}
			blk, _ := pem.Decode(plain)
			k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
			if err != nil {
				t.Fatal(err)
			}
			leaf := issueWith(t, ca, k.(crypto.Signer), nil, "a.test")
			certFile := write(t, dir, "c.pem", certBlock(leaf))
			pwFile := filepath.Join(dir, "pw")
			os.WriteFile(pwFile, []byte("open sesame\n"), 0o600)
			pw, err := ReadPassword(pwFile)
			if err != nil {
				t.Fatal(err)
			}
			p, err := LoadPair(PairFiles{Cert: certFile, Key: keyFile}, pw)
			if err != nil || !p.KeyMatches() {
				t.Fatalf("load: %v", err)
			}
			if _, err := LoadPair(PairFiles{Cert: certFile, Key: keyFile}, []byte("wrong")); !errors.Is(err, ErrWrongPassword) {
				t.Fatalf("wrong password: %v", err)
			}
			if _, err := LoadPair(PairFiles{Cert: certFile, Key: keyFile}, nil); !errors.Is(err, ErrEncryptedKey) || !strings.Contains(err.Error(), "ssl_private_key_password_file") {
				t.Fatalf("no password: %v", err)
			}
		})
	}
}

func TestLoadErrorsNameTheFile(t *testing.T) {
	dir := t.TempDir()
	der := filepath.Join(dir, "cert.der")
	os.WriteFile(der, []byte{0x30, 0x82, 0x01}, 0o644)
	ca := testenv.NewCA(t, "e")
	leaf := ca.Leaf(t, "a.test")
	noKey := write(t, dir, "nokey.pem", certBlock(leaf.Cert))
	tests := []struct {
		name  string
		files PairFiles
		want  []string
	}{
		{"missing", PairFiles{Cert: filepath.Join(dir, "nope.pem"), Key: leaf.KeyFile}, []string{"nope.pem", "no such file"}},
		{"DER instead of PEM", PairFiles{Cert: der, Key: leaf.KeyFile}, []string{"cert.der", "openssl x509 -inform der"}},
		{"no key in file", PairFiles{Cert: leaf.CertFile, Key: noKey}, []string{"nokey.pem", "PRIVATE KEY"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := LoadPair(tt.files, nil)
			for _, w := range tt.want {
				if err == nil || !strings.Contains(err.Error(), w) {
					t.Fatalf("err = %v, want it to mention %q", err, w)
				}
			}
		})
	}
}

// TestCheckFindings builds one broken configuration per check and expects
// exactly that finding, with file and position.
func TestCheckFindings(t *testing.T) {
	root := testenv.NewCA(t, "root")
	interIs := root.Issue(t, &x509.Certificate{
		Subject: pkix.Name{CommonName: "Inter"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(48 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	})
	inter := &testenv.CA{Cert: interIs.Cert, Key: interIs.Key}
	other := testenv.NewCA(t, "other")
	dir := t.TempDir()
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	keyFile := write(t, dir, "key.pem", &pem.Block{Type: "PRIVATE KEY", Bytes: must(x509.MarshalPKCS8PrivateKey(ecKey))})
	good := issueWith(t, inter, ecKey, nil, "a.test", "*.w.test")
	rsa1024, _ := rsa.GenerateKey(rand.Reader, 1024)
	key1024 := write(t, dir, "key1024.pem", &pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rsa1024)})
	weak := issueWith(t, inter, rsa1024, nil, "a.test")
	expired := issueWith(t, inter, ecKey, func(c *x509.Certificate) {
		c.NotBefore, c.NotAfter = time.Now().Add(-48*time.Hour), time.Now().Add(-time.Hour)
	}, "a.test")
	clientOnly := issueWith(t, inter, ecKey, func(c *x509.Certificate) { c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth} }, "a.test")
	otherKey := write(t, dir, "other.key", &pem.Block{Type: "PRIVATE KEY", Bytes: must(x509.MarshalPKCS8PrivateKey(other.Key))})

	chain := func(name string, cs ...*x509.Certificate) string {
		var bs []*pem.Block
		for _, c := range cs {
			bs = append(bs, certBlock(c))
		}
		return write(t, dir, name, bs...)
	}
	quiet := time.Hour // expiry warnings off unless a case wants them
	tests := []struct {
		name    string
		cfg     Config
		want    Severity
		file    string
		pos     int
		message string
	}{
		{"key mismatch", Config{Pairs: []PairFiles{{Cert: chain("mm.pem", good, inter.Cert), Key: otherKey}}}, Error, otherKey, 0, "does not match"},
		{"wrong order", Config{Pairs: []PairFiles{{Cert: chain("order.pem", good, root.Cert, inter.Cert), Key: keyFile}}}, Error, "order.pem", 2, "did not sign"},
		{"expired", Config{Pairs: []PairFiles{{Cert: chain("exp.pem", expired, inter.Cert), Key: keyFile}}}, Error, "exp.pem", 1, "expired"},
		{"expiring soon", Config{Pairs: []PairFiles{{Cert: chain("soon.pem", good, inter.Cert), Key: keyFile}}, ExpiryWarning: 14 * 24 * time.Hour}, Warning, "soon.pem", 1, "renew it soon"},
		{"host not covered", Config{Pairs: []PairFiles{{Cert: chain("host.pem", good, inter.Cert), Key: keyFile}}, Hosts: []string{"a.test", "x.w.test", "b.test"}}, Error, "host.pem", 1, `"b.test"`},
		{"RSA 1024", Config{Pairs: []PairFiles{{Cert: chain("weak.pem", weak, inter.Cert), Key: key1024}}}, Error, "weak.pem", 1, "1024-bit RSA"},
		{"untrusted", Config{Pairs: []PairFiles{{Cert: chain("untr.pem", good, inter.Cert), Key: keyFile}}, TrustBundle: other.File()}, Error, "untr.pem", 1, "does not verify"},
		{"missing intermediate", Config{Pairs: []PairFiles{{Cert: chain("noint.pem", good), Key: keyFile}}, TrustBundle: root.File()}, Error, "noint.pem", 1, "ssl_certificate_chain"},
		{"root served", Config{Pairs: []PairFiles{{Cert: chain("root.pem", good, inter.Cert, root.Cert), Key: keyFile}}}, Warning, "root.pem", 3, "self-signed root"},
		{"not for servers", Config{Pairs: []PairFiles{{Cert: chain("eku.pem", clientOnly, inter.Cert), Key: keyFile}}}, Error, "eku.pem", 1, "serverAuth"},
		{"nothing configured", Config{}, Error, "", 0, "ssl_certificate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.cfg.ExpiryWarning == 0 {
				tt.cfg.ExpiryWarning = quiet
			}
			fs := Check(tt.cfg)
			if tt.name == "wrong order" && len(fs) == 2 { // root did not sign leaf; inter did not sign root
				fs = fs[:1]
			}
			if len(fs) != 1 {
				t.Fatalf("want one finding, got %q", fs)
			}
			f := fs[0]
			if f.Severity != tt.want || !strings.HasSuffix(f.File, tt.file) || f.Position != tt.pos || !strings.Contains(f.Message, tt.message) {
				t.Fatalf("got %s\nwant %s in %s at %d mentioning %q", f, tt.want, tt.file, tt.pos, tt.message)
			}
		})
	}
	t.Run("clean", func(t *testing.T) {
		cfg := Config{Pairs: []PairFiles{{Cert: chain("ok.pem", good), Key: keyFile, Chain: chain("int.pem", inter.Cert)}},
			TrustBundle: root.File(), Hosts: []string{"a.test", "0.0.0.0"}, ExpiryWarning: quiet}
		if fs := Check(cfg); len(fs) != 0 {
			t.Fatalf("findings for a good chain: %q", fs)
		}
	})
}

func TestCheckSHA1(t *testing.T) {
	openssl := testenv.RequireTool(t, "openssl", "openssl")
	dir := t.TempDir()
	run := func(args ...string) {
		if out, err := exec.Command(openssl, args...).CombinedOutput(); err != nil {
			t.Fatalf("openssl %v: %v\n%s", args, err, out)
		}
	}
	// A CA and a leaf signed with SHA-1, minted now and valid for a day.
	run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", dir+"/ca.key", "-out", dir+"/ca.pem", "-days", "1", "-subj", "/CN=SHA1 CA")
	run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", dir+"/leaf.key", "-out", dir+"/leaf.csr", "-subj", "/CN=a.test")
	os.WriteFile(dir+"/ext", []byte("subjectAltName=DNS:a.test\nextendedKeyUsage=serverAuth\n"), 0o644)
	run("x509", "-req", "-in", dir+"/leaf.csr", "-CA", dir+"/ca.pem", "-CAkey", dir+"/ca.key", "-CAcreateserial", "-sha1", "-days", "1", "-extfile", dir+"/ext", "-out", dir+"/leaf.pem")
	fs := Check(Config{Pairs: []PairFiles{{Cert: dir + "/leaf.pem", Key: dir + "/leaf.key"}}, ExpiryWarning: time.Hour})
	if len(fs) != 1 || fs[0].Severity != Error || !strings.Contains(fs[0].Message, "SHA1") || fs[0].Position != 1 {
		t.Fatalf("findings %q, want one SHA-1 error", fs)
	}
}

func TestSetSelection(t *testing.T) {
	ca := testenv.NewCA(t, "s")
	a := ca.Leaf(t, "a.test", "127.0.0.1")
	b := ca.Leaf(t, "*.w.test")
	set := newSet([]*Pair{mustLoad(t, a), mustLoad(t, b)}, nil, time.Now())
	tests := []struct {
		host string
		has  bool
	}{{"a.test", true}, {"A.TEST", true}, {"x.w.test", true}, {"w.test", false}, {"x.y.w.test", false}, {"127.0.0.1", true}, {"b.test", false}}
	for _, tt := range tests {
		if got := set.HasName(tt.host); got != tt.has {
			t.Errorf("HasName(%q) = %v", tt.host, got)
		}
	}
	c, known := set.Certificate(&tls.ClientHelloInfo{ServerName: "nothing.test"})
	if known || c != &set.Pairs[0].TLS {
		t.Errorf("unknown name: known=%v, want the default", known)
	}
}

func mustLoad(t *testing.T, is *testenv.Issued) *Pair {
	p, err := LoadPair(PairFiles{Cert: is.CertFile, Key: is.KeyFile}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func TestCombinedFileAndECParameters(t *testing.T) {
	ca := testenv.NewCA(t, "comb")
	dir := t.TempDir()
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	sec1, _ := x509.MarshalECPrivateKey(ecKey)
	leaf := issueWith(t, ca, ecKey, nil, "a.test")
	// What `openssl ecparam -genkey` writes, appended to the certificate, as
	// haproxy-style combined files hold it.
	params := &pem.Block{Type: "EC PARAMETERS", Bytes: []byte{0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07}}
	combined := write(t, dir, "combined.pem", certBlock(leaf), certBlock(ca.Cert), params, &pem.Block{Type: "EC PRIVATE KEY", Bytes: sec1})
	p, err := LoadPair(PairFiles{Cert: combined}, nil)
	if err != nil || !p.KeyMatches() || len(p.Chain) != 2 || p.Origins[1] != (Origin{File: combined, Index: 2}) {
		t.Fatalf("combined file: %v", err)
	}
}
