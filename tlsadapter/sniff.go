package tlsadapter

import (
	"bytes"
	"net"
	"strconv"
	"strings"
)

// What the first bytes of a connection are. A TLS record starts with the
// handshake content type 0x16 and a 0x03 major version; an HTTP/1 request
// starts with a method token followed by a space (any method, any case);
// an SSLv2-compatible ClientHello has the high bit of its first byte set and
// message type 1 in its third byte.
type streamKind int

const (
	kindNeedMore streamKind = iota
	kindTLS
	kindHTTP
	kindSSLv2
	kindOther
)

// maxMethodLen bounds the method token we wait for before giving up on HTTP.
const maxMethodLen = 24

// classify looks at the bytes read so far. It never needs more than
// maxMethodLen+1 bytes to decide.
func classify(b []byte) streamKind {
	if len(b) == 0 {
		return kindNeedMore
	}
	switch {
	case b[0] == 0x16:
		if len(b) < 2 {
			return kindNeedMore
		}
		if b[1] == 0x03 {
			return kindTLS
		}
		return kindOther
	case b[0]&0x80 != 0:
		if len(b) < 3 {
			return kindNeedMore
		}
		if b[2] == 0x01 {
			return kindSSLv2
		}
		return kindOther
	}
	for i, c := range b {
		if c == ' ' {
			if i == 0 {
				return kindOther
			}
			return kindHTTP
		}
		if !isTokenChar(c) || i >= maxMethodLen {
			return kindOther
		}
	}
	return kindNeedMore
}

// isTokenChar is RFC 9110's tchar.
func isTokenChar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

// plainRequest is what we learn from a plain HTTP request head.
type plainRequest struct {
	target string // request-target as sent
	host   string // Host header without port, lower case; "" when absent or bad
	length int64  // Content-Length, -1 when absent or chunked
	done   bool   // the whole head was seen
	// port is the Host header's port: the one the client dialed, which is
	// this TLS port as the client sees it (a balancer may map 443 to 8443).
	port int
}

// parsePlainHead reads what it can from a (possibly partial) request head.
func parsePlainHead(b []byte) plainRequest {
	r := plainRequest{length: -1}
	end := bytes.Index(b, []byte("\r\n\r\n"))
	if end < 0 {
		end = bytes.Index(b, []byte("\n\n"))
	}
	if end >= 0 {
		r.done = true
		b = b[:end]
	}
	lines := strings.Split(string(b), "\n")
	if f := strings.Fields(strings.TrimSuffix(lines[0], "\r")); len(f) >= 2 {
		r.target = f[1]
	}
	for _, l := range lines[1:] {
		name, value, ok := strings.Cut(strings.TrimSuffix(l, "\r"), ":")
		if !ok {
			continue
		}
		value = strings.TrimSpace(value)
		switch strings.ToLower(name) {
		case "host":
			h, port := strings.ToLower(value), 0
			if hh, ps, err := net.SplitHostPort(h); err == nil {
				if p, perr := strconv.Atoi(ps); perr == nil && p > 0 && p <= 65535 {
					h, port = hh, p
				}
			}
			if validHostName(h) {
				r.host, r.port = h, port
			}
		case "content-length":
			if n, err := strconv.ParseInt(value, 10, 64); err == nil && n >= 0 {
				r.length = n
			}
		}
	}
	return r
}

// validHostName reports whether s is a DNS host name fit for SNI and for a
// Location header: at most 253 bytes, labels of 1-63 letters, digits,
// hyphens (underscores tolerated, as resolvers do), no trailing dot.
func validHostName(s string) bool {
	if len(s) == 0 || len(s) > 253 {
		return false
	}
	for label := range strings.SplitSeq(s, ".") {
		if len(label) == 0 || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

// PlaintextBody is the body of the 400 a TLS port sends to plain HTTP.
const PlaintextBody = "The client sent a plain HTTP request, but this server only speaks HTTPS on this port."

// plaintext400 is the whole answer, byte for byte.
func plaintext400() []byte {
	return []byte("HTTP/1.1 400 Bad Request\r\n" +
		"Content-Type: text/plain; charset=utf-8\r\n" +
		"Content-Length: " + strconv.Itoa(len(PlaintextBody)) + "\r\n" +
		"Connection: close\r\n" +
		"\r\n" + PlaintextBody)
}

// redirect308 builds the redirect to https on port, or nil when the target
// cannot be turned into a safe Location.
func redirect308(host string, port int, target string) []byte {
	path := target
	if i := strings.Index(path, "://"); i >= 0 { // absolute-form: keep the path
		rest := path[i+3:]
		j := strings.IndexByte(rest, '/')
		if j < 0 {
			path = "/"
		} else {
			path = rest[j:]
		}
	}
	if !strings.HasPrefix(path, "/") {
		path = "/"
	}
	for i := 0; i < len(path); i++ {
		if path[i] < 0x21 || path[i] == 0x7f {
			return nil
		}
	}
	authority := host
	if port != 443 && port != 0 {
		authority = net.JoinHostPort(host, strconv.Itoa(port))
	}
	loc := "https://" + authority + path
	return []byte("HTTP/1.1 308 Permanent Redirect\r\n" +
		"Location: " + loc + "\r\n" +
		"Content-Length: 0\r\n" +
		"Connection: close\r\n" +
		"\r\n")
}

// alertProtocolVersion is a fatal protocol_version TLS alert record, sent to
// SSLv2-style hellos: they cannot negotiate anything we speak.
var alertProtocolVersion = []byte{0x15, 0x03, 0x01, 0x00, 0x02, 0x02, 0x46}
