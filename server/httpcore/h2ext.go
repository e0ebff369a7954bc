package httpcore

import "net/http"

// Extended CONNECT (RFC 8441): the engine advertises
// SETTINGS_ENABLE_CONNECT_PROTOCOL, and a HEADERS with :method CONNECT and a
// :protocol (a WebSocket over h2, say) is a request for a tunnel on its
// stream. It must carry :scheme, :authority and :path as well; :protocol on
// any other method, or an extended CONNECT short of one of those, is a
// malformed request, the stream's PROTOCOL_ERROR (RFC 9113 section 8.1.1,
// RFC 8441 section 4). A plain CONNECT (no :protocol) stays refused by the
// canonical request rules (405): the edge is no forward proxy.
//
// A handler sees what x/net's server gives one: Method "CONNECT", the
// protocol in r.Header[":protocol"] (a key no HTTP/1.1 field can have), the
// path and query in r.URL like any request's, and r.Host from :authority.
// The stream's DATA both ways is the tunnel: the handler reads the client's
// bytes from r.Body while it writes its own to the ResponseWriter (its 2xx
// head goes out at the first Flush), full-duplex, until either end closes
// (END_STREAM is the tunnel's end of input, RST_STREAM its abort).
//
// The core's rules take it as a request: the method and canonical path
// checks (canonicalize), admission (a worker for as long as the tunnel
// lives, as an HTTP/1.1 WebSocket holds one), server.policy (which sees the
// method CONNECT, as RFC 8441 has it, and the canonical path). What differs
// is the body, which is no upload but the tunnel's client half: like the
// bytes after an HTTP/1.1 101, which neither nginx's client_max_body_size
// nor the core counts, it is not held to max_request_body_size nor to
// min_request_body_rate with its socket_timeout grace (a WebSocket may be
// quiet for minutes). A dead client is still found: a connection with
// streams open but silent for socket_timeout is pinged, and closed unless
// the ping is answered within socket_timeout; a tunnel whose client stops
// taking its bytes is reset after write_timeout, as any stream. A handler
// that wants a bound of its own sets one (http.ResponseController).

// h2ProtocolKey is the request header key an extended CONNECT's :protocol
// is given to handlers under, as x/net's server does.
const h2ProtocolKey = ":protocol"

// extendedConnectOK reports whether the pseudo-headers of a request with
// :protocol make an extended CONNECT (RFC 8441 section 4).
func extendedConnectOK(method, scheme, authority, path, protocol string) bool {
	return method == "CONNECT" && protocol != "" && scheme != "" && authority != "" && path != ""
}

// isExtendedConnect reports whether r is an h2 extended CONNECT: only the
// engine sets the key (an HTTP/1.1 field name cannot start with a colon).
func isExtendedConnect(r *http.Request) bool {
	return r.Method == "CONNECT" && r.ProtoMajor == 2 && len(r.Header[h2ProtocolKey]) == 1
}
