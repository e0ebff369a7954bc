package server

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"tlsedge/apps"
	"tlsedge/internal/testenv"
	"tlsedge/router"
	"tlsedge/server/httpcore"
)

// hostServer starts a TLS server with three certificates (a.test, *.b.test,
// and c.test with 127.0.0.1, the default) and mounts by host.
func hostServer(t *testing.T) (*Server, *x509.CertPool) {
	t.Helper()
	ca := testenv.NewCA(t, "hosts")
	def := ca.Leaf(t, "c.test", "127.0.0.1")
	a := ca.Leaf(t, "a.test")
	b := ca.Leaf(t, "*.b.test")
	both := ca.Leaf(t, "d.test", "e.test")
	c := plainConfig(t, nil)
	c.Handlers = nil
	c.SocketHost = "127.0.0.1"
	c.Core.Statistics = true
	c.TLS.SSLModule = "builtin"
	c.TLS.SSLCertificate = []string{def.CertFile, a.CertFile, b.CertFile, both.CertFile}
	c.TLS.SSLPrivateKey = []string{def.KeyFile, a.KeyFile, b.KeyFile, both.KeyFile}
	c.Mount = router.MustMounts("a.test/=text:A", "*.b.test/=text:B", "c.test/api=text:C-api",
		"d.test/=text:D", "e.test/=text:E", "/=text:default")
	pool := x509.NewCertPool()
	pem, err := os.ReadFile(ca.File())
	if err != nil {
		t.Fatal(err)
	}
	pool.AppendCertsFromPEM(pem)
	return startServer(t, c), pool
}

