package apps

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// An upstream that closes a keep-alive connection right after answering,
// without a "Connection: close", loses nothing: the connection goes back to
// the pool, but before it is used again the edge sees the close (a peek at
// the socket), so the next request - a POST, which is never retried - goes
// out on a fresh connection and is answered. Each round waits until the
// upstream's close is done, then sends the POST at once.
func TestProxyPooledConnectionClosedByUpstream(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	closed := make(chan struct{}, 1)
	var accepted atomic.Int32
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			go func() {
				br := bufio.NewReader(c)
				req, err := http.ReadRequest(br)
				if err == nil {
					io.Copy(io.Discard, req.Body)
					io.WriteString(c, okAnswer)
				}
				c.Close()
				closed <- struct{}{}
			}()
		}
	}()
	front, _ := serveCore(t, map[string]http.Handler{"/": mustNew(t, "http://"+ln.Addr().String(), Env{})}, nil)
	client := &http.Client{Timeout: 10 * time.Second}
	const rounds = 20
	for i := range rounds {
		resp, err := client.Post(front+"/p", "text/plain", strings.NewReader("data"))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(b) != "ok" {
			t.Fatalf("round %d: %d %q, want the upstream's 200 ok", i, resp.StatusCode, b)
		}
		<-closed
	}
	if n := accepted.Load(); n != rounds {
		t.Errorf("upstream accepted %d connections for %d requests", n, rounds)
	}
}

// Upstream faults, each on a raw socket, and what the edge does about
// them: a GET is retried once on a fresh connection only when nothing came
// back, a POST never; a reset in the middle of a body cuts the client's
// response (it already has the head) and is not retried; garbage is a 502
// and not retried (something came back); a hang is a 504.
func TestProxyUpstreamFaultsNoRetryAfterBytes(t *testing.T) {
	tests := []struct {
		name      string
		method    string
		fault     string
		status    int  // 0: the response is cut after its head
		wantHeads int  // requests the upstream sees
		cut       bool // the client's body ends early
	}{
		{"GET reset mid-body", "GET", "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial|RST", 200, 1, true},
		{"GET closed mid-body", "GET", "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial" + closeAfter, 200, 1, true},
		{"GET reset mid-head", "GET", "HTTP/1.1 200 OK\r\nContent-Le|RST", 502, 1, false},
		{"GET garbage", "GET", "garbage garbage\r\n\r\n", 502, 1, false},
		{"POST garbage", "POST", "garbage garbage\r\n\r\n", 502, 1, false},
		{"POST that hangs", "POST", "HANG", 504, 1, false},
		{"POST reset", "POST", "RST", 502, 1, false},
		{"GET reset", "GET", "RST", 200, 2, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up := newRawUpstream(t, func(n int, _ string) string {
				if n > 0 {
					return okAnswer
				}
				if a, ok := strings.CutSuffix(tt.fault, "|RST"); ok {
					return a + rstAfter
				}
				return tt.fault
			})
			front, _ := serveCore(t, map[string]http.Handler{"/": mustNew(t, "http://"+up.addr, Env{Options: Options{
				ProxyResponseTimeout: 300 * time.Millisecond,
			}})}, nil)
			var body io.Reader
			if tt.method == "POST" {
				body = strings.NewReader("data")
			}
			req, _ := http.NewRequest(tt.method, front+"/f", body)
			resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, rerr := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.status {
				t.Errorf("status %d %q, want %d", resp.StatusCode, b, tt.status)
			}
			if tt.cut && rerr == nil {
				t.Errorf("body %q ended cleanly; want it cut", b)
			}
			if !tt.cut && rerr != nil {
				t.Errorf("body read: %v", rerr)
			}
			conns, heads, connOf, _ := up.log()
			if len(heads) != tt.wantHeads {
				t.Errorf("upstream saw %d requests on connections %v (%d in all), want %d", len(heads), connOf, conns, tt.wantHeads)
			}
			if len(heads) == 2 && connOf[0] == connOf[1] {
				t.Errorf("retried on the same connection")
			}
			// Whatever happened, the next request is answered by the
			// upstream on a connection of its own.
			if status, b, _ := do(t, "GET", front+"/next", ""); status != 200 || b != "ok" {
				t.Errorf("next request: %d %q", status, b)
			}
		})
	}
}

// An upstream that refuses connections is marked down like one that resets
// or hangs: once proxy_max_fails dials were refused, the edge answers 502
// without dialling, even after the upstream has come back, until
// proxy_fail_timeout has passed; then it is tried and answers.
func TestProxyMarksRefusingUpstreamDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // refused from here on
	log, lb := testLogger(t)
	failTimeout := 600 * time.Millisecond
	front, _ := serveCore(t, map[string]http.Handler{"/": mustNew(t, "http://"+addr, Env{Logger: log, Options: Options{
		ProxyMaxFails: 2, ProxyFailTimeout: failTimeout,
	}})}, nil)
	// One GET: refused, retried once, refused again: two failures.
	if status, body, _ := do(t, "GET", front+"/", ""); status != 502 || len(body) > 100 {
		t.Fatalf("refused: %d %q", status, body)
	}
	// The upstream comes back; it is still marked down.
	ln, err = net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("cannot listen on %s again: %v", addr, err)
	}
	defer ln.Close()
	var accepted atomic.Int32
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					if _, err := http.ReadRequest(br); err != nil {
						return
					}
					io.WriteString(c, okAnswer)
				}
			}()
		}
	}()
	start := time.Now()
	if status, _, _ := do(t, "GET", front+"/", ""); status != 502 {
		t.Errorf("while marked down: %d, want 502", status)
	}
	if n := accepted.Load(); n != 0 && time.Since(start) < failTimeout {
		t.Errorf("upstream dialled %d times while marked down", n)
	}
	if !strings.Contains(lb.String(), "marked down") {
		t.Errorf("log does not say the upstream is down: %s", lb.String())
	}
	time.Sleep(failTimeout + 100*time.Millisecond)
	if status, body, _ := do(t, "GET", front+"/", ""); status != 200 || body != "ok" {
		t.Errorf("after proxy_fail_timeout: %d %q, want the upstream's answer", status, body)
	}
	if accepted.Load() == 0 {
		t.Errorf("upstream not tried again after proxy_fail_timeout")
	}
}

// A client that goes away while the upstream is still thinking is noticed
// (the request core watches the connection once the exchange has run for
// watchDelay): the upstream connection is closed, long before
// proxy_response_timeout, so the upstream can stop working for no one.
func TestProxyClientGoneClosesUpstream(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	gone := make(chan time.Time, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		br := bufio.NewReader(c)
		if _, err := http.ReadRequest(br); err != nil {
			return
		}
		// No answer: wait for the edge to give up on the request.
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		br.ReadByte()
		gone <- time.Now()
	}()
	front, _ := serveCore(t, map[string]http.Handler{"/": mustNew(t, "http://"+ln.Addr().String(), Env{Options: Options{
		ProxyResponseTimeout: 5 * time.Second,
	}})}, nil)
	c, err := net.Dial("tcp", strings.TrimPrefix(front, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(c, "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
	time.Sleep(50 * time.Millisecond)
	c.Close()
	closed := time.Now()
	select {
	case at := <-gone:
		if d := at.Sub(closed); d > 2*time.Second {
			t.Errorf("upstream connection closed %v after the client left", d)
		}
	case <-time.After(4 * time.Second):
		t.Fatal("upstream connection still open 4s after the client left")
	}
}
