package tlsadapter

// Options are the ssl_* options of one server. Tags as in httpcore.Options:
// each `opt` field becomes a flag, a config key and a README row.
type Options struct {
	SSLModule           string `opt:"ssl_module" default:"internal" group:"TLS" help:"SSL adapter: internal (local dev CA), builtin (certificate files), acme, none (plain HTTP), or one you registered"`
	SSLCertificate      string `opt:"ssl_certificate" group:"TLS" help:"PEM certificate file (leaf first; may hold the chain)"`
	SSLPrivateKey       string `opt:"ssl_private_key" group:"TLS" help:"PEM private key file for ssl_certificate"`
	SSLCertificateChain string `opt:"ssl_certificate_chain" group:"TLS" help:"PEM file of intermediates served after the leaf"`
	SSLCiphers          string `opt:"ssl_ciphers" group:"TLS" help:"OpenSSL-style cipher string (default: AEAD with forward secrecy only)"`

	ACME ACMEOptions // the acme_* options
}
