package testenv

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// Halt stops the server the way an operator does (pg_ctl stop, fast
// shutdown: sessions are ended) and keeps its data; Restart starts it again
// on the same port. Tests use the pair to take the database away from
// running nodes.
func (s *PostgresServer) Halt() error {
	stop := exec.Command(filepath.Join(s.binDir, "pg_ctl"), "stop", "-D", filepath.Join(s.Dir, "data"), "-m", "fast", "-w", "-t", "30")
	stop.Dir = s.Dir
	asNobody(stop)
	if out, err := stop.CombinedOutput(); err != nil {
		return fmt.Errorf("pg_ctl stop: %v\n%s", err, out)
	}
	select {
	case <-s.done:
		return nil
	case <-time.After(30 * time.Second):
		return fmt.Errorf("postgres still running 30s after pg_ctl stop")
	}
}

// Restart starts a halted server again, same data, same port, and waits
// until it accepts connections.
func (s *PostgresServer) Restart(ctx context.Context) error {
	logf, err := os.OpenFile(s.logFile, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(filepath.Join(s.binDir, "postgres"), "-D", filepath.Join(s.Dir, "data"), "-p", strconv.Itoa(s.Port),
		"-k", s.Dir, "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "synchronous_commit=off",
		"-c", "full_page_writes=off", "-c", "max_connections=200")
	cmd.Dir = s.Dir
	cmd.Stdout, cmd.Stderr = logf, logf
	asNobody(cmd)
	cmd.SysProcAttr.Pdeathsig = syscall.SIGQUIT
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("postgres: %w", err)
	}
	done := make(chan struct{})
	s.cmd, s.done = cmd, done
	go func() {
		s.waitErr = cmd.Wait()
		logf.Close()
		close(done)
	}()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		ready := exec.CommandContext(ctx, filepath.Join(s.binDir, "pg_isready"), "-q", "-h", "127.0.0.1", "-p", strconv.Itoa(s.Port))
		if ready.Run() == nil {
			return nil
		}
		select {
		case <-done:
			return fmt.Errorf("postgres exited at restart (%v):\n%s", s.waitErr, s.Log())
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return fmt.Errorf("postgres not ready 30s after restart:\n%s", s.Log())
}

// asNobody runs c as nobody when the tests run as root, as StartPostgres
// does.
func asNobody(c *exec.Cmd) {
	c.SysProcAttr = &syscall.SysProcAttr{}
	if os.Geteuid() == 0 {
		c.SysProcAttr.Credential = &syscall.Credential{Uid: nobody, Gid: nobody}
	}
}
