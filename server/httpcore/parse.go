package httpcore

import (
	"bufio"
	"bytes"
	"errors"
	"net/http"
	"net/url"
	"strings"
)

// The request head is parsed in two steps. readHead collects the raw head
// (request line and header lines, CRLF-terminated, without the blank line)
// into a reusable byte slice, enforcing the size limit as bytes arrive.
// parseHead then validates it in place, canonicalises header names in the
// byte slice itself, converts the whole head to one string and takes every
// field as a substring of it. So a request costs one string allocation for
// all of its method, target, names and values, plus the header map and one
// backing array for its value slices: nothing per header.

// rejectError is a request the core refuses itself: status, a stable reason
// key for the statistics and a short text for the client.
type rejectError struct {
	status int
	reason string
	text   string
}

func (e *rejectError) Error() string { return "httpcore: " + e.text }

func reject(status int, reason, text string) *rejectError {
	return &rejectError{status: status, reason: reason, text: text}
}

// Rejections are values made once: parsing errors must not allocate either,
// since a hostile client can send them as fast as good requests.
var (
	errBareLF          = reject(400, "bare_lf", "line not terminated by CRLF")
	errLineTooLong     = reject(414, "uri_too_long", "request line too long")
	errHeadTooLarge    = reject(431, "header_too_large", "request header fields too large")
	errBadRequestLine  = reject(400, "bad_request_line", "malformed request line")
	errBadMethod       = reject(400, "bad_method", "malformed method")
	errBadTarget       = reject(400, "bad_target", "malformed request target")
	errFragment        = reject(400, "bad_target", "fragment in request target")
	errBadVersion      = reject(400, "bad_version", "malformed HTTP version")
	errVersion         = reject(505, "version_not_supported", "HTTP version not supported")
	errConnect         = reject(405, "connect", "CONNECT not supported: not a proxy")
	errAsteriskMethod  = reject(400, "bad_target", "asterisk-form only for OPTIONS")
	errBadHeaderName   = reject(400, "bad_header", "malformed header field name")
	errSpaceBeforeCol  = reject(400, "bad_header", "whitespace before colon")
	errObsFold         = reject(400, "obs_fold", "obsolete line folding")
	errBadHeaderValue  = reject(400, "bad_header", "invalid character in header field value")
	errNoHost          = reject(400, "bad_host", "missing Host header")
	errManyHost        = reject(400, "bad_host", "more than one Host header")
	errBadHost         = reject(400, "bad_host", "malformed Host header")
	errBadCL           = reject(400, "bad_content_length", "malformed Content-Length")
	errCLTooLarge      = reject(413, "body_too_large", "request body too large")
	errTEWithCL        = reject(400, "bad_transfer_encoding", "Transfer-Encoding with Content-Length")
	errTE10            = reject(400, "bad_transfer_encoding", "Transfer-Encoding in HTTP/1.0")
	errTENotChunked    = reject(400, "bad_transfer_encoding", "chunked is not the final transfer coding")
	errTEUnknown       = reject(501, "unknown_transfer_encoding", "transfer coding not implemented")
	errExpectation     = reject(417, "bad_expect", "unsupported expectation")
	errRequestTimeout  = reject(408, "timeout", "request timeout")
	errBodyTimeout     = reject(408, "body_timeout", "request body too slow")
	errBadChunk        = reject(400, "bad_chunk", "malformed chunked body")
	errBadTrailer      = reject(400, "bad_trailer", "malformed trailer")
	errTrailerTooLarge = reject(431, "trailer_too_large", "trailer fields too large")
	errBodyTooLarge    = reject(413, "body_too_large", "request body too large")
	errBodyShort       = reject(400, "body_incomplete", "request body incomplete")
	errQueue503        = reject(503, "queue_full", "server busy, try again")
	errQueueTimeout503 = reject(503, "queue_timeout", "server busy, try again")
	errMaxConns503     = reject(503, "max_connections", "too many connections")
	errShutdown503     = reject(503, "shutdown", "server shutting down")
)

