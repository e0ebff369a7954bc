package tlsadapter

import (
	"crypto/tls"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"tlsedge/config"
	"tlsedge/policy"
)

// Options are the ssl_* options of one server. Tags as in httpcore.Options:
// each `opt` field becomes a flag, a config key and a README row. Every
// default is written here, in the tags; the server package applies them.
// For library users building Options in Go, a zero value means its default
// too, except the bools whose default is true (SSLSessionTickets): set those.
type Options struct {
	SSLModule string `opt:"ssl_module" default:"internal" group:"TLS" help:"SSL adapter: internal (local dev CA), builtin (certificate files), acme, none (plain HTTP), or one you registered"`

	SSLCertificate            []string      `opt:"ssl_certificate" group:"TLS" help:"PEM certificate file, leaf first (may hold the chain); repeat for several pairs, paired by position with ssl_private_key, chosen by SNI and key type"`
	SSLPrivateKey             []string      `opt:"ssl_private_key" group:"TLS" help:"PEM private key (PKCS#1, PKCS#8, SEC1) for the ssl_certificate at the same position; omit to read it from the certificate file"`
	SSLCertificateChain       []string      `opt:"ssl_certificate_chain" group:"TLS" help:"PEM intermediates served after the leaf: one file for all pairs, or one per ssl_certificate by position"`
	SSLPrivateKeyPasswordFile string        `opt:"ssl_private_key_password_file" group:"TLS" help:"file whose first line decrypts encrypted private keys"`
	SSLTrustedCertificate     string        `opt:"ssl_trusted_certificate" group:"TLS" help:"PEM roots the served chains must verify to (checked at start, reload and tlsedge check)"`
	SSLRejectUnknownSNI       bool          `opt:"ssl_reject_unknown_sni" default:"false" group:"TLS" help:"answer a server name no certificate covers with an unrecognized_name alert instead of the default certificate"`
	SSLReloadInterval         time.Duration `opt:"ssl_reload_interval" default:"1s" group:"TLS" help:"how often certificate files are checked for changes (0: never; SIGHUP still reloads)"`

	SSLCiphers    policy.CipherString `opt:"ssl_ciphers" group:"TLS" help:"OpenSSL-style cipher string for TLS 1.2, e.g. ECDHE+AESGCM:!SHA1 (default: AEAD with forward secrecy only; TLS 1.3 suites are fixed)"`
	SSLMinVersion policy.TLSVersion   `opt:"ssl_min_version" default:"1.2" group:"TLS" help:"lowest TLS version accepted: 1.0, 1.1, 1.2 or 1.3 (1.0 and 1.1 are deprecated)"`
	SSLMaxVersion policy.TLSVersion   `opt:"ssl_max_version" default:"1.3" group:"TLS" help:"highest TLS version accepted"`
	SSLCurves     Curves              `opt:"ssl_curves" group:"TLS" help:"key exchange groups offered: X25519, P-256, P-384, P-521, SecP256r1MLKEM768, SecP384r1MLKEM1024; X25519MLKEM768 is always kept unless listed as -X25519MLKEM768 (default: Go's, post-quantum hybrid first)"`
	SSLALPN       []string            `opt:"ssl_alpn" default:"h2,http/1.1" group:"TLS" help:"ALPN protocols offered, in preference order"`

	SSLSessionTickets           bool            `opt:"ssl_session_tickets" default:"true" group:"TLS" help:"offer session tickets for resumption"`
	SSLSessionTicketKeyRotation time.Duration   `opt:"ssl_session_ticket_key_rotation" default:"12h" group:"TLS" help:"how often a new session-ticket key is made (at least 1s); a ticket resumes for at most two rotations"`
	SSLHandshakeTimeout         time.Duration   `opt:"ssl_handshake_timeout" default:"10s" group:"TLS" help:"longest a client may take to complete the TLS handshake"`
	SSLPlaintextAction          PlaintextAction `opt:"ssl_plaintext_action" default:"400" group:"TLS" help:"answer to plain HTTP on the TLS port: 400, redirect (308 to https, only for names we hold a certificate for), or close"`

	SSLClientAuth  policy.ClientAuth  `opt:"ssl_client_auth" default:"none" group:"TLS" help:"client certificates: none, request, require, verify-if-given, require-and-verify"`
	SSLClientCA    string             `opt:"ssl_client_ca" group:"TLS" help:"PEM roots client certificates must chain to (verify-if-given, require-and-verify)"`
	SSLClientAllow policy.ClientAllow `opt:"ssl_client_allow" group:"TLS" help:"client identities allowed (cn:, ou:, dns:, uri:, spiffe://..., spki:sha256:BASE64); when set, anyone else is refused"`

	SSLHSTSMaxAge            time.Duration `opt:"ssl_hsts_max_age" default:"0s" group:"TLS" help:"Strict-Transport-Security max-age on HTTPS responses (0: no header)"`
	SSLHSTSIncludeSubdomains bool          `opt:"ssl_hsts_include_subdomains" default:"false" group:"TLS" help:"add includeSubDomains to the HSTS header"`
	SSLHSTSPreload           bool          `opt:"ssl_hsts_preload" default:"false" group:"TLS" help:"add preload to the HSTS header (needs max-age >= 1 year and includeSubDomains)"`

	ACME ACMEOptions // the acme_* options
}

