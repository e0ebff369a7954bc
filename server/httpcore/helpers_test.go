package httpcore

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// testServer runs a Core behind a loopback listener with a minimal accept
// loop like the server package's.
type testServer struct {
	core *Core
	addr string
	ln   net.Listener
}

func echoHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, "read: "+err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("X-Method", r.Method)
		w.Header().Set("X-Path", r.URL.Path)
		w.Header().Set("X-Host", r.Host)
		w.Header().Set("X-Len", itoa(len(b)))
		w.Write(b)
	})
}

func itoa(n int) string { return strconv.Itoa(n) }

func startServer(t testing.TB, h http.Handler, mod func(*Options)) *testServer {
	t.Helper()
	o := DefaultOptions()
	o.Handler = h
	o.Statistics = true
	if mod != nil {
		mod(&o)
	}
	c, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ts := &testServer{core: c, addr: ln.Addr().String(), ln: ln}
	go c.Serve(ln, nil)
	t.Cleanup(func() {
		ln.Close()
		c.Close()
	})
	return ts
}

// exchange writes raw, reads until the server closes or quiet elapses, and
// reports what came back and whether the server closed the connection.
func (ts *testServer) exchange(t testing.TB, raw string, quiet time.Duration) (string, bool) {
	t.Helper()
	nc, err := net.Dial("tcp", ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if _, err := io.WriteString(nc, raw); err != nil {
		t.Fatal(err)
	}
	return readAll(nc, quiet)
}

func readAll(nc net.Conn, quiet time.Duration) (string, bool) {
	var sb strings.Builder
	buf := make([]byte, 4096)
	for {
		nc.SetReadDeadline(time.Now().Add(quiet))
		n, err := nc.Read(buf)
		sb.Write(buf[:n])
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				return sb.String(), false
			}
			return sb.String(), true
		}
	}
}

// parseResponses reads every response in s (for pipelining checks).
func parseResponses(t testing.TB, s string, methods ...string) []*http.Response {
	t.Helper()
	br := bufio.NewReader(strings.NewReader(s))
	var out []*http.Response
	for i := 0; br.Buffered() > 0 || i == 0; i++ {
		req := &http.Request{Method: "GET"}
		if i < len(methods) {
			req.Method = methods[i]
		}
		resp, err := http.ReadResponse(br, req)
		if err != nil {
			if len(out) == 0 {
				t.Fatalf("no response in %q: %v", s, err)
			}
			break
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body = io.NopCloser(strings.NewReader(string(b)))
		out = append(out, resp)
		if _, err := br.Peek(1); err != nil {
			break
		}
	}
	return out
}

func statusOf(t testing.TB, s string) int {
	t.Helper()
	if len(s) < 12 || !strings.HasPrefix(s, "HTTP/1.") {
		t.Fatalf("not a response: %q", s)
	}
	n := 0
	for _, c := range s[9:12] {
		n = n*10 + int(c-'0')
	}
	return n
}
