package httpcore

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestDispatcher(t *testing.T) {
	d := NewDispatcher()
	tag := func(name string) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			m, _ := MountFromContext(r.Context())
			io.WriteString(w, name+" "+r.URL.Path+" "+m.Prefix+" "+m.OriginalPath)
		})
	}
	for _, m := range []struct{ p, n string }{{"/", "root"}, {"/blog", "blog"}, {"/blog/admin/", "admin"}, {"/a%2Fb", "enc"}, {"/a;b", "semi"}} {
		if err := d.Mount(m.p, tag(m.n)); err != nil {
			t.Fatal(err)
		}
	}
	if err := d.Mount("/blog/", tag("dup")); err == nil {
		t.Fatal("duplicate prefix accepted")
	}
	tests := []struct{ path, want string }{
		{"/", "root /  "},
		{"/x", "root /x  "},
		{"/blog", "blog  /blog /blog"},
		{"/blog/", "blog / /blog /blog/"},
		{"/blog/x/y", "blog /x/y /blog /blog/x/y"},
		{"/blogger", "root /blogger  "},
		{"/blog/admin", "admin  /blog/admin /blog/admin"},
		{"/blog/admin/z", "admin /z /blog/admin /blog/admin/z"},
		{"/blog/administrator", "blog /administrator /blog /blog/administrator"},
		// Routing is on the decoded path, as path rules judge it: a prefix
		// sent with an escape reaches its mount, the escaped rest intact.
		{"/a%3Bb/x%3By", "semi /x;y /a;b /a;b/x;y"},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			rec := httptest.NewRecorder()
			d.ServeHTTP(rec, httptest.NewRequest("GET", tt.path, nil))
			if got := rec.Body.String(); got != tt.want {
				t.Fatalf("got %q want %q", got, tt.want)
			}
		})
	}
	t.Run("no root: 404", func(t *testing.T) {
		d := NewDispatcher()
		d.Mount("/only", tag("only"))
		rec := httptest.NewRecorder()
		d.ServeHTTP(rec, httptest.NewRequest("GET", "/other", nil))
		if rec.Code != 404 {
			t.Fatal(rec.Code)
		}
	})
	t.Run("over the core, RequestURI kept", func(t *testing.T) {
		d := NewDispatcher()
		d.Mount("/app", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, r.URL.Path+" "+r.RequestURI)
		}))
		ts := startServer(t, d, nil)
		out, _ := ts.exchange(t, "GET /app/x?y=1 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", 300*time.Millisecond)
		if !strings.HasSuffix(out, "\r\n\r\n/x /app/x?y=1") {
			t.Fatal(out)
		}
	})
}

func TestParseMount(t *testing.T) {
	tests := []struct {
		spec, prefix, target string
		ok                   bool
	}{
		{"/=text:hello", "/", "text:hello", true},
		{"/blog/=http://127.0.0.1:8080", "/blog", "http://127.0.0.1:8080", true},
		{"/a=text:x=y", "/a", "text:x=y", true},
		{"/a=", "", "", false},
		{"a=text:x", "", "", false},
		{"/a b=text:x", "", "", false},
		{"/a//b=text:x", "", "", false},
		{"/a/../b=text:x", "", "", false},
		{"/a/.=text:x", "", "", false},
		{"noequals", "", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.spec, func(t *testing.T) {
			p, tg, err := ParseMount(tt.spec)
			if (err == nil) != tt.ok || p != tt.prefix || tg != tt.target {
				t.Fatalf("got %q %q %v", p, tg, err)
			}
		})
	}
}

func TestText(t *testing.T) {
	ts := startServer(t, Text("hello"), nil)
	for _, m := range []string{"GET", "POST", "DELETE", "HEAD"} {
		out, _ := ts.exchange(t, m+" / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", 300*time.Millisecond)
		r := parseResponses(t, out, m)[0]
		b, _ := io.ReadAll(r.Body)
		want := "hello"
		if m == "HEAD" {
			want = ""
		}
		if r.StatusCode != 200 || string(b) != want || r.Header.Get("Content-Type") != "text/plain; charset=utf-8" || r.ContentLength != 5 {
			t.Fatalf("%s: %d %q %v", m, r.StatusCode, b, r.Header)
		}
	}
}
