package integration

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"tlsedge/internal/testenv"
)

// procCPU returns the process's user+system CPU time in clock ticks.
func procCPU(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	// Fields after the command name, which is in parentheses.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	utime, _ := strconv.Atoi(f[11])
	stime, _ := strconv.Atoi(f[12])
	return utime + stime
}

// At the descriptor limit, accept backs off (no busy loop) and logs once;
// serving resumes when descriptors free up.
func TestAcceptBacksOffAtFDLimit(t *testing.T) {
	prlimit := testenv.RequireTool(t, "prlimit", "util-linux")
	dir := t.TempDir()
	sock := dir + "/fd.sock"
	// The Go runtime raises the soft limit to the hard one, so set both.
	cmd := exec.Command(prlimit, "--nofile=48:48", binary, "--socket-file", sock, "--ssl-module", "none",
		"--mount", "/=text:alive", "--data-dir", dir, "--log-format", "json")
	p := &proc{t: t, cmd: cmd, stdout: &syncBuffer{}, stderr: &syncBuffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.stdout, p.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			t.Logf("stderr:\n%s", p.stderr)
		}
	})
	p.waitServing()

	// Hold idle connections until the server runs out of descriptors.
	var held []net.Conn
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	for i := 0; i < 80; i++ {
		c, err := net.Dial("unix", sock)
		if err != nil {
			break
		}
		held = append(held, c)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(p.stderr.String(), "backing off") && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if !strings.Contains(p.stderr.String(), "backing off") {
		t.Fatal("no back-off logged at the descriptor limit")
	}
	// While starved, the accept loop must not spin.
	before := procCPU(t, cmd.Process.Pid)
	time.Sleep(time.Second)
	if used := procCPU(t, cmd.Process.Pid) - before; used > 30 { // ticks of 10ms: 0.3s of 1s
		t.Fatalf("accept loop used %d CPU ticks in 1s while out of descriptors", used)
	}
	if n := strings.Count(p.stderr.String(), "backing off"); n != 1 {
		t.Fatalf("back-off logged %d times, want once per episode", n)
	}
	for _, c := range held {
		c.Close()
	}
	held = nil
	// Descriptors free up: serving resumes.
	deadline = time.Now().Add(10 * time.Second)
	for {
		c := unixClient(sock)
		resp, err := c.Get("http://localhost/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("serving did not resume: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	deadline = time.Now().Add(5 * time.Second)
	for !strings.Contains(p.stderr.String(), "accept recovered") && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if !strings.Contains(p.stderr.String(), "accept recovered") {
		t.Fatal("recovery not logged")
	}
}
