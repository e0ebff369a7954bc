package certs

import (
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"tlsedge/internal/boundedread"
)

// Severity of a Finding.
type Severity int

// Severities, least to most severe.
const (
	Info Severity = iota
	Warning
	Error // the server refuses to start (or keeps its old certificates on reload)
)

func (s Severity) String() string {
	return [...]string{"info", "warning", "error"}[s]
}

// Finding is one result of a check: where, how bad, and what to do.
type Finding struct {
	Severity Severity
	File     string // "" when the finding concerns the configuration as a whole
	Position int    // 1-based certificate position in File; 0 for the whole file
	Message  string // what is wrong and what to do about it
}

func (f Finding) String() string {
	switch {
	case f.File == "":
		return fmt.Sprintf("%s: %s", f.Severity, f.Message)
	case f.Position == 0:
		return fmt.Sprintf("%s: %s: %s", f.Severity, f.File, f.Message)
	}
	return fmt.Sprintf("%s: %s: certificate %d: %s", f.Severity, f.File, f.Position, f.Message)
}

// DefaultExpiryWarning is how close to expiry a leaf starts drawing a warning.
const DefaultExpiryWarning = 14 * 24 * time.Hour

// Config describes a server's certificate files and what they must satisfy.
// The zero value has no certificates and fails the checks.
type Config struct {
	Pairs        []PairFiles // several pairs are chosen between by SNI and key type
	PasswordFile string      // decrypts encrypted keys; "" means none
	TrustBundle  string      // optional roots the chains must verify to
	// Hosts are the names the server is configured for; each must be
	// covered by some leaf's SANs. Unspecified addresses are skipped.
	Hosts []string
	// ExpiryWarning: leaves expiring sooner draw a warning. Zero means 14 days.
	ExpiryWarning time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Watch are further files whose change triggers a reload (the client
	// CA bundle, say); the Store does not read them itself.
	Watch []string
}

func (c *Config) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

// Check loads every file in cfg and returns all findings, most severe first
// within each pair. It is what `tlsedge check` prints; an empty result means
// all is well.
func Check(cfg Config) []Finding {
	_, findings := load(cfg)
	return findings
}

// HasErrors reports whether any finding is an Error.
func HasErrors(fs []Finding) bool {
	for _, f := range fs {
		if f.Severity == Error {
			return true
		}
	}
	return false
}

// FindingsError joins the Error findings into one error wrapping ErrCheck.
func FindingsError(fs []Finding) error {
	var errs []error
	for _, f := range fs {
		if f.Severity == Error {
			errs = append(errs, errors.New(f.String()))
		}
	}
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("%w:\n%w", ErrCheck, errors.Join(errs...))
}

// load parses and checks everything, returning the pairs that parsed.
func load(cfg Config) ([]*Pair, []Finding) {
	var findings []Finding
	if len(cfg.Pairs) == 0 {
		return nil, []Finding{{Severity: Error, Message: "no certificate configured: set ssl_certificate and ssl_private_key"}}
	}
	password, err := ReadPassword(cfg.PasswordFile)
	if err != nil {
		findings = append(findings, Finding{Severity: Error, File: cfg.PasswordFile, Message: err.Error()})
	}
	var roots *x509.CertPool
	if cfg.TrustBundle != "" {
		roots, err = loadPool(cfg.TrustBundle)
		if err != nil {
			findings = append(findings, Finding{Severity: Error, File: cfg.TrustBundle, Message: err.Error()})
		}
	}
	var pairs []*Pair
	for _, pf := range cfg.Pairs {
		p, err := LoadPair(pf, password)
		if err != nil {
			findings = append(findings, Finding{Severity: Error, File: pf.Cert, Message: err.Error()})
			continue
		}
		pairs = append(pairs, p)
		findings = append(findings, CheckPair(p, roots, cfg.now(), cfg.ExpiryWarning)...)
	}
	for _, h := range cfg.Hosts {
		if h == "" || isUnspecified(h) || len(pairs) == 0 {
			continue
		}
		covered := false
		for _, p := range pairs {
			if p.Leaf().VerifyHostname(h) == nil {
				covered = true
				break
			}
		}
		if !covered {
			findings = append(findings, Finding{Severity: Error, File: pairs[0].Origins[0].File, Position: 1,
				Message: fmt.Sprintf("no certificate covers host %q the server is configured for (SANs: %s); add it to a certificate's subjectAltName or fix the host name", h, sanList(pairs))})
		}
	}
	return pairs, findings
}

func isUnspecified(h string) bool {
	ip := net.ParseIP(strings.Trim(h, "[]"))
	return ip != nil && ip.IsUnspecified()
}

func sanList(pairs []*Pair) string {
	var names []string
	for _, p := range pairs {
		names = append(names, p.Leaf().DNSNames...)
		for _, ip := range p.Leaf().IPAddresses {
			names = append(names, ip.String())
		}
	}
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ", ")
}

