package integration

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// binary is the tlsedge binary built once for the whole package, with the
// race detector; plainBinary is built without it, for tests that measure
// memory or speed (the race detector multiplies both).
var binary, plainBinary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "tlsedge-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	// Tests run clients such as tlsedge ctl as other users, who must reach it.
	os.Chmod(dir, 0o755)
	binary, plainBinary = filepath.Join(dir, "tlsedge"), filepath.Join(dir, "tlsedge-plain")
	for _, b := range [][]string{{"-race", "-o", binary}, {"-o", plainBinary}} {
		build := exec.Command("go", append(append([]string{"build"}, b...), "tlsedge")...)
		build.Stdout, build.Stderr = os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "building tlsedge:", err)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// proc is a running tlsedge process.
type proc struct {
	t      testing.TB
	cmd    *exec.Cmd
	stdout *syncBuffer
	stderr *syncBuffer
	done   chan struct{}
	err    error // from Wait, once done is closed
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// start runs tlsedge with args (plus a per-test data dir and JSON logs unless
// given) and returns once it logs that every server is serving.
func start(t testing.TB, args ...string) *proc {
	t.Helper()
	p := launch(t, binary, nil, args...)
	p.waitServing()
	return p
}

// startPlain is start with the binary built without the race detector.
func startPlain(t testing.TB, args ...string) *proc {
	t.Helper()
	p := launch(t, plainBinary, nil, args...)
	p.waitServing()
	return p
}

// launch runs tlsedge without waiting for it.
func launch(t testing.TB, bin string, extraFiles []*os.File, args ...string) *proc {
	t.Helper()
	if !hasArg(args, "--data-dir") {
		args = append(args, "--data-dir", t.TempDir())
	}
	if !hasArg(args, "--log-format") {
		args = append(args, "--log-format", "json")
	}
	cmd := exec.Command(bin, args...)
	p := &proc{t: t, cmd: cmd, stdout: &syncBuffer{}, stderr: &syncBuffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.stdout, p.stderr
	cmd.ExtraFiles = extraFiles
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("tlsedge %s\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), p.stdout, p.stderr)
		}
	})
	return p
}

func hasArg(args []string, name string) bool {
	for _, a := range args {
		if a == name || strings.HasPrefix(a, name+"=") {
			return true
		}
	}
	return false
}

// waitServing waits for the start-up banner (printed once all servers serve).
func (p *proc) waitServing() {
	p.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if strings.Contains(p.stdout.String(), "tlsedge is serving") && len(p.servingLogs()) > 0 {
			return
		}
		select {
		case <-p.done:
			p.t.Fatalf("tlsedge exited before serving: %v\nstderr:\n%s", p.err, p.stderr)
		case <-time.After(20 * time.Millisecond):
		}
	}
	p.t.Fatalf("tlsedge did not start serving within 20s\nstderr:\n%s", p.stderr)
}

// logLine is one JSON log record.
type logLine map[string]any

func (p *proc) logs() []logLine {
	var out []logLine
	sc := bufio.NewScanner(strings.NewReader(p.stderr.String()))
	sc.Buffer(make([]byte, 0, 64<<10), 4<<20)
	for sc.Scan() {
		var l logLine
		if json.Unmarshal(sc.Bytes(), &l) == nil {
			out = append(out, l)
		}
	}
	return out
}

// servingLogs returns the "serving" log records by server name.
func (p *proc) servingLogs() map[string]logLine {
	out := map[string]logLine{}
	for _, l := range p.logs() {
		if l["msg"] == "serving" {
			out[fmt.Sprint(l["server"])] = l
		}
	}
	return out
}

// base returns the main server's base URL or socket path.
func (p *proc) base(server string) string {
	p.t.Helper()
	l, ok := p.servingLogs()[server]
	if !ok {
		p.t.Fatalf("no serving log for server %q", server)
	}
	return fmt.Sprint(l["base"])
}

// listen returns the listener addresses of a server.
func (p *proc) listen(server string) []string {
	return strings.Split(fmt.Sprint(p.servingLogs()[server]["listen"]), ",")
}

// signal sends sig and waits for the process to exit, returning its exit code.
func (p *proc) signal(sig syscall.Signal) int {
	p.t.Helper()
	p.cmd.Process.Signal(sig)
	return p.wait(15 * time.Second)
}

func (p *proc) wait(d time.Duration) int {
	p.t.Helper()
	select {
	case <-p.done:
	case <-time.After(d):
		p.t.Fatalf("tlsedge did not exit within %v", d)
	}
	return p.cmd.ProcessState.ExitCode()
}

// run runs tlsedge to completion and returns its exit code and output.
func run(t testing.TB, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("tlsedge %v did not finish in 30s", args)
	}
	if err != nil && cmd.ProcessState == nil {
		t.Fatal(err)
	}
	return cmd.ProcessState.ExitCode(), o.String(), e.String()
}

// caFile returns the local CA path the banner printed.
func (p *proc) caFile() string {
	p.t.Helper()
	for line := range strings.SplitSeq(p.stdout.String(), "\n") {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(line), "local CA: "); ok {
			return strings.Fields(rest)[0]
		}
	}
	p.t.Fatal("no local CA line in the banner")
	return ""
}

// httpsClient trusts the CA in caFile.
func httpsClient(t testing.TB, caFile string) *http.Client {
	t.Helper()
	pem, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatalf("no certificate in %s", caFile)
	}
	return &http.Client{
		Timeout:   10 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, DisableKeepAlives: true},
	}
}

// unixClient sends HTTP over the UNIX socket at path ("@name" for abstract).
func unixClient(path string) *http.Client {
	return &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{DisableKeepAlives: true, DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		}},
	}
}

// get fetches url and returns status and body.
func get(t testing.TB, c *http.Client, url string) (int, string) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: reading body: %v", url, err)
	}
	return resp.StatusCode, string(b)
}

// freePort returns a TCP port that was free a moment ago on 127.0.0.1.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
