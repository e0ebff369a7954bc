package policy

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"tlsedge/config"
)

// ClientAuth is the ssl_client_auth mode. The zero value is ClientAuthNone.
type ClientAuth int

// Client-certificate modes, named as in the option.
const (
	ClientAuthNone             ClientAuth = iota // never ask for a certificate
	ClientAuthRequest                            // ask; accept anything or nothing, unverified
	ClientAuthRequire                            // demand one, unverified
	ClientAuthVerifyIfGiven                      // ask; a certificate sent must verify against ssl_client_ca
	ClientAuthRequireAndVerify                   // demand one that verifies against ssl_client_ca
)

var clientAuthNames = []string{"none", "request", "require", "verify-if-given", "require-and-verify"}

// String returns the option spelling.
func (c ClientAuth) String() string {
	if c >= 0 && int(c) < len(clientAuthNames) {
		return clientAuthNames[c]
	}
	return fmt.Sprintf("ClientAuth(%d)", int(c))
}

// MarshalText implements encoding.TextMarshaler.
func (c ClientAuth) MarshalText() ([]byte, error) { return []byte(c.String()), nil }

// UnmarshalText accepts the option spellings; "" means none.
func (c *ClientAuth) UnmarshalText(b []byte) error {
	s := strings.ToLower(strings.TrimSpace(string(b)))
	if s == "" {
		*c = ClientAuthNone
		return nil
	}
	i := slices.Index(clientAuthNames, strings.ReplaceAll(s, "_", "-"))
	if i < 0 {
		return fmt.Errorf("%q is not a client-auth mode (use %s)%s", s, strings.Join(clientAuthNames, ", "), config.SuggestValue(s, clientAuthNames))
	}
	*c = ClientAuth(i)
	return nil
}

// TLS maps the mode onto crypto/tls.
func (c ClientAuth) TLS() tls.ClientAuthType {
	switch c {
	case ClientAuthRequest:
		return tls.RequestClientCert
	case ClientAuthRequire:
		return tls.RequireAnyClientCert
	case ClientAuthVerifyIfGiven:
		return tls.VerifyClientCertIfGiven
	case ClientAuthRequireAndVerify:
		return tls.RequireAndVerifyClientCert
	}
	return tls.NoClientCert
}

// Verifies reports whether certificates sent under this mode are verified
// against a CA, which allow-lists need: an unverified name proves nothing.
func (c ClientAuth) Verifies() bool {
	return c == ClientAuthVerifyIfGiven || c == ClientAuthRequireAndVerify
}

// allowRule is one allow-list entry: sugar for the rule
// "allow cert.KIND:VALUE", judged by the same matching (sugar.go).
type allowRule struct {
	kind  string // cn, ou, dns, uri, spki
	value string // spki: raw SHA-256 digest
	text  string // as written
	cond  cond
}

// AllowList admits client certificates by identity. A nil *AllowList admits
// every verified certificate; a non-nil one admits only what it names, so an
// empty AllowList admits no one (lists fail closed).
type AllowList struct {
	rules []allowRule
}

// ParseAllowList parses entries of the form
//
//	cn:NAME          subject common name
//	ou:UNIT          one of the subject's organizational units
//	dns:NAME         a DNS SAN
//	uri:URI          a URI SAN, e.g. uri:spiffe://example.org/ns/prod/sa/web;
//	                 * stands for one path segment, ** at the end for the
//	                 rest, and a bare spiffe://TRUST.DOMAIN for any ID in it
//	spiffe://...     shorthand for uri:spiffe://...
//	spki:sha256:B64  a pin of the SHA-256 of the SubjectPublicKeyInfo,
//	                 base64 (as HPKP and curl --pinnedpubkey write it) or hex
//
// Every bad entry is reported. The result is never nil.
func ParseAllowList(entries []string) (*AllowList, error) {
	a := &AllowList{}
	var errs []error
	for _, e := range entries {
		r, err := parseRule(strings.TrimSpace(e))
		if err == nil {
			r.cond, err = allowCond(r)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%q: %w", e, err))
			continue
		}
		a.rules = append(a.rules, r)
	}
	return a, errors.Join(errs...)
}

