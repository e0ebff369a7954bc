package integration

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"tlsedge/internal/testenv"
)

// rawUpstream accepts connections and does to each what fn says.
func rawUpstream(t *testing.T, fn func(c net.Conn)) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go fn(c)
		}
	}()
	return l.Addr().String()
}

// readHead reads a request head from c.
func readHead(c net.Conn) {
	br := bufio.NewReader(c)
	for {
		line, err := br.ReadString('\n')
		if err != nil || line == "\r\n" {
			return
		}
	}
}

// Upstreams that refuse, hang, reset mid-body or answer garbage give the
// client a clear 502/504 or a closed connection, never a hang, and the
// worker is freed: a two-worker pool serves normally afterwards.
func TestUpstreamFaults(t *testing.T) {
	closed := freePort(t) // nothing listens here
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	hang := rawUpstream(t, func(c net.Conn) {
		readHead(c)
		<-release
		c.Close()
	})
	reset := rawUpstream(t, func(c net.Conn) {
		readHead(c)
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n"+strings.Repeat("x", 1000))
		time.Sleep(50 * time.Millisecond)
		c.(*net.TCPConn).SetLinger(0)
		c.Close() // RST
	})
	garbage := rawUpstream(t, func(c net.Conn) {
		readHead(c)
		io.WriteString(c, "this is not HTTP at all\r\n\r\n")
		c.Close()
	})
	good := startUpstream(t)
	p := start(t, "--socket-port", "0", "--thread-pool", "2", "--thread-pool-max", "2", "--accepted-queue-size", "0",
		"--proxy-response-timeout", "1s", "--proxy-connect-timeout", "1s",
		"--mount", "/refuse=http://127.0.0.1:"+strconv.Itoa(closed), "--mount", "/hang=http://"+hang,
		"--mount", "/reset=http://"+reset, "--mount", "/garbage=http://"+garbage, "--mount", "/ok=http://"+good.addr)
	c := httpsClient(t, p.caFile())
	for range 3 { // more faults than workers: a leaked worker would show
		for path, want := range map[string]int{"/refuse": 502, "/hang": 504, "/garbage": 502} {
			t0 := time.Now()
			code, body := get(t, c, p.base("main")+path)
			if code != want || len(body) > 200 {
				t.Errorf("%s: %d %q, want %d with a short body", path, code, body, want)
			}
			if d := time.Since(t0); d > 5*time.Second {
				t.Errorf("%s took %v", path, d)
			}
		}
		resp, err := c.Get(p.base("main") + "/reset")
		if err != nil {
			t.Fatalf("/reset: %v", err)
		}
		n, err := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err == nil || n >= 100000 {
			t.Errorf("/reset: read %d bytes, err %v; want a truncated body and an error", n, err)
		}
	}
	if code, _ := get(t, c, p.base("main")+"/ok"); code != 200 {
		t.Fatalf("after the faults: %d (workers not freed?)", code)
	}
	for _, name := range []string{"/refuse", "/hang", "/garbage"} {
		if !strings.Contains(p.stderr.String(), strings.TrimPrefix(name, "/")) && !strings.Contains(p.stderr.String(), "127.0.0.1") {
			t.Errorf("no log line naming the upstream for %s", name)
		}
	}
}

// A request flood at five times what the pool can serve: admitted requests
// keep a bounded latency, the rest get a 503 with Retry-After within
// accepted_queue_timeout, and memory does not grow without bound.
func TestRequestFlood(t *testing.T) {
	testenv.Long(t)
	u := startUpstream(t)
	// 4 workers x 100 ms = 40 requests/s of capacity.
	p := startPlain(t, "--socket-port", "0", "--thread-pool", "4", "--thread-pool-max", "4",
		"--accepted-queue-size", "16", "--accepted-queue-timeout", "1s", "--mount", "/=http://"+u.addr)
	url := p.base("main") + "/?sleep=100ms"
	cfg := &tls.Config{RootCAs: caPool(t, p.caFile()), ServerName: "127.0.0.1"}
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg, MaxIdleConnsPerHost: 64}}
	var mu sync.Mutex
	var okLat, busyLat []time.Duration
	var other atomic.Int64
	stop := time.Now().Add(6 * time.Second)
	var rss []int
	var wg sync.WaitGroup
	// 20 clients each sending 10 requests/s: 200 requests/s, five times capacity.
	for range 20 {
		wg.Go(func() {
			tick := time.NewTicker(100 * time.Millisecond)
			defer tick.Stop()
			for time.Now().Before(stop) {
				<-tick.C
				wg.Go(func() {
					t0 := time.Now()
					resp, err := client.Get(url)
					d := time.Since(t0)
					if err != nil {
						other.Add(1)
						return
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					mu.Lock()
					defer mu.Unlock()
					switch {
					case resp.StatusCode == 200:
						okLat = append(okLat, d)
					case resp.StatusCode == 503 && resp.Header.Get("Retry-After") != "":
						busyLat = append(busyLat, d)
					default:
						other.Add(1)
					}
				})
			}
		})
	}
	for time.Now().Before(stop) {
		time.Sleep(time.Second)
		rss = append(rss, rssKB(t, p.cmd.Process.Pid))
	}
	wg.Wait()
	p99 := func(l []time.Duration) time.Duration {
		if len(l) == 0 {
			return 0
		}
		slices.Sort(l)
		return l[len(l)*99/100]
	}
	t.Logf("flood: %d served (p99 %v), %d refused with 503 (p99 %v), %d other; server RSS by second (KB): %v",
		len(okLat), p99(okLat), len(busyLat), p99(busyLat), other.Load(), rss)
	if len(okLat) < 100 || len(busyLat) < 100 {
		t.Fatalf("want both served and refused requests under a 5x flood")
	}
	if other.Load() > 0 {
		t.Errorf("%d requests failed other than with a 503", other.Load())
	}
	// Served: at most a queue wait (1 s) plus the upstream's 100 ms, and slack.
	if d := p99(okLat); d > 2*time.Second {
		t.Errorf("served p99 %v: not bounded by the queue", d)
	}
	if d := p99(busyLat); d > 1500*time.Millisecond {
		t.Errorf("503 p99 %v: not within accepted_queue_timeout", d)
	}
	if last, mid := rss[len(rss)-1], rss[len(rss)/2]; last > mid*2 {
		t.Errorf("RSS grew from %d KB to %d KB during the flood", mid, last)
	}
}

