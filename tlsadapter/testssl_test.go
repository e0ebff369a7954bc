package tlsadapter

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"tlsedge/internal/testenv"
	"tlsedge/policy"
)

// connListener hands connections an Adapter already wrapped to http.Server,
// so scanners see a real HTTPS server with tlsedge's TLS layer.
type connListener struct {
	addr net.Addr
	ch   chan net.Conn
	done chan struct{}
}

func (l *connListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}
func (l *connListener) Close() error   { return nil }
func (l *connListener) Addr() net.Addr { return l.addr }

// serveHTTP runs net/http (HTTP/1.1 only) behind ad, with HSTS from o.
func serveHTTP(t *testing.T, ad Adapter, o Options) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cl := &connListener{addr: ln.Addr(), ch: make(chan net.Conn), done: make(chan struct{})}
	go func() {
		defer close(cl.done)
		for {
			raw, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				c, _, err := ad.Wrap(ctx, raw)
				if err != nil {
					return
				}
				select {
				case cl.ch <- c:
				case <-cl.done:
					c.Close()
				}
			}()
		}
	}()
	h := policy.HSTS(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "ok") }), o.HSTS())
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(cl)
	t.Cleanup(func() { cancel(); ln.Close(); srv.Close(); ad.Close() })
	return ln.Addr().String()
}

// TestTestSSL scans the default configuration (plus HSTS) with testssl.sh
// and fails on any high or critical finding, on any protocol below TLS 1.2,
// on non-forward-secret or non-AEAD suites, on client renegotiation and on
// a missing HSTS header. It takes several minutes.
func TestTestSSL(t *testing.T) {
	testenv.Long(t)
	testssl := testenv.RequireTool(t, "testssl", "testssl.sh")
	ca := testenv.NewCA(t, "scan")
	leaf := ca.Leaf(t, "localhost", "127.0.0.1")
	o := builtinOpts(leaf.CertFile, leaf.KeyFile)
	o.SSLALPN = []string{"http/1.1"}
	o.SSLHSTSMaxAge = 365 * 24 * time.Hour
	o.SSLHSTSIncludeSubdomains = true
	addr := serveHTTP(t, newBuiltinT(t, o), o)
	out := filepath.Join(t.TempDir(), "testssl.json")
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, testssl, "--quiet", "--color", "0", "--warnings", "off",
		"--protocols", "--std", "--fs", "--vulnerable", "--headers", "--jsonfile", out, "https://"+addr)
	log, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("testssl: %v\n%s", err, log)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatalf("no JSON from testssl: %v\n%s", err, log)
	}
	var findings []struct{ ID, Severity, Finding string }
	if err := json.Unmarshal(b, &findings); err != nil {
		t.Fatal(err)
	}
	byID := map[string]string{}
	for _, f := range findings {
		byID[f.ID] = f.Finding
		// The test CA is in no trust store: certificate trust findings are expected.
		if (f.Severity == "HIGH" || f.Severity == "CRITICAL") && !strings.HasPrefix(f.ID, "cert_") && f.ID != "cert" {
			t.Errorf("%s %s: %s", f.Severity, f.ID, f.Finding)
		}
	}
	for _, id := range []string{"SSLv2", "SSLv3", "TLS1", "TLS1_1"} {
		if !strings.Contains(byID[id], "not offered") {
			t.Errorf("%s: %q", id, byID[id])
		}
	}
	// IDs as testssl.sh 3.0.8 (Debian 12) writes them.
	for id, want := range map[string]string{
		"secure_client_renego": "not vulnerable", "HSTS_time": "365 days", "HSTS_subdomains": "includes subdomains",
		"cipherlist_NULL": "not offered", "cipherlist_aNULL": "not offered", "cipherlist_EXPORT": "not offered",
		"cipherlist_LOW": "not offered", "cipherlist_3DES_IDEA": "not offered", "cipherlist_AVERAGE": "not offered",
		"cipherlist_STRONG": "offered",
	} {
		if !strings.Contains(byID[id], want) {
			t.Errorf("%s: %q, want %q", id, byID[id], want)
		}
	}
	t.Logf("testssl findings: %d", len(findings))
}
