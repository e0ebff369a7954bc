package httpcore

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"path"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"tlsedge/router"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

func TestCanonicalPath(t *testing.T) {
	tests := []struct {
		in, path, raw string
		status        int // 0: accepted
	}{
		{"/", "/", "", 0},
		{"/a/b", "/a/b", "", 0},
		{"/a/", "/a/", "", 0},
		{"//", "/", "", 0},
		{"/a//b///c", "/a/b/c", "", 0},
		{"/a/./b/.", "/a/b/", "", 0},
		{"/a/b/../c", "/a/c", "", 0},
		{"/a/b/..", "/a/", "", 0},
		{"/a/..", "/", "", 0},
		{"/admin/../secret.txt", "/secret.txt", "", 0},
		{"/admin/%2e%2e/secret.txt", "/secret.txt", "", 0},
		{"/admin/.%2E/secret.txt", "/secret.txt", "", 0},
		{"/%61dmin/%7e", "/admin/~", "", 0},
		{"/a%3bb", "/a;b", "/a%3Bb", 0},      // reserved: kept encoded, hex upper-cased
		{"/a;b", "/a;b", "", 0},              // as sent
		{"/a!b", "/a!b", "/a!b", 0},          // url.URL would escape '!'
		{"/a%21b", "/a!b", "", 0},            // ... and so does the client
		{"/caf%c3%a9", "/café", "", 0},       // non-ASCII stays encoded
		{"/a%25b", "/a%b", "", 0},            // a literal '%'
		{"/a[b]", "/a[b]", "", 0},            // not allowed raw: encoded
		{"/..", "", "", 400},                 // above the root
		{"/a/../..", "", "", 400},            //
		{"/%2e%2e/x", "", "", 400},           //
		{"/a%2fb", "", "", 400},              // encoded slash
		{"/a%2F..%2Fb", "", "", 400},         //
		{"/a\\b", "", "", 400},               // backslash
		{"/a%5Cb", "", "", 400},              //
		{"/a%00", "", "", 400},               // NUL
		{"/a%0d%0a", "", "", 400},            // CR LF
		{"/a%7f", "", "", 400},               // DEL
		{"/a%zz", "", "", 400},               // bad escape
		{"/a%2", "", "", 400},                //
		{"/a%", "", "", 400},                 //
		{"/a b", "", "", 400},                // raw space
		{"/caf\xc3\xa9", "", "", 400},        // raw non-ASCII
		{"a/b", "", "", 400},                 // not rooted
		{"/a%2F..%2Fb/../../x", "", "", 400}, // the slash first
		{"/public/../admin/%2e/x", "/admin/x", "", 0},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			p, raw, rerr := canonicalPath(tt.in, false)
			if tt.status != 0 {
				if rerr == nil || rerr.status != tt.status {
					t.Fatalf("got %q %q %v, want %d", p, raw, rerr, tt.status)
				}
				return
			}
			if rerr != nil || p != tt.path || raw != tt.raw {
				t.Fatalf("got %q %q %v, want %q %q", p, raw, rerr, tt.path, tt.raw)
			}
			u := url.URL{Path: p, RawPath: raw}
			if p2, raw2, rerr := canonicalPath(u.EscapedPath(), false); rerr != nil || p2 != p || raw2 != raw {
				t.Fatalf("not idempotent: %q -> %q %q %v", u.EscapedPath(), p2, raw2, rerr)
			}
		})
	}
	t.Run("AllowEncodedSlash", func(t *testing.T) {
		if p, raw, rerr := canonicalPath("/a%2fb/c", true); rerr != nil || p != "/a/b/c" || raw != "/a%2Fb/c" {
			t.Fatalf("got %q %q %v", p, raw, rerr)
		}
		for _, in := range []string{"/a%2F..%2Fb", "/a%2F%2Fb", "/%2F..", "/a%2F.%2Fb"} {
			if _, _, rerr := canonicalPath(in, true); rerr == nil {
				t.Errorf("%s accepted: its decoded path has dot or empty segments", in)
			}
		}
	})
}

