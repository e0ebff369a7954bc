package policy

import (
	"net"
	"net/http"
	"net/netip"
	"strings"

	"tlsedge/config"
	"tlsedge/conninfo"
)

// Edge-owned headers. Some request headers carry what only the edge can
// vouch for: who the client is (peer credentials, the client certificate)
// and where the request came from (the forwarding chain). A client must
// never be able to assert either, in any spelling: CGI and WSGI stacks read
// "X-Remote-User", "x_remote_user" and "X_REMOTE_USER" alike as
// HTTP_X_REMOTE_USER. This file is the one list and the one place that
// removes them, in front of every handler and app.

// IsIdentityHeader reports whether name (any case, '_' read as '-') is an
// identity header: X-Remote-* and Remote-User (peer credentials), X-SSL and
// X-SSL-* (the TLS facts and the client certificate), and
// X-Forwarded-Client-Cert (Envoy's client-certificate header).
func IsIdentityHeader(name string) bool {
	return foldEq(name, "remote-user") || foldPrefix(name, "x-remote-") ||
		foldEq(name, "x-ssl") || foldPrefix(name, "x-ssl-") ||
		foldEq(name, "x-forwarded-client-cert")
}

// IsForwardingHeader reports whether name (any case, '_' read as '-') says
// where a request came from: Forwarded, X-Forwarded-*, X-Real-IP,
// True-Client-IP, X-Client-IP, Client-IP and X-Original-Forwarded-For.
// Only a trusted proxy may send these.
func IsForwardingHeader(name string) bool {
	if foldEq(name, "forwarded") || foldEq(name, "x-real-ip") || foldEq(name, "true-client-ip") ||
		foldEq(name, "x-client-ip") || foldEq(name, "client-ip") || foldEq(name, "x-original-forwarded-for") {
		return true
	}
	return foldPrefix(name, "x-forwarded-") && !foldEq(name, "x-forwarded-client-cert")
}

// foldEq reports whether name equals lower when its upper-case ASCII is
// read as lower case and '_' as '-'. It runs on every header of every
// request, so it compares in place instead of building a folded copy.
func foldEq(name, lower string) bool {
	return len(name) == len(lower) && foldPrefix(name, lower)
}

// foldPrefix is foldEq for a prefix of name.
func foldPrefix(name, lower string) bool {
	if len(name) < len(lower) {
		return false
	}
	for i := 0; i < len(lower); i++ {
		c := name[i]
		switch {
		case 'A' <= c && c <= 'Z':
			c += 'a' - 'A'
		case c == '_':
			c = '-'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

// StripEdgeHeaders removes every identity header from h, and every
// forwarding header unless the peer is a trusted proxy.
func StripEdgeHeaders(h http.Header, trustedPeer bool) {
	for k := range h {
		if IsIdentityHeader(k) || !trustedPeer && IsForwardingHeader(k) {
			delete(h, k)
		}
	}
}

// Trust is the parsed trusted_proxies list: the peers whose forwarding
// headers are kept. The zero value trusts no one (the list fails closed).
type Trust struct {
	prefixes []netip.Prefix
	unix     bool
}

// ParseTrust parses trusted_proxies: IP addresses, CIDR prefixes, or "unix"
// for any peer on a UNIX socket.
func ParseTrust(list []string) (*Trust, error) {
	t := &Trust{}
	var bad []string
	for _, s := range list {
		s = strings.TrimSpace(s)
		switch {
		case s == "":
		case s == "unix":
			t.unix = true
		case strings.Contains(s, "/"):
			p, err := netip.ParsePrefix(s)
			if err != nil {
				bad = append(bad, s)
				continue
			}
			t.prefixes = append(t.prefixes, p.Masked())
		default:
			a, err := netip.ParseAddr(s)
			if err != nil {
				bad = append(bad, s)
				continue
			}
			a = a.Unmap()
			t.prefixes = append(t.prefixes, netip.PrefixFrom(a, a.BitLen()))
		}
	}
	if len(bad) > 0 {
		return nil, config.KeyError("trusted_proxies", "%s: not an IP address, a CIDR prefix or unix", strings.Join(bad, ", "))
	}
	return t, nil
}

// Trusts reports whether the peer of a connection is a trusted proxy.
func (t *Trust) Trusts(info *conninfo.Info) bool {
	if t == nil || info == nil {
		return false
	}
	if info.Transport == "unix" {
		return t.unix
	}
	return t.TrustsAddr(info.RemoteAddr)
}

// TrustsAddr reports whether the peer at addr is a trusted proxy; a UNIX
// socket peer is judged by the "unix" entry.
func (t *Trust) TrustsAddr(addr net.Addr) bool {
	if t == nil || addr == nil {
		return false
	}
	if addr.Network() == "unix" {
		return t.unix
	}
	ap, err := netip.ParseAddrPort(addr.String())
	if err != nil {
		return false
	}
	return t.TrustsIP(ap.Addr(), false)
}

// TrustsIP reports whether a peer at a (or, with unixPeer, any UNIX socket
// peer) is a trusted proxy.
func (t *Trust) TrustsIP(a netip.Addr, unixPeer bool) bool {
	if t == nil {
		return false
	}
	if unixPeer {
		return t.unix
	}
	if !a.IsValid() {
		return false
	}
	a = a.Unmap()
	for _, p := range t.prefixes {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// EdgeHeaders is the guard in front of every handler: it removes the
// identity headers a client sent, in any spelling, and its forwarding
// headers unless its peer is in trust.
func EdgeHeaders(next http.Handler, trust *Trust) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var trusted bool
		if info, ok := conninfo.FromContext(r.Context()); ok {
			trusted = trust.Trusts(info)
		} else if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
			trusted = trust.TrustsIP(ap.Addr(), false) // not served by the core
		}
		StripEdgeHeaders(r.Header, trusted)
		next.ServeHTTP(w, r)
	})
}
