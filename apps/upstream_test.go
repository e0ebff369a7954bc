package apps

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// rawUpstream is an HTTP/1.1 upstream written by hand on loopback: it logs
// the exact bytes of every request head it receives and the connection
// each came on, and answers with whatever answer returns for the n-th
// request (counting from 0 across connections). An answer of "" closes the
// connection without a word; "RST" resets it.
type rawUpstream struct {
	addr   string
	answer func(n int, head string) string

	mu     sync.Mutex
	conns  int
	heads  []string
	connOf []int
	bodies []string
}

func newRawUpstream(t *testing.T, answer func(n int, head string) string) *rawUpstream {
	t.Helper()
	u := &rawUpstream{answer: answer}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	u.addr = ln.Addr().String()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u.mu.Lock()
			u.conns++
			id := u.conns
			u.mu.Unlock()
			go u.serve(c, id)
		}
	}()
	return u
}

func (u *rawUpstream) serve(c net.Conn, id int) {
	defer c.Close()
	br := bufio.NewReader(c)
	for {
		var head strings.Builder
		cl := 0
		chunked := false
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return
			}
			head.WriteString(line)
			if k, v, ok := strings.Cut(line, ":"); ok {
				switch strings.ToLower(k) {
				case "content-length":
					fmt.Sscan(strings.TrimSpace(v), &cl)
				case "transfer-encoding":
					chunked = true
				}
			}
			if line == "\r\n" {
				break
			}
		}
		var body []byte
		if chunked {
			body, _ = io.ReadAll(io.LimitReader(httpChunked(br), 1<<20))
		} else if cl > 0 {
			body = make([]byte, cl)
			io.ReadFull(br, body)
		}
		u.mu.Lock()
		n := len(u.heads)
		u.heads = append(u.heads, head.String())
		u.connOf = append(u.connOf, id)
		u.bodies = append(u.bodies, string(body))
		u.mu.Unlock()
		a := u.answer(n, head.String())
		if a, ok := strings.CutSuffix(a, closeAfter); ok {
			io.WriteString(c, a)
			return
		}
		if a, ok := strings.CutSuffix(a, rstAfter); ok {
			io.WriteString(c, a)
			time.Sleep(20 * time.Millisecond) // read by the edge before the reset
			c.(*net.TCPConn).SetLinger(0)
			return
		}
		switch a {
		case "":
			return
		case "RST":
			c.(*net.TCPConn).SetLinger(0)
			return
		case "HANG":
			time.Sleep(2 * time.Second)
			return
		}
		if _, err := io.WriteString(c, a); err != nil {
			return
		}
	}
}

// httpChunked decodes a chunked body with net/http's own reader, as an
// independent check of what the proxy sent.
func httpChunked(br *bufio.Reader) io.Reader {
	req, err := http.ReadRequest(bufio.NewReader(io.MultiReader(strings.NewReader("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"), br)))
	if err != nil {
		return strings.NewReader("")
	}
	return req.Body
}

func (u *rawUpstream) log() (conns int, heads []string, connOf []int, bodies []string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.conns, append([]string(nil), u.heads...), append([]int(nil), u.connOf...), append([]string(nil), u.bodies...)
}

// closeAfter, at the end of an answer, closes the connection once it is
// written.
const closeAfter = "|CLOSE"

// rstAfter, at the end of an answer, resets the connection once it is
// written.
const rstAfter = "|RST"

const okAnswer = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"

// do sends one request through front and returns status and body; a
// transport error is status 0.
func do(t *testing.T, method, url, body string) (int, string, http.Header) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, _ := http.NewRequest(method, url, rd)
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		return 0, err.Error(), nil
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return resp.StatusCode, string(b) + " [" + err.Error() + "]", resp.Header
	}
	return resp.StatusCode, string(b), resp.Trailer
}

