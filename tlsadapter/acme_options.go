package tlsadapter

import (
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"
	"tlsedge/config"
)

// Let's Encrypt's directories: acme_ca defaults to production and acme_staging
// switches to staging, whose certificates browsers do not trust but whose rate
// limits are generous enough to try a set-up out.
const (
	LetsEncryptProduction = "https://acme-v02.api.letsencrypt.org/directory"
	LetsEncryptStaging    = "https://acme-staging-v02.api.letsencrypt.org/directory"
)

// The two challenge types the acme module answers itself. dns-01 needs a DNS
// provider plug-in and is left to library users.
const (
	ChallengeHTTP01    = "http-01"
	ChallengeTLSALPN01 = "tls-alpn-01"
)

// ACMEOptions are the acme_* options used by the acme SSL module. Tags as in
// Options: each `opt` field becomes a flag, a config key and a README row.
//
// Every server carries these options whatever its ssl_module, so the zero
// value is valid and each zero field means its documented default (the
// `default` tags say the same for the flag table). What only matters when
// the module runs (a name to manage, on-demand rules) is checked by
// ValidateInUse, which the acme factory and CheckACME call.
type ACMEOptions struct {
	Domains []string `opt:"acme_domains" group:"ACME" help:"names to obtain certificates for before the server reports ready (comma-separated)"`
	Email   string   `opt:"acme_email" group:"ACME" help:"contact address given to the CA for expiry and incident mail (recommended)"`
	CA      string   `opt:"acme_ca" default:"https://acme-v02.api.letsencrypt.org/directory" group:"ACME" help:"ACME directory URL of the CA"` // "" means Let's Encrypt production
	Staging bool     `opt:"acme_staging" default:"false" group:"ACME" help:"use Let's Encrypt's staging CA instead of production (untrusted certificates, generous limits)"`
	CARoot  string   `opt:"acme_ca_root" group:"ACME" help:"PEM file of roots trusted for the CA's own HTTPS (private CAs such as step-ca or pebble)"`
	EABKID  string   `opt:"acme_eab_kid" group:"ACME" help:"external account binding key ID, for CAs that require one"`
	EABHMAC string   `opt:"acme_eab_hmac" group:"ACME" help:"external account binding HMAC key (base64url), with acme_eab_kid"`
	Storage string   `opt:"acme_storage" group:"ACME" help:"directory for ACME accounts, keys and certificates (default: DATA_DIR/acme; dirs 0700, keys 0600)"`

	Challenges []string `opt:"acme_challenges" default:"http-01,tls-alpn-01" group:"ACME" help:"challenge types to answer: http-01, tls-alpn-01"`                          // empty means both
	HTTPPort   int      `opt:"acme_http_port" default:"80" group:"ACME" help:"port of the plain HTTP listener answering http-01 and redirecting everything else to HTTPS"` // 0 means 80
	TLSPort    int      `opt:"acme_tls_port" default:"0" group:"ACME" help:"port tls-alpn-01 probes arrive on when a load balancer forwards them elsewhere (0: the server's port)"`
	// HTTPSPort exists for nodes behind a balancer that serves HTTPS on
	// another port than the node's socket_port (443 outside, 8443 inside):
	// the redirect must name the port clients can reach.
	HTTPSPort int `opt:"acme_https_port" default:"0" group:"ACME" help:"port named in the plain HTTP listener's redirect to HTTPS, when a load balancer serves HTTPS on another port than socket_port (0: the server's port)"`

	RenewWindow   Percent       `opt:"acme_renew_window" default:"33%" group:"ACME" help:"renew when this share of a certificate's lifetime remains (1%-99%)"`
	RenewInterval time.Duration `opt:"acme_renew_interval" default:"10m" group:"ACME" help:"how often certificates are checked for renewal"`
	OCSPStapling  bool          `opt:"acme_ocsp_stapling" default:"true" group:"ACME" help:"staple OCSP responses when the CA runs a responder"`
	Async         bool          `opt:"acme_async" default:"false" group:"ACME" help:"start at once, serving the internal CA's certificate until the ACME one arrives"`
	RetryInterval time.Duration `opt:"acme_retry_interval" default:"1m" group:"ACME" help:"with acme_async, first wait before retrying a failed obtain; doubles up to 1h"`

	OnDemand      bool     `opt:"acme_on_demand" default:"false" group:"ACME" help:"obtain a certificate during the first handshake for a name allowed by acme_on_demand_allow or acme_on_demand_ask"`
	OnDemandAllow []string `opt:"acme_on_demand_allow" group:"ACME" help:"names allowed on demand: exact, *.suffix, or ~regexp matched against the whole name"`
	OnDemandAsk   string   `opt:"acme_on_demand_ask" group:"ACME" help:"URL asked GET ?domain=NAME before an on-demand order; 200 allows, anything else refuses"`
	OnDemandRate  int      `opt:"acme_on_demand_rate" default:"10" group:"ACME" help:"most on-demand certificate orders per minute; more are refused at the handshake"`

	// Fallback serves a handshake for one of Domains while its ACME
	// certificate is not there yet (acme_async). Nil means a leaf from the
	// internal module's development CA under the data directory.
	Fallback func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) `opt:"-"`
}