// upstream is a raw HTTP/1.1 server on loopback that records each request
// line exactly as it arrives (net/http's server would refuse some of them
// before a handler could see them) and answers 200 with it as the body.
type upstream struct {
	addr  string
	mu    sync.Mutex
	lines []string
}

func startUpstream(t testing.TB) *upstream {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	u := &upstream{addr: ln.Addr().String()}
	go func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			go u.serve(nc)
		}
	}()
	return u
}

func (u *upstream) serve(nc net.Conn) {
	defer nc.Close()
	br := bufio.NewReader(nc)
	for {
		nc.SetReadDeadline(time.Now().Add(10 * time.Second))
		line, err := br.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimSuffix(line, "\r\n")
		u.mu.Lock()
		u.lines = append(u.lines, line)
		u.mu.Unlock()
		n := int64(0)
		for {
			h, err := br.ReadString('\n')
			if err != nil {
				return
			}
			if h == "\r\n" {
				break
			}
			if k, v, ok := strings.Cut(h, ":"); ok && strings.EqualFold(k, "Content-Length") {
				n, _ = strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			}
		}
		io.CopyN(io.Discard, br, n)
		io.WriteString(nc, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: "+strconv.Itoa(len(line))+"\r\n\r\n"+line)
	}
}

// take returns the request lines received so far and forgets them.
func (u *upstream) take() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	l := u.lines
	u.lines = nil
	return l
}

// guardedEdge is the edge under attack: a path rule that, like
// policy.PeerPolicy.AllowPath, cleans the path and denies the /admin
// prefix, in front of a dispatcher with proxy mounts /admin and /.
func guardedEdge(t testing.TB, admin, root *upstream) http.Handler {
	t.Helper()
	d := router.NewDispatcher()
	for prefix, up := range map[string]*upstream{"/admin": admin, "/": root} {
		if err := d.Mount(prefix, httputil.NewSingleHostReverseProxy(&url.URL{Scheme: "http", Host: up.addr})); err != nil {
			t.Fatal(err)
		}
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := path.Clean("/" + r.URL.Path)
		if p == "/admin" || strings.HasPrefix(p, "/admin/") {
			http.Error(w, "denied by path rule", http.StatusForbidden)
			return
		}
		d.ServeHTTP(w, r)
	})
}

