package httpcore

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"tlsedge/conninfo"
	"tlsedge/router"
)

// Handlers written for net/http mount unchanged: the reverse proxy and the
// file server, and a body error met by the proxy still becomes 400/413
// rather than its 502.
func TestReverseProxyAndFileServer(t *testing.T) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			return
		}
		w.Header().Set("X-Backend-Host", r.Host)
		w.Header().Set("X-Forwarded", r.Header.Get("X-Forwarded-For"))
		io.WriteString(w, "backend:"+r.URL.Path+":"+string(b))
	}))
	defer backend.Close()
	u, _ := url.Parse(backend.URL)
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "f.txt"), []byte("file body"), 0o644)

	d := router.NewDispatcher()
	d.Mount("/api", httputil.NewSingleHostReverseProxy(u))
	d.Mount("/files", http.FileServer(http.Dir(dir)))
	ts := startServer(t, d, func(o *Options) { o.MaxRequestBodySize = 16 })

	tests := []struct {
		name, raw string
		status    int
		body      string
	}{
		{"proxy GET", "GET /api/x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", 200, "backend:/x:"},
		{"proxy POST", "POST /api/p HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc", 200, "backend:/p:abc"},
		{"proxy chunked", "POST /api/c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n2\r\nhi\r\n0\r\n\r\n", 200, "backend:/c:hi"},
		{"proxy chunked over limit", "POST /api/c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n10\r\n0123456789abcdef\r\n10\r\n0123456789abcdef\r\n0\r\n\r\n", 413, ""},
		{"proxy bad chunk", "POST /api/c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhiXX3\r\nabc\r\n0\r\n\r\n", 400, ""},
		{"file", "GET /files/f.txt HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", 200, "file body"},
		{"file HEAD", "HEAD /files/f.txt HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", 200, ""},
		{"file missing", "GET /files/nope HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", 404, ""},
		{"file range", "GET /files/f.txt HTTP/1.1\r\nHost: a\r\nRange: bytes=0-3\r\nConnection: close\r\n\r\n", 206, "file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, _ := ts.exchange(t, tt.raw, 2*time.Second)
			method := "GET"
			if strings.HasPrefix(tt.raw, "HEAD") {
				method = "HEAD"
			}
			r := parseResponses(t, out, method)[0]
			b, _ := io.ReadAll(r.Body)
			if r.StatusCode != tt.status || tt.body != "" && string(b) != tt.body {
				t.Fatalf("%d %q\n%s", r.StatusCode, b, out)
			}
			if tt.name == "file HEAD" && r.ContentLength != 9 {
				t.Fatalf("HEAD Content-Length %d", r.ContentLength)
			}
		})
	}
	t.Run("proxy keep-alive and pipelining", func(t *testing.T) {
		out, _ := ts.exchange(t, "GET /api/1 HTTP/1.1\r\nHost: a\r\n\r\nGET /api/2 HTTP/1.1\r\nHost: a\r\n\r\n", 500*time.Millisecond)
		rs := parseResponses(t, out)
		if len(rs) != 2 {
			t.Fatalf("%d responses\n%s", len(rs), out)
		}
		for i, r := range rs {
			if b, _ := io.ReadAll(r.Body); string(b) != "backend:/"+itoa(i+1)+":" {
				t.Fatalf("response %d: %q", i, b)
			}
		}
	})
}

// With statistics off the core keeps only its gauges.
func TestStatsOff(t *testing.T) {
	ts := startServer(t, Text("x"), func(o *Options) { o.Statistics = false })
	ts.exchange(t, "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\nBAD\r\n\r\n", 200*time.Millisecond)
	st := ts.core.Stats()
	if st.Enabled || st.Requests != 0 || st.Rejections != nil || st.Workers != nil || st.Threads != 10 || ts.core.st != nil {
		t.Fatalf("%+v", st)
	}
}

// The pool grows past thread_pool on demand, never past thread_pool_max,
// and shrinks back to thread_pool once the extra workers idle.
func TestPoolGrowShrink(t *testing.T) {
	p := newPool(2, 4, -1, time.Second)
	p.retire = 50 * time.Millisecond
	var ws []*worker
	for i := 0; i < 4; i++ {
		w, err := p.acquire()
		if err != nil {
			t.Fatal(err)
		}
		ws = append(ws, w)
	}
	if s := p.snapshot(false); s.threads != 4 || s.idle != 0 {
		t.Fatalf("grown: %+v", s)
	}
	for _, w := range ws {
		p.release(w)
	}
	if s := p.snapshot(false); s.threads != 4 || s.idle != 4 {
		t.Fatalf("released: %+v", s)
	}
	time.Sleep(100 * time.Millisecond)
	if s := p.snapshot(true); s.threads != 2 || s.idle != 2 || len(s.workers) != 2 {
		t.Fatalf("shrunk: %+v", s)
	}
}

