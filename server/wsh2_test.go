package server

import (
	"bytes"
	"context"
	"crypto/sha1"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"tlsedge/apps"
	"tlsedge/apps/appopt"
	"tlsedge/internal/testenv"
	"tlsedge/router"
)

// A WebSocket over h2 (an extended CONNECT) through the whole server: it
// is a request like any to the guard in front of the mounts. server.policy
// judges its canonical path (a denied prefix in any spelling is 403 before
// the proxy is reached) and sees its method as CONNECT, as RFC 8441 has it;
// an allowed one reaches the upstream through the proxy mount, and the
// access log has it as "CONNECT /path HTTP/2.0" 200.
func TestH2WebSocketThroughGuard(t *testing.T) {
	upstreamHits := make(chan string, 8)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	up := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		upstreamHits <- r.Method + " " + r.URL.Path
		nc, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer nc.Close()
		sum := sha1.Sum([]byte(r.Header.Get("Sec-WebSocket-Key") + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
		fmt.Fprintf(brw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n\x81\x02hi",
			base64.StdEncoding.EncodeToString(sum[:]))
		brw.Flush()
		io.Copy(io.Discard, brw) // until the client's end
	})}
	go up.Serve(ln)
	t.Cleanup(func() { up.Close() })

	ca := testenv.NewCA(t, "wsh2")
	leaf := ca.Leaf(t, "127.0.0.1")
	c := plainConfig(t, nil)
	c.Handlers = nil
	c.SocketHost = "127.0.0.1"
	c.TLS.SSLModule = "builtin"
	c.TLS.SSLCertificate, c.TLS.SSLPrivateKey = []string{leaf.CertFile}, []string{leaf.KeyFile}
	c.Mount = router.MustMounts("/=http://" + ln.Addr().String())
	c.Targets = func(target string) (http.Handler, error) { return apps.New(target, apps.Env{Options: c.Apps}) }
	setRules(t, &c, "deny path:/admin", "deny method:CONNECT path:/h1only", "allow *")
	var logBuf syncBuffer
	al, err := apps.NewAccessLog(appopt.Options{AccessLog: "-"}, &logBuf)
	if err != nil {
		t.Fatal(err)
	}
	c.Middleware = al.Wrap
	s := startServer(t, c)

	pool := x509.NewCertPool()
	pem, err := os.ReadFile(ca.File())
	if err != nil {
		t.Fatal(err)
	}
	pool.AppendCertsFromPEM(pem)
	tr := &http2.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
	defer tr.CloseIdleConnections()
	base := "https://" + s.BindAddr().String()
	open := func(path string) (int, string) {
		pr, pw := io.Pipe()
		defer pw.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, "CONNECT", base+path, pr)
		req.Header.Set(":protocol", "websocket")
		req.Header.Set("Sec-WebSocket-Version", "13")
		resp, err := tr.RoundTrip(req)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != 200 {
			b, _ := io.ReadAll(resp.Body)
			return resp.StatusCode, string(b)
		}
		msg := make([]byte, 4)
		if _, err := io.ReadFull(resp.Body, msg); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		return 200, string(msg)
	}
	for _, tc := range []struct {
		path string
		want int
	}{
		{"/chat", 200},
		{"/admin/ws", 403},
		{"//admin/ws", 403},
		{"/x/../admin/ws", 403},
		{"/%61dmin/ws", 403},
		{"/h1only/ws", 403},
	} {
		code, body := open(tc.path)
		if code != tc.want {
			t.Errorf("%s: %d %q, want %d", tc.path, code, body, tc.want)
		}
		if code == 200 && body != "\x81\x02hi" {
			t.Errorf("%s: first frame %q", tc.path, body)
		}
	}
	if got := <-upstreamHits; got != "GET /chat" {
		t.Errorf("upstream got %q, want GET /chat", got)
	}
	select {
	case got := <-upstreamHits:
		t.Errorf("a denied tunnel reached the upstream: %q", got)
	default:
	}
	deadline := time.Now().Add(5 * time.Second)
	for !bytes.Contains([]byte(logBuf.String()), []byte(`"CONNECT /chat HTTP/2.0" 200 `)) {
		if time.Now().After(deadline) {
			t.Fatalf("access log has no line for the tunnel:\n%s", logBuf.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !strings.Contains(logBuf.String(), `"CONNECT /admin/ws HTTP/2.0" 403 `) {
		t.Errorf("access log has no 403 for the denied tunnel:\n%s", logBuf.String())
	}
}

// Extended CONNECT is offered only where every mount can answer it: a
// browser offered it opens all its WebSockets to the origin that way and
// never falls back to the HTTP/1.1 Upgrade. So a server with Go Handlers
// (which may be gorilla-style Upgrade handlers) leaves it out unless it
// says they serve it; a server of mount targets offers it.
func TestExtendedConnectOfferedOnlyWhereServed(t *testing.T) {
	ca := testenv.NewCA(t, "xconnect")
	leaf := ca.Leaf(t, "127.0.0.1")
	pool := x509.NewCertPool()
	pem, err := os.ReadFile(ca.File())
	if err != nil {
		t.Fatal(err)
	}
	pool.AppendCertsFromPEM(pem)
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	for _, tc := range []struct {
		name  string
		set   func(c *Config)
		offer bool
	}{
		{"Go handlers", func(c *Config) {}, false},
		{"Go handlers that serve it", func(c *Config) { c.HandlersServeExtendedConnect = true }, true},
		{"mount targets only", func(c *Config) {
			c.Handlers = nil
			c.Mount = router.MustMounts("/=text:ok")
		}, true},
	} {
		c := plainConfig(t, ok)
		c.SocketHost = "127.0.0.1"
		c.TLS.SSLModule = "builtin"
		c.TLS.SSLCertificate, c.TLS.SSLPrivateKey = []string{leaf.CertFile}, []string{leaf.KeyFile}
		tc.set(&c)
		s := startServer(t, c)
		tconn, err := tls.Dial("tcp", s.BindAddr().String(), &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", NextProtos: []string{"h2"}})
		if err != nil {
			t.Fatal(err)
		}
		tconn.SetDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(tconn, http2.ClientPreface)
		fr := http2.NewFramer(tconn, tconn)
		fr.WriteSettings()
		for {
			f, err := fr.ReadFrame()
			if err != nil {
				t.Fatalf("%s: no SETTINGS: %v", tc.name, err)
			}
			if sf, ok := f.(*http2.SettingsFrame); ok && !sf.IsAck() {
				v, sent := sf.Value(http2.SettingEnableConnectProtocol)
				if offered := sent && v == 1; offered != tc.offer {
					t.Errorf("%s: SETTINGS_ENABLE_CONNECT_PROTOCOL offered %v, want %v", tc.name, offered, tc.offer)
				}
				break
			}
		}
		tconn.Close()
	}
}
