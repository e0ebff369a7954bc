package integration

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"tlsedge/internal/testenv"
)

// `tlsedge check` fails wherever start-up would, naming the option, and
// writes nothing; when all is well it says what it checked.
func TestCheckFailsWhereStartWould(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	missing := filepath.Join(t.TempDir(), "no", "such", "dir")
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"socket in a missing directory", []string{"--socket-file", filepath.Join(missing, "s.sock"), "--ssl-module", "none"}, "socket_file: directory"},
		{"pidfile in a missing directory", []string{"--pidfile", filepath.Join(missing, "p.pid")}, "pidfile: directory"},
		{"port taken", []string{"--socket-port", strconv.Itoa(taken.Addr().(*net.TCPAddr).Port)}, "the port is held by integration.test (pid " + strconv.Itoa(os.Getpid()) + ")"},
		{"unknown user", []string{"--socket-file", filepath.Join(t.TempDir(), "s.sock"), "--ssl-module", "none", "--peercreds", "--peercreds-allow-user", "no-such-user-tlsedge"}, `no user "no-such-user-tlsedge"`},
		{"unknown group", []string{"--socket-file", filepath.Join(t.TempDir(), "s.sock"), "--ssl-module", "none", "--peercreds", "--peercreds-mount-allow", "/a=group:no-such-group-tlsedge"}, `no group "no-such-group-tlsedge"`},
		{"certificate with no TLS", []string{"--ssl-module", "none", "--ssl-certificate", "/nope"}, "ssl_certificate: ssl_module none serves plain HTTP"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := run(t, append([]string{"check", "--socket-port", "0"}, tt.args...)...)
			if code == 0 || !strings.Contains(stderr+stdout, tt.want) {
				t.Fatalf("exit %d, want an error naming %q\nstdout:\n%s\nstderr:\n%s", code, tt.want, stdout, stderr)
			}
		})
	}

	// Checking the configuration of the tlsedge that serves the port, as an
	// operator does before a reload, finds the port taken by that process:
	// a note naming it, not a failure.
	t.Run("port served by tlsedge", func(t *testing.T) {
		port := strconv.Itoa(freePort(t))
		p := start(t, "--socket-port", port)
		code, stdout, stderr := run(t, "check", "--socket-port", port)
		want := "is served by tlsedge (pid " + strconv.Itoa(p.cmd.Process.Pid) + ")"
		if code != 0 || !strings.Contains(stdout, want) {
			t.Fatalf("exit %d, want success and a note %q\nstdout:\n%s\nstderr:\n%s", code, want, stdout, stderr)
		}
	})
	t.Run("writes nothing", func(t *testing.T) {
		data := t.TempDir()
		code, stdout, stderr := run(t, "check", "--socket-port", "0", "--data-dir", data)
		if code != 0 || !strings.Contains(stdout, "the local CA will be created") {
			t.Fatalf("exit %d\n%s\n%s", code, stdout, stderr)
		}
		if ents, _ := os.ReadDir(data); len(ents) != 0 {
			t.Fatalf("check wrote %d entries into the data directory", len(ents))
		}
	})
	t.Run("summary", func(t *testing.T) {
		ca := testenv.NewCA(t, "check")
		leaf := ca.Leaf(t, "127.0.0.1", "a.example")
		code, stdout, stderr := run(t, "check", "--socket-port", "0", "--ssl-module", "builtin",
			"--ssl-certificate", leaf.CertFile, "--ssl-private-key", leaf.KeyFile)
		if code != 0 || !strings.Contains(stdout, "certificate a.example (file) expires") {
			t.Fatalf("exit %d, want the certificate and its expiry\n%s\n%s", code, stdout, stderr)
		}
	})
}
