package httpcore

import (
	"net/http"
	"strings"
)

// One canonical request. Every request, HTTP/1.x from parseHead and h2 from
// x/net/http2, passes through canonicalize before any handler sees it, so
// the dispatcher, every policy rule, static files and the proxy's upstream
// request line all work from the same path. A rule that checks one form of
// the path while the router uses another is an access-control bypass
// ("/admin/../x" denied as /x, served by /admin): the canonical path leaves
// nothing for a later layer to interpret differently.
//
// The path is normalised once (RFC 3986 section 6.2.2):
//   - percent-encoded unreserved characters are decoded ("%7e" is "~",
//     "%2e" is "."), every other escape is kept with upper-case hex;
//   - characters not allowed raw in a path ('"', '<', '>', '[', ']', '^',
//     '`', '{', '|', '}') are percent-encoded;
//   - dot segments are removed (RFC 3986 section 5.2.4) and repeated
//     slashes merged; a path that climbs above the root is refused, not
//     clamped, since only an attack sends one;
//   - an encoded slash (%2F), a backslash (raw or %5C), NUL and every other
//     control character are refused: each is read as a separator or a
//     terminator by some server behind the edge.
//
// r.URL.Path holds the decoded result and r.URL.EscapedPath() the encoded
// one (r.URL.RawPath is set only where url.URL would not derive it from
// Path), which is what a proxy puts on its request line. r.RequestURI keeps
// what the client sent, for logs.
//
// The request-target and method rules of parseHead are applied to h2
// requests too, since x/net/http2 is laxer: CONNECT is refused (but h2's
// extended CONNECT, whose :path is checked like any, h2ext.go), a space or
// control byte in :path is a 400, "*" is only for OPTIONS and is answered
// by the core (never forwarded), and Content-Length values must agree.

// Rejections of the canonical request.
var (
	errEncodedSlash  = reject(400, "bad_path", "encoded slash in path")
	errBackslash     = reject(400, "bad_path", "backslash in path")
	errPathControl   = reject(400, "bad_path", "control character in path")
	errPathAboveRoot = reject(400, "bad_path", "path climbs above the root")
	errMethodTooLong = reject(501, "unknown_method", "method token too long")
	errMethodUnknown = reject(501, "unknown_method", "method not implemented")
	errH2Target      = reject(400, "bad_target", "h2 :path must be origin-form or *")
)

// maxMethodLen caps the method token. The longest registered method
// (UPDATEREDIRECTREF, BASELINE-CONTROL) is 17 bytes.
const maxMethodLen = 32

// checkMethod refuses a method token that no server behind the edge would
// implement: longer than maxMethodLen, or with a lower-case letter. Methods
// are case-sensitive and every standard one (GET HEAD POST PUT DELETE
// CONNECT OPTIONS TRACE PATCH, the WebDAV ones) is upper case, so a
// lower-case "get" is an unknown method, not GET. 501 (RFC 9110 section
// 9.1): the method is not implemented here.
func checkMethod(m string) *rejectError {
	if !isToken(m) {
		return errBadMethod
	}
	if len(m) > maxMethodLen {
		return errMethodTooLong
	}
	for i := 0; i < len(m); i++ {
		if 'a' <= m[i] && m[i] <= 'z' {
			return errMethodUnknown
		}
	}
	return nil
}

// canonicalize checks r against the request rules shared by HTTP/1.x and
// h2 and replaces r.URL's path with the canonical one. A non-nil result is
// the rejection to send instead of running any handler.
func (c *Core) canonicalize(r *http.Request) *rejectError {
	if rerr := checkMethod(r.Method); rerr != nil {
		return rerr
	}
	if r.Method == "CONNECT" && !isExtendedConnect(r) {
		return errConnect // an extended CONNECT (h2ext.go) is a request like others
	}
	t := r.RequestURI
	for i := 0; i < len(t); i++ {
		switch b := t[i]; {
		case b <= 0x20 || b >= 0x7f:
			return errBadTarget
		case b == '#':
			return errFragment
		}
	}
	if rerr := checkContentLength(r); rerr != nil {
		return rerr
	}
	if t == "*" {
		if r.Method != "OPTIONS" {
			return errAsteriskMethod
		}
		return nil // answered by asteriskHandler
	}
	raw, ok := targetPath(t, r.ProtoMajor >= 2)
	if !ok {
		if r.ProtoMajor >= 2 {
			return errH2Target
		}
		return errBadTarget
	}
	path, rawPath, rerr := canonicalPath(raw, c.opts.AllowEncodedSlash)
	if rerr != nil {
		return rerr
	}
	r.URL.Path, r.URL.RawPath = path, rawPath
	return nil
}

