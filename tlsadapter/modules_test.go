package tlsadapter

import (
	"crypto/tls"
	"strings"
	"testing"
	"time"

	"tlsedge/policy"
)

// An option the module cannot honour is an error at start-up (Registry.New)
// and in check, naming the option; never silently dropped.
func TestModuleOptions(t *testing.T) {
	user := &tls.Config{Certificates: []tls.Certificate{{}}}
	tests := []struct {
		module string
		set    func(o *Options)
		user   *tls.Config
		want   string // "" when the options must be accepted
	}{
		{"none", func(o *Options) {}, nil, ""},
		{"none", func(o *Options) { o.SSLClientAuth = policy.ClientAuthRequire }, nil, "ssl_client_auth: ssl_module none serves plain HTTP"},
		{"none", func(o *Options) { o.SSLMinVersion = policy.TLS13 }, nil, "ssl_min_version"},
		{"none", func(o *Options) { o.SSLHSTSMaxAge = time.Hour }, nil, "ssl_hsts_max_age"},
		{"none", func(o *Options) { o.SSLCertificate = []string{"c.pem"} }, nil, "ssl_certificate"},
		{"internal", func(o *Options) { o.SSLClientAuth = policy.ClientAuthRequest }, nil, ""},
		{"internal", func(o *Options) { o.SSLCertificate = []string{"c.pem"} }, nil, "ssl_certificate: applies only to ssl_module builtin"},
		{"acme", func(o *Options) { o.SSLPrivateKeyPasswordFile = "p" }, nil, "ssl_private_key_password_file"},
		{"builtin", func(o *Options) { o.ACME.Domains = []string{"a.example"} }, nil, "acme_domains: applies only to ssl_module acme"},
		{"builtin", func(o *Options) { o.SSLCiphers = policy.MustCiphers("ECDHE+AESGCM") }, user, "ssl_ciphers: cannot apply together with a Go tls.Config"},
		{"builtin", func(o *Options) { o.SSLRejectUnknownSNI = true }, user, "ssl_reject_unknown_sni"},
		{"builtin", func(o *Options) { o.SSLPlaintextAction = PlaintextRedirect }, user, ""},
	}
	for _, tt := range tests {
		t.Run(tt.module+"/"+tt.want, func(t *testing.T) {
			o := builtinOpts()
			o.SSLModule = tt.module
			tt.set(&o)
			err := CheckModuleOptions(tt.module, o, tt.user)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want one naming %q", err, tt.want)
			}
			// The registry refuses it before building anything, and check
			// reports it.
			if _, err := NewRegistry().New(t.Context(), tt.module, Params{Options: o, TLSConfig: tt.user, DataDir: t.TempDir()}); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Registry.New: %v", err)
			}
			if r := Check(o, nil, tt.user); r.OK() || !strings.Contains(r.String(), tt.want) {
				t.Errorf("check passed or did not name it:\n%s", r)
			}
		})
	}
}

// ssl_curves never panics nor builds an empty list, whatever the entries:
// a reload with a duplicated exclusion once took the server down.
func TestCurvePreferencesNeverPanics(t *testing.T) {
	for _, names := range [][]string{
		{"-X25519MLKEM768", "-X25519MLKEM768"},
		{"-x25519mlkem768"},
		{"X25519", "x25519", "-X25519MLKEM768", "X25519MLKEM768"},
		{"P-256", "-X25519MLKEM768", "P-256"},
	} {
		got := curvePreferences(names)
		seen := map[tls.CurveID]bool{}
		for _, id := range got {
			if seen[id] {
				t.Errorf("%q: %v lists %v twice", names, got, id)
			}
			seen[id] = true
		}
		if len(got) == 0 {
			t.Errorf("%q: empty list", names)
		}
		if seen[tls.X25519MLKEM768] && strings.Contains(strings.ToLower(strings.Join(names, ",")), "-x25519mlkem768") {
			t.Errorf("%q: %v keeps the excluded hybrid", names, got)
		}
	}
}
