package server

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"tlsedge/apps"
	"tlsedge/apps/appopt"
	"tlsedge/internal/testenv"
	"tlsedge/peercred/peercredtest"
	"tlsedge/router"
)

// h2cTransport speaks h2 with prior knowledge over connections from dial.
func h2cTransport(dial func() (net.Conn, error)) *http2.Transport {
	return &http2.Transport{
		AllowHTTP: true,
		DialTLSContext: func(context.Context, string, string, *tls.Config) (net.Conn, error) {
			return dial()
		},
	}
}

// TestH2CThroughServer: h2c through the whole server, ssl_module none on
// TCP. x/net's client (saying :scheme https, as a balancer that terminated
// TLS may) and curl --http2-prior-knowledge are served as h2; the policy
// guard judges the requests; the proxy tells its upstream the request came
// over plain HTTP (X-Forwarded-Proto: http); the access log has HTTP/2.0
// and the core's figures an h2 connection. An HTTP/1.1 client on the same
// port is served as before.
func TestH2CThroughServer(t *testing.T) {
	type seen struct{ proto, xfp string }
	upstream := make(chan seen, 8)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	up := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		upstream <- seen{r.Proto, r.Header.Get("X-Forwarded-Proto")}
		io.WriteString(w, "from upstream")
	})}
	go up.Serve(ln)
	t.Cleanup(func() { up.Close() })

	c := plainConfig(t, nil)
	c.Handlers = nil
	c.SocketHost = "127.0.0.1"
	c.Core.H2C = true
	c.Core.Statistics = true
	c.Mount = router.MustMounts("/=http://" + ln.Addr().String())
	c.Targets = func(target string) (http.Handler, error) { return apps.New(target, apps.Env{Options: c.Apps}) }
	setRules(t, &c, "deny path:/admin", "allow *")
	var logBuf syncBuffer
	al, err := apps.NewAccessLog(appopt.Options{AccessLog: "-"}, &logBuf)
	if err != nil {
		t.Fatal(err)
	}
	c.Middleware = al.Wrap
	s := startServer(t, c)
	addr := s.BindAddr().String()

	tr := h2cTransport(func() (net.Conn, error) { return net.Dial("tcp", addr) })
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	get := func(url string) (int, string, string) {
		t.Helper()
		resp, err := client.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Proto, string(b)
	}
	if code, proto, body := get("https://" + addr + "/x"); code != 200 || proto != "HTTP/2.0" || body != "from upstream" {
		t.Fatalf("h2c GET /x: %d %s %q", code, proto, body)
	}
	if got := <-upstream; got.xfp != "http" || got.proto != "HTTP/1.1" {
		t.Fatalf("upstream saw %+v, want X-Forwarded-Proto http", got)
	}
	for _, p := range []string{"/admin", "//ADMIN/", "/%61dmin"} {
		if code, proto, _ := get("http://" + addr + p); code != 403 || proto != "HTTP/2.0" {
			t.Errorf("h2c GET %s: %d %s, want 403 by the policy", p, code, proto)
		}
	}
	curl := testenv.RequireTool(t, "curl", "curl")
	out, err := exec.Command(curl, "-s", "-o", "/dev/null", "-w", "%{http_code} %{http_version}", "--max-time", "5",
		"--http2-prior-knowledge", "http://"+addr+"/curl").CombinedOutput()
	if err != nil || string(out) != "200 2" {
		t.Fatalf("curl --http2-prior-knowledge: %q %v", out, err)
	}
	<-upstream
	// HTTP/1.1 on the same port, as without h2c.
	resp, err := http.Get("http://" + addr + "/h1")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.ProtoMajor != 1 {
		t.Fatalf("HTTP/1.1: %d %s", resp.StatusCode, resp.Proto)
	}
	if got := <-upstream; got.xfp != "http" {
		t.Fatalf("upstream saw %+v for HTTP/1.1", got)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(logBuf.String(), `"GET /curl HTTP/2.0" 200 `) || !strings.Contains(logBuf.String(), `"GET /h1 HTTP/1.1" 200 `) {
		if time.Now().After(deadline) {
			t.Fatalf("access log:\n%s", logBuf.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, want := range []string{`"GET /x HTTP/2.0" 200 `, `"GET /admin HTTP/2.0" 403 `} {
		if !strings.Contains(logBuf.String(), want) {
			t.Errorf("access log has no %s:\n%s", want, logBuf.String())
		}
	}
	if st := s.Stats(); st.H2Connections < 1 {
		t.Errorf("h2 connections %d while the client's is open", st.H2Connections)
	}
}

// TestH2CNeedsPlainListener: h2c with a TLS module is a start-up error
// naming the option.
func TestH2CNeedsPlainListener(t *testing.T) {
	c := plainConfig(t, http.NotFoundHandler())
	c.Core.H2C = true
	c.TLS.SSLModule = "internal"
	_, err := New(c)
	if err == nil || !strings.Contains(err.Error(), "h2c") || !strings.Contains(err.Error(), "ssl_module none") {
		t.Fatalf("h2c with ssl_module internal: %v", err)
	}
	c.TLS.SSLModule = "none"
	if _, err := New(c); err != nil {
		t.Fatalf("h2c with ssl_module none: %v", err)
	}
}

// TestH2CPeerPolicy: over h2c on a UNIX socket, peer credentials come from
// the connection as for HTTP/1.1, so peer.uid rules judge every stream:
// root reaches /admin, uid 65534 gets 403 there and 200 elsewhere, both
// over h2 (curl --http2-prior-knowledge --unix-socket, and x/net's client).
func TestH2CPeerPolicy(t *testing.T) {
	peercredtest.RequireRoot(t)
	curl := testenv.RequireTool(t, "curl", "curl")
	setpriv := testenv.RequireTool(t, "setpriv", "util-linux")
	sock := filepath.Join(peercredtest.Dir(t), "h2c.sock")
	c := plainConfig(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, r.Proto) }))
	c.SocketFile, c.SocketFileMode, c.Peer.Peercreds = sock, 0o666, true
	c.Core.H2C = true
	setRules(t, &c, "allow peer.uid:0 path:/admin", "deny path:/admin", "allow peer.user:nobody", "allow peer.uid:0")
	startServer(t, c)
	run := func(asNobody bool, path string) string {
		args := []string{"-s", "-o", "/dev/null", "-w", "%{http_code} %{http_version}", "--max-time", "5",
			"--http2-prior-knowledge", "--unix-socket", sock, "--path-as-is", "http://x" + path}
		cmd := exec.Command(curl, args...)
		if asNobody {
			cmd = exec.Command(setpriv, append([]string{"--reuid=65534", "--regid=65534", "--clear-groups", curl}, args...)...)
		}
		out, _ := cmd.Output()
		return string(out)
	}
	for _, r := range []struct {
		nobody     bool
		path, want string
	}{
		{false, "/admin", "200 2"},
		{false, "/x", "200 2"},
		{true, "/admin", "403 2"},
		{true, "//ADMIN/", "403 2"},
		{true, "/x", "200 2"},
	} {
		if got := run(r.nobody, r.path); got != r.want {
			t.Errorf("nobody=%v %s: %q, want %q", r.nobody, r.path, got, r.want)
		}
	}
	tr := h2cTransport(func() (net.Conn, error) { return net.Dial("unix", sock) })
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Get("http://x/admin")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(b) != "HTTP/2.0" {
		t.Fatalf("root over x/net h2c: %d %q", resp.StatusCode, b)
	}
}

