package apps

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"
	"testing"
	"time"

	"tlsedge/internal/testenv"
)

var update = flag.Bool("update", false, "rewrite testdata/status.png from the headless Chromium run")

// chromium runs headless Chromium on url for budget of (virtual) time with
// extra arguments, and returns its standard output. It may run on a goroutine
// of its own, so it reports failure as an error rather than through t.
func chromium(profile, bin, url string, budget time.Duration, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), budget+60*time.Second)
	defer cancel()
	base := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--user-data-dir=" + profile, "--hide-scrollbars",
		"--virtual-time-budget=" + strconv.Itoa(int(budget.Milliseconds()))}
	cmd := exec.CommandContext(ctx, bin, append(append(base, args...), url)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("chromium %v: %w\n%s", args, err, stderr.Bytes())
	}
	return out, nil
}

// TestStatusPageInChromium opens the status page in headless Chromium while
// traffic flows and checks that the charts were drawn from live figures:
// the script marks each canvas with the points it drew and each number with
// its value.
func TestStatusPageInChromium(t *testing.T) {
	bin := testenv.RequireTool(t, "chromium", "chromium")
	m := NewMetrics(fakeSources(time.Now()))
	front := statusServer(t, m)
	// A pool with one live upstream and one that refuses, marked down by
	// a request that fails over.
	live := startTestUpstream(t, "live", nil)
	penv := poolEnv(func(o *Options) { o.ProxyFailTimeout = time.Hour }) // down for the whole test
	penv.Metrics = m
	pl, pbase := newTestPool(t, live.url()+";weight=3 http://127.0.0.1:1", penv)
	defer pl.Close()
	for range 20 {
		if resp, err := http.Get(pbase + "/"); err == nil {
			resp.Body.Close()
		}
		if st := pl.state(time.Now()); !st.Upstreams[1].Up {
			break
		}
	}

	// Steady traffic with latencies between 1 and 20ms and a few errors.
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for w := range 3 {
		wg.Go(func() {
			client := &http.Client{Timeout: 5 * time.Second}
			for i := 0; ctx.Err() == nil; i++ {
				q := fmt.Sprintf("sleep=%dms", 1+(i*7+w*5)%20)
				if i%17 == 0 {
					q += "&code=503"
				} else if i%11 == 0 {
					q += "&code=404"
				}
				if resp, err := client.Get(front + "/app?" + q); err == nil {
					resp.Body.Close()
				}
			}
		})
	}
	defer func() { stop(); wg.Wait() }()

	png := filepath.Join(t.TempDir(), "status.png")
	profile1, profile2 := t.TempDir(), t.TempDir()
	var shotWG sync.WaitGroup
	var shotErr error
	shotWG.Go(func() {
		_, shotErr = chromium(profile1, bin, front+"/status", 7*time.Second, "--window-size=1280,860", "--screenshot="+png)
	})
	dom, err := chromium(profile2, bin, front+"/status", 6*time.Second, "--dump-dom")
	shotWG.Wait()
	if err != nil {
		t.Fatal(err)
	}
	if shotErr != nil {
		t.Fatal(shotErr)
	}

	// The first sample already draws the charts: figures since start stand
	// in for a previous sample.
	first, err := chromium(t.TempDir(), bin, front+"/status", 600*time.Millisecond, "--dump-dom")
	if err != nil {
		t.Fatal(err)
	}
	if m := regexp.MustCompile(`id="rate-chart"[^>]*data-points="(\d+)"`).FindSubmatch(first); m == nil || string(m[1]) == "0" {
		t.Errorf("after the first sample the rate chart drew nothing (%q)", m)
	}

	attr := func(id, name string) string {
		re := regexp.MustCompile(`id="` + regexp.QuoteMeta(id) + `"[^>]*\b` + name + `="([^"]*)"`)
		m := re.FindSubmatch(dom)
		if m == nil {
			return ""
		}
		return string(m[1])
	}
	num := func(id, name string) float64 {
		v, err := strconv.ParseFloat(attr(id, name), 64)
		if err != nil {
			t.Errorf("#%s[%s] = %q: not a number", id, name, attr(id, name))
		}
		return v
	}
	if v := num("rate", "data-value"); v <= 0 {
		t.Errorf("request rate %v, want live traffic above 0", v)
	}
	if v := num("p50", "data-value"); v <= 0 || v > 1000 {
		t.Errorf("p50 latency %vms, want between 0 and 1000 (requests sleep 1-20ms)", v)
	}
	for _, c := range []string{"rate-chart", "latency-chart", "pool-chart"} {
		if n := num(c, "data-points"); n < 3 {
			t.Errorf("%s drew %v points, want at least 3 (one per second polled)", c, n)
		}
	}
	if v := num("busy", "data-value"); v != 3 {
		t.Errorf("busy workers %v, want 3", v)
	}
	if !regexp.MustCompile(`id="version">tlsedge [^<]*go1\.`).Match(dom) {
		t.Errorf("the page shows no version")
	}
	if !regexp.MustCompile(`<tbody id="routes"><tr><td>[^<]+</td><td class="n">[1-9]`).Match(dom) {
		t.Errorf("the routes table has no route with requests")
	}
	if !regexp.MustCompile(`<tr data-up="1"><td>` + regexp.QuoteMeta(live.url()) + `</td><td class="n">3</td><td class="ok">up</td>`).Match(dom) {
		t.Errorf("the pools table does not show the live upstream up")
	}
	if !regexp.MustCompile(`<tr data-up="0"><td>http://127.0.0.1:1</td><td class="n">1</td><td class="crit">down \(failures\)</td>`).Match(dom) {
		t.Errorf("the pools table does not show the refusing upstream down")
	}
	if !regexp.MustCompile(`<tbody id="servers"><tr><td>`).Match(dom) {
		t.Errorf("the servers table is empty")
	}
	for _, want := range []string{"unknown_sni", "example.com", "old.example", ">503<", "ACME renewed"} {
		if !bytes.Contains(dom, []byte(want)) {
			t.Errorf("page lacks %q", want)
		}
	}
	if m := regexp.MustCompile(`id="conn"[^>]*>([^<]*)<`).FindSubmatch(dom); m == nil || !bytes.HasPrefix(m[1], []byte("updated")) {
		t.Errorf("connection state %q, want updated", m)
	}
	fi, err := os.Stat(png)
	if err != nil || fi.Size() < 10000 {
		t.Fatalf("screenshot: %v (%v bytes)", err, fi)
	}
	if *update {
		b, _ := os.ReadFile(png)
		if err := os.WriteFile(filepath.Join("testdata", "status.png"), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