// As with net/http, a request's context ends when ServeHTTP returns, and
// contexts derived from it follow; Close cancels an in-flight one.
func TestRequestContext(t *testing.T) {
	got := make(chan error, 2)
	entered := make(chan struct{})
	ts := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, ok := conninfo.FromContext(r.Context()); !ok {
			t.Error("no ConnInfo in the request context")
		}
		if r.URL.Path == "/block" {
			close(entered)
			<-r.Context().Done()
			got <- r.Context().Err()
			return
		}
		child, cancel := context.WithCancel(r.Context())
		go func() {
			defer cancel()
			<-child.Done()
			got <- child.Err()
		}()
		if r.Context().Err() != nil {
			t.Error("canceled too early")
		}
		io.WriteString(w, "ok")
	}), nil)
	out, _ := ts.exchange(t, "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", 300*time.Millisecond)
	if statusOf(t, out) != 200 {
		t.Fatal(out)
	}
	select {
	case err := <-got:
		if err != context.Canceled {
			t.Fatalf("derived context: %v", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("derived context not canceled after ServeHTTP returned")
	}
	nc, _ := net.Dial("tcp", ts.addr)
	defer nc.Close()
	io.WriteString(nc, "GET /block HTTP/1.1\r\nHost: a\r\n\r\n")
	<-entered
	ts.core.Close()
	select {
	case err := <-got:
		if err != context.Canceled {
			t.Fatalf("after Close: %v", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Close did not cancel the in-flight request")
	}
}

// A client that leaves mid-request cancels the request's context, once the
// handler watches it; a watching handler does not disturb keep-alive or
// pipelining (the watcher hands back the next request's first byte).
func TestClientGoneCancels(t *testing.T) {
	canceled := make(chan struct{})
	entered := make(chan struct{}, 4)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		if r.URL.Path == "/wait" {
			entered <- struct{}{}
			select {
			case <-ctx.Done():
				close(canceled)
			case <-time.After(5 * time.Second):
			}
			return
		}
		<-time.After(20 * time.Millisecond) // let the watcher see the next request
		if ctx.Done() == nil {
			t.Error("nil Done")
		}
		io.WriteString(w, r.URL.Path)
	})
	ts := startServer(t, h, nil)
	nc, _ := net.Dial("tcp", ts.addr)
	io.WriteString(nc, "GET /wait HTTP/1.1\r\nHost: a\r\n\r\n")
	<-entered
	nc.Close()
	select {
	case <-canceled:
	case <-time.After(3 * time.Second):
		t.Fatal("context not canceled when the client left")
	}

	nc2, _ := net.Dial("tcp", ts.addr)
	defer nc2.Close()
	io.WriteString(nc2, "GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n")
	time.Sleep(10 * time.Millisecond)
	io.WriteString(nc2, "GET /3 HTTP/1.1\r\nHost: a\r\n\r\n")
	out, _ := readAll(nc2, 500*time.Millisecond)
	rs := parseResponses(t, out)
	if len(rs) != 3 {
		t.Fatalf("%d responses\n%s", len(rs), out)
	}
	for i, r := range rs {
		if b, _ := io.ReadAll(r.Body); string(b) != "/"+itoa(i+1) {
			t.Fatalf("response %d: %q", i, b)
		}
	}

	c := newCore(t, h, nil)
	addr, client := startTLS(t, c)
	client.Transport.(*http.Transport).ForceAttemptHTTP2 = false
	client.Transport.(*http.Transport).TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	for i := 0; i < 5; i++ {
		resp, err := client.Get("https://" + addr + "/tls")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != "/tls" {
			t.Fatalf("tls request %d: %q", i, b)
		}
	}
	if st := c.Stats(); st.ConnectionsOpen != 1 {
		t.Fatalf("keep-alive lost over TLS: %d connections", st.ConnectionsOpen)
	}
}