func parseRule(e string) (allowRule, error) {
	if strings.HasPrefix(e, "spiffe://") {
		return allowRule{kind: "uri", value: e, text: e}, nil
	}
	kind, value, ok := strings.Cut(e, ":")
	if !ok || value == "" {
		return allowRule{}, errors.New("want KIND:VALUE with KIND one of cn, ou, dns, uri, spki")
	}
	kind = strings.ToLower(kind)
	switch kind {
	case "cn", "ou", "uri":
		return allowRule{kind: kind, value: value, text: e}, nil
	case "dns":
		return allowRule{kind: kind, value: strings.ToLower(value), text: e}, nil
	case "spki":
		v := strings.TrimPrefix(strings.TrimPrefix(value, "sha256:"), "sha256//")
		v = strings.TrimPrefix(v, "sha256/")
		var sum []byte
		if b, err := hex.DecodeString(strings.ReplaceAll(v, ":", "")); err == nil && len(b) == sha256.Size {
			sum = b
		} else if b, err := base64.StdEncoding.DecodeString(v); err == nil && len(b) == sha256.Size {
			sum = b
		} else {
			return allowRule{}, errors.New("spki pin must be a SHA-256 digest in base64 or hex (openssl x509 -pubkey | openssl pkey -pubin -outform der | openssl dgst -sha256 -binary | base64)")
		}
		return allowRule{kind: kind, value: string(sum), text: e}, nil
	}
	return allowRule{}, fmt.Errorf("unknown kind %q (use cn, ou, dns, uri or spki)", kind)
}

// Len is the number of entries.
func (a *AllowList) Len() int { return len(a.rules) }

// Allows reports whether leaf matches an entry, and which one.
func (a *AllowList) Allows(leaf *x509.Certificate) (rule string, ok bool) {
	if leaf == nil {
		return "", false
	}
	f := &Facts{Cert: leaf, Verified: true}
	var p Policy
	for _, r := range a.rules {
		if p.condHolds(&r.cond, f) {
			return r.text, true
		}
	}
	return "", false
}

// allowCond is the condition an entry stands for.
func allowCond(r allowRule) (cond, error) {
	c := cond{text: "cert." + r.kind + ":" + r.value}
	switch r.kind {
	case "cn":
		c.kind = condCN
	case "ou":
		c.kind = condOU
	case "dns":
		c.kind = condDNS
	case "uri":
		c.kind = condURI
	case "spki":
		c.kind, c.text = condSPKI, "cert.spki:sha256:"+base64.StdEncoding.EncodeToString([]byte(r.value))
		c.sums = [][]byte{[]byte(r.value)}
		return c, nil
	}
	return c, c.add(r.value)
}

// DenyError is returned from VerifyConnection when the allow-list refuses a
// client; the adapter counts it as a policy denial.
type DenyError struct {
	Subject string // the client certificate's subject, "" when none was verified
	Reason  string
}

func (e *DenyError) Error() string {
	if e.Subject == "" {
		return "policy: client denied: " + e.Reason
	}
	return fmt.Sprintf("policy: client %q denied: %s", e.Subject, e.Reason)
}

// VerifyConnection returns a tls.Config.VerifyConnection callback enforcing
// allow on verified client certificates. crypto/tls runs it on full and
// resumed handshakes alike, so a session resumed after the allow-list changed
// is checked against the new list. With a nil allow it returns nil (no
// callback needed): the CA and mode alone decide.
func VerifyConnection(mode ClientAuth, allow *AllowList) func(tls.ConnectionState) error {
	if allow == nil || mode == ClientAuthNone {
		return nil
	}
	return func(cs tls.ConnectionState) error {
		if len(cs.VerifiedChains) == 0 || len(cs.VerifiedChains[0]) == 0 {
			return &DenyError{Reason: "no verified client certificate and an allow-list is configured"}
		}
		leaf := cs.VerifiedChains[0][0]
		if _, ok := allow.Allows(leaf); !ok {
			return &DenyError{Subject: leaf.Subject.String(), Reason: "not in ssl_client_allow"}
		}
		return nil
	}
}
