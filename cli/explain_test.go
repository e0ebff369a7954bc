package cli

import (
	"bufio"
	"context"
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
	"syscall"
	"testing"
	"time"

	"tlsedge/internal/testenv"
	"tlsedge/peercred/peercredtest"
	"tlsedge/server"
)

// tlsStatus sends one request on a fresh TLS connection from src (""
// for the default) with cert (nil for none): the status, or 0 when the
// server closed the connection first.
func tlsStatus(addr string, ca *testenv.CA, cert *testenv.Issued, src, method, path string) int {
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
	fmt.Fprintf(conn, "%s %s HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", method, path)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestPolicyExplainAgreesWithServer runs the servers a configuration file
// describes and, for every row of a table of clients (mTLS with a SPIFFE ID
// or a CN, none, other source addresses, uid 0 and uid 65534 on the UNIX
// socket), compares what the server does with what `tlsedge policy explain`
// says from the same file.
func TestPolicyExplainAgreesWithServer(t *testing.T) {
	ca := testenv.NewCA(t, "explain")
	srv := ca.Leaf(t, "localhost", "127.0.0.1")
	client := func(cn string, uri string) *testenv.Issued {
		tmpl := &x509.Certificate{Subject: pkix.Name{CommonName: cn}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
		if uri != "" {
			u, _ := url.Parse(uri)
			tmpl.URIs = []*url.URL{u}
		}
		return ca.Issue(t, tmpl)
	}
	web := client("web-1", "spiffe://prod.example/ns/prod/sa/web")
	ops := client("ops-1", "")
	stranger := testenv.NewCA(t, "stranger").Issue(t, &x509.Certificate{Subject: pkix.Name{CommonName: "ops-1"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)})

	sock := filepath.Join(peercredtest.Dir(t), "local.sock")
	cfg := writeConfig(t, "[global]\n"+
		"server.socket_port = 0\n"+
		"server.mount = [\"/=text:ok\"]\n"+
		"server.ssl_module = \"builtin\"\n"+
		"server.ssl_certificate = [\""+srv.CertFile+"\"]\n"+
		"server.ssl_private_key = [\""+srv.KeyFile+"\"]\n"+
		"server.ssl_client_auth = \"verify-if-given\"\n"+
		"server.ssl_client_ca = \""+ca.File()+"\"\n"+
		"server.policy = [\n"+
		"  \"deny src:127.0.0.3\",\n"+
		"  \"allow cert.cn:ops-1 path:/admin\",\n"+
		"  \"deny path:/admin\",\n"+
		"  \"allow cert.uri:spiffe://prod.example/ns/*/sa/web path:/api method:GET,POST\",\n"+
		"  \"allow src:127.0.0.2 path:/public\",\n"+
		"]\n"+
		"server.local.socket_file = \""+sock+"\"\n"+
		"server.local.socket_file_mode = \"0666\"\n"+
		"server.local.ssl_module = \"none\"\n"+
		"server.local.ssl_certificate = None\nserver.local.ssl_private_key = None\n"+
		"server.local.ssl_client_auth = \"none\"\nserver.local.ssl_client_ca = None\n"+
		"server.local.peercreds = True\n"+
		"server.local.policy = [\"allow peer.uid:0 path:/admin\", \"deny path:/admin\", \"allow peer.user:nobody\", \"allow peer.uid:0\"]\n")
	o, err := Load([]string{"--config", cfg, "--data-dir", t.TempDir()}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	var addr string
	for _, c := range o.Servers() {
		c.DataDir = t.TempDir()
		s, err := server.New(c)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Start(t.Context()); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Stop(context.Background()) })
		if c.Name == "" {
			addr = s.BindAddr().String()
		}
	}

	type row struct {
		name              string
		cert              *testenv.Issued
		src, method, path string
		uid               string // for the local server
	}
	rows := []row{
		{"spiffe /api", web, "", "GET", "/api/x", ""},
		{"spiffe POST /api", web, "", "POST", "/api", ""},
		{"spiffe DELETE /api", web, "", "DELETE", "/api", ""},
		{"spiffe /admin", web, "", "GET", "/admin", ""},
		{"spiffe //ADMIN/", web, "", "GET", "//ADMIN/", ""},
		{"ops /admin", ops, "", "GET", "/admin/x", ""},
		{"stranger's ops-1 /admin", stranger, "", "GET", "/admin", ""},
		{"none /api", nil, "", "GET", "/api", ""},
		{"none 127.0.0.2 /public", nil, "127.0.0.2", "GET", "/public", ""},
		{"none 127.0.0.1 /public", nil, "127.0.0.1", "GET", "/public", ""},
		{"spiffe from 127.0.0.3", web, "127.0.0.3", "GET", "/api", ""},
		{"uid 0 /admin", nil, "", "GET", "/admin", "0"},
		{"uid 0 /x", nil, "", "GET", "/x", "0"},
		{"uid 65534 /admin", nil, "", "GET", "/admin", "65534"},
		{"uid 65534 /ADMIN", nil, "", "GET", "/ADMIN", "65534"},
		{"uid 65534 /x", nil, "", "GET", "/x", "65534"},
	}
	curl := testenv.RequireTool(t, "curl", "curl")
	setpriv := testenv.RequireTool(t, "setpriv", "util-linux")
	for _, r := range rows {
		t.Run(r.name, func(t *testing.T) {
			args := []string{"policy", "explain", "--config", cfg, "--method", r.method, "--path", r.path}
			var status int
			if r.uid != "" {
				peercredtest.RequireRoot(t)
				args = append(args, "--server", "local", "--uid", r.uid)
				cmdArgs := []string{"-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "5", "--unix-socket", sock, "--path-as-is", "-X", r.method, "http://x" + r.path}
				cmd := exec.Command(curl, cmdArgs...)
				if r.uid != "0" {
					cmd = exec.Command(setpriv, append([]string{"--reuid=" + r.uid, "--regid=" + r.uid, "--clear-groups", curl}, cmdArgs...)...)
				}
				out, _ := cmd.Output()
				fmt.Sscan(string(out), &status)
			} else {
				status = tlsStatus(addr, ca, r.cert, r.src, r.method, r.path)
				args = append(args, "--src", cmpOr(r.src, "127.0.0.1"), "--host", "localhost")
				if r.cert != nil {
					args = append(args, "--cert", r.cert.CertFile)
				}
			}
			var out strings.Builder
			if err := run(t.Context(), args, &out, &out); err != nil {
				t.Fatalf("explain: %v\n%s", err, out.String())
			}
			said := strings.SplitN(out.String(), ":", 2)[0]
			did := "deny"
			if status == 200 {
				did = "allow"
			}
			if said != did {
				t.Fatalf("server answered %d, explain says:\n%s", status, out.String())
			}
			if did == "deny" && status != 403 && !strings.Contains(out.String(), "decided at accept") && !strings.Contains(out.String(), "decided at handshake") {
				t.Fatalf("server closed the connection (%d), explain says it decides per request:\n%s", status, out.String())
			}
			t.Logf("%d\n%s", status, out.String())
		})
	}
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// TestCtlExplainLive: the control socket explains against the live
// configuration: the same answer as policy explain on the file, and after
// the file changes and a reload, the new rules' answer.
func TestCtlExplainLive(t *testing.T) {
	dir := peercredtest.Dir(t)
	ctlSock := filepath.Join(dir, "ctl.sock")
	write := func(rules string) string {
		return "[global]\nserver.socket_port = 0\nserver.ssl_module = \"none\"\nserver.mount = [\"/=text:ok\"]\n" +
			"engine.control_socket = \"" + ctlSock + "\"\nserver.policy = " + rules + "\n"
	}
	cfg := filepath.Join(dir, "tlsedge.ini")
	if err := os.WriteFile(cfg, []byte(write(`["deny path:/admin", "allow *"]`)), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"serve", "--config", cfg, "--data-dir", t.TempDir()}, io.Discard, io.Discard)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(ctlSock); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the control socket did not appear")
		}
		time.Sleep(20 * time.Millisecond)
	}
	explain := func(args ...string) string {
		t.Helper()
		var out strings.Builder
		if err := run(t.Context(), args, &out, &out); err != nil {
			t.Fatalf("%q: %v\n%s", args, err, out.String())
		}
		return out.String()
	}
	live := explain("ctl", "--control-socket", ctlSock, "explain", "--path", "/ADMIN", "--src", "127.0.0.1")
	file := explain("policy", "explain", "--config", cfg, "--path", "/ADMIN", "--src", "127.0.0.1")
	if live != file || !strings.HasPrefix(live, `deny: rule 1 "deny path:/admin"`) {
		t.Fatalf("live:\n%s\nfile:\n%s", live, file)
	}
	if err := os.WriteFile(cfg, []byte(write(`["allow src:127.0.0.1", "deny *"]`)), 0o644); err != nil {
		t.Fatal(err)
	}
	explain("ctl", "--control-socket", ctlSock, "reload")
	live = explain("ctl", "--control-socket", ctlSock, "explain", "--path", "/ADMIN", "--src", "127.0.0.1")
	if !strings.HasPrefix(live, `allow: rule 1 "allow src:127.0.0.1"`) {
		t.Fatalf("after reload:\n%s", live)
	}
}