// errIdle is readHead's way of saying the connection ended (EOF, reset,
// timeout, shutdown) before any byte of a request: close silently.
var errIdle = errors.New("httpcore: connection idle or closed")

// maxLeadingCRLF bounds the empty lines tolerated before a request line
// (RFC 9112 section 2.2 asks to ignore at least one).
const maxLeadingCRLF = 4

// readHead appends the request head to buf (reset to empty first), up to
// and excluding the blank line. limit bounds the head including the blank
// line. A read error after some bytes of the head is a partial request: the
// caller turns a timeout into 408. grow, if not nil, makes every larger
// buffer the head needs (see conn.growHead); its error ends the read.
func readHead(br *bufio.Reader, buf []byte, limit int64, grow headGrower) ([]byte, error) {
	buf = buf[:0]
	var total int64
	leading := 0
	lineStart := 0
	for {
		frag, err := br.ReadSlice('\n')
		total += int64(len(frag))
		if total > limit {
			if lineStart == 0 {
				return buf, errLineTooLong
			}
			return buf, errHeadTooLarge
		}
		if grow != nil && len(buf)+len(frag) > cap(buf) {
			var gerr error
			if buf, gerr = grow.growHead(buf, len(buf)+len(frag)); gerr != nil {
				return buf, gerr
			}
		}
		switch err {
		case nil:
		case bufio.ErrBufferFull:
			buf = append(buf, frag...)
			continue
		default:
			if total == 0 {
				return buf, errIdle
			}
			buf = append(buf, frag...)
			return buf, err
		}
		buf = append(buf, frag...)
		line := buf[lineStart:]
		if len(line) < 2 || line[len(line)-2] != '\r' {
			return buf, errBareLF
		}
		if len(line) == 2 {
			buf = buf[:lineStart]
			if lineStart == 0 {
				if leading++; leading > maxLeadingCRLF {
					return buf, errBadRequestLine
				}
				continue
			}
			return buf, nil
		}
		lineStart = len(buf)
	}
}

func bytesIndexCRLF(b []byte) int { return bytes.Index(b, crlf) }

var crlf = []byte("\r\n")

// field marks one header field inside the head: byte offsets of its name and
// of its value with optional whitespace trimmed.
type field struct{ n0, n1, v0, v1 int32 }

// head is a parsed request head. Every string is a substring of one string
// holding the whole head.
type head struct {
	method, target, proto string
	minor                 int // 0 or 1
	url                   *url.URL
	header                http.Header
	host                  string
	contentLength         int64 // -1: none declared
	chunked               bool
	close                 bool // the client asked to close, or HTTP/1.0 without keep-alive
	keepAlive             bool // HTTP/1.0 client sent Connection: keep-alive
	expectContinue        bool
}

