package apps

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"

	"tlsedge/config"
	"tlsedge/internal/boundedread"
)

// UpstreamTLSConfig builds the TLS client configuration for https://
// upstreams from the proxy_ssl_* options: the roots that verify them
// (proxy_ssl_trusted_certificate, else the system's), the client
// certificate presented to them (proxy_ssl_certificate and
// proxy_ssl_certificate_key), the name sent and verified
// (proxy_ssl_server_name; empty here, filled per upstream with its host),
// and whether they are verified at all (proxy_ssl_verify). The files are
// read and parsed here, once: a server builds this when it loads its
// configuration and hands it to New in Env.UpstreamTLS. Errors name the
// option. The options need no https:// mount; they are per server.
func UpstreamTLSConfig(o *Options) (*tls.Config, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	conf := &tls.Config{
		MinVersion: tls.VersionTLS12,
		ServerName: o.ProxySSLServerName,
		NextProtos: []string{"http/1.1"},
	}
	if f := o.ProxySSLTrustedCertificate; f != "" {
		data, err := boundedread.ReadFile(f)
		if err != nil {
			return nil, badTLSOption("proxy_ssl_trusted_certificate", "%v", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(data) {
			return nil, badTLSOption("proxy_ssl_trusted_certificate", "%s holds no PEM certificate (is it DER? convert with: openssl x509 -inform der -in %s -out %s.pem)", f, f, f)
		}
		conf.RootCAs = pool
	}
	if o.ProxySSLCertificate != "" {
		certPEM, err := boundedread.ReadFile(o.ProxySSLCertificate)
		if err != nil {
			return nil, badTLSOption("proxy_ssl_certificate", "%v", err)
		}
		keyPEM, err := boundedread.ReadFile(o.ProxySSLCertificateKey)
		if err != nil {
			return nil, badTLSOption("proxy_ssl_certificate_key", "%v", err)
		}
		cert, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			return nil, badTLSOption("proxy_ssl_certificate", "%s with proxy_ssl_certificate_key %s: %v", o.ProxySSLCertificate, o.ProxySSLCertificateKey, err)
		}
		// Sent whenever the upstream asks, whatever CAs it names as
		// acceptable, as nginx and ghostunnel do: crypto/tls's own choice
		// from Certificates would silently send none when the upstream's
		// list and the chain do not meet, and the failure would then look
		// like the upstream's.
		conf.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert, nil }
	}
	if !o.ProxySSLVerify.IsOn() {
		conf.InsecureSkipVerify = true
	}
	return conf, nil
}

// badTLSOption is a proxy_ssl_* option that cannot be honoured, naming
// it for the loader to locate; errors.Is finds ErrBadOption.
func badTLSOption(key, format string, args ...any) error {
	return &config.Error{Key: key, Msg: fmt.Sprintf(format, args...), Err: ErrBadOption}
}
