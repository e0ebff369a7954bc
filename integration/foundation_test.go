package integration

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"tlsedge/internal/testenv"
)

// The embedded default: HTTPS from the local CA, and the curl line printed at
// start-up works exactly as printed.
func TestDefaultServesWelcomeAndCurlLineWorks(t *testing.T) {
	curl := testenv.RequireTool(t, "curl", "curl")
	p := start(t, "--socket-port", "0")
	base := p.base("main")
	if !strings.HasPrefix(base, "https://127.0.0.1:") {
		t.Fatalf("base = %q, want https://127.0.0.1:PORT", base)
	}
	var line string
	for l := range strings.SplitSeq(p.stdout.String(), "\n") {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(l), "try:"); ok {
			line = strings.TrimSpace(rest)
		}
	}
	if !strings.HasPrefix(line, "curl --cacert ") || !strings.Contains(line, base) {
		t.Fatalf("printed curl line = %q", line)
	}
	out, err := exec.Command("sh", "-c", strings.Replace(line, "curl", curl+" -sS --fail", 1)).CombinedOutput()
	if err != nil {
		t.Fatalf("the printed curl line failed: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "tlsedge is running") {
		t.Fatalf("welcome page not served: %s", out)
	}
	// The CA is kept: its key is private, and a restart reuses it.
	ca := p.caFile()
	fi, err := os.Stat(filepath.Join(filepath.Dir(ca), "ca-key.pem"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("CA key mode = %v, %v; want 0600", fi.Mode().Perm(), err)
	}
	if code := p.signal(syscall.SIGTERM); code != 0 {
		t.Fatalf("exit code after SIGTERM = %d", code)
	}
	before, _ := os.ReadFile(ca)
	p2 := start(t, "--socket-port", "0", "--data-dir", filepath.Dir(filepath.Dir(ca)))
	after, _ := os.ReadFile(p2.caFile())
	if string(before) != string(after) {
		t.Fatal("restart made a new CA instead of reusing the stored one")
	}
	if code, body := get(t, httpsClient(t, p2.caFile()), p2.base("main")+"/"); code != 200 || !strings.Contains(body, "tlsedge") {
		t.Fatalf("after restart: %d %q", code, body)
	}
}

func TestListenerKinds(t *testing.T) {
	v6 := true
	if l, err := net.Listen("tcp", "[::1]:0"); err != nil {
		v6 = false
	} else {
		l.Close()
	}
	t.Run("ipv4", func(t *testing.T) {
		p := start(t, "--socket-host", "127.0.0.1", "--socket-port", "0", "--mount", "/=text:v4")
		if code, body := get(t, httpsClient(t, p.caFile()), p.base("main")+"/"); code != 200 || body != "v4" {
			t.Fatalf("%d %q", code, body)
		}
	})
	t.Run("ipv6", func(t *testing.T) {
		if !v6 {
			t.Skip("no IPv6 loopback on this machine")
		}
		p := start(t, "--socket-host", "::1", "--socket-port", "0", "--mount", "/=text:v6")
		base := p.base("main")
		if !strings.HasPrefix(base, "https://[::1]:") {
			t.Fatalf("base = %q", base)
		}
		if code, body := get(t, httpsClient(t, p.caFile()), base+"/"); code != 200 || body != "v6" {
			t.Fatalf("%d %q", code, body)
		}
	})
	t.Run("hostname binds every address on one port", func(t *testing.T) {
		p := start(t, "--socket-host", "localhost", "--socket-port", "0", "--mount", "/=text:name")
		addrs := p.listen("main")
		want := 1
		if v6 {
			want = 2
		}
		ips, _ := net.LookupIP("localhost")
		if len(ips) < want {
			want = len(ips)
		}
		if len(addrs) < want {
			t.Fatalf("listening on %v, want %d addresses", addrs, want)
		}
		port := ""
		c := httpsClient(t, p.caFile())
		for _, a := range addrs {
			_, pt, _ := net.SplitHostPort(a)
			if port != "" && pt != port {
				t.Fatalf("addresses on different ports: %v", addrs)
			}
			port = pt
			if code, body := get(t, c, "https://"+a+"/"); code != 200 || body != "name" {
				t.Fatalf("%s: %d %q", a, code, body)
			}
		}
		if code, _ := get(t, c, p.base("main")+"/"); code != 200 {
			t.Fatalf("base %s: %d", p.base("main"), code)
		}
	})
	t.Run("port 0 reports the real port", func(t *testing.T) {
		p := start(t, "--socket-port", "0")
		_, port, _ := net.SplitHostPort(strings.TrimPrefix(p.base("main"), "https://"))
		if n, _ := strconv.Atoi(port); n == 0 {
			t.Fatalf("base = %q", p.base("main"))
		}
	})
	t.Run("unix socket with its mode, removed on stop", func(t *testing.T) {
		for _, mode := range []os.FileMode{0o660, 0o600, 0o666} {
			sock := filepath.Join(t.TempDir(), "edge.sock")
			p := start(t, "--socket-file", sock, "--socket-file-mode", fmt.Sprintf("%04o", mode), "--ssl-module", "none", "--mount", "/=text:unix")
			fi, err := os.Stat(sock)
			if err != nil || fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != mode {
				t.Fatalf("socket %s: %v %v, want a socket with mode %04o", sock, fi.Mode(), err, mode)
			}
			if code, body := get(t, unixClient(sock), "http://localhost/"); code != 200 || body != "unix" {
				t.Fatalf("%d %q", code, body)
			}
			if code := p.signal(syscall.SIGTERM); code != 0 {
				t.Fatalf("exit %d", code)
			}
			if _, err := os.Stat(sock); !os.IsNotExist(err) {
				t.Fatalf("socket file left behind after stop: %v", err)
			}
		}
	})
	t.Run("abstract socket", func(t *testing.T) {
		name := fmt.Sprintf("@tlsedge-test-%d-%d", os.Getpid(), time.Now().UnixNano())
		p := start(t, "--socket-file", name, "--ssl-module", "none", "--mount", "/=text:abstract")
		if b := p.base("main"); b != name {
			t.Fatalf("base = %q, want %q", b, name)
		}
		if code, body := get(t, unixClient(name), "http://localhost/"); code != 200 || body != "abstract" {
			t.Fatalf("%d %q", code, body)
		}
		// The printed curl line works as printed for abstract names too.
		curl := testenv.RequireTool(t, "curl", "curl")
		var line string
		for l := range strings.SplitSeq(p.stdout.String(), "\n") {
			if rest, ok := strings.CutPrefix(strings.TrimSpace(l), "try:"); ok {
				line = strings.TrimSpace(rest)
			}
		}
		out, err := exec.Command("sh", "-c", strings.Replace(line, "curl", curl+" -sS", 1)).CombinedOutput()
		if err != nil || string(out) != "abstract" {
			t.Fatalf("printed line %q: %v %s", line, err, out)
		}
	})
	t.Run("TLS on a unix socket", func(t *testing.T) {
		sock := filepath.Join(t.TempDir(), "tls.sock")
		p := start(t, "--socket-file", sock, "--mount", "/=text:tls-unix")
		c := httpsClient(t, p.caFile())
		c.Transport.(interface{ CloseIdleConnections() }).CloseIdleConnections()
		uc := unixClient(sock)
		uc.Transport.(*http.Transport).TLSClientConfig = c.Transport.(*http.Transport).TLSClientConfig
		if code, body := get(t, uc, "https://localhost/"); code != 200 || body != "tls-unix" {
			t.Fatalf("%d %q", code, body)
		}
	})
}

func TestStaleSocketReplacedLiveSocketRefused(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "s.sock")
	// A socket file whose listener is gone: replaced.
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	l.SetUnlinkOnClose(false)
	l.Close()
	p := start(t, "--socket-file", sock, "--ssl-module", "none", "--mount", "/=text:fresh")
	if code, body := get(t, unixClient(sock), "http://localhost/"); code != 200 || body != "fresh" {
		t.Fatalf("%d %q", code, body)
	}
	// A socket something listens on: refused, and left alone.
	code, _, stderr := run(t, "--socket-file", sock, "--ssl-module", "none", "--data-dir", t.TempDir())
	if code != 1 || !strings.Contains(stderr, sock) || !strings.Contains(stderr, "already in use") {
		t.Fatalf("second server on a live socket: exit %d, %q", code, stderr)
	}
	if code, _ := get(t, unixClient(sock), "http://localhost/"); code != 200 {
		t.Fatal("the first server's socket was disturbed")
	}
	// A regular file at the path: never removed.
	plain := filepath.Join(dir, "plain")
	os.WriteFile(plain, []byte("data"), 0o644)
	code, _, stderr = run(t, "--socket-file", plain, "--ssl-module", "none", "--data-dir", t.TempDir())
	if code != 1 || !strings.Contains(stderr, "not a socket") {
		t.Fatalf("exit %d, %q", code, stderr)
	}
	if b, _ := os.ReadFile(plain); string(b) != "data" {
		t.Fatal("a regular file was removed or changed")
	}
	_ = p
}

