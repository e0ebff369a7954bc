package httpcore

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
	"tlsedge/conninfo"
)

func TestResponses(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("/hello", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hello") })
	mux.HandleFunc("/204", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(204)
		if _, err := io.WriteString(w, "x"); err != http.ErrBodyNotAllowed {
			t.Errorf("write after 204: %v", err)
		}
	})
	mux.HandleFunc("/304", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(304) })
	mux.HandleFunc("/over", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "3")
		if _, err := io.WriteString(w, "abcdef"); err != http.ErrContentLength {
			t.Errorf("overlong write: %v", err)
		}
	})
	mux.HandleFunc("/big", func(w http.ResponseWriter, r *http.Request) {
		for i := 0; i < 10; i++ {
			w.Write(bytes.Repeat([]byte("y"), 1000))
		}
	})
	mux.HandleFunc("/short", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "10")
		io.WriteString(w, "abc")
	})
	mux.HandleFunc("/split", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Evil", "a\r\nInjected: 1")
	})
	ts := startServer(t, mux, nil)
	tests := []struct {
		name    string
		raw     string
		method  string
		status  int
		body    string
		cl      int64
		chunked bool
		closed  bool
	}{
		{"content-length", "GET /hello HTTP/1.1\r\nHost: a\r\n\r\n", "GET", 200, "hello", 5, false, false},
		{"HEAD has no body", "HEAD /hello HTTP/1.1\r\nHost: a\r\n\r\n", "HEAD", 200, "", 5, false, false},
		{"204 has no body", "GET /204 HTTP/1.1\r\nHost: a\r\n\r\n", "GET", 204, "", -1, false, false},
		{"304 has no body", "GET /304 HTTP/1.1\r\nHost: a\r\n\r\n", "GET", 304, "", -1, false, false},
		{"never more than Content-Length", "GET /over HTTP/1.1\r\nHost: a\r\n\r\n", "GET", 200, "abc", 3, false, false},
		{"large 1.1 is chunked", "GET /big HTTP/1.1\r\nHost: a\r\n\r\n", "GET", 200, strings.Repeat("y", 10000), -1, true, false},
		{"large 1.0 is close-delimited", "GET /big HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", "GET", 200, strings.Repeat("y", 10000), -1, false, true},
		{"short body closes", "GET /short HTTP/1.1\r\nHost: a\r\n\r\n", "GET", 200, "abc", 10, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, closed := ts.exchange(t, tt.raw, 300*time.Millisecond)
			if closed != tt.closed {
				t.Errorf("closed=%v want %v", closed, tt.closed)
			}
			head, rest, _ := strings.Cut(out, "\r\n\r\n")
			if tt.chunked != strings.Contains(head, "Transfer-Encoding: chunked") {
				t.Errorf("chunked=%v\n%s", !tt.chunked, head)
			}
			if tt.cl < 0 && strings.Contains(head, "Content-Length") || tt.cl >= 0 && !strings.Contains(head, "Content-Length: "+itoa(int(tt.cl))) {
				t.Errorf("want Content-Length %d\n%s", tt.cl, head)
			}
			if !strings.Contains(head, "\r\nDate: ") || !strings.Contains(head+"\r\n", "\r\nServer: tlsedge\r\n") {
				t.Errorf("Date/Server missing\n%s", head)
			}
			if tt.body == "" && rest != "" {
				t.Errorf("unexpected body %q", rest)
			}
			if tt.cl >= 0 && tt.body != "" && rest != tt.body {
				t.Errorf("body %q want %q", rest, tt.body)
			}
			r := parseResponses(t, out, tt.method)[0]
			b, _ := io.ReadAll(r.Body)
			if r.StatusCode != tt.status || string(b) != tt.body && tt.cl < 0 {
				t.Errorf("status %d body %q", r.StatusCode, b)
			}
		})
	}
	t.Run("no response splitting", func(t *testing.T) {
		out, _ := ts.exchange(t, "GET /split HTTP/1.1\r\nHost: a\r\n\r\n", 300*time.Millisecond)
		if strings.Contains(out, "\r\nInjected") {
			t.Fatalf("header injected:\n%s", out)
		}
	})
}

