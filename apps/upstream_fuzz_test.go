package apps

import (
	"bufio"
	"strconv"
	"strings"
	"testing"
)

// FuzzParseRespHead feeds the upstream response-head reader and parser
// arbitrary bytes. Whatever it accepts must be unambiguous: never both a
// Content-Length and chunked, no field name or value that could not be
// written back as one line, and the same result when parsed again from a
// head written from what was parsed.
func FuzzParseRespHead(f *testing.F) {
	for _, s := range []string{
		"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X\r\n\r\n",
		"HTTP/1.0 204\r\nConnection: keep-alive\r\n\r\n",
		"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n",
		"HTTP/1.1 200 OK\r\nX: a\rb\r\n\r\n",
		"HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n",
		"HTTP/1.1 200 OK\nX: a\n\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		br := bufio.NewReaderSize(strings.NewReader(in), 64)
		raw, _, err := readHeadLines(br, nil, 4096)
		if err != nil {
			return
		}
		var h respHead
		if err := parseRespHead(string(raw), &h); err != nil {
			return
		}
		if h.chunked && h.contentLength >= 0 {
			t.Fatalf("both chunked and Content-Length %d", h.contentLength)
		}
		if h.status < 100 || h.status > 599 {
			t.Fatalf("status %d", h.status)
		}
		if h.clText != "" && h.clText != strconv.FormatInt(h.contentLength, 10) {
			// The proxy passes this text on as the client's Content-Length.
			t.Fatalf("Content-Length text %q for length %d", h.clText, h.contentLength)
		}
		var b strings.Builder
		if h.proto10 {
			b.WriteString("HTTP/1.0 ")
		} else {
			b.WriteString("HTTP/1.1 ")
		}
		b.WriteByte(byte('0' + h.status/100))
		b.WriteByte(byte('0' + h.status/10%10))
		b.WriteByte(byte('0' + h.status%10))
		b.WriteString("\r\n")
		for _, fl := range h.fields {
			if strings.ContainsAny(fl.name, "\r\n: \t") || strings.ContainsAny(fl.value, "\r\n\x00") {
				t.Fatalf("field %q: %q", fl.name, fl.value)
			}
			b.WriteString(fl.name + ": " + fl.value + "\r\n")
		}
		b.WriteString("\r\n")
		var h2 respHead
		if err := parseRespHead(b.String(), &h2); err != nil {
			t.Fatalf("written back, refused: %v\n%q", err, b.String())
		}
		if h2.status != h.status || h2.chunked != h.chunked || h2.contentLength != h.contentLength || h2.close != h.close || len(h2.fields) != len(h.fields) {
			t.Fatalf("parsed differently when written back:\n%+v\n%+v", h, h2)
		}
	})
}

// FuzzChunkedReader decodes arbitrary chunked bodies: it never panics or
// reads past the terminating chunk and trailer section.
func FuzzChunkedReader(f *testing.F) {
	f.Add("5\r\nhello\r\n0\r\n\r\nNEXT")
	f.Add("5;a=b\r\nhello\r\n0\r\nX-Sum: 1\r\n\r\nNEXT")
	f.Add("fffffffffffffffff1\r\nx\r\n0\r\n\r\n")
	f.Fuzz(func(t *testing.T, in string) {
		br := bufio.NewReaderSize(strings.NewReader(in), 64)
		cr := &chunkedReader{br: br}
		buf := make([]byte, 7)
		for range 10000 {
			_, err := cr.Read(buf)
			if err != nil {
				break
			}
		}
		if cr.done {
			if _, err := cr.trailerFields(nil); err == nil {
				rest := make([]byte, len(in))
				n, _ := br.Read(rest)
				if !strings.HasSuffix(in, string(rest[:n])) {
					t.Fatalf("rest %q is not a suffix", rest[:n])
				}
			}
		}
	})
}
