package apps

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"tlsedge/router"

	"golang.org/x/net/http2"
)

// WebSocket over h2 (RFC 8441) through the proxy (wsh2.go): an h2 client's
// extended CONNECT -> the core's h2 engine -> the proxy -> a WebSocket
// upstream speaking HTTP/1.1 (net/http's server, the handshake checked and
// frames echoed by the test's own RFC 6455 codec), all on loopback.

// wsFrame is one RFC 6455 frame: FIN always set, masked when a client
// sends it.
type wsFrame struct {
	op      byte
	payload []byte
}

func wsWrite(w io.Writer, f wsFrame, mask bool) error {
	b := []byte{0x80 | f.op}
	m := byte(0)
	if mask {
		m = 0x80
	}
	switch n := len(f.payload); {
	case n < 126:
		b = append(b, m|byte(n))
	case n < 1<<16:
		b = append(b, m|126)
		b = binary.BigEndian.AppendUint16(b, uint16(n))
	default:
		b = append(b, m|127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	p := f.payload
	if mask {
		key := [4]byte{0x12, 0x34, 0x56, 0x78}
		b = append(b, key[:]...)
		p = bytes.Clone(p)
		for i := range p {
			p[i] ^= key[i%4]
		}
	}
	_, err := w.Write(append(b, p...))
	return err
}

func wsRead(r io.Reader) (wsFrame, error) {
	var h [2]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return wsFrame{}, err
	}
	n := uint64(h[1] & 0x7f)
	switch n {
	case 126:
		var e [2]byte
		if _, err := io.ReadFull(r, e[:]); err != nil {
			return wsFrame{}, err
		}
		n = uint64(binary.BigEndian.Uint16(e[:]))
	case 127:
		var e [8]byte
		if _, err := io.ReadFull(r, e[:]); err != nil {
			return wsFrame{}, err
		}
		n = binary.BigEndian.Uint64(e[:])
	}
	if n > 1<<20 {
		return wsFrame{}, fmt.Errorf("frame of %d bytes", n)
	}
	var key [4]byte
	masked := h[1]&0x80 != 0
	if masked {
		if _, err := io.ReadFull(r, key[:]); err != nil {
			return wsFrame{}, err
		}
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(r, p); err != nil {
		return wsFrame{}, err
	}
	if masked {
		for i := range p {
			p[i] ^= key[i%4]
		}
	}
	return wsFrame{op: h[0] & 0x0f, payload: p}, nil
}

// wsUpstream is a WebSocket server over HTTP/1.1. It checks the
// handshake (a GET with Upgrade, Connection, version 13 and a key of 16
// bytes), answers 101 with the Accept of the key (accept can spoil it),
// picks the first subprotocol offered, echoes the extensions offered, and
// sends a "welcome" text frame in the same write as its 101. Then it
// echoes every data frame, and answers a close with a close and the end
// of its connection. Each handshake's request goes to heads, and ended
// gets the error that ended each connection.
type wsUpstream struct {
	url   string
	heads chan *http.Request
	ended chan error
}

func newWSUpstream(t *testing.T, accept func(string) string) *wsUpstream {
	u := &wsUpstream{heads: make(chan *http.Request, 16), ended: make(chan error, 16)}
	u.url = serveTCP(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.heads <- r
		key, _ := base64.StdEncoding.DecodeString(r.Header.Get("Sec-WebSocket-Key"))
		if r.Method != "GET" || !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") ||
			!strings.Contains(strings.ToLower(r.Header.Get("Connection")), "upgrade") ||
			r.Header.Get("Sec-WebSocket-Version") != "13" || len(key) != 16 {
			http.Error(w, "not a WebSocket handshake", http.StatusBadRequest)
			return
		}
		nc, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer nc.Close()
		fmt.Fprintf(brw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n", accept(r.Header.Get("Sec-WebSocket-Key")))
		if p := r.Header.Get("Sec-WebSocket-Protocol"); p != "" {
			fmt.Fprintf(brw, "Sec-WebSocket-Protocol: %s\r\n", strings.TrimSpace(strings.Split(p, ",")[0]))
		}
		if e := r.Header.Get("Sec-WebSocket-Extensions"); e != "" {
			fmt.Fprintf(brw, "Sec-WebSocket-Extensions: %s\r\n", e)
		}
		brw.WriteString("X-Upstream: ws\r\n\r\n")
		wsWrite(brw, wsFrame{op: 1, payload: []byte("welcome")}, false)
		brw.Flush()
		nc.SetDeadline(time.Now().Add(20 * time.Second))
		for {
			f, err := wsRead(brw)
			if err != nil {
				u.ended <- err
				return
			}
			if err := wsWrite(nc, f, false); err != nil {
				u.ended <- err
				return
			}
			if f.op == 8 {
				u.ended <- nil // closed by the close handshake
				return
			}
		}
	}))
	return u
}

// h2Client is an h2-only Transport trusting the front's CA, as
// serveCoreH2's client does.
func h2Client(t *testing.T, client *http.Client) *http2.Transport {
	cfg := client.Transport.(*http.Transport).TLSClientConfig.Clone()
	cfg.NextProtos = []string{"h2"}
	tr := &http2.Transport{TLSClientConfig: cfg}
	t.Cleanup(tr.CloseIdleConnections)
	return tr
}

// wsDial opens a WebSocket over h2: an extended CONNECT with the given
// fields; the client's frames go into the returned writer.
func wsDial(t *testing.T, tr *http2.Transport, url, protocol string, fields ...string) (*http.Response, *io.PipeWriter) {
	t.Helper()
	pr, pw := io.Pipe()
	// A bound on the whole tunnel: a test that goes wrong fails, not hangs.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, "CONNECT", url, pr)
	req.Header.Set(":protocol", protocol)
	req.Header.Set("Sec-WebSocket-Version", "13")
	for i := 0; i+1 < len(fields); i += 2 {
		req.Header.Add(fields[i], fields[i+1])
	}
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pw.Close(); resp.Body.Close() })
	return resp, pw
}

