package tlsadapter

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"tlsedge/internal/testenv"
	"tlsedge/policy"
)

// server is a test harness: a loopback listener whose connections go through
// an Adapter's Wrap in their own goroutine (as the server package does) and
// get a fixed HTTP/1.1 answer describing the connection.
type server struct {
	ad   *Terminator
	ln   net.Listener
	addr string
	port int
	mu   sync.Mutex
	errs []error
	wg   sync.WaitGroup
}

func serve(t testing.TB, ad *Terminator) *server {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &server{ad: ad, ln: ln, addr: ln.Addr().String(), port: ln.Addr().(*net.TCPAddr).Port}
	ctx, cancel := context.WithCancel(context.Background())
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				s.handle(ctx, c)
			}()
		}
	}()
	t.Cleanup(func() {
		cancel()
		ln.Close()
		s.wg.Wait()
		ad.Close()
	})
	return s
}

func (s *server) handle(ctx context.Context, raw net.Conn) {
	conn, cs, err := s.ad.Wrap(ctx, raw)
	if err != nil {
		s.mu.Lock()
		s.errs = append(s.errs, err)
		s.mu.Unlock()
		return
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(60 * time.Second))
	br := bufio.NewReader(conn)
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return
		}
		if line == "\r\n" || line == "\n" {
			break
		}
	}
	body := describe(cs)
	fmt.Fprintf(conn, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", len(body), body)
}

// describe is the body the harness answers with.
func describe(cs *tls.ConnectionState) string {
	var b strings.Builder
	for _, v := range policy.SSLVars(cs, time.Now()) {
		if v.Name == "SSL_CLIENT_CERT" {
			continue
		}
		fmt.Fprintf(&b, "%s=%s\n", v.Name, v.Value)
	}
	fmt.Fprintf(&b, "ALPN=%s\n", cs.NegotiatedProtocol)
	return b.String()
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t testing.TB }

func testLoggerTo(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// builtinOpts returns the options as the server package would fill them from
// the tag defaults, for the given certificate pairs (cert, key, cert, key...).
func builtinOpts(files ...string) Options {
	o := defaults
	o.SSLModule = "builtin"
	o.SSLReloadInterval = 0
	for i := 0; i+1 < len(files); i += 2 {
		o.SSLCertificate = append(o.SSLCertificate, files[i])
		o.SSLPrivateKey = append(o.SSLPrivateKey, files[i+1])
	}
	return o
}

func newBuiltinT(t testing.TB, o Options, hosts ...string) *Terminator {
	t.Helper()
	ad, err := NewRegistry().New(context.Background(), "builtin", Params{Options: o, Logger: testLogger(t), Hosts: hosts})
	if err != nil {
		t.Fatal(err)
	}
	return ad
}

// get makes one HTTPS request with cfg and returns the body.
func get(addr string, cfg *tls.Config) (string, *tls.ConnectionState, error) {
	// Generous: under -race on a busy machine a handshake can take seconds.
	d := &net.Dialer{Timeout: 30 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", addr, cfg)
	if err != nil {
		return "", nil, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		return "", nil, err
	}
	b, err := io.ReadAll(c)
	if err != nil {
		return "", nil, err
	}
	cs := c.ConnectionState()
	_, body, _ := strings.Cut(string(b), "\r\n\r\n")
	return body, &cs, nil
}

// issueRSA issues an RSA leaf of the given size from ca, with files.
func issueRSA(t testing.TB, ca *testenv.CA, bits int, names ...string) *testenv.Issued {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: names[0]},
		DNSNames:     names,
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	dir := t.TempDir()
	is := &testenv.Issued{Cert: cert, Key: key, CertFile: filepath.Join(dir, "rsa.pem"), KeyFile: filepath.Join(dir, "rsa.key")}
	os.WriteFile(is.CertFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	os.WriteFile(is.KeyFile, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}), 0o600)
	return is
}

// intermediate issues an intermediate CA under root and returns it as a CA
// that can issue leaves.
func intermediate(t testing.TB, root *testenv.CA, name string) (*testenv.CA, *testenv.Issued) {
	t.Helper()
	is := root.Issue(t, &x509.Certificate{
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	})
	return &testenv.CA{Cert: is.Cert, Key: is.Key}, is
}

func clientCfg(ca *testenv.CA, sni string) *tls.Config {
	return &tls.Config{RootCAs: ca.Pool, ServerName: sni}
}

func (s *server) wrapErrors() []error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]error(nil), s.errs...)
}

// waitStat polls the adapter's stats until f holds or a second passes: Wrap
// finishes counting slightly after the client sees the alert.
func waitStat(t testing.TB, ad *Terminator, f func(TLSStats) bool) TLSStats {
	t.Helper()
	var st TLSStats
	for i := 0; i < 100; i++ {
		st = ad.TLSStats()
		if f(st) {
			return st
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("stats never matched: %+v", st)
	return st
}

// mustCurves and mustAllow build typed options for tests, as a config file
// would.
func mustCurves(names ...string) Curves {
	c, err := ParseCurves(names...)
	if err != nil {
		panic(err)
	}
	return c
}

func mustAllow(entries ...string) policy.ClientAllow {
	a, err := policy.NewClientAllow(entries...)
	if err != nil {
		panic(err)
	}
	return a
}