// Percent is a share written as "33%" (or a bare "0.33"). It exists because
// certificate lifetimes differ by CA (90 days, 6 days, an hour on a test CA),
// so a renewal window is a share of each lifetime rather than a fixed span.
type Percent float64

// UnmarshalText parses "33%", "33.5%" or "0.335".
func (p *Percent) UnmarshalText(b []byte) error {
	s := strings.TrimSpace(string(b))
	if s == "" {
		*p = 0
		return nil
	}
	div := 1.0
	if t, ok := strings.CutSuffix(s, "%"); ok {
		s, div = strings.TrimSpace(t), 100
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return fmt.Errorf("tlsadapter: %q is not a percentage (want e.g. 33%%)", string(b))
	}
	*p = Percent(f / div)
	return nil
}

// MarshalText writes the share as a percentage.
func (p Percent) MarshalText() ([]byte, error) {
	return []byte(strconv.FormatFloat(float64(p)*100, 'f', -1, 64) + "%"), nil
}

// String is MarshalText for humans and flag help.
func (p Percent) String() string { b, _ := p.MarshalText(); return string(b) }

// Validate returns every problem with the acme_* options at once (errors.Join),
// each naming its key. It does not touch the network; files it names must exist.
func (o *ACMEOptions) Validate() error {
	return errors.Join(o.check(false)...)
}

// ValidateInUse is Validate plus what the acme module needs to run: at least
// one name or on-demand, and on-demand rules that can allow something.
func (o *ACMEOptions) ValidateInUse() error {
	return errors.Join(o.check(true)...)
}

func (o *ACMEOptions) check(inUse bool) []error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, config.KeyError(key, format, args...))
	}
	if inUse && len(o.Domains) == 0 && !o.OnDemand {
		bad("acme_domains", "at least one name is required unless acme_on_demand is on")
	}
	for _, d := range o.Domains {
		if err := checkDomain(d); err != nil {
			bad("acme_domains", "%v", err)
		}
	}
	if o.Email != "" && !strings.Contains(o.Email, "@") {
		bad("acme_email", "%q is not an email address", o.Email)
	}
	if u, err := url.Parse(o.CA); o.CA != "" && (err != nil || u.Scheme != "https" || u.Host == "") {
		bad("acme_ca", "%q is not an https:// directory URL", o.CA)
	}
	if o.Staging && o.CA != "" && o.CA != LetsEncryptProduction && o.CA != LetsEncryptStaging {
		bad("acme_staging", "switches Let's Encrypt to its staging CA and cannot be combined with acme_ca=%s", o.CA)
	}
	if o.CARoot != "" {
		if _, err := os.Stat(o.CARoot); err != nil {
			bad("acme_ca_root", "%w", err)
		}
	}
	if (o.EABKID == "") != (o.EABHMAC == "") {
		bad("acme_eab_kid", "acme_eab_kid and acme_eab_hmac go together")
	}
	if o.EABHMAC != "" {
		if _, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(o.EABHMAC, "=")); err != nil {
			bad("acme_eab_hmac", "not base64url: %v", err)
		}
	}
	for _, c := range o.Challenges {
		if c != ChallengeHTTP01 && c != ChallengeTLSALPN01 {
			bad("acme_challenges", "unknown challenge %q (want http-01 or tls-alpn-01)", c)
		}
	}
	if o.HTTPPort < 0 || o.HTTPPort > 65535 {
		bad("acme_http_port", "%d is not a port (1-65535; 0 means 80)", o.HTTPPort)
	}
	if o.TLSPort < 0 || o.TLSPort > 65535 {
		bad("acme_tls_port", "%d is not a port (0-65535)", o.TLSPort)
	}
	if o.HTTPSPort < 0 || o.HTTPSPort > 65535 {
		bad("acme_https_port", "%d is not a port (0-65535)", o.HTTPSPort)
	}
	if o.HTTPSPort != 0 && !o.challenge(ChallengeHTTP01) {
		bad("acme_https_port", "is set, but with acme_challenges %s there is no plain HTTP listener to redirect from; add http-01 or drop acme_https_port", strings.Join(o.Challenges, ","))
	}
	if o.RenewWindow != 0 && (o.RenewWindow < 0.01 || o.RenewWindow > 0.99) {
		bad("acme_renew_window", "%s is outside 1%%-99%%", o.RenewWindow)
	}
	if o.RenewInterval != 0 && o.RenewInterval < time.Second {
		bad("acme_renew_interval", "%s is shorter than 1s", o.RenewInterval)
	}
	if o.RetryInterval != 0 && o.RetryInterval < time.Second {
		bad("acme_retry_interval", "%s is shorter than 1s", o.RetryInterval)
	}
	if inUse && o.OnDemand && len(o.OnDemandAllow) == 0 && o.OnDemandAsk == "" {
		// Fail closed: on-demand with no rule would let anyone make us place
		// orders for any name pointed at this host.
		bad("acme_on_demand", "needs acme_on_demand_allow or acme_on_demand_ask")
	}
	if _, err := compileAllow(o.OnDemandAllow); err != nil {
		bad("acme_on_demand_allow", "%v", err)
	}
	if o.OnDemandAsk != "" {
		if u, err := url.Parse(o.OnDemandAsk); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			bad("acme_on_demand_ask", "%q is not an http(s) URL", o.OnDemandAsk)
		}
	}
	if o.OnDemandRate < 0 {
		bad("acme_on_demand_rate", "%d: at least 1 order per minute (0 means 10)", o.OnDemandRate)
	}
	return errs
}

