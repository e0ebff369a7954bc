package httpcore

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"path"
	"strconv"
	"strings"
	"testing"
	"time"
	"tlsedge/conninfo"
	"tlsedge/router"
)

// memConn is a net.Conn over an in-memory input: reads come from r, writes
// go to w; deadlines are ignored. It lets fuzz targets and benchmarks drive
// the whole connection loop without sockets.
type memConn struct {
	r io.Reader
	w io.Writer
}

func (m *memConn) Read(p []byte) (int, error)         { return m.r.Read(p) }
func (m *memConn) Write(p []byte) (int, error)        { return m.w.Write(p) }
func (m *memConn) Close() error                       { return nil }
func (m *memConn) LocalAddr() net.Addr                { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 443} }
func (m *memConn) RemoteAddr() net.Addr               { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 50000} }
func (m *memConn) SetDeadline(t time.Time) error      { return nil }
func (m *memConn) SetReadDeadline(t time.Time) error  { return nil }
func (m *memConn) SetWriteDeadline(t time.Time) error { return nil }

var seedHeads = []string{
	"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
	"GET /a/b?c=d HTTP/1.1\r\nHost: example.com\r\nUser-Agent: x\r\nAccept: */*\r\n\r\n",
	"POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc",
	"POST /p HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
	"GET http://example.com/x HTTP/1.1\r\nHost: b\r\n\r\n",
	"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
	"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nX: y\r\n z\r\n\r\n",
	"GET / HTTP/1.1\r\nhost: a\r\ncontent-length: 0\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
	"GET /%zz HTTP/1.1\r\nHost: a\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: [::1]:80\r\n\r\n",
}

func parseBytes(in []byte) (*head, error) {
	br := bufio.NewReaderSize(bytes.NewReader(in), 4096)
	raw, err := readHead(br, nil, 8192, nil)
	if err != nil {
		return nil, err
	}
	var h head
	if _, rerr := parseHead(raw, nil, 1<<20, &h, new(url.URL)); rerr != nil {
		return nil, rerr
	}
	return &h, nil
}

// FuzzParseHead: no panics, and whatever is accepted is clean.
func FuzzParseHead(f *testing.F) {
	for _, s := range seedHeads {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		h, err := parseBytes(in)
		if err != nil {
			return
		}
		if !isToken(h.method) {
			t.Fatalf("method %q", h.method)
		}
		for k, vs := range h.header {
			if !isToken(k) || http.CanonicalHeaderKey(k) != k {
				t.Fatalf("name %q", k)
			}
			for _, v := range vs {
				if strings.ContainsAny(v, "\r\n\x00") {
					t.Fatalf("value %q", v)
				}
			}
		}
		if h.minor == 1 && h.host == "" {
			t.Fatal("HTTP/1.1 without host accepted")
		}
		if h.chunked && h.contentLength >= 0 {
			t.Fatal("both chunked and Content-Length")
		}
	})
}

// FuzzDifferentialReadRequest: where net/http's ReadRequest rejects a head,
// we reject it too (we may be stricter, never more lenient), and where both
// accept they agree on what the request is.
func FuzzDifferentialReadRequest(f *testing.F) {
	for _, s := range seedHeads {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		ours, err := parseBytes(in)
		theirs, terr := http.ReadRequest(bufio.NewReader(bytes.NewReader(in)))
		if err != nil {
			return
		}
		if terr != nil {
			t.Fatalf("we accept what net/http rejects (%v): %q", terr, in)
		}
		if theirs.Method != ours.method || theirs.RequestURI != ours.target || theirs.URL.Path != ours.url.Path || theirs.Host != ours.host {
			t.Fatalf("disagree: ours %s %q %q host %q; net/http %s %q %q host %q", ours.method, ours.target, ours.url.Path, ours.host, theirs.Method, theirs.RequestURI, theirs.URL.Path, theirs.Host)
		}
		if ours.chunked != (len(theirs.TransferEncoding) > 0) || !ours.chunked && ours.contentLength != theirs.ContentLength {
			t.Fatalf("framing disagrees: ours chunked=%v len=%d; net/http %v %d", ours.chunked, ours.contentLength, theirs.TransferEncoding, theirs.ContentLength)
		}
	})
}

// readChunked decodes a chunked body with the core's body reader.
func readChunked(t testing.TB, c *Core, in []byte, limit int64) ([]byte, error) {
	nc := &memConn{r: bytes.NewReader(in), w: io.Discard}
	cn := &conn{core: c, nc: nc}
	cn.bufs = c.getBufs(nc, io.Discard)
	cn.resp = &response{cn: cn}
	b := &body{cn: cn, chunked: true, limit: limit}
	return io.ReadAll(b)
}

