package integration

import (
	"bytes"
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
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// PebbleConfig chooses the ports Pebble validates on and the lifetime of the
// certificates it issues. Zero ports are picked free on loopback.
type PebbleConfig struct {
	HTTPPort int // where Pebble sends http-01 requests (the server's acme_http_port)
	TLSPort  int // where Pebble sends tls-alpn-01 probes (the server's TLS port)
	// Validity is the lifetime of issued certificates. Zero means 90 days, as
	// Let's Encrypt's classic profile.
	Validity time.Duration
}

// Pebble is Let's Encrypt's test CA and its DNS (pebble-challtestsrv, which
// answers every A query with 127.0.0.1), both running as real processes on
// loopback for one test. Stop and Start simulate a CA outage; the state
// (accounts, orders, the issuing root) is lost across a restart, as with a
// real CA that was rebuilt, so tests that restart it check recovery, not reuse.
type Pebble struct {
	Directory string // ACME directory URL
	RootFile  string // PEM trusted for Pebble's own HTTPS (acme_ca_root)
	HTTPPort  int
	TLSPort   int
	mgmt      string // management API base URL

	t         testing.TB
	bin       string
	config    string
	dnsAddr   string
	client    *http.Client
	mu        sync.Mutex
	cmd       *exec.Cmd
	exited    chan struct{}
	log       bytes.Buffer // pebble's output across restarts
	dnsCmd    *exec.Cmd
	dnsExited chan struct{}
}

var (
	toolOnce  sync.Once
	toolPaths map[string]string
	toolErr   error
	pebbleDir string
)

// pebbleTools builds (once per test binary, cached by the go command) the
// pebble and pebble-challtestsrv tools declared in go.mod, and finds Pebble's
// module directory for its test HTTPS certificate.
func pebbleTools() (map[string]string, string, error) {
	toolOnce.Do(func() {
		toolPaths = map[string]string{}
		for _, name := range []string{"pebble", "pebble-challtestsrv"} {
			out, err := exec.Command("go", "tool", "-n", name).Output()
			if err != nil {
				toolErr = fmt.Errorf("go tool -n %s: %w", name, err)
				return
			}
			toolPaths[name] = strings.TrimSpace(string(out))
		}
		out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/letsencrypt/pebble/v2").Output()
		if err != nil {
			toolErr = fmt.Errorf("locating the pebble module: %w", err)
			return
		}
		pebbleDir = strings.TrimSpace(string(out))
	})
	return toolPaths, pebbleDir, toolErr
}

// FreePort returns a TCP port that was free on 127.0.0.1 a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// FreePorts returns n distinct TCP ports that were free on 127.0.0.1 a
// moment ago: every listener is held until all are chosen, so that the
// kernel cannot hand the same port out twice (FreePort called n times can).
func FreePorts(t testing.TB, n int) []int {
	t.Helper()
	ports := make([]int, n)
	for i := range ports {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		ports[i] = ln.Addr().(*net.TCPAddr).Port
	}
	return ports
}

// StartPebble starts pebble-challtestsrv and Pebble and waits until Pebble's
// directory answers. Both are stopped at the end of the test.
func StartPebble(t testing.TB, cfg PebbleConfig) *Pebble {
	t.Helper()
	tools, modDir, err := pebbleTools()
	if err != nil {
		t.Fatalf("pebble tools: %v", err)
	}
	ports := FreePorts(t, 6)
	if cfg.HTTPPort == 0 {
		cfg.HTTPPort = ports[4]
	}
	if cfg.TLSPort == 0 {
		cfg.TLSPort = ports[5]
	}
	if cfg.Validity == 0 {
		cfg.Validity = 90 * 24 * time.Hour
	}
	dir := t.TempDir()
	listen, mgmt, dns, dnsMgmt := ports[0], ports[1], ports[2], ports[3]
	p := &Pebble{
		Directory: fmt.Sprintf("https://127.0.0.1:%d/dir", listen),
		RootFile:  filepath.Join(modDir, "test", "certs", "pebble.minica.pem"),
		HTTPPort:  cfg.HTTPPort,
		TLSPort:   cfg.TLSPort,
		mgmt:      fmt.Sprintf("https://127.0.0.1:%d", mgmt),
		t:         t,
		bin:       tools["pebble"],
		config:    filepath.Join(dir, "pebble-config.json"),
		dnsAddr:   fmt.Sprintf("127.0.0.1:%d", dns),
	}
	conf := map[string]any{"pebble": map[string]any{
		"listenAddress":                  fmt.Sprintf("127.0.0.1:%d", listen),
		"managementListenAddress":        fmt.Sprintf("127.0.0.1:%d", mgmt),
		"certificate":                    filepath.Join(modDir, "test", "certs", "localhost", "cert.pem"),
		"privateKey":                     filepath.Join(modDir, "test", "certs", "localhost", "key.pem"),
		"httpPort":                       cfg.HTTPPort,
		"tlsPort":                        cfg.TLSPort,
		"ocspResponderURL":               "",
		"externalAccountBindingRequired": false,
		"retryAfter":                     map[string]int{"authz": 1, "order": 1},
		"keyAlgorithm":                   "ecdsa",
		"profiles": map[string]any{"default": map[string]any{
			"description":    "test profile",
			"validityPeriod": int(cfg.Validity / time.Second),
		}},
	}}
	b, _ := json.MarshalIndent(conf, "", "  ")
	if err := os.WriteFile(p.config, b, 0o644); err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	rootPEM, err := os.ReadFile(p.RootFile)
	if err != nil || !roots.AppendCertsFromPEM(rootPEM) {
		t.Fatalf("pebble's test root %s: %v", p.RootFile, err)
	}
	p.client = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}}

	p.dnsCmd = exec.Command(tools["pebble-challtestsrv"],
		"-defaultIPv4", "127.0.0.1", "-defaultIPv6", "",
		"-dnsserver", p.dnsAddr,
		"-management", fmt.Sprintf("127.0.0.1:%d", dnsMgmt),
		"-http01", "", "-https01", "", "-tlsalpn01", "", "-doh", "")
	p.dnsExited = make(chan struct{})
	p.dnsCmd.Stdout = prefixWriter(p, "challtestsrv: ")
	p.dnsCmd.Stderr = p.dnsCmd.Stdout
	if err := p.dnsCmd.Start(); err != nil {
		t.Fatalf("starting pebble-challtestsrv: %v", err)
	}
	go func() { p.dnsCmd.Wait(); close(p.dnsExited) }()
	t.Cleanup(func() {
		p.Stop()
		p.dnsCmd.Process.Kill()
		<-p.dnsExited
		if t.Failed() {
			t.Logf("pebble and challtestsrv output:\n%s", p.Log())
		}
	})
	waitUDP(t, p.dnsAddr)
	p.Start()
	return p
}

