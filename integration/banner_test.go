package integration

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"tlsedge/internal/testenv"
)

// The start-up banner tells a person how to reach the server: with
// certificate files from a private CA, the curl line trusts that CA; under
// socket activation it names the socket actually inherited, not the one
// configured.
func TestBannerCurlLine(t *testing.T) {
	t.Run("private CA", func(t *testing.T) {
		ca := testenv.NewCA(t, "banner")
		leaf := ca.Leaf(t, "127.0.0.1")
		p := start(t, "--socket-port", "0", "--ssl-module", "builtin", "--ssl-certificate", leaf.CertFile,
			"--ssl-private-key", leaf.KeyFile, "--ssl-trusted-certificate", ca.File())
		if !strings.Contains(p.stdout.String(), "curl --cacert "+ca.File()+" https://") {
			t.Fatalf("banner lacks --cacert for the private CA:\n%s", p.stdout)
		}
	})
	t.Run("socket activation", func(t *testing.T) {
		dir := t.TempDir()
		actual := filepath.Join(dir, "actual.sock")
		l, err := net.Listen("unix", actual)
		if err != nil {
			t.Fatal(err)
		}
		f, err := l.(*net.UnixListener).File()
		if err != nil {
			t.Fatal(err)
		}
		l.(*net.UnixListener).SetUnlinkOnClose(false)
		l.Close()
		cmd := exec.Command("sh", "-c", `LISTEN_PID=$$ LISTEN_FDS=1 LISTEN_FDNAMES=main exec "$0" "$@"`,
			binary, "--data-dir", t.TempDir(), "--ssl-module", "none", "--mount", "/=text:activated",
			"--socket-file", filepath.Join(dir, "configured.sock"))
		cmd.ExtraFiles = []*os.File{f}
		var out, errb syncBuffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() }()
		f.Close()
		deadline := time.Now().Add(20 * time.Second)
		for !strings.Contains(out.String(), "try:") && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if s := out.String(); !strings.Contains(s, "--unix-socket "+actual) || strings.Contains(s, "configured.sock") {
			t.Fatalf("banner:\n%s\nstderr:\n%s", s, errb.String())
		}
	})
}
