package router

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"tlsedge/policy"
)

// FuzzParseMount: a spec either is refused or yields a key that the
// Dispatcher takes, that parses again to itself, and whose host is in the
// form routing compares (so a request naming it in any case reaches it).
func FuzzParseMount(f *testing.F) {
	for _, s := range []string{"/=text:a", "a.test/api=x", "*.B.test./=x", "a.test:1/=x", "[::1]/=x", "*.*.a/=x", "a..b/=x", "/a;b=x", "x=y"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, spec string) {
		key, target, err := ParseMount(spec)
		if err != nil {
			return
		}
		if target == "" {
			t.Fatalf("%q: empty target accepted", spec)
		}
		again, _, err := ParseMount(key + "=x")
		if err != nil || again != key {
			t.Fatalf("%q: key %q parses again as %q, %v", spec, key, again, err)
		}
		d := NewDispatcher()
		if err := d.Mount(key, http.NotFoundHandler()); err != nil {
			t.Fatalf("%q: key %q refused by Mount: %v", spec, key, err)
		}
		host, _, _ := strings.Cut(key, "/")
		if host != strings.ToLower(host) || strings.HasSuffix(host, ".") || strings.Contains(host, ":") {
			t.Fatalf("%q: host %q not in routing form", spec, host)
		}
		if host != "" && !strings.HasPrefix(host, "*") {
			r := httptest.NewRequest("GET", "/", nil)
			r.Host = strings.ToUpper(host) + ".:8443"
			if _, route, ok := d.Lookup(r); ok && !strings.HasPrefix(route, host+"/") {
				t.Fatalf("%q: Host %q routed to %q", spec, r.Host, route)
			}
		}
	})
}

// FuzzHeaderRule: a rule either is refused or never names an identity or
// forwarding header on the request side, and its values expand without a
// control character.
func FuzzHeaderRule(f *testing.F) {
	for _, s := range []string{"/=request set X-A {client_ip}", "*=response add X-B a{{b}", "a.test/=request remove X-C", "/=request set X_SSL_CLIENT_S_DN x", "/=request set X-A {host}\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		h, err := ParseHeaderRules(s)
		if err != nil {
			return
		}
		for _, r := range h.rules {
			if !r.response && (policy.IsIdentityHeader(r.name) || policy.IsForwardingHeader(r.name)) {
				t.Fatalf("%q: request rule on %s accepted", s, r.name)
			}
			req := httptest.NewRequest("GET", "/", nil)
			req.Host = "a.test"
			if v := expand(r.value, req, nil); !plainValue(v) && v != "" {
				t.Fatalf("%q: value %q", s, v)
			}
		}
	})
}