// The canonical request over HTTP/1.1, through a path rule, a dispatcher
// and a real proxy: the rule, the mount and the upstream's request line
// agree on one path.
func TestCanonicalRequestHTTP1(t *testing.T) {
	admin, root := startUpstream(t), startUpstream(t)
	ts := startServer(t, guardedEdge(t, admin, root), nil)
	long := strings.Repeat("M", 300)
	tests := []struct {
		name, raw string
		status    int
		admin     []string // request lines the /admin upstream must see
		root      []string // ... and the root one
		body      string   // in the response, when set
	}{
		{"plain admin denied", "GET /admin/secret.txt HTTP/1.1\r\nHost: a\r\n\r\n", 403, nil, nil, "denied"},
		{"dot segments", "GET /admin/../secret.txt HTTP/1.1\r\nHost: a\r\n\r\n", 200, nil, []string{"GET /secret.txt HTTP/1.1"}, ""},
		{"encoded dot segments", "GET /admin/%2e%2e/secret.txt HTTP/1.1\r\nHost: a\r\n\r\n", 200, nil, []string{"GET /secret.txt HTTP/1.1"}, ""},
		{"mixed dot segments", "GET /admin/.%2E/secret.txt HTTP/1.1\r\nHost: a\r\n\r\n", 200, nil, []string{"GET /secret.txt HTTP/1.1"}, ""},
		{"absolute-form dot segments", "GET http://a/admin/../secret.txt HTTP/1.1\r\nHost: a\r\n\r\n", 200, nil, []string{"GET /secret.txt HTTP/1.1"}, ""},
		{"rule holds: into admin", "GET /public/../admin/x HTTP/1.1\r\nHost: a\r\n\r\n", 403, nil, nil, ""},
		{"rule holds: dot", "GET /admin/./x HTTP/1.1\r\nHost: a\r\n\r\n", 403, nil, nil, ""},
		{"rule holds: slashes", "GET //admin//x HTTP/1.1\r\nHost: a\r\n\r\n", 403, nil, nil, ""},
		{"rule holds: encoded letter", "GET /%61dmin/x HTTP/1.1\r\nHost: a\r\n\r\n", 403, nil, nil, ""},
		{"normalised upstream line", "GET /x//y/./%7e/%3b?q=%2e HTTP/1.1\r\nHost: a\r\n\r\n", 200, nil, []string{"GET /x/y/~/%3B?q=%2e HTTP/1.1"}, ""},
		{"above the root", "GET /.. HTTP/1.1\r\nHost: a\r\n\r\n", 400, nil, nil, "climbs above the root"},
		{"above the root, encoded", "GET /x/%2e%2e/%2E%2E/etc HTTP/1.1\r\nHost: a\r\n\r\n", 400, nil, nil, "climbs above the root"},
		{"encoded slash", "GET /admin%2F..%2Fx HTTP/1.1\r\nHost: a\r\n\r\n", 400, nil, nil, "encoded slash"},
		{"backslash", "GET /admin\\..\\x HTTP/1.1\r\nHost: a\r\n\r\n", 400, nil, nil, "backslash"},
		{"encoded backslash", "GET /admin%5c..%5cx HTTP/1.1\r\nHost: a\r\n\r\n", 400, nil, nil, "backslash"},
		{"NUL", "GET /x%00.txt HTTP/1.1\r\nHost: a\r\n\r\n", 400, nil, nil, "control character"},
		{"OPTIONS *", "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", 200, nil, nil, ""},
		{"GET *", "GET * HTTP/1.1\r\nHost: a\r\n\r\n", 400, nil, nil, "asterisk"},
		{"long method", long + " / HTTP/1.1\r\nHost: a\r\n\r\n", 501, nil, nil, "method token too long"},
		{"lower-case method", "get / HTTP/1.1\r\nHost: a\r\n\r\n", 501, nil, nil, "method not implemented"},
		{"mixed-case method", "Get / HTTP/1.1\r\nHost: a\r\n\r\n", 501, nil, nil, "method not implemented"},
		{"upper-case extension method", "M-SEARCH / HTTP/1.1\r\nHost: a\r\n\r\n", 200, nil, []string{"M-SEARCH / HTTP/1.1"}, ""},
		{"32-byte method", strings.Repeat("M", 32) + " / HTTP/1.1\r\nHost: a\r\n\r\n", 200, nil, []string{strings.Repeat("M", 32) + " / HTTP/1.1"}, ""},
		{"Content-Length values differ", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", 400, nil, nil, "Content-Length"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, closed := ts.exchange(t, tt.raw, 300*time.Millisecond)
			if got := statusOf(t, out); got != tt.status {
				t.Errorf("status %d, want %d\n%s", got, tt.status, out)
			}
			if tt.body != "" && !strings.Contains(out, tt.body) {
				t.Errorf("response lacks %q:\n%s", tt.body, out)
			}
			if tt.status >= 400 && tt.status != 403 && !closed {
				t.Errorf("connection left open after %d", tt.status)
			}
			if got := admin.take(); !equalLines(got, tt.admin) {
				t.Errorf("/admin upstream saw %q, want %q", got, tt.admin)
			}
			if got := root.take(); !equalLines(got, tt.root) {
				t.Errorf("root upstream saw %q, want %q", got, tt.root)
			}
		})
	}
	t.Run("OPTIONS * answered by the core", func(t *testing.T) {
		out, closed := ts.exchange(t, "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", 300*time.Millisecond)
		r := parseResponses(t, out, "OPTIONS")[0]
		b, _ := io.ReadAll(r.Body)
		if r.StatusCode != 200 || r.Header.Get("Allow") != allowedMethods || len(b) != 0 || r.ContentLength != 0 || closed {
			t.Fatalf("%d Allow %q body %q closed %v", r.StatusCode, r.Header.Get("Allow"), b, closed)
		}
	})
	rejections := map[string]uint64{}
	for _, rj := range ts.core.Stats().Rejections {
		rejections[strconv.Itoa(rj.Status)+" "+rj.Reason] = rj.Count
	}
	for k, want := range map[string]uint64{"400 bad_path": 6, "501 unknown_method": 3, "400 bad_content_length": 1} {
		if rejections[k] != want {
			t.Errorf("rejections %s = %d, want %d (%v)", k, rejections[k], want, rejections)
		}
	}
}