// TestH2CUpgradeNotForwarded: the HTTP/1.1 Upgrade to h2c is not offered
// by the edge, nor passed on by its proxy. An upstream that would switch
// (as "h2c smuggling" relies on) would otherwise give the client a tunnel
// of h2 requests the edge never sees, past its policy: the upstream gets
// the request without Upgrade, and the client an ordinary HTTP/1.1 answer.
func TestH2CUpgradeNotForwarded(t *testing.T) {
	upgrades := make(chan string, 4)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	up := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		upgrades <- r.Header.Get("Upgrade")
		if strings.EqualFold(r.Header.Get("Upgrade"), "h2c") {
			nc, brw, err := http.NewResponseController(w).Hijack()
			if err != nil {
				return
			}
			defer nc.Close()
			io.WriteString(brw, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n")
			brw.Flush()
			io.Copy(io.Discard, brw)
			return
		}
		io.WriteString(w, "plain")
	})}
	go up.Serve(ln)
	t.Cleanup(func() { up.Close() })
	for _, h2c := range []bool{false, true} {
		c := plainConfig(t, nil)
		c.Handlers = nil
		c.SocketHost = "127.0.0.1"
		c.Core.H2C = h2c
		c.Mount = router.MustMounts("/=http://" + ln.Addr().String())
		c.Targets = func(target string) (http.Handler, error) { return apps.New(target, apps.Env{Options: c.Apps}) }
		s := startServer(t, c)
		nc, err := net.Dial("tcp", s.BindAddr().String())
		if err != nil {
			t.Fatal(err)
		}
		nc.SetDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(nc, "GET /x HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n")
		b := make([]byte, 4096)
		n, _ := nc.Read(b)
		nc.Close()
		if got := string(b[:n]); !strings.HasPrefix(got, "HTTP/1.1 200 ") || !strings.HasSuffix(got, "plain") {
			t.Errorf("h2c=%v: the client got %q", h2c, got)
		}
		if got := <-upgrades; got != "" {
			t.Errorf("h2c=%v: the upstream was asked to upgrade to %q", h2c, got)
		}
	}
}