// withDefaults returns o with each zero field set to its documented default.
func (o ACMEOptions) withDefaults() ACMEOptions {
	if o.CA == "" {
		o.CA = LetsEncryptProduction
	}
	if len(o.Challenges) == 0 {
		o.Challenges = []string{ChallengeHTTP01, ChallengeTLSALPN01}
	}
	if o.HTTPPort == 0 {
		o.HTTPPort = 80
	}
	if o.RenewWindow == 0 {
		o.RenewWindow = 0.33
	}
	if o.RenewInterval == 0 {
		o.RenewInterval = 10 * time.Minute
	}
	if o.RetryInterval == 0 {
		o.RetryInterval = time.Minute
	}
	if o.OnDemandRate == 0 {
		o.OnDemandRate = 10
	}
	return o
}

// directory is the directory URL in effect after acme_staging.
func (o *ACMEOptions) directory() string {
	if o.Staging {
		return LetsEncryptStaging
	}
	return o.CA
}

// challenge reports whether challenge type c is enabled.
func (o *ACMEOptions) challenge(c string) bool {
	for _, x := range o.Challenges {
		if x == c {
			return true
		}
	}
	return false
}

// checkDomain rejects what no public ACME CA issues for through http-01 or
// tls-alpn-01: empty names, wildcards (they need dns-01), ports and URLs.
func checkDomain(d string) error {
	switch {
	case d == "":
		return errors.New("empty name")
	case strings.HasPrefix(d, "*."):
		return fmt.Errorf("%q: wildcard names need dns-01, which this module does not answer", d)
	case strings.ContainsAny(d, "/: \t"):
		return fmt.Errorf("%q is not a host name", d)
	}
	return nil
}

// allowRule is one compiled acme_on_demand_allow entry.
type allowRule struct {
	exact  string
	suffix string // ".example.com" for "*.example.com": exactly one label before it, as in a certificate
	re     *regexp.Regexp
}

// compileAllow parses acme_on_demand_allow entries. A regexp is anchored at
// both ends so "~shop[0-9]+\.example\.com" cannot match "shop1.example.com.evil".
func compileAllow(entries []string) ([]allowRule, error) {
	var rules []allowRule
	var errs []error
	for _, e := range entries {
		e = strings.TrimSpace(e)
		switch {
		case e == "":
			errs = append(errs, errors.New("empty entry"))
		case strings.HasPrefix(e, "~"):
			re, err := regexp.Compile(`^(?:` + e[1:] + `)$`)
			if err != nil {
				errs = append(errs, fmt.Errorf("%q: %w", e, err))
				continue
			}
			rules = append(rules, allowRule{re: re})
		case strings.HasPrefix(e, "*."):
			if strings.Contains(e[1:], "*") {
				errs = append(errs, fmt.Errorf("%q: only a leading *. is a wildcard (one label); use ~regexp for more", e))
				continue
			}
			rules = append(rules, allowRule{suffix: strings.ToLower(e[1:])})
		default:
			rules = append(rules, allowRule{exact: strings.ToLower(e)})
		}
	}
	return rules, errors.Join(errs...)
}

// match reports whether name (lower case) passes rule r.
func (r allowRule) match(name string) bool {
	switch {
	case r.re != nil:
		return r.re.MatchString(name)
	case r.suffix != "":
		// One label, as a wildcard certificate covers: *.customers.example
		// allows a.customers.example, not x.y.customers.example, whose
		// owner is whoever controls y.customers.example.
		label, ok := strings.CutSuffix(name, r.suffix)
		return ok && label != "" && !strings.Contains(label, ".")
	default:
		return name == r.exact
	}
}