// Start (re)starts the Pebble process and waits until its directory answers.
func (p *Pebble) Start() {
	p.t.Helper()
	p.mu.Lock()
	if p.cmd != nil {
		p.mu.Unlock()
		p.t.Fatal("pebble already running")
	}
	cmd := exec.Command(p.bin, "-config", p.config, "-dnsserver", p.dnsAddr)
	cmd.Env = append(os.Environ(), "PEBBLE_VA_NOSLEEP=1", "PEBBLE_WFE_NONCEREJECT=0", "PEBBLE_AUTHZREUSE=0")
	cmd.Stdout = prefixWriter(p, "pebble: ")
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		p.mu.Unlock()
		p.t.Fatalf("starting pebble: %v", err)
	}
	p.cmd, p.exited = cmd, make(chan struct{})
	exited := p.exited
	go func() { cmd.Wait(); close(exited) }()
	p.mu.Unlock()

	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := p.client.Get(p.Directory)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case <-exited:
			p.t.Fatalf("pebble exited at start-up:\n%s", p.Log())
		default:
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("pebble not answering at %s: %v\n%s", p.Directory, err, p.Log())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Stop kills Pebble (the CA goes down; its DNS stays up).
func (p *Pebble) Stop() {
	p.mu.Lock()
	cmd, exited := p.cmd, p.exited
	p.cmd = nil
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Kill()
	<-exited
}

// Roots fetches the root Pebble issues under from its management API. It
// changes when Pebble restarts.
func (p *Pebble) Roots(t testing.TB) *x509.CertPool {
	t.Helper()
	resp, err := p.client.Get(p.mgmt + "/roots/0")
	if err != nil {
		t.Fatalf("pebble roots: %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("pebble roots: %s %v", resp.Status, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		t.Fatalf("pebble roots: no PEM in %q", b)
	}
	return pool
}

// Orders counts the orders Pebble has accepted since the test began (its
// "Added order" log lines, across restarts).
func (p *Pebble) Orders() int {
	return strings.Count(p.Log(), "Added order")
}

// WaitOrders waits until at least n orders were placed.
func (p *Pebble) WaitOrders(t testing.TB, n int, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for p.Orders() < n {
		if time.Now().After(deadline) {
			t.Fatalf("pebble saw %d orders, want at least %d", p.Orders(), n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Log is everything Pebble and challtestsrv printed so far.
func (p *Pebble) Log() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.log.String()
}

// lineWriter prefixes whole lines into the shared log; a partial line waits
// for its end so "Added order" is never split.
type lineWriter struct {
	p       *Pebble
	prefix  string
	pending []byte
}

func prefixWriter(p *Pebble, prefix string) io.Writer { return &lineWriter{p: p, prefix: prefix} }

func (w *lineWriter) Write(b []byte) (int, error) {
	w.p.mu.Lock()
	defer w.p.mu.Unlock()
	w.pending = append(w.pending, b...)
	for {
		i := bytes.IndexByte(w.pending, '\n')
		if i < 0 {
			break
		}
		w.p.log.WriteString(w.prefix)
		w.p.log.Write(w.pending[:i+1])
		w.pending = w.pending[i+1:]
	}
	return len(b), nil
}

// waitUDP waits until a DNS query to addr gets any answer.
func waitUDP(t testing.TB, addr string) {
	t.Helper()
	// A minimal DNS query for "a." type A, ID 1.
	q := []byte{0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, 'a', 0, 0, 1, 0, 1}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		c, err := net.Dial("udp", addr)
		if err == nil {
			c.SetDeadline(time.Now().Add(200 * time.Millisecond))
			c.Write(q)
			buf := make([]byte, 512)
			n, err := c.Read(buf)
			c.Close()
			if err == nil && n > 0 {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("pebble-challtestsrv not answering DNS on %s", addr)
}

// HostPort joins 127.0.0.1 and port.
func HostPort(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }
