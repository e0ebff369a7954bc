package apps

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha1"
	"crypto/tls"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"tlsedge/config"
	"tlsedge/internal/testenv"
	"tlsedge/peercred"
	"tlsedge/policy"
)

// echoHeaders answers with the request's Host, path and headers as JSON.
func echoHeaders() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		out := map[string]any{"host": r.Host, "uri": r.RequestURI, "header": r.Header}
		json.NewEncoder(w).Encode(out)
	})
}

type echoed struct {
	Host   string      `json:"host"`
	URI    string      `json:"uri"`
	Header http.Header `json:"header"`
}

func getEchoed(t *testing.T, c *http.Client, req *http.Request) echoed {
	t.Helper()
	if c == nil {
		c = http.DefaultClient
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("status %d: %s", resp.StatusCode, b)
	}
	var e echoed
	if err := json.NewDecoder(resp.Body).Decode(&e); err != nil {
		t.Fatal(err)
	}
	return e
}

func TestProxyForwardingHeaders(t *testing.T) {
	up := serveTCP(t, echoHeaders())
	forged := http.Header{
		"X-Forwarded-For":     {"6.6.6.6"},
		"X-Forwarded-Proto":   {"https"},
		"X-Forwarded-Host":    {"evil.example"},
		"X-Forwarded-Prefix":  {"/evil"},
		"Forwarded":           {"for=6.6.6.6;proto=https"},
		"X-Remote-User":       {"root"},
		"X-Remote-Uid":        {"0"},
		"X_Remote_Gid":        {"0"},
		"Remote-User":         {"admin"},
		"X-Ssl-Client-Verify": {"SUCCESS"},
		"X-SSL-Client-S-DN":   {"CN=admin"},
		"X_SSL_PROTOCOL":      {"TLSv1.3"},
		"Connection":          {"X-Hop"},
		"X-Hop":               {"must go"},
		"Keep-Alive":          {"timeout=5"},
	}
	tests := []struct {
		name    string
		trusted []string
		want    map[string]string // header -> exact value; "" means absent
	}{
		{"untrusted", nil, map[string]string{
			"X-Forwarded-For":     "127.0.0.1",
			"X-Forwarded-Proto":   "http",
			"X-Forwarded-Host":    "front.example",
			"X-Forwarded-Prefix":  "",
			"Forwarded":           `for=127.0.0.1;host=front.example;proto=http`,
			"X-Remote-User":       "",
			"X-Remote-Uid":        "",
			"X_remote_gid":        "",
			"Remote-User":         "",
			"X-Ssl-Client-Verify": "",
			"X-Ssl-Client-S-Dn":   "",
			"X_ssl_protocol":      "",
			"X-Hop":               "",
			"Keep-Alive":          "",
			"X-Tls":               "hook",
		}},
		{"trusted", []string{"10.0.0.0/8", "127.0.0.1"}, map[string]string{
			"X-Forwarded-For":    "6.6.6.6, 127.0.0.1",
			"X-Forwarded-Proto":  "https",
			"X-Forwarded-Host":   "evil.example",
			"X-Forwarded-Prefix": "/evil",
			"Forwarded":          `for=6.6.6.6;proto=https, for=127.0.0.1;host=front.example;proto=http`,
			// Identity headers are never trusted from a client.
			"X-Remote-User": "",
			"Remote-User":   "",
			"X-Tls":         "hook",
		}},
		{"other proxies trusted", []string{"10.0.0.0/8", "unix"}, map[string]string{
			"X-Forwarded-For": "127.0.0.1",
			"Forwarded":       `for=127.0.0.1;host=front.example;proto=http`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tp, _ := policy.NewTrustedProxies(tt.trusted...)
			env := Env{Options: Options{TrustedProxies: tp},
				TLSHeaders: func(r *http.Request, h http.Header) { h.Set("X-TLS", "hook") }}
			// Mounted as the server mounts every handler: behind the
			// guard that owns the edge's headers, with the same trust.
			trust, err := policy.ParseTrust(tt.trusted)
			if err != nil {
				t.Fatal(err)
			}
			front := serveTCP(t, policy.EdgeHeaders(mustNew(t, up, env), trust))
			req, _ := http.NewRequest("GET", front+"/a/b?q=1", nil)
			req.Host = "front.example"
			for k, v := range forged {
				req.Header[k] = v
			}
			e := getEchoed(t, nil, req)
			if e.Host != "front.example" || e.URI != "/a/b?q=1" {
				t.Errorf("host %q uri %q", e.Host, e.URI)
			}
			for k, want := range tt.want {
				got := strings.Join(e.Header[k], ",")
				if got != want {
					t.Errorf("%s = %q, want %q", k, got, want)
				}
			}
		})
	}
}

