package httpcore

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"net/url"
	"testing"
	"tlsedge/conninfo"
)

// A browser-like request head: 9 header fields.
const benchHead = "GET /static/app.js?v=3 HTTP/1.1\r\n" +
	"Host: www.example.com\r\n" +
	"User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0\r\n" +
	"Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n" +
	"Accept-Language: en-US,en;q=0.5\r\n" +
	"Accept-Encoding: gzip, deflate, br\r\n" +
	"Connection: keep-alive\r\n" +
	"Cookie: session=0123456789abcdef; theme=dark\r\n" +
	"upgrade-insecure-requests: 1\r\n" +
	"Cache-Control: max-age=0\r\n" +
	"\r\n"

// BenchmarkParseHead: readHead + parseHead on one head. The allocations are
// the head string, the header map and the values array, whatever the
// number of header fields.
func BenchmarkParseHead(b *testing.B) {
	in := []byte(benchHead)
	b.SetBytes(int64(len(in)))
	benchParse(b, in)
}

// benchParse runs readHead + parseHead on in, reusing every buffer as a
// connection does.
func benchParse(b *testing.B, in []byte) {
	rd := bytes.NewReader(in)
	br := bufio.NewReaderSize(rd, 4096)
	buf := make([]byte, 0, 4096)
	var fields []field
	var h head
	var u url.URL
	b.ReportAllocs()
	for b.Loop() {
		rd.Reset(in)
		br.Reset(rd)
		raw, err := readHead(br, buf, 1<<16, nil)
		if err != nil {
			b.Fatal(err)
		}
		var rerr *rejectError
		fields, rerr = parseHead(raw, fields, 1<<20, &h, &u)
		if rerr != nil {
			b.Fatal(rerr)
		}
	}
}

// BenchmarkNetHTTPReadRequest is the same head through net/http, for scale.
func BenchmarkNetHTTPReadRequest(b *testing.B) {
	in := []byte(benchHead)
	rd := bytes.NewReader(in)
	br := bufio.NewReaderSize(rd, 4096)
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	for b.Loop() {
		rd.Reset(in)
		br.Reset(rd)
		if _, err := http.ReadRequest(br); err != nil {
			b.Fatal(err)
		}
	}
}

// repeatReader yields the same request forever (n times).
type repeatReader struct {
	req []byte
	off int
	n   int
}

func (r *repeatReader) Read(p []byte) (int, error) {
	if r.n == 0 {
		return 0, io.EOF
	}
	k := copy(p, r.req[r.off:])
	r.off += k
	if r.off == len(r.req) {
		r.off = 0
		r.n--
	}
	return k, nil
}

// BenchmarkKeepAliveExchange: whole requests through the connection loop
// (parse, admission, handler, response) on one in-memory keep-alive
// connection: the CPU and allocations per request that the engine adds.
func BenchmarkKeepAliveExchange(b *testing.B) {
	for _, stats := range []bool{false, true} {
		name := "stats=off"
		if stats {
			name = "stats=on"
		}
		b.Run(name, func(b *testing.B) {
			o := DefaultOptions()
			o.Handler = Text("hello")
			o.Statistics = stats
			c, err := New(o)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			c.ServeConn(&memConn{r: &repeatReader{req: []byte(benchHead), n: b.N}, w: io.Discard}, &conninfo.Info{Transport: "tcp"})
		})
	}
}

// BenchmarkParseHeadFields: allocations stay flat as header fields are
// added (beyond the map's own growth): nothing is allocated per field.
func BenchmarkParseHeadFields(b *testing.B) {
	for _, n := range []int{2, 8, 32} {
		b.Run(itoa(n), func(b *testing.B) {
			var sb bytes.Buffer
			sb.WriteString("GET /x HTTP/1.1\r\nHost: a\r\n")
			for i := 1; i < n; i++ {
				sb.WriteString("x-field-" + itoa(i) + ": some value here\r\n")
			}
			sb.WriteString("\r\n")
			benchParse(b, sb.Bytes())
		})
	}
}

// BenchmarkWriteString: a small io.WriteString answer allocates nothing in
// the response writer.
func BenchmarkKeepAliveWriteString(b *testing.B) {
	o := DefaultOptions()
	o.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(200)
		io.WriteString(w, "hello")
	})
	c, err := New(o)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	c.ServeConn(&memConn{r: &repeatReader{req: []byte(benchHead), n: b.N}, w: io.Discard}, &conninfo.Info{Transport: "tcp"})
}
