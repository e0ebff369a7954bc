package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"tlsedge/apps"
	"tlsedge/internal/testenv"
	"tlsedge/router"
)

// echoUpstream answers with the request headers it got, one "Name: value"
// a line, sorted as http.Header.Write writes them, and sets two response
// headers the rules change.
func echoUpstream(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Upstream-Secret", "s3cret")
		w.Header().Set("X-Frame-Options", "SAMEORIGIN")
		r.Header.Write(w)
	}), ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return "http://" + ln.Addr().String()
}

func mustRules(t *testing.T, items ...string) router.HeaderRules {
	t.Helper()
	h, err := router.ParseHeaderRules(items...)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// Header rules end to end over real TLS with a real client certificate: the
// upstream gets the headers set from the connection's facts, the client's
// copies of what a rule sets are replaced, a removed header never arrives,
// the response rules apply to what the client gets, and the rules of one
// host's mount do not touch another's.
func TestHeaderRulesTLS(t *testing.T) {
	up := echoUpstream(t)
	ca := testenv.NewCA(t, "rules")
	srvCert := ca.Leaf(t, "a.test", "b.test", "127.0.0.1")
	alice := ca.Leaf(t, "alice")
	c := plainConfig(t, nil)
	c.Handlers = nil
	c.TLS.SSLModule = "builtin"
	c.TLS.SSLCertificate, c.TLS.SSLPrivateKey = []string{srvCert.CertFile}, []string{srvCert.KeyFile}
	c.TLS.SSLClientCA = ca.File()
	if f, _ := c.Options().Lookup("ssl_client_auth"); f.Set("verify-if-given") != nil {
		t.Fatal("ssl_client_auth")
	}
	c.Mount = router.MustMounts("a.test/="+up, "b.test/="+up)
	c.HeaderRule = mustRules(t,
		"a.test/=request set X-Client {client_ip}",
		"a.test/=request set X-CN {tls_client_cn}",
		"a.test/=request add X-Seen {host} by {tls_sni}, {tls_version}",
		"a.test/=request remove X-Drop",
		"*=response set X-Frame-Options DENY",
		"a.test/=response remove X-Upstream-Secret",
		"a.test/=response add X-Via edge",
	)
	c.Targets = func(target string) (http.Handler, error) { return apps.New(target, apps.Env{}) }
	s := startServer(t, c)
	addr := s.BindAddr().String()
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)

	get := func(host string, cert *tls.Certificate) (*http.Response, string) {
		cfg := &tls.Config{ServerName: host, RootCAs: pool}
		if cert != nil {
			cfg.Certificates = []tls.Certificate{*cert}
		}
		tr := &http.Transport{TLSClientConfig: cfg, DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		}}
		defer tr.CloseIdleConnections()
		req, _ := http.NewRequest("GET", "https://"+host+"/x", nil)
		req.Header.Set("X-Client", "6.6.6.6")
		req.Header.Set("X-CN", "mallory")
		req.Header.Set("X-Drop", "1")
		resp, err := (&http.Client{Transport: tr}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}

	resp, body := get("a.test", &alice.TLS)
	for _, want := range []string{"X-Client: 127.0.0.1\r\n", "X-Cn: alice\r\n", "X-Seen: a.test by a.test, TLSv1.3\r\n"} {
		if !strings.Contains(body, want) {
			t.Errorf("a.test with a certificate: upstream lacks %q in\n%s", want, body)
		}
	}
	for _, bad := range []string{"6.6.6.6", "mallory", "X-Drop"} {
		if strings.Contains(body, bad) {
			t.Errorf("a.test: upstream got %q:\n%s", bad, body)
		}
	}
	if resp.Header.Get("X-Frame-Options") != "DENY" || resp.Header.Get("X-Upstream-Secret") != "" || resp.Header.Get("X-Via") != "edge" {
		t.Errorf("a.test response headers: %v", resp.Header)
	}

	// No client certificate: the fact is absent, so is the header (the
	// client's own copy is replaced by nothing, not passed on).
	_, body = get("a.test", nil)
	if strings.Contains(body, "X-Cn") || !strings.Contains(body, "X-Client: 127.0.0.1\r\n") {
		t.Errorf("a.test without a certificate:\n%s", body)
	}

	// b.test has only the "*" rules.
	resp, body = get("b.test", &alice.TLS)
	if !strings.Contains(body, "X-Client: 6.6.6.6") || !strings.Contains(body, "X-Drop: 1") || strings.Contains(body, "X-Seen") {
		t.Errorf("b.test got a.test's request rules:\n%s", body)
	}
	if resp.Header.Get("X-Frame-Options") != "DENY" || resp.Header.Get("X-Upstream-Secret") != "s3cret" {
		t.Errorf("b.test response headers: %v", resp.Header)
	}
}