func equalLines(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// h2Result is what a raw h2 exchange got back on its stream.
type h2Result struct {
	status int
	header http.Header
	body   string
	reset  http2.ErrCode // set when the stream was reset instead
}

// h2Raw sends one request on a fresh h2 connection with the Framer, so that
// pseudo-header values Go's Transport refuses to send (a space in :path,
// CONNECT without a tunnel, lower-case methods) go out as written.
func h2Raw(t testing.TB, addr string, tlsConf *tls.Config, fields [][2]string, body string) h2Result {
	t.Helper()
	cfg := tlsConf.Clone()
	cfg.NextProtos = []string{"h2"}
	cfg.ServerName = "127.0.0.1"
	tc, err := tls.Dial("tcp", addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	if tc.ConnectionState().NegotiatedProtocol != "h2" {
		t.Fatal("h2 not negotiated")
	}
	tc.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(tc, http2.ClientPreface)
	fr := http2.NewFramer(tc, tc)
	fr.WriteSettings()
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	for _, f := range fields {
		enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hb.Bytes(), EndStream: body == "", EndHeaders: true}); err != nil {
		t.Fatal(err)
	}
	if body != "" {
		fr.WriteData(1, true, []byte(body))
	}
	res := h2Result{header: http.Header{}}
	var got strings.Builder
	dec := hpack.NewDecoder(4096, func(f hpack.HeaderField) {
		if f.Name == ":status" {
			res.status, _ = strconv.Atoi(f.Value)
			return
		}
		res.header.Add(f.Name, f.Value)
	})
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("reading frames: %v", err)
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				fr.WriteSettingsAck()
			}
		case *http2.HeadersFrame:
			if _, err := dec.Write(f.HeaderBlockFragment()); err != nil {
				t.Fatal(err)
			}
			if f.StreamEnded() {
				res.body = got.String()
				return res
			}
		case *http2.DataFrame:
			got.Write(f.Data())
			if f.StreamEnded() {
				res.body = got.String()
				return res
			}
		case *http2.RSTStreamFrame:
			res.reset = f.ErrCode
			return res
		case *http2.GoAwayFrame:
			t.Fatalf("GOAWAY %v", f.ErrCode)
		}
	}
}