// parseHead validates raw (as produced by readHead) and fills h. fields is a
// reusable scratch slice; the returned one may be kept for the next call.
// maxBody is max_request_body_size (0: no limit).
//
// u is where a plain origin-form target's URL is built (it lives in the
// request's allocation); other forms get a URL from url.ParseRequestURI.
func parseHead(raw []byte, fields []field, maxBody int64, h *head, u *url.URL) ([]field, *rejectError) {
	// Request line: method SP request-target SP HTTP-version.
	eol := bytesIndexCRLF(raw)
	if eol < 0 {
		return fields, errBadRequestLine
	}
	line := raw[:eol]
	sp1 := -1
	for i, b := range line {
		if b == ' ' {
			sp1 = i
			break
		}
		if !isTokenByte(b) {
			if b == '\t' || b < 0x20 || b == 0x7f {
				return fields, errBadRequestLine
			}
			return fields, errBadMethod
		}
	}
	if sp1 <= 0 {
		return fields, errBadRequestLine
	}
	sp2 := -1
	for i := sp1 + 1; i < len(line); i++ {
		b := line[i]
		if b == ' ' {
			sp2 = i
			break
		}
		if b <= 0x20 || b >= 0x7f {
			return fields, errBadTarget
		}
	}
	if sp2 < 0 || sp2 == sp1+1 {
		return fields, errBadRequestLine
	}
	ver := line[sp2+1:]
	var minor int
	switch {
	case string(ver) == "HTTP/1.1":
		minor = 1
	case string(ver) == "HTTP/1.0":
		minor = 0
	case len(ver) == 8 && string(ver[:5]) == "HTTP/" && isDigit(ver[5]) && ver[6] == '.' && isDigit(ver[7]):
		return fields, errVersion
	case len(ver) == 6 && string(ver[:5]) == "HTTP/" && isDigit(ver[5]):
		return fields, errVersion // HTTP/2, HTTP/3
	default:
		return fields, errBadVersion
	}

	// Header fields: validate, canonicalise names in place.
	fields = fields[:0]
	pos := eol + 2
	for pos < len(raw) {
		e := pos + bytesIndexCRLF(raw[pos:])
		if e < pos {
			return fields, errBadHeaderValue
		}
		colon, v0, v1, err := splitField(raw[pos:e])
		if err != nil {
			return fields, err
		}
		fields = append(fields, field{int32(pos), int32(pos + colon), int32(pos + v0), int32(pos + v1)})
		pos = e + 2
	}

	s := string(raw) // the one allocation for every string of the request
	*h = head{
		method:        s[:sp1],
		target:        s[sp1+1 : sp2],
		proto:         s[sp2+1 : eol],
		minor:         minor,
		contentLength: -1,
	}
	if len(fields) > 0 {
		h.header = make(http.Header, len(fields))
		vals := make([]string, len(fields))
		for i, f := range fields {
			k := s[f.n0:f.n1]
			vals[i] = s[f.v0:f.v1]
			if old, ok := h.header[k]; ok {
				h.header[k] = append(old, vals[i])
			} else {
				h.header[k] = vals[i : i+1 : i+1]
			}
		}
	} else {
		h.header = make(http.Header)
	}
	if rerr := h.parseTarget(u); rerr != nil {
		return fields, rerr
	}
	if rerr := h.checkFraming(maxBody); rerr != nil {
		return fields, rerr
	}
	return fields, nil
}

// parseTarget checks the request-target form against the method (RFC 9112
// section 3.2) and builds the URL and Host.
func (h *head) parseTarget(fast *url.URL) *rejectError {
	t := h.target
	if strings.IndexByte(t, '#') >= 0 {
		return errFragment
	}
	if h.method == "CONNECT" {
		return errConnect
	}
	hosts := h.header["Host"]
	if len(hosts) > 1 {
		return errManyHost
	}
	if h.minor == 1 && len(hosts) == 0 {
		return errNoHost
	}
	if len(hosts) == 1 {
		if !validHost(hosts[0]) {
			return errBadHost
		}
		h.host = hosts[0]
		delete(h.header, "Host")
	}
	switch {
	case t[0] == '/':
		if fastURL(t, fast) {
			h.url = fast
			return nil
		}
		u, err := url.ParseRequestURI(t)
		if err != nil {
			return errBadTarget
		}
		h.url = u
	case t == "*":
		if h.method != "OPTIONS" {
			return errAsteriskMethod
		}
		h.url = &url.URL{Path: "*"}
	case hasHTTPScheme(t):
		u, err := url.ParseRequestURI(t)
		if err != nil || u.Host == "" || u.User != nil || !validHost(u.Host) {
			return errBadTarget
		}
		h.url = u
		h.host = u.Host // RFC 9112 section 3.2.2: the target's authority wins over Host
	default:
		return errBadTarget
	}
	return nil
}

func hasHTTPScheme(t string) bool {
	return len(t) > 7 && strings.EqualFold(t[:7], "http://") || len(t) > 8 && strings.EqualFold(t[:8], "https://")
}

// fastURL builds the URL of a plain origin-form target without url.Parse
// when no byte needs unescaping or re-escaping, which is what url.Parse
// would produce for it (Path and RawQuery, RawPath empty).
func fastURL(t string, u *url.URL) bool {
	path, query := t, ""
	if i := strings.IndexByte(t, '?'); i >= 0 {
		path, query = t[:i], t[i+1:]
	}
	for i := 0; i < len(path); i++ {
		if !isPlainPathByte(path[i]) {
			return false
		}
	}
	for i := 0; i < len(query); i++ {
		b := query[i]
		if b <= 0x20 || b >= 0x7f {
			return false
		}
	}
	*u = url.URL{Path: path, RawQuery: query}
	return true
}