// {peer_uid} over a UNIX socket with peer credentials: the uid the kernel
// reported for the client process.
func TestHeaderRulesPeerUID(t *testing.T) {
	up := echoUpstream(t)
	c := plainConfig(t, nil)
	c.Handlers = nil
	c.SocketFile = filepath.Join(t.TempDir(), "r.sock")
	c.Peer.Peercreds = true
	c.Mount = router.MustMounts("/=" + up)
	c.HeaderRule = mustRules(t, "/=request set X-Peer uid={peer_uid} gid={peer_gid}", "/=request set X-Client-Addr {client_ip}")
	c.Targets = func(target string) (http.Handler, error) { return apps.New(target, apps.Env{}) }
	startServer(t, c)
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", c.SocketFile)
	}}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Get("http://localhost/")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	want := "X-Peer: uid=" + strconv.Itoa(os.Getuid()) + " gid=" + strconv.Itoa(os.Getgid()) + "\r\n"
	if !strings.Contains(string(b), want) || strings.Contains(string(b), "X-Client-Addr") {
		t.Fatalf("want %q and no X-Client-Addr (a UNIX peer has no IP) in\n%s", want, b)
	}
}

// Rules that would forge what the edge vouches for, or break framing, are
// refused when the configuration loads, naming the option; a rule for a
// mount that does not exist is refused at start.
func TestHeaderRulesRefused(t *testing.T) {
	for _, rule := range []string{
		"/=request set X-SSL-Client-S-DN CN=admin",
		"/=request add x_ssl_client_verify SUCCESS",
		"/=request set X-Remote-User root",
		"/=request set Remote-User root",
		"/=request set X-Forwarded-For {client_ip}",
		"/=request set Forwarded for=1.2.3.4",
		"/=request remove X-Forwarded-Client-Cert",
		"/=response set Content-Length 5",
		"/=response set Content-Encoding gzip",
		"/=request set Host evil.test",
		"/=request set X-Request-Id abc",
		"/=request set X-A {nope}",
		"/=request set X-A",
		"/=request remove X-A value",
		"/=upstream set X-A b",
		"/=request put X-A b",
		"/=request set X(A) b",
		"nohost=request set X-A b",
	} {
		c := NewConfig()
		f, _ := c.Options().Lookup("header_rule")
		if err := f.Set(rule); err == nil {
			t.Errorf("%q accepted", rule)
		}
	}
	c := plainConfig(t, nil)
	c.Handlers = nil
	c.Mount = router.MustMounts("a.test/=text:a")
	c.HeaderRule = mustRules(t, "b.test/=response set X-A b")
	s, err := New(c)
	if err == nil {
		err = s.Start(t.Context())
		if err == nil {
			s.Stop(t.Context())
		}
	}
	if err == nil || !strings.Contains(err.Error(), "header_rule") || !strings.Contains(err.Error(), "b.test/ names no mount") {
		t.Fatalf("a rule for a mount that does not exist: %v", err)
	}
}

// {tls_client_cn} names only a verified client: with ssl_client_auth =
// request anyone may present any certificate, and its common name is not
// passed on as if it meant something.
func TestHeaderRulesUnverifiedClientCN(t *testing.T) {
	up := echoUpstream(t)
	ca := testenv.NewCA(t, "rules")
	srvCert := ca.Leaf(t, "a.test", "127.0.0.1")
	mallory := testenv.NewCA(t, "other").Leaf(t, "admin")
	c := plainConfig(t, nil)
	c.Handlers = nil
	c.TLS.SSLModule = "builtin"
	c.TLS.SSLCertificate, c.TLS.SSLPrivateKey = []string{srvCert.CertFile}, []string{srvCert.KeyFile}
	if f, _ := c.Options().Lookup("ssl_client_auth"); f.Set("request") != nil {
		t.Fatal("ssl_client_auth")
	}
	c.Mount = router.MustMounts("/=" + up)
	c.HeaderRule = mustRules(t, "/=request set X-CN {tls_client_cn}", "/=request set X-SNI {tls_sni}")
	c.Targets = func(target string) (http.Handler, error) { return apps.New(target, apps.Env{}) }
	s := startServer(t, c)
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	tr := &http.Transport{TLSClientConfig: &tls.Config{ServerName: "a.test", RootCAs: pool, Certificates: []tls.Certificate{mallory.TLS}},
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, s.BindAddr().String())
		}}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Get("https://a.test/")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if strings.Contains(string(b), "X-Cn") || !strings.Contains(string(b), "X-Sni: a.test\r\n") {
		t.Fatalf("an unverified certificate's CN was passed on, or the SNI was not:\n%s", b)
	}
}
