package tlsadapter

import (
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestACMEOptionsZeroValueIsValid(t *testing.T) {
	// Every server carries acme_* options, used or not.
	var o ACMEOptions
	if err := o.Validate(); err != nil {
		t.Fatalf("zero ACMEOptions: %v", err)
	}
	def := defaultACMEOptions(t)
	if err := def.Validate(); err != nil {
		t.Fatalf("tag defaults: %v", err)
	}
	d := o.withDefaults()
	if d.CA != def.CA || d.HTTPPort != def.HTTPPort || d.RenewWindow != def.RenewWindow ||
		d.RenewInterval != def.RenewInterval || d.RetryInterval != def.RetryInterval ||
		d.OnDemandRate != def.OnDemandRate || strings.Join(d.Challenges, ",") != strings.Join(def.Challenges, ",") {
		t.Errorf("zero-value defaults %+v disagree with the default tags %+v", d, def)
	}
}

func TestACMEOptionsValidate(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mod    func(*ACMEOptions)
		inUse  bool
		errKey string // "" means valid
	}{
		{"defaults with a domain", func(o *ACMEOptions) { o.Domains = []string{"example.com"} }, true, ""},
		{"in use without names", func(o *ACMEOptions) {}, true, "acme_domains"},
		{"unused without names", func(o *ACMEOptions) {}, false, ""},
		{"wildcard", func(o *ACMEOptions) { o.Domains = []string{"*.example.com"} }, false, "acme_domains"},
		{"url as domain", func(o *ACMEOptions) { o.Domains = []string{"https://example.com"} }, false, "acme_domains"},
		{"plain http CA", func(o *ACMEOptions) { o.CA = "http://ca.example/dir" }, false, "acme_ca"},
		{"staging with private CA", func(o *ACMEOptions) { o.Staging, o.CA = true, "https://ca.example/dir" }, false, "acme_staging"},
		{"staging alone", func(o *ACMEOptions) { o.Staging = true }, false, ""},
		{"missing root file", func(o *ACMEOptions) { o.CARoot = "/nonexistent/root.pem" }, false, "acme_ca_root"},
		{"eab kid only", func(o *ACMEOptions) { o.EABKID = "kid" }, false, "acme_eab_kid"},
		{"eab bad hmac", func(o *ACMEOptions) { o.EABKID, o.EABHMAC = "kid", "not base64!" }, false, "acme_eab_hmac"},
		{"eab ok", func(o *ACMEOptions) { o.EABKID, o.EABHMAC = "kid", "c2VjcmV0LWtleS1ieXRlcw" }, false, ""},
		{"email", func(o *ACMEOptions) { o.Email = "nobody" }, false, "acme_email"},
		{"unknown challenge", func(o *ACMEOptions) { o.Challenges = []string{"dns-01"} }, false, "acme_challenges"},
		{"http port", func(o *ACMEOptions) { o.HTTPPort = 70000 }, false, "acme_http_port"},
		{"tls port", func(o *ACMEOptions) { o.TLSPort = -1 }, false, "acme_tls_port"},
		{"https port", func(o *ACMEOptions) { o.HTTPSPort = 70000 }, false, "acme_https_port"},
		{"https port without http-01", func(o *ACMEOptions) { o.HTTPSPort, o.Challenges = 443, []string{ChallengeTLSALPN01} }, false, "acme_https_port"},
		{"https port 443", func(o *ACMEOptions) { o.HTTPSPort = 443 }, false, ""},
		{"renew window", func(o *ACMEOptions) { o.RenewWindow = 1 }, false, "acme_renew_window"},
		{"on-demand without rules", func(o *ACMEOptions) { o.OnDemand = true }, true, "acme_on_demand"},
		{"on-demand with allow", func(o *ACMEOptions) { o.OnDemand, o.OnDemandAllow = true, []string{"*.example.com"} }, true, ""},
		{"bad regexp", func(o *ACMEOptions) { o.OnDemandAllow = []string{"~("} }, false, "acme_on_demand_allow"},
		{"inner wildcard", func(o *ACMEOptions) { o.OnDemandAllow = []string{"*.*.example.com"} }, false, "acme_on_demand_allow"},
		{"ask not a URL", func(o *ACMEOptions) { o.OnDemandAsk = "ftp://x" }, false, "acme_on_demand_ask"},
		{"negative rate", func(o *ACMEOptions) { o.OnDemandRate = -1 }, false, "acme_on_demand_rate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := defaultACMEOptions(t)
			tc.mod(&o)
			var err error
			if tc.inUse {
				err = o.ValidateInUse()
			} else {
				err = o.Validate()
			}
			switch {
			case tc.errKey == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tc.errKey != "" && err == nil:
				t.Fatalf("no error, want one naming %s", tc.errKey)
			case tc.errKey != "" && !strings.HasPrefix(err.Error(), tc.errKey+":"):
				t.Fatalf("error %q does not start with %s", err, tc.errKey)
			}
		})
	}
}