// isPlainPathByte: unreserved, sub-delims (but not those url.EscapedPath
// re-escapes differently) and "/:@".
func isPlainPathByte(b byte) bool {
	switch {
	case 'a' <= b && b <= 'z', 'A' <= b && b <= 'Z', '0' <= b && b <= '9':
		return true
	}
	switch b {
	case '-', '.', '_', '~', '/', ':', '@', '!', '$', '&', '\'', '(', ')', '*', '+', ',', ';', '=':
		return true
	}
	return false
}

// checkFraming decides how the body is delimited (RFC 9112 section 6) and
// reads the persistence and expectation fields.
func (h *head) checkFraming(maxBody int64) *rejectError {
	hdr := h.header
	te := hdr["Transfer-Encoding"]
	cls := hdr["Content-Length"]
	if len(te) > 0 {
		if h.minor == 0 {
			return errTE10
		}
		if len(cls) > 0 {
			return errTEWithCL
		}
		// Combine every field line into one list. chunked must be the final
		// coding, applied once (else the length is unknowable: 400); any
		// other coding before it is one we do not implement (501).
		n, chunkedAt, other := 0, -1, false
		for _, v := range te {
			for tok := range strings.SplitSeq(v, ",") {
				tok = trimOWS(tok)
				if tok == "" {
					continue
				}
				if !isToken(tok) {
					return errTENotChunked
				}
				if chunkedAt >= 0 {
					return errTENotChunked // something after chunked
				}
				if strings.EqualFold(tok, "chunked") {
					chunkedAt = n
				} else {
					other = true
				}
				n++
			}
		}
		if chunkedAt < 0 {
			return errTENotChunked
		}
		if other {
			return errTEUnknown
		}
		h.chunked = true
	} else if len(cls) > 0 {
		first := cls[0]
		for _, v := range cls[1:] {
			if v != first {
				return errBadCL
			}
		}
		n, rerr := parseContentLength(first)
		if rerr != nil {
			return rerr
		}
		if len(cls) > 1 {
			hdr["Content-Length"] = cls[:1]
		}
		h.contentLength = n
		if maxBody > 0 && n > maxBody {
			return errCLTooLarge
		}
	} else {
		h.contentLength = 0
	}

	for _, v := range hdr["Connection"] {
		for tok := range strings.SplitSeq(v, ",") {
			tok = trimOWS(tok)
			if strings.EqualFold(tok, "close") {
				h.close = true
			} else if strings.EqualFold(tok, "keep-alive") {
				h.keepAlive = true
			}
		}
	}
	if h.minor == 0 && !h.keepAlive {
		h.close = true
	}
	if ex := hdr["Expect"]; len(ex) > 0 {
		if len(ex) > 1 || !strings.EqualFold(ex[0], "100-continue") {
			return errExpectation
		}
		// RFC 9110 section 10.1.1: a server MAY ignore 100-continue in an
		// HTTP/1.0 request; there is nothing to send when no body follows.
		if h.minor == 1 && (h.chunked || h.contentLength > 0) {
			h.expectContinue = true
		}
	}
	return nil
}

// parseContentLength accepts 1*DIGIT only. A value too large for int64 is
// over any body limit: 413, never a 500.
func parseContentLength(v string) (int64, *rejectError) {
	if v == "" {
		return 0, errBadCL
	}
	var n int64
	for i := 0; i < len(v); i++ {
		b := v[i]
		if !isDigit(b) {
			return 0, errBadCL
		}
		d := int64(b - '0')
		if n > (1<<63-1-d)/10 {
			for j := i; j < len(v); j++ {
				if !isDigit(v[j]) {
					return 0, errBadCL
				}
			}
			return 0, errCLTooLarge
		}
		n = n*10 + d
	}
	return n, nil
}

