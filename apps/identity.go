package apps

import (
	"net/http"
	"net/url"
	"strings"
	"time"

	"tlsedge/conninfo"
	"tlsedge/peercred"
	"tlsedge/policy"
)

// HeaderHook adds headers derived from the connection a request arrived on to
// h, the outbound (upstream) request's header. It runs after every
// client-supplied copy of the identity and TLS headers has been removed, so it
// only ever adds; it must not read identity from r.Header.
type HeaderHook func(r *http.Request, h http.Header)

// PeerHeaders is the default identity hook, used when Env.IdentityHeaders is
// nil: the peer-credential headers (X-Remote-Pid/-Uid/-Gid, and
// X-Remote-User, Remote-User and X-Remote-Group when the names resolved) from
// the UNIX-socket peer in the request's ConnInfo, as peercred.SetHeaders
// writes them. Policy code that also knows client-certificate identities
// supplies its own hook.
func PeerHeaders(r *http.Request, h http.Header) {
	ci, ok := conninfo.FromContext(r.Context())
	if !ok || ci.Peer == nil {
		return
	}
	peercred.SetHeaders(h, ci.Peer)
}

// SSLHeaders is the default TLS hook, used when Env.TLSHeaders is nil: the
// mod_ssl variables policy.SSLVars derives from the request's TLS connection,
// each SSL_NAME sent as X-SSL-NAME with underscores as dashes (SSL_PROTOCOL
// as X-SSL-Protocol, SSL_CLIENT_S_DN as X-SSL-Client-S-DN). A value that
// cannot travel in a header as it is (the PEM of SSL_CLIENT_CERT, a
// certificate name holding control characters) is sent percent-encoded, like
// nginx's $ssl_client_escaped_cert. HTTPS itself is X-Forwarded-Proto's job;
// plain connections get nothing.
func SSLHeaders(r *http.Request, h http.Header) {
	for _, v := range sslVars(r) {
		if name := sslHeaderName(v.Name); name != "" {
			h.Set(name, sslHeaderValue(v.Value))
		}
	}
}

// sslVars are the mod_ssl variables of the request's TLS connection, or
// none for a plain one.
func sslVars(r *http.Request) []policy.Var {
	cs := r.TLS
	if ci, ok := conninfo.FromContext(r.Context()); ok && cs == nil {
		cs = ci.TLS
	}
	if cs == nil {
		return nil
	}
	return policy.SSLVars(cs, time.Now())
}

// sslHeaderName is the header that carries the variable name (SSL_NAME as
// X-Ssl-Name, underscores as dashes, in canonical form), or "" for one
// that is not sent (HTTPS). The names every TLS request has are constants,
// so that the proxy's hot path builds none.
func sslHeaderName(name string) string {
	switch name {
	case "SSL_PROTOCOL":
		return "X-Ssl-Protocol"
	case "SSL_CIPHER":
		return "X-Ssl-Cipher"
	case "SSL_TLS_SNI":
		return "X-Ssl-Tls-Sni"
	case "SSL_CLIENT_VERIFY":
		return "X-Ssl-Client-Verify"
	}
	rest, ok := strings.CutPrefix(name, "SSL_")
	if !ok {
		return ""
	}
	return http.CanonicalHeaderKey("X-SSL-" + strings.ReplaceAll(rest, "_", "-"))
}

// sslHeaderValue is v as it can travel in a header: percent-encoded when
// it holds control characters or surrounding space.
func sslHeaderValue(v string) string {
	if !plainHeaderValue(v) {
		return url.PathEscape(v)
	}
	return v
}

// plainHeaderValue reports whether v can be a header value as it is: no
// control characters, no leading or trailing space.
func plainHeaderValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < 0x20 && c != '\t' || c == 0x7f {
			return false
		}
	}
	return strings.TrimSpace(v) == v
}
