package policy

import (
	"fmt"
	"slices"
)

// Typed option values: each is parsed and checked when the configuration
// is loaded (config calls UnmarshalText or SetList), so a bad entry is an
// error at load naming its option, and what runs is the value that was
// checked, never a string parsed again at each use.

// defaultSelection is what an unset ssl_ciphers selects.
var defaultSelection = func() CipherSelection {
	sel, err := ParseCipherString("")
	if err != nil {
		panic(err) // the built-in default: caught by the first test
	}
	return sel
}()

// CipherString is ssl_ciphers: an OpenSSL-style cipher string for TLS 1.2.
// The zero value is the default (forward-secret AEAD suites only).
type CipherString struct {
	text string
	sel  *CipherSelection
}

// ParseCiphers parses s as ssl_ciphers does.
func ParseCiphers(s string) (CipherString, error) {
	var c CipherString
	err := c.UnmarshalText([]byte(s))
	return c, err
}

// MustCiphers is ParseCiphers for strings known to be good (tests,
// examples); it panics on a bad one.
func MustCiphers(s string) CipherString {
	c, err := ParseCiphers(s)
	if err != nil {
		panic(err)
	}
	return c
}

// UnmarshalText parses and checks a cipher string.
func (c *CipherString) UnmarshalText(b []byte) error {
	sel, err := ParseCipherString(string(b))
	if err != nil {
		return err
	}
	*c = CipherString{text: string(b), sel: &sel}
	if c.text == "" {
		c.sel = nil
	}
	return nil
}

// MarshalText returns the string as written.
func (c CipherString) MarshalText() ([]byte, error) { return []byte(c.text), nil }

// String returns the string as written ("" for the default).
func (c CipherString) String() string { return c.text }

// Selection is what the string selects; the default's for the zero value.
func (c CipherString) Selection() CipherSelection {
	if c.sel == nil {
		return defaultSelection
	}
	return *c.sel
}

// ClientAllow is ssl_client_allow: the client identities admitted, parsed
// into an AllowList when set. The zero value is an empty list.
type ClientAllow struct {
	entries []string
	list    *AllowList
}

// NewClientAllow parses entries as ssl_client_allow does.
func NewClientAllow(entries ...string) (ClientAllow, error) {
	var a ClientAllow
	err := a.SetList(entries)
	return a, err
}

// SetList implements config.ListValue.
func (a *ClientAllow) SetList(items []string) error {
	if len(items) == 0 {
		*a = ClientAllow{}
		return nil
	}
	l, err := ParseAllowList(items)
	if err != nil {
		return err
	}
	*a = ClientAllow{entries: slices.Clone(items), list: l}
	return nil
}

// List implements config.ListValue.
func (a ClientAllow) List() []string { return slices.Clone(a.entries) }

// Len is the number of entries.
func (a ClientAllow) Len() int { return len(a.entries) }

// AllowList is the parsed list; nil when empty.
func (a ClientAllow) AllowList() *AllowList { return a.list }

// TrustedProxies is trusted_proxies: the peers whose forwarding headers are
// kept, parsed into a Trust when set. The zero value trusts no one.
type TrustedProxies struct {
	entries []string
	trust   *Trust
}

// NewTrustedProxies parses entries as trusted_proxies does.
func NewTrustedProxies(entries ...string) (TrustedProxies, error) {
	var t TrustedProxies
	err := t.SetList(entries)
	return t, err
}

// SetList implements config.ListValue.
func (t *TrustedProxies) SetList(items []string) error {
	tr, err := ParseTrust(items)
	if err != nil {
		return fmt.Errorf("%s", trimKey(err.Error(), "trusted_proxies: "))
	}
	*t = TrustedProxies{entries: slices.Clone(items), trust: tr}
	return nil
}

// List implements config.ListValue.
func (t TrustedProxies) List() []string { return slices.Clone(t.entries) }

// Trust is the parsed list; never nil (the zero value trusts no one).
func (t TrustedProxies) Trust() *Trust {
	if t.trust == nil {
		return &Trust{}
	}
	return t.trust
}

func trimKey(msg, prefix string) string {
	if len(msg) > len(prefix) && msg[:len(prefix)] == prefix {
		return msg[len(prefix):]
	}
	return msg
}