// defaults are the tags' defaults, the fallbacks for zero values in Options
// that library users build in Go.
var defaults = config.Defaults[Options]()

// PlaintextAction is what a TLS port answers to a plain HTTP request.
type PlaintextAction int

// Plaintext actions. The zero value answers 400.
const (
	Plaintext400 PlaintextAction = iota
	PlaintextRedirect
	PlaintextClose
)

var plaintextNames = []string{"400", "redirect", "close"}

func (a PlaintextAction) String() string {
	if a >= 0 && int(a) < len(plaintextNames) {
		return plaintextNames[a]
	}
	return fmt.Sprintf("PlaintextAction(%d)", int(a))
}

// MarshalText implements encoding.TextMarshaler.
func (a PlaintextAction) MarshalText() ([]byte, error) { return []byte(a.String()), nil }

// UnmarshalText accepts 400, redirect (or 308) and close; "" means 400.
func (a *PlaintextAction) UnmarshalText(b []byte) error {
	switch strings.ToLower(strings.TrimSpace(string(b))) {
	case "", "400":
		*a = Plaintext400
	case "redirect", "308":
		*a = PlaintextRedirect
	case "close":
		*a = PlaintextClose
	default:
		return fmt.Errorf("%q is not a plaintext action (use 400, redirect or close)%s", string(b), config.SuggestValue(string(b), plaintextNames))
	}
	return nil
}

// curveIDs maps ssl_curves names (OpenSSL and Go spellings) to Go's IDs.
var curveIDs = map[string]uint16{
	"x25519mlkem768": 4588, "secp256r1mlkem768": 4587, "secp384r1mlkem1024": 4589, "x25519": 29,
	"p-256": 23, "p256": 23, "prime256v1": 23, "secp256r1": 23,
	"p-384": 24, "p384": 24, "secp384r1": 24,
	"p-521": 25, "p521": 25, "secp521r1": 25,
}

// Validate checks every option that can be checked without reading files and
// returns all problems at once, each naming its key.
func (o Options) Validate() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, config.KeyError(key, format, args...))
	}
	if o.SSLModule == "builtin" && len(o.SSLCertificate) == 0 {
		bad("ssl_certificate", "ssl_module builtin needs at least one certificate file (or use ssl_module internal for a local development CA)")
	}
	if n, k := len(o.SSLCertificate), len(o.SSLPrivateKey); k != 0 && k != n {
		bad("ssl_private_key", "%d keys for %d certificates; give one per ssl_certificate, in the same order (or none when the certificate files hold the keys)", k, n)
	}
	if n, c := len(o.SSLCertificate), len(o.SSLCertificateChain); c > 1 && c != n {
		bad("ssl_certificate_chain", "%d chain files for %d certificates; give one for all or one per ssl_certificate", c, n)
	}
	minV, maxV := o.SSLMinVersion.Or(policy.DefaultMinVersion), o.SSLMaxVersion.Or(policy.DefaultMaxVersion)
	if minV > maxV {
		bad("ssl_min_version", "%s is above ssl_max_version %s", minV, maxV)
	}
	for _, p := range o.SSLALPN {
		if p == "" || len(p) > 255 {
			bad("ssl_alpn", "%q is not a valid ALPN protocol name", p)
		}
	}
	if o.SSLHandshakeTimeout < 0 {
		bad("ssl_handshake_timeout", "%s is negative", o.SSLHandshakeTimeout)
	}
	// Interval options drive tickers: one of a nanosecond is legal to write
	// and keeps a core busy while the server is idle, so each has a floor.
	const minInterval = time.Second
	if d := o.SSLSessionTicketKeyRotation; d < 0 {
		bad("ssl_session_ticket_key_rotation", "%s is negative", d)
	} else if d > 0 && d < minInterval {
		bad("ssl_session_ticket_key_rotation", "%s is below the minimum of %s (0 means the default, %s)", d, minInterval, defaults.SSLSessionTicketKeyRotation)
	}
	if d := o.SSLReloadInterval; d < 0 {
		bad("ssl_reload_interval", "%s is negative; use 0 to stop polling the files", d)
	} else if d > 0 && d < minInterval {
		bad("ssl_reload_interval", "%s is below the minimum of %s (0 stops polling the files; SIGHUP still reloads)", d, minInterval)
	}
	if o.SSLClientAuth.Verifies() && o.SSLClientCA == "" {
		bad("ssl_client_ca", "ssl_client_auth %s needs ssl_client_ca: the roots client certificates must chain to", o.SSLClientAuth)
	}
	if o.SSLClientAllow.Len() > 0 {
		if !o.SSLClientAuth.Verifies() {
			bad("ssl_client_allow", "needs ssl_client_auth verify-if-given or require-and-verify; an unverified certificate proves no identity")
		}
	}
	if err := o.hsts().Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// HSTS returns the HSTS settings for policy.HSTS.