// settled returns n's value once it has not moved for 100 ms.
func settled(n *atomic.Int64) int64 {
	v := n.Load()
	for {
		time.Sleep(100 * time.Millisecond)
		if m := n.Load(); m != v {
			v = m
			continue
		}
		return v
	}
}

// Request-smuggling attempts through the reverse proxy: the upstream never
// sees a request the edge did not answer for, and never the smuggled one.
func TestSmugglingThroughProxy(t *testing.T) {
	u := startUpstream(t)
	p := start(t, "--socket-port", "0", "--mount", "/=http://"+u.addr)
	addr := strings.TrimPrefix(p.base("main"), "https://")
	cfg := &tls.Config{RootCAs: caPool(t, p.caFile()), ServerName: "127.0.0.1"}
	const smuggled = "GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
	tests := []struct {
		name    string
		payload string
		status  int // of the first answer
	}{
		{"CL and TE", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled, 400},
		{"TE and CL", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 40\r\n\r\n0\r\n\r\n" + smuggled, 400},
		{"obs-fold TE", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n" + smuggled, 400},
		{"duplicate CL", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nContent-Length: 40\r\n\r\n" + smuggled, 400},
		{"CL list", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0, 40\r\n\r\n" + smuggled, 400},
		{"CL with sign", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +0\r\n\r\n" + smuggled, 400},
		{"space before colon", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length : 40\r\n\r\n" + smuggled, 400},
		{"bare CR", "POST / HTTP/1.1\r\nHost: x\r\nX: a\rContent-Length: 40\r\n\r\n" + smuggled, 400},
		{"TE not last", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n" + smuggled, 400},
		// RFC 9112 6.3: chunked not final is a 400; an unknown coding before it a 501.
		{"TE without chunked", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n" + smuggled, 400},
		{"unknown TE", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n" + smuggled, 501},
		{"TE in HTTP/1.0", "POST / HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled, 400},
		{"chunk size overflow", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffff1\r\nx\r\n0\r\n\r\n" + smuggled, 0},
		{"chunk size 0x", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n" + smuggled, 0},
		{"missing CRLF after chunk", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n" + smuggled, 0},
		{"two hosts", "GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n" + smuggled, 400},
		{"no host", "GET / HTTP/1.1\r\n\r\n" + smuggled, 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := u.seen.Load()
			c, err := tls.Dial("tcp", addr, cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			io.WriteString(c, tt.payload)
			out, err := io.ReadAll(c)
			if err != nil {
				t.Fatalf("no clean end (hang or reset): %v; got %q", err, out)
			}
			answers := len(statusLine.FindAllIndex(out, -1))
			if _, rest, _ := strings.Cut(firstLine(out), " "); tt.status != 0 && !strings.HasPrefix(rest, fmt.Sprintf("%d ", tt.status)) {
				t.Errorf("answer %q, want %d", firstLine(out), tt.status)
			}
			if _, rest, _ := strings.Cut(firstLine(out), " "); tt.status == 0 && !strings.HasPrefix(rest, "4") {
				t.Errorf("answer %q, want a 4xx", firstLine(out))
			}
			if answers != 1 {
				t.Errorf("%d answers on the connection, want exactly 1 (then close)", answers)
			}
			// The edge may answer before the upstream's handler has even
			// started on what the proxy forwarded (the request head goes
			// out before a bad body is found): let the count settle, so a
			// late arrival is not charged to the next case.
			if got := settled(&u.seen) - before; got > int64(answers) {
				t.Errorf("upstream saw %d requests for %d answers", got, answers)
			}
			if u.sawPath("/smuggled") {
				t.Fatal("the smuggled request reached the upstream")
			}
		})
	}
	// Honest pipelining still works: both requests, in order.
	c, err := tls.Dial("tcp", addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, "GET /first HTTP/1.1\r\nHost: x\r\n\r\nGET /second HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	out, _ := io.ReadAll(c)
	if n := strings.Count(string(out), "HTTP/1.1 200 "); n != 2 || !u.sawPath("/second") {
		t.Fatalf("pipelined: %d answers: %q", n, out)
	}
}

// statusLine matches the start of an HTTP/1.x response.
var statusLine = regexp.MustCompile(`(?m)^HTTP/1\.[01] [1-5][0-9][0-9] `)

func firstLine(b []byte) string {
	s, _, _ := strings.Cut(string(b), "\r\n")
	return s
}
