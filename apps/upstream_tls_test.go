package apps

import (
	"crypto/tls"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"tlsedge/apps/appopt"
	"tlsedge/config"
	"tlsedge/internal/testenv"
)

// tlsUpstream serves, over TLS with conf on 127.0.0.1, a handler that
// answers with the SNI it was sent and the common name of the client
// certificate, if any. It returns the https:// URL and a function giving
// the server names the upstream saw in its handshakes, failed ones too.
func tlsUpstream(t *testing.T, conf *tls.Config) (string, func() []string) {
	t.Helper()
	var mu sync.Mutex
	var snis []string
	conf.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		mu.Lock()
		snis = append(snis, hello.ServerName)
		mu.Unlock()
		return nil, nil
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", conf)
	if err != nil {
		t.Fatal(err)
	}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cn := "-"
		if len(r.TLS.PeerCertificates) > 0 {
			cn = r.TLS.PeerCertificates[0].Subject.CommonName
		}
		io.WriteString(w, "sni="+r.TLS.ServerName+" client="+cn)
	})
	url := strings.Replace(serveOn(t, ln, h, nil), "http://", "https://", 1)
	return url, func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), snis...)
	}
}

// TestProxyUpstreamTLSOptions drives https:// upstreams through the
// proxy_ssl_* options alone (no Env.UpstreamTLS), as a configuration does.
func TestProxyUpstreamTLSOptions(t *testing.T) {
	ca := testenv.NewCA(t, "private")
	other := testenv.NewCA(t, "other")
	byIP := ca.Leaf(t, "127.0.0.1")
	byName := ca.Leaf(t, "svc.internal")
	client := ca.Leaf(t, "edge-client")
	strangerClient := other.Leaf(t, "stranger")

	plain, _ := tlsUpstream(t, &tls.Config{Certificates: []tls.Certificate{byIP.TLS}})
	mtls, _ := tlsUpstream(t, &tls.Config{
		Certificates: []tls.Certificate{byIP.TLS},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    ca.Pool,
	})
	named, namedSNIs := tlsUpstream(t, &tls.Config{Certificates: []tls.Certificate{byName.TLS}})
	untrusted, _ := tlsUpstream(t, &tls.Config{Certificates: []tls.Certificate{other.Leaf(t, "127.0.0.1").TLS}})

	tests := []struct {
		name     string
		upstream string
		opts     appopt.Options
		want     int
		body     string // the upstream's answer, when 200
	}{
		{"private CA, system roots", plain, appopt.Options{}, 502, ""},
		{"private CA trusted", plain, appopt.Options{ProxySSLTrustedCertificate: ca.File()}, 200, "sni= client=-"},
		{"another CA trusted", plain, appopt.Options{ProxySSLTrustedCertificate: other.File()}, 502, ""},
		{"mTLS without a client certificate", mtls, appopt.Options{ProxySSLTrustedCertificate: ca.File()}, 502, ""},
		{"mTLS with the client certificate", mtls, appopt.Options{
			ProxySSLTrustedCertificate: ca.File(),
			ProxySSLCertificate:        client.CertFile, ProxySSLCertificateKey: client.KeyFile,
		}, 200, "sni= client=edge-client"},
		{"mTLS with a certificate of another CA", mtls, appopt.Options{
			ProxySSLTrustedCertificate: ca.File(),
			ProxySSLCertificate:        strangerClient.CertFile, ProxySSLCertificateKey: strangerClient.KeyFile,
		}, 502, ""},
		{"dialled by IP, certificate for a name", named, appopt.Options{ProxySSLTrustedCertificate: ca.File()}, 502, ""},
		{"proxy_ssl_server_name", named, appopt.Options{ProxySSLTrustedCertificate: ca.File(), ProxySSLServerName: "svc.internal"}, 200, "sni=svc.internal client=-"},
		{"proxy_ssl_server_name not in the certificate", named, appopt.Options{ProxySSLTrustedCertificate: ca.File(), ProxySSLServerName: "other.internal"}, 502, ""},
		{"untrusted upstream", untrusted, appopt.Options{ProxySSLTrustedCertificate: ca.File()}, 502, ""},
		{"untrusted upstream, proxy_ssl_verify off", untrusted, appopt.Options{ProxySSLVerify: appopt.Off}, 200, "sni= client=-"},
		{"wrong name, proxy_ssl_verify off", named, appopt.Options{ProxySSLVerify: appopt.Off, ProxySSLServerName: "other.internal"}, 200, "sni=other.internal client=-"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			log, lb := testLogger(t)
			front := serveTCP(t, mustNew(t, tt.upstream, Env{Options: tt.opts, Logger: log}))
			status, body, _ := do(t, "GET", front+"/", "")
			if status != tt.want {
				t.Fatalf("status %d, want %d: %s\nlog: %s", status, tt.want, body, lb)
			}
			if tt.want == 200 && body != tt.body {
				t.Errorf("upstream answered %q, want %q", body, tt.body)
			}
			warned := strings.Contains(lb.String(), "proxy_ssl_verify is off")
			if warned != !tt.opts.ProxySSLVerify.IsOn() {
				t.Errorf("warning logged: %v, want %v\nlog: %s", warned, !warned, lb)
			}
		})
	}
	// Dialled by address, the proxy sends no SNI (TLS cannot carry an IP
	// address); with proxy_ssl_server_name, the name.
	got := namedSNIs()
	if len(got) != 4 || got[0] != "" || got[1] != "svc.internal" || got[2] != "other.internal" || got[3] != "other.internal" {
		t.Errorf("server names the upstream saw: %q", got)
	}
}

