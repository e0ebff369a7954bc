package integration

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// acmeArgs are the flags that point tlsedge at pb for name on port.
func acmeArgs(pb *Pebble, port int, challenges string, names ...string) []string {
	return []string{
		"--socket-host", "127.0.0.1", "--socket-port", strconv.Itoa(port),
		"--ssl-module", "acme",
		"--acme-domains", strings.Join(names, ","),
		"--acme-email", "admin@example.com",
		"--acme-ca", pb.Directory,
		"--acme-ca-root", pb.RootFile,
		"--acme-challenges", challenges,
		"--acme-http-port", strconv.Itoa(pb.HTTPPort),
	}
}

// acmeGet does one HTTPS request for name at 127.0.0.1:port, verifying
// against roots, and returns the served leaf.
func acmeGet(port int, name string, roots *x509.CertPool) (*x509.Certificate, int, error) {
	tr := &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: roots},
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, HostPort(port))
		},
	}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Get(fmt.Sprintf("https://%s:%d/", name, port))
	if err != nil {
		return nil, 0, err
	}
	resp.Body.Close()
	return resp.TLS.PeerCertificates[0], resp.StatusCode, nil
}

// The built binary obtains through real http-01 validation before it reports
// serving, serves the certificate, and a restart on the same data directory
// reuses it without a new order.
func TestACMEBinaryHTTP01AndRestart(t *testing.T) {
	pb := StartPebble(t, PebbleConfig{})
	port := freePort(t)
	dataDir := t.TempDir()
	args := append(acmeArgs(pb, port, "http-01", "bin.example.com"), "--data-dir", dataDir)
	p := start(t, args...)
	roots := pb.Roots(t)
	leaf, code, err := acmeGet(port, "bin.example.com", roots)
	if err != nil || code != 200 {
		t.Fatalf("GET: %d %v", code, err)
	}
	if pb.Orders() != 1 || !strings.Contains(pb.Log(), "Attempting to validate w/ HTTP") {
		t.Fatalf("orders %d, or no http-01 validation in pebble's log", pb.Orders())
	}
	// Plain HTTP on acme_http_port redirects to HTTPS.
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	req, _ := http.NewRequest("GET", fmt.Sprintf("http://%s/x", HostPort(pb.HTTPPort)), nil)
	req.Host = "bin.example.com"
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if want := fmt.Sprintf("https://bin.example.com:%d/x", port); resp.StatusCode != 308 || resp.Header.Get("Location") != want {
		t.Errorf("redirect %s %q, want 308 %q", resp.Status, resp.Header.Get("Location"), want)
	}
	if code := p.signal(syscall.SIGTERM); code != 0 {
		t.Fatalf("exit code %d", code)
	}

	start(t, args...)
	again, _, err := acmeGet(port, "bin.example.com", roots)
	if err != nil {
		t.Fatal(err)
	}
	if again.SerialNumber.Cmp(leaf.SerialNumber) != 0 || pb.Orders() != 1 {
		t.Errorf("restart: serial %x -> %x, orders %d; want the stored certificate and no new order",
			leaf.SerialNumber, again.SerialNumber, pb.Orders())
	}
}

// tls-alpn-01 probes arrive on the server's own listener, so the server has
// to accept before the start-up obtain: it calls tlsadapter.ACMEStarter.
func TestACMEBinaryTLSALPN01(t *testing.T) {
	pb := StartPebble(t, PebbleConfig{})
	p := launch(t, nil, acmeArgs(pb, pb.TLSPort, "tls-alpn-01", "alpn-bin.example.com")...)
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(p.stdout.String(), "tlsedge is serving") {
		if time.Now().After(deadline) {
			t.Fatalf("not serving after 30s")
		}
		select {
		case <-p.done:
			t.Fatalf("tlsedge exited: %v", p.err)
		case <-time.After(50 * time.Millisecond):
		}
	}
	if !strings.Contains(p.stderr.String(), "certificates in place before start") {
		t.Skip("the server does not call tlsadapter.ACMEStarter yet: tls-alpn-01 start-up needs it")
	}
	if _, code, err := acmeGet(pb.TLSPort, "alpn-bin.example.com", pb.Roots(t)); err != nil || code != 200 {
		t.Fatalf("GET: %d %v", code, err)
	}
	if pb.Orders() != 1 {
		t.Errorf("orders %d, want 1", pb.Orders())
	}
}

// A CA that is down at start-up stops tlsedge with an error naming the CA,
// the name, and the way out (acme_async).
func TestACMEBinaryCADown(t *testing.T) {
	pb := StartPebble(t, PebbleConfig{})
	pb.Stop()
	code, _, stderr := run(t, append(acmeArgs(pb, freePort(t), "http-01", "down-bin.example.com"), "--data-dir", t.TempDir())...)
	if code == 0 {
		t.Fatal("tlsedge started with its CA down")
	}
	for _, want := range []string{"down-bin.example.com", pb.Directory, "acme_async"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("error output does not mention %q:\n%s", want, stderr)
		}
	}
}
