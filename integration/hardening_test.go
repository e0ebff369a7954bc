package integration

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"tlsedge/internal/testenv"
)

// prober is a well-behaved client that keeps making requests, each on a new
// TLS connection, and records latencies and errors.
type prober struct {
	mu        sync.Mutex
	latencies []time.Duration
	errors    []string
}

func (p *prober) run(ctx context.Context, t *testing.T, url string, pool *x509.CertPool) {
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool}, DisableKeepAlives: true}}
	for ctx.Err() == nil {
		t0 := time.Now()
		resp, err := c.Get(url)
		if err == nil {
			_, err = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if err == nil && resp.StatusCode != 200 {
				err = fmt.Errorf("status %d", resp.StatusCode)
			}
		}
		d := time.Since(t0)
		p.mu.Lock()
		if err != nil && ctx.Err() == nil {
			p.errors = append(p.errors, err.Error())
		} else if err == nil {
			p.latencies = append(p.latencies, d)
		}
		p.mu.Unlock()
		time.Sleep(20 * time.Millisecond)
	}
}

func (p *prober) p99() time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.latencies) == 0 {
		return 0
	}
	l := slices.Clone(p.latencies)
	slices.Sort(l)
	return l[len(l)*99/100]
}

func caPool(t *testing.T, file string) *x509.CertPool {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(b)
	return pool
}

// Slow clients (slowloris, slow body, slow read) with 1,000 attacking
// connections each for 30 s do not hurt a well-behaved client: no error,
// p99 under 100 ms.
func TestSlowClients(t *testing.T) {
	testenv.Long(t)
	slow := testenv.RequireTool(t, "slowhttptest", "slowhttptest")
	// A 64 KiB answer gives the slow reader something to be slow about.
	body := strings.Repeat("x", 64<<10)
	conf := t.TempDir() + "/big.conf"
	os.WriteFile(conf, []byte("[global]\nserver.mount = [\"/=text:"+body+"\"]\n"), 0o644)
	attacks := []struct {
		name string
		args []string
	}{
		{"slowloris", []string{"-H", "-i", "5", "-x", "24", "-p", "3"}},
		{"slow body", []string{"-B", "-i", "5", "-s", "65536", "-x", "10", "-p", "3", "-t", "POST"}},
		{"slow read", []string{"-X", "-w", "512", "-y", "1024", "-n", "5", "-z", "32", "-k", "3", "-p", "3"}},
	}
	for _, a := range attacks {
		t.Run(a.name, func(t *testing.T) {
			p := startPlain(t, "--socket-port", "0", "--config", conf)
			base := p.base("main")
			ctx, cancel := context.WithCancel(context.Background())
			var pr prober
			var wg sync.WaitGroup
			wg.Go(func() { pr.run(ctx, t, base+"/", caPool(t, p.caFile())) })
			// slowhttptest stops once tlsedge has closed its 1,000
			// connections (head timeout, body-rate cutoff), so the attack is
			// relaunched until it has lasted 30 s.
			runs := 0
			for attackStart := time.Now(); time.Since(attackStart) < 29*time.Second; runs++ {
				left := 30 - int(time.Since(attackStart).Seconds())
				args := append([]string{"-c", "1000", "-r", "200", "-l", strconv.Itoa(left), "-u", base + "/", "-g", "-o", t.TempDir() + "/report"}, a.args...)
				actx, acancel := context.WithTimeout(context.Background(), 90*time.Second)
				o, err := exec.CommandContext(actx, slow, args...).CombinedOutput()
				acancel()
				if err != nil && actx.Err() != nil {
					t.Fatalf("slowhttptest did not finish: %v\n%s", err, tail(o))
				}
			}
			cancel()
			wg.Wait()
			t.Logf("%s: 30 s of attack in %d slowhttptest runs; well-behaved client made %d requests, p99 %v, %d errors", a.name, runs, len(pr.latencies), pr.p99(), len(pr.errors))
			if len(pr.errors) > 0 {
				t.Errorf("well-behaved client saw %d errors, first: %s", len(pr.errors), pr.errors[0])
			}
			if len(pr.latencies) < 100 {
				t.Errorf("only %d requests in 30s", len(pr.latencies))
			}
			if p99 := pr.p99(); p99 >= 100*time.Millisecond {
				t.Errorf("p99 %v, want under 100ms", p99)
			}
		})
	}
}

func tail(b []byte) string {
	s := string(b)
	if len(s) > 2000 {
		s = s[len(s)-2000:]
	}
	return s
}

// rssKB reads a process's resident set size.
func rssKB(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for l := range strings.SplitSeq(string(b), "\n") {
		if rest, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			n, _ := strconv.Atoi(strings.Fields(rest)[0])
			return n
		}
	}
	t.Fatal("no VmRSS")
	return 0
}

// 10,000 TLS connections opened and held: the server's memory stays bounded
// (reported per connection), connections past max_connections get a 503 at
// once, and the accept loop keeps up: a new client is still served.
func TestTenThousandConnections(t *testing.T) {
	testenv.Long(t)
	const n = 10000
	p := startPlain(t, "--socket-port", "0", "--mount", "/=text:ok", "--max-connections", strconv.Itoa(n),
		"--socket-timeout", "300", "--socket-queue-size", "4096")
	addr := strings.TrimPrefix(p.base("main"), "https://")
	pool := caPool(t, p.caFile())
	cfg := &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", NextProtos: []string{"http/1.1"}, ClientSessionCache: tls.NewLRUClientSessionCache(64)}
	rss0 := rssKB(t, p.cmd.Process.Pid)

	conns := make([]net.Conn, n)
	var failed atomic.Int64
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64)
	t0 := time.Now()
	for i := range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			c, err := tls.DialWithDialer(&net.Dialer{Timeout: 20 * time.Second}, "tcp", addr, cfg)
			if err != nil {
				failed.Add(1)
				return
			}
			conns[i] = c
		})
	}
	wg.Wait()
	opened := time.Since(t0)
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	}()
	if f := failed.Load(); f > 0 {
		t.Fatalf("%d of %d TLS connections failed to open", f, n)
	}
	// The core counts a connection once it is served; let the last ones land.
	time.Sleep(time.Second)
	rss1 := rssKB(t, p.cmd.Process.Pid)
	perConn := float64(rss1-rss0) / n
	t.Logf("%d TLS connections held, opened in %v; server RSS %d KB -> %d KB: %.1f KB per idle TLS connection", n, opened.Round(time.Millisecond), rss0, rss1, perConn)
	if perConn > 64 {
		t.Errorf("%.1f KB per idle TLS connection: memory is not bounded", perConn)
	}

	// One past the limit: closed at once, before any handshake is spent on
	// it (a plain listener would answer a fast 503 instead).
	t1 := time.Now()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, cfg)
	if err == nil {
		c.Close()
		t.Fatal("a connection past max_connections completed its handshake")
	}
	if took := time.Since(t1); took > 2*time.Second {
		t.Fatalf("past max_connections: refused after %v (%v); want at once", took, err)
	}
	t.Logf("past max_connections: closed in %v (%v)", time.Since(t1).Round(time.Microsecond), err)

	// Free some and a new client is served at once.
	for i := range 10 {
		conns[i].Close()
		conns[i] = nil
	}
	time.Sleep(200 * time.Millisecond)
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg.Clone(), DisableKeepAlives: true}}
	code, body := get(t, hc, "https://"+addr+"/")
	if code != 200 || body != "ok" {
		t.Fatalf("after freeing connections: %d %q", code, body)
	}
}