func TestProtocolVersionCap(t *testing.T) {
	ts := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write(bytes.Repeat([]byte("z"), 10000))
	}), func(o *Options) { o.ProtocolVersion = "HTTP/1.0"; o.ServerName = "" })
	out, closed := ts.exchange(t, "GET / HTTP/1.1\r\nHost: a\r\n\r\n", 300*time.Millisecond)
	head, _, _ := strings.Cut(out, "\r\n\r\n")
	if !strings.HasPrefix(head, "HTTP/1.0 200") || strings.Contains(head, "chunked") || !closed {
		t.Fatalf("closed=%v\n%s", closed, head)
	}
	if strings.Contains(head, "Server:") {
		t.Fatalf("Server with empty server_name\n%s", head)
	}
}

func TestExpectContinue(t *testing.T) {
	ts := startServer(t, echoHandler(), func(o *Options) { o.MaxRequestBodySize = 100 })
	t.Run("sent when the handler reads", func(t *testing.T) {
		nc, err := net.Dial("tcp", ts.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		io.WriteString(nc, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n")
		br := bufio.NewReader(nc)
		nc.SetReadDeadline(time.Now().Add(2 * time.Second))
		line, err := br.ReadString('\n')
		if err != nil || line != "HTTP/1.1 100 Continue\r\n" {
			t.Fatalf("got %q %v", line, err)
		}
		br.ReadString('\n')
		io.WriteString(nc, "abc")
		resp, err := http.ReadResponse(br, nil)
		if err != nil || resp.StatusCode != 200 || resp.Header.Get("X-Len") != "3" {
			t.Fatalf("%v %+v", err, resp)
		}
	})
	t.Run("not sent when the handler ignores the body", func(t *testing.T) {
		ts2 := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "no") }), nil)
		out, closed := ts2.exchange(t, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n", 300*time.Millisecond)
		if strings.Contains(out, "100 Continue") || statusOf(t, out) != 200 || !closed {
			t.Fatalf("closed=%v\n%s", closed, out)
		}
	})
	t.Run("over the limit: 413 at once", func(t *testing.T) {
		out, closed := ts.exchange(t, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1000\r\nExpect: 100-continue\r\n\r\n", 300*time.Millisecond)
		if strings.Contains(out, "100 Continue") || statusOf(t, out) != 413 || !closed {
			t.Fatalf("closed=%v\n%s", closed, out)
		}
	})
}

// A body error found while the handler reads becomes 400/413, not the
// handler's own 500, as long as nothing was sent.
func TestBodyErrorsDuringHandler(t *testing.T) {
	ts := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.ReadAll(r.Body); err != nil {
			http.Error(w, "backend failed", http.StatusBadGateway)
			return
		}
		io.WriteString(w, "ok")
	}), func(o *Options) { o.MaxRequestBodySize = 10 })
	tests := []struct {
		name   string
		raw    string
		status int
	}{
		{"bad chunk", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabXX", 400},
		{"chunked over limit", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n8\r\n12345678\r\n8\r\n12345678\r\n0\r\n\r\n", 413},
		{"short body", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nab", 0}, // client half-closes: nothing to answer
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.status == 0 {
				nc, _ := net.Dial("tcp", ts.addr)
				io.WriteString(nc, tt.raw)
				nc.(*net.TCPConn).CloseWrite()
				out, _ := readAll(nc, time.Second)
				nc.Close()
				if out != "" && statusOf(t, out) != 400 {
					t.Fatalf("%s", out)
				}
				return
			}
			out, closed := ts.exchange(t, tt.raw, 300*time.Millisecond)
			if statusOf(t, out) != tt.status || !closed {
				t.Fatalf("closed=%v\n%s", closed, out)
			}
		})
	}
}