func TestConfigFileAndFlagPrecedence(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "extra.sock")
	conf := filepath.Join(dir, "tlsedge.conf")
	os.WriteFile(conf, []byte(`# tlsedge test config
[global]
server.socket_host = "127.0.0.1"
server.socket_port = 0
server.mount = ["/=text:from-file", "/file=text:file-only"]
server.max_request_body_size = "1MiB"
server.socket_timeout = 7
engine.log_level = "debug"

server.local.socket_file = "`+sock+`"
server.local.ssl_module = "none"
server.local.mount = ["/=text:extra"]
`), 0o644)
	p := start(t, "--config", conf, "--mount", "/=text:from-flag")
	c := httpsClient(t, p.caFile())
	// The flag replaces the file's list for the main server.
	if code, body := get(t, c, p.base("main")+"/"); code != 200 || body != "from-flag" {
		t.Fatalf("main: %d %q, want the flag's mount", code, body)
	}
	if code, body := get(t, c, p.base("main")+"/file"); code != 200 || body != "from-flag" {
		t.Fatalf("the file's other mount survived the flag: %d %q", code, body)
	}
	// The extra server from the file runs too, on its UNIX socket.
	if b := p.base("local"); b != sock {
		t.Fatalf("extra base = %q", b)
	}
	if code, body := get(t, unixClient(sock), "http://localhost/"); code != 200 || body != "extra" {
		t.Fatalf("extra: %d %q", code, body)
	}
	// engine.log_level from the file took effect.
	if !strings.Contains(p.stderr.String(), `"level":"DEBUG"`) && !strings.Contains(p.stderr.String(), `"level":"INFO"`) {
		t.Fatalf("no logs: %s", p.stderr)
	}
}