func wsWait[T any](t *testing.T, ch chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(10 * time.Second):
		t.Fatalf("no %s", what)
		panic("unreachable")
	}
}

// A WebSocket through the proxy, with and without
// proxy_request_buffering (which must not wait for a tunnel's end): the
// upstream gets a proper RFC 6455 handshake with a key the proxy made, the
// client a 200 with the negotiated subprotocol and extensions; messages
// go both ways (the upstream's first one in the same packet as its 101, a
// large one past the h2 windows); the client's close frame is answered by
// the upstream's, whose end of its connection ends the stream, cleanly.
func TestProxyH2WebSocket(t *testing.T) {
	for _, buffering := range []bool{false, true} {
		t.Run(fmt.Sprintf("proxy_request_buffering=%v", buffering), func(t *testing.T) {
			up := newWSUpstream(t, webSocketAccept)
			opts := Options{ProxyRequestBuffering: buffering, ProxyTempPath: t.TempDir()}
			front, client := serveCoreH2(t, mustNew(t, up.url+"/base", Env{Options: opts}))
			tr := h2Client(t, client)
			resp, pw := wsDial(t, tr, front+"/chat/room?id=7", "websocket",
				"Sec-WebSocket-Protocol", "chat, superchat", "Sec-WebSocket-Extensions", "x-test; a=1", "Origin", "https://example.test")
			if resp.StatusCode != 200 || resp.Header.Get("Sec-WebSocket-Protocol") != "chat" ||
				resp.Header.Get("Sec-WebSocket-Extensions") != "x-test; a=1" || resp.Header.Get("X-Upstream") != "ws" ||
				resp.Header.Get("Sec-WebSocket-Accept") != "" || resp.Header.Get("Upgrade") != "" {
				t.Fatalf("answer %d %v", resp.StatusCode, resp.Header)
			}
			r := wsWait(t, up.heads, "handshake at the upstream")
			if r.URL.RequestURI() != "/base/chat/room?id=7" || r.Header.Get("Origin") != "https://example.test" ||
				r.Header.Get("X-Forwarded-Proto") != "https" || r.Host != strings.TrimPrefix(front, "https://") ||
				len(r.Header.Values("Sec-WebSocket-Key")) != 1 {
				t.Errorf("upstream handshake: %s %s host %q %v", r.Method, r.URL, r.Host, r.Header)
			}
			for k := range r.Header {
				if strings.HasPrefix(k, ":") || k == "Content-Length" || k == "Transfer-Encoding" {
					t.Errorf("upstream handshake carries %s", k)
				}
			}

			if f, err := wsRead(resp.Body); err != nil || f.op != 1 || string(f.payload) != "welcome" {
				t.Fatalf("first message: %v %q", err, f.payload)
			}
			big := bytes.Repeat([]byte("0123456789abcdef"), 200<<10/16)
			for _, msg := range []wsFrame{{1, []byte("hello")}, {2, big}, {1, []byte("again")}} {
				if err := wsWrite(pw, msg, true); err != nil {
					t.Fatal(err)
				}
				f, err := wsRead(resp.Body)
				if err != nil || f.op != msg.op || !bytes.Equal(f.payload, msg.payload) {
					t.Fatalf("echo of %d bytes: %v, op %d, %d bytes", len(msg.payload), err, f.op, len(f.payload))
				}
			}
			// The close handshake: the client's close, the upstream's
			// answer and its end of the connection, the stream's end.
			if err := wsWrite(pw, wsFrame{8, []byte{0x03, 0xe8}}, true); err != nil {
				t.Fatal(err)
			}
			if f, err := wsRead(resp.Body); err != nil || f.op != 8 {
				t.Fatalf("close answer: %v op %d", err, f.op)
			}
			if err := wsWait(t, up.ended, "upstream's end"); err != nil {
				t.Errorf("upstream ended with %v, want the close handshake", err)
			}
			done := make(chan error, 1)
			go func() {
				rest, err := io.ReadAll(resp.Body)
				if err == nil && len(rest) > 0 {
					err = fmt.Errorf("%d bytes after the close", len(rest))
				}
				done <- err
			}()
			if err := wsWait(t, done, "end of the stream"); err != nil {
				t.Errorf("stream after the close: %v, want its clean end", err)
			}
			pw.Close()
		})
	}
}

