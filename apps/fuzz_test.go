package apps

import (
	"net/http"
	"net/netip"
	"path"
	"strings"
	"testing"
	"tlsedge/policy"
)

// FuzzCleanPath checks the static path guard: whatever it accepts is a
// relative, clean, slash-separated path with no ".." element, NUL or
// backslash, so it cannot name anything above the root.
func FuzzCleanPath(f *testing.F) {
	for _, s := range []string{"/", "/a/b", "/../x", "/a/../../b", "/..", "/.%2e/", "//etc/passwd", "/a\\..\\b", "/\x00", "/./a/./b/", "/a/.../b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		rel, ok := cleanPath(p)
		if !ok {
			return
		}
		if rel == "." {
			return
		}
		if strings.HasPrefix(rel, "/") || strings.ContainsAny(rel, "\x00\\") || path.Clean(rel) != rel {
			t.Fatalf("cleanPath(%q) = %q", p, rel)
		}
		for seg := range strings.SplitSeq(rel, "/") {
			if seg == ".." || seg == "" {
				t.Fatalf("cleanPath(%q) = %q has segment %q", p, rel, seg)
			}
		}
	})
}

// FuzzAcceptsEncoding checks the Accept-Encoding reader never panics and
// that an explicit q=0 always refuses.
func FuzzAcceptsEncoding(f *testing.F) {
	for _, s := range []string{"gzip", "br;q=0", "*", "gzip;q=0.5, br", ";;,,q=", "br; q=0 , *"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		got := acceptsEncoding([]string{v}, "br")
		if strings.TrimSpace(v) == "br;q=0" && got {
			t.Fatalf("%q accepted br", v)
		}
	})
}

// FuzzNewTarget checks that target parsing never panics and that every
// accepted target builds a handler.
func FuzzNewTarget(f *testing.F) {
	for _, s := range []string{"http://h:1", "http://h:1/base/", "https://[::1]:8443", "unix:/s.sock", "unix:/s.sock:/b", "status:", "redirect:https://x", "redirect:https://", "dir:/", "ftp:", ":", "http://%zz"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, target string) {
		if strings.HasPrefix(target, "dir:") {
			return // touches the file system
		}
		h, err := New(target, Env{})
		if err == nil && h == nil {
			t.Fatalf("New(%q): nil handler and nil error", target)
		}
		if err == nil {
			_ = h.(http.Handler)
		}
	})
}

// FuzzParseTrusted checks trusted_proxies parsing and matching never panic.
func FuzzParseTrusted(f *testing.F) {
	for _, s := range []string{"127.0.0.1", "10.0.0.0/8", "unix", "::1", "fe80::/10", "bad", "1.2.3.4/33"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ts, err := policy.ParseTrust(strings.Split(s, ","))
		if err != nil {
			return
		}
		_ = ts.TrustsIP(netipLoopback, false)
	})
}

var netipLoopback = netip.MustParseAddr("127.0.0.1")
