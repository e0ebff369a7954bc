package httpcore

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// Each rule of strict parsing: raw bytes in, status and connection state out.
// Every rejection must close the connection, say Connection: close, carry a
// short text/plain body and be counted.
func TestParsingRules(t *testing.T) {
	ts := startServer(t, echoHandler(), func(o *Options) {
		o.MaxRequestHeaderSize = 2048
		o.MaxRequestBodySize = 100
	})
	long := strings.Repeat("a", 3000)
	tests := []struct {
		name   string
		raw    string
		status int
		closed bool
		check  func(t *testing.T, resp *http.Response)
	}{
		// request line
		{"plain GET", "GET / HTTP/1.1\r\nHost: a\r\n\r\n", 200, false, nil},
		{"leading CRLF ignored", "\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", 200, false, nil},
		{"method not a token", "G(T / HTTP/1.1\r\nHost: a\r\n\r\n", 400, true, nil},
		{"double space", "GET  / HTTP/1.1\r\nHost: a\r\n\r\n", 400, true, nil},
		{"tab separator", "GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n", 400, true, nil},
		{"trailing space after version", "GET / HTTP/1.1 \r\nHost: a\r\n\r\n", 400, true, nil},
		{"missing version", "GET /\r\nHost: a\r\n\r\n", 400, true, nil},
		{"lowercase version", "GET / http/1.1\r\nHost: a\r\n\r\n", 400, true, nil},
		{"HTTP/2.0", "GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505, true, nil},
		{"HTTP/3", "GET / HTTP/3\r\nHost: a\r\n\r\n", 505, true, nil},
		{"HTTP/1.2", "GET / HTTP/1.2\r\nHost: a\r\n\r\n", 505, true, nil},
		{"HTTP/0.9", "GET / HTTP/0.9\r\n\r\n", 505, true, nil},
		{"absolute-form", "GET http://example.com:8080/x?q=1 HTTP/1.1\r\nHost: other\r\n\r\n", 200, false, func(t *testing.T, r *http.Response) {
			if r.Header.Get("X-Host") != "example.com:8080" || r.Header.Get("X-Path") != "/x" {
				t.Errorf("host %q path %q", r.Header.Get("X-Host"), r.Header.Get("X-Path"))
			}
		}},
		{"absolute-form without host", "GET http:///x HTTP/1.1\r\nHost: a\r\n\r\n", 400, true, nil},
		{"asterisk OPTIONS", "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", 200, false, nil},
		{"asterisk GET", "GET * HTTP/1.1\r\nHost: a\r\n\r\n", 400, true, nil},
		{"CONNECT", "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", 405, true, nil},
		{"authority-form GET", "GET example.com:80 HTTP/1.1\r\nHost: a\r\n\r\n", 400, true, nil},
		{"fragment", "GET /a#b HTTP/1.1\r\nHost: a\r\n\r\n", 400, true, nil},
		{"raw non-ASCII in target", "GET /\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n", 400, true, nil},
		{"control in target", "GET /\x01 HTTP/1.1\r\nHost: a\r\n\r\n", 400, true, nil},
		{"escaped path", "GET /a%20b HTTP/1.1\r\nHost: a\r\n\r\n", 200, false, func(t *testing.T, r *http.Response) {
			if r.Header.Get("X-Path") != "/a b" {
				t.Errorf("path %q", r.Header.Get("X-Path"))
			}
		}},
		{"bad escape", "GET /a%zz HTTP/1.1\r\nHost: a\r\n\r\n", 400, true, nil},
		{"request line too long", "GET /" + long + " HTTP/1.1\r\nHost: a\r\n\r\n", 414, true, nil},
		// header fields
		{"space before colon", "GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400, true, nil},
		{"tab before colon", "GET / HTTP/1.1\r\nHost\t: a\r\n\r\n", 400, true, nil},
		{"obs-fold", "GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n c\r\n\r\n", 400, true, nil},
		{"NUL in value", "GET / HTTP/1.1\r\nHost: a\r\nX-A: b\x00c\r\n\r\n", 400, true, nil},
		{"bare CR in value", "GET / HTTP/1.1\r\nHost: a\r\nX-A: b\rc\r\n\r\n", 400, true, nil},
		{"bare LF terminator", "GET / HTTP/1.1\nHost: a\n\n", 400, true, nil},
		{"bare LF in head", "GET / HTTP/1.1\r\nHost: a\nX: y\r\n\r\n", 400, true, nil},
		{"DEL in value", "GET / HTTP/1.1\r\nHost: a\r\nX-A: b\x7f\r\n\r\n", 400, true, nil},
		{"obs-text in value accepted", "GET / HTTP/1.1\r\nHost: a\r\nX-A: caf\xe9\r\n\r\n", 200, false, nil},
		{"empty name", "GET / HTTP/1.1\r\nHost: a\r\n: x\r\n\r\n", 400, true, nil},
		{"name not a token", "GET / HTTP/1.1\r\nHost: a\r\nX@Y: x\r\n\r\n", 400, true, nil},
		{"no colon", "GET / HTTP/1.1\r\nHost: a\r\nXY\r\n\r\n", 400, true, nil},
		{"missing Host", "GET / HTTP/1.1\r\n\r\n", 400, true, nil},
		{"two Hosts", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400, true, nil},
		{"malformed Host", "GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400, true, nil},
		{"Host with userinfo", "GET / HTTP/1.1\r\nHost: u@a\r\n\r\n", 400, true, nil},
		{"HTTP/1.0 without Host", "GET / HTTP/1.0\r\n\r\n", 200, true, nil},
		{"head too large", "GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + long + "\r\n\r\n", 431, true, nil},
		// framing
		{"Content-Length not digits", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: abc\r\n\r\n", 400, true, nil},
		{"Content-Length signed", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +3\r\n\r\nabc", 400, true, nil},
		{"Content-Length list", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 3\r\n\r\nabc", 400, true, nil},
		{"Content-Length differing", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", 400, true, nil},
		{"Content-Length identical twice", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc", 200, false, nil},
		{"Content-Length 2^64", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 18446744073709551616\r\n\r\n", 413, true, nil},
		{"Content-Length over limit", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 101\r\n\r\n", 413, true, nil},
		{"Content-Length body", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc", 200, false, func(t *testing.T, r *http.Response) {
			if r.Header.Get("X-Len") != "3" {
				t.Errorf("len %q", r.Header.Get("X-Len"))
			}
		}},
		{"chunked body", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n", 200, false, func(t *testing.T, r *http.Response) {
			if r.Header.Get("X-Len") != "5" {
				t.Errorf("len %q", r.Header.Get("X-Len"))
			}
		}},
		{"chunked case-insensitive", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n0\r\n\r\n", 200, false, nil},
		{"TE gzip, chunked", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501, true, nil},
		{"TE chunked, gzip", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n", 400, true, nil},
		{"TE gzip alone", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", 400, true, nil},
		{"TE chunked twice", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400, true, nil},
		{"TE empty", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \r\n\r\n", 400, true, nil},
		{"TE in HTTP/1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400, true, nil},
		{"TE with Content-Length", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n", 400, true, nil},
		{"chunk size not hex", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400, true, nil},
		{"chunk size empty", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n\r\n", 400, true, nil},
		{"chunk missing CRLF", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n0\r\n\r\n", 400, true, nil},
		{"chunk size overflow", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffffff\r\n", 413, true, nil},
		{"chunked over limit", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n64\r\n" + strings.Repeat("x", 100) + "\r\n1\r\nx\r\n0\r\n\r\n", 413, true, nil},
		{"chunk ext with control", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1;a\x01\r\nx\r\n0\r\n\r\n", 400, true, nil},
		{"chunk size bare LF", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1\nx\r\n0\r\n\r\n", 400, true, nil},
		{"bad trailer", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nBad Trailer: x\r\n\r\n", 400, true, nil},
		{"unknown expectation", "GET / HTTP/1.1\r\nHost: a\r\nExpect: teapot\r\n\r\n", 417, true, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, closed := ts.exchange(t, tt.raw, 300*time.Millisecond)
			if got := statusOf(t, out); got != tt.status {
				t.Fatalf("status %d, want %d\n%s", got, tt.status, out)
			}
			if closed != tt.closed {
				t.Errorf("closed=%v, want %v\n%s", closed, tt.closed, out)
			}
			resp := parseResponses(t, out)[0]
			if tt.status >= 400 {
				if !resp.Close {
					t.Errorf("rejection without Connection: close\n%s", out)
				}
				if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
					t.Errorf("rejection Content-Type %q", ct)
				}
				b, _ := io.ReadAll(resp.Body)
				if len(b) == 0 || len(b) > 100 {
					t.Errorf("rejection body %q", b)
				}
			}
			if tt.check != nil {
				tt.check(t, resp)
			}
		})
	}
	var rejected uint64
	for _, r := range ts.core.Stats().Rejections {
		rejected += r.Count
	}
	want := 0
	for _, tt := range tests {
		if tt.status >= 400 {
			want++
		}
	}
	if rejected != uint64(want) {
		t.Errorf("rejections counted %d, want %d: %+v", rejected, want, ts.core.Stats().Rejections)
	}
}

// Trailers reach Request.Trailer, never the header map.
func TestTrailersNotMerged(t *testing.T) {
	ts := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.ReadAll(r.Body)
		w.Header().Set("X-Trailer", r.Trailer.Get("X-Sig"))
		w.Header().Set("X-Header", r.Header.Get("X-Sig"))
	}), nil)
	out, _ := ts.exchange(t, "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n1\r\nx\r\n0\r\nX-Sig: abc\r\n\r\n", 300*time.Millisecond)
	resp := parseResponses(t, out)[0]
	if resp.Header.Get("X-Trailer") != "abc" || resp.Header.Get("X-Header") != "" {
		t.Fatalf("trailer %q header %q", resp.Header.Get("X-Trailer"), resp.Header.Get("X-Header"))
	}
}

func TestKeepAlive(t *testing.T) {
	ts := startServer(t, echoHandler(), nil)
	tests := []struct {
		name      string
		raw       string
		closed    bool
		wantConn  string
		wantProto string
	}{
		{"1.1 default keeps", "GET / HTTP/1.1\r\nHost: a\r\n\r\n", false, "", "HTTP/1.1"},
		{"1.1 close", "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", true, "close", "HTTP/1.1"},
		{"1.1 close case-insensitive", "GET / HTTP/1.1\r\nHost: a\r\nConnection: Keep-Alive, CLOSE\r\n\r\n", true, "close", "HTTP/1.1"},
		{"1.0 default closes", "GET / HTTP/1.0\r\n\r\n", true, "close", "HTTP/1.0"},
		{"1.0 keep-alive", "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", false, "keep-alive", "HTTP/1.0"},
		{"1.0 Keep-Alive case", "GET / HTTP/1.0\r\nConnection: KEEP-ALIVE\r\n\r\n", false, "keep-alive", "HTTP/1.0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, closed := ts.exchange(t, tt.raw, 300*time.Millisecond)
			if closed != tt.closed {
				t.Errorf("closed=%v want %v\n%s", closed, tt.closed, out)
			}
			resp := parseResponses(t, out)[0]
			if tt.wantConn == "close" {
				if !resp.Close {
					t.Errorf("no Connection: close")
				}
			} else if got := resp.Header.Get("Connection"); !strings.EqualFold(got, tt.wantConn) {
				t.Errorf("Connection %q want %q", got, tt.wantConn)
			}
			if resp.Proto != tt.wantProto {
				t.Errorf("proto %q want %q", resp.Proto, tt.wantProto)
			}
		})
	}
}

func TestPipelining(t *testing.T) {
	ts := startServer(t, echoHandler(), nil)
	raw := "GET /1 HTTP/1.1\r\nHost: a\r\n\r\n" +
		"POST /2 HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi" +
		"HEAD /3 HTTP/1.1\r\nHost: a\r\n\r\n" +
		"POST /4 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nz\r\n0\r\n\r\n" +
		"GET /5 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
	out, closed := ts.exchange(t, raw, time.Second)
	if !closed {
		t.Error("not closed after Connection: close")
	}
	rs := parseResponses(t, out, "GET", "POST", "HEAD", "POST", "GET")
	if len(rs) != 5 {
		t.Fatalf("%d responses\n%s", len(rs), out)
	}
	for i, r := range rs {
		if want := "/" + itoa(i+1); r.Header.Get("X-Path") != want {
			t.Errorf("response %d for %q", i, r.Header.Get("X-Path"))
		}
	}
	if b, _ := io.ReadAll(rs[1].Body); string(b) != "hi" {
		t.Errorf("body %q", b)
	}
}

// An unread body is drained within a bound; past it the connection closes.
func TestUnreadBody(t *testing.T) {
	ts := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok")
	}), func(o *Options) { o.MaxRequestBodySize = 10 << 20 })
	small := "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n0123456789GET /next HTTP/1.1\r\nHost: a\r\n\r\n"
	out, closed := ts.exchange(t, small, 300*time.Millisecond)
	if rs := parseResponses(t, out); len(rs) != 2 || closed {
		t.Fatalf("small unread body: %d responses closed=%v\n%s", len(rs), closed, out)
	}
	big := "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1000000\r\n\r\n" + strings.Repeat("x", 1000)
	out, closed = ts.exchange(t, big, time.Second)
	if rs := parseResponses(t, out); len(rs) != 1 || !closed || !rs[0].Close {
		t.Fatalf("big unread body: %d responses closed=%v\n%s", len(rs), closed, out)
	}
}
