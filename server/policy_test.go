package server

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"tlsedge/apps"
	"tlsedge/apps/appopt"
	"tlsedge/internal/testenv"
	"tlsedge/peercred/peercredtest"
	"tlsedge/policy"
)

func setRules(t *testing.T, c *Config, rules ...string) {
	t.Helper()
	if err := c.Rule.Policy.SetList(rules); err != nil {
		t.Fatal(err)
	}
}

// policyTLSConfig is a builtin-module server asking for client certificates
// signed by ca, answering every path with 200 "ok".
func policyTLSConfig(t *testing.T, ca *testenv.CA) Config {
	t.Helper()
	leaf := ca.Leaf(t, "localhost", "127.0.0.1")
	c := plainConfig(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	c.TLS.SSLModule = "builtin"
	c.TLS.SSLCertificate, c.TLS.SSLPrivateKey = []string{leaf.CertFile}, []string{leaf.KeyFile}
	if err := c.TLS.SSLClientAuth.UnmarshalText([]byte("verify-if-given")); err != nil {
		t.Fatal(err)
	}
	c.TLS.SSLClientCA = ca.File()
	return c
}

// policyGet sends one request with a fresh connection from src (empty for
// the default) with cert (nil for none), returning the status, or 0 when
// the server closed the connection before answering.
func policyGet(t *testing.T, addr string, ca *testenv.CA, cert *testenv.Issued, src, method, path string) int {
	t.Helper()
	tc := &tls.Config{RootCAs: ca.Pool, ServerName: "localhost"}
	if cert != nil {
		// Sent whatever CAs the server names, as curl would; Certificates
		// would make crypto/tls keep back one no named CA signed.
		tc.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert.TLS, nil }
	}
	d := &net.Dialer{Timeout: 3 * time.Second}
	if src != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(src)}
	}
	conn, err := tls.DialWithDialer(d, "tcp", addr, tc)
	if err != nil {
		return 0
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	// Written by hand so the path goes out as given: //ADMIN, %2fadmin.
	fmt.Fprintf(conn, "%s %s HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", method, path)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

func pkixName(cn string) pkix.Name { return pkix.Name{CommonName: cn} }

// TestPolicyTLSEndToEnd: real TLS clients with and without certificates
// against a server.policy: an mTLS client allowed on /api and denied on
// /admin in every spelling, a SPIFFE wildcard, a source address rule
// (127.0.0.2), a deny decided after the handshake, and the counters; and
// Explain, fed the same facts, agrees with the server on every row.
func TestPolicyTLSEndToEnd(t *testing.T) {
	ca := testenv.NewCA(t, "pol")
	web := ca.Issue(t, &x509.Certificate{
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		URIs: []*url.URL{{Scheme: "spiffe", Host: "prod.example", Path: "/ns/prod/sa/web"}},
	})
	ops := ca.Issue(t, &x509.Certificate{
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		Subject: pkixName("ops-1"),
	})
	rules := []string{
		"deny src:127.0.0.3",
		"allow cert.cn:ops-1 path:/admin",
		"deny path:/admin",
		"allow cert.uri:spiffe://prod.example/ns/*/sa/web path:/api method:GET,POST",
		"allow src:127.0.0.2 path:/public",
		"allow cert.verified:true path:/",
	}
	c := policyTLSConfig(t, ca)
	setRules(t, &c, rules...)
	var logBuf syncBuffer
	al, err := apps.NewAccessLog(appopt.Options{AccessLog: "-", AccessLogFormat: "extended"}, &logBuf)
	if err != nil {
		t.Fatal(err)
	}
	c.Middleware = al.Wrap
	s := startServer(t, c)
	addr := s.BindAddr().String()
	pol := policy.NewPolicy(c.Rule.Policy.Parsed(), nil)

	rows := []struct {
		name         string
		cert         *testenv.Issued
		src          string
		method, path string
		want         int
	}{
		{"spiffe client on /api", web, "", "GET", "/api/items", 200},
		{"spiffe client POST /api", web, "", "POST", "/api", 200},
		{"spiffe client DELETE /api", web, "", "DELETE", "/api", 200}, // falls to the last rule: a verified client on /
		{"spiffe client on /admin", web, "", "GET", "/admin", 403},
		{"spiffe client on //ADMIN", web, "", "GET", "//ADMIN", 403},
		{"spiffe client on /%61dmin", web, "", "GET", "/%61dmin", 403},
		{"spiffe client on /x/../admin", web, "", "GET", "/x/../admin/", 403},
		{"spiffe client on /admin;x", web, "", "GET", "/admin;x", 403},
		{"spiffe client on /%2fadmin", web, "", "GET", "/%2fadmin", 400}, // the core refuses an encoded slash
		{"ops client on /admin", ops, "", "GET", "/admin/users", 200},
		{"no certificate on /api", nil, "", "GET", "/api", 0}, // no rule can admit it: closed after the handshake
		{"no certificate from 127.0.0.2 on /public", nil, "127.0.0.2", "GET", "/public/a", 200},
		{"no certificate from 127.0.0.1 on /public", nil, "", "GET", "/public/a", 0},
		{"127.0.0.3 closed at accept", web, "127.0.0.3", "GET", "/api", 0},
	}
	for _, r := range rows {
		t.Run(r.name, func(t *testing.T) {
			got := policyGet(t, addr, ca, r.cert, r.src, r.method, r.path)
			if got != r.want {
				t.Fatalf("%s %s: status %d, want %d", r.method, r.path, got, r.want)
			}
			f := &policy.Facts{Method: r.method, Path: r.path, Host: addr}
			if r.cert != nil {
				f.Cert, f.Verified = r.cert.Cert, true
			}
			f.Src = addrIP(&net.TCPAddr{IP: net.ParseIP(cmpOr(r.src, "127.0.0.1"))})
			d, _ := pol.Explain(f)
			if explained := map[policy.Action]int{policy.Allow: 200, policy.Deny: 403}[d.Action]; explained != r.want && !(r.want == 0 && d.Action == policy.Deny) && r.want != 400 {
				t.Fatalf("explain says %v, server answered %d", d, got)
			}
		})
	}
	log := logBuf.String()
	for _, w := range []string{`"GET /api/items HTTP/1.1" 200`, " policy=allow/4\n", `"GET /admin HTTP/1.1" 403`, " policy=deny/3\n"} {
		if !strings.Contains(log, w) {
			t.Errorf("access log lacks %q:\n%s", w, log)
		}
	}
	counts := map[int]uint64{}
	for _, cnt := range s.PolicyCounts() {
		counts[cnt.Rule] = cnt.N
	}
	want := map[int]uint64{1: 1, 2: 1, 3: 5, 4: 2, 5: 1, 6: 1, 0: 2}
	for rule, n := range want {
		if counts[rule] != n {
			t.Errorf("rule %d counted %d, want %d (all: %v)", rule, counts[rule], n, counts)
		}
	}
}

// TestPolicyDenyAfterHandshake: a rule on certificate facts alone closes
// the connection right after the handshake, before a request is read.
func TestPolicyDenyAfterHandshake(t *testing.T) {
	ca := testenv.NewCA(t, "hs")
	c := policyTLSConfig(t, ca)
	setRules(t, &c, "deny cert.verified:false", "allow *")
	s := startServer(t, c)
	tc := &tls.Config{RootCAs: ca.Pool, ServerName: "localhost"}
	conn, err := tls.Dial("tcp", s.BindAddr().String(), tc)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetReadDeadline(time.Now().Add(3 * time.Second))
	if n, err := conn.Read(make([]byte, 1)); err == nil || isTimeout(err) {
		t.Fatalf("read %d bytes, err %v: the connection was not closed after the handshake", n, err)
	}
	if got := s.PolicyCounts()[0].N; got != 1 {
		t.Fatalf("rule 1 counted %d, want 1", got)
	}
}

// syncBuffer is a bytes.Buffer safe for the server's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// TestPolicyPeerCredentials: on a UNIX socket, uid 0 is allowed on /admin
// and uid 65534 (a real client process run as nobody) denied, while both
// reach other paths; and a rule on credentials alone closes the connection
// at accept.
func TestPolicyPeerCredentials(t *testing.T) {
	peercredtest.RequireRoot(t)
	curl := testenv.RequireTool(t, "curl", "curl")
	setpriv := testenv.RequireTool(t, "setpriv", "util-linux")
	start := func(t *testing.T, rules ...string) string {
		sock := filepath.Join(peercredtest.Dir(t), "p.sock")
		c := plainConfig(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
		c.SocketFile, c.SocketFileMode, c.Peer.Peercreds = sock, 0o666, true
		setRules(t, &c, rules...)
		startServer(t, c)
		return sock
	}
	asNobody := func(sock, path string) string {
		cmd := exec.Command(setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", curl,
			"-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "5", "--unix-socket", sock, "--path-as-is", "http://x"+path)
		out, _ := cmd.Output()
		return string(out)
	}
	asRoot := func(sock, path string) string {
		out, _ := exec.Command(curl, "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "5", "--unix-socket", sock, "--path-as-is", "http://x"+path).Output()
		return string(out)
	}
	sock := start(t, "allow peer.uid:0 path:/admin", "deny path:/admin", "allow peer.user:nobody", "allow peer.uid:0")
	for _, r := range []struct {
		who, path, want string
	}{
		{"root", "/admin", "200"},
		{"root", "/x", "200"},
		{"nobody", "/admin", "403"},
		{"nobody", "//ADMIN/", "403"},
		{"nobody", "/%61dmin", "403"},
		{"nobody", "/%2fadmin", "400"}, // the core refuses an encoded slash before any rule
		{"nobody", "/x", "200"},
	} {
		got := asRoot(sock, r.path)
		if r.who == "nobody" {
			got = asNobody(sock, r.path)
		}
		if got != r.want {
			t.Errorf("%s %s: %q, want %s", r.who, r.path, got, r.want)
		}
	}
	closed := start(t, "deny peer.uid:65534", "allow *")
	if got := asNobody(closed, "/"); got != "000" {
		t.Errorf("nobody on a socket denying uid 65534: %q, want the connection closed (000)", got)
	}
	if got := asRoot(closed, "/"); got != "200" {
		t.Errorf("root: %q", got)
	}
	// No path is open to uid 65534 here: closed at accept, before a byte.
	nowhere := start(t, "allow peer.uid:0 path:/admin", "deny path:/admin", "allow peer.uid:0")
	if got := asNobody(nowhere, "/x"); got != "000" {
		t.Errorf("nobody, whom no rule can admit: %q, want the connection closed at accept (000)", got)
	}
	if got := asRoot(nowhere, "/x"); got != "200" {
		t.Errorf("root on /x: %q", got)
	}
	exe := start(t, "allow peer.exe:"+curl, "deny *")
	if got := asRoot(exe, "/"); got != "200" {
		t.Errorf("curl by peer.exe: %q", got)
	}
	if _, err := os.Stat("/proc/self/exe"); err == nil {
		resp, err := (&http.Client{Transport: &http.Transport{Dial: func(_, _ string) (net.Conn, error) { return net.Dial("unix", exe) }}}).Get("http://x/")
		if err == nil {
			resp.Body.Close()
			t.Errorf("the test binary was not curl and got %d", resp.StatusCode)
		}
	}
}

// TestPolicyNeedsPeercreds: a rule on peer credentials without peercreds
// is a start-up error naming the option and the rule.
func TestPolicyNeedsPeercreds(t *testing.T) {
	c := plainConfig(t, http.NotFoundHandler())
	setRules(t, &c, "allow path:/", "allow peer.uid:0")
	_, err := New(c)
	if err == nil || !strings.Contains(err.Error(), "policy: rule 2 (allow peer.uid:0) names peer credentials") {
		t.Fatalf("err = %v", err)
	}
}
