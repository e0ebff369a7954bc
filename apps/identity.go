package apps

import (
	"net/http"
	"strings"

	"tlsedge/peercred"
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

// PeerHeaders is the default identity hook, used when Env.IdentityHeaders is
// nil: the peer-credential headers (X-Remote-Pid/-Uid/-Gid, and
// X-Remote-User, Remote-User and X-Remote-Group when the names resolved) from
// the UNIX-socket peer in the request's ConnInfo, as peercred.SetHeaders
// writes them. Policy code that also knows client-certificate identities
// supplies its own hook.
func PeerHeaders(r *http.Request, h http.Header) {
	ci, ok := httpcore.FromContext(r.Context())
	if !ok || ci.Peer == nil {
		return
	}
	peercred.SetHeaders(h, ci.Peer)
}