// A hostile or broken upstream cannot split a response: an ambiguous or
// malformed head is a 502, a body longer than its length is cut at the
// length, and either way the connection it came on is never used again,
// so its leftover bytes answer no one.
func TestProxyHostileUpstream(t *testing.T) {
	const smuggled = "HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nSMUGGLED"
	tests := []struct {
		name   string
		answer string
		status int
		body   string
	}{
		{"two Content-Lengths", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nhi" + smuggled, 502, ""},
		{"Content-Length list", "HTTP/1.1 200 OK\r\nContent-Length: 2, 3\r\n\r\nhi" + smuggled, 502, ""},
		{"Content-Length and Transfer-Encoding", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled, 502, ""},
		{"Transfer-Encoding not chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nhi", 502, ""},
		{"bare CR in a field", "HTTP/1.1 200 OK\r\nX-A: a\rContent-Length: 0\r\nContent-Length: 2\r\n\r\nhi" + smuggled, 502, ""},
		{"bare LF", "HTTP/1.1 200 OK\nContent-Length: 2\n\nhi" + smuggled, 502, ""},
		{"obs-fold", "HTTP/1.1 200 OK\r\nX-A: a\r\n Content-Length: 2\r\nContent-Length: 2\r\n\r\nhi" + smuggled, 502, ""},
		{"NUL in a value", "HTTP/1.1 200 OK\r\nX-A: a\x00b\r\nContent-Length: 2\r\n\r\nhi", 502, ""},
		{"space before colon", "HTTP/1.1 200 OK\r\nContent-Length : 2\r\n\r\nhi", 502, ""},
		{"oversized head", "HTTP/1.1 200 OK\r\nX-Big: " + strings.Repeat("a", maxUpstreamHead) + "\r\nContent-Length: 2\r\n\r\nhi", 502, ""},
		{"garbage", "this is not HTTP at all\r\n\r\n", 502, ""},
		{"HTTP/2 status line", "HTTP/2 200\r\n\r\n", 502, ""},
		{"unasked 101", "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n" + smuggled, 502, ""},
		{"body longer than its length", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi" + smuggled, 200, "hi"},
		{"chunked body then more", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n" + smuggled, 200, "hi"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up := newRawUpstream(t, func(n int, _ string) string {
				if n == 0 {
					return tt.answer
				}
				return okAnswer
			})
			log, lb := testLogger(t)
			front := serveTCP(t, mustNew(t, "http://"+up.addr, Env{Logger: log}))
			status, body, _ := do(t, "GET", front+"/first", "")
			if status != tt.status || status == 200 && body != tt.body {
				t.Fatalf("first answer %d %q, want %d %q", status, body, tt.status, tt.body)
			}
			if status == 502 && (strings.Contains(body, "SMUGGLED") || len(body) > 100) {
				t.Errorf("502 body %q", body)
			}
			status, body, _ = do(t, "GET", front+"/second", "")
			if status != 200 || body != "ok" {
				t.Errorf("second answer %d %q, want the upstream's own 200 ok", status, body)
			}
			conns, heads, connOf, _ := up.log()
			if len(heads) != 2 || conns != 2 || connOf[0] == connOf[1] {
				t.Errorf("upstream saw %d requests on connections %v (%d in all); want 2 on 2 connections", len(heads), connOf, conns)
			}
			if tt.status == 502 && !strings.Contains(lb.String(), "malformed upstream response") && !strings.Contains(lb.String(), "status=502") {
				t.Errorf("log %q", lb.String())
			}
		})
	}
}

// Faults before any answer: an idempotent request is sent once more, on a
// fresh connection, and answered; a POST never is. A hung upstream is a
// 504 and is not asked twice.
func TestProxyUpstreamRetries(t *testing.T) {
	tests := []struct {
		name      string
		method    string
		body      string
		buffering bool
		fault     string
		status    int
		wantHeads int
	}{
		{"GET after a reset", "GET", "", false, "RST", 200, 2},
		{"GET after a close", "GET", "", false, "", 200, 2},
		{"HEAD after a reset", "HEAD", "", false, "RST", 200, 2},
		{"buffered PUT after a reset", "PUT", "data", true, "RST", 200, 2},
		{"streamed PUT after a reset", "PUT", "data", false, "RST", 502, 1},
		{"POST after a reset", "POST", "data", true, "RST", 502, 1},
		{"POST after a close", "POST", "", true, "", 502, 1},
		{"GET that hangs", "GET", "", false, "HANG", 504, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up := newRawUpstream(t, func(n int, _ string) string {
				if n == 0 {
					return tt.fault
				}
				return okAnswer
			})
			front := serveTCP(t, mustNew(t, "http://"+up.addr, Env{Options: Options{
				ProxyRequestBuffering: tt.buffering, ProxyTempPath: t.TempDir(),
				ProxyResponseTimeout: 300 * time.Millisecond, ProxyMaxFails: 1,
			}}))
			status, body, _ := do(t, tt.method, front+"/r", tt.body)
			if status != tt.status {
				t.Errorf("answer %d %q, want %d", status, body, tt.status)
			}
			conns, heads, connOf, bodies := up.log()
			if len(heads) != tt.wantHeads || conns != tt.wantHeads {
				t.Fatalf("upstream saw %d requests on %d connections, want %d on as many", len(heads), conns, tt.wantHeads)
			}
			if len(heads) == 2 {
				if connOf[0] == connOf[1] || heads[0] != heads[1] || bodies[0] != bodies[1] {
					t.Errorf("retry differs: %q %q on connections %v", heads, bodies, connOf)
				}
			}
			if status == 200 {
				// The upstream answered: it is not marked down.
				if status, _, _ := do(t, "GET", front+"/again", ""); status != 200 {
					t.Errorf("after the retry: %d", status)
				}
			}
		})
	}
}

