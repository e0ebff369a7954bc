package integration

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
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

// acmeClient sends every request to 127.0.0.1:port whatever the URL's name
// (which is the SNI), verifying against roots (nil: no verification), each on
// a new connection.
func acmeClient(port int, roots *x509.CertPool) *http.Client {
	tr := &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: roots, InsecureSkipVerify: roots == nil},
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, HostPort(port))
		},
	}
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// acmeGet does one HTTPS request for name at 127.0.0.1:port, verifying
// against roots (nil: no verification, to look at what is served), and
// returns the served leaf.
func acmeGet(port int, name string, roots *x509.CertPool) (*x509.Certificate, int, error) {
	resp, err := acmeClient(port, roots).Get(fmt.Sprintf("https://%s:%d/", name, port))
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
	p := launch(t, binary, nil, acmeArgs(pb, pb.TLSPort, "tls-alpn-01", "alpn-bin.example.com")...)
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

// Renewal through certmagic's maintenance in the running binary: one-minute
// certificates with a 90% window are due six seconds after issue. Clients
// keep connecting throughout; not one request may fail.
func TestACMEBinaryRenewal(t *testing.T) {
	pb := StartPebble(t, PebbleConfig{Validity: time.Minute})
	port := pb.TLSPort // tls-alpn-01 probes arrive here
	// Both challenges: the start-up obtain uses http-01 (the listener is not
	// accepting yet), renewals may use either.
	start(t, append(acmeArgs(pb, port, "http-01,tls-alpn-01", "renew-bin.example.com"),
		"--acme-renew-window", "90%", "--acme-renew-interval", "1s")...)
	roots := pb.Roots(t)
	serials := map[string]bool{}
	var requests, failed int
	deadline := time.Now().Add(45 * time.Second)
	for len(serials) < 3 && time.Now().Before(deadline) {
		leaf, code, err := acmeGet(port, "renew-bin.example.com", roots)
		requests++
		if err != nil || code != 200 {
			failed++
			t.Errorf("request %d: %d %v", requests, code, err)
			continue
		}
		serials[leaf.SerialNumber.Text(16)] = true
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("%d requests, %d failed, %d certificates served", requests, failed, len(serials))
	if len(serials) < 3 {
		t.Errorf("served %d distinct certificates, want the first and two renewals", len(serials))
	}
	if strings.Contains(pb.Log(), "set INVALID") {
		t.Error("pebble saw a failed validation")
	}
}

// On-demand in the binary: an allowed name is issued at its first handshake
// (tls-alpn-01 answered on the serving listener), a refused one fails the
// handshake and pebble sees no order for it.
func TestACMEBinaryOnDemand(t *testing.T) {
	pb := StartPebble(t, PebbleConfig{})
	args := []string{
		"--socket-host", "127.0.0.1", "--socket-port", strconv.Itoa(pb.TLSPort),
		"--ssl-module", "acme",
		"--acme-on-demand", "--acme-on-demand-allow", "*.od.example.com",
		"--acme-ca", pb.Directory, "--acme-ca-root", pb.RootFile,
		"--acme-challenges", "tls-alpn-01",
	}
	start(t, args...)
	if pb.Orders() != 0 {
		t.Fatalf("%d orders before any handshake", pb.Orders())
	}
	if _, code, err := acmeGet(pb.TLSPort, "shop.od.example.com", pb.Roots(t)); err != nil || code != 200 {
		t.Fatalf("allowed name: %d %v", code, err)
	}
	if pb.Orders() != 1 {
		t.Fatalf("orders %d after the allowed name, want 1", pb.Orders())
	}
	// A wildcard covers one label, as in a certificate: x.y.z.od.example.com
	// belongs to whoever controls y.z.od.example.com, not to *.od.example.com.
	for _, refused := range []string{"evil.example.net", "x.y.z.od.example.com", "a.shop.od.example.com"} {
		if _, _, err := acmeGet(pb.TLSPort, refused, nil); err == nil {
			t.Errorf("refused name %s completed a request", refused)
		}
	}
	if pb.Orders() != 1 {
		t.Errorf("orders %d after the refused names, want still 1", pb.Orders())
	}
}

// With acme_async a CA outage at start-up does not stop tlsedge: it serves
// the internal CA's certificate meanwhile, says so in the log, and picks up
// the real certificate when the CA comes back.
func TestACMEBinaryAsyncRecovers(t *testing.T) {
	pb := StartPebble(t, PebbleConfig{})
	pb.Stop()
	port := freePort(t)
	dataDir := t.TempDir()
	p := start(t, append(acmeArgs(pb, port, "http-01", "async-bin.example.com"),
		"--acme-async", "--acme-retry-interval", "1s", "--data-dir", dataDir)...)
	if !strings.Contains(p.stderr.String(), "internal CA") {
		t.Error("the log does not say the internal CA's certificate is served meanwhile")
	}
	devRoots := x509.NewCertPool()
	devPEM, err := os.ReadFile(filepath.Join(dataDir, "ca", "ca.pem"))
	if err != nil || !devRoots.AppendCertsFromPEM(devPEM) {
		t.Fatalf("internal CA certificate: %v", err)
	}
	if _, code, err := acmeGet(port, "async-bin.example.com", devRoots); err != nil || code != 200 {
		t.Fatalf("during the outage: %d %v; want the internal CA's certificate", code, err)
	}
	pb.Start()
	roots := pb.Roots(t)
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, code, err := acmeGet(port, "async-bin.example.com", roots)
		if err == nil && code == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no ACME certificate 30s after the CA came back: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
