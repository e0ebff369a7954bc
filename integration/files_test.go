package integration

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// watchedRun runs the plain tlsedge binary with args while watching its
// resident memory: past maxRSS, or past timeout, it is killed and the test
// fails. The watch is what keeps a regression (reading /dev/zero whole) from
// taking the machine's memory with it. It returns the exit code, the output
// (stdout and stderr) and
// the largest RSS seen.
func watchedRun(t *testing.T, maxRSS int64, timeout time.Duration, args ...string) (int, string, int64) {
	t.Helper()
	cmd := exec.Command(plainBinary, args...)
	var stderr bytes.Buffer // and stdout, where check lists its findings
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	var peak int64
	deadline := time.After(timeout)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-done:
			return cmd.ProcessState.ExitCode(), stderr.String(), max(peak, cmd.ProcessState.SysUsage().(*syscall.Rusage).Maxrss<<10)
		case <-deadline:
			cmd.Process.Kill()
			<-done
			t.Fatalf("tlsedge %v still running after %v\nstderr:\n%s", args, timeout, stderr.String())
		case <-tick.C:
			if rss := vmRSS(cmd.Process.Pid); rss > peak {
				peak = rss
			}
			if peak > maxRSS {
				cmd.Process.Kill()
				<-done
				t.Fatalf("tlsedge %v grew to %d MiB resident, past %d MiB", args, peak>>20, maxRSS>>20)
			}
		}
	}
}

// vmRSS is pid's resident set size in bytes, 0 if it cannot be read.
func vmRSS(pid int) int64 {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// Certificate, key, CA and password files are read only when they are
// regular files, and only up to 4 MiB: /dev/zero once filled memory until
// the machine ran out, a FIFO hung start-up in open, and a huge file was read
// whole. Each is now an error naming the option's file, at once, in little
// memory.
func TestCheckBoundsFileReads(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "cert.fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	huge := filepath.Join(dir, "huge.pem")
	f, err := os.Create(huge)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(1 << 30); err != nil { // sparse: no disk, a GiB to read
		t.Fatal(err)
	}
	f.Close()
	const maxRSS = 256 << 20 // the binary itself stays well under 100 MiB
	for _, tt := range []struct {
		name string
		args []string
		want []string
	}{
		{"/dev/zero certificate", []string{"--ssl-module", "builtin", "--ssl-certificate", "/dev/zero"},
			[]string{"/dev/zero", "not a regular file (a character device)"}},
		{"fifo certificate", []string{"--ssl-module", "builtin", "--ssl-certificate", fifo},
			[]string{fifo, "not a regular file (a named pipe)"}},
		{"huge certificate", []string{"--ssl-module", "builtin", "--ssl-certificate", huge},
			[]string{huge, "larger than 4 MiB"}},
		{"/dev/zero client CA", []string{"--ssl-client-ca", "/dev/zero", "--ssl-client-auth", "require-and-verify"},
			[]string{"/dev/zero", "not a regular file"}},
		{"/dev/zero password file", []string{"--ssl-module", "builtin", "--ssl-certificate", huge, "--ssl-private-key-password-file", "/dev/zero"},
			[]string{"ssl_private_key_password_file", "/dev/zero", "not a regular file"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"check", "--data-dir", t.TempDir()}, tt.args...)
			code, out, peak := watchedRun(t, maxRSS, 20*time.Second, args...)
			t.Logf("exit %d, peak RSS %d MiB", code, peak>>20)
			if code != 1 {
				t.Fatalf("exit %d, want 1\n%s", code, out)
			}
			for _, w := range tt.want {
				if !strings.Contains(out, w) {
					t.Errorf("output %q does not contain %q", out, w)
				}
			}
		})
	}
}

// `tlsedge check` stops on SIGTERM and SIGINT even while a read blocks: here
// the config file is a FIFO nobody writes to, so check waits in open until
// the signal.
func TestCheckStopsOnSignalWhileBlocked(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		t.Run(sig.String(), func(t *testing.T) {
			fifo := filepath.Join(t.TempDir(), "tlsedge.conf")
			if err := syscall.Mkfifo(fifo, 0o600); err != nil {
				t.Fatal(err)
			}
			p := launch(t, binary, nil, "check", "--config", fifo)
			// The signal goes once check is blocked on its configuration:
			// its handler is set up before that (main), and a reader holds
			// the fifo then, so the write end opens without blocking (and
			// stays open, unwritten, so check blocks in its read). A fixed
			// 500ms wait signalled a binary still starting on a loaded
			// machine, which the signal killed.
			w := -1
			for deadline := time.Now().Add(30 * time.Second); w < 0; {
				select {
				case <-p.done:
					t.Fatalf("check exited before any signal: %s", p.stderr)
				case <-time.After(20 * time.Millisecond):
				}
				fd, err := syscall.Open(fifo, syscall.O_WRONLY|syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
				if err == nil {
					w = fd
				} else if time.Now().After(deadline) {
					t.Fatalf("check did not open its configuration in 30s: %v", err)
				}
			}
			defer syscall.Close(w)
			select {
			case <-p.done:
				t.Fatalf("check exited before any signal: %s", p.stderr)
			case <-time.After(100 * time.Millisecond): // blocked, not just slow to fail
			}
			p.cmd.Process.Signal(sig)
			if code := p.wait(5 * time.Second); code != 1 {
				t.Fatalf("exit %d after %v, want 1", code, sig)
			}
			if !strings.Contains(p.stderr.String(), "check interrupted") {
				t.Errorf("stderr %q does not say check was interrupted", p.stderr)
			}
		})
	}
}
