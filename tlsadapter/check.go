package tlsadapter

import (
	"crypto/tls"
	"fmt"
	"strings"

	"tlsedge/certs"
	"tlsedge/policy"
)

// CheckReport is what `tlsedge check` prints for one server's TLS settings.
type CheckReport struct {
	// Findings are option errors and warnings (File "") followed by the
	// certificate findings of the builtin module, most severe first per pair.
	Findings []certs.Finding
	// Suites are the TLS 1.2 suites ssl_ciphers selects, OpenSSL names;
	// TLS13Suites the TLS 1.3 ones Go always enables (when 1.3 is allowed).
	Suites      []string
	TLS13Suites []string
}

// OK reports whether nothing in the report stops the server from starting.
func (r CheckReport) OK() bool { return !certs.HasErrors(r.Findings) }

// String renders the report the way `tlsedge check` prints it.
func (r CheckReport) String() string {
	var b strings.Builder
	for _, f := range r.Findings {
		fmt.Fprintln(&b, f)
	}
	if len(r.Suites) > 0 {
		fmt.Fprintf(&b, "TLS 1.2 cipher suites: %s\n", strings.Join(r.Suites, ":"))
	}
	if len(r.TLS13Suites) > 0 {
		fmt.Fprintf(&b, "TLS 1.3 cipher suites: %s\n", strings.Join(r.TLS13Suites, ":"))
	}
	return b.String()
}

// Check validates o as the terminator will apply it, for every module:
// options the module cannot honour, every option's value, and the files the
// policy reads (ssl_client_ca); for the builtin module it also loads and
// checks the certificate files against hosts (the names the server answers
// to). userCfg is a library user's own tls.Config, or nil. It never starts
// anything.
func Check(o Options, hosts []string, userCfg *tls.Config) CheckReport {
	var r CheckReport
	addErr := func(err error) {
		for line := range strings.SplitSeq(err.Error(), "\n") {
			r.Findings = append(r.Findings, certs.Finding{Severity: certs.Error, Message: line})
		}
	}
	if err := CheckModuleOptions(o.SSLModule, o, userCfg); err != nil {
		addErr(err)
	}
	if o.SSLModule == "none" {
		return r
	}
	if err := o.Validate(); err != nil {
		addErr(err)
	} else if _, err := policyConfig(o, userCfg, nil); err != nil {
		addErr(err)
	}
	for _, w := range o.Warnings() {
		r.Findings = append(r.Findings, certs.Finding{Severity: certs.Warning, Message: w})
	}
	sel := o.SSLCiphers.Selection()
	minV, maxV := o.SSLMinVersion.Or(policy.DefaultMinVersion), o.SSLMaxVersion.Or(policy.DefaultMaxVersion)
	if minV <= policy.TLS12 {
		r.Suites = policy.CipherSuiteNames(sel.Suites)
	}
	if maxV >= policy.TLS13 {
		r.TLS13Suites = policy.TLS13CipherSuiteNames()
	}
	if o.SSLModule == "builtin" {
		r.Findings = append(r.Findings, certs.Check(CertsConfig(o, hosts))...)
	}
	return r
}
