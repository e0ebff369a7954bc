package httpcore

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"testing"
	"time"
)

// besideResult is how a body read beside the handler ended.
type besideResult struct {
	n   int64
	err error
}

// readBeside starts a goroutine that reads r's body to the end, as a
// reverse proxy's transport does beside the handler, and returns once that
// goroutine is inside a read (it holds the body's mutex).
func readBeside(r *http.Request) <-chan besideResult {
	b := r.Body.(*body)
	ch := make(chan besideResult, 1)
	go func() {
		n, err := io.Copy(io.Discard, r.Body)
		ch <- besideResult{n, err}
	}()
	for b.mu.TryLock() {
		b.mu.Unlock()
		time.Sleep(time.Millisecond)
	}
	return ch
}

// stalledPost sends a POST that declares 1000 bytes of body and sends 10,
// then pauses: whatever reads the rest waits for the client.
func stalledPost(t *testing.T, addr string) net.Conn {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(nc, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1000\r\n\r\n0123456789")
	return nc
}

// A handler may leave a goroutine reading the request body after it
// returns (a reverse proxy's transport writing to a backend that has
// answered already). The core takes the body over when the handler returns:
// that read is cut short and fails, the connection closes after the
// response instead of being reused, and the goroutine can never reach the
// connection's buffers once another connection has them (the race detector
// saw exactly that before).
func TestBodyReadLeftBehind(t *testing.T) {
	read := make(chan (<-chan besideResult), 1)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != "POST" {
			return // the GET that follows
		}
		read <- readBeside(r)
		io.WriteString(w, "early")
	})
	ts := startServer(t, h, func(o *Options) { o.SocketTimeout = 5 * time.Second; o.Statistics = true })
	nc := stalledPost(t, ts.addr)
	defer nc.Close()
	start := time.Now()
	out, closed := readAll(nc, 3*time.Second)
	if statusOf(t, out) != 200 || !strings.HasSuffix(out, "early") || !strings.Contains(out, "Connection: close\r\n") || !closed {
		t.Fatalf("closed=%v\n%s", closed, out)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("the answer took %v: the left-behind read was not cut short", d)
	}
	select {
	case res := <-<-read:
		if !errors.Is(res.err, errBodyAfterClose) {
			t.Fatalf("left-behind read: %v, want %v", res.err, errBodyAfterClose)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("the left-behind read never returned")
	}
	if st := ts.core.Stats(); len(st.Rejections) > 0 {
		t.Fatalf("the client did nothing wrong, yet: %v", st.Rejections)
	}
	if out, _ := ts.exchange(t, "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", 2*time.Second); statusOf(t, out) != 200 {
		t.Fatalf("next connection:\n%s", out)
	}
}

// The same through net/http/httputil's ReverseProxy, with a backend that
// answers 401 without reading the upload while the client is still
// sending it: every answer is the backend's, and the core keeps serving.
func TestProxyBackendAnswersBeforeBody(t *testing.T) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusUnauthorized)
	}))
	defer backend.Close()
	u, _ := url.Parse(backend.URL)
	ts := startServer(t, httputil.NewSingleHostReverseProxy(u), nil)
	for _, size := range []int{2000, 100000, 1000000} {
		nc, err := net.Dial("tcp", ts.addr)
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(nc, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: "+itoa(size)+"\r\n\r\n0123456789")
		go func() {
			time.Sleep(200 * time.Millisecond)
			io.WriteString(nc, strings.Repeat("x", size-10))
			io.WriteString(nc, "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
		}()
		out, _ := readAll(nc, 3*time.Second)
		nc.Close()
		if statusOf(t, out) != http.StatusUnauthorized {
			t.Fatalf("size %d:\n%s", size, out)
		}
		for _, resp := range strings.Split(out, "HTTP/1.1 ")[1:] {
			if !strings.HasPrefix(resp, "401 ") {
				t.Fatalf("size %d: an answer that is not the backend's:\n%s", size, out)
			}
		}
	}
	if out, _ := ts.exchange(t, "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", 2*time.Second); statusOf(t, out) != http.StatusUnauthorized {
		t.Fatalf("next connection:\n%s", out)
	}
}

// A handler that closes the body while a goroutine of its own is still
// reading it (an http.Client upload, say, waiting on a client that paused)
// answers at once: Close does not wait for the read, and the answer is the
// handler's, not a 408 from the read timing out meanwhile.
func TestBodyCloseDoesNotWaitForARead(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		readBeside(r)
		r.Body.Close()
		io.WriteString(w, "handled")
	})
	ts := startServer(t, h, func(o *Options) { o.SocketTimeout = 2 * time.Second; o.MinRequestBodyRate = 0 })
	nc := stalledPost(t, ts.addr)
	defer nc.Close()
	start := time.Now()
	out, _ := readAll(nc, 4*time.Second)
	if statusOf(t, out) != 200 || !strings.HasSuffix(out, "handled") {
		t.Fatalf("after %v:\n%s", time.Since(start), out)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("the answer waited %v for the goroutine's read", d)
	}
}