// targetPath returns the still-encoded path of an origin-form target or, for
// HTTP/1.x, of an absolute-form one ("" for "http://host?q" is "/").
func targetPath(t string, h2 bool) (string, bool) {
	if q := strings.IndexByte(t, '?'); q >= 0 {
		t = t[:q]
	}
	if strings.HasPrefix(t, "/") {
		return t, true
	}
	if h2 || !hasHTTPScheme(t) {
		return "", false
	}
	rest := t[strings.Index(t, "//")+2:]
	if i := strings.IndexByte(rest, '/'); i >= 0 {
		return rest[i:], true
	}
	return "/", true
}

// checkContentLength refuses Content-Length values that are malformed or
// disagree (RFC 9110 section 8.6). parseHead has done so for HTTP/1.x;
// x/net/http2 reads only the first value, so a request whose values differ
// would mean one length to the edge and another to an upstream reading the
// last one.
func checkContentLength(r *http.Request) *rejectError {
	cls := r.Header["Content-Length"]
	if len(cls) == 0 {
		return nil
	}
	for _, v := range cls {
		if v != cls[0] {
			return errBadCL
		}
	}
	if _, rerr := parseContentLength(cls[0]); rerr != nil {
		return errBadCL
	}
	if len(cls) > 1 {
		r.Header["Content-Length"] = cls[:1]
	}
	return nil
}

// asteriskHandler answers "OPTIONS *" (RFC 9110 section 9.3.7): a question
// about the server itself, which the edge answers rather than forwarding a
// target no upstream path stands for.
type asteriskHandler struct{}

// allowedMethods are the methods the edge passes on (CONNECT is refused,
// but for h2's extended CONNECT, which is no method of a request on its own
// but a tunnel on one stream, h2ext.go; TRACE is left to the upstreams, most
// of which refuse it).
const allowedMethods = "GET, HEAD, POST, PUT, DELETE, OPTIONS, PATCH"

func (asteriskHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Allow", allowedMethods)
	h.Set("Content-Length", "0")
	w.WriteHeader(http.StatusOK)
}

// handlerFor returns the handler that serves r: the core's own for
// "OPTIONS *", the configured one otherwise.
func (c *Core) handlerFor(r *http.Request) http.Handler {
	if r.RequestURI == "*" {
		return asteriskHandler{}
	}
	return c.handler
}

// canonicalPath normalises the encoded path p (which starts with "/") as
// described above. It returns the decoded path and the encoded one when
// url.URL would not derive that from the decoded path (else "").
//
// With allowSlash, %2F is kept encoded (and decoded to '/' in path, as
// url.URL does) instead of refused; the decoded path must then still have
// no empty or dot segments, so that whatever matches on it (dispatcher,
// policy) cannot be led elsewhere than what the encoded path names.
func canonicalPath(p string, allowSlash bool) (path, rawPath string, rerr *rejectError) {
	if len(p) == 0 || p[0] != '/' {
		return "", "", errBadTarget
	}
	if plainCanonical(p) {
		if needsRawPath(p) {
			return p, p, nil
		}
		return p, "", nil
	}
	var stackBuf [16]int
	stack := stackBuf[:0] // where each kept segment starts in buf
	buf := make([]byte, 0, len(p)+8)
	escaped, slash := false, false
	for i := 0; i < len(p); {
		j := i + 1
		for j < len(p) && p[j] != '/' {
			j++
		}
		last := j == len(p)
		start := len(buf)
		buf = append(buf, '/')
		for k := i + 1; k < j; k++ {
			b := p[k]
			switch {
			case b == '%':
				if k+2 >= j {
					return "", "", errBadTarget
				}
				hi, ok1 := unhex(p[k+1])
				lo, ok2 := unhex(p[k+2])
				if !ok1 || !ok2 {
					return "", "", errBadTarget
				}
				v := hi<<4 | lo
				k += 2
				switch {
				case v == '/':
					if !allowSlash {
						return "", "", errEncodedSlash
					}
					slash = true
				case v == '\\':
					return "", "", errBackslash
				case v < 0x20 || v == 0x7f:
					return "", "", errPathControl
				case isUnreserved(v):
					buf = append(buf, v)
					continue
				}
				buf = append(buf, '%', upperHex[v>>4], upperHex[v&15])
				escaped = true
			case b == '\\':
				return "", "", errBackslash
			case b < 0x20 || b == 0x7f:
				return "", "", errPathControl
			case b == ' ' || b >= 0x80:
				return "", "", errBadTarget
			case isPathChar(b):
				buf = append(buf, b)
			default:
				buf = append(buf, '%', upperHex[b>>4], upperHex[b&15])
				escaped = true
			}
		}
		switch seg := buf[start+1:]; {
		case len(seg) == 0: // "//" merged; a final empty segment is the trailing slash
			if !last {
				buf = buf[:start]
			}
		case string(seg) == ".":
			buf = append(buf[:start], '/')
			if !last {
				buf = buf[:start]
			}
		case string(seg) == "..":
			if len(stack) == 0 {
				return "", "", errPathAboveRoot
			}
			buf = buf[:stack[len(stack)-1]]
			stack = stack[:len(stack)-1]
			if last {
				buf = append(buf, '/')
			}
		default:
			stack = append(stack, start)
		}
		i = j
	}
	if len(buf) == 0 {
		buf = append(buf, '/')
	}
	enc := string(buf)
	if !escaped {
		if needsRawPath(enc) {
			return enc, enc, nil
		}
		return enc, "", nil
	}
	path = unescapePath(enc)
	if slash && !plainSegments(path) {
		return "", "", errEncodedSlash
	}
	if enc == escapePathLikeURL(path) {
		return path, "", nil
	}
	return path, enc, nil
}

