package integration

import (
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// upstreamProc is an upstream of its own process: a plain tlsedge that
// answers its name on every path, health checks included.
type upstreamProc struct {
	name string
	port int
	p    *proc
}

func startUpstreamProc(t *testing.T, name string, port int) *upstreamProc {
	t.Helper()
	return &upstreamProc{name: name, port: port, p: startPlain(t, "--ssl-module", "none", "--socket-port", strconv.Itoa(port),
		"--mount", "/=text:"+name)}
}

// A pool over three upstream processes: requests are shared by weight;
// one upstream killed with SIGKILL under load costs no request (a request
// that meets it before any answer goes to another, and the active checks
// take it out of rotation); started again on its port, it is back in
// rotation.
func TestPoolOfUpstreamProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("load run over several processes")
	}
	names := []string{"a", "b", "c"}
	weights := []int{5, 3, 2}
	ups := make([]*upstreamProc, 3)
	var targets []string
	for i, n := range names {
		ups[i] = startUpstreamProc(t, n, freePort(t))
		targets = append(targets, fmt.Sprintf("http://127.0.0.1:%d;weight=%d", ups[i].port, weights[i]))
	}
	edge := start(t, "--ssl-module", "none", "--socket-port", "0", "--statistics",
		"--mount", "/="+strings.Join(targets, " "),
		"--mount", "/_status=status:",
		"--proxy-health-uri", "/health", "--proxy-health-interval", "1s", "--proxy-health-timeout", "500ms",
		"--proxy-health-fall", "2", "--proxy-health-rise", "2")
	base := edge.base("main")
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 8}}
	defer client.CloseIdleConnections()
	fetch := func(path string) (int, string, error) {
		resp, err := client.Get(base + path)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), err
	}

	// Shares by weight, over 10,000 requests from 4 clients.
	const total = 10000
	var mu sync.Mutex
	count := map[string]int{}
	var wg sync.WaitGroup
	var next atomic.Int64
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= total {
				code, body, err := fetch("/share")
				mu.Lock()
				if err != nil || code != 200 {
					count[fmt.Sprintf("error %d %v", code, err)]++
				} else {
					count[body]++
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	for i, n := range names {
		want := float64(total) * float64(weights[i]) / 10
		if got := float64(count[n]); got < want*0.95 || got > want*1.05 {
			t.Errorf("upstream %s got %v of %d requests, want %v within 5%% (weights 5:3:2); all: %v", n, got, total, want, count)
		}
	}

	// Kill c under load; start it again.
	victim := ups[2]
	type result struct {
		at   time.Time
		code int
		body string
		err  error
	}
	var results []result
	stop := make(chan struct{})
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 100000; i++ {
				select {
				case <-stop:
					return
				default:
				}
				r := result{at: time.Now()}
				r.code, r.body, r.err = fetch("/load")
				mu.Lock()
				results = append(results, r)
				mu.Unlock()
				time.Sleep(2 * time.Millisecond)
			}
		}()
	}
	time.Sleep(2 * time.Second)
	killed := time.Now()
	victim.p.cmd.Process.Signal(syscall.SIGKILL)
	victim.p.wait(5 * time.Second)
	down := waitMetric(t, fetch, fmt.Sprintf(`upstream="http://127.0.0.1:%d"} 0`, victim.port), 10*time.Second)
	t.Logf("upstream c killed; the edge's metrics show it down %v later", down.Round(time.Millisecond))
	time.Sleep(2 * time.Second)
	restarted := time.Now()
	ups[2] = startUpstreamProc(t, "c", victim.port)
	back := waitMetric(t, fetch, fmt.Sprintf(`upstream="http://127.0.0.1:%d"} 1`, victim.port), 10*time.Second)
	t.Logf("upstream c started again; back up %v later", back.Round(time.Millisecond))
	time.Sleep(3 * time.Second)
	close(stop)
	wg.Wait()

	var failed, afterBack int
	for _, r := range results {
		if r.err != nil || r.code != 200 {
			failed++
			t.Errorf("request at %v after the kill: %d %v", r.at.Sub(killed).Round(time.Millisecond), r.code, r.err)
		}
		if r.body == "c" && r.at.After(restarted.Add(back)) {
			afterBack++
		}
	}
	if afterBack == 0 {
		t.Error("upstream c got no request after it was back up")
	}
	t.Logf("%d requests through the kill and the restart, %d failed, %d answered by c after its return", len(results), failed, afterBack)
}

// waitMetric polls the edge's metrics until a line ends with want, and
// returns how long that took.
func waitMetric(t *testing.T, fetch func(string) (int, string, error), want string, limit time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for time.Since(start) < limit {
		if _, body, err := fetch("/_status/metrics"); err == nil {
			for line := range strings.SplitSeq(body, "\n") {
				if strings.HasPrefix(line, "tlsedge_pool_upstream_up{") && strings.HasSuffix(line, want) {
					return time.Since(start)
				}
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("no metric line ending %q within %v", want, limit)
	return 0
}