func TestProxyUnixUpstreamAndPeerCreds(t *testing.T) {
	sock := serveUnix(t, echoHeaders(), nil)
	// The front is itself on a UNIX socket whose peer reports credentials.
	creds := &peercred.Creds{PID: 4242, UID: 1000, GID: 100, User: "alice", Group: "users"}
	front := serveUnix(t, policy.EdgeHeaders(mustNew(t, "unix:"+sock+":/base", Env{}), nil), creds)
	req, _ := http.NewRequest("GET", "http://app.local/x%2Fy?z", nil)
	req.Header.Set("X-Remote-Uid", "0")
	req.Header.Set("X_Remote_User", "root")
	req.Header.Set("X-Forwarded-For", "6.6.6.6")
	e := getEchoed(t, unixClient(front), req)
	if e.URI != "/base/x%2Fy?z" {
		t.Errorf("uri = %q, want /base/x%%2Fy?z", e.URI)
	}
	if e.Host != "app.local" {
		t.Errorf("host = %q", e.Host)
	}
	for k, want := range map[string]string{
		"X-Remote-Uid":    "1000",
		"X-Remote-Gid":    "100",
		"X-Remote-Pid":    "4242",
		"X-Remote-User":   "alice",
		"Remote-User":     "alice",
		"X-Remote-Group":  "users",
		"X_remote_user":   "",
		"X-Forwarded-For": "",
		"Forwarded":       "for=unknown;host=app.local;proto=http",
	} {
		if got := strings.Join(e.Header[k], ","); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
}

func TestProxyHTTPSUpstream(t *testing.T) {
	ca := testenv.NewCA(t, "upstream")
	leaf := ca.Leaf(t, "127.0.0.1")
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{leaf.TLS}})
	if err != nil {
		t.Fatal(err)
	}
	up := strings.Replace(serveOn(t, ln, echoHeaders(), nil), "http://", "https://", 1)
	tests := []struct {
		name string
		conf *tls.Config
		want int
	}{
		{"trusted CA", &tls.Config{RootCAs: ca.Pool}, 200},
		{"system roots", nil, 502},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			front := serveTCP(t, mustNew(t, up+"/base", Env{UpstreamTLS: tt.conf}))
			resp, err := http.Get(front + "/x")
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.want {
				t.Fatalf("status %d: %s", resp.StatusCode, b)
			}
			if tt.want == 200 && !strings.Contains(string(b), `"uri":"/base/x"`) {
				t.Errorf("upstream saw %s", b)
			}
		})
	}
}

func TestProxyKeepAlivePooling(t *testing.T) {
	var conns atomic.Int32
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{
		Handler: echoHeaders(),
		ConnState: func(c net.Conn, s http.ConnState) {
			if s == http.StateNew {
				conns.Add(1)
			}
		},
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	front := serveTCP(t, mustNew(t, "http://"+ln.Addr().String(), Env{}))
	for range 20 {
		req, _ := http.NewRequest("GET", front+"/", nil)
		getEchoed(t, nil, req)
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("upstream saw %d connections for 20 sequential requests, want 1", n)
	}
	h := mustNew(t, "http://"+ln.Addr().String(), Env{})
	if c, ok := h.(io.Closer); !ok || c.Close() != nil {
		t.Errorf("proxy handler is not an io.Closer")
	}
}

// heapWatch samples HeapInuse until stopped and returns the peak.
func heapWatch() (stop func() uint64) {
	done := make(chan struct{})
	peak := make(chan uint64)
	go func() {
		var max uint64
		var ms runtime.MemStats
		tk := time.NewTicker(20 * time.Millisecond)
		defer tk.Stop()
		for {
			runtime.ReadMemStats(&ms)
			max = maxU(max, ms.HeapInuse)
			select {
			case <-done:
				peak <- max
				return
			case <-tk.C:
			}
		}
	}()
	return func() uint64 { close(done); return <-peak }
}

func maxU(a, b uint64) uint64 {
	if a > b {
		return a
	}
	return b
}

// zeros is an endless reader of a repeating pattern, so a test can send a
// large body without holding it.
type pattern struct{}

func (pattern) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(i)
	}
	return len(p), nil
}