// plainCanonical reports whether p is canonical as it stands: only bytes
// kept raw, no escapes, no empty or dot segments (but a final "/").
func plainCanonical(p string) bool {
	for i := 0; i < len(p); i++ {
		if !isPathChar(p[i]) && p[i] != '/' {
			return false
		}
	}
	return plainSegments(p)
}

// plainSegments reports whether the rooted path p has no empty segment
// (but a final "/") and no "." or ".." segment.
func plainSegments(p string) bool {
	for i := 0; i < len(p); {
		j := i + 1
		for j < len(p) && p[j] != '/' {
			j++
		}
		switch seg := p[i+1 : j]; seg {
		case "":
			if j != len(p) {
				return false
			}
		case ".", "..":
			return false
		}
		i = j
	}
	return true
}

// isUnreserved: ALPHA / DIGIT / "-" / "." / "_" / "~" (RFC 3986 section 2.3).
func isUnreserved(b byte) bool {
	return 'a' <= b && b <= 'z' || 'A' <= b && b <= 'Z' || '0' <= b && b <= '9' || b == '-' || b == '.' || b == '_' || b == '~'
}

// isPathChar: pchar without pct-encoded, i.e. the bytes a canonical path
// segment holds raw: unreserved, sub-delims, ":" and "@".
func isPathChar(b byte) bool {
	if isUnreserved(b) {
		return true
	}
	switch b {
	case '!', '$', '&', '\'', '(', ')', '*', '+', ',', ';', '=', ':', '@':
		return true
	}
	return false
}

// urlEscapes reports whether url.URL.EscapedPath, working from a decoded
// path alone, escapes b: everything but unreserved, "/" and "$&+,:;=@".
func urlEscapes(b byte) bool {
	if isUnreserved(b) || b == '/' {
		return false
	}
	switch b {
	case '$', '&', '+', ',', ':', ';', '=', '@':
		return false
	}
	return true
}

// needsRawPath reports whether the unescaped canonical path p differs from
// what url.URL would escape its Path to: it does for the sub-delims "!'()*",
// which it escapes while a canonical path keeps them as sent.
func needsRawPath(p string) bool {
	for i := 0; i < len(p); i++ {
		if urlEscapes(p[i]) {
			return true
		}
	}
	return false
}

// escapePathLikeURL is what url.URL.EscapedPath makes of a Path with no
// RawPath: upper-case escapes for every byte urlEscapes.
func escapePathLikeURL(p string) string {
	var b strings.Builder
	b.Grow(len(p) + 16)
	for i := 0; i < len(p); i++ {
		c := p[i]
		if urlEscapes(c) {
			b.WriteByte('%')
			b.WriteByte(upperHex[c>>4])
			b.WriteByte(upperHex[c&15])
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

// unescapePath decodes an encoded path already checked by canonicalPath.
func unescapePath(s string) string {
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if s[i] == '%' {
			hi, _ := unhex(s[i+1])
			lo, _ := unhex(s[i+2])
			b = append(b, hi<<4|lo)
			i += 2
			continue
		}
		b = append(b, s[i])
	}
	return string(b)
}

const upperHex = "0123456789ABCDEF"
