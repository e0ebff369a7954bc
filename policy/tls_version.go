package policy

import (
	"crypto/tls"
	"fmt"
)

// TLSVersion is a TLS protocol version as written in options: "1.0", "1.1",
// "1.2" or "1.3". The zero value means "not set" and lets the caller apply its
// default. It implements encoding.TextMarshaler so it works as a flag and a
// config key.
type TLSVersion uint16

// Protocol versions tlsedge can speak. SSLv3 and older are never offered.
const (
	TLS10 = TLSVersion(tls.VersionTLS10)
	TLS11 = TLSVersion(tls.VersionTLS11)
	TLS12 = TLSVersion(tls.VersionTLS12)
	TLS13 = TLSVersion(tls.VersionTLS13)
)

// Default protocol bounds: TLS 1.0 and 1.1 are deprecated (RFC 8996) and need
// an explicit opt-in, which `tlsedge check` warns about.
const (
	DefaultMinVersion = TLS12
	DefaultMaxVersion = TLS13
)

var versionNames = map[TLSVersion]string{TLS10: "1.0", TLS11: "1.1", TLS12: "1.2", TLS13: "1.3"}

// String returns "1.2" style names, "" for the zero value.
func (v TLSVersion) String() string {
	if v == 0 {
		return ""
	}
	if s, ok := versionNames[v]; ok {
		return s
	}
	return fmt.Sprintf("0x%04x", uint16(v))
}

// MarshalText implements encoding.TextMarshaler.
func (v TLSVersion) MarshalText() ([]byte, error) { return []byte(v.String()), nil }

// UnmarshalText accepts 1.0-1.3, also spelled TLSv1.2 or tls1.2 the way nginx
// and OpenSSL users write them. SSLv3 is refused by name.
func (v *TLSVersion) UnmarshalText(b []byte) error {
	s := string(b)
	switch s {
	case "":
		*v = 0
		return nil
	case "1.0", "1", "TLSv1", "TLSv1.0", "tls1.0", "tls1":
		*v = TLS10
	case "1.1", "TLSv1.1", "tls1.1", "tls1_1":
		*v = TLS11
	case "1.2", "TLSv1.2", "tls1.2", "tls1_2":
		*v = TLS12
	case "1.3", "TLSv1.3", "tls1.3", "tls1_3":
		*v = TLS13
	default:
		return fmt.Errorf("%q is not a TLS version (use 1.0, 1.1, 1.2 or 1.3)", s)
	}
	return nil
}

// Or returns v, or def when v is unset.
func (v TLSVersion) Or(def TLSVersion) TLSVersion {
	if v == 0 {
		return def
	}
	return v
}

// Deprecated reports whether v is TLS 1.0 or 1.1.
func (v TLSVersion) Deprecated() bool { return v != 0 && v < TLS12 }
