// Package peercredtest helps tests exercise real peer credentials: sockets in
// directories other users can reach, abstract socket names, and clients run
// under another uid, either an external tool or the test binary itself.
//
// Running a client as another user needs root (CAP_SETUID); the helpers skip
// the test otherwise.
package peercredtest

import (
	"crypto/rand"
	"encoding/hex"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
)

// Nobody is the uid and gid of nobody/nogroup on Debian, the unprivileged
// identity tests connect as.
const Nobody = 65534

// helperEnv names the helper a re-executed test binary runs instead of tests.
const helperEnv = "TLSEDGE_PEERCREDTEST_HELPER"

// Dir returns a fresh directory, removed after the test, that every user can
// enter (mode 0755), for sockets other uids must reach. It is made directly
// under the system temp dir rather than with t.TempDir, whose per-test parent
// is mode 0700 and whose long name can push a socket path past the 108-byte
// sun_path limit.
func Dir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "tlsedge-")
	if err != nil {
		t.Fatalf("peercredtest: temp dir: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatalf("peercredtest: chmod %s: %v", dir, err)
	}
	return dir
}

// AbstractName returns a random Linux abstract socket name, "@tlsedge-test-"
// followed by hex, in the '@' form the net package understands. Abstract
// sockets have no file permissions, so any uid can connect.
func AbstractName(t testing.TB) string {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skip("abstract UNIX sockets are Linux-only")
	}
	b := make([]byte, 8)
	rand.Read(b)
	return "@tlsedge-test-" + hex.EncodeToString(b)
}

// RequireRoot skips t unless it runs as root, which switching uid needs.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to run a client under another uid")
	}
}

// SelfCommand returns a command that runs the current test binary as uid and
// gid, in helper mode: Main will call helpers[helper] with args instead of
// running tests. The binary is first linked (or, across filesystems,
// copied) into a Dir, because the go test build directory is private to root.
func SelfCommand(t testing.TB, uid, gid uint32, helper string, args ...string) *exec.Cmd {
	t.Helper()
	RequireRoot(t)
	self, err := os.Executable()
	if err != nil {
		t.Fatalf("peercredtest: finding test binary: %v", err)
	}
	dst := filepath.Join(Dir(t), filepath.Base(self))
	err = os.Link(self, dst)
	if err != nil {
		err = copyFile(dst, self)
	}
	if err != nil {
		t.Fatalf("peercredtest: copying test binary: %v", err)
	}
	cmd := Command(t, uid, gid, dst, args...)
	cmd.Env = append(os.Environ(), helperEnv+"="+helper)
	return cmd
}

// Main is a TestMain body: in a binary started by SelfCommand it runs the
// named helper and exits with its status; otherwise it runs the tests.
func Main(m *testing.M, helpers map[string]func(args []string) int) {
	if name := os.Getenv(helperEnv); name != "" {
		h, ok := helpers[name]
		if !ok {
			os.Stderr.WriteString("peercredtest: unknown helper " + name + "\n")
			os.Exit(2)
		}
		os.Exit(h(os.Args[1:]))
	}
	os.Exit(m.Run())
}

func copyFile(dst, src string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_EXCL, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