func TestTimeouts(t *testing.T) {
	mod := func(o *Options) {
		o.SocketTimeout = 200 * time.Millisecond
		o.RequestHeaderTimeout = 300 * time.Millisecond
		o.MinRequestBodyRate = 1000
		o.WriteTimeout = 200 * time.Millisecond
	}
	ts := startServer(t, echoHandler(), mod)
	t.Run("idle connection closes silently", func(t *testing.T) {
		nc, _ := net.Dial("tcp", ts.addr)
		defer nc.Close()
		start := time.Now()
		out, closed := readAll(nc, 2*time.Second)
		if out != "" || !closed || time.Since(start) > time.Second {
			t.Fatalf("out=%q closed=%v after %s", out, closed, time.Since(start))
		}
	})
	t.Run("idle between keep-alive requests", func(t *testing.T) {
		out, closed := ts.exchange(t, "GET / HTTP/1.1\r\nHost: a\r\n\r\n", 2*time.Second)
		if statusOf(t, out) != 200 || !closed || strings.Count(out, "HTTP/1.1") != 1 {
			t.Fatalf("closed=%v\n%s", closed, out)
		}
	})
	t.Run("partial head gets 408", func(t *testing.T) {
		nc, _ := net.Dial("tcp", ts.addr)
		defer nc.Close()
		start := time.Now()
		// Trickle bytes faster than socket_timeout: only the head bound ends it.
		go func() {
			for _, c := range []byte("GET / HTTP/1.1\r\nHost: a\r\nX-Slow: aaaaaaaaaaaaa") {
				if _, err := nc.Write([]byte{c}); err != nil {
					return
				}
				time.Sleep(20 * time.Millisecond)
			}
		}()
		out, closed := readAll(nc, 3*time.Second)
		if !closed || statusOf(t, out) != 408 || time.Since(start) > 2*time.Second {
			t.Fatalf("closed=%v after %s\n%s", closed, time.Since(start), out)
		}
	})
	t.Run("slow body gets 408", func(t *testing.T) {
		nc, _ := net.Dial("tcp", ts.addr)
		defer nc.Close()
		io.WriteString(nc, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 100000\r\n\r\nabc")
		out, closed := readAll(nc, 10*time.Second)
		if !closed || statusOf(t, out) != 408 {
			t.Fatalf("closed=%v\n%s", closed, out)
		}
	})
	t.Run("slow reader is cut off", func(t *testing.T) {
		errc := make(chan error, 1)
		ts2 := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			chunk := bytes.Repeat([]byte("w"), 64<<10)
			for i := 0; i < 1000; i++ {
				if _, err := w.Write(chunk); err != nil {
					errc <- err
					return
				}
			}
			errc <- nil
		}), mod)
		nc, _ := net.Dial("tcp", ts2.addr)
		defer nc.Close()
		nc.(*net.TCPConn).SetReadBuffer(4096)
		io.WriteString(nc, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
		select {
		case err := <-errc:
			if err == nil || !isTimeout(err) {
				t.Fatalf("write error %v, want a timeout", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("handler write never timed out")
		}
	})
}

func TestPoolAdmission(t *testing.T) {
	release := make(chan struct{})
	var started sync.WaitGroup
	block := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/block" {
			started.Done()
			<-release
		}
		io.WriteString(w, "done")
	})
	tests := []struct {
		name   string
		mod    func(*Options)
		reason string
	}{
		{"queue full", func(o *Options) { o.ThreadPool, o.ThreadPoolMax, o.AcceptedQueueSize = 1, 1, 0 }, "queue_full"},
		{"queue timeout", func(o *Options) {
			o.ThreadPool, o.ThreadPoolMax, o.AcceptedQueueSize, o.AcceptedQueueTimeout = 1, 1, 1, 100*time.Millisecond
		}, "queue_timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			release = make(chan struct{})
			ts := startServer(t, block, tt.mod)
			started.Add(1)
			busy, _ := net.Dial("tcp", ts.addr)
			defer busy.Close()
			io.WriteString(busy, "GET /block HTTP/1.1\r\nHost: a\r\n\r\n")
			started.Wait()
			start := time.Now()
			out, closed := ts.exchange(t, "GET / HTTP/1.1\r\nHost: a\r\n\r\n", time.Second)
			close(release)
			if statusOf(t, out) != 503 || !closed || !strings.Contains(out, "\r\nRetry-After: ") || !strings.Contains(out, "\r\nConnection: close\r\n") {
				t.Fatalf("closed=%v\n%s", closed, out)
			}
			if tt.reason == "queue_timeout" && time.Since(start) < 90*time.Millisecond {
				t.Errorf("503 before the queue timeout")
			}
			out, _ = readAll(busy, 300*time.Millisecond)
			if statusOf(t, out) != 200 {
				t.Fatalf("blocked request: %s", out)
			}
			st := ts.core.Stats()
			found := false
			for _, r := range st.Rejections {
				found = found || r.Status == 503 && r.Reason == tt.reason
			}
			if !found {
				t.Errorf("no 503/%s in %+v", tt.reason, st.Rejections)
			}
		})
	}
	t.Run("queued request is served when a worker frees", func(t *testing.T) {
		release = make(chan struct{})
		ts := startServer(t, block, func(o *Options) { o.ThreadPool, o.ThreadPoolMax, o.AcceptedQueueSize = 1, 1, 1 })
		started.Add(1)
		busy, _ := net.Dial("tcp", ts.addr)
		defer busy.Close()
		io.WriteString(busy, "GET /block HTTP/1.1\r\nHost: a\r\n\r\n")
		started.Wait()
		time.AfterFunc(100*time.Millisecond, func() { close(release) })
		out, _ := ts.exchange(t, "GET / HTTP/1.1\r\nHost: a\r\n\r\n", time.Second)
		if statusOf(t, out) != 200 {
			t.Fatal(out)
		}
	})
	t.Run("max_connections", func(t *testing.T) {
		ts := startServer(t, echoHandler(), func(o *Options) { o.MaxConnections = 1 })
		first, _ := net.Dial("tcp", ts.addr)
		defer first.Close()
		io.WriteString(first, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
		if out, _ := readAll(first, 200*time.Millisecond); statusOf(t, out) != 200 {
			t.Fatal(out)
		}
		nc, _ := net.Dial("tcp", ts.addr)
		defer nc.Close()
		out, closed := readAll(nc, time.Second) // answered without sending anything
		if statusOf(t, out) != 503 || !closed {
			t.Fatalf("closed=%v\n%s", closed, out)
		}
	})
	t.Run("pool grows and reports workers", func(t *testing.T) {
		release = make(chan struct{})
		ts := startServer(t, block, func(o *Options) { o.ThreadPool, o.ThreadPoolMax = 1, 3 })
		var conns []net.Conn
		for i := 0; i < 3; i++ {
			started.Add(1)
			nc, _ := net.Dial("tcp", ts.addr)
			defer nc.Close()
			io.WriteString(nc, "GET /block HTTP/1.1\r\nHost: a\r\n\r\n")
			conns = append(conns, nc)
		}
		started.Wait()
		st := ts.core.Stats()
		if st.Threads != 3 || st.ThreadsIdle != 0 || len(st.Workers) != 3 {
			t.Fatalf("threads %d idle %d workers %d", st.Threads, st.ThreadsIdle, len(st.Workers))
		}
		close(release)
		for _, nc := range conns {
			readAll(nc, 200*time.Millisecond)
		}
		st = ts.core.Stats()
		if st.Requests != 3 || st.ThreadsIdle != 3 || st.ConnectionsIdle != 3 {
			t.Fatalf("%+v", st)
		}
	})
}

