package tlsadapter

import (
	"crypto/tls"
	"errors"
	"fmt"

	"tlsedge/config"
)

// Which options a module can honour. Every TLS module honours every policy
// option, because the one terminator applies them; what differs is where
// certificates come from. An option set for a module that cannot use it is
// an error at start-up and in `tlsedge check`, never silently dropped.
var (
	// policyKeys are what the terminator applies; ssl_module none serves
	// plain HTTP and so honours none of them.
	policyKeys = []string{
		"ssl_reject_unknown_sni", "ssl_ciphers", "ssl_min_version", "ssl_max_version", "ssl_curves",
		"ssl_alpn", "ssl_session_tickets", "ssl_session_ticket_key_rotation", "ssl_handshake_timeout",
		"ssl_plaintext_action", "ssl_client_auth", "ssl_client_ca", "ssl_client_allow",
		"ssl_hsts_max_age", "ssl_hsts_include_subdomains", "ssl_hsts_preload",
	}
	// fileKeys name certificate files: only the builtin module reads them.
	fileKeys = []string{
		"ssl_certificate", "ssl_private_key", "ssl_certificate_chain",
		"ssl_private_key_password_file", "ssl_trusted_certificate",
	}
	// userConfigKeys are set in a library user's own tls.Config instead.
	userConfigKeys = []string{
		"ssl_ciphers", "ssl_min_version", "ssl_max_version", "ssl_curves",
		"ssl_client_auth", "ssl_client_ca", "ssl_client_allow",
	}
)

// CheckModuleOptions reports every option in o that module cannot honour,
// each naming its key and what to do. userCfg is a library user's own
// tls.Config (the seeds' ssl_context), whose settings replace the
// corresponding options.
func CheckModuleOptions(module string, o Options, userCfg *tls.Config) error {
	set := setOptions(o)
	var errs []error
	switch module {
	case "none":
		for _, k := range append(append([]string(nil), fileKeys...), policyKeys...) {
			if set[k] {
				errs = append(errs, fmt.Errorf("%s: ssl_module none serves plain HTTP, so this TLS option cannot apply; remove it or choose a TLS module (builtin, internal, acme)", k))
			}
		}
	case "builtin":
	default:
		for _, k := range fileKeys {
			if set[k] {
				errs = append(errs, fmt.Errorf("%s: applies only to ssl_module builtin; ssl_module %s brings its own certificates (remove it, or use ssl_module builtin)", k, module))
			}
		}
	}
	if module != "acme" && len(o.ACME.Domains) > 0 {
		errs = append(errs, fmt.Errorf("acme_domains: applies only to ssl_module acme (set ssl_module = acme, or remove it)"))
	}
	if userCfg != nil && module != "none" {
		for _, k := range userConfigKeys {
			if set[k] {
				errs = append(errs, fmt.Errorf("%s: cannot apply together with a Go tls.Config (ssl_context); set it in that tls.Config", k))
			}
		}
		if set["ssl_reject_unknown_sni"] && (len(userCfg.Certificates) > 0 || userCfg.GetCertificate != nil) {
			errs = append(errs, errors.New("ssl_reject_unknown_sni: cannot apply to certificates from a Go tls.Config (ssl_context); leave its certificates to the ssl_module"))
		}
	}
	return errors.Join(errs...)
}

// setOptions reports which options of o hold something other than their
// default. A zero value counts as the default, as it does for library users
// who build Options in Go.
func setOptions(o Options) map[string]bool {
	var def Options
	dt := config.NewTable(&def)
	if err := dt.Reset(); err != nil {
		panic(err) // a bad default tag: caught by the first test
	}
	defaults := map[string]string{}
	for _, f := range config.Fields(&def) {
		defaults[f.Name] = f.String()
	}
	var zero Options
	zeros := map[string]string{}
	for _, f := range config.Fields(&zero) {
		zeros[f.Name] = f.String()
	}
	set := map[string]bool{}
	for _, f := range config.Fields(&o) {
		v := f.String()
		set[f.Name] = v != defaults[f.Name] && v != zeros[f.Name]
	}
	return set
}
