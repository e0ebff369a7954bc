package policy

import (
	"crypto/tls"
	"crypto/x509"
)

// ClientCertificate returns the client's leaf certificate from cs and whether
// it was verified against ssl_client_ca (and passed the allow-list, which
// runs before the handshake completes). Handlers should trust names from it
// only when verified is true: in the request and require modes anyone can
// send any certificate.
func ClientCertificate(cs *tls.ConnectionState) (leaf *x509.Certificate, verified bool) {
	if cs == nil || len(cs.PeerCertificates) == 0 {
		return nil, false
	}
	return cs.PeerCertificates[0], len(cs.VerifiedChains) > 0
}
