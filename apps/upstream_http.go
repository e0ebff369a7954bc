package apps

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
)

// The upstream's side of HTTP/1.1, parsed as strictly as the core parses
// requests: a response the edge could read two ways (two Content-Lengths,
// Content-Length with Transfer-Encoding, obs-fold, a bare CR or LF) is a
// 502, never passed on, and the connection it came on is dropped. The edge
// then frames the answer to its client itself, through the ResponseWriter.

const (
	// maxUpstreamHead bounds a response head (status line, fields and the
	// blank line), as nginx's proxy_buffer_size does; a larger head is a 502.
	maxUpstreamHead = 64 << 10
	// maxUpstreamFields bounds the fields of a response head or trailer.
	maxUpstreamFields = 256
	// maxInterim bounds the 1xx answers the edge swallows before the final
	// one.
	maxInterim = 8
)

// errBadResponse marks an upstream response the edge refuses to pass on.
var errBadResponse = errors.New("apps: malformed upstream response")

func badResponse(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errBadResponse, fmt.Sprintf(format, args...))
}

// hfield is one header field; name and value are substrings of the head.
type hfield struct{ name, value string }

// respHead is a parsed upstream response head.
type respHead struct {
	status        int
	proto10       bool
	fields        []hfield
	contentLength int64  // -1: none given
	clText        string // contentLength as the upstream wrote it, when in canonical form
	chunked       bool
	close         bool   // the upstream will not take another request
	upgrade       string // the Upgrade field, for a 101
	trailer       bool   // a Trailer field announces trailers
	connTokens    string // the Connection field's value, naming hop-by-hop fields
}

// readHeadLines reads a head (lines up to and including the blank line)
// into buf and returns it. Every line must end in CRLF and hold no other CR
// or LF; the whole head, at most limit bytes. n counts the bytes read, so
// that a caller can tell "nothing came back" from "something did".
func readHeadLines(br *bufio.Reader, buf []byte, limit int) (head []byte, n int, err error) {
	buf = buf[:0]
	start := 0 // of the current line in buf
	for {
		frag, err := br.ReadSlice('\n')
		n += len(frag)
		if len(buf)+len(frag) > limit {
			return nil, n, badResponse("head over %d bytes", limit)
		}
		buf = append(buf, frag...)
		if err == bufio.ErrBufferFull {
			continue
		}
		if err != nil {
			if err == io.EOF && n > 0 {
				err = io.ErrUnexpectedEOF
			}
			return nil, n, err
		}
		line := buf[start:]
		if len(line) < 2 || line[len(line)-2] != '\r' {
			return nil, n, badResponse("line not ended by CRLF")
		}
		for _, c := range line[:len(line)-2] {
			if c == '\r' {
				return nil, n, badResponse("bare CR")
			}
		}
		if len(line) == 2 {
			if start == 0 {
				return nil, n, badResponse("empty line before the status line")
			}
			return buf, n, nil
		}
		start = len(buf)
	}
}

// parseRespHead parses head (as readHeadLines returned it, as a string so
// that the fields can share its memory) into h, reusing h.fields. The
// request's method matters: the answer to a HEAD has no body.
func parseRespHead(head string, h *respHead) error {
	fields := h.fields[:0]
	*h = respHead{contentLength: -1, fields: fields}
	line, rest, _ := strings.Cut(head, "\r\n")
	if err := h.parseStatus(line); err != nil {
		return err
	}
	var te, cl []string
	for {
		line, rest, _ = strings.Cut(rest, "\r\n")
		if line == "" {
			break
		}
		if line[0] == ' ' || line[0] == '\t' {
			return badResponse("obs-fold")
		}
		colon := strings.IndexByte(line, ':')
		if colon <= 0 {
			return badResponse("field without a name")
		}
		name := line[:colon]
		for i := 0; i < len(name); i++ {
			if !isTokenByte(name[i]) {
				return badResponse("bad field name %q", name)
			}
		}
		value := trimOWS(line[colon+1:])
		for i := 0; i < len(value); i++ {
			if c := value[i]; c < ' ' && c != '\t' || c == 0x7f {
				return badResponse("control character in field %s", name)
			}
		}
		if len(h.fields) == maxUpstreamFields {
			return badResponse("more than %d fields", maxUpstreamFields)
		}
		h.fields = append(h.fields, hfield{name, value})
		switch {
		case strings.EqualFold(name, "Content-Length"):
			cl = append(cl, value)
		case strings.EqualFold(name, "Transfer-Encoding"):
			te = append(te, value)
		case strings.EqualFold(name, "Connection"):
			if h.connTokens != "" {
				h.connTokens += ","
			}
			h.connTokens += value
		case strings.EqualFold(name, "Upgrade"):
			h.upgrade = value
		case strings.EqualFold(name, "Trailer"):
			h.trailer = true
		}
	}
	if len(te) > 0 {
		if len(cl) > 0 {
			return badResponse("both Content-Length and Transfer-Encoding")
		}
		if h.proto10 {
			return badResponse("Transfer-Encoding in an HTTP/1.0 response")
		}
		if len(te) != 1 || !strings.EqualFold(te[0], "chunked") {
			return badResponse("Transfer-Encoding %q: only chunked is understood", strings.Join(te, ", "))
		}
		h.chunked = true
	}
	for _, v := range cl {
		n, ok := parseLength(v)
		if !ok {
			return badResponse("Content-Length %q", v)
		}
		if h.contentLength >= 0 && n != h.contentLength {
			return badResponse("Content-Lengths %d and %d", h.contentLength, n)
		}
		h.contentLength = n
		if v[0] != '0' || len(v) == 1 {
			h.clText = v
		}
	}
	h.close = h.proto10 && !hasToken(h.connTokens, "keep-alive") || hasToken(h.connTokens, "close")
	return nil
}

