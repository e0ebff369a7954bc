package httpcore

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"testing"
	"time"
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
		c.ServeConn(&memConn{r: bytes.NewReader(in), w: &out}, &ConnInfo{Transport: "tcp"})
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
