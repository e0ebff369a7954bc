package apps

import (
	"net/http"
	"strconv"
	"strings"

	"tlsedge/server/httpcore"
)

// HeaderHook adds headers derived from the connection a request arrived on to
// h, the outbound (upstream) request's header. It runs after every
// client-supplied copy of the identity and TLS headers has been removed, so it
// only ever adds; it must not read identity from r.Header.
type HeaderHook func(r *http.Request, h http.Header)

// isReservedHeader reports whether a client may not send header name to an
// upstream because the edge itself vouches for it: X-Remote-* and Remote-User
// (peer credentials, client identity) and X-SSL-* (TLS facts). Underscores
// count as dashes, because CGI/WSGI-style upstreams map both to the same
// variable (X_Remote_User would become HTTP_X_REMOTE_USER).
func isReservedHeader(name string) bool {
	n := strings.ToLower(strings.ReplaceAll(name, "_", "-"))
	return n == "remote-user" || strings.HasPrefix(n, "x-remote-") ||
		n == "x-ssl" || strings.HasPrefix(n, "x-ssl-")
}

// stripReserved removes every reserved header from h.
func stripReserved(h http.Header) {
	for k := range h {
		if isReservedHeader(k) {
			delete(h, k)
		}
	}
}

// PeerHeaders is the minimal identity hook, used when Env.IdentityHeaders is
// nil: X-Remote-Pid, X-Remote-Uid and X-Remote-Gid from the UNIX-socket peer
// credentials in the request's ConnInfo, when the core collected them. The
// full hook (user and group names, Remote-User from client certificates)
// belongs to the peer-credential and policy code.
func PeerHeaders(r *http.Request, h http.Header) {
	ci, ok := httpcore.FromContext(r.Context())
	if !ok || ci.Peer == nil {
		return
	}
	if ci.Peer.PID != 0 {
		h.Set("X-Remote-Pid", strconv.FormatInt(int64(ci.Peer.PID), 10))
	}
	h.Set("X-Remote-Uid", strconv.FormatUint(uint64(ci.Peer.UID), 10))
	h.Set("X-Remote-Gid", strconv.FormatUint(uint64(ci.Peer.GID), 10))
}
