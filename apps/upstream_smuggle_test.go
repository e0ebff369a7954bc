package apps

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// wireUpstream is an upstream that keeps every byte it receives, per
// connection, and reads its stream with net/http's own request parser (an
// independent judge of where one request ends and the next begins),
// answering each request it finds with a 200 "ok".
type wireUpstream struct {
	addr string

	mu       sync.Mutex
	raw      map[int]*bytes.Buffer
	requests []loggedRequest
	errs     []string // the parser's complaints, other than a clean EOF
	conns    int
}

type loggedRequest struct {
	conn        int
	method, uri string
	hosts       []string
	body        string
	cl          string
	te          []string
}

func newWireUpstream(t *testing.T) *wireUpstream {
	t.Helper()
	u := &wireUpstream{raw: map[int]*bytes.Buffer{}}
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
			u.raw[id] = &bytes.Buffer{}
			u.mu.Unlock()
			go u.serve(c, id)
		}
	}()
	return u
}

// teeBuffer records what a connection reads.
type teeBuffer struct {
	u  *wireUpstream
	id int
}

func (tb teeBuffer) Write(p []byte) (int, error) {
	tb.u.mu.Lock()
	defer tb.u.mu.Unlock()
	return tb.u.raw[tb.id].Write(p)
}

func (u *wireUpstream) serve(c net.Conn, id int) {
	defer c.Close()
	br := bufio.NewReader(io.TeeReader(c, teeBuffer{u, id}))
	for {
		req, err := http.ReadRequest(br)
		if err != nil {
			if err != io.EOF {
				u.mu.Lock()
				u.errs = append(u.errs, err.Error())
				u.mu.Unlock()
			}
			return
		}
		body, berr := io.ReadAll(req.Body)
		lr := loggedRequest{conn: id, method: req.Method, uri: req.RequestURI, hosts: append([]string{req.Host}, req.Header.Values("Host")...),
			body: string(body), cl: req.Header.Get("Content-Length"), te: req.TransferEncoding}
		u.mu.Lock()
		u.requests = append(u.requests, lr)
		u.mu.Unlock()
		if berr != nil {
			// The edge cut a body it found broken: the connection ends here.
			return
		}
		if _, err := io.WriteString(c, okAnswer); err != nil {
			return
		}
	}
}

func (u *wireUpstream) snapshot() (reqs []loggedRequest, errs []string, raw string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	var all strings.Builder
	for i := 1; i <= u.conns; i++ {
		all.Write(u.raw[i].Bytes())
	}
	return append([]loggedRequest(nil), u.requests...), append([]string(nil), u.errs...), all.String()
}