func loadPool(file string) (*x509.CertPool, error) {
	b, err := boundedread.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("certs: reading trust bundle: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("certs: trust bundle %s holds no PEM certificate", file)
	}
	return pool, nil
}

var weakSignatures = map[x509.SignatureAlgorithm]bool{
	x509.SHA1WithRSA: true, x509.ECDSAWithSHA1: true, x509.DSAWithSHA1: true,
	x509.MD5WithRSA: true, x509.MD2WithRSA: true,
}

// CheckPair checks one parsed pair: key matches leaf, each certificate is
// signed by the next, validity (warning within warn of expiry; zero means 14
// days), RSA >= 2048 bits, no SHA-1 or MD5 signatures, server-auth usage and,
// with roots, a chain verifying to them.
func CheckPair(p *Pair, roots *x509.CertPool, now time.Time, warn time.Duration) []Finding {
	if warn == 0 {
		warn = DefaultExpiryWarning
	}
	var fs []Finding
	at := func(i int, sev Severity, format string, args ...any) {
		fs = append(fs, Finding{Severity: sev, File: p.Origins[i].File, Position: p.Origins[i].Index, Message: fmt.Sprintf(format, args...)})
	}
	leaf := p.Leaf()
	if !p.KeyMatches() {
		keyFile := p.Files.Key
		if keyFile == "" {
			keyFile = p.Files.Cert
		}
		fs = append(fs, Finding{Severity: Error, File: keyFile,
			Message: fmt.Sprintf("private key does not match the leaf certificate %q in %s; the first certificate must be the one issued for this key", subject(leaf), p.Origins[0])})
	}
	for i, c := range p.Chain {
		if now.After(c.NotAfter) {
			at(i, Error, "%q expired on %s; renew it", subject(c), c.NotAfter.UTC().Format(time.RFC3339))
		} else if now.Before(c.NotBefore) {
			at(i, Error, "%q is not valid until %s; check the clock or wait", subject(c), c.NotBefore.UTC().Format(time.RFC3339))
		} else if i == 0 && c.NotAfter.Sub(now) < warn {
			at(i, Warning, "%q expires on %s, in %d days; renew it soon", subject(c), c.NotAfter.UTC().Format(time.RFC3339), int(c.NotAfter.Sub(now).Hours()/24))
		}
		if k, ok := c.PublicKey.(*rsa.PublicKey); ok && k.N.BitLen() < 2048 {
			at(i, Error, "%q has a %d-bit RSA key; use at least 2048 bits (or ECDSA P-256)", subject(c), k.N.BitLen())
		}
		selfSigned := c.CheckSignatureFrom(c) == nil && c.Subject.String() == c.Issuer.String()
		if weakSignatures[c.SignatureAlgorithm] && !selfSigned {
			at(i, Error, "%q is signed with %s; reissue it with SHA-256 or better", subject(c), c.SignatureAlgorithm)
		}
		if i+1 < len(p.Chain) {
			next := p.Chain[i+1]
			if err := c.CheckSignatureFrom(next); err != nil {
				at(i+1, Error, "%q (%s) did not sign %q (%s): order the chain leaf first, each certificate followed by its issuer (%v)",
					subject(next), p.Origins[i+1], subject(c), p.Origins[i], err)
			}
		} else if i > 0 && selfSigned {
			at(i, Warning, "%q is a self-signed root: clients never use a served root; remove it from the chain", subject(c))
		}
	}
	if len(leaf.ExtKeyUsage) > 0 && !hasServerAuth(leaf) {
		at(0, Error, "%q lacks the serverAuth extended key usage; browsers will reject it", subject(leaf))
	}
	if leaf.IsCA {
		at(0, Warning, "%q is a CA certificate; the leaf should be an end-entity certificate", subject(leaf))
	}
	if roots != nil {
		inter := x509.NewCertPool()
		for _, c := range p.Chain[1:] {
			inter.AddCert(c)
		}
		_, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
		if err != nil {
			at(0, Error, "%q does not verify against ssl_trusted_certificate: %v; add the missing intermediates to ssl_certificate_chain", subject(leaf), err)
		}
	}
	return fs
}

func hasServerAuth(c *x509.Certificate) bool {
	for _, u := range c.ExtKeyUsage {
		if u == x509.ExtKeyUsageServerAuth || u == x509.ExtKeyUsageAny {
			return true
		}
	}
	return false
}

func subject(c *x509.Certificate) string {
	if c.Subject.CommonName != "" {
		return c.Subject.CommonName
	}
	return c.Subject.String()
}