// TestProxyStreams100MiBEachWay sends 100 MiB up and down through the proxy
// (16 MiB unless TLSEDGE_LONG=1) and checks that the heap stays small: a
// proxy that buffered a body would hold it whole.
func TestProxyStreams100MiBEachWay(t *testing.T) {
	size := 16 << 20
	if os.Getenv("TLSEDGE_LONG") == "1" {
		size = 100 << 20
	}
	const heapLimit = 32 << 20
	up := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == "POST" {
			n, err := io.Copy(io.Discard, r.Body)
			if err != nil {
				http.Error(w, err.Error(), 500)
				return
			}
			fmt.Fprint(w, n)
			return
		}
		w.Header().Set("Content-Length", strconv.Itoa(size))
		io.CopyN(w, pattern{}, int64(size))
	})
	for _, tr := range []string{"tcp", "unix"} {
		t.Run(tr, func(t *testing.T) {
			target := serveTCP(t, up)
			if tr == "unix" {
				target = "unix:" + serveUnix(t, up, nil)
			}
			front := serveTCP(t, mustNew(t, target, Env{}))
			runtime.GC()
			stop := heapWatch()

			// Upload, chunked: the proxy cannot know the size.
			resp, err := http.Post(front+"/up", "application/octet-stream", io.LimitReader(pattern{}, int64(size)))
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if string(body) != strconv.Itoa(size) {
				t.Errorf("upstream got %s bytes, want %d", body, size)
			}

			resp, err = http.Get(front + "/down")
			if err != nil {
				t.Fatal(err)
			}
			n, err := io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if err != nil || n != int64(size) {
				t.Errorf("downloaded %d bytes (%v), want %d", n, err, size)
			}
			if peak := stop(); peak > heapLimit {
				t.Errorf("peak HeapInuse %d MiB, want under %d MiB", peak>>20, heapLimit>>20)
			} else {
				t.Logf("peak HeapInuse %.1f MiB", float64(peak)/(1<<20))
			}
		})
	}
}

// wsAccept is RFC 6455's Sec-WebSocket-Accept for key.
func wsAccept(key string) string {
	h := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	return base64.StdEncoding.EncodeToString(h[:])
}

// wsEchoServer completes a WebSocket handshake by hijacking and echoes each
// (small, masked) client frame back unmasked, until the client closes.
func wsEchoServer() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
			http.Error(w, "want websocket", 400)
			return
		}
		c, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer c.Close()
		fmt.Fprintf(brw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n", wsAccept(r.Header.Get("Sec-WebSocket-Key")))
		brw.Flush()
		for {
			var hdr [2]byte
			if _, err := io.ReadFull(brw, hdr[:]); err != nil {
				return
			}
			n := int(hdr[1] & 0x7f) // test frames stay under 126 bytes
			var mask [4]byte
			io.ReadFull(brw, mask[:])
			p := make([]byte, n)
			if _, err := io.ReadFull(brw, p); err != nil {
				return
			}
			for i := range p {
				p[i] ^= mask[i%4]
			}
			brw.Write(append([]byte{hdr[0], byte(n)}, p...))
			brw.Flush()
		}
	})
}

