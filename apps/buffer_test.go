package apps

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"tlsedge/server/httpcore"
)

// seenRequest is what a logging upstream received in one request.
type seenRequest struct {
	Method, Path  string
	ContentLength int64
	Chunked       bool
	Expect        string
	Body          []byte
	Err           error // reading the body
}

// loggingUpstream is a real HTTP server on loopback that counts the
// connections it accepts and logs every request it sees, body included.
type loggingUpstream struct {
	url   string
	conns atomic.Int64

	mu   sync.Mutex
	reqs []seenRequest
	// during, when set, runs while the handler has read the body but not
	// answered.
	during func(r *http.Request)
}

type countingListener struct {
	net.Listener
	n *atomic.Int64
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.n.Add(1)
	}
	return c, err
}

func newLoggingUpstream(t *testing.T) *loggingUpstream {
	t.Helper()
	u := &loggingUpstream{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		u.mu.Lock()
		during := u.during
		u.reqs = append(u.reqs, seenRequest{r.Method, r.URL.Path, r.ContentLength, len(r.TransferEncoding) > 0, r.Header.Get("Expect"), body, err})
		u.mu.Unlock()
		if during != nil {
			during(r)
		}
		sum := sha256.Sum256(body)
		fmt.Fprintf(w, "%d %s", len(body), hex.EncodeToString(sum[:]))
	}), ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(countingListener{ln, &u.conns})
	t.Cleanup(func() { srv.Close() })
	u.url = "http://" + ln.Addr().String()
	return u
}

func (u *loggingUpstream) seen() []seenRequest {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]seenRequest(nil), u.reqs...)
}

// quiet waits until the upstream has neither accepted a connection nor
// logged a request for 300 ms, and returns what it saw.
func (u *loggingUpstream) quiet() (conns int64, reqs []seenRequest) {
	c, n := u.conns.Load(), len(u.seen())
	for {
		time.Sleep(300 * time.Millisecond)
		c2, reqs := u.conns.Load(), u.seen()
		if c2 == c && len(reqs) == n {
			return c2, reqs
		}
		c, n = c2, len(reqs)
	}
}

// rawExchange writes parts to a new connection to addr, pausing between
// them so that a streaming proxy forwards each before the next arrives,
// then half-closes and returns the answer.
func rawExchange(t *testing.T, addr string, parts ...string) *http.Response {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	for i, p := range parts {
		if i > 0 {
			time.Sleep(100 * time.Millisecond)
		}
		if _, err := io.WriteString(c, p); err != nil {
			t.Fatal(err)
		}
	}
	c.(*net.TCPConn).CloseWrite()
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("no answer: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	resp.Body = io.NopCloser(bytes.NewReader(b))
	return resp
}

// A body the core refuses half way reaches nothing upstream when the proxy
// buffers: no request, not its head, not a connection. Without buffering
// the upstream gets the head and what was good so far, then a cut.
func TestProxyBufferingRefusedBodyReachesNothing(t *testing.T) {
	const head = "POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
	tests := []struct {
		name   string
		parts  []string
		status int
	}{
		{"missing CRLF after chunk", []string{head + "5\r\nhello\r\n5\r\nworld\r\n", "5\r\nhelloXX0\r\n\r\n"}, 400},
		{"bad chunk size", []string{head + "5\r\nhello\r\n5\r\nworld\r\n", "0x5\r\nhello\r\n0\r\n\r\n"}, 400},
		{"chunk over max_request_body_size", []string{head + "5\r\nhello\r\n5\r\nworld\r\n", "200000\r\n" + strings.Repeat("a", 1000)}, 413},
		{"Content-Length cut short", []string{"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nhelloworld", "more"}, 400},
	}
	for _, buffering := range []bool{true, false} {
		for _, tt := range tests {
			t.Run(fmt.Sprintf("buffering=%v/%s", buffering, tt.name), func(t *testing.T) {
				up := newLoggingUpstream(t)
				front, _ := serveCore(t, map[string]http.Handler{
					"/": mustNew(t, up.url, Env{Options: Options{ProxyRequestBuffering: buffering, ProxyTempPath: t.TempDir()}}),
				}, func(o *httpcore.Options) { o.MaxRequestBodySize = 1 << 20 })
				resp := rawExchange(t, strings.TrimPrefix(front, "http://"), tt.parts...)
				if resp.StatusCode != tt.status || !resp.Close {
					t.Errorf("answer %d (close %v), want %d and a close", resp.StatusCode, resp.Close, tt.status)
				}
				conns, reqs := up.quiet()
				if buffering {
					if conns != 0 || len(reqs) != 0 {
						t.Fatalf("upstream accepted %d connections and saw %+v; want nothing", conns, reqs)
					}
					return
				}
				// Streaming: the head and the good bytes went up, then
				// the upstream's read failed; never a complete body.
				if len(reqs) != 1 || reqs[0].Err == nil || !bytes.HasPrefix(reqs[0].Body, []byte("helloworld")) {
					t.Fatalf("upstream saw %+v", reqs)
				}
				t.Logf("streaming: upstream read %q (chunked %v, Content-Length %d), then %v", reqs[0].Body, reqs[0].Chunked, reqs[0].ContentLength, reqs[0].Err)
			})
		}
	}
}

// A buffered body reaches the upstream whole, with a Content-Length instead
// of the client's chunking, whether it stayed in memory or went to disk,
// and no temporary file or directory is left behind.
func TestProxyBufferingSendsContentLength(t *testing.T) {
	up := newLoggingUpstream(t)
	tmp := t.TempDir()
	front := serveTCP(t, mustNew(t, up.url, Env{Options: Options{ProxyRequestBuffering: true, ProxyTempPath: tmp}}))
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{ExpectContinueTimeout: 5 * time.Second}}
	for _, size := range []int64{0, 1000, 64 << 10, 64<<10 + 1, 5 << 20} {
		for _, chunked := range []bool{true, false} {
			t.Run(fmt.Sprintf("%d bytes, chunked %v", size, chunked), func(t *testing.T) {
				data := make([]byte, size)
				for i := range data {
					data[i] = byte(i * 31 / 7)
				}
				var body io.Reader = bytes.NewReader(data)
				if chunked {
					body = struct{ io.Reader }{body} // length unknown: chunked
				}
				req, _ := http.NewRequest("POST", front+"/up", body)
				req.Header.Set("Expect", "100-continue")
				resp, err := client.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				got, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				sum := sha256.Sum256(data)
				if want := fmt.Sprintf("%d %s", size, hex.EncodeToString(sum[:])); resp.StatusCode != 200 || string(got) != want {
					t.Fatalf("%d %q, want the upstream to read %q", resp.StatusCode, got, want)
				}
				reqs := up.seen()
				last := reqs[len(reqs)-1]
				if last.Chunked || last.ContentLength != size || (size > 0 && last.Expect != "") {
					t.Errorf("upstream saw chunked %v, Content-Length %d, Expect %q; want Content-Length %d alone", last.Chunked, last.ContentLength, last.Expect, size)
				}
				if left := leftIn(tmp); len(left) != 0 {
					t.Errorf("left behind in proxy_temp_path: %v", left)
				}
			})
		}
	}
}

