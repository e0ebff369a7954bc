package cli

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
)

// The daemonizing parent re-executes itself as a child in a new session and
// reads the child's verdict from a pipe on fd 3: "ok" followed by the banner,
// or "error: ..." with the reason. Unlike the seeds' daemonizer, whose parent
// exits 0 even when the child dies, the parent's exit status tells the truth.
const daemonEnv = "TLSEDGE_DAEMON_CHILD"

func isDaemonChild() bool { return os.Getenv(daemonEnv) == "1" }

func daemonize(stderr io.Writer) error {
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("daemonize: finding the executable: %w", err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("daemonize: %w", err)
	}
	devnull, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("daemonize: %w", err)
	}
	defer devnull.Close()
	cmd := exec.Command(exe, os.Args[1:]...)
	cmd.Env = append(os.Environ(), daemonEnv+"=1")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = devnull, devnull, devnull
	cmd.ExtraFiles = []*os.File{w}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		r.Close()
		w.Close()
		return fmt.Errorf("daemonize: starting the server process: %w", err)
	}
	w.Close()
	defer r.Close()
	verdict, _ := io.ReadAll(io.LimitReader(r, 1<<16))
	msg := string(verdict)
	if rest, ok := strings.CutPrefix(msg, "ok\n"); ok {
		fmt.Fprint(stderr, rest)
		fmt.Fprintf(stderr, "tlsedge: serving in the background as process %d\n", cmd.Process.Pid)
		cmd.Process.Release()
		return nil
	}
	waitErr := cmd.Wait()
	if rest, ok := strings.CutPrefix(msg, "error: "); ok {
		return errors.New(strings.TrimSpace(rest))
	}
	return fmt.Errorf("the server process ended before serving: %v", waitErr)
}

// readyReporter sends the child's verdict to a daemonizing parent; outside a
// daemon child it does nothing.
type readyReporter struct {
	once sync.Once
	w    *os.File
}

func newReadyReporter() *readyReporter {
	if !isDaemonChild() {
		return &readyReporter{}
	}
	os.Unsetenv(daemonEnv)
	return &readyReporter{w: os.NewFile(3, "ready")}
}

func (r *readyReporter) ok(banner string) {
	r.send("ok\n" + banner)
}

func (r *readyReporter) fail(err error) {
	if err != nil {
		r.send("error: " + err.Error() + "\n")
	}
}

func (r *readyReporter) send(msg string) {
	r.once.Do(func() {
		if r.w == nil {
			return
		}
		bw := bufio.NewWriter(r.w)
		bw.WriteString(msg)
		bw.Flush()
		r.w.Close()
	})
}