func TestProxyWebSocketEcho(t *testing.T) {
	for _, wrapped := range []bool{false, true} {
		t.Run(fmt.Sprintf("middleware=%v", wrapped), func(t *testing.T) {
			var h http.Handler = mustNew(t, serveTCP(t, wsEchoServer()), Env{})
			buf := &logBuf{}
			m := NewMetrics(Sources{})
			if wrapped {
				// As the server wires them: access log outside, metrics inside.
				al, err := NewAccessLog(Options{AccessLog: "-"}, buf)
				if err != nil {
					t.Fatal(err)
				}
				h = al.Wrap(m.Wrap(h))
			}
			wsEcho(t, serveTCP(t, h), "/chat")
			if wrapped {
				if l := waitLine(t, buf); !strings.Contains(l, `"GET /chat HTTP/1.1" 101 `) {
					t.Errorf("access log: %q", l)
				}
				if s := m.Snapshot(); s.ByStatus["101"] != 1 || s.Latency.Count != 0 {
					t.Errorf("metrics: %+v", s)
				}
			}
		})
	}
}

// wsEcho runs a WebSocket handshake on front's path and three echoes, then
// closes the connection.
func wsEcho(t *testing.T, front, path string) {
	c, err := net.DialTimeout("tcp", strings.TrimPrefix(front, "http://"), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	const key = "dGhlIHNhbXBsZSBub25jZQ=="
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n", path, key)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 101 || resp.Header.Get("Sec-WebSocket-Accept") != wsAccept(key) {
		t.Fatalf("handshake: %d %v", resp.StatusCode, resp.Header)
	}
	for _, msg := range []string{"hello", "through the edge", strings.Repeat("x", 100)} {
		mask := [4]byte{1, 2, 3, 4}
		frame := []byte{0x81, 0x80 | byte(len(msg))}
		frame = append(frame, mask[:]...)
		for i := range len(msg) {
			frame = append(frame, msg[i]^mask[i%4])
		}
		if _, err := c.Write(frame); err != nil {
			t.Fatal(err)
		}
		var hdr [2]byte
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, hdr[1]&0x7f)
		if _, err := io.ReadFull(br, got); err != nil {
			t.Fatal(err)
		}
		if hdr[0] != 0x81 || string(got) != msg {
			t.Errorf("echo = %#x %q, want text %q", hdr[0], got, msg)
		}
	}
}

func TestProxyUpstreamDiesMidResponse(t *testing.T) {
	die := func(chunked bool) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !chunked {
				w.Header().Set("Content-Length", strconv.Itoa(1<<20))
			}
			w.Write(make([]byte, 64<<10))
			http.NewResponseController(w).Flush()
			c, _, err := http.NewResponseController(w).Hijack()
			if err == nil {
				c.Close()
			}
		})
	}
	for _, chunked := range []bool{false, true} {
		t.Run(fmt.Sprintf("chunked=%v", chunked), func(t *testing.T) {
			log, lb := testLogger(t)
			up := serveTCP(t, die(chunked))
			front := serveTCP(t, mustNew(t, up, Env{Logger: log}))
			client := &http.Client{Timeout: 10 * time.Second}
			start := time.Now()
			resp, err := client.Get(front + "/")
			if err != nil {
				t.Fatal(err)
			}
			n, err := io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if err == nil {
				t.Fatalf("read %d bytes and a clean end; want a truncated body", n)
			}
			if errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 5*time.Second {
				t.Fatalf("client hung: %v after %v", err, time.Since(start))
			}
			if n >= 1<<20 {
				t.Errorf("read %d bytes", n)
			}
			if !strings.Contains(lb.String(), "upstream="+up) {
				t.Errorf("log does not name the upstream: %s", lb.String())
			}
		})
	}
}

