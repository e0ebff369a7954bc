package integration

import (
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"tlsedge/internal/testenv"
)

const plain400 = "The client sent a plain HTTP request, but this server only speaks HTTPS on this port."

// rawExchange sends req on a plain TCP connection and reads until close.
func rawExchange(t *testing.T, addr, req string) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, req)
	b, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("reading the answer to %q: %v (a hang or reset, not an answer)", req, err)
	}
	return string(b)
}

func TestPlaintextOnTLSPort(t *testing.T) {
	p := start(t, "--socket-port", "0")
	addr := strings.TrimPrefix(p.base("main"), "https://")
	for _, req := range []string{
		"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n",
		"POST /form HTTP/1.1\r\nHost: localhost\r\nContent-Length: 3\r\n\r\na=b",
		"get / http/1.0\r\n\r\n",
	} {
		got := rawExchange(t, addr, req)
		if !strings.HasPrefix(got, "HTTP/1.1 400 Bad Request\r\n") || !strings.HasSuffix(got, "\r\n\r\n"+plain400) {
			t.Errorf("%q on the TLS port: got %q", req, got)
		}
	}
	// Anything else that is not TLS is closed quietly.
	if got := rawExchange(t, addr, "\x00\x01garbage\r\n\r\n"); got != "" {
		t.Errorf("garbage got %q", got)
	}
	// The server is still fine for TLS clients.
	if code, _ := get(t, httpsClient(t, p.caFile()), p.base("main")+"/"); code != 200 {
		t.Fatalf("TLS after plaintext: %d", code)
	}
	// redirect mode: 308 to https on the same port, for a name the server has.
	p2 := start(t, "--socket-port", "0", "--ssl-plaintext-action", "redirect")
	addr2 := strings.TrimPrefix(p2.base("main"), "https://")
	_, port, _ := net.SplitHostPort(addr2)
	got := rawExchange(t, addr2, "GET /path?q=1 HTTP/1.1\r\nHost: localhost:"+port+"\r\n\r\n")
	if !strings.HasPrefix(got, "HTTP/1.1 308 ") || !strings.Contains(got, "Location: https://localhost:"+port+"/path?q=1\r\n") {
		t.Errorf("redirect mode: %q", got)
	}
	got = rawExchange(t, addr2, "GET / HTTP/1.1\r\nHost: evil.example\r\n\r\n")
	if !strings.HasPrefix(got, "HTTP/1.1 400 ") {
		t.Errorf("redirect to a name without a certificate: %q, want the 400", got)
	}
}

// chain mints root -> intermediate -> leaf and writes the leaf, key and
// intermediate files.
type chain struct {
	root  *testenv.CA
	inter *testenv.CA
	leaf  *testenv.Issued
	chain string // intermediate PEM file
}

func newChain(t *testing.T, names ...string) *chain {
	t.Helper()
	root := testenv.NewCA(t, "chain")
	is := root.Issue(t, &x509.Certificate{
		Subject:   pkix.Name{CommonName: "chain Test Intermediate"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	})
	inter := &testenv.CA{Cert: is.Cert, Key: is.Key}
	return &chain{root: root, inter: inter, leaf: inter.Leaf(t, names...), chain: is.CertFile}
}

func TestBuiltinChainServedWholeAndVerified(t *testing.T) {
	openssl := testenv.RequireTool(t, "openssl", "openssl")
	c := newChain(t, "localhost", "127.0.0.1")
	p := start(t, "--socket-port", "0", "--ssl-module", "builtin", "--ssl-certificate", c.leaf.CertFile,
		"--ssl-private-key", c.leaf.KeyFile, "--ssl-certificate-chain", c.chain, "--mount", "/=text:chained")
	addr := strings.TrimPrefix(p.base("main"), "https://")
	cmd := exec.Command(openssl, "s_client", "-connect", addr, "-servername", "localhost", "-showcerts", "-CAfile", c.root.File(), "-verify_return_error")
	cmd.Stdin = strings.NewReader("")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("openssl s_client: %v\n%s", err, out)
	}
	s := string(out)
	if n := strings.Count(s, "-----BEGIN CERTIFICATE-----"); n != 2 {
		t.Errorf("served %d certificates, want leaf + intermediate (the root is not sent)", n)
	}
	if !strings.Contains(s, "Verify return code: 0 (ok)") {
		t.Errorf("chain did not verify against the root:\n%s", s)
	}
	if strings.Contains(s, "TLSv1.1") || strings.Contains(s, "TLSv1 ") {
		t.Errorf("old protocol negotiated:\n%s", s)
	}
	// TLS 1.1 is refused by default.
	cmd = exec.Command(openssl, "s_client", "-connect", addr, "-tls1_1", "-CAfile", c.root.File())
	cmd.Stdin = strings.NewReader("")
	if out, err := cmd.CombinedOutput(); err == nil && strings.Contains(string(out), "Protocol  : TLSv1.1") {
		t.Errorf("TLS 1.1 accepted:\n%s", out)
	}
}