// TestProxyUpstreamTLSPlainHTTP checks that the proxy_ssl_* options leave
// http:// mounts alone: they are per server, and a server may have both.
func TestProxyUpstreamTLSPlainHTTP(t *testing.T) {
	ca := testenv.NewCA(t, "private")
	client := ca.Leaf(t, "c")
	log, lb := testLogger(t)
	opts := appopt.Options{
		ProxySSLTrustedCertificate: ca.File(), ProxySSLCertificate: client.CertFile, ProxySSLCertificateKey: client.KeyFile,
		ProxySSLServerName: "svc.internal", ProxySSLVerify: appopt.Off,
	}
	front := serveTCP(t, mustNew(t, serveTCP(t, echoHeaders()), Env{Options: opts, Logger: log}))
	if status, body, _ := do(t, "GET", front+"/", ""); status != 200 {
		t.Fatalf("status %d: %s", status, body)
	}
	if strings.Contains(lb.String(), "proxy_ssl_verify") {
		t.Errorf("an http:// mount warned about proxy_ssl_verify: %s", lb)
	}
}

// TestUpstreamTLSConfigErrors checks that options that cannot be honoured
// fail at start, naming the option.
func TestUpstreamTLSConfigErrors(t *testing.T) {
	ca := testenv.NewCA(t, "private")
	a, b := ca.Leaf(t, "a"), ca.Leaf(t, "b")
	dir := t.TempDir()
	der := filepath.Join(dir, "ca.der")
	if err := os.WriteFile(der, ca.Cert.Raw, 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		opts appopt.Options
		key  string // the option the error names
		msg  string // and a part of its text
	}{
		{"certificate without key", appopt.Options{ProxySSLCertificate: a.CertFile}, "proxy_ssl_certificate", "without proxy_ssl_certificate_key"},
		{"key without certificate", appopt.Options{ProxySSLCertificateKey: a.KeyFile}, "proxy_ssl_certificate_key", "without proxy_ssl_certificate"},
		{"missing roots", appopt.Options{ProxySSLTrustedCertificate: filepath.Join(dir, "nope.pem")}, "proxy_ssl_trusted_certificate", "no such file"},
		{"DER roots", appopt.Options{ProxySSLTrustedCertificate: der}, "proxy_ssl_trusted_certificate", "holds no PEM certificate"},
		{"roots from a device", appopt.Options{ProxySSLTrustedCertificate: "/dev/zero"}, "proxy_ssl_trusted_certificate", "not a regular file"},
		{"missing key", appopt.Options{ProxySSLCertificate: a.CertFile, ProxySSLCertificateKey: filepath.Join(dir, "nope.key")}, "proxy_ssl_certificate_key", "no such file"},
		{"key of another certificate", appopt.Options{ProxySSLCertificate: a.CertFile, ProxySSLCertificateKey: b.KeyFile}, "proxy_ssl_certificate", "does not match"},
		{"bad server name", appopt.Options{ProxySSLServerName: "svc internal/x"}, "proxy_ssl_server_name", "not a host name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := UpstreamTLSConfig(&tt.opts)
			var ce *config.Error
			if !errors.As(err, &ce) || ce.Key != tt.key || !strings.Contains(err.Error(), tt.msg) || !errors.Is(err, ErrBadOption) {
				t.Fatalf("err = %v, want one naming %s with %q", err, tt.key, tt.msg)
			}
			// New fails the same way for an https:// mount.
			if _, err := New("https://127.0.0.1:1", Env{Options: tt.opts}); !errors.As(err, &ce) || ce.Key != tt.key {
				t.Errorf("New: %v", err)
			}
		})
	}
}

// TestOnSwitchOption checks that proxy_ssl_verify is a switch like any
// other on the command line and in files, and on when left out.
func TestOnSwitchOption(t *testing.T) {
	var o appopt.Options
	if !o.ProxySSLVerify.IsOn() {
		t.Fatal("the zero Options do not verify upstreams")
	}
	var f *config.Field
	for _, x := range config.Fields(&o) {
		if x.Name == "proxy_ssl_verify" {
			f = x
		}
	}
	if f == nil || !f.IsBool() || f.Type() != "bool" {
		t.Fatalf("proxy_ssl_verify is not a switch: %+v", f)
	}
	for _, tc := range []struct {
		set  func() error
		want bool
	}{
		{func() error { return f.Set("false") }, false},
		{f.Reset, true},
		{func() error { return f.SetValue(config.Value{Kind: config.Bool, Text: "false"}) }, false},
		{func() error { return f.Set("true") }, true},
	} {
		if err := tc.set(); err != nil || o.ProxySSLVerify.IsOn() != tc.want || f.String() != map[bool]string{true: "true", false: "false"}[tc.want] {
			t.Fatalf("err %v, on %v, String %q; want %v", err, o.ProxySSLVerify.IsOn(), f.String(), tc.want)
		}
	}
	if err := f.SetValue(config.Value{Kind: config.String, Text: "off"}); err == nil {
		t.Error("a string value was taken for a switch")
	}
}
