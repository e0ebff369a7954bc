package apps

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// staticTree builds a root with files, precompressed siblings and symlinks
// in and out of it, next to an outside directory holding a secret.
func staticTree(t *testing.T) (root string) {
	t.Helper()
	base := t.TempDir()
	root = filepath.Join(base, "root")
	outside := filepath.Join(base, "outside")
	old := time.Now().Add(-time.Hour)
	files := map[string]string{
		"root/index.html":                     "<h1>home</h1>",
		"root/hello.txt":                      "hello world\n",
		"root/app.js":                         "console.log('plain')",
		"root/app.js.gz":                      "GZIP-BYTES",
		"root/app.js.br":                      "BROTLI-BYTES",
		"root/style.css":                      "body{}",
		"root/style.css.gz":                   "STALE-GZIP",
		"root/sub/file.txt":                   "in sub",
		"root/sub/<b>&.txt":                   "odd name",
		"root/%2e%2e/x.txt":                   "literal name",
		"root/noext":                          "\x89PNG\r\n\x1a\n0000",
		"root/.env":                           "SECRET=1",
		"root/.git/config":                    "[core] SECRET",
		"root/.well-known/acme-challenge/tok": "tok.thumb",
		"outside/secret.txt":                  "TOP SECRET",
		"outside/dir/other.txt":               "TOP SECRET TOO",
	}
	for name, body := range files {
		p := filepath.Join(base, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// Siblings made by gzip -k carry their original's mtime; the stale one
	// is older than its original and must not be served.
	now := time.Now().Truncate(time.Second)
	for name, mt := range map[string]time.Time{"app.js": now, "app.js.gz": now, "app.js.br": now, "style.css": now, "style.css.gz": old} {
		if err := os.Chtimes(filepath.Join(root, name), mt, mt); err != nil {
			t.Fatal(err)
		}
	}
	for link, to := range map[string]string{
		"root/link-out":    "../outside/secret.txt",
		"root/link-abs":    filepath.Join(outside, "secret.txt"),
		"root/dirlink-out": "../outside/dir",
		"root/link-in":     "hello.txt",
	} {
		if err := os.Symlink(to, filepath.Join(base, link)); err != nil {
			t.Fatal(err)
		}
	}
	if err := syscall.Mkfifo(filepath.Join(root, "fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	return root
}

// rawGet sends a request line as given (no client-side cleaning) and
// returns the status and body.
func rawGet(t *testing.T, addr, target string, hdr ...string) (int, http.Header, string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n%s\r\n", target, strings.Join(append(hdr, ""), "\r\n"))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("GET %q: %v", target, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

func TestStaticTraversal(t *testing.T) {
	root := staticTree(t)
	confined := strings.TrimPrefix(serveTCP(t, mustNew(t, "dir:"+root, Env{})), "http://")
	follow := strings.TrimPrefix(serveTCP(t, mustNew(t, "dir:"+root, Env{Options: Options{DirFollowSymlinks: true}})), "http://")
	tests := []struct {
		target     string
		want       int // confined
		wantFollow int // with dir_follow_symlinks
	}{
		{"/../outside/secret.txt", 400, 400},
		{"/sub/../../outside/secret.txt", 400, 400},
		{"/%2e%2e/outside/secret.txt", 400, 400},
		{"/%2E%2E/outside/secret.txt", 400, 400},
		{"/.%2e/outside/secret.txt", 400, 400},
		{"/sub/%2e%2e/%2e%2e/outside/secret.txt", 400, 400},
		{"/..%2foutside%2fsecret.txt", 400, 400},
		{"/sub%2f..%2f..%2foutside%2fsecret.txt", 400, 400},
		{"/%252e%252e/outside/secret.txt", 404, 404}, // double-encoded: a literal name
		{"/%252e%252e%252foutside%252fsecret.txt", 404, 404},
		{"/..\\outside\\secret.txt", 400, 400},
		{"/%5c..%5coutside%5csecret.txt", 400, 400},
		{"/hello.txt%00.html", 400, 400},
		{"/%00", 400, 400},
		{"/%c0%ae%c0%ae/outside/secret.txt", 400, 400}, // overlong UTF-8: not dots, not a valid name either
		{"/..;/outside/secret.txt", 404, 404},
		{"//etc/passwd", 404, 404},
		{"/etc/passwd", 404, 404},
		{"http://x/../outside/secret.txt", 400, 400}, // absolute-form
		{"/link-out", 404, 200},
		{"/link-abs", 404, 200},
		{"/dirlink-out/other.txt", 404, 200},
		{"/link-in", 200, 200},
		{"/fifo", 404, 404},
		{"/./hello.txt", 200, 200},
		{"/%2e%2e/x.txt", 400, 400},
	}
	for _, tt := range tests {
		t.Run(tt.target, func(t *testing.T) {
			for _, c := range []struct {
				addr string
				want int
			}{{confined, tt.want}, {follow, tt.wantFollow}} {
				status, _, body := rawGet(t, c.addr, tt.target)
				if status != c.want {
					t.Errorf("%s (follow=%v): status %d, want %d", tt.target, c.addr == follow, status, c.want)
				}
				if c.want != 200 && strings.Contains(body, "SECRET") {
					t.Errorf("%s leaked %q", tt.target, body)
				}
			}
		})
	}
}

func TestStaticServing(t *testing.T) {
	root := staticTree(t)
	addr := strings.TrimPrefix(serveTCP(t, mustNew(t, "dir:"+root, Env{})), "http://")
	listing := strings.TrimPrefix(serveTCP(t, mustNew(t, "dir:"+root, Env{Options: Options{DirListing: true}})), "http://")
	_, h, _ := rawGet(t, addr, "/hello.txt")
	etag, lastMod := h.Get("ETag"), h.Get("Last-Modified")
	if etag == "" || lastMod == "" {
		t.Fatalf("no validators: %v", h)
	}
	tests := []struct {
		name    string
		addr    string
		target  string
		hdr     []string
		status  int
		body    string            // exact, unless empty
		headers map[string]string // exact values; "" means absent
	}{
		{"index", addr, "/", nil, 200, "<h1>home</h1>", map[string]string{"Content-Type": "text/html; charset=utf-8"}},
		{"file", addr, "/hello.txt", nil, 200, "hello world\n", map[string]string{"Content-Type": "text/plain; charset=utf-8", "Accept-Ranges": "bytes"}},
		{"range", addr, "/hello.txt", []string{"Range: bytes=0-4"}, 206, "hello", map[string]string{"Content-Range": "bytes 0-4/12"}},
		{"suffix range", addr, "/hello.txt", []string{"Range: bytes=-6"}, 206, "world\n", nil},
		{"unsatisfiable", addr, "/hello.txt", []string{"Range: bytes=100-"}, 416, "", nil},
		{"multi range", addr, "/hello.txt", []string{"Range: bytes=0-1,6-7"}, 206, "", nil},
		{"if-none-match", addr, "/hello.txt", []string{"If-None-Match: " + etag}, 304, "", map[string]string{"ETag": etag}},
		{"if-none-match other", addr, "/hello.txt", []string{`If-None-Match: "nope"`}, 200, "hello world\n", nil},
		{"if-modified-since", addr, "/hello.txt", []string{"If-Modified-Since: " + lastMod}, 304, "", nil},
		{"if-modified-since old", addr, "/hello.txt", []string{"If-Modified-Since: Mon, 02 Jan 2006 15:04:05 GMT"}, 200, "hello world\n", nil},
		{"if-range match", addr, "/hello.txt", []string{"Range: bytes=0-4", "If-Range: " + etag}, 206, "hello", nil},
		{"if-range stale", addr, "/hello.txt", []string{"Range: bytes=0-4", `If-Range: "old"`}, 200, "hello world\n", nil},
		{"br", addr, "/app.js", []string{"Accept-Encoding: gzip, br"}, 200, "BROTLI-BYTES", map[string]string{"Content-Encoding": "br", "Vary": "Accept-Encoding", "Content-Type": "text/javascript; charset=utf-8"}},
		{"gzip", addr, "/app.js", []string{"Accept-Encoding: gzip, br;q=0"}, 200, "GZIP-BYTES", map[string]string{"Content-Encoding": "gzip", "Vary": "Accept-Encoding"}},
		{"identity", addr, "/app.js", nil, 200, "console.log('plain')", map[string]string{"Content-Encoding": "", "Vary": "Accept-Encoding"}},
		{"star", addr, "/app.js", []string{"Accept-Encoding: *"}, 200, "BROTLI-BYTES", nil},
		{"compressed range", addr, "/app.js", []string{"Accept-Encoding: gzip", "Range: bytes=0-3"}, 206, "GZIP", nil},
		{"stale sibling ignored", addr, "/style.css", []string{"Accept-Encoding: gzip"}, 200, "body{}", map[string]string{"Content-Encoding": "", "Vary": ""}},
		{"sniffed type", addr, "/noext", nil, 200, "", map[string]string{"Content-Type": "image/png"}},
		{"dir without slash", addr, "/sub?a=1", nil, 301, "", map[string]string{"Location": "sub/?a=1"}},
		{"no listing", addr, "/sub/", nil, 403, "", nil},
		{"file with slash", addr, "/hello.txt/", nil, 404, "", nil},
		{"missing", addr, "/nope.txt", nil, 404, "", nil},
		{"literal percent name", addr, "/%252e%252e/x.txt", nil, 200, "literal name", nil},
		{"dotfile", addr, "/.env", nil, 404, "", nil},
		{"dot directory", addr, "/.git/config", nil, 404, "", nil},
		{"encoded dotfile", addr, "/%2eenv", nil, 404, "", nil},
		{"well-known", addr, "/.well-known/acme-challenge/tok", nil, 200, "tok.thumb", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, h, body := rawGet(t, tt.addr, tt.target, tt.hdr...)
			if status != tt.status {
				t.Errorf("status %d, want %d (body %q)", status, tt.status, body)
			}
			if tt.body != "" && body != tt.body {
				t.Errorf("body %q, want %q", body, tt.body)
			}
			for k, want := range tt.headers {
				if got := h.Get(k); got != want {
					t.Errorf("%s = %q, want %q", k, got, want)
				}
			}
		})
	}
	t.Run("under a prefix", func(t *testing.T) {
		mux := http.NewServeMux()
		mux.Handle("/static/", http.StripPrefix("/static", mustNew(t, "dir:"+root, Env{})))
		mux.Handle("/static", http.StripPrefix("/static", mustNew(t, "dir:"+root, Env{})))
		pre := strings.TrimPrefix(serveTCP(t, mux), "http://")
		for target, want := range map[string]string{"/static": "static/", "/static/sub": "sub/"} {
			if status, h, _ := rawGet(t, pre, target); status != 301 || h.Get("Location") != want {
				t.Errorf("%s: %d %q, want 301 %q", target, status, h.Get("Location"), want)
			}
		}
		if status, _, body := rawGet(t, pre, "/static/"); status != 200 || body != "<h1>home</h1>" {
			t.Errorf("/static/: %d %q", status, body)
		}
	})
	t.Run("listing", func(t *testing.T) {
		status, _, body := rawGet(t, listing, "/sub/")
		if status != 200 || !strings.Contains(body, `href="./file.txt"`) || !strings.Contains(body, "&lt;b&gt;&amp;.txt") || strings.Contains(body, "<b>&") {
			t.Errorf("listing %d: %s", status, body)
		}
	})
	t.Run("method", func(t *testing.T) {
		resp, err := http.Post("http://"+addr+"/hello.txt", "text/plain", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 405 || resp.Header.Get("Allow") != "GET, HEAD" {
			t.Errorf("POST: %d %v", resp.StatusCode, resp.Header)
		}
	})
}

func TestRedirect(t *testing.T) {
	tests := []struct {
		mount, target, method, uri, host, want string
		code                                   int
	}{
		{"/", "redirect:https://example.com", "GET", "/a/b?c=d", "x", "https://example.com/a/b?c=d", 308},
		{"/", "redirect:https://example.com:8443/base/", "POST", "/a", "x", "https://example.com:8443/base/a", 308},
		{"/", "redirect:https://", "GET", "/p", "site.example:8080", "https://site.example/p", 308},
		{"/", "redirect:https://", "HEAD", "/", "[::1]:80", "https://[::1]/", 308},
		{"/", "redirect:https://", "GET", "/", "[::1]", "https://[::1]/", 308},
		{"/", "redirect:https://:8443", "GET", "/x", "site.example:8080", "https://site.example:8443/x", 308},
		{"/", "redirect:https://:8443", "GET", "/x", "", "", 400},
		// Mounted below a prefix: the prefix is stripped, the query kept,
		// and the path is the canonical one.
		{"/old", "redirect:https://b.test/new", "GET", "/old/x?q=1", "a", "https://b.test/new/x?q=1", 308},
		{"/old", "redirect:https://b.test/new", "GET", "/old", "a", "https://b.test/new", 308},
		{"/old", "redirect:https://b.test/new", "GET", "/old/", "a", "https://b.test/new/", 308},
		{"/old", "redirect:https://b.test", "GET", "/old/a/../b%41?x", "a", "https://b.test/bA?x", 308},
		{"/old", "redirect:https://b.test/new", "PUT", "/old/f", "a", "https://b.test/new/f", 308},
	}
	for _, tt := range tests {
		t.Run(tt.mount+" "+tt.target+" "+tt.uri, func(t *testing.T) {
			front, _ := serveCore(t, map[string]http.Handler{tt.mount: mustNew(t, tt.target, Env{})}, nil)
			c, err := net.Dial("tcp", strings.TrimPrefix(front, "http://"))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			fmt.Fprintf(c, "%s %s HTTP/1.1\r\nHost: %s\r\nContent-Length: 0\r\n\r\n", tt.method, tt.uri, tt.host)
			resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: tt.method})
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tt.code || resp.Header.Get("Location") != tt.want {
				t.Errorf("%d %q, want %d %q", resp.StatusCode, resp.Header.Get("Location"), tt.code, tt.want)
			}
		})
	}
}