func TestPanic(t *testing.T) {
	var logs bytes.Buffer
	var mu sync.Mutex
	ts := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/panic":
			panic("boom")
		case "/late":
			w.Write(bytes.Repeat([]byte("x"), 10000))
			panic("late boom")
		}
		io.WriteString(w, "fine")
	}), func(o *Options) {
		o.Logger = slog.New(slog.NewTextHandler(lockedWriter{&logs, &mu}, nil))
	})
	other, _ := net.Dial("tcp", ts.addr)
	defer other.Close()
	out, closed := ts.exchange(t, "GET /panic HTTP/1.1\r\nHost: a\r\n\r\n", 300*time.Millisecond)
	if statusOf(t, out) != 500 || !closed {
		t.Fatalf("closed=%v\n%s", closed, out)
	}
	out, closed = ts.exchange(t, "GET /late HTTP/1.1\r\nHost: a\r\n\r\n", 300*time.Millisecond)
	if statusOf(t, out) != 200 || !closed || strings.HasSuffix(out, "0\r\n\r\n") {
		t.Fatalf("late panic: closed=%v, ends %q", closed, out[len(out)-10:])
	}
	io.WriteString(other, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
	if out, _ := readAll(other, 300*time.Millisecond); statusOf(t, out) != 200 {
		t.Fatal(out)
	}
	mu.Lock()
	defer mu.Unlock()
	if !strings.Contains(logs.String(), "boom") || !strings.Contains(logs.String(), "goroutine") {
		t.Fatalf("panic not logged with stack: %s", logs.String())
	}
}