// The client's end: its END_STREAM reaches the upstream as the end of its
// input (the upstream's read ends), and its RST_STREAM closes the upstream
// connection; the stream's handler is gone either way.
func TestProxyH2WebSocketClientEnds(t *testing.T) {
	up := newWSUpstream(t, webSocketAccept)
	m := NewMetrics(Sources{})
	front, client := serveCoreH2(t, m.Wrap(mustNew(t, up.url, Env{})))
	tr := h2Client(t, client)
	for _, how := range []string{"END_STREAM", "RST_STREAM"} {
		t.Run(how, func(t *testing.T) {
			resp, pw := wsDial(t, tr, front+"/ws", "websocket")
			if resp.StatusCode != 200 {
				t.Fatalf("answer %d", resp.StatusCode)
			}
			wsWait(t, up.heads, "handshake")
			if f, err := wsRead(resp.Body); err != nil || string(f.payload) != "welcome" {
				t.Fatalf("first message: %v", err)
			}
			if how == "END_STREAM" {
				pw.Close()
			} else {
				resp.Body.Close()
			}
			if err := wsWait(t, up.ended, "upstream's end"); !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) && !strings.Contains(fmt.Sprint(err), "reset") {
				t.Errorf("upstream's read ended with %v, want the end of its input", err)
			}
			if how == "END_STREAM" {
				// The upstream ended its side: the stream ends cleanly.
				if _, err := io.ReadAll(resp.Body); err != nil {
					t.Errorf("stream: %v", err)
				}
			}
		})
	}
	// As an HTTP/1.1 101, a tunnel's length is no response latency.
	deadline := time.Now().Add(5 * time.Second)
	for m.Snapshot().InFlight != 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if s := m.Snapshot(); s.ByStatus["200"] != 2 || s.Latency.Count != 0 || s.InFlight != 0 {
		t.Errorf("metrics: %d in flight, by status %v, %d latencies; want 2 200s, no latency", s.InFlight, s.ByStatus, s.Latency.Count)
	}
}

// A pool whose first member refuses the connection hands the tunnel to the
// next (nothing was sent), and proxy_request_buffering, which the pool
// does itself, does not wait for the tunnel's end.
func TestProxyH2WebSocketPool(t *testing.T) {
	up := newWSUpstream(t, webSocketAccept)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := ln.Addr().String()
	ln.Close()
	opts := Options{ProxyRequestBuffering: true, ProxyTempPath: t.TempDir()}
	front, client := serveCoreH2(t, mustNew(t, "http://"+refused+";weight=100 "+up.url, Env{Options: opts}))
	tr := h2Client(t, client)
	resp, pw := wsDial(t, tr, front+"/ws", "websocket")
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("answer %d %q", resp.StatusCode, b)
	}
	wsWait(t, up.heads, "handshake")
	if f, err := wsRead(resp.Body); err != nil || string(f.payload) != "welcome" {
		t.Fatalf("first message: %v", err)
	}
	if err := wsWrite(pw, wsFrame{1, []byte("through the pool")}, true); err != nil {
		t.Fatal(err)
	}
	if f, err := wsRead(resp.Body); err != nil || string(f.payload) != "through the pool" {
		t.Fatalf("echo: %v %q", err, f.payload)
	}
}

