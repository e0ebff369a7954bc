package tlsadapter

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"strings"
)

// Misdirected reports whether a request for host (a name without port or
// trailing dot) that arrived on a TLS connection whose ClientHello named
// sni belongs on another connection: a certificate of this server names
// host, and the certificate chosen for sni does not cover it. The request
// core answers such a request 421 Misdirected Request (RFC 9110 section
// 15.5.20), as nginx and Caddy do: otherwise a client could handshake with
// one name (passing the client-certificate rules and SNI checks made for
// it) and be routed, by its Host header, to the mounts of another; that is
// domain fronting. A connection a client reuses for a host its certificate
// also covers (h2 connection coalescing, RFC 9113 section 9.1.1) is not
// misdirected, nor is a host no certificate names (an IP address a client
// dialled, a name only the host-less mounts serve): there is no other
// connection for it to be sent to.
//
// local and remote are the connection's addresses, which some adapters log
// while looking a certificate up. The answer is false for plain HTTP and
// for a library user's own certificates, which the terminator cannot list.
// The common case, host equal to sni, costs a string comparison.
func (t *Terminator) Misdirected(sni, host string, local, remote net.Addr) bool {
	if t.plain || t.userCerts || host == "" || strings.EqualFold(strings.TrimSuffix(sni, "."), host) {
		return false
	}
	if !t.src.HasName(host) {
		return false
	}
	leaf := t.leafFor(sni, local, remote)
	return leaf == nil || leaf.VerifyHostname(host) != nil
}

// leafFor is the leaf of the certificate the adapter picks for sni, asked
// as a modern client asks (TLS 1.3 and 1.2, ECDSA, Ed25519 and RSA): the
// pair a connection was served may differ by key type, never by names.
func (t *Terminator) leafFor(sni string, local, remote net.Addr) *x509.Certificate {
	if local == nil {
		local = &net.TCPAddr{}
	}
	if remote == nil {
		remote = &net.TCPAddr{}
	}
	hello := &tls.ClientHelloInfo{
		ServerName:        sni,
		SupportedVersions: []uint16{tls.VersionTLS13, tls.VersionTLS12},
		SupportedCurves:   []tls.CurveID{tls.X25519, tls.CurveP256, tls.CurveP384},
		SupportedPoints:   []uint8{0},
		SignatureSchemes: []tls.SignatureScheme{tls.ECDSAWithP256AndSHA256, tls.ECDSAWithP384AndSHA384, tls.Ed25519,
			tls.PSSWithSHA256, tls.PKCS1WithSHA256, tls.PSSWithSHA384, tls.PKCS1WithSHA384},
		CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256},
		Conn:         addrConn{local: local, remote: remote},
	}
	cert, _, err := t.src.Certificate(hello)
	if err != nil || cert == nil || len(cert.Certificate) == 0 {
		return nil
	}
	if cert.Leaf != nil {
		return cert.Leaf
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		return nil
	}
	return leaf
}

// addrConn is the connection a certificate lookup outside a handshake
// shows the adapter: its addresses, nothing to read or write.
type addrConn struct {
	net.Conn // nil: only the addresses are asked for
	local    net.Addr
	remote   net.Addr
}

func (c addrConn) LocalAddr() net.Addr  { return c.local }
func (c addrConn) RemoteAddr() net.Addr { return c.remote }