// parseStatus parses "HTTP/1.x NNN[ reason]".
func (h *respHead) parseStatus(line string) error {
	switch {
	case strings.HasPrefix(line, "HTTP/1.1 "):
	case strings.HasPrefix(line, "HTTP/1.0 "):
		h.proto10 = true
	default:
		return badResponse("status line %q", truncate(line, 40))
	}
	s := line[len("HTTP/1.1 "):]
	if len(s) < 3 || s[0] < '1' || s[0] > '5' || !isDigit(s[1]) || !isDigit(s[2]) || len(s) > 3 && s[3] != ' ' {
		return badResponse("status line %q", truncate(line, 40))
	}
	h.status = int(s[0]-'0')*100 + int(s[1]-'0')*10 + int(s[2]-'0')
	for i := 3; i < len(s); i++ {
		if c := s[i]; c < ' ' && c != '\t' || c == 0x7f {
			return badResponse("control character in the reason phrase")
		}
	}
	return nil
}

// bodyless reports whether the answer to method with this status has no
// body whatever its fields say (RFC 9112 section 6.3).
func (h *respHead) bodyless(method string) bool {
	return method == http.MethodHead || h.status < 200 || h.status == 204 || h.status == 304
}

// parseLength parses a Content-Length: digits only, no sign, no list.
func parseLength(v string) (int64, bool) {
	if v == "" || len(v) > 18 {
		return 0, false
	}
	var n int64
	for i := 0; i < len(v); i++ {
		if !isDigit(v[i]) {
			return 0, false
		}
		n = n*10 + int64(v[i]-'0')
	}
	return n, true
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// isTokenByte reports whether c is a tchar (RFC 9110 section 5.6.2).
func isTokenByte(c byte) bool {
	return c < 127 && c > 32 && !strings.ContainsRune(`()<>@,;:\"/[]?={}`, rune(c))
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

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

// hasToken reports whether the comma-separated list v holds tok, ignoring
// case.
func hasToken(v, tok string) bool {
	for v != "" {
		var t string
		t, v, _ = strings.Cut(v, ",")
		if strings.EqualFold(trimOWS(t), tok) {
			return true
		}
	}
	return false
}

// hopByHop reports whether a field never crosses the proxy: those RFC 9110
// section 7.6.1 names, the framing the edge redoes itself, and those the
// message's Connection field names.
func hopByHop(name, connTokens string) bool {
	switch len(name) {
	case 2:
		if strings.EqualFold(name, "TE") {
			return true
		}
	case 7:
		if strings.EqualFold(name, "Upgrade") || strings.EqualFold(name, "Trailer") {
			return true
		}
	case 10:
		if strings.EqualFold(name, "Connection") || strings.EqualFold(name, "Keep-Alive") {
			return true
		}
	case 14:
		if strings.EqualFold(name, "Content-Length") {
			return true
		}
	case 16:
		if strings.EqualFold(name, "Proxy-Connection") {
			return true
		}
	case 17:
		if strings.EqualFold(name, "Transfer-Encoding") {
			return true
		}
	case 18:
		if strings.EqualFold(name, "Proxy-Authenticate") {
			return true
		}
	case 19:
		if strings.EqualFold(name, "Proxy-Authorization") {
			return true
		}
	}
	return connTokens != "" && hasToken(connTokens, name)
}

// chunkedReader decodes a chunked body strictly: hex sizes without sign,
// prefix or overflow, CRLF everywhere, extensions ignored, and the trailer
// fields collected under the same rules as a head's.
type chunkedReader struct {
	br      *bufio.Reader
	left    int64 // of the current chunk
	started bool
	done    bool
	scratch []byte
	trailer string // the raw trailer section, CRLF-separated, once done
}

func (cr *chunkedReader) Read(p []byte) (int, error) {
	if cr.done {
		return 0, io.EOF
	}
	if cr.left == 0 {
		if cr.started {
			if err := cr.crlf(); err != nil {
				return 0, err
			}
		}
		cr.started = true
		n, err := cr.size()
		if err != nil {
			return 0, err
		}
		if n == 0 {
			if err := cr.readTrailer(); err != nil {
				return 0, err
			}
			cr.done = true
			return 0, io.EOF
		}
		cr.left = n
	}
	if int64(len(p)) > cr.left {
		p = p[:cr.left]
	}
	n, err := cr.br.Read(p)
	cr.left -= int64(n)
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

func (cr *chunkedReader) crlf() error {
	var b [2]byte
	if _, err := io.ReadFull(cr.br, b[:]); err != nil {
		return unexpected(err)
	}
	if b != [2]byte{'\r', '\n'} {
		return badResponse("chunk data not followed by CRLF")
	}
	return nil
}

func (cr *chunkedReader) size() (int64, error) {
	line, err := cr.br.ReadSlice('\n')
	if err == bufio.ErrBufferFull {
		return 0, badResponse("chunk size line too long")
	}
	if err != nil {
		return 0, unexpected(err)
	}
	if len(line) < 3 || line[len(line)-2] != '\r' {
		return 0, badResponse("chunk size line not ended by CRLF")
	}
	line = line[:len(line)-2]
	var n int64
	i := 0
	for ; i < len(line); i++ {
		c := line[i]
		var d byte
		switch {
		case '0' <= c && c <= '9':
			d = c - '0'
		case 'a' <= c && c <= 'f':
			d = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			d = c - 'A' + 10
		default:
			goto ext
		}
		if i == 15 {
			return 0, badResponse("chunk size overflows")
		}
		n = n<<4 | int64(d)
	}
ext:
	if i == 0 {
		return 0, badResponse("bad chunk size")
	}
	for rest := line[i:]; len(rest) > 0; rest = rest[1:] {
		// BWS then ";ext": anything but controls is ignored.
		if c := rest[0]; c < ' ' && c != '\t' || c == 0x7f {
			return 0, badResponse("control character in a chunk extension")
		}
	}
	if i < len(line) {
		if r := trimOWS(string(line[i:])); r != "" && r[0] != ';' {
			return 0, badResponse("bad chunk size")
		}
	}
	return n, nil
}

func (cr *chunkedReader) readTrailer() error {
	// The trailer section is a head without a status line: read it the same
	// way, behind a fake one.
	buf := append(cr.scratch[:0], "T\r\n"...)
	for {
		line, err := cr.br.ReadSlice('\n')
		if err == bufio.ErrBufferFull || len(buf)+len(line) > maxUpstreamHead {
			return badResponse("trailer section too large")
		}
		if err != nil {
			return unexpected(err)
		}
		if len(line) < 2 || line[len(line)-2] != '\r' {
			return badResponse("trailer line not ended by CRLF")
		}
		buf = append(buf, line...)
		if len(line) == 2 {
			break
		}
	}
	cr.scratch = buf
	if len(buf) > len("T\r\n\r\n") {
		cr.trailer = string(buf[len("T\r\n") : len(buf)-2])
	}
	return nil
}

// trailerFields parses the trailer section under the head's rules, leaving
// out the fields that may not be trailers (framing, routing, hop-by-hop).
func (cr *chunkedReader) trailerFields(dst []hfield) ([]hfield, error) {
	for rest := cr.trailer; rest != ""; {
		var line string
		line, rest, _ = strings.Cut(rest, "\r\n")
		if line == "" {
			continue
		}
		if line[0] == ' ' || line[0] == '\t' {
			return nil, badResponse("obs-fold in the trailer")
		}
		colon := strings.IndexByte(line, ':')
		if colon <= 0 {
			return nil, badResponse("trailer field without a name")
		}
		name, value := line[:colon], trimOWS(line[colon+1:])
		for i := 0; i < len(name); i++ {
			if !isTokenByte(name[i]) {
				return nil, badResponse("bad trailer field name")
			}
		}
		for i := 0; i < len(value); i++ {
			if c := value[i]; c < ' ' && c != '\t' || c == 0x7f || c == '\r' {
				return nil, badResponse("control character in a trailer field")
			}
		}
		if len(dst) == maxUpstreamFields {
			return nil, badResponse("too many trailer fields")
		}
		if hopByHop(name, "") || strings.EqualFold(name, "Host") || strings.EqualFold(name, "Content-Type") ||
			strings.EqualFold(name, "Content-Encoding") || strings.EqualFold(name, "Content-Range") {
			continue
		}
		dst = append(dst, hfield{name, value})
	}
	return dst, nil
}

func unexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// appendChunkHeader writes n in hex and CRLF into the 18 bytes before p's
// data: the request body's chunk framing without a second write.
func appendHex(b []byte, n int) []byte {
	return append(strconv.AppendInt(b, int64(n), 16), '\r', '\n')
}