// FuzzChunkedBody: never more lenient than net/http's chunked reader, and
// the same bytes out when both accept.
func FuzzChunkedBody(f *testing.F) {
	for _, s := range []string{"0\r\n\r\n", "3\r\nabc\r\n0\r\n\r\n", "3;x=y\r\nabc\r\n0\r\nT: v\r\n\r\n", "fffffffffffffffff\r\n", "1\r\na\r\n"} {
		f.Add([]byte(s))
	}
	c, err := New(DefaultOptions())
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		got, err := readChunked(t, c, in, 1<<20)
		if err != nil {
			return
		}
		want, terr := io.ReadAll(httputil.NewChunkedReader(bytes.NewReader(in)))
		if terr != nil {
			t.Fatalf("we accept what net/http rejects (%v): %q", terr, in)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("body %q, net/http %q", got, want)
		}
	})
}

// FuzzConn drives the whole connection loop: no panic, and the output is a
// sequence of well-formed responses.
func FuzzConn(f *testing.F) {
	for _, s := range seedHeads {
		f.Add([]byte(s + s))
	}
	o := DefaultOptions()
	o.MaxRequestBodySize = 1 << 16
	echo := echoHandler()
	o.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == "HEAD" {
			return // the reader below parses every response as a GET's
		}
		echo.ServeHTTP(w, r)
	})
	c, err := New(o)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		var out bytes.Buffer
		c.ServeConn(&memConn{r: bytes.NewReader(in), w: &out}, &conninfo.Info{Transport: "tcp"})
		br := bufio.NewReader(&out)
		for out.Len() > 0 || br.Buffered() > 0 {
			resp, err := http.ReadResponse(br, &http.Request{Method: "GET"})
			if err != nil {
				t.Fatalf("bad response stream (%v): %q", err, out.String())
			}
			if _, err := io.Copy(io.Discard, resp.Body); err != nil {
				t.Fatalf("bad response body (%v)", err)
			}
		}
	})
}

// FuzzCanonicalRequest feeds request-targets through a real Core and a
// dispatcher, and checks that whatever is accepted has one canonical path:
// no dot segments, no empty segments, no escaped unreserved characters,
// upper-case escapes, never above "/", unchanged when normalised again; and
// that the mount the dispatcher chose, the mount a path rule (cleaning the
// path as policy.PeerPolicy.AllowPath does) would judge, and the path on a
// proxy's upstream request line all agree. The same target, handed over
// the way x/net/http2 hands an h2 request, must give the same result.
func FuzzCanonicalRequest(f *testing.F) {
	for _, s := range []string{
		"/", "/a/b", "/admin/../secret.txt", "/admin/%2e%2e/secret.txt", "/a/./b/", "//a//b",
		"/..", "/a/../..", "/%2e%2E/x", "/a%2fb", "/a%5cb", "/a\\b", "/%00", "/a%3Bb", "/a;b/c",
		"/x!y/z", "/x%21y", "/~u/%7e", "/%2541/x", "/caf%c3%a9", "/a[b]", "/a?q=/../", "*",
		"http://h/a/../b", "http://h", "http://h?x", "/a%zz", "/.%2e/a", "/a/b/%2E%2e/%2e/c",
	} {
		f.Add(s)
	}
	mounts := []string{"/a/b", "/a;b", "/x!y", "/%41", "/~u", "/a", "/"}
	d := router.NewDispatcher()
	for _, m := range mounts {
		prefix := m
		base := &url.URL{Scheme: "http", Host: "upstream"}
		d.Mount(m, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			pr := &httputil.ProxyRequest{In: r, Out: r.Clone(r.Context())}
			pr.SetURL(base)
			h := w.Header()
			h.Set("X-Mount", prefix)
			h.Set("X-Rest", strconv.Quote(r.URL.Path))
			h.Set("X-Rest-Escaped", strconv.Quote(r.URL.EscapedPath()))
			h.Set("X-Upstream", strconv.Quote(pr.Out.URL.RequestURI()))
			h.Set("X-Upstream-Path", strconv.Quote(pr.Out.URL.Path))
		}))
	}
	// The path rule's view, before the dispatcher, as AllowPath sees it.
	rule := func(p string) string {
		clean := path.Clean("/" + p)
		for _, m := range mounts {
			if m == "/" || clean == m || strings.HasPrefix(clean, m+"/") {
				return m
			}
		}
		return ""
	}
	o := DefaultOptions()
	o.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Path", strconv.Quote(r.URL.Path))
		w.Header().Set("X-Escaped", strconv.Quote(r.URL.EscapedPath()))
		w.Header().Set("X-Rule", rule(r.URL.Path))
		d.ServeHTTP(w, r)
	})
	c, err := New(o)
	if err != nil {
		f.Fatal(err)
	}
	unquote := func(t *testing.T, h http.Header, k string) string {
		s, err := strconv.Unquote(h.Get(k))
		if err != nil {
			t.Fatalf("%s %q: %v", k, h.Get(k), err)
		}
		return s
	}
	f.Fuzz(func(t *testing.T, target string) {
		var out bytes.Buffer
		in := "GET " + target + " HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
		c.ServeConn(&memConn{r: strings.NewReader(in), w: &out}, &conninfo.Info{Transport: "tcp"})
		resp, err := http.ReadResponse(bufio.NewReader(&out), nil)
		if err != nil {
			t.Fatalf("bad response (%v): %q", err, out.String())
		}
		h2Path, h2Escaped, h2ok := h2Canonical(c, target)
		if resp.StatusCode != 200 {
			if h2ok {
				t.Fatalf("%q: HTTP/1.1 %d, h2 accepted as %q", target, resp.StatusCode, h2Escaped)
			}
			return
		}
		if target == "*" {
			return // OPTIONS only; GET * is refused above
		}
		h := resp.Header
		p, esc := unquote(t, h, "X-Path"), unquote(t, h, "X-Escaped")
		checkCanonical(t, target, p, esc)
		if strings.HasPrefix(target, "/") && (!h2ok || h2Path != p || h2Escaped != esc) {
			t.Fatalf("%q: HTTP/1.1 gives %q (%q), h2 %q (%q) ok=%v", target, p, esc, h2Path, h2Escaped, h2ok)
		}
		mount := h.Get("X-Mount")
		if r := h.Get("X-Rule"); r != mount {
			t.Fatalf("%q: path %q dispatched to %q, the path rule judged it as %q", target, p, mount, r)
		}
		rest, restEsc := unquote(t, h, "X-Rest"), unquote(t, h, "X-Rest-Escaped")
		if mount != "/" && (mount+rest != p || !strings.HasSuffix(esc, restEsc)) {
			t.Fatalf("%q: mount %q got %q (%q) of %q (%q)", target, mount, rest, restEsc, p, esc)
		}
		upPath, upURI := unquote(t, h, "X-Upstream-Path"), unquote(t, h, "X-Upstream")
		upEsc, _, _ := strings.Cut(upURI, "?")
		want := rest
		if want == "" {
			want = "/"
		}
		if upPath != want {
			t.Fatalf("%q: upstream path %q, want %q", target, upPath, want)
		}
		checkCanonical(t, target, upPath, upEsc)
	})
}

