package policy

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"tlsedge/internal/testenv"
)

func TestTLSVersionText(t *testing.T) {
	for in, want := range map[string]TLSVersion{"1.0": TLS10, "1.1": TLS11, "1.2": TLS12, "1.3": TLS13, "TLSv1.2": TLS12, "": 0} {
		var v TLSVersion
		if err := v.UnmarshalText([]byte(in)); err != nil || v != want {
			t.Errorf("%q: %v %v", in, v, err)
		}
		if b, _ := v.MarshalText(); in != "" && !strings.HasPrefix(in, "TLS") && string(b) != in {
			t.Errorf("round trip %q -> %q", in, b)
		}
	}
	var v TLSVersion
	err := v.UnmarshalText([]byte("1.4"))
	if err == nil || err.Error() != `"1.4" is not a TLS version (use 1.0, 1.1, 1.2 or 1.3)` {
		t.Errorf("1.4: %v", err)
	}
	if err := v.UnmarshalText([]byte("SSLv3")); err == nil {
		t.Error("SSLv3 accepted")
	}
}

func TestClientAuthText(t *testing.T) {
	for i, n := range clientAuthNames {
		var c ClientAuth
		if err := c.UnmarshalText([]byte(n)); err != nil || int(c) != i || c.String() != n {
			t.Errorf("%s: %v %v", n, c, err)
		}
	}
	var c ClientAuth
	if err := c.UnmarshalText([]byte("optional")); err == nil || !strings.Contains(err.Error(), "require-and-verify") {
		t.Errorf("bad mode: %v", err)
	}
}

func leafWith(t *testing.T, mod func(*x509.Certificate)) *x509.Certificate {
	ca := testenv.NewCA(t, "id")
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	mod(tmpl)
	return ca.Issue(t, tmpl).Cert
}

func TestAllowList(t *testing.T) {
	spiffe, _ := url.Parse("spiffe://example.org/ns/prod/sa/web")
	leaf := leafWith(t, func(c *x509.Certificate) {
		c.Subject = pkix.Name{CommonName: "alice", OrganizationalUnit: []string{"eng", "ops"}}
		c.DNSNames = []string{"Client.Example"}
		c.URIs = []*url.URL{spiffe}
	})
	sum := sha256.Sum256(leaf.RawSubjectPublicKeyInfo)
	tests := []struct {
		entries []string
		allow   bool
	}{
		{[]string{"cn:alice"}, true},
		{[]string{"cn:Alice"}, false},
		{[]string{"ou:ops"}, true},
		{[]string{"dns:client.example"}, true},
		{[]string{"uri:spiffe://example.org/ns/prod/sa/web"}, true},
		{[]string{"spiffe://example.org/ns/prod/sa/web"}, true},
		{[]string{"spiffe://example.org/ns/prod/sa/db"}, false},
		{[]string{"spki:sha256:" + base64.StdEncoding.EncodeToString(sum[:])}, true},
		{[]string{"spki:" + hex.EncodeToString(sum[:])}, true},
		{[]string{"spki:sha256:" + base64.StdEncoding.EncodeToString(make([]byte, 32))}, false},
		{[]string{"cn:bob", "dns:other"}, false},
		{nil, false}, // an empty list admits no one
	}
	for _, tt := range tests {
		a, err := ParseAllowList(tt.entries)
		if err != nil {
			t.Fatalf("%v: %v", tt.entries, err)
		}
		if _, ok := a.Allows(leaf); ok != tt.allow {
			t.Errorf("%v: allowed=%v", tt.entries, ok)
		}
	}
	if _, err := ParseAllowList([]string{"cn:ok", "email:x", "spki:abc", "justtext"}); err == nil ||
		!strings.Contains(err.Error(), `"email:x"`) || !strings.Contains(err.Error(), `"spki:abc"`) || !strings.Contains(err.Error(), `"justtext"`) {
		t.Errorf("bad entries: %v", err)
	}
}

func TestVerifyConnection(t *testing.T) {
	leaf := leafWith(t, func(c *x509.Certificate) { c.Subject.CommonName = "alice" })
	allow, _ := ParseAllowList([]string{"cn:alice"})
	deny, _ := ParseAllowList(nil)
	if VerifyConnection(ClientAuthRequireAndVerify, nil) != nil {
		t.Error("callback without an allow-list")
	}
	verified := tls.ConnectionState{PeerCertificates: []*x509.Certificate{leaf}, VerifiedChains: [][]*x509.Certificate{{leaf}}}
	if err := VerifyConnection(ClientAuthVerifyIfGiven, allow)(verified); err != nil {
		t.Error(err)
	}
	if err := VerifyConnection(ClientAuthVerifyIfGiven, deny)(verified); err == nil {
		t.Error("empty allow-list admitted a client")
	}
	// Presented but not verified (as on a request-mode server): refused.
	if err := VerifyConnection(ClientAuthVerifyIfGiven, allow)(tls.ConnectionState{PeerCertificates: []*x509.Certificate{leaf}}); err == nil {
		t.Error("unverified certificate admitted")
	}
}