type lockedWriter struct {
	b  *bytes.Buffer
	mu *sync.Mutex
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func TestShutdown(t *testing.T) {
	release := make(chan struct{})
	inHandler := make(chan struct{})
	ts := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			close(inHandler)
			<-release
		}
		io.WriteString(w, "ok")
	}), nil)
	idle, _ := net.Dial("tcp", ts.addr)
	defer idle.Close()
	io.WriteString(idle, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
	readAll(idle, 200*time.Millisecond)
	busy, _ := net.Dial("tcp", ts.addr)
	defer busy.Close()
	io.WriteString(busy, "GET /slow HTTP/1.1\r\nHost: a\r\n\r\n")
	<-inHandler

	done := make(chan error, 1)
	go func() { done <- ts.core.Shutdown(context.Background()) }()
	if _, closed := readAll(idle, time.Second); !closed {
		t.Fatal("idle connection not closed at once")
	}
	select {
	case err := <-done:
		t.Fatalf("Shutdown returned %v with a request in flight", err)
	case <-time.After(100 * time.Millisecond):
	}
	close(release)
	out, closed := readAll(busy, time.Second)
	if statusOf(t, out) != 200 || !closed || !strings.Contains(out, "Connection: close") {
		t.Fatalf("in-flight: closed=%v\n%s", closed, out)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	t.Run("context ends first", func(t *testing.T) {
		block := make(chan struct{})
		defer close(block)
		entered := make(chan struct{})
		ts := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			close(entered)
			<-block
		}), nil)
		nc, _ := net.Dial("tcp", ts.addr)
		defer nc.Close()
		io.WriteString(nc, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
		<-entered
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		if err := ts.core.Shutdown(ctx); err != context.DeadlineExceeded {
			t.Fatalf("got %v", err)
		}
		ts.core.Close()
		if _, closed := readAll(nc, time.Second); !closed {
			t.Fatal("Close left the connection open")
		}
	})
}

func TestConnInfoAndRequestFields(t *testing.T) {
	var got struct {
		info       *conninfo.Info
		remote     string
		requestURI string
		host       string
	}
	done := make(chan struct{})
	ts := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got.info, _ = conninfo.FromContext(r.Context())
		got.remote, got.requestURI, got.host = r.RemoteAddr, r.RequestURI, r.Host
		close(done)
	}), nil)
	nc, _ := net.Dial("tcp", ts.addr)
	defer nc.Close()
	io.WriteString(nc, "GET /p?q=1 HTTP/1.1\r\nHost: example.org\r\n\r\n")
	<-done
	if got.info == nil || got.info.Transport != "tcp" || got.remote != nc.LocalAddr().String() || got.requestURI != "/p?q=1" || got.host != "example.org" {
		t.Fatalf("%+v", got)
	}
}

func TestValidate(t *testing.T) {
	o := DefaultOptions()
	o.ThreadPool = 0
	o.ThreadPoolMax = -5
	o.SocketTimeout = 0
	o.ProtocolVersion = "HTTP/2"
	_, err := New(o)
	if err == nil {
		t.Fatal("no error")
	}
	for _, key := range []string{"thread_pool:", "thread_pool_max:", "socket_timeout:", "protocol_version:"} {
		if !strings.Contains(err.Error(), key) {
			t.Errorf("error does not name %s: %v", key, err)
		}
	}
	if _, err := New(DefaultOptions()); err != nil {
		t.Fatal(err)
	}
}

func TestResponseTrailers(t *testing.T) {
	ts := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Trailer", "X-Sum")
		io.WriteString(w, "body")
		w.Header().Set("X-Sum", "42")
		w.Header().Set(http.TrailerPrefix+"X-Late", "yes")
	}), nil)
	out, _ := ts.exchange(t, "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", 300*time.Millisecond)
	r := parseResponses(t, out)[0]
	b, _ := io.ReadAll(r.Body)
	if string(b) != "body" || r.Trailer.Get("X-Sum") != "42" || r.Trailer.Get("X-Late") != "yes" {
		t.Fatalf("body %q trailer %v\n%s", b, r.Trailer, out)
	}
}