func trimOWS(s string) string {
	for len(s) > 0 && (s[0] == ' ' || s[0] == '\t') {
		s = s[1:]
	}
	for len(s) > 0 && (s[len(s)-1] == ' ' || s[len(s)-1] == '\t') {
		s = s[:len(s)-1]
	}
	return s
}

func isDigit(b byte) bool { return '0' <= b && b <= '9' }

// tokenTable marks tchar (RFC 9110 section 5.6.2).
var tokenTable = func() (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
		t[c-'a'+'A'] = true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return t
}()

func isTokenByte(b byte) bool { return tokenTable[b] }

func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !tokenTable[s[i]] {
			return false
		}
	}
	return true
}

// canonicalize rewrites a valid token header name in place the way
// textproto.CanonicalMIMEHeaderKey would, without allocating.
func canonicalize(b []byte) {
	upper := true
	for i, c := range b {
		if upper && 'a' <= c && c <= 'z' {
			b[i] = c - ('a' - 'A')
		} else if !upper && 'A' <= c && c <= 'Z' {
			b[i] = c + ('a' - 'A')
		}
		upper = c == '-'
	}
}

// validHost checks a Host value: uri-host [ ":" port ], where uri-host is a
// reg-name, IPv4 address or bracketed IP literal (RFC 9110 section 7.2).
func validHost(h string) bool {
	if h == "" {
		return false
	}
	if h[0] == '[' {
		end := strings.IndexByte(h, ']')
		if end < 0 {
			return false
		}
		for i := 1; i < end; i++ {
			b := h[i]
			if !(isDigit(b) || 'a' <= b && b <= 'f' || 'A' <= b && b <= 'F' || b == ':' || b == '.') {
				return false
			}
		}
		return validPort(h[end+1:])
	}
	hostPart, port := h, ""
	if i := strings.LastIndexByte(h, ':'); i >= 0 {
		hostPart, port = h[:i], h[i:]
	}
	for i := 0; i < len(hostPart); i++ {
		b := hostPart[i]
		switch {
		case 'a' <= b && b <= 'z', 'A' <= b && b <= 'Z', isDigit(b):
		case strings.IndexByte("-._~!$&'()*+,;=%", b) >= 0:
		default:
			return false
		}
	}
	return validPort(port)
}

func validPort(p string) bool {
	if p == "" {
		return true
	}
	if p[0] != ':' {
		return false
	}
	for i := 1; i < len(p); i++ {
		if !isDigit(p[i]) {
			return false
		}
	}
	return true
}

// splitField validates one field line (without its CRLF), canonicalises its
// name in place and returns the offsets of the colon and of the value with
// surrounding whitespace trimmed. Heads and trailers share it, so both are
// held to the same rules: no obs-fold, token names, no space before the
// colon, no control characters but HTAB in the value.
func splitField(ln []byte) (colon, v0, v1 int, err *rejectError) {
	if len(ln) == 0 {
		return 0, 0, 0, errBadHeaderName
	}
	if ln[0] == ' ' || ln[0] == '\t' {
		return 0, 0, 0, errObsFold
	}
	colon = -1
	for i, b := range ln {
		if b == ':' {
			colon = i
			break
		}
		if !isTokenByte(b) {
			if b == ' ' || b == '\t' {
				return 0, 0, 0, errSpaceBeforeCol
			}
			return 0, 0, 0, errBadHeaderName
		}
	}
	if colon <= 0 {
		return 0, 0, 0, errBadHeaderName
	}
	canonicalize(ln[:colon])
	v0, v1 = colon+1, len(ln)
	for v0 < v1 && (ln[v0] == ' ' || ln[v0] == '\t') {
		v0++
	}
	for v1 > v0 && (ln[v1-1] == ' ' || ln[v1-1] == '\t') {
		v1--
	}
	for _, b := range ln[v0:v1] {
		if (b < 0x20 && b != '\t') || b == 0x7f {
			return 0, 0, 0, errBadHeaderValue
		}
	}
	return colon, v0, v1, nil
}