// Hijacking while a goroutine of the handler's is inside a body read: the
// read is ended (it must not go on consuming the reader the hijacker now
// owns), and the hijacker gets the bytes the client sends next.
func TestHijackEndsABodyRead(t *testing.T) {
	read := make(chan (<-chan besideResult), 1)
	got := make(chan string, 1)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		read <- readBeside(r)
		nc, rw, err := w.(http.Hijacker).Hijack()
		if err != nil {
			got <- "hijack: " + err.Error()
			return
		}
		defer nc.Close()
		rw.WriteString("HTTP/1.1 101 Switching Protocols\r\n\r\n")
		rw.Flush()
		nc.SetReadDeadline(time.Now().Add(3 * time.Second))
		line, err := rw.ReadString('\n')
		if err != nil {
			line = "read: " + err.Error()
		}
		got <- line
	})
	ts := startServer(t, h, nil)
	nc := stalledPost(t, ts.addr)
	defer nc.Close()
	br := bufio.NewReader(nc)
	if line, err := br.ReadString('\n'); err != nil || !strings.HasPrefix(line, "HTTP/1.1 101") {
		t.Fatalf("%q %v", line, err)
	}
	select {
	case res := <-<-read:
		if !errors.Is(res.err, errBodyAfterClose) {
			t.Fatalf("the body read ended with %v, want %v", res.err, errBodyAfterClose)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("the body read was not ended by the hijack")
	}
	io.WriteString(nc, "upgraded\n")
	if line := <-got; line != "upgraded\n" {
		t.Fatalf("the hijacker read %q", line)
	}
}

// Expect: 100-continue with the body read by a goroutine of the handler's:
// its first read writes the 100 Continue while the handler, beside it,
// sets a write deadline and starts its response. The two go out whole, one
// after the other, and the race detector sees them ordered.
func TestContinueBesideTheResponse(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		read := readBeside(r)
		// A write deadline of the handler's own, set while the body read
		// may be writing the 100 Continue through the same writer.
		http.NewResponseController(w).SetWriteDeadline(time.Now().Add(5 * time.Second))
		w.Header().Set("X-Early", "1")
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		io.WriteString(w, itoa(int((<-read).n)))
	})
	ts := startServer(t, h, nil)
	for i := 0; i < 20; i++ {
		nc, err := net.Dial("tcp", ts.addr)
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(nc, "POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 10\r\n\r\n")
		br := bufio.NewReader(nc)
		nc.SetReadDeadline(time.Now().Add(3 * time.Second))
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(line, "HTTP/1.1 100 ") {
			if blank, _ := br.ReadString('\n'); blank != "\r\n" {
				t.Fatalf("100 Continue followed by %q", blank)
			}
			line, _ = br.ReadString('\n')
		}
		if !strings.HasPrefix(line, "HTTP/1.1 200 ") {
			t.Fatalf("status line %q", line)
		}
		io.WriteString(nc, "0123456789")
		resp, err := http.ReadResponse(bufio.NewReader(io.MultiReader(strings.NewReader(line), br)), nil)
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		if err != nil || string(body) != "10" || resp.Header.Get("X-Early") != "1" {
			t.Fatalf("%q %v %v", body, err, resp.Header)
		}
		nc.Close()
	}
}