func TestHSTS(t *testing.T) {
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})
	tests := []struct {
		opts HSTSOptions
		tls  bool
		want string
	}{
		{HSTSOptions{MaxAge: 365 * 24 * time.Hour}, true, "max-age=31536000"},
		{HSTSOptions{MaxAge: 365 * 24 * time.Hour}, false, ""},
		{HSTSOptions{MaxAge: 2 * 365 * 24 * time.Hour, IncludeSubDomains: true, Preload: true}, true, "max-age=63072000; includeSubDomains; preload"},
		{HSTSOptions{}, true, ""},
	}
	for _, tt := range tests {
		r := httptest.NewRequest("GET", "https://a.test/", nil)
		if !tt.tls {
			r.TLS = nil
		}
		w := httptest.NewRecorder()
		HSTS(ok, tt.opts).ServeHTTP(w, r)
		if got := w.Header().Get("Strict-Transport-Security"); got != tt.want {
			t.Errorf("%+v tls=%v: %q, want %q", tt.opts, tt.tls, got, tt.want)
		}
	}
	err := HSTSOptions{MaxAge: time.Hour, Preload: true}.Validate()
	if err == nil || !strings.Contains(err.Error(), "ssl_hsts_max_age") || !strings.Contains(err.Error(), "ssl_hsts_include_subdomains") {
		t.Errorf("preload validation: %v", err)
	}
}

func TestSSLVars(t *testing.T) {
	spiffe, _ := url.Parse("spiffe://example.org/w")
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	leaf := leafWith(t, func(c *x509.Certificate) {
		c.Subject = pkix.Name{CommonName: "alice", Organization: []string{"Example"}}
		c.DNSNames = []string{"a.example", "b.example"}
		c.URIs = []*url.URL{spiffe}
		c.NotBefore = now.Add(-300 * 24 * time.Hour)
		c.NotAfter = now.Add(30*24*time.Hour + 5*time.Hour) // 30 whole days left of a 330-day validity
	})
	cs := &tls.ConnectionState{Version: tls.VersionTLS13, CipherSuite: tls.TLS_AES_128_GCM_SHA256, ServerName: "srv.test",
		PeerCertificates: []*x509.Certificate{leaf}, VerifiedChains: [][]*x509.Certificate{{leaf}}}
	got := map[string]string{}
	var order []string
	for _, v := range SSLVars(cs, now) {
		got[v.Name] = v.Value
		order = append(order, v.Name)
	}
	want := map[string]string{
		"HTTPS": "on", "SSL_PROTOCOL": "TLSv1.3", "SSL_CIPHER": "TLS_AES_128_GCM_SHA256", "SSL_TLS_SNI": "srv.test",
		"SSL_CLIENT_VERIFY": "SUCCESS", "SSL_CLIENT_S_DN": "CN=alice,O=Example", "SSL_CLIENT_SAN_DNS_0": "a.example",
		"SSL_CLIENT_SAN_DNS_1": "b.example", "SSL_CLIENT_SAN_URI_0": "spiffe://example.org/w", "SSL_CLIENT_V_REMAIN": "30",
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
	if !strings.HasPrefix(got["SSL_CLIENT_CERT"], "-----BEGIN CERTIFICATE-----") || !strings.Contains(got["SSL_CLIENT_I_DN"], "Test Root") {
		t.Errorf("cert/issuer: %q %q", got["SSL_CLIENT_CERT"][:20], got["SSL_CLIENT_I_DN"])
	}
	if order[0] != "HTTPS" || order[len(order)-1] != "SSL_CLIENT_CERT" {
		t.Errorf("order %v", order)
	}
	cs.CipherSuite, cs.Version = tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, tls.VersionTLS12
	cs.VerifiedChains = nil
	vars := SSLVars(cs, now.Add(40*24*time.Hour))
	for _, v := range vars {
		switch v.Name {
		case "SSL_CIPHER":
			if v.Value != "ECDHE-RSA-AES128-GCM-SHA256" {
				t.Errorf("cipher %q", v.Value)
			}
		case "SSL_CLIENT_VERIFY":
			if v.Value != "GENEROUS" {
				t.Errorf("verify %q", v.Value)
			}
		case "SSL_CLIENT_V_REMAIN":
			if v.Value != "0" {
				t.Errorf("expired remain %q", v.Value)
			}
		}
	}
	if v := SSLVars(nil, now); len(v) != 1 || v[0] != (Var{"HTTPS", "off"}) {
		t.Errorf("plain: %v", v)
	}
}

func TestClientCertificate(t *testing.T) {
	leaf := leafWith(t, func(c *x509.Certificate) { c.Subject.CommonName = "alice" })
	if l, v := ClientCertificate(nil); l != nil || v {
		t.Error("nil state")
	}
	if l, v := ClientCertificate(&tls.ConnectionState{PeerCertificates: []*x509.Certificate{leaf}}); l != leaf || v {
		t.Error("unverified")
	}
	if _, v := ClientCertificate(&tls.ConnectionState{PeerCertificates: []*x509.Certificate{leaf}, VerifiedChains: [][]*x509.Certificate{{leaf}}}); !v {
		t.Error("verified")
	}
}
