package policy_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"tlsedge/conninfo"
	"tlsedge/internal/testenv"
	"tlsedge/peercred"
	"tlsedge/peercred/peercredtest"
	"tlsedge/policy"
)

func TestMain(m *testing.M) {
	peercredtest.Main(m, map[string]func([]string) int{
		// read connects to args[0], prints what the server sends until it
		// closes, and exits 0 either way: an empty output is the signal of
		// a connection closed at accept.
		"read": func(args []string) int {
			c, err := net.Dial("unix", args[0])
			if err != nil {
				os.Stderr.WriteString(err.Error() + "\n")
				return 1
			}
			defer c.Close()
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			b, _ := io.ReadAll(c)
			os.Stdout.Write(b)
			return 0
		},
	})
}

// serveAccept is the accept-time half of what the server does: read peer
// credentials, resolve names, apply the policy, and close a denied
// connection before reading anything. An admitted peer is told who it is.
func serveAccept(t *testing.T, ln net.Listener, pol *policy.PeerPolicy, res *peercred.Resolver, log *slog.Logger) {
	t.Helper()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			creds, err := peercred.Get(c)
			if err != nil {
				log.Warn("peer credentials", "err", err)
				creds = nil
			}
			res.Resolve(creds)
			if err := pol.Allow(creds); err != nil {
				log.Info("closing at accept", "err", err)
				c.Close()
				continue
			}
			io.WriteString(c, "hello "+creds.String()+"\n")
			c.Close()
		}
	}()
}

func TestAcceptTimePolicy(t *testing.T) {
	peercredtest.RequireRoot(t)
	log := slog.New(slog.NewTextHandler(testWriter{t}, nil))
	res := peercred.NewResolver(peercred.ResolverConfig{Logger: log})
	tests := []struct {
		name string
		opts policy.PeerOptions
		want string // prefix of the output; "" means closed at accept
	}{
		{"uid listed", policy.PeerOptions{Peercreds: true, PeercredsAllowUID: []string{"65534"}}, "hello pid="},
		{"user listed", policy.PeerOptions{Peercreds: true, PeercredsAllowUser: []string{"nobody"}}, "hello pid="},
		{"uid not listed", policy.PeerOptions{Peercreds: true, PeercredsAllowUID: []string{"0", "1000"}}, ""},
		{"group not listed", policy.PeerOptions{Peercreds: true, PeercredsAllowGroup: []string{"root"}}, ""},
	}
	for _, tt := range tests {
		for _, kind := range []string{"path", "abstract"} {
			t.Run(tt.name+"/"+kind, func(t *testing.T) {
				addr := peercredtest.AbstractName(t)
				if kind == "path" {
					addr = filepath.Join(peercredtest.Dir(t), "a.sock")
				}
				ln, err := net.Listen("unix", addr)
				if err != nil {
					t.Fatal(err)
				}
				defer ln.Close()
				if kind == "path" {
					os.Chmod(addr, 0o666)
				}
				pol, err := policy.NewPeerPolicy(tt.opts, policy.PeerPolicyConfig{Resolver: res, Logger: log})
				if err != nil {
					t.Fatal(err)
				}
				serveAccept(t, ln, pol, res, log)

				cmd := peercredtest.SelfCommand(t, peercredtest.Nobody, peercredtest.Nobody, "read", addr)
				var stderr strings.Builder
				cmd.Stderr = &stderr
				out, err := cmd.Output()
				if err != nil {
					t.Fatalf("client: %v: %s", err, stderr.String())
				}
				got := string(out)
				if tt.want == "" {
					if got != "" {
						t.Fatalf("denied peer read %q, want a connection closed at accept", got)
					}
					return
				}
				if !strings.HasPrefix(got, tt.want) || !strings.Contains(got, "uid=65534(nobody) gid=65534(nogroup)") {
					t.Fatalf("admitted peer read %q", got)
				}
				if !strings.Contains(got, "pid="+strconv.Itoa(cmd.Process.Pid)+" ") {
					t.Errorf("pid in %q is not the client's %d", got, cmd.Process.Pid)
				}
			})
		}
	}
}

// newHTTPServer serves h over a fresh UNIX socket the way the server wires
// peer credentials: ConnContext reads and resolves them once per connection
// and stores them in the conninfo.Info every request sees.
func newHTTPServer(t *testing.T, h http.Handler, res *peercred.Resolver) string {
	t.Helper()
	sock := filepath.Join(peercredtest.Dir(t), "h.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(sock, 0o666); err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			creds, err := peercred.Get(c)
			if err != nil {
				creds = nil
			}
			res.Resolve(creds)
			return conninfo.NewContext(ctx, &conninfo.Info{
				Transport: "unix", LocalAddr: c.LocalAddr(), RemoteAddr: c.RemoteAddr(), Peer: creds,
			})
		},
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return sock
}

// echoIdentity stands in for the reverse proxy: it replaces whatever
// identity headers the client sent with the peer's, then reports every
// request header whose name mentions "remote".
func echoIdentity(w http.ResponseWriter, r *http.Request) {
	info, _ := conninfo.FromContext(r.Context())
	h := r.Header.Clone()
	peercred.SetHeaders(h, info.Peer)
	w.Header().Set("Content-Type", "text/plain")
	for k, vs := range h {
		if strings.Contains(strings.ToLower(k), "remote") {
			for _, v := range vs {
				io.WriteString(w, k+": "+v+"\n")
			}
		}
	}
}

