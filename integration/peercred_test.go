package integration

import (
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"tlsedge/internal/testenv"
	"tlsedge/peercred/peercredtest"
)

// curlAs fetches url over the UNIX socket sock as uid (and gid = uid) and
// returns the HTTP status, or 0 when the connection was closed without one.
func curlAs(t *testing.T, uid uint32, sock, url string) (int, string) {
	t.Helper()
	curl := testenv.RequireTool(t, "curl", "curl")
	sockArg := []string{"--unix-socket", sock}
	if name, ok := strings.CutPrefix(sock, "@"); ok {
		sockArg = []string{"--abstract-unix-socket", name}
	}
	args := append(sockArg, "-sS", "--max-time", "10", "-o", "-", "-w", "\n%{http_code}", url)
	cmd := peercredtest.Command(t, uid, uid, curl, args...)
	out, _ := cmd.CombinedOutput()
	s := strings.TrimSpace(string(out))
	i := strings.LastIndexByte(s, '\n')
	code, _ := strconv.Atoi(s[i+1:])
	return code, s[:max(i, 0)]
}

func TestPeercredsAcceptPolicy(t *testing.T) {
	peercredtest.RequireRoot(t)
	for _, kind := range []string{"path", "abstract"} {
		t.Run(kind, func(t *testing.T) {
			// A path socket is opened to everyone by its mode, so the
			// peer policy alone decides; an abstract socket has no mode
			// (setting one is a start-up error) and is open to everyone.
			args := []string{"--socket-file", filepath.Join(peercredtest.Dir(t), "p.sock"), "--socket-file-mode", "0666"}
			sock := args[1]
			if kind == "abstract" {
				sock = peercredtest.AbstractName(t)
				args = []string{"--socket-file", sock}
			}
			p := start(t, append(args, "--ssl-module", "none",
				"--peercreds", "--peercreds-resolve", "--peercreds-allow-uid", "0", "--mount", "/=text:for-root")...)
			if code, body := curlAs(t, 0, sock, "http://localhost/"); code != 200 || body != "for-root" {
				t.Fatalf("root: %d %q", code, body)
			}
			if code, body := curlAs(t, peercredtest.Nobody, sock, "http://localhost/"); code != 0 {
				t.Fatalf("nobody got %d %q; want the connection closed at accept", code, body)
			}
			deadline := time.Now().Add(5 * time.Second)
			for !strings.Contains(p.stderr.String(), "peer refused at accept") && time.Now().Before(deadline) {
				time.Sleep(20 * time.Millisecond)
			}
			if !strings.Contains(p.stderr.String(), `"uid":65534`) && !strings.Contains(p.stderr.String(), "65534") {
				t.Fatalf("refusal not logged with the peer's uid: %s", p.stderr)
			}
		})
	}
}

func TestPeercredsPerMount(t *testing.T) {
	peercredtest.RequireRoot(t)
	sock := filepath.Join(peercredtest.Dir(t), "m.sock")
	start(t, "--socket-file", sock, "--socket-file-mode", "0666", "--ssl-module", "none", "--peercreds",
		"--peercreds-mount-allow", "/admin=uid:0 group:root", "--mount", "/=text:public", "--mount", "/admin=text:secret")
	tests := []struct {
		uid  uint32
		path string
		code int
	}{
		{peercredtest.Nobody, "/", 200},
		{peercredtest.Nobody, "/admin", 403},
		{peercredtest.Nobody, "/admin/x", 403},
		{peercredtest.Nobody, "/public/../admin", 403},
		{0, "/admin", 200},
	}
	for _, tt := range tests {
		code, body := curlAs(t, tt.uid, sock, "http://localhost"+tt.path)
		if code != tt.code {
			t.Errorf("uid %d %s: %d %q, want %d", tt.uid, tt.path, code, body, tt.code)
		}
		if code == 403 && strings.Contains(body, "secret") {
			t.Errorf("403 leaked the body")
		}
	}
}

func TestControlSocket(t *testing.T) {
	peercredtest.RequireRoot(t)
	dir := peercredtest.Dir(t)
	ctlSock, sock := filepath.Join(dir, "ctl.sock"), filepath.Join(dir, "s.sock")
	p := start(t, "--socket-file", sock, "--ssl-module", "none", "--statistics",
		"--control-socket", ctlSock, "--control-allow-uid", strconv.Itoa(peercredtest.Nobody))
	ctl := func(uid uint32, args ...string) (int, string) {
		cmd := peercredtest.Command(t, uid, uid, binary, append([]string{"ctl", "--control-socket", ctlSock}, args...)...)
		out, err := cmd.CombinedOutput()
		if err != nil && cmd.ProcessState == nil {
			t.Fatal(err)
		}
		return cmd.ProcessState.ExitCode(), string(out)
	}
	get(t, unixClient(sock), "http://localhost/")
	if code, out := ctl(peercredtest.Nobody, "stats"); code != 0 || !strings.Contains(out, `"main"`) || !strings.Contains(out, `"requests"`) {
		t.Fatalf("allowed uid: stats exit %d: %s", code, out)
	}
	if code, out := ctl(peercredtest.Nobody, "config"); code != 0 || !strings.Contains(out, `"socket_file"`) {
		t.Fatalf("config exit %d: %s", code, out)
	}
	if code, out := ctl(65533, "stats"); code == 0 {
		t.Fatalf("unlisted uid 65533 was served: %s", out)
	}
	if code, out := ctl(0, "reload"); code != 0 {
		t.Fatalf("reload exit %d: %s", code, out)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(p.stderr.String(), `"msg":"reloaded"`) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if code, out := ctl(peercredtest.Nobody, "stop"); code != 0 {
		t.Fatalf("stop exit %d: %s", code, out)
	}
	if code := p.wait(15 * time.Second); code != 0 {
		t.Fatalf("exit %d after ctl stop", code)
	}
}
