package compression

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/klauspost/compress/gzip"

	"tlsedge/config"
)

func defaults(t *testing.T, set map[string]string) Options {
	t.Helper()
	var o Options
	tb := config.NewTable(&o)
	if err := tb.Reset(); err != nil {
		t.Fatal(err)
	}
	for k, v := range set {
		f, ok := tb.Lookup(k)
		if !ok {
			t.Fatal(k)
		}
		if err := f.Set(v); err != nil {
			t.Fatalf("%s=%s: %v", k, v, err)
		}
	}
	return o
}

// Accept-Encoding with q-values: the highest q above 0 wins, ties go to
// compress_encodings' order, * covers what is not named, q=0 refuses.
func TestChoose(t *testing.T) {
	c, err := New(defaults(t, map[string]string{"compress": "*"}))
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		ae   []string
		want string
	}{
		{nil, ""},
		{[]string{""}, ""},
		{[]string{"gzip"}, "gzip"},
		{[]string{"x-gzip"}, "gzip"},
		{[]string{"GZIP, deflate, br"}, "gzip"},
		{[]string{"gzip, zstd"}, "zstd"},
		{[]string{"gzip;q=1.0, zstd;q=0.5"}, "gzip"},
		{[]string{"gzip;q=0.5", "zstd;q=0.8"}, "zstd"},
		{[]string{"zstd;q=0, gzip;q=0.1"}, "gzip"},
		{[]string{"gzip;q=0"}, ""},
		{[]string{"*"}, "zstd"},
		{[]string{"*;q=0.5, zstd;q=0"}, "gzip"},
		{[]string{"identity"}, ""},
		{[]string{"gzip;q=nonsense"}, ""},
		{[]string{"gzip;q=2"}, ""},
		{[]string{"br;q=1, gzip ; q=0.3"}, "gzip"},
	} {
		if got := c.choose(tt.ae); got != tt.want {
			t.Errorf("Accept-Encoding %q: %q, want %q", tt.ae, got, tt.want)
		}
	}
	g, _ := New(defaults(t, map[string]string{"compress": "*", "compress_encodings": "gzip,zstd"}))
	if got := g.choose([]string{"zstd, gzip"}); got != "gzip" {
		t.Errorf("server preference gzip first: %q", got)
	}
}

func TestEligible(t *testing.T) {
	c, _ := New(defaults(t, map[string]string{"compress": "*"}))
	for _, tt := range []struct {
		code int
		h    map[string]string
		want bool
	}{
		{200, map[string]string{"Content-Type": "text/html; charset=utf-8"}, true},
		{404, map[string]string{"Content-Type": "application/json"}, true},
		{200, map[string]string{"Content-Type": "image/svg+xml"}, true},
		{200, map[string]string{"Content-Type": "application/ld+json"}, true},
		{200, map[string]string{"Content-Type": "application/javascript; charset=utf-8"}, true},
		{200, map[string]string{"Content-Type": "text/javascript"}, true},
		{200, map[string]string{"Content-Type": "application/epub+zip"}, false},
		{200, map[string]string{"Content-Type": "image/png"}, false},
		{200, map[string]string{"Content-Type": "application/gzip"}, false},
		{200, map[string]string{"Content-Type": "application/octet-stream"}, false},
		{200, map[string]string{}, false},
		{206, map[string]string{"Content-Type": "text/plain"}, false},
		{304, map[string]string{"Content-Type": "text/plain"}, false},
		{204, map[string]string{"Content-Type": "text/plain"}, false},
		{200, map[string]string{"Content-Type": "text/plain", "Content-Encoding": "br"}, false},
		{200, map[string]string{"Content-Type": "text/plain", "Cache-Control": "public, No-Transform"}, false},
	} {
		h := http.Header{}
		for k, v := range tt.h {
			h.Set(k, v)
		}
		if got := c.eligible(tt.code, h); got != tt.want {
			t.Errorf("%d %v: %v", tt.code, tt.h, got)
		}
	}
}

func TestOptionsRefused(t *testing.T) {
	for k, v := range map[string]string{
		"compress":           "noslash",
		"compress_min_size":  "1MiB",
		"compress_types":     "image/png",
		"compress_encodings": "br",
		"compress_level":     "11",
	} {
		var o Options
		config.NewTable(&o).Reset()
		f, _ := config.NewTable(&o).Lookup(k)
		if f.Set(v) != nil {
			continue // refused at parse
		}
		if err := o.Validate(); err == nil {
			t.Errorf("%s=%s accepted", k, v)
		}
	}
}

// At most compress_max_encoders exist: a response that finds every encoder
// busy goes out uncompressed (with Vary), and once the busy one is done its
// encoder serves the next response. Over a real socket.
func TestEncoderCap(t *testing.T) {
	c, err := New(defaults(t, map[string]string{"compress": "*", "compress_max_encoders": "1"}))
	if err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	started := make(chan struct{})
	body := strings.Repeat("compressible text ", 1000)
	h := c.Wrap("/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, body)
		if r.URL.Path == "/hold" {
			http.NewResponseController(w).Flush()
			close(started)
			<-release
		}
	}))
	srv := httptest.NewServer(h)
	defer srv.Close()
	client := &http.Client{Transport: &http.Transport{DisableCompression: true}}
	get := func(path string) *http.Response {
		req, _ := http.NewRequest("GET", srv.URL+path, nil)
		req.Header.Set("Accept-Encoding", "gzip")
		resp, err := client.Do(req)
		if err != nil {
			t.Error(err)
			return nil
		}
		return resp
	}
	held := make(chan *http.Response, 1)
	go func() { held <- get("/hold") }()
	<-started
	resp := get("/x")
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.Header.Get("Content-Encoding") != "" || string(b) != body || resp.Header.Get("Vary") != "Accept-Encoding" {
		t.Errorf("with the one encoder busy: %v, %d bytes", resp.Header, len(b))
	}
	close(release)
	first := <-held
	zr, err := gzip.NewReader(first.Body)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := io.ReadAll(zr); string(b) != body {
		t.Errorf("the held response decodes to %d bytes", len(b))
	}
	first.Body.Close()
	resp = get("/y")
	resp.Body.Close()
	if resp.Header.Get("Content-Encoding") != "gzip" || c.live.Load() != 1 {
		t.Errorf("after the busy one finished: %v, %d encoders", resp.Header, c.live.Load())
	}
}