func (o Options) HSTS() policy.HSTSOptions { return o.hsts() }

func (o Options) hsts() policy.HSTSOptions {
	return policy.HSTSOptions{MaxAge: o.SSLHSTSMaxAge, IncludeSubDomains: o.SSLHSTSIncludeSubdomains, Preload: o.SSLHSTSPreload}
}

// Warnings are legal settings `tlsedge check` should point out.
func (o Options) Warnings() []string {
	var w []string
	if o.SSLMinVersion.Deprecated() {
		w = append(w, fmt.Sprintf("ssl_min_version: %s enables deprecated TLS versions (RFC 8996); use 1.2 unless old clients need it", o.SSLMinVersion))
	}
	sel := o.SSLCiphers.Selection()
	for _, id := range sel.Suites {
		if !policy.ForwardSecretAEAD(id) {
			w = append(w, fmt.Sprintf("ssl_ciphers: %s lacks forward secrecy or AEAD", policy.CipherSuiteNames([]uint16{id})[0]))
		}
	}
	for _, n := range sel.Notes {
		w = append(w, "ssl_ciphers: "+n)
	}
	return w
}

// pairFiles pairs certificates, keys and chains by position.
func (o Options) pairFiles() [][3]string {
	var out [][3]string
	for i, c := range o.SSLCertificate {
		var key, chain string
		if i < len(o.SSLPrivateKey) {
			key = o.SSLPrivateKey[i]
		}
		switch len(o.SSLCertificateChain) {
		case 0:
		case 1:
			chain = o.SSLCertificateChain[0]
		default:
			if i < len(o.SSLCertificateChain) {
				chain = o.SSLCertificateChain[i]
			}
		}
		out = append(out, [3]string{c, key, chain})
	}
	return out
}

// Curves is ssl_curves: key exchange groups by name, checked and mapped to
// Go's IDs when set. The zero value lets Go choose (post-quantum hybrid
// first).
type Curves struct {
	names []string
	ids   []tls.CurveID
}

// ParseCurves parses names as ssl_curves does.
func ParseCurves(names ...string) (Curves, error) {
	var c Curves
	err := c.SetList(names)
	return c, err
}

// SetList implements config.ListValue: every name must be a supported
// group, or -X25519MLKEM768 to drop the hybrid.
func (c *Curves) SetList(items []string) error {
	var errs []error
	for _, n := range items {
		if _, ok := curveIDs[strings.ToLower(strings.TrimPrefix(n, "-"))]; !ok {
			errs = append(errs, fmt.Errorf("%q is not a supported group (use X25519MLKEM768, X25519, P-256, P-384, P-521, SecP256r1MLKEM768 or SecP384r1MLKEM1024)", n))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	*c = Curves{names: slices.Clone(items), ids: curvePreferences(items)}
	return nil
}

// List implements config.ListValue.
func (c Curves) List() []string { return slices.Clone(c.names) }

// IDs are the groups offered, in order; nil lets Go choose.
func (c Curves) IDs() []tls.CurveID { return slices.Clone(c.ids) }