// h2Canonical runs target through canonicalize as an h2 request from
// x/net/http2 would arrive: RequestURI as sent, URL from ParseRequestURI.
func h2Canonical(c *Core, target string) (path, escaped string, ok bool) {
	if target == "" || target[0] != '/' && target != "*" {
		return "", "", false // refused by x/net/http2
	}
	u, err := url.ParseRequestURI(target)
	if err != nil {
		return "", "", false // refused by x/net/http2
	}
	r := &http.Request{Method: "GET", URL: u, RequestURI: target, ProtoMajor: 2, Header: http.Header{}}
	if c.canonicalize(r) != nil {
		return "", "", false
	}
	return r.URL.Path, r.URL.EscapedPath(), true
}

// checkCanonical fails t unless esc is a canonical encoded path and p its
// decoded form.
func checkCanonical(t *testing.T, target, p, esc string) {
	t.Helper()
	if !strings.HasPrefix(esc, "/") || !plainSegments(esc) || !plainSegments(p) {
		t.Fatalf("%q: path %q (%q) has dot or empty segments", target, p, esc)
	}
	for i := 0; i < len(esc); i++ {
		switch b := esc[i]; {
		case b == '%':
			if i+2 >= len(esc) || strings.ToUpper(esc[i+1:i+3]) != esc[i+1:i+3] {
				t.Fatalf("%q: escape not upper-case in %q", target, esc)
			}
			v, _ := strconv.ParseUint(esc[i+1:i+3], 16, 8)
			if isUnreserved(byte(v)) || v == '/' || v < 0x20 || v == 0x7f || v == '\\' {
				t.Fatalf("%q: %%%s left in %q", target, esc[i+1:i+3], esc)
			}
			i += 2
		case b != '/' && !isPathChar(b):
			t.Fatalf("%q: raw %q in %q", target, b, esc)
		}
	}
	if unescapePath(esc) != p {
		t.Fatalf("%q: %q does not decode to %q", target, esc, p)
	}
	p2, raw2, rerr := canonicalPath(esc, false)
	u := url.URL{Path: p2, RawPath: raw2}
	if rerr != nil || p2 != p || u.EscapedPath() != esc {
		t.Fatalf("%q: normalising %q again gives %q (%q) %v", target, esc, p2, u.EscapedPath(), rerr)
	}
}