// The same rules over h2: x/net/http2 hands the core requests HTTP/1.1
// parsing would refuse, and they must not reach the upstream.
func TestCanonicalRequestH2(t *testing.T) {
	admin, root := startUpstream(t), startUpstream(t)
	c := newCore(t, guardedEdge(t, admin, root), nil)
	addr, client := startTLS(t, c)
	tlsConf := client.Transport.(*http.Transport).TLSClientConfig
	req := func(method, p string, extra ...[2]string) [][2]string {
		f := [][2]string{{":method", method}, {":scheme", "https"}, {":authority", "127.0.0.1"}, {":path", p}}
		return append(f, extra...)
	}
	tests := []struct {
		name   string
		fields [][2]string
		body   string
		status int
		root   []string
		text   string
		reset  bool // x/net may reset the stream itself instead
	}{
		{"plain", req("GET", "/x"), "", 200, []string{"GET /x HTTP/1.1"}, "", false},
		{"admin denied", req("GET", "/admin/secret.txt"), "", 403, nil, "denied", false},
		{"dot segments", req("GET", "/admin/../secret.txt"), "", 200, []string{"GET /secret.txt HTTP/1.1"}, "", false},
		{"encoded dot segments", req("GET", "/admin/%2e%2e/secret.txt"), "", 200, []string{"GET /secret.txt HTTP/1.1"}, "", false},
		{"rule holds", req("GET", "//admin/./x"), "", 403, nil, "", false},
		{"above the root", req("GET", "/a/../../x"), "", 400, nil, "climbs above the root", false},
		{"encoded slash", req("GET", "/admin%2fx"), "", 400, nil, "encoded slash", false},
		{"space in :path", req("GET", "/m9?a=b c"), "", 400, nil, "malformed request target", false},
		{"tab in :path", req("GET", "/m9\tx"), "", 400, nil, "malformed request target", true},
		{"CONNECT", [][2]string{{":method", "CONNECT"}, {":authority", "example.com:443"}}, "", 405, nil, "CONNECT", false},
		{"GET *", req("GET", "*"), "", 400, nil, "asterisk", false},
		{"OPTIONS *", req("OPTIONS", "*"), "", 200, nil, "", false},
		{"Content-Length values differ", req("POST", "/x", [2]string{"content-length", "3"}, [2]string{"content-length", "4"}), "abc", 400, nil, "Content-Length", false},
		{"Content-Length list", req("POST", "/x", [2]string{"content-length", "3, 3"}), "", 400, nil, "Content-Length", false},
		{"Content-Length twice, same", req("POST", "/x", [2]string{"content-length", "3"}, [2]string{"content-length", "3"}), "abc", 200, []string{"POST /x HTTP/1.1"}, "", false},
		{"long method", req(strings.Repeat("M", 300), "/x"), "", 501, nil, "method token too long", false},
		{"lower-case method", req("get", "/x"), "", 501, nil, "method not implemented", false},
		{"method not a token", req("G T", "/x"), "", 400, nil, "malformed method", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := h2Raw(t, addr, tlsConf, tt.fields, tt.body)
			switch {
			case tt.reset && res.reset == http2.ErrCodeProtocol:
				t.Logf("reset by x/net/http2")
			case res.reset != 0 || res.status != tt.status:
				t.Errorf("status %d (reset %v) %q, want %d", res.status, res.reset, res.body, tt.status)
			}
			if tt.text != "" && res.reset == 0 && !strings.Contains(res.body, tt.text) {
				t.Errorf("body %q lacks %q", res.body, tt.text)
			}
			if tt.name == "OPTIONS *" && (res.header.Get("allow") != allowedMethods || res.body != "") {
				t.Errorf("OPTIONS *: Allow %q body %q", res.header.Get("allow"), res.body)
			}
			if got := admin.take(); len(got) != 0 {
				t.Errorf("/admin upstream saw %q", got)
			}
			if got := root.take(); !equalLines(got, tt.root) {
				t.Errorf("root upstream saw %q, want %q", got, tt.root)
			}
		})
	}
	rejections := map[string]uint64{}
	for _, rj := range c.Stats().Rejections {
		rejections[strconv.Itoa(rj.Status)+" "+rj.Reason] = rj.Count
	}
	for k, want := range map[string]uint64{"400 bad_path": 2, "400 bad_target": 2, "405 connect": 1, "400 bad_content_length": 2, "501 unknown_method": 2, "400 bad_method": 1} {
		if rejections[k] != want {
			t.Errorf("rejections %s = %d, want %d (%v)", k, rejections[k], want, rejections)
		}
	}
}
