package integration

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	osexec "os/exec"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"tlsedge/internal/testenv"
	"tlsedge/peercred/peercredtest"
)

// upstream is a real HTTP server behind tlsedge that records what reaches it.
type upstream struct {
	addr     string
	seen     atomic.Int64 // requests received
	inFlight atomic.Int64
	mu       sync.Mutex
	headers  []http.Header
	paths    []string
}

func startUpstream(t *testing.T) *upstream {
	t.Helper()
	u := &upstream{}
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		u.seen.Add(1)
		u.mu.Lock()
		u.headers = append(u.headers, r.Header.Clone())
		u.paths = append(u.paths, r.URL.Path)
		u.mu.Unlock()
		io.Copy(io.Discard, r.Body)
		if d, err := time.ParseDuration(r.URL.Query().Get("sleep")); err == nil {
			u.inFlight.Add(1)
			time.Sleep(d)
			u.inFlight.Add(-1)
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(r.Header)
	})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	u.addr = l.Addr().String()
	return u
}

func (u *upstream) lastHeaders() http.Header {
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.headers) == 0 {
		return nil
	}
	return u.headers[len(u.headers)-1]
}

// Forged identity and forwarding headers never reach an upstream; the real
// ones do: peer credentials (names resolved) on the UNIX socket, TLS facts on
// HTTPS.
func TestProxyIdentityHeaders(t *testing.T) {
	peercredtest.RequireRoot(t)
	u := startUpstream(t)
	dir := peercredtest.Dir(t)
	sock := dir + "/app.sock"
	conf := dir + "/edge.conf"
	writeFile(t, conf, `[global]
server.socket_port = 0
server.mount = ["/=http://`+u.addr+`"]
server.local.socket_file = "`+sock+`"
server.local.socket_file_mode = "0666"
server.local.ssl_module = "none"
server.local.peercreds = True
server.local.peercreds_resolve = True
server.local.peercreds_allow_uid = ["0", "65534"]
`)
	p := start(t, "--config", conf)
	forged := []string{"-H", "X-Remote-User: root", "-H", "X-Remote-Uid: 0", "-H", "X_Remote_User: root",
		"-H", "Remote-User: root", "-H", "X-Remote-Group: root", "-H", "X-SSL-Client-Verify: SUCCESS", "-H", "X-Forwarded-For: 6.6.6.6"}
	curl := testenv.RequireTool(t, "curl", "curl")
	args := append([]string{"-sS", "--fail", "--unix-socket", sock}, forged...)
	out, err := peercredtest.Command(t, peercredtest.Nobody, peercredtest.Nobody, curl, append(args, "http://localhost/")...).CombinedOutput()
	if err != nil {
		t.Fatalf("curl as nobody: %v %s", err, out)
	}
	h := u.lastHeaders()
	for k, want := range map[string]string{"X-Remote-Uid": "65534", "X-Remote-Gid": "65534", "X-Remote-User": "nobody", "Remote-User": "nobody", "X-Remote-Group": "nogroup"} {
		if got := h.Values(k); len(got) != 1 || got[0] != want {
			t.Errorf("upstream saw %s = %q, want exactly %q", k, got, want)
		}
	}
	for k := range h {
		if strings.EqualFold(k, "X_Remote_User") || strings.HasPrefix(k, "X-Ssl-") {
			t.Errorf("forged header %s reached the upstream: %q", k, h[k])
		}
	}
	if slices.Contains(h.Values("X-Forwarded-For"), "6.6.6.6") || strings.Contains(h.Get("X-Forwarded-For"), "6.6.6.6") {
		t.Errorf("client's X-Forwarded-For passed through: %q", h.Values("X-Forwarded-For"))
	}
	// Over HTTPS: no peer credentials, TLS facts instead, forged ones gone.
	args = append([]string{"-sS", "--fail", "--cacert", p.caFile()}, forged...)
	out, err = runCmd(t, curl, append(args, p.base("main")+"/")...)
	if err != nil {
		t.Fatalf("curl over TLS: %v %s", err, out)
	}
	h = u.lastHeaders()
	if v := h.Values("X-Remote-User"); len(v) != 0 {
		t.Errorf("X-Remote-User over TCP: %q", v)
	}
	if h.Get("X-Ssl-Protocol") == "" || h.Get("X-Forwarded-Proto") != "https" {
		t.Errorf("TLS facts missing: X-SSL-Protocol %q, X-Forwarded-Proto %q", h.Get("X-Ssl-Protocol"), h.Get("X-Forwarded-Proto"))
	}
	if h.Get("X-Ssl-Client-Verify") == "SUCCESS" {
		t.Error("forged X-SSL-Client-Verify reached the upstream")
	}
}

func writeFile(t *testing.T, path, body string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

func runCmd(t *testing.T, name string, args ...string) ([]byte, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return osexec.CommandContext(ctx, name, args...).CombinedOutput()
}

// SIGTERM with 500 requests in flight: every one completes, new connections
// are refused, idle keep-alive connections close at once, exit 0.
func TestGracefulStopUnderLoad(t *testing.T) {
	testenv.Long(t)
	u := startUpstream(t)
	p := startPlain(t, "--socket-port", "0", "--mount", "/=http://"+u.addr, "--shutdown-timeout", "20")
	addr := strings.TrimPrefix(p.base("main"), "https://")
	cfg := &tls.Config{RootCAs: caPool(t, p.caFile()), ServerName: "127.0.0.1"}
	// An idle keep-alive connection, opened and used before the stop.
	idle, err := tls.Dial("tcp", addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	io.WriteString(idle, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	br := bufio.NewReader(idle)
	if resp, err := http.ReadResponse(br, nil); err != nil || resp.StatusCode != 200 {
		t.Fatalf("idle conn first request: %v", err)
	} else {
		io.Copy(io.Discard, resp.Body)
	}

	const n = 500
	client := &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg, MaxConnsPerHost: n, MaxIdleConnsPerHost: n}}
	results := make(chan error, n)
	for range n {
		go func() {
			resp, err := client.Get(p.base("main") + "/?sleep=3s")
			if err == nil {
				_, err = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if err == nil && resp.StatusCode != 200 {
					err = fmt.Errorf("status %d", resp.StatusCode)
				}
			}
			results <- err
		}()
	}
	deadline := time.Now().Add(60 * time.Second)
	for u.inFlight.Load() < n {
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d requests in flight", u.inFlight.Load(), n)
		}
		time.Sleep(20 * time.Millisecond)
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	// The idle connection is closed at once.
	idle.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := br.ReadByte(); err == nil || isTimeout(err) {
		t.Errorf("idle keep-alive connection not closed at once: %v", err)
	}
	// New connections are refused.
	time.Sleep(200 * time.Millisecond)
	if c, err := tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", addr, cfg); err == nil {
		c.Close()
		t.Error("a new connection was accepted during the stop")
	}
	var failed []string
	for range n {
		if err := <-results; err != nil {
			failed = append(failed, err.Error())
		}
	}
	if len(failed) > 0 {
		t.Errorf("%d of %d in-flight requests failed; first: %s", len(failed), n, failed[0])
	}
	if code := p.wait(30 * time.Second); code != 0 {
		t.Fatalf("exit %d", code)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func (u *upstream) sawPath(p string) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	return slices.Contains(u.paths, p)
}
