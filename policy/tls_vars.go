package policy

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"strconv"
	"strings"
	"time"
)

// Var is one name/value pair of connection facts.
type Var struct{ Name, Value string }

// SSLVars returns the mod_ssl-style facts about a connection, in a fixed order,
// for upstreams (the reverse proxy sends them as X-SSL-* headers; WSGI-style
// apps see them as environ keys). A nil cs yields HTTPS=off only.
//
// SSL_CLIENT_V_REMAIN is the number of whole days from now until the client
// certificate expires (0 once expired), as mod_ssl defines it; cheroot
// reports the whole validity period there instead, which is wrong.
// SSL_CLIENT_CERT is PEM with its newlines; a header writer must encode it.
func SSLVars(cs *tls.ConnectionState, now time.Time) []Var {
	if cs == nil {
		return []Var{{"HTTPS", "off"}}
	}
	vars := []Var{
		{"HTTPS", "on"},
		{"SSL_PROTOCOL", ProtocolName(cs.Version)},
		{"SSL_CIPHER", CipherName(cs.CipherSuite)},
		{"SSL_TLS_SNI", cs.ServerName},
		{"SSL_CLIENT_VERIFY", clientVerify(cs)},
	}
	if len(cs.PeerCertificates) == 0 {
		return vars
	}
	leaf := cs.PeerCertificates[0]
	vars = append(vars,
		Var{"SSL_CLIENT_S_DN", leaf.Subject.String()},
		Var{"SSL_CLIENT_I_DN", leaf.Issuer.String()},
		Var{"SSL_CLIENT_M_SERIAL", strings.ToUpper(leaf.SerialNumber.Text(16))},
		Var{"SSL_CLIENT_V_START", leaf.NotBefore.UTC().Format("Jan _2 15:04:05 2006 GMT")},
		Var{"SSL_CLIENT_V_END", leaf.NotAfter.UTC().Format("Jan _2 15:04:05 2006 GMT")},
	)
	for i, n := range leaf.DNSNames {
		vars = append(vars, Var{"SSL_CLIENT_SAN_DNS_" + strconv.Itoa(i), n})
	}
	for i, u := range leaf.URIs {
		vars = append(vars, Var{"SSL_CLIENT_SAN_URI_" + strconv.Itoa(i), u.String()})
	}
	vars = append(vars,
		Var{"SSL_CLIENT_V_REMAIN", strconv.Itoa(daysRemaining(leaf, now))},
		Var{"SSL_CLIENT_CERT", string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leaf.Raw}))},
	)
	return vars
}

// daysRemaining counts whole days until NotAfter, 0 when past.
func daysRemaining(c *x509.Certificate, now time.Time) int {
	d := c.NotAfter.Sub(now)
	if d <= 0 {
		return 0
	}
	return int(d / (24 * time.Hour))
}

// clientVerify follows mod_ssl: NONE (no certificate), SUCCESS (verified) or
// GENEROUS (sent but not verified: the request and require modes).
func clientVerify(cs *tls.ConnectionState) string {
	switch {
	case len(cs.PeerCertificates) == 0:
		return "NONE"
	case len(cs.VerifiedChains) > 0:
		return "SUCCESS"
	default:
		return "GENEROUS"
	}
}

// ProtocolName returns mod_ssl's spelling of a TLS version ("TLSv1.3").
func ProtocolName(v uint16) string {
	switch v {
	case tls.VersionTLS10:
		return "TLSv1"
	case tls.VersionTLS11:
		return "TLSv1.1"
	case tls.VersionTLS12:
		return "TLSv1.2"
	case tls.VersionTLS13:
		return "TLSv1.3"
	}
	return tls.VersionName(v)
}

// CipherName returns OpenSSL's name for a suite, as mod_ssl reports it
// (TLS 1.3 suites keep their IANA names there too).
func CipherName(id uint16) string {
	return CipherSuiteNames([]uint16{id})[0]
}
