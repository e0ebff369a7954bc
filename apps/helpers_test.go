package apps

import (
	"bytes"
	"context"
	"crypto/tls"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"tlsedge/conninfo"
	"tlsedge/internal/testenv"
	"tlsedge/peercred"
)

// serveOn serves h on ln with net/http's server, putting a ConnInfo into
// every request context the way the core does, and returns the base URL.
// creds, when non-nil, is reported as the peer of every connection.
func serveOn(t *testing.T, ln net.Listener, h http.Handler, creds *peercred.Creds) string {
	t.Helper()
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			ci := &conninfo.Info{
				Transport:  c.LocalAddr().Network(),
				LocalAddr:  c.LocalAddr(),
				RemoteAddr: c.RemoteAddr(),
				Peer:       creds,
			}
			return conninfo.NewContext(ctx, ci)
		},
		ErrorLog: slog.NewLogLogger(slog.DiscardHandler, slog.LevelError),
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	if ln.Addr().Network() == "unix" {
		return "http://unix"
	}
	return "http://" + ln.Addr().String()
}

// serveTCP serves h on a fresh 127.0.0.1 port.
func serveTCP(t *testing.T, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return serveOn(t, ln, h, nil)
}

// shortTempDir is a temp dir with a path short enough for a UNIX socket
// (t.TempDir can exceed the 108-byte sun_path limit with long test names).
func shortTempDir(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("", "apps")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// serveUnix serves h on a UNIX socket and returns the socket's path.
func serveUnix(t *testing.T, h http.Handler, creds *peercred.Creds) string {
	t.Helper()
	sock := filepath.Join(shortTempDir(t), "s.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	serveOn(t, ln, h, creds)
	return sock
}

// unixClient is an HTTP client that dials sock whatever the URL says.
func unixClient(sock string) *http.Client {
	return &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		},
	}, Timeout: 30 * time.Second}
}

// logBuf collects log output for assertions.
type logBuf struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func testLogger(t *testing.T) (*slog.Logger, *logBuf) {
	lb := &logBuf{}
	return slog.New(slog.NewTextHandler(lb, &slog.HandlerOptions{Level: slog.LevelDebug})), lb
}

func mustNew(t *testing.T, target string, env Env) http.Handler {
	t.Helper()
	h, err := New(target, env)
	if err != nil {
		t.Fatalf("New(%q): %v", target, err)
	}
	return h
}

// clientCertListener is a loopback TLS listener for "localhost" that asks
// for, but does not require, a client certificate from ca; client is one.
func clientCertListener(t testing.TB, caName string) (ln net.Listener, ca *testenv.CA, client *testenv.Issued) {
	t.Helper()
	ca = testenv.NewCA(t, caName)
	server := ca.Leaf(t, "localhost")
	client = ca.Leaf(t, "client-7")
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{
		Certificates: []tls.Certificate{server.TLS},
		ClientAuth:   tls.VerifyClientCertIfGiven,
		ClientCAs:    ca.Pool,
	})
	if err != nil {
		t.Fatal(err)
	}
	return ln, ca, client
}