// leftIn returns what is in dir once the request that may have used it has
// had 2 s to clean up: the client can read the whole answer before the
// handler's deferred clean-up runs.
func leftIn(dir string) []os.DirEntry {
	deadline := time.Now().Add(2 * time.Second)
	for {
		left, _ := os.ReadDir(dir)
		if len(left) == 0 || time.Now().After(deadline) {
			return left
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// With buffering off, a body streams: the upstream reads its start before
// the client has sent the rest.
func TestProxyBufferingOffStreams(t *testing.T) {
	started := make(chan struct{})
	up := serveTCP(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var first [5]byte
		if _, err := io.ReadFull(r.Body, first[:]); err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		close(started)
		rest, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s%s", first[:], rest)
	}))
	front := serveTCP(t, mustNew(t, up, Env{Options: Options{ProxyRequestBuffering: false}}))
	pr, pw := io.Pipe()
	go func() {
		io.WriteString(pw, "first")
		select {
		case <-started:
			io.WriteString(pw, " and the rest")
			pw.Close()
		case <-time.After(5 * time.Second):
			pw.CloseWithError(fmt.Errorf("the upstream never saw the start of the body"))
		}
	}()
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Post(front+"/", "text/plain", pr)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "first and the rest" {
		t.Errorf("%d %q", resp.StatusCode, b)
	}
}

// proxy_temp_path and proxy_request_buffer_size that cannot work are start-up
// errors naming the option.
func TestProxyBufferingOptionErrors(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	os.WriteFile(file, nil, 0o600)
	for name, o := range map[string]Options{
		"proxy_temp_path missing":   {ProxyRequestBuffering: true, ProxyTempPath: "/nonexistent/tlsedge"},
		"proxy_temp_path a file":    {ProxyRequestBuffering: true, ProxyTempPath: file},
		"proxy_temp_path relative":  {ProxyRequestBuffering: true, ProxyTempPath: "tmp"},
		"proxy_request_buffer_size": {ProxyRequestBuffering: true, ProxyRequestBufferSize: -1},
	} {
		want, _, _ := strings.Cut(name, " ")
		if _, err := New("http://127.0.0.1:1", Env{Options: o}); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want an error naming %s", name, err, want)
		}
	}
}

// When the edge cannot store a large body (proxy_temp_path gone after
// start-up), the client gets a 500 and a close, the upstream nothing, and
// the log says why.
func TestProxyBufferingStorageFailure(t *testing.T) {
	tmp := filepath.Join(t.TempDir(), "bodies")
	if err := os.Mkdir(tmp, 0o700); err != nil {
		t.Fatal(err)
	}
	up := newLoggingUpstream(t)
	log, lb := testLogger(t)
	front := serveTCP(t, mustNew(t, up.url, Env{Logger: log, Options: Options{ProxyRequestBuffering: true, ProxyTempPath: tmp}}))
	os.Remove(tmp)
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Post(front+"/", "application/octet-stream", bytes.NewReader(make([]byte, 100<<10)))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 500 || !resp.Close || len(b) > 100 {
		t.Errorf("%d %q (close %v), want a short 500 and a close", resp.StatusCode, b, resp.Close)
	}
	if conns, reqs := up.quiet(); conns != 0 || len(reqs) != 0 {
		t.Errorf("upstream accepted %d connections and saw %+v; want nothing", conns, reqs)
	}
	if l := lb.String(); !strings.Contains(l, "level=ERROR") || !strings.Contains(l, tmp) {
		t.Errorf("log %q: want an error naming %s", l, tmp)
	}
}
