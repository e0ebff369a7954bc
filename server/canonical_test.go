package server

import (
	"io"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"tlsedge/apps"
	"tlsedge/internal/testenv"
	"tlsedge/peercred/peercredtest"
	"tlsedge/router"
)

// recorder is an upstream on loopback that records the request-target of
// every request it gets and answers with its name.
type recorder struct {
	name    string
	mu      sync.Mutex
	targets []string
}

func startRecorder(t *testing.T, name string) (*recorder, string) {
	t.Helper()
	rec := &recorder{name: name}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec.mu.Lock()
		rec.targets = append(rec.targets, r.RequestURI)
		rec.mu.Unlock()
		io.WriteString(w, rec.name+" "+r.RequestURI)
	}), ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return rec, "http://" + ln.Addr().String()
}

func (r *recorder) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	t := r.targets
	r.targets = nil
	return t
}

// The per-path peer rule and the mount table judge one path: a client
// running as nobody, denied /admin, cannot reach the /admin upstream with
// dot segments, raw or encoded; they are resolved before routing, and the
// request goes where its canonical path says. curl sends the targets as
// written (--path-as-is) over a UNIX socket with real peer credentials.
func TestPeerMountRuleHoldsOnCanonicalPath(t *testing.T) {
	peercredtest.RequireRoot(t)
	curl := testenv.RequireTool(t, "curl", "curl")
	admin, adminURL := startRecorder(t, "admin")
	public, publicURL := startRecorder(t, "public")
	c := NewConfig()
	c.SocketFile = filepath.Join(peercredtest.Dir(t), "c.sock")
	c.SocketFileMode = 0o666
	c.TLS.SSLModule = "none"
	c.DataDir = t.TempDir()
	c.Peer.Peercreds = true
	c.Peer.PeercredsMountAllow = []string{"/admin=uid:0"}
	c.Mount = router.MustMounts("/admin="+adminURL, "/="+publicURL)
	c.Targets = func(target string) (http.Handler, error) { return apps.New(target, apps.Env{}) }
	startServer(t, c)

	tests := []struct {
		uid    uint32
		target string
		code   int
		admin  []string // what the /admin upstream must receive
		public []string // ... and the root one
	}{
		{peercredtest.Nobody, "/admin/secret.txt", 403, nil, nil},
		{0, "/admin/secret.txt", 200, []string{"/secret.txt"}, nil},
		{peercredtest.Nobody, "/admin/../secret.txt", 200, nil, []string{"/secret.txt"}},
		{peercredtest.Nobody, "/admin/%2e%2e/secret.txt", 200, nil, []string{"/secret.txt"}},
		{peercredtest.Nobody, "/admin/%2E./secret.txt", 200, nil, []string{"/secret.txt"}},
		{peercredtest.Nobody, "/public/../admin/secret.txt", 403, nil, nil},
		{peercredtest.Nobody, "/admin/./secret.txt", 403, nil, nil},
		{peercredtest.Nobody, "//admin//secret.txt", 403, nil, nil},
		{peercredtest.Nobody, "/%61dmin/secret.txt", 403, nil, nil},
		{0, "/%61dmin/./x/../secret.txt", 200, []string{"/secret.txt"}, nil},
		{peercredtest.Nobody, "/admin%2f..%2fsecret.txt", 400, nil, nil},
		{peercredtest.Nobody, "/admin/..%5csecret.txt", 400, nil, nil},
		{peercredtest.Nobody, "/../admin/secret.txt", 400, nil, nil},
	}
	for _, tt := range tests {
		args := []string{"--unix-socket", c.SocketFile, "--path-as-is", "-sS", "--max-time", "10", "-o", "-", "-w", "\n%{http_code}", "http://localhost" + tt.target}
		out, err := peercredtest.Command(t, tt.uid, tt.uid, curl, args...).CombinedOutput()
		s := strings.TrimSpace(string(out))
		i := strings.LastIndexByte(s, '\n')
		code, _ := strconv.Atoi(s[i+1:])
		body := s[:max(i, 0)]
		if code != tt.code {
			t.Errorf("uid %d %s: %d %q (%v), want %d", tt.uid, tt.target, code, body, err, tt.code)
		}
		if got := admin.take(); !slices.Equal(got, tt.admin) {
			t.Errorf("uid %d %s: /admin upstream got %q, want %q", tt.uid, tt.target, got, tt.admin)
		}
		if got := public.take(); !slices.Equal(got, tt.public) {
			t.Errorf("uid %d %s: root upstream got %q, want %q", tt.uid, tt.target, got, tt.public)
		}
	}
}