func TestACMEOptionsValidateReportsEveryProblem(t *testing.T) {
	o := ACMEOptions{CA: "http://x", HTTPPort: -1, OnDemandAllow: []string{"~["}}
	err := o.ValidateInUse()
	for _, key := range []string{"acme_domains", "acme_ca", "acme_http_port", "acme_on_demand_allow"} {
		if err == nil || !strings.Contains(err.Error(), key+":") {
			t.Errorf("error does not name %s: %v", key, err)
		}
	}
}

func TestPercent(t *testing.T) {
	for in, want := range map[string]Percent{"33%": 0.33, " 50 % ": 0.5, "0.25": 0.25, "99.5%": 0.995, "": 0} {
		var p Percent
		if err := p.UnmarshalText([]byte(in)); err != nil || p != want {
			t.Errorf("%q: %v %v, want %v", in, p, err, want)
		}
	}
	var p Percent
	if err := p.UnmarshalText([]byte("a third")); err == nil {
		t.Error("accepted words")
	}
	if s := Percent(0.33).String(); s != "33%" {
		t.Errorf("String = %q", s)
	}
}

func TestAllowRules(t *testing.T) {
	rules, err := compileAllow([]string{"exact.example.com", "*.wild.example.com", `~shop[0-9]+\.example\.org`})
	if err != nil {
		t.Fatal(err)
	}
	p := &onDemandPolicy{rules: rules}
	for name, want := range map[string]bool{
		"exact.example.com":          true,
		"EXACT.example.com":          false, // callers lower-case first
		"x.exact.example.com":        false,
		"a.wild.example.com":         true,
		"a.b.wild.example.com":       false, // a wildcard covers one label
		"x.y.z.wild.example.com":     false,
		".wild.example.com":          false,
		"wild.example.com":           false,
		"evilwild.example.com":       false,
		"shop12.example.org":         true,
		"shop.example.org":           false,
		"shop1.example.org.evil.com": false,
		"x.shop1.example.org":        false,
	} {
		if got := p.allowed(name); got != want {
			t.Errorf("%s: allowed=%v, want %v", name, got, want)
		}
	}
}

func TestIsTLSALPNProbe(t *testing.T) {
	for _, tc := range []struct {
		sni    string
		protos []string
		want   bool
	}{
		{"a.example", []string{"acme-tls/1"}, true},
		{"", []string{"acme-tls/1"}, false},
		{"a.example", []string{"acme-tls/1", "http/1.1"}, false},
		{"a.example", []string{"http/1.1", "acme-tls/1"}, false},
		{"a.example", nil, false},
		{"a.example", []string{"acme-tls/1x"}, false},
	} {
		if got := isTLSALPNProbe(&tls.ClientHelloInfo{ServerName: tc.sni, SupportedProtos: tc.protos}); got != tc.want {
			t.Errorf("%q %q: %v, want %v", tc.sni, tc.protos, got, tc.want)
		}
	}
}

// TestACMERedirectPort: the plain HTTP listener's redirect names the port
// clients reach HTTPS on: the server's own, or acme_https_port behind a
// balancer; 443 is left out of the URL.
func TestACMERedirectPort(t *testing.T) {
	for _, tt := range []struct {
		serverPort, httpsPort int
		want                  string
	}{
		{8443, 0, "https://a.test:8443/x?y=1"},
		{443, 0, "https://a.test/x?y=1"},
		{8443, 443, "https://a.test/x?y=1"},
		{8443, 9443, "https://a.test:9443/x?y=1"},
	} {
		a := &acmeAdapter{opts: ACMEOptions{HTTPSPort: tt.httpsPort}, port: tt.serverPort}
		rec := httptest.NewRecorder()
		a.redirect(rec, httptest.NewRequest("GET", "http://a.test:80/x?y=1", nil))
		if rec.Code != http.StatusPermanentRedirect || rec.Header().Get("Location") != tt.want {
			t.Errorf("socket_port %d, acme_https_port %d: %d %q, want 308 %q", tt.serverPort, tt.httpsPort, rec.Code, rec.Header().Get("Location"), tt.want)
		}
	}
}
