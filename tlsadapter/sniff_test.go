package tlsadapter

import (
	"strings"
	"testing"
)

func TestClassify(t *testing.T) {
	tests := []struct {
		in   string
		want streamKind
	}{
		{"", kindNeedMore},
		{"\x16", kindNeedMore},
		{"\x16\x03", kindTLS},
		{"\x16\x03\x01\x02\x00", kindTLS},
		{"\x16\x02", kindOther},
		{"\x80", kindNeedMore},
		{"\x80\x2e\x01", kindSSLv2},
		{"\x80\x2e\x02", kindOther},
		{"G", kindNeedMore},
		{"GET", kindNeedMore},
		{"GET ", kindHTTP},
		{"get /", kindHTTP},
		{"PROPFIND /", kindHTTP},
		{"M-SEARCH * HTTP/1.1", kindHTTP},
		{" GET", kindOther},
		{"GET\r\n", kindOther},
		{strings.Repeat("A", maxMethodLen+1) + " ", kindOther},
		{"\x00\x00", kindOther},
		{"SSH-2.0-OpenSSH_9.6\r\n", kindOther},
	}
	for _, tt := range tests {
		if got := classify([]byte(tt.in)); got != tt.want {
			t.Errorf("classify(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestParsePlainHead(t *testing.T) {
	tests := []struct {
		in   string
		want plainRequest
	}{
		{"GET /a?b HTTP/1.1\r\nHost: A.Test:8443\r\nContent-Length: 12\r\n\r\nbody", plainRequest{"/a?b", "a.test", 12, true, 8443}},
		{"GET / HTTP/1.1\nhost: a.test\n\n", plainRequest{"/", "a.test", -1, true, 0}},
		{"GET / HTTP/1.1\r\nHost: a.test", plainRequest{"/", "a.test", -1, false, 0}},
		{"GET / HTTP/1.1\r\nHost: bad host\r\n\r\n", plainRequest{"/", "", -1, true, 0}},
		{"GET / HTTP/1.1\r\nHost: a.test.\r\n\r\n", plainRequest{"/", "", -1, true, 0}},
		{"GET / HTTP/1.1\r\nHost: [::1]:80\r\n\r\n", plainRequest{"/", "", -1, true, 0}},
		{"GET / HTTP/1.1\r\nHost: a.test:99999\r\n\r\n", plainRequest{"/", "", -1, true, 0}},
		{"GET\r\n\r\n", plainRequest{"", "", -1, true, 0}},
	}
	for _, tt := range tests {
		if got := parsePlainHead([]byte(tt.in)); got != tt.want {
			t.Errorf("parsePlainHead(%q) = %+v, want %+v", tt.in, got, tt.want)
		}
	}
}

func TestRedirect308(t *testing.T) {
	tests := []struct {
		host   string
		port   int
		target string
		loc    string
	}{
		{"a.test", 443, "/x?y=1", "https://a.test/x?y=1"},
		{"a.test", 8443, "/", "https://a.test:8443/"},
		{"a.test", 8443, "http://evil.test/p", "https://a.test:8443/p"},
		{"a.test", 8443, "http://evil.test", "https://a.test:8443/"},
		{"a.test", 8443, "*", "https://a.test:8443/"},
		{"a.test", 8443, "//evil.test/p", "https://a.test:8443//evil.test/p"},
	}
	for _, tt := range tests {
		got := string(redirect308(tt.host, tt.port, tt.target))
		if !strings.Contains(got, "\r\nLocation: "+tt.loc+"\r\n") {
			t.Errorf("%s %d %q: %q", tt.host, tt.port, tt.target, got)
		}
	}
	if redirect308("a.test", 443, "/a\x7fb") != nil {
		t.Error("control character passed into Location")
	}
}

// FuzzSniff feeds arbitrary first bytes through the classifier and the plain
// request parser: neither may panic, the classifier must be stable as more
// bytes arrive, and nothing unsafe may reach a Location header.
func FuzzSniff(f *testing.F) {
	for _, s := range []string{
		"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
		"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n",
		"post /x HTTP/1.0\nHost: a.test:80\nContent-Length: 3\n\nabc",
		"\x80\x2e\x01\x00\x02",
		"GET http://a.test/p HTTP/1.1\r\nHost: a.test\r\n\r\n",
		"\x00",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		k := classify(b)
		if k != kindNeedMore {
			for i := len(b); i < len(b)+3; i++ {
				if k2 := classify(append(b[:len(b):len(b)], "xyz"[:i-len(b)]...)); k2 != k {
					t.Fatalf("classify changed from %v to %v with more bytes", k, k2)
				}
			}
		}
		if len(b) > maxMethodLen+1 && k == kindNeedMore {
			t.Fatalf("undecided after %d bytes", len(b))
		}
		r := parsePlainHead(b)
		if r.host != "" && !validHostName(r.host) {
			t.Fatalf("invalid host %q accepted", r.host)
		}
		if resp := redirect308("a.test", 8443, r.target); resp != nil {
			head := string(resp)
			if strings.Count(head, "\r\n") != 5 || strings.ContainsAny(strings.ReplaceAll(head, "\r\n", ""), "\r\n") {
				t.Fatalf("header injection via %q: %q", r.target, head)
			}
		}
	})
}