// SIGHUP swaps in new certificate files: new handshakes get them, open
// connections carry on.
func TestSIGHUPReloadsCertificates(t *testing.T) {
	c := newChain(t, "localhost", "127.0.0.1")
	dir := t.TempDir()
	certFile, keyFile := dir+"/cert.pem", dir+"/key.pem"
	install := func(is *testenv.Issued) {
		for src, dst := range map[string]string{is.CertFile: certFile, is.KeyFile: keyFile} {
			b, _ := os.ReadFile(src)
			os.WriteFile(dst+".tmp", b, 0o600)
			os.Rename(dst+".tmp", dst)
		}
	}
	install(c.leaf)
	p := start(t, "--socket-port", "0", "--ssl-module", "builtin", "--ssl-certificate", certFile,
		"--ssl-private-key", keyFile, "--ssl-certificate-chain", c.chain, "--ssl-reload-interval", "1h", "--mount", "/=text:hup")
	addr := strings.TrimPrefix(p.base("main"), "https://")
	cfg := &tls.Config{RootCAs: c.root.Pool, ServerName: "localhost"}
	serial := func() string {
		conn, err := tls.Dial("tcp", addr, cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].SerialNumber.String()
	}
	if serial() != c.leaf.Cert.SerialNumber.String() {
		t.Fatal("not serving the first certificate")
	}
	open, err := tls.Dial("tcp", addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer open.Close()
	next := c.inter.Leaf(t, "localhost", "127.0.0.1")
	install(next)
	p.cmd.Process.Signal(syscall.SIGHUP)
	deadline := time.Now().Add(5 * time.Second)
	for serial() != next.Cert.SerialNumber.String() {
		if time.Now().After(deadline) {
			t.Fatal("SIGHUP did not swap in the new certificate")
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The connection opened before the swap still works.
	open.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(open, "GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
	b, _ := io.ReadAll(open)
	if !strings.HasSuffix(string(b), "hup") {
		t.Fatalf("old connection after reload: %q", b)
	}
	// A broken replacement is refused and the current certificate stays.
	os.WriteFile(keyFile, []byte("not a key"), 0o600)
	p.cmd.Process.Signal(syscall.SIGHUP)
	time.Sleep(300 * time.Millisecond)
	if serial() != next.Cert.SerialNumber.String() {
		t.Fatal("a broken reload replaced the working certificate")
	}
	if !strings.Contains(p.stderr.String(), "reload failed") {
		t.Fatalf("failed reload not logged: %s", p.stderr)
	}
}

// tlsedge check names the file, the certificate's place in it and the fix
// for each chain problem.
func TestCheckCatchesChainProblems(t *testing.T) {
	c := newChain(t, "localhost")
	other := newChain(t, "localhost")
	expiredCA := testenv.NewCA(t, "old")
	expired := expiredCA.Issue(t, &x509.Certificate{
		Subject: pkix.Name{CommonName: "localhost"}, DNSNames: []string{"localhost"},
		NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	tests := []struct {
		name string
		args []string
		want []string
	}{
		{"key does not match", []string{"--ssl-certificate", c.leaf.CertFile, "--ssl-private-key", other.leaf.KeyFile, "--ssl-certificate-chain", c.chain}, []string{c.leaf.CertFile, "key"}},
		{"chain not signed by next", []string{"--ssl-certificate", c.leaf.CertFile, "--ssl-private-key", c.leaf.KeyFile, "--ssl-certificate-chain", other.chain}, []string{"did not sign"}},
		{"expired", []string{"--ssl-certificate", expired.CertFile, "--ssl-private-key", expired.KeyFile}, []string{expired.CertFile, "expired"}},
		{"name not covered", []string{"--socket-host", "127.0.0.1", "--ssl-certificate", c.leaf.CertFile, "--ssl-private-key", c.leaf.KeyFile, "--ssl-certificate-chain", c.chain}, []string{"127.0.0.1"}},
		{"trust bundle", []string{"--ssl-certificate", c.leaf.CertFile, "--ssl-private-key", c.leaf.KeyFile, "--ssl-certificate-chain", c.chain, "--ssl-trusted-certificate", other.root.File()}, []string{"verif"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"check", "--ssl-module", "builtin", "--data-dir", t.TempDir()}, tt.args...)
			if tt.name != "name not covered" {
				args = append(args, "--socket-host", "localhost")
			}
			code, stdout, stderr := run(t, args...)
			all := stdout + stderr
			if code != 1 {
				t.Fatalf("exit %d, want 1\n%s", code, all)
			}
			for _, w := range tt.want {
				if !strings.Contains(all, w) {
					t.Errorf("output lacks %q:\n%s", w, all)
				}
			}
		})
	}
	// And the good chain passes.
	code, stdout, stderr := run(t, "check", "--ssl-module", "builtin", "--data-dir", t.TempDir(), "--socket-host", "localhost",
		"--ssl-certificate", c.leaf.CertFile, "--ssl-private-key", c.leaf.KeyFile, "--ssl-certificate-chain", c.chain)
	if code != 0 {
		t.Fatalf("good chain: exit %d\n%s%s", code, stdout, stderr)
	}
}