func TestProxyErrors(t *testing.T) {
	slow := serveTCP(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(5 * time.Second):
		case <-r.Context().Done():
		}
	}))
	drain := serveTCP(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
	}))
	closed := func() string {
		ln, _ := net.Listen("tcp", "127.0.0.1:0")
		defer ln.Close()
		return "http://" + ln.Addr().String()
	}()
	tests := []struct {
		name     string
		upstream string
		wrap     func(http.Handler) http.Handler
		body     string // none if empty
		want     int
		logWant  string
	}{
		{"refused", closed, nil, "", 502, "status=502"},
		{"response timeout", slow, nil, "", 504, "status=504"},
		{"body over MaxBytesReader", drain, func(h http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				r.Body = http.MaxBytesReader(w, r.Body, 1000)
				h.ServeHTTP(w, r)
			})
		}, strings.Repeat("a", 100000), 413, "status=413"},
		{"body with a core status", drain, func(h http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				r.Body = io.NopCloser(io.MultiReader(strings.NewReader("abc"), errReader{statusErr(408)}))
				h.ServeHTTP(w, r)
			})
		}, "abc", 408, "status=408"},
		{"body broken", drain, func(h http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				r.Body = io.NopCloser(io.MultiReader(strings.NewReader("abc"), errReader{io.ErrUnexpectedEOF}))
				h.ServeHTTP(w, r)
			})
		}, "abc", 400, "status=400"},
	}
	for _, tt := range tests {
		for _, buffering := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/buffering=%v", tt.name, buffering), func(t *testing.T) {
				log, lb := testLogger(t)
				var h http.Handler = mustNew(t, tt.upstream, Env{Logger: log, Options: Options{ProxyResponseTimeout: 300 * time.Millisecond, ProxyRequestBuffering: buffering}})
				if tt.wrap != nil {
					h = tt.wrap(h)
				}
				front := serveTCP(t, h)
				method, body := "GET", io.Reader(nil)
				if tt.body != "" {
					method, body = "POST", strings.NewReader(tt.body)
				}
				req, _ := http.NewRequest(method, front+"/p", body)
				resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
				if err != nil {
					t.Fatal(err)
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != tt.want {
					t.Errorf("status %d (%q), want %d", resp.StatusCode, b, tt.want)
				}
				if len(b) == 0 || len(b) > 100 || strings.Contains(string(b), "127.0.0.1") {
					t.Errorf("body %q: want a short text that does not reveal the upstream", b)
				}
				if l := lb.String(); !strings.Contains(l, tt.logWant) || !strings.Contains(l, "upstream="+tt.upstream) {
					t.Errorf("log %q: want %q and the upstream", l, tt.logWant)
				}
			})
		}
	}
}

type statusErr int

func (s statusErr) Error() string   { return "status " + strconv.Itoa(int(s)) }
func (s statusErr) HTTPStatus() int { return int(s) }

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

// readProxyV2 reads a PROXY v2 header and returns the source address.
func readProxyV2(br *bufio.Reader) (netip.AddrPort, byte, error) {
	var hdr [16]byte
	if _, err := io.ReadFull(br, hdr[:]); err != nil {
		return netip.AddrPort{}, 0, err
	}
	if string(hdr[:12]) != string(proxyV2Sig[:]) {
		return netip.AddrPort{}, 0, errors.New("no PROXY v2 signature")
	}
	body := make([]byte, binary.BigEndian.Uint16(hdr[14:]))
	if _, err := io.ReadFull(br, body); err != nil {
		return netip.AddrPort{}, 0, err
	}
	switch hdr[13] {
	case 0x11:
		a, _ := netip.AddrFromSlice(body[:4])
		return netip.AddrPortFrom(a, binary.BigEndian.Uint16(body[8:])), hdr[12], nil
	case 0x21:
		a, _ := netip.AddrFromSlice(body[:16])
		return netip.AddrPortFrom(a, binary.BigEndian.Uint16(body[32:])), hdr[12], nil
	}
	return netip.AddrPort{}, hdr[12], nil
}

