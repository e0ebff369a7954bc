package apps

import (
	"net/http"
	"net/netip"
	"path"
	"strconv"
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

// FuzzNormalizeRange checks the Range normaliser: whatever it serves is at
// most maxRanges ranges inside the file, none overlapping or touching
// another, a multipart answer no larger than the file plus multipartSlack,
// and normalising its own output changes nothing.
func FuzzNormalizeRange(f *testing.F) {
	for _, s := range []string{"bytes=0-0", "bytes=0-0,0-0,0-0", "bytes=-5,3-", "bytes=5-1", "bytes=,,1-2,", "BYTES=1-2, 4-5", "bytes=99999999999999999999-", "bytes=-99999999999999999999", "bytes=0-9,10-19", "items=1-2"} {
		f.Add(s, int64(100))
	}
	f.Fuzz(func(t *testing.T, header string, size int64) {
		if size < 0 {
			size = -size
		}
		const maxRanges = 4
		ans, v := normalizeRange([]string{header}, size, "text/plain", maxRanges)
		switch ans {
		case rangeIgnore:
			return
		case rangeUnsatisfiable:
			if v != "bytes="+strconv.FormatInt(size, 10)+"-" {
				t.Fatalf("%q on %d: unsatisfiable as %q", header, size, v)
			}
			return
		}
		var rs []byteRange
		for spec := range strings.SplitSeq(strings.TrimPrefix(v, "bytes="), ",") {
			r, sat, ok := parseRangeSpec(spec, size)
			if !ok || !sat || r.last > size-1 || strings.HasPrefix(spec, "-") {
				t.Fatalf("%q on %d gave %q: bad spec %q", header, size, v, spec)
			}
			for _, o := range rs {
				if r.first <= o.last+1 && o.first <= r.last+1 {
					t.Fatalf("%q on %d gave %q: %q overlaps or touches another", header, size, v, spec)
				}
			}
			rs = append(rs, r)
		}
		if len(rs) > maxRanges || (len(rs) > 1 && multipartSize(rs, size, "text/plain") > size+multipartSlack) {
			t.Fatalf("%q on %d gave %q: too much", header, size, v)
		}
		if ans2, v2 := normalizeRange([]string{v}, size, "text/plain", maxRanges); ans2 != rangeServe || v2 != v {
			t.Fatalf("%q on %d gave %q, which normalises to %q", header, size, v, v2)
		}
	})
}
