package router

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
	"tlsedge/config"
	"tlsedge/server/httpcore"
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
}

// routeWriter is a ResponseWriter that records the route it is told.
type routeWriter struct {
	*httptest.ResponseRecorder
	route string
	calls int
}

func (w *routeWriter) SetRoute(prefix string) { w.route, w.calls = prefix, w.calls+1 }

// TestDispatcherRecordsRoute: a writer in front of the dispatcher learns the
// mount that served the request, once, and nothing when none matched.
func TestDispatcherRecordsRoute(t *testing.T) {
	ok := http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})
	for _, tt := range []struct {
		mounts []string
		path   string
		want   string
		calls  int
	}{
		{[]string{"/", "/api"}, "/api/v1", "/api", 1},
		{[]string{"/", "/api"}, "/apix", "/", 1},
		{[]string{"/", "/api"}, "/", "/", 1},
		{[]string{"/api"}, "/other", "", 0},
	} {
		d := NewDispatcher()
		for _, p := range tt.mounts {
			d.Mount(p, ok)
		}
		w := &routeWriter{ResponseRecorder: httptest.NewRecorder()}
		d.ServeHTTP(w, httptest.NewRequest("GET", tt.path, nil))
		if w.route != tt.want || w.calls != tt.calls {
			t.Errorf("%v %s: route %q (%d calls), want %q (%d)", tt.mounts, tt.path, w.route, w.calls, tt.want, tt.calls)
		}
	}
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

// Over the request core, a mounted handler sees the path below its prefix
// while RequestURI keeps what the client sent.
func TestDispatcherOverTheCore(t *testing.T) {
	d := NewDispatcher()
	d.Mount("/app", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.URL.Path+" "+r.RequestURI)
	}))
	o := httpcore.DefaultOptions()
	o.Handler = d
	c, err := httpcore.New(o)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go c.Serve(ln, nil)
	t.Cleanup(func() { ln.Close(); c.Close() })
	nc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(nc, "GET /app/x?y=1 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
	out, _ := io.ReadAll(nc)
	if !strings.HasSuffix(string(out), "\r\n\r\n/x /app/x?y=1") {
		t.Fatal(string(out))
	}
}

// A mount spec may hold commas (a text: body, a URL): each flag and each
// string value is one spec, never split.
func TestMountsKeepCommas(t *testing.T) {
	var o struct {
		Mount Mounts `opt:"mount"`
	}
	f, _ := config.NewTable(&o).Lookup("mount")
	if err := f.Set("/=text:hello, world"); err != nil {
		t.Fatal(err)
	}
	if err := f.Set("/b=text:x"); err != nil {
		t.Fatal(err)
	}
	specs := o.Mount.Specs()
	if len(specs) != 2 || specs[0].Target != "text:hello, world" || specs[1].Prefix != "/b" {
		t.Fatalf("specs %+v", specs)
	}
	if err := f.SetValue(config.Value{Kind: config.String, Text: "/c=text:a,b"}); err != nil || o.Mount.List()[0] != "/c=text:a,b" {
		t.Fatalf("file value: %v %q", err, o.Mount.List())
	}
}

// TestHostRouting is the host routing table: exact names first, then the
// longest wildcard, then host-less mounts, each group by longest prefix; the
// port, a trailing dot and case of the Host are ignored; a request without
// a Host reaches only host-less mounts.
func TestHostRouting(t *testing.T) {
	d := NewDispatcher()
	tag := func(name string) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			m, _ := MountFromContext(r.Context())
			io.WriteString(w, name+" "+r.URL.Path+" "+m.Route())
		})
	}
	for _, m := range []struct{ key, name string }{
		{"/", "root"},
		{"/api", "api"},
		{"a.test/", "a"},
		{"A.Test./admin", "a-admin"},
		{"*.b.test/", "wild-b"},
		{"*.x.b.test/", "wild-xb"},
		{"c.test/only", "c-only"},
	} {
		if err := d.Mount(m.key, tag(m.name)); err != nil {
			t.Fatal(err)
		}
	}
	for _, bad := range []string{"a.test/", "a.test./", "a.test:8443/", "*b.test/", "a.*.test/", "a_b.test/", "[::1]/", "a.test", "-a.test/", "a..test/"} {
		if err := d.Mount(bad, tag("bad")); err == nil {
			t.Errorf("mount %q accepted", bad)
		}
	}
	tests := []struct{ host, path, want string }{
		{"a.test", "/x", "a /x a.test/"},
		{"a.test:8443", "/x", "a /x a.test/"},
		{"A.TEST.", "/x", "a /x a.test/"},
		{"a.test.:443", "/admin/y", "a-admin /y a.test/admin"},
		{"a.test", "/api/v1", "a /api/v1 a.test/"},       // the host's root wins over a host-less prefix
		{"www.b.test", "/z", "wild-b /z *.b.test/"},      // a wildcard
		{"deep.www.b.test", "/z", "wild-b /z *.b.test/"}, // more than one label
		{"y.x.b.test", "/z", "wild-xb /z *.x.b.test/"},   // the longest wildcard
		{"x.b.test", "/z", "wild-b /z *.b.test/"},        // *.x.b.test needs a label before x
		{"b.test", "/z", "root /z "},                     // *.b.test is not b.test
		{"c.test", "/only/q", "c-only /q c.test/only"},   // exact name and prefix
		{"c.test", "/api/q", "api /q /api"},              // falls through to host-less
		{"other.test", "/api", "api  /api"},              // unknown host: host-less
		{"", "/api/x", "api /x /api"},                    // no Host (HTTP/1.0)
		{"", "/x", "root /x "},                           // the host-less root passes the request on as it is
		{"[::1]:8443", "/x", "root /x "},
		{"127.0.0.1:8443", "/api", "api  /api"},
	}
	for _, tt := range tests {
		t.Run(tt.host+tt.path, func(t *testing.T) {
			r := httptest.NewRequest("GET", tt.path, nil)
			r.Host = tt.host
			rec := httptest.NewRecorder()
			d.ServeHTTP(rec, r)
			if got := rec.Body.String(); got != tt.want {
				t.Fatalf("got %q want %q", got, tt.want)
			}
			_, route, ok := d.Lookup(r)
			if want := tt.want[strings.LastIndexByte(tt.want, ' ')+1:]; !ok || route != want && !(want == "" && route == "/") {
				t.Fatalf("Lookup route %q (%v), served %q", route, ok, tt.want)
			}
		})
	}
	if got := strings.Join(d.Prefixes(), " "); got != "a.test/admin a.test/ c.test/only *.x.b.test/ *.b.test/ /api /" {
		t.Fatalf("Prefixes %q", got)
	}
}

func TestParseMountHost(t *testing.T) {
	m, err := ParseMounts("A.test./api=text:a", "*.B.test/=text:b", "/=text:c")
	if err != nil {
		t.Fatal(err)
	}
	s := m.Specs()
	if s[0].Host != "a.test" || s[0].Prefix != "/api" || s[0].Key() != "a.test/api" || s[1].Key() != "*.b.test/" || s[2].Key() != "/" {
		t.Fatalf("%+v", s)
	}
	if m.List()[0] != "A.test./api=text:a" {
		t.Fatal(m.List())
	}
	if _, err := ParseMounts("a.test:8443/=text:x"); err == nil || !strings.Contains(err.Error(), "port") {
		t.Fatalf("port in a mount host: %v", err)
	}
	if _, err := ParseMounts("a.test=text:x"); err == nil || !strings.Contains(err.Error(), `"a.test/"`) {
		t.Fatalf("host without a path: %v", err)
	}
}