// Request smuggling through the proxy, over real sockets: raw bytes from a
// client into the request core, on to an upstream that logs every byte it
// gets and parses them with net/http. Whatever the client's framing tricks
// (CL.TE, TE.CL, Transfer-Encoding obfuscations, two Content-Lengths, bare
// LF, obs-fold, NUL bytes, broken chunking), the upstream never finds a
// request the edge did not send as one: nothing of the smuggled request
// reaches it as a request, it parses everything it got cleanly, and it sees
// no more requests than the client got answers. An absolute-form target
// with a different Host reaches the upstream with exactly one Host.
func TestProxySmugglingToWireUpstream(t *testing.T) {
	const smuggled = "GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
	tests := []struct {
		name    string
		payload string
		class   byte // first digit of the first answer's status, 0 for any 4xx
	}{
		{"CL.TE", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled, '4'},
		{"TE.CL", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n" + fmt.Sprintf("%x\r\n%s\r\n0\r\n\r\n", len(smuggled), smuggled), '4'},
		{"TE xchunked", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n" + smuggled, '4'},
		{"TE space before colon", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n" + smuggled, '4'},
		{"TE chunked then identity", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n" + smuggled, '4'},
		{"TE chunked, identity", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n" + smuggled, '4'},
		{"TE quoted", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: \"chunked\"\r\n\r\n0\r\n\r\n" + smuggled, '4'},
		{"TE vertical tab", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\x0b\r\n\r\n0\r\n\r\n" + smuggled, '4'},
		{"TE obs-fold", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n" + smuggled, '4'},
		{"TE in HTTP/1.0", "POST / HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled, '4'},
		{"two Content-Lengths", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nContent-Length: 40\r\n\r\n" + smuggled, '4'},
		{"Content-Length list", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0, 40\r\n\r\n" + smuggled, '4'},
		{"Content-Length with sign", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +0\r\n\r\n" + smuggled, '4'},
		{"bare LF head", "POST / HTTP/1.1\nHost: x\nContent-Length: 0\n\n" + smuggled, '4'},
		{"bare LF in a field", "POST / HTTP/1.1\r\nHost: x\nContent-Length: 40\r\n\r\n" + smuggled, '4'},
		{"bare CR in a field", "POST / HTTP/1.1\r\nHost: x\r\nX: a\rContent-Length: 40\r\n\r\n" + smuggled, '4'},
		{"obs-fold", "GET / HTTP/1.1\r\nHost: x\r\nX: a\r\n Content-Length: 40\r\n\r\n" + smuggled, '4'},
		{"NUL in a value", "GET / HTTP/1.1\r\nHost: x\r\nX: a\x00b\r\n\r\n" + smuggled, '4'},
		{"NUL in the target", "GET /a\x00 HTTP/1.1\r\nHost: x\r\n\r\n" + smuggled, '4'},
		{"chunk size overflow", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffff1\r\nx\r\n0\r\n\r\n" + smuggled, '4'},
		{"chunk size 0x", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n" + smuggled, '4'},
		{"chunk without CRLF", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n" + smuggled, '4'},
		{"chunk size bare LF", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n" + smuggled, '4'},
		{"two Hosts", "GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n" + smuggled, '4'},
	}
	statusLine := regexp.MustCompile(`(?m)^HTTP/1\.[01] ([1-5])[0-9][0-9] `)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up := newWireUpstream(t)
			front, _ := serveCore(t, map[string]http.Handler{"/": mustNew(t, "http://"+up.addr, Env{})}, nil)
			c, err := net.Dial("tcp", strings.TrimPrefix(front, "http://"))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			io.WriteString(c, tt.payload)
			out, err := io.ReadAll(c)
			if err != nil {
				t.Fatalf("no clean end (hang or reset): %v; got %q", err, out)
			}
			answers := statusLine.FindAllSubmatch(out, -1)
			if len(answers) != 1 {
				t.Errorf("%d answers, want exactly 1 then a close: %q", len(answers), out)
			}
			if len(answers) > 0 && answers[0][1][0] != tt.class {
				t.Errorf("first answer %q, want %cxx", firstLineOf(out), tt.class)
			}
			// A request head may have gone out before a broken body was
			// found: give the upstream a moment to log what it got.
			time.Sleep(50 * time.Millisecond)
			reqs, errs, raw := up.snapshot()
			for _, r := range reqs {
				if strings.Contains(r.uri, "smuggled") {
					t.Errorf("the smuggled request reached the upstream: %+v", r)
				}
			}
			if len(reqs) > len(answers) {
				t.Errorf("upstream found %d requests for %d answers: %+v", len(reqs), len(answers), reqs)
			}
			for _, e := range errs {
				if !strings.Contains(e, "unexpected EOF") {
					t.Errorf("upstream could not parse what it got (%s): %q", e, raw)
				}
			}
		})
	}
}

// An absolute-form target names the host; a Host field that says otherwise
// is not passed on beside it: the upstream gets one Host, the target's.
func TestProxyAbsoluteFormOneHost(t *testing.T) {
	up := newWireUpstream(t)
	front, _ := serveCore(t, map[string]http.Handler{"/": mustNew(t, "http://"+up.addr, Env{})}, nil)
	c, err := net.Dial("tcp", strings.TrimPrefix(front, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, "GET http://target.example:8080/abs?q=1 HTTP/1.1\r\nHost: other.example\r\nConnection: close\r\n\r\n")
	out, err := io.ReadAll(c)
	if err != nil || !strings.HasPrefix(string(out), "HTTP/1.1 200 ") {
		t.Fatalf("answer %q (%v)", out, err)
	}
	reqs, errs, raw := up.snapshot()
	if len(reqs) != 1 || len(errs) != 0 {
		t.Fatalf("upstream: %+v %v", reqs, errs)
	}
	r := reqs[0]
	if r.uri != "/abs?q=1" || len(r.hosts) != 1 || r.hosts[0] != "target.example:8080" {
		t.Errorf("upstream got %s %s with Host %q", r.method, r.uri, r.hosts)
	}
	if n := strings.Count(strings.ToLower(raw), "\r\nhost:"); n != 1 {
		t.Errorf("%d Host fields on the wire: %q", n, raw)
	}
	if strings.Contains(raw, "other.example") && !strings.Contains(raw, "X-Forwarded-Host: other.example") {
		t.Logf("raw: %q", raw)
	}
}

func firstLineOf(b []byte) string {
	s, _, _ := strings.Cut(string(b), "\r\n")
	return s
}