func TestProxyProtocolV2(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var upstreamConns atomic.Int32
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			upstreamConns.Add(1)
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				src, cmd, err := readProxyV2(br)
				if err != nil {
					fmt.Fprintf(c, "HTTP/1.1 400 Bad\r\nContent-Length: 0\r\n\r\n")
					return
				}
				for {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					io.Copy(io.Discard, req.Body)
					body := fmt.Sprintf("%#x %s", cmd, src)
					fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
				}
			}()
		}
	}()
	front := serveTCP(t, mustNew(t, "http://"+ln.Addr().String(), Env{Options: Options{ProxyProtocol: true}}))
	// Three client connections, three requests each: every request's header
	// names its own client, and each client's requests share one upstream
	// connection.
	for range 3 {
		var local string
		client := &http.Client{Transport: &http.Transport{
			DialContext: func(ctx context.Context, n, a string) (net.Conn, error) {
				c, err := (&net.Dialer{}).DialContext(ctx, n, a)
				if err == nil {
					local = c.LocalAddr().String()
				}
				return c, err
			},
		}}
		for range 3 {
			resp, err := client.Get(front + "/")
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if want := "0x21 " + local; string(b) != want {
				t.Errorf("upstream saw %q, want %q", b, want)
			}
		}
		client.CloseIdleConnections()
	}
	if n := upstreamConns.Load(); n != 3 {
		t.Errorf("%d upstream connections for 3 clients, want 3", n)
	}
}

func TestNewTargetErrors(t *testing.T) {
	for _, target := range []string{
		"ftp://x:1", "http://host", "http://:80", "http://u:p@h:1", "http://h:1/?q",
		"unix:rel.sock", "unix:/s.sock:base", "dir:relative", "dir:/nonexistent/really",
		"status:x", "redirect:ftp://x", "redirect:https://h/?q=1", "nothing",
	} {
		_, err := New(target, Env{})
		if err == nil {
			t.Errorf("New(%q) succeeded", target)
			continue
		}
		if !errors.Is(err, ErrBadTarget) || !strings.Contains(err.Error(), target) || !strings.Contains(err.Error(), "unix:/path.sock") && !strings.Contains(err.Error(), "dir:") {
			t.Errorf("New(%q): %v: want ErrBadTarget naming the target", target, err)
		}
	}
	_, err := New("http://h:1", Env{Options: Options{AccessLogFormat: "xml"}})
	if !errors.Is(err, ErrBadOption) || !errors.Is(err, config.ErrBadValue) || !strings.Contains(err.Error(), "access_log_format") {
		t.Errorf("bad options: %v", err)
	}
	// trusted_proxies is parsed when it is set, naming what is wrong.
	if _, err := policy.NewTrustedProxies("10.0.0.0/8", "nope"); err == nil || !strings.Contains(err.Error(), "nope") {
		t.Errorf("trusted_proxies nope: %v", err)
	}
}

func TestProxyFailureLogIsRateLimited(t *testing.T) {
	closed := func() string {
		ln, _ := net.Listen("tcp", "127.0.0.1:0")
		defer ln.Close()
		return "http://" + ln.Addr().String()
	}()
	log, lb := testLogger(t)
	h := mustNew(t, closed, Env{Logger: log})
	for range 100 {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, mustRequest(t))
		if rec.Code != 502 {
			t.Fatalf("status %d", rec.Code)
		}
	}
	if n := strings.Count(lb.String(), "upstream request failed"); n < 20 || n > 25 {
		t.Errorf("%d failure lines for 100 failures, want a burst of about 20", n)
	}
	lb.mu.Lock()
	lb.buf.Reset()
	lb.mu.Unlock()
	time.Sleep(300 * time.Millisecond)
	h.ServeHTTP(httptest.NewRecorder(), mustRequest(t))
	if l := lb.String(); !strings.Contains(l, "suppressed=") {
		t.Errorf("next line does not count the dropped ones: %q", l)
	}
}

func mustRequest(t *testing.T) *http.Request {
	t.Helper()
	r, err := http.NewRequest("GET", "http://front.example/x", nil)
	if err != nil {
		t.Fatal(err)
	}
	r.RemoteAddr = "192.0.2.7:5555"
	return r
}

