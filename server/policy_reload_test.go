package server

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"tlsedge/internal/testenv"
)

// TestReloadRevokesLiveConnections: a reload whose policy denies an
// identity closes that identity's live connections: a busy one after its
// current request (which completes, answered with Connection: close), an
// idle keep-alive one at once; a connection the new policy still admits
// stays open.
func TestReloadRevokesLiveConnections(t *testing.T) {
	release := make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			<-release
		}
		io.WriteString(w, "ok")
	})
	c := plainConfig(t, h)
	c.SocketHost = "0.0.0.0"
	setRules(t, &c, "allow src:127.0.0.1,127.0.0.2", "deny *")
	s := startServer(t, c)
	port := s.BindAddr().(*net.TCPAddr).Port

	dial := func(src string) (net.Conn, *bufio.Reader) {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
		nc, err := d.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { nc.Close() })
		return nc, bufio.NewReader(nc)
	}
	get := func(nc net.Conn, br *bufio.Reader, path string) *http.Response {
		t.Helper()
		fmt.Fprintf(nc, "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", path)
		nc.SetReadDeadline(time.Now().Add(5 * time.Second))
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp
	}
	closed := func(nc net.Conn, br *bufio.Reader) bool {
		nc.SetReadDeadline(time.Now().Add(2 * time.Second))
		_, err := br.ReadByte()
		return err != nil && !isTimeout(err)
	}

	idle, idleR := dial("127.0.0.1")
	busy, busyR := dial("127.0.0.1")
	kept, keptR := dial("127.0.0.2")
	for _, x := range []struct {
		nc net.Conn
		br *bufio.Reader
	}{{idle, idleR}, {busy, busyR}, {kept, keptR}} {
		if r := get(x.nc, x.br, "/"); r.StatusCode != 200 {
			t.Fatalf("before the reload: %d", r.StatusCode)
		}
	}
	// A request in flight on busy while the reload revokes 127.0.0.1.
	fmt.Fprintf(busy, "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
	time.Sleep(100 * time.Millisecond)
	next := s.Config()
	setRules(t, &next, "deny src:127.0.0.1", "allow *")
	if err := s.Reconfigure(t.Context(), next); err != nil {
		t.Fatal(err)
	}
	if !closed(idle, idleR) {
		t.Error("an idle connection of a revoked identity is still open after the reload")
	}
	close(release)
	busy.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(busyR, nil)
	if err != nil {
		t.Fatalf("the request in flight during the reload: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || string(body) != "ok" || !resp.Close {
		t.Errorf("in-flight request: %d %q close=%v, want 200 ok with Connection: close", resp.StatusCode, body, resp.Close)
	}
	if !closed(busy, busyR) {
		t.Error("the busy connection of a revoked identity stayed open after its current request")
	}
	if r := get(kept, keptR, "/"); r.StatusCode != 200 || r.Close {
		t.Errorf("an identity the new policy admits: %d close=%v", r.StatusCode, r.Close)
	}
	// A new connection from the revoked address is refused at accept.
	nc, br := dial("127.0.0.1")
	if !closed(nc, br) {
		t.Error("a new connection from a revoked address was not closed at accept")
	}
}

// The same reload over h2: the revoked identity's h2 connection gets
// GOAWAY, its stream in flight finishes, and a new stream has to open a
// new connection, which the new policy refuses; another identity's h2
// connection keeps serving on the same connection.
func TestReloadRevokesLiveH2Connections(t *testing.T) {
	release := make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			<-release
		}
		io.WriteString(w, r.Proto)
	})
	ca := testenv.NewCA(t, "revoke-h2")
	leaf := ca.Leaf(t, "127.0.0.1")
	c := plainConfig(t, h)
	c.SocketHost = "0.0.0.0"
	c.TLS.SSLModule = "builtin"
	c.TLS.SSLCertificate = []string{leaf.CertFile}
	c.TLS.SSLPrivateKey = []string{leaf.KeyFile}
	setRules(t, &c, "allow src:127.0.0.1,127.0.0.2", "deny *")
	s := startServer(t, c)
	port := s.BindAddr().(*net.TCPAddr).Port
	pool := x509.NewCertPool()
	pem, err := os.ReadFile(ca.File())
	if err != nil {
		t.Fatal(err)
	}
	pool.AppendCertsFromPEM(pem)

	var dials atomic.Int64
	client := func(src string) *http2.Transport {
		tr := &http2.Transport{
			TLSClientConfig: &tls.Config{RootCAs: pool},
			DialTLSContext: func(ctx context.Context, network, _ string, cfg *tls.Config) (net.Conn, error) {
				dials.Add(1)
				d := tls.Dialer{NetDialer: &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}, Config: cfg}
				return d.DialContext(ctx, network, fmt.Sprintf("127.0.0.1:%d", port))
			},
		}
		t.Cleanup(tr.CloseIdleConnections)
		return tr
	}
	get := func(tr *http2.Transport, path string) (string, error) {
		req, _ := http.NewRequest("GET", fmt.Sprintf("https://127.0.0.1:%d%s", port, path), nil)
		resp, err := tr.RoundTrip(req)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return fmt.Sprintf("%d %s", resp.StatusCode, b), err
	}
	revoked, kept := client("127.0.0.1"), client("127.0.0.2")
	for _, tr := range []*http2.Transport{revoked, kept} {
		if got, err := get(tr, "/"); err != nil || got != "200 HTTP/2.0" {
			t.Fatalf("before the reload: %q %v", got, err)
		}
	}
	inflight := make(chan string, 1)
	go func() {
		got, err := get(revoked, "/slow")
		inflight <- fmt.Sprint(got, err)
	}()
	time.Sleep(100 * time.Millisecond)
	before := dials.Load()
	next := s.Config()
	setRules(t, &next, "deny src:127.0.0.1", "allow *")
	if err := s.Reconfigure(t.Context(), next); err != nil {
		t.Fatal(err)
	}
	close(release)
	select {
	case got := <-inflight:
		if got != "200 HTTP/2.0<nil>" {
			t.Errorf("the stream in flight during the reload: %s", got)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the stream in flight during the reload never ended")
	}
	// The revoked connection said GOAWAY: the next request dials anew, and
	// that connection is refused.
	if got, err := get(revoked, "/"); err == nil {
		t.Errorf("a request of the revoked identity after the reload got %q", got)
	}
	if dials.Load() == before {
		t.Error("the revoked identity's next request went on its old h2 connection")
	}
	before = dials.Load()
	if got, err := get(kept, "/"); err != nil || got != "200 HTTP/2.0" {
		t.Errorf("an identity the new policy admits: %q %v", got, err)
	}
	if dials.Load() != before {
		t.Error("the admitted identity's h2 connection was closed by the reload")
	}
}