// An upstream that refuses, resets or times out is marked down for
// proxy_fail_timeout after proxy_max_fails failures: its requests are
// answered at once without trying it, then it is tried again.
func TestProxyMarksUpstreamDown(t *testing.T) {
	for _, tt := range []struct {
		fault  string
		status int
	}{{"RST", 502}, {"HANG", 504}} {
		t.Run(tt.fault, func(t *testing.T) {
			up := newRawUpstream(t, func(int, string) string { return tt.fault })
			log, lb := testLogger(t)
			failTimeout := 600 * time.Millisecond
			front := serveTCP(t, mustNew(t, "http://"+up.addr, Env{Logger: log, Options: Options{
				ProxyMaxFails: 2, ProxyFailTimeout: failTimeout, ProxyResponseTimeout: 200 * time.Millisecond,
			}}))
			seen := func() int { _, h, _, _ := up.log(); return len(h) }
			// Two failures (each GET is retried once after a reset: the
			// retry's failure counts too).
			for seen() < 2 {
				if status, _, _ := do(t, "GET", front+"/", ""); status != tt.status {
					t.Fatalf("status %d, want %d", status, tt.status)
				}
			}
			before := seen()
			t0 := time.Now()
			if status, body, _ := do(t, "GET", front+"/", ""); status != tt.status || len(body) > 100 {
				t.Errorf("while down: %d %q, want %d", status, body, tt.status)
			}
			if time.Since(t0) > 150*time.Millisecond && tt.fault == "HANG" {
				t.Errorf("while down the answer took %v: the upstream was tried", time.Since(t0))
			}
			if n := seen(); n != before {
				t.Errorf("upstream saw %d requests while marked down", n-before)
			}
			if !strings.Contains(lb.String(), "marked down") {
				t.Errorf("log does not say the upstream is down: %s", lb.String())
			}
			time.Sleep(failTimeout + 100*time.Millisecond)
			do(t, "GET", front+"/", "")
			if n := seen(); n == before {
				t.Errorf("upstream not tried again after proxy_fail_timeout")
			}
		})
	}
}