// Every bad configuration is refused by both `tlsedge check` and `tlsedge`,
// with exit status 1 and a message naming where and what.
func TestBadConfigErrors(t *testing.T) {
	dir := t.TempDir()
	file := func(body string) string {
		f, err := os.CreateTemp(dir, "*.conf")
		if err != nil {
			t.Fatal(err)
		}
		f.WriteString(body)
		f.Close()
		return f.Name()
	}
	tests := []struct {
		name string
		args []string
		want []string // substrings of stderr
	}{
		{"missing file", []string{"--config", filepath.Join(dir, "nope.conf")}, []string{"nope.conf", "no such file", "--config"}},
		{"unknown key with suggestion", []string{"--config", file("[global]\nserver.socket_prot = 1\n")}, []string{".conf:2", "server.socket_prot", "did you mean server.socket_port"}},
		{"unknown extra key", []string{"--config", file("[global]\n\nserver.api.thread_poool = 3\n")}, []string{".conf:3", "server.api.thread_poool", "did you mean server.api.thread_pool"}},
		{"unquoted string", []string{"--config", file("[global]\nserver.ssl_module = builtin\n")}, []string{".conf:2", "server.ssl_module", `strings need quotes: "builtin"`}},
		{"bad number", []string{"--config", file("[global]\nserver.socket_port = \"http\"\n")}, []string{".conf:2", "server.socket_port", "not a whole number"}},
		{"bad size", []string{"--config", file("[global]\nserver.max_request_body_size = \"lots\"\n")}, []string{"max_request_body_size", "not a size", "100MiB"}},
		{"bad duration", []string{"--config", file("[global]\nserver.socket_timeout = \"soon\"\n")}, []string{"socket_timeout", "not a duration", "1.5s"}},
		{"bad switch", []string{"--config", file("[global]\nserver.nodelay = 1\n")}, []string{"server.nodelay", "True or False"}},
		{"unknown engine key", []string{"--config", file("[global]\nengine.pidfil = \"/x\"\n")}, []string{"engine.pidfil", "did you mean engine.pidfile"}},
		{"unknown section", []string{"--config", file("[app]\nx = 1\n")}, []string{".conf:1", "unknown section [app]"}},
		{"unknown flag", []string{"--socket-prot", "1"}, []string{"unknown flag --socket-prot", "did you mean --socket-port"}},
		{"bad flag value", []string{"--thread-pool", "many"}, []string{"--thread-pool", "not a whole number"}},
		{"empty host", []string{"--socket-host", ""}, []string{"socket_host: empty"}},
		{"port out of range", []string{"--socket-port", "70000"}, []string{"socket_port: 70000 is out of range"}},
		{"thread pool", []string{"--thread-pool", "0"}, []string{"thread_pool: must be >= 1, got 0"}},
		{"pool max below min", []string{"--thread-pool", "10", "--thread-pool-max", "5"}, []string{"thread_pool_max: must be -1 (no limit) or >= thread_pool, got 5"}},
		{"protocol", []string{"--protocol-version", "HTTP/2"}, []string{"protocol_version: must be HTTP/1.0 or HTTP/1.1"}},
		{"unknown ssl module", []string{"--ssl-module", "openssl"}, []string{`ssl_module: unknown module "openssl"`, "internal", "none"}},
		{"peercreds on tcp", []string{"--peercreds"}, []string{"peercreds: needs a UNIX socket"}},
		{"bad mount", []string{"--mount", "blog=text:x"}, []string{"mount", `"blog" must start with "/"`}},
		{"bad mount target", []string{"--mount", "/=nothing:x"}, []string{"mount /=nothing:x", `unknown scheme "nothing"`, "text:BODY"}},
		{"socket mode", []string{"--socket-file", "/tmp/x.sock", "--socket-file-mode", "0999"}, []string{"--socket-file-mode", "not a file mode"}},
		{"mode on abstract socket", []string{"--socket-file", "@tlsedge-bad-mode", "--socket-file-mode", "0600"}, []string{"socket_file_mode: 0600 cannot apply", "abstract socket", "peercreds_allow_uid"}},
		{"owner on abstract socket", []string{"--socket-file", "@tlsedge-bad-owner", "--socket-file-owner", "0"}, []string{"socket_file_owner: cannot apply", "peercreds_allow_uid"}},
		{"reload interval below 1s", []string{"--ssl-reload-interval", "1ns"}, []string{"ssl_reload_interval: 1ns is below the minimum of 1s"}},
		{"ticket rotation below 1s", []string{"--config", file("[global]\nserver.ssl_session_ticket_key_rotation = \"1ns\"\n")}, []string{"ssl_session_ticket_key_rotation: 1ns is below the minimum of 1s"}},
		{"acme renew interval below 1s", []string{"--acme-renew-interval", "1ms"}, []string{"acme_renew_interval: 1ms is shorter than 1s"}},
		{"log format", []string{"--log-format", "xml"}, []string{"log_format", "text or json"}},
		{"extra server inherits and is checked", []string{"--config", file("[global]\nserver.api.socket_port = 99999\n")}, []string{"server.api.socket_port: 99999 is out of range"}},
		{"stray argument", []string{"serve-me"}, []string{`unknown command "serve-me"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, cmd := range [][]string{{"check"}, {}} {
				args := append(append(append([]string{}, cmd...), tt.args...), "--data-dir", t.TempDir(), "--socket-port", "0")
				if tt.name == "port out of range" || tt.name == "extra server inherits and is checked" {
					args = args[:len(args)-2]
				}
				if tt.name == "stray argument" {
					args = tt.args
				}
				code, _, stderr := run(t, args...)
				if code != 1 {
					t.Fatalf("tlsedge %v: exit %d, want 1\n%s", args, code, stderr)
				}
				for _, w := range tt.want {
					if !strings.Contains(stderr, w) {
						t.Errorf("tlsedge %v: stderr %q does not contain %q", args, stderr, w)
					}
				}
				if strings.Contains(stderr, "goroutine ") || strings.Contains(stderr, "panic") {
					t.Fatalf("panic: %s", stderr)
				}
			}
		})
	}
}

func TestCheckAcceptsGoodConfig(t *testing.T) {
	code, stdout, stderr := run(t, "check", "--data-dir", t.TempDir(), "--mount", "/=text:ok")
	if code != 0 || !strings.Contains(stdout, "configuration OK") {
		t.Fatalf("exit %d\n%s\n%s", code, stdout, stderr)
	}
}

func TestAddressInUse(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
	code, _, stderr := run(t, "--socket-port", port, "--data-dir", t.TempDir())
	if code != 1 {
		t.Fatalf("exit %d, want 1", code)
	}
	want := "tlsedge: cannot listen on 127.0.0.1:" + port + ": address already in use"
	if lines := strings.Split(strings.TrimSpace(stderr), "\n"); !strings.HasPrefix(lines[len(lines)-1], want) || strings.Contains(stderr, "goroutine") {
		t.Fatalf("stderr = %q, want one line starting %q", stderr, want)
	}
}

func TestSIGTERMRemovesSocketAndPidfile(t *testing.T) {
	dir := t.TempDir()
	sock, pidfile := filepath.Join(dir, "s.sock"), filepath.Join(dir, "tlsedge.pid")
	p := start(t, "--socket-file", sock, "--ssl-module", "none", "--pidfile", pidfile)
	b, err := os.ReadFile(pidfile)
	if err != nil || strings.TrimSpace(string(b)) != strconv.Itoa(p.cmd.Process.Pid) {
		t.Fatalf("pidfile = %q, %v; want %d", b, err, p.cmd.Process.Pid)
	}
	// SIGHUP reloads and keeps serving.
	p.cmd.Process.Signal(syscall.SIGHUP)
	time.Sleep(200 * time.Millisecond)
	if code, _ := get(t, unixClient(sock), "http://localhost/"); code != 200 {
		t.Fatalf("after SIGHUP: %d", code)
	}
	if code := p.signal(syscall.SIGTERM); code != 0 {
		t.Fatalf("exit %d after SIGTERM, want 0", code)
	}
	for _, f := range []string{sock, pidfile} {
		if _, err := os.Stat(f); !os.IsNotExist(err) {
			t.Errorf("%s still exists after SIGTERM", f)
		}
	}
	if !strings.Contains(p.stderr.String(), "reloaded") {
		t.Errorf("no reload logged: %s", p.stderr)
	}
}

func TestSIGINTStopsGracefully(t *testing.T) {
	p := start(t, "--socket-port", "0")
	if code := p.signal(syscall.SIGINT); code != 0 {
		t.Fatalf("exit %d after SIGINT", code)
	}
}

func TestDaemonize(t *testing.T) {
	t.Run("failing child: parent exits 1 with the child's error", func(t *testing.T) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		port := strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
		code, _, stderr := run(t, "--daemonize", "--socket-port", port, "--data-dir", t.TempDir())
		if code != 1 || !strings.Contains(stderr, "address already in use") {
			t.Fatalf("exit %d, stderr %q", code, stderr)
		}
	})
	t.Run("serving child: parent exits 0 once it serves", func(t *testing.T) {
		dir := t.TempDir()
		pidfile, sock := filepath.Join(dir, "d.pid"), filepath.Join(dir, "d.sock")
		code, _, stderr := run(t, "--daemonize", "--socket-file", sock, "--ssl-module", "none", "--pidfile", pidfile, "--data-dir", dir, "--mount", "/=text:daemon")
		if code != 0 {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		b, err := os.ReadFile(pidfile)
		if err != nil {
			t.Fatalf("pidfile: %v", err)
		}
		pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
		t.Cleanup(func() { syscall.Kill(pid, syscall.SIGKILL) })
		// Serving already: no wait needed once the parent has returned.
		if code, body := get(t, unixClient(sock), "http://localhost/"); code != 200 || body != "daemon" {
			t.Fatalf("%d %q", code, body)
		}
		if sid, _ := unix.Getsid(pid); sid != pid {
			t.Fatalf("daemon is not a session leader: sid %d, pid %d", sid, pid)
		}
		syscall.Kill(pid, syscall.SIGTERM)
		deadline := time.Now().Add(10 * time.Second)
		for syscall.Kill(pid, 0) == nil && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if _, err := os.Stat(pidfile); !os.IsNotExist(err) {
			t.Fatal("pidfile left after the daemon stopped")
		}
	})
}

// Root binds, then runs as nobody: the process's real, effective and saved
// uids and gids all change, and the server still serves.
func TestPrivilegeDrop(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("TLSEDGE_REQUIRE_TOOLS") == "1" {
			t.Fatal("this test needs root (CI runs as root)")
		}
		t.Skip("needs root")
	}
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	p := start(t, "--socket-port", "0", "--user", "nobody", "--data-dir", dir, "--mount", "/=text:unprivileged")
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	var uids, gids, groups string
	for line := range strings.SplitSeq(string(status), "\n") {
		switch {
		case strings.HasPrefix(line, "Uid:"):
			uids = strings.Join(strings.Fields(line)[1:], " ")
		case strings.HasPrefix(line, "Gid:"):
			gids = strings.Join(strings.Fields(line)[1:], " ")
		case strings.HasPrefix(line, "Groups:"):
			groups = strings.Join(strings.Fields(line)[1:], " ")
		}
	}
	if uids != "65534 65534 65534 65534" || gids != "65534 65534 65534 65534" || groups != "65534" {
		t.Fatalf("after --user nobody: Uid %q Gid %q Groups %q", uids, gids, groups)
	}
	if code, body := get(t, httpsClient(t, p.caFile()), p.base("main")+"/"); code != 200 || body != "unprivileged" {
		t.Fatalf("%d %q", code, body)
	}
	// The data directory (where renewed certificates are written) now
	// belongs to the unprivileged user.
	fi, err := os.Stat(filepath.Join(dir, "ca", "ca-key.pem"))
	if err != nil || fi.Sys().(*syscall.Stat_t).Uid != 65534 {
		t.Fatalf("CA key owner after --user nobody: %v %v", fi.Sys(), err)
	}
}

func TestSystemdSocketActivationAndNotify(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f, err := l.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
	notify := filepath.Join(t.TempDir(), "notify.sock")
	nl, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: notify, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer nl.Close()
	// systemd sets LISTEN_PID to the service's pid; a shell that execs
	// tlsedge keeps its pid, so it can do the same.
	cmd := exec.Command("sh", "-c", `LISTEN_PID=$$ LISTEN_FDS=1 LISTEN_FDNAMES=main NOTIFY_SOCKET=`+notify+` exec "$0" "$@"`,
		binary, "--data-dir", t.TempDir(), "--mount", "/=text:activated", "--socket-port", "1")
	cmd.ExtraFiles = []*os.File{f}
	var out, errb syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() }()
	f.Close()
	nl.SetReadDeadline(time.Now().Add(20 * time.Second))
	buf := make([]byte, 256)
	n, err := nl.Read(buf)
	if err != nil || !strings.Contains(string(buf[:n]), "READY=1") || !strings.Contains(string(buf[:n]), "MAINPID="+strconv.Itoa(cmd.Process.Pid)) {
		t.Fatalf("notify: %q, %v\nstderr: %s", buf[:n], err, errb.String())
	}
	ca := ""
	for deadline := time.Now().Add(5 * time.Second); ca == "" && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		for l := range strings.SplitSeq(out.String(), "\n") {
			if rest, ok := strings.CutPrefix(strings.TrimSpace(l), "local CA: "); ok {
				ca = strings.Fields(rest)[0]
			}
		}
	}
	addr := l.Addr().String()
	if code, body := get(t, httpsClient(t, ca), "https://"+addr+"/"); code != 200 || body != "activated" {
		t.Fatalf("%d %q", code, body)
	}
}

func TestVersionAndHelp(t *testing.T) {
	code, out, _ := run(t, "version")
	if code != 0 || !strings.HasPrefix(out, "tlsedge ") || !strings.Contains(out, "go1.") {
		t.Fatalf("version: %d %q", code, out)
	}
	code, out, _ = run(t, "--help")
	if code != 0 {
		t.Fatalf("--help exit %d", code)
	}
	for _, want := range []string{"Usage:", "\nProcess:", "\nListener:", "\nTLS:", "\nPool:", "--socket-port int", "--max-request-body-size size", "(default 100MiB)", "--ssl-certificate list"} {
		if !strings.Contains(out, want) {
			t.Errorf("--help lacks %q", want)
		}
	}
}