// TestProxySSLHeaders checks the default TLS hook over a real TLS front:
// mod_ssl facts arrive as X-SSL-* headers, the client's own are replaced,
// and the client certificate's PEM arrives percent-encoded.
func TestProxySSLHeaders(t *testing.T) {
	ln, ca, client := clientCertListener(t, "front")
	front := strings.Replace(serveOn(t, ln, policy.EdgeHeaders(mustNew(t, serveTCP(t, echoHeaders()), Env{}), nil), nil), "http://127.0.0.1", "https://localhost", 1)
	tests := []struct {
		name  string
		certs []tls.Certificate
		want  map[string]string
	}{
		{"no client certificate", nil, map[string]string{
			"X-Ssl-Protocol":      "TLSv1.3",
			"X-Ssl-Tls-Sni":       "localhost",
			"X-Ssl-Client-Verify": "NONE",
			"X-Ssl-Client-S-Dn":   "",
			"X-Forwarded-Proto":   "https",
		}},
		{"client certificate", []tls.Certificate{client.TLS}, map[string]string{
			"X-Ssl-Client-Verify": "SUCCESS",
			"X-Ssl-Client-S-Dn":   "CN=client-7",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool, Certificates: tt.certs}}}
			req, _ := http.NewRequest("GET", front+"/", nil)
			req.Header.Set("X-SSL-Client-Verify", "SUCCESS")
			req.Header.Set("X-SSL-Client-S-DN", "CN=admin")
			e := getEchoed(t, c, req)
			for k, want := range tt.want {
				if got := strings.Join(e.Header[k], ","); got != want {
					t.Errorf("%s = %q, want %q", k, got, want)
				}
			}
			if cipher := e.Header.Get("X-Ssl-Cipher"); cipher == "" {
				t.Errorf("no X-SSL-Cipher: %v", e.Header)
			}
			if tt.certs != nil {
				pemText, err := url.PathUnescape(e.Header.Get("X-Ssl-Client-Cert"))
				if err != nil || !strings.HasPrefix(pemText, "-----BEGIN CERTIFICATE-----\n") {
					t.Errorf("X-SSL-Client-Cert %q does not unescape to PEM (%v)", e.Header.Get("X-Ssl-Client-Cert"), err)
				}
			}
		})
	}
}

// The JSON access log names the upstream a proxied request went to, and a
// proxy's 5xx answer carries the request id.
func TestProxyLogsUpstreamAndEchoesRequestID(t *testing.T) {
	up := serveTCP(t, echoHeaders())
	var logBuf syncWriter
	al, err := NewAccessLog(Options{AccessLog: "-", AccessLogFormat: "json"}, &logBuf)
	if err != nil {
		t.Fatal(err)
	}
	front := serveTCP(t, RequestIDs(al.Wrap(mustNew(t, up, Env{})), nil))
	resp, err := http.Get(front + "/x")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	upAddr := strings.TrimPrefix(up, "http://")
	deadline := time.Now().Add(2 * time.Second)
	for !strings.Contains(logBuf.String(), `"upstream":"`+upAddr+`"`) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if !strings.Contains(logBuf.String(), `"upstream":"`+upAddr+`"`) {
		t.Errorf("access log lacks the upstream %s:\n%s", upAddr, logBuf.String())
	}

	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	closed := "http://" + ln.Addr().String()
	ln.Close()
	front = serveTCP(t, RequestIDs(mustNew(t, closed, Env{}), nil))
	resp, err = http.Get(front + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 502 || !strings.Contains(string(body), "request id: ") {
		t.Errorf("502 body %q lacks the request id", body)
	}
}

// syncWriter is a bytes.Buffer safe for the access log's writer goroutine.
type syncWriter struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (w *syncWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *syncWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

// Proxied requests are counted by upstream as well as by route.
func TestMetricsByUpstream(t *testing.T) {
	up := serveTCP(t, echoHeaders())
	m := NewMetrics(Sources{Server: "edge"})
	front := serveTCP(t, m.Wrap(mustNew(t, up, Env{})))
	for range 3 {
		resp, err := http.Get(front + "/x")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	fams, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	want := strings.TrimPrefix(up, "http://")
	found := false
	for _, f := range fams {
		if f.GetName() != "tlsedge_upstream_requests_total" {
			continue
		}
		for _, mt := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range mt.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["upstream"] == want && labels["code"] == "200" && labels["server"] == "edge" && mt.GetCounter().GetValue() == 3 {
				found = true
			}
		}
	}
	if !found {
		t.Fatalf("no tlsedge_upstream_requests_total{upstream=%q,code=\"200\"} 3", want)
	}
}