// N sequential requests share one upstream connection, and every head the
// upstream gets is the edge's own: the canonical target under the base
// path, one Host, the edge's framing only, no hop-by-hop field.
func TestProxyRequestHeadOnTheWire(t *testing.T) {
	up := newRawUpstream(t, func(int, string) string { return okAnswer })
	front := serveTCP(t, mustNew(t, "http://"+up.addr+"/base", Env{}))
	client := &http.Client{Timeout: 10 * time.Second}
	type req struct {
		method, path, body string
		chunked            bool
		hdr                map[string]string
	}
	reqs := []req{
		{"GET", "/a%2Fb/c?x=1&y", "", false, map[string]string{"Connection": "X-Hop, keep-alive", "X-Hop": "1", "Keep-Alive": "timeout=5", "TE": "trailers", "Proxy-Connection": "keep-alive", "Upgrade": "h2c"}},
		{"POST", "/post", "hello", false, nil},
		{"POST", "/chunked", "streamed body", true, map[string]string{"Expect": "100-continue"}},
		{"DELETE", "/", "", false, nil},
	}
	const n = 12
	for i := range n {
		rq := reqs[i%len(reqs)]
		var body io.Reader
		if rq.body != "" {
			body = strings.NewReader(rq.body)
			if rq.chunked {
				body = struct{ io.Reader }{body}
			}
		}
		r, _ := http.NewRequest(rq.method, front+rq.path, body)
		r.Host = "front.example"
		for k, v := range rq.hdr {
			r.Header.Set(k, v)
		}
		resp, err := client.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(b) != "ok" {
			t.Fatalf("%s %s: %d %q", rq.method, rq.path, resp.StatusCode, b)
		}
	}
	conns, heads, _, bodies := up.log()
	if conns != 1 || len(heads) != n {
		t.Errorf("upstream saw %d requests on %d connections, want %d on 1", len(heads), conns, n)
	}
	for i, h := range heads {
		rq := reqs[i%len(reqs)]
		wantLine := rq.method + " /base" + rq.path + " HTTP/1.1\r\nHost: front.example\r\n"
		if !strings.HasPrefix(h, wantLine) {
			t.Errorf("head %d starts %q, want %q", i, firstLines(h, 2), wantLine)
		}
		lower := strings.ToLower(h)
		for _, f := range []string{"\r\nconnection:", "\r\nx-hop:", "\r\nkeep-alive:", "\r\nte:", "\r\nproxy-connection:", "\r\nupgrade:", "\r\nexpect:"} {
			if strings.Contains(lower, f) {
				t.Errorf("head %d carries %s: %q", i, f, h)
			}
		}
		cl, te := strings.Count(lower, "\r\ncontent-length:"), strings.Count(lower, "\r\ntransfer-encoding:")
		switch {
		case rq.chunked && (te != 1 || cl != 0 || !strings.Contains(h, "Transfer-Encoding: chunked\r\n")):
			t.Errorf("head %d: want chunked alone: %q", i, h)
		case !rq.chunked && rq.body != "" && (cl != 1 || te != 0 || !strings.Contains(h, fmt.Sprintf("Content-Length: %d\r\n", len(rq.body)))):
			t.Errorf("head %d: want one Content-Length: %q", i, h)
		case rq.body == "" && rq.method != "POST" && (cl != 0 || te != 0):
			t.Errorf("head %d: want no framing: %q", i, h)
		}
		if bodies[i] != rq.body {
			t.Errorf("body %d: %q, want %q", i, bodies[i], rq.body)
		}
		if strings.Count(lower, "\r\nhost:") != 1 {
			t.Errorf("head %d: Host count: %q", i, h)
		}
	}
}

func firstLines(s string, n int) string {
	parts := strings.SplitN(s, "\r\n", n+1)
	if len(parts) > n {
		parts = parts[:n]
	}
	return strings.Join(parts, "\r\n")
}

// Responses pass with their bodies framed again for the client: chunked
// decoded and re-encoded with trailers, HEAD, 204 and 304 without bodies,
// interim answers swallowed, a body delimited by the close.
func TestProxyResponseFraming(t *testing.T) {
	tests := []struct {
		name    string
		method  string
		answer  string
		status  int
		body    string
		trailer string // X-Sum trailer wanted
		reuse   bool   // the connection is fit for another request
	}{
		{"content-length", "GET", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", 200, "hello", "", true},
		{"chunked with trailers", "GET", "HTTP/1.1 200 OK\r\nTrailer: X-Sum\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Sum: 42\r\n\r\n", 200, "hello world", "42", true},
		{"HEAD", "HEAD", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", 200, "", "", true},
		{"204", "GET", "HTTP/1.1 204 No Content\r\n\r\n", 204, "", "", true},
		{"304", "GET", "HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\n\r\n", 304, "", "", true},
		{"100 then 200", "GET", "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi", 200, "hi", "", true},
		{"until close", "GET", "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nall of it", 200, "all of it", "", false},
		{"HTTP/1.0", "GET", "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nhi", 200, "hi", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up := newRawUpstream(t, func(n int, _ string) string {
				if n == 0 {
					if !tt.reuse {
						return tt.answer + closeAfter
					}
					return tt.answer
				}
				return okAnswer
			})
			front, _ := serveCore(t, map[string]http.Handler{"/": mustNew(t, "http://"+up.addr, Env{})}, nil)
			status, body, trailer := do(t, tt.method, front+"/", "")
			if status != tt.status || body != tt.body {
				t.Errorf("%d %q, want %d %q", status, body, tt.status, tt.body)
			}
			if tt.trailer != "" && trailer.Get("X-Sum") != tt.trailer {
				t.Errorf("trailers %v, want X-Sum: %s", trailer, tt.trailer)
			}
			if status, body, _ := do(t, "GET", front+"/", ""); status != 200 || body != "ok" {
				t.Errorf("next: %d %q", status, body)
			}
			_, _, connOf, _ := up.log()
			if tt.reuse && (len(connOf) != 2 || connOf[0] != connOf[1]) {
				t.Errorf("connections %v: want one for both requests", connOf)
			}
		})
	}
}