// TestSIGHUPCutsRevokedConnection: after SIGHUP, a live keep-alive
// connection whose client the new policy denies is closed, while the
// process goes on serving others.
func TestSIGHUPCutsRevokedConnection(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "tlsedge.ini")
	pidfile := filepath.Join(dir, "pid")
	write := func(rules string) {
		t.Helper()
		text := "[global]\nserver.socket_host = \"0.0.0.0\"\nserver.socket_port = 0\nserver.ssl_module = \"none\"\n" +
			"server.mount = [\"/=text:ok\"]\nengine.pidfile = \"" + pidfile + "\"\nserver.policy = " + rules + "\n"
		if err := os.WriteFile(cfg, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(`["allow src:127.0.0.1,127.0.0.2"]`)
	ctx, cancel := context.WithCancel(t.Context())
	var logs syncWriter
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"serve", "--config", cfg, "--data-dir", t.TempDir()}, io.Discard, &logs)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	// The port is in the start-up log.
	var port string
	deadline := time.Now().Add(10 * time.Second)
	for port == "" {
		if time.Now().After(deadline) {
			t.Fatalf("no listening line in the log:\n%s", logs.String())
		}
		time.Sleep(20 * time.Millisecond)
		if _, err := os.Stat(pidfile); err != nil {
			continue
		}
		for _, f := range strings.Fields(logs.String()) {
			if v, ok := strings.CutPrefix(f, "listen=0.0.0.0:"); ok {
				port = strings.Trim(v, `"`)
			}
		}
	}
	conn := func(src string) (net.Conn, *bufio.Reader) {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
		nc, err := d.Dial("tcp", "127.0.0.1:"+port)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { nc.Close() })
		br := bufio.NewReader(nc)
		fmt.Fprintf(nc, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		nc.SetReadDeadline(time.Now().Add(5 * time.Second))
		resp, err := http.ReadResponse(br, nil)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("before the reload: %v %v", resp, err)
		}
		io.ReadAll(resp.Body)
		return nc, br
	}
	revoked, rbr := conn("127.0.0.1")
	kept, kbr := conn("127.0.0.2")
	write(`["allow src:127.0.0.2"]`)
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	revoked.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := rbr.ReadByte(); err == nil || isTimeoutErr(err) {
		t.Fatalf("the revoked connection is still open after SIGHUP (%v):\n%s", err, logs.String())
	}
	fmt.Fprintf(kept, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	kept.SetReadDeadline(time.Now().Add(5 * time.Second))
	if resp, err := http.ReadResponse(kbr, nil); err != nil || resp.StatusCode != 200 {
		t.Fatalf("the admitted connection after SIGHUP: %v %v", resp, err)
	}
}

type syncWriter struct {
	mu sync.Mutex
	b  strings.Builder
}

func (w *syncWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *syncWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

func isTimeoutErr(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}
