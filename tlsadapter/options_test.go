package tlsadapter

import (
	"errors"
	"strings"
	"testing"
	"time"

	"tlsedge/config"
	"tlsedge/internal/testenv"
	"tlsedge/policy"
)

func TestOptionsValidate(t *testing.T) {
	o := builtinOpts("a.pem", "a.key", "b.pem", "b.key")
	o.SSLPrivateKey = o.SSLPrivateKey[:1]
	// Typed options are checked when they are set, as a config file or a
	// flag sets them; the rest when the whole is validated.
	tab := config.NewTable(&o)
	var errs []error
	for _, kv := range [][2]string{{"ssl_ciphers", "ECDHE+AESGCM:RC4:FOO"}, {"ssl_curves", "X25519,P-192"}, {"ssl_client_allow", "cn:x,nope:y"}} {
		f, _ := tab.Lookup(kv[0])
		if err := f.Set(kv[1]); err != nil {
			errs = append(errs, config.KeyError(kv[0], "%w", err))
		}
	}
	o.SSLMinVersion, o.SSLMaxVersion = policy.TLS13, policy.TLS12
	o.SSLHandshakeTimeout = -time.Second
	o.SSLClientAuth = policy.ClientAuthRequest
	o.SSLClientAllow = mustAllow("cn:x")
	o.SSLHSTSPreload = true
	errs = append(errs, o.Validate())
	err := errors.Join(errs...)
	if err == nil {
		t.Fatal("no error")
	}
	for _, key := range []string{"ssl_private_key:", "ssl_ciphers:", `"RC4"`, `"FOO"`, "ssl_min_version:", "ssl_curves:", `"P-192"`,
		"ssl_handshake_timeout:", "ssl_client_allow:", `"nope:y"`, "ssl_hsts_preload:"} {
		if !strings.Contains(err.Error(), key) {
			t.Errorf("error does not mention %s:\n%v", key, err)
		}
	}
	if err := builtinOpts("a.pem", "a.key").Validate(); err != nil {
		t.Errorf("defaults: %v", err)
	}
}

func TestEnumText(t *testing.T) {
	for _, s := range []string{"400", "redirect", "close"} {
		var a PlaintextAction
		if err := a.UnmarshalText([]byte(s)); err != nil || a.String() != s {
			t.Errorf("%s: %v %v", s, a, err)
		}
	}
	var a PlaintextAction
	if err := a.UnmarshalText([]byte("404")); err == nil {
		t.Error("404 accepted")
	}
}

func TestCheckReport(t *testing.T) {
	ca := testenv.NewCA(t, "chk")
	leaf := ca.Leaf(t, "a.test")
	o := builtinOpts(leaf.CertFile, leaf.KeyFile)
	o.SSLMinVersion = policy.TLS10
	o.SSLCiphers = policy.MustCiphers("ECDHE+AESGCM:ECDHE+AES:DHE-RSA-AES128-GCM-SHA256")
	r := Check(o, []string{"a.test", "b.test"}, nil)
	out := r.String()
	for _, want := range []string{
		"warning: ssl_min_version: 1.0 enables deprecated",
		"warning: ssl_ciphers: ECDHE-ECDSA-AES128-SHA lacks forward secrecy or AEAD",
		"not implemented by Go's TLS; skipped",
		`no certificate covers host "b.test"`,
		"TLS 1.2 cipher suites: ECDHE-ECDSA-AES256-GCM-SHA384:",
		"TLS 1.3 cipher suites: TLS_AES_128_GCM_SHA256:",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
	if r.OK() {
		t.Error("an uncovered host must fail the check")
	}
}

// Every option that drives a ticker has a floor of a second: 1ns is legal to
// write and would keep a core busy while idle. 0 keeps its meaning (off or
// the default).
func TestIntervalMinimums(t *testing.T) {
	tests := []struct {
		key string
		set func(o *Options, d time.Duration)
	}{
		{"ssl_reload_interval", func(o *Options, d time.Duration) { o.SSLReloadInterval = d }},
		{"ssl_session_ticket_key_rotation", func(o *Options, d time.Duration) { o.SSLSessionTicketKeyRotation = d }},
		{"acme_renew_interval", func(o *Options, d time.Duration) { o.ACME.RenewInterval = d }},
		{"acme_retry_interval", func(o *Options, d time.Duration) { o.ACME.RetryInterval = d }},
	}
	for _, tt := range tests {
		for _, d := range []time.Duration{0, time.Second, time.Hour, time.Nanosecond, 999 * time.Millisecond, -time.Second} {
			o := builtinOpts("a.pem", "a.key")
			tt.set(&o, d)
			err := errors.Join(o.Validate(), o.ACME.Validate())
			if d == 0 || d >= time.Second {
				if err != nil {
					t.Errorf("%s = %s: %v", tt.key, d, err)
				}
				continue
			}
			if err == nil || !strings.Contains(err.Error(), tt.key+": ") || !strings.Contains(err.Error(), "1s") {
				t.Errorf("%s = %s: error %v, want one naming %s and the minimum 1s", tt.key, d, err, tt.key)
			}
		}
	}
}