// The upstream's answers that open no tunnel: a 101 whose
// Sec-WebSocket-Accept is not the one of the key the proxy sent, and a
// 2xx (an upstream that ignores the Upgrade) are 502; a refusal (404) is
// passed on as it is; a :protocol other than websocket is 501, and never
// reaches the upstream.
func TestProxyH2WebSocketRefusals(t *testing.T) {
	wrong := newWSUpstream(t, func(key string) string { return webSocketAccept(key + "x") })
	none := newWSUpstream(t, func(string) string { return "" })
	notFound := serveTCP(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Why", "no room")
		http.Error(w, "no such room", http.StatusNotFound)
	}))
	plain := serveTCP(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "a page, not a WebSocket")
	}))
	good := newWSUpstream(t, webSocketAccept)
	mounts := router.NewDispatcher()
	for prefix, target := range map[string]string{"/wrong": wrong.url, "/none": none.url, "/404": notFound, "/plain": plain, "/good": good.url} {
		if err := mounts.Mount(prefix, mustNew(t, target, Env{})); err != nil {
			t.Fatal(err)
		}
	}
	front, client := serveCoreH2(t, mounts)
	tr := h2Client(t, client)
	for _, tc := range []struct {
		path, protocol string
		status         int
		body           string
	}{
		{"/wrong/ws", "websocket", 502, "Bad Gateway"},
		{"/none/ws", "websocket", 502, "Bad Gateway"},
		{"/404/ws", "websocket", 404, "no such room\n"},
		{"/plain/ws", "websocket", 502, "Bad Gateway"},
		{"/good/ws", "connect-udp", 501, "Not Implemented"},
	} {
		resp, _ := wsDial(t, tr, front+tc.path, tc.protocol)
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != tc.status || !strings.HasPrefix(string(b), tc.body) {
			t.Errorf("%s (%s): %d %q, want %d %q", tc.path, tc.protocol, resp.StatusCode, b, tc.status, tc.body)
		}
		if tc.status == 404 && resp.Header.Get("X-Why") != "no room" {
			t.Errorf("404 passed on without its fields: %v", resp.Header)
		}
	}
	select {
	case r := <-good.heads:
		t.Errorf("a :protocol other than websocket reached the upstream: %v", r.Header)
	default:
	}
}

// An open tunnel may be quiet for longer than proxy_response_timeout; once
// the client has ended its side (END_STREAM), the upstream has
// proxy_response_timeout to end its own, and one that does not has the
// stream reset and its connection closed.
func TestProxyH2WebSocketHalfCloseBound(t *testing.T) {
	const timeout = 300 * time.Millisecond
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	upURL := serveTCP(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		nc, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer nc.Close()
		fmt.Fprintf(brw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n", webSocketAccept(r.Header.Get("Sec-WebSocket-Key")))
		brw.Flush()
		for {
			f, err := wsRead(brw)
			if err != nil {
				<-release // the client's end is ignored: the connection stays
				return
			}
			wsWrite(nc, f, false)
		}
	}))
	opts := Options{ProxyResponseTimeout: timeout}
	front, client := serveCoreH2(t, mustNew(t, upURL, Env{Options: opts}))
	tr := h2Client(t, client)
	resp, pw := wsDial(t, tr, front+"/ws", "websocket")
	if resp.StatusCode != 200 {
		t.Fatalf("answer %d", resp.StatusCode)
	}
	for i, msg := range []string{"before", "after a quiet spell"} {
		if i > 0 {
			time.Sleep(3 * timeout)
		}
		if err := wsWrite(pw, wsFrame{1, []byte(msg)}, true); err != nil {
			t.Fatal(err)
		}
		if f, err := wsRead(resp.Body); err != nil || string(f.payload) != msg {
			t.Fatalf("echo %q: %v %q", msg, err, f.payload)
		}
	}
	pw.Close()
	done := make(chan error, 1)
	go func() {
		_, err := io.ReadAll(resp.Body)
		done <- err
	}()
	select {
	case err := <-done:
		var se http2.StreamError
		if !errors.As(err, &se) {
			t.Errorf("stream ended with %v, want a reset", err)
		}
	case <-time.After(10 * timeout):
		t.Fatal("the stream is still open long after proxy_response_timeout")
	}
}