// rawTLS sends one HTTP/1.x request with the given SNI and Host line (none
// when host is "-") over a real TLS connection, and returns the status line
// and body.
func rawTLS(t *testing.T, addr, sni, proto, host string, pool *x509.CertPool) (string, string) {
	t.Helper()
	conn, err := tls.Dial("tcp", addr, &tls.Config{ServerName: sni, RootCAs: pool, InsecureSkipVerify: sni == ""})
	if err != nil {
		t.Fatalf("handshake with SNI %q: %v", sni, err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	req := "GET /api/x " + proto + "\r\n"
	if host != "-" {
		req += "Host: " + host + "\r\n"
	}
	io.WriteString(conn, req+"Connection: close\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("SNI %q Host %q: %v", sni, host, err)
	}
	body, _ := io.ReadAll(resp.Body)
	return resp.Status, string(body)
}

// TestHostRoutingTLS is the host routing table over real sockets and real
// TLS: the SNI of each handshake and the Host of each request are set
// apart, so routing (by Host) and the misdirected-request check (Host
// against the certificate the SNI was served) are both seen.
func TestHostRoutingTLS(t *testing.T) {
	s, pool := hostServer(t)
	addr := s.BindAddr().String()
	for _, tt := range []struct {
		sni, proto, host string
		status, body     string
	}{
		{"a.test", "HTTP/1.1", "a.test", "200 OK", "A"},
		{"a.test", "HTTP/1.1", "A.TEST.:8443", "200 OK", "A"},             // port, trailing dot, case
		{"x.b.test", "HTTP/1.1", "x.b.test", "200 OK", "B"},               // wildcard
		{"x.b.test", "HTTP/1.1", "y.b.test", "200 OK", "B"},               // same certificate: coalescing allowed
		{"c.test", "HTTP/1.1", "c.test", "200 OK", "C-api"},               // exact host and prefix
		{"c.test", "HTTP/1.1", "127.0.0.1:1", "200 OK", "default"},        // same certificate, host-less mount
		{"", "HTTP/1.1", "127.0.0.1", "200 OK", "default"},                // no SNI: the default certificate
		{"", "HTTP/1.0", "-", "200 OK", "default"},                        // no Host: host-less mounts only
		{"d.test", "HTTP/1.1", "e.test", "200 OK", "E"},                   // one certificate for both
		{"a.test", "HTTP/1.1", "x.b.test", "421 Misdirected Request", ""}, // domain fronting
		{"x.b.test", "HTTP/1.1", "a.test.", "421 Misdirected Request", ""},
		{"c.test", "HTTP/1.1", "a.test", "421 Misdirected Request", ""},
		{"", "HTTP/1.1", "a.test", "421 Misdirected Request", ""},   // no SNI, default certificate
		{"a.test", "HTTP/1.1", "unknown.test", "200 OK", "default"}, // no certificate names it
	} {
		status, body := rawTLS(t, addr, tt.sni, tt.proto, tt.host, pool)
		if status != tt.status || tt.body != "" && body != tt.body {
			t.Errorf("SNI %q Host %q: %s %q, want %s %q", tt.sni, tt.host, status, body, tt.status, tt.body)
		}
	}
	var n uint64
	for _, r := range s.Stats().Rejections {
		if r.Status == 421 && r.Reason == "misdirected" {
			n = r.Count
		}
	}
	if n != 4 {
		t.Errorf("misdirected rejections counted: %d, want 4 (%+v)", n, s.Stats().Rejections)
	}
}

// Over h2 the :authority of each stream is checked against the
// connection's SNI: a client that coalesces a connection for a host of
// another certificate gets 421 on that stream, and the connection serves on.
func TestMisdirectedH2(t *testing.T) {
	s, pool := hostServer(t)
	addr := s.BindAddr().String()
	tr := &http2.Transport{
		TLSClientConfig: &tls.Config{ServerName: "a.test", RootCAs: pool},
		DialTLSContext: func(ctx context.Context, network, _ string, cfg *tls.Config) (net.Conn, error) {
			d := tls.Dialer{Config: cfg}
			return d.DialContext(ctx, network, addr)
		},
	}
	defer tr.CloseIdleConnections()
	get := func(host string) (int, string) {
		req, _ := http.NewRequest("GET", "https://"+host+"/", nil)
		resp, err := tr.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("a.test"); code != 200 || body != "A" {
		t.Fatalf("a.test: %d %q", code, body)
	}
	if code, _ := get("x.b.test"); code != 421 {
		t.Fatalf("x.b.test on a.test's connection: %d, want 421", code)
	}
	if code, body := get("a.test:443"); code != 200 || body != "A" {
		t.Fatalf("a.test again: %d %q", code, body)
	}
	if !strings.HasPrefix(addr, "127.0.0.1:") {
		t.Fatal(addr)
	}
}

// The metrics and the status page name routes by host: the route label of
// a host's mount is its key ("a.test/api", "*.b.test/"), and the 421s
// appear among the core's rejections in the metrics.
func TestRoutesByHostInMetrics(t *testing.T) {
	var s *Server
	m := apps.NewMetrics(apps.Sources{Core: func() httpcore.Stats { return s.Stats() }})
	c := plainConfig(t, nil)
	c.Handlers = nil
	c.Core.Statistics = true
	c.Mount = router.MustMounts("a.test/api=text:A", "*.b.test/=text:B", "/status=status:", "/=text:default")
	c.Targets = func(target string) (http.Handler, error) { return apps.New(target, apps.Env{Metrics: m}) }
	c.Middleware = m.Wrap
	s = startServer(t, c)
	base := "http://" + s.BindAddr().String()
	for _, host := range []string{"a.test", "a.test", "x.b.test", "c.test"} {
		req, _ := http.NewRequest("GET", base+"/api/x", nil)
		req.Host = host
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	body := mustGet(t, base+"/status/metrics")
	for _, want := range []string{
		`tlsedge_http_requests_total{code="200",route="a.test/api",server="main"} 2`,
		`tlsedge_http_requests_total{code="200",route="*.b.test/",server="main"} 1`,
		`tlsedge_http_requests_total{code="200",route="/",server="main"} 1`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if t.Failed() {
		t.Log(body)
	}
}
