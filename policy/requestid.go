package policy

import (
	"math/rand/v2"
	"net/http"
	"net/netip"

	"tlsedge/conninfo"
)

// RequestIDHeader carries a request's id: to the upstream (the proxy sends
// the request's headers on), into the access log, and into the 5xx answers
// the apps write, so a user's report of an error can be found in the logs.
const RequestIDHeader = "X-Request-Id"

// AssignRequestID gives r an id in its X-Request-Id header. A trusted proxy's (trust, as trusted_proxies) id is kept
// when it is one short token; from anyone else, or malformed, the id is
// replaced by a fresh one, so a client cannot choose the id its request is
// logged and forwarded under. Other spellings of the header (x_request_id,
// which CGI stacks read as the same variable) are removed.
//
// A fresh id is 16 hex digits from the runtime's per-thread ChaCha8 source:
// unique enough to find a request in the logs, costing two small
// allocations (the string and its header slice) and no lock. It is not a
// secret and must not be used as one.
//
// The server calls it in the request core, once a request is parsed and
// before it waits for a worker, so that even the core's own 5xx answers
// carry the id.
func AssignRequestID(r *http.Request, trust *Trust) {
	if r.Header == nil {
		r.Header = http.Header{}
	}
	vals, n := r.Header[RequestIDHeader], 0
	for k := range r.Header {
		if isRequestIDHeader(k) {
			n++
			if k != RequestIDHeader {
				delete(r.Header, k)
			}
		}
	}
	if n != 1 || len(vals) != 1 || !validRequestID(vals[0]) || !trustedPeer(r, trust) {
		r.Header[RequestIDHeader] = []string{newRequestID()}
	}
}

// RequestID returns r's id ("" before AssignRequestID ran).
func RequestID(r *http.Request) string {
	if v := r.Header[RequestIDHeader]; len(v) == 1 {
		return v[0]
	}
	return ""
}

// trustedPeer reports whether r came from a trusted proxy, judged as the
// edge-header guard (EdgeHeaders) judges it.
func trustedPeer(r *http.Request, trust *Trust) bool {
	if info, ok := conninfo.FromContext(r.Context()); ok {
		return trust.Trusts(info)
	}
	if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
		return trust.TrustsIP(ap.Addr(), false)
	}
	return false
}

// isRequestIDHeader reports whether name is X-Request-Id in any case, '_'
// read as '-'.
func isRequestIDHeader(name string) bool { return foldEq(name, "x-request-id") }

// validRequestID accepts what proxies and load balancers send as ids (hex,
// UUIDs, base64, AWS's "Root=1-..."): 1 to 128 bytes of letters, digits
// and - _ . : + / =. Anything else, spaces and quotes included, is replaced,
// so an id is always safe in a log line and a header.
func validRequestID(s string) bool {
	if len(s) == 0 || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case c == '-', c == '_', c == '.', c == ':', c == '+', c == '/', c == '=':
		default:
			return false
		}
	}
	return true
}

func newRequestID() string {
	const hex = "0123456789abcdef"
	var b [16]byte
	v := rand.Uint64()
	for i := len(b) - 1; i >= 0; i-- {
		b[i] = hex[v&0xf]
		v >>= 4
	}
	return string(b[:])
}