func TestMountMiddlewareOverHTTP(t *testing.T) {
	curl := testenv.RequireTool(t, "curl", "curl")
	setpriv := testenv.RequireTool(t, "setpriv", "util-linux")
	peercredtest.RequireRoot(t)

	res := peercred.NewResolver(peercred.ResolverConfig{})
	pol, err := policy.NewPeerPolicy(policy.PeerOptions{
		Peercreds: true, PeercredsResolve: true,
		PeercredsMountAllow: []string{"/admin=uid:0", "/nobody=user:nobody"},
	}, policy.PeerPolicyConfig{Resolver: res, Logger: slog.New(slog.NewTextHandler(testWriter{t}, nil))})
	if err != nil {
		t.Fatal(err)
	}
	// As the server mounts it: the edge-owned headers go first, in front of
	// every handler, then the per-path rules.
	sock := newHTTPServer(t, policy.EdgeHeaders(pol.Middleware(http.HandlerFunc(echoIdentity)), nil), res)

	forged := []string{"-H", "X-Remote-User: root", "-H", "X_Remote_User: root", "-H", "Remote-User: root",
		"-H", "X-Remote-Uid: 0", "-H", "x_remote_gid: 0", "-H", "X-Remote-Group: root", "-H", "X-Remote-Pid: 1"}
	tests := []struct {
		name     string
		asNobody bool
		path     string
		status   string
		body     []string // lines that must appear
		absent   []string // substrings that must not
	}{
		{"nobody on open path", true, "/public", "200",
			[]string{"X-Remote-Uid: 65534", "X-Remote-Gid: 65534", "X-Remote-User: nobody", "Remote-User: nobody", "X-Remote-Group: nogroup"},
			[]string{"root", ": 0\n", "X_Remote_User", "X_remote_gid", "X-Remote-Pid: 1\n"}},
		{"nobody on own mount", true, "/nobody/x", "200", []string{"X-Remote-User: nobody"}, []string{"root"}},
		{"nobody on admin", true, "/admin/users", "403", []string{"403 Forbidden: peer not allowed"}, []string{"X-Remote"}},
		{"nobody on admin via dot segments", true, "/public/%2e%2e/admin", "403", []string{"403 Forbidden: peer not allowed"}, nil},
		{"root on admin", false, "/admin/users", "200", []string{"X-Remote-Uid: 0", "X-Remote-User: root"}, []string{"nobody"}},
		{"root on nobody mount", false, "/nobody", "403", []string{"403 Forbidden: peer not allowed"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"-sS", "--path-as-is", "-o", "-", "-w", "\n%{http_code}", "--unix-socket", sock}, forged...)
			args = append(args, "http://localhost"+tt.path)
			var cmd *exec.Cmd
			if tt.asNobody {
				cmd = exec.Command(setpriv, append([]string{"--reuid=65534", "--regid=65534", "--clear-groups", curl}, args...)...)
			} else {
				cmd = exec.Command(curl, args...)
			}
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("curl: %v\n%s", err, out)
			}
			body, status, _ := cutLast(string(out), "\n")
			if status != tt.status {
				t.Fatalf("status %s, want %s; body:\n%s", status, tt.status, body)
			}
			for _, s := range tt.body {
				if !strings.Contains(body, s+"\n") {
					t.Errorf("body lacks %q:\n%s", s, body)
				}
			}
			for _, s := range tt.absent {
				if strings.Contains(body+"\n", s) {
					t.Errorf("body has %q:\n%s", s, body)
				}
			}
		})
	}
}

// TestPeerMiddlewareNoCreds checks the fail-closed path: a request whose
// context carries no peer (TCP, or credentials unreadable) is refused.
func TestPeerMiddlewareNoCreds(t *testing.T) {
	pol, err := policy.NewPeerPolicy(policy.PeerOptions{Peercreds: true, PeercredsAllowUID: []string{"0"}}, policy.PeerPolicyConfig{})
	if err != nil {
		t.Fatal(err)
	}
	h := policy.PeerMiddleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "secret") }), pol)
	sock := newHTTPServer(t, h, peercred.NewResolver(peercred.ResolverConfig{}))
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}

	// Root over the socket passes: credentials were read in ConnContext.
	resp, err := client.Get("http://x/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("root over unix: status %d, want 200", resp.StatusCode)
	}

	// Without ConnInfo in the context, as on a TCP listener.
	rec := &recorder{header: http.Header{}}
	req, _ := http.NewRequest("GET", "http://x/", nil)
	h.ServeHTTP(rec, req)
	if rec.status != http.StatusForbidden || rec.header.Get("Content-Type") != "text/plain; charset=utf-8" {
		t.Errorf("no-creds request: status %d, content type %q", rec.status, rec.header.Get("Content-Type"))
	}
	if !errors.Is(pol.Allow(nil), policy.ErrPeerDenied) {
		t.Error("Allow(nil) must deny")
	}
}

type recorder struct {
	header http.Header
	status int
	body   strings.Builder
}

func (r *recorder) Header() http.Header         { return r.header }
func (r *recorder) WriteHeader(s int)           { r.status = s }
func (r *recorder) Write(b []byte) (int, error) { return r.body.Write(b) }

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}

func cutLast(s, sep string) (before, after string, found bool) {
	i := strings.LastIndex(s, sep)
	if i < 0 {
		return s, "", false
	}
	return s[:i], s[i+len(sep):], true
}
