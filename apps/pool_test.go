package apps

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"tlsedge/apps/appopt"
)

// testUpstream is a real HTTP server on a loopback port that answers its
// name and counts requests; it can be killed and started again on the
// same port.
type testUpstream struct {
	t    testing.TB
	name string
	addr string
	hits atomic.Int64
	// checks counts the health checks among the hits: the live upstreams'
	// count is the clock the active checks keep, whatever the load.
	checks atomic.Int64
	h      http.Handler // nil: answer the name

	mu  sync.Mutex
	srv *http.Server
}

func startTestUpstream(t testing.TB, name string, h http.Handler) *testUpstream {
	u := &testUpstream{t: t, name: name, h: h}
	u.start("127.0.0.1:0")
	t.Cleanup(u.kill)
	return u
}

func (u *testUpstream) start(addr string) {
	var ln net.Listener
	var err error
	for range 50 { // the port may linger a moment after a kill
		if ln, err = net.Listen("tcp", addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		u.t.Fatal(err)
	}
	u.addr = ln.Addr().String()
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.hits.Add(1)
		if r.URL.Path == "/health" {
			u.checks.Add(1)
		}
		if u.h != nil {
			u.h.ServeHTTP(w, r)
			return
		}
		io.WriteString(w, u.name)
	})}
	u.mu.Lock()
	u.srv = srv
	u.mu.Unlock()
	go srv.Serve(ln)
}

// kill closes the listener and every connection at once.
func (u *testUpstream) kill() {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.srv != nil {
		u.srv.Close()
		u.srv = nil
	}
}

func (u *testUpstream) url() string { return "http://" + u.addr }

// poolEnv is the options of a pool as the configuration's defaults have
// them, changed by set.
func poolEnv(set func(o *Options)) Env {
	o := appopt.Options{ProxyMaxFails: 1, ProxyFailTimeout: 10 * time.Second}
	if set != nil {
		set(&o)
	}
	return Env{Options: o}
}

func newTestPool(t *testing.T, target string, env Env) (*pool, string) {
	t.Helper()
	h := mustNew(t, target, env)
	pl, ok := h.(*pool)
	if !ok {
		t.Fatalf("New(%q) is a %T, not a pool", target, h)
	}
	t.Cleanup(func() { pl.Close() })
	return pl, serveTCP(t, pl)
}

func getBody(t testing.TB, c *http.Client, url string, hdr ...string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestPoolTargetParsing(t *testing.T) {
	for _, tc := range []struct {
		target string
		want   string // "" for fine
	}{
		{"http://127.0.0.1:1 http://127.0.0.1:2;weight=3", ""},
		{"http://127.0.0.1:1;weight=2", ""},
		{"http://127.0.0.1:1 unix:/run/x.sock", ""},
		{"http://127.0.0.1:1 http://127.0.0.1:1", "named twice"},
		{"http://127.0.0.1:1;weight=0 http://127.0.0.1:2", "weight"},
		{"http://127.0.0.1:1;weight=x", "weight"},
		{"http://127.0.0.1:1;weight=1001", "weight"},
		{"http://127.0.0.1:1 dir:/tmp", "http://, https:// or unix:"},
		{"http://127.0.0.1:1 http://nohost", "HOST:PORT"},
		{"text:hello world", ""}, // not a pool
	} {
		h, err := New(tc.target, Env{})
		if pl, ok := h.(*pool); ok {
			pl.Close()
		}
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("New(%q) = %v, want %q", tc.target, err, tc.want)
		}
	}
	for _, lb := range []string{"rr", "header:", "cookie:a b", "least"} {
		o := Options{ProxyLB: lb}
		if err := o.Validate(); err == nil || !strings.Contains(err.Error(), "proxy_lb") {
			t.Errorf("proxy_lb %q: %v, want an error naming proxy_lb", lb, err)
		}
	}
	for _, bad := range []Options{{ProxyHealthURI: "health"}, {ProxyHealthStatus: "2x"}, {ProxyHealthStatus: "600"}, {ProxyHealthURI: "/h", ProxyHealthInterval: time.Second, ProxyHealthTimeout: 2 * time.Second}} {
		if err := bad.Validate(); err == nil || !strings.Contains(err.Error(), "proxy_health_") {
			t.Errorf("%+v: %v, want an error naming the option", bad, err)
		}
	}
}

// Each method sends each upstream its weight's share of 10,000 requests,
// within 5%.
func TestPoolWeightShares(t *testing.T) {
	for _, lb := range []string{"round_robin", "random_two", "least_conn"} {
		t.Run(lb, func(t *testing.T) {
			a, b, c := startTestUpstream(t, "a", nil), startTestUpstream(t, "b", nil), startTestUpstream(t, "c", nil)
			_, base := newTestPool(t, a.url()+";weight=5 "+b.url()+";weight=3 "+c.url()+";weight=2", poolEnv(func(o *Options) { o.ProxyLB = lb }))
			client := &http.Client{Timeout: 10 * time.Second}
			const n = 10000
			for i := range n {
				if code, _ := getBody(t, client, base+"/", "X-User", fmt.Sprint("user-", i)); code != 200 {
					t.Fatalf("request %d: %d", i, code)
				}
			}
			for _, u := range []struct {
				u      *testUpstream
				weight float64
			}{{a, 5}, {b, 3}, {c, 2}} {
				want := n * u.weight / 10
				got := float64(u.u.hits.Load())
				t.Logf("%s (weight %v): %v requests of %d", u.u.name, u.weight, got, n)
				if got < want*0.95 || got > want*1.05 {
					t.Errorf("%s (weight %v) got %v requests, want %v within 5%%", u.u.name, u.weight, got, want)
				}
			}
		})
	}
}

// Rendezvous hashing (ip_hash, header:NAME) gives each upstream its
// weight's share of many keys, within 5%.
func TestPoolRendezvousShares(t *testing.T) {
	h := mustNew(t, "http://127.0.0.1:1;weight=5 http://127.0.0.1:2;weight=3 http://127.0.0.1:3;weight=2", Env{})
	pl := h.(*pool)
	defer pl.Close()
	const n = 100000
	counts := make([]int, 3)
	now := time.Now()
	for i := range n {
		counts[pl.rendezvous(fmt.Sprint("key-", i), 0, now).idx]++
	}
	for i, w := range []float64{5, 3, 2} {
		want := n * w / 10
		if got := float64(counts[i]); got < want*0.95 || got > want*1.05 {
			t.Errorf("weight %v: %v keys of %d, want %v within 5%%", w, got, n, want)
		}
	}
	t.Logf("keys by weight 5, 3, 2: %v of %d", counts, n)
}

// least_conn (and random_two, with two upstreams) sends new requests to
// the idle upstream while the other is busy with a slow one.
func TestPoolLeastConnPicksIdle(t *testing.T) {
	for _, lb := range []string{"least_conn", "random_two"} {
		t.Run(lb, func(t *testing.T) { testPicksIdle(t, lb) })
	}
}

func testPicksIdle(t *testing.T, lb string) {
	release := make(chan struct{})
	slowAt := make(chan string, 2)
	slow := func(name string) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/slow" {
				slowAt <- name
				<-release
			}
			io.WriteString(w, name)
		})
	}
	a, b := startTestUpstream(t, "a", slow("a")), startTestUpstream(t, "b", slow("b"))
	_, base := newTestPool(t, a.url()+" "+b.url(), poolEnv(func(o *Options) { o.ProxyLB = lb }))
	client := &http.Client{Timeout: 10 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		getBody(t, client, base+"/slow")
	}()
	busy := <-slowAt
	for i := range 50 {
		if _, body := getBody(t, client, base+"/fast"); body == busy {
			t.Fatalf("request %d went to %s, busy with a slow request", i, busy)
		}
	}
	close(release)
	<-done
}

// cookie:NAME sticks a client to the upstream of its first answer; a
// forged cookie is ignored; when that upstream dies the client moves to
// another, with a new cookie, and sticks there.
func TestPoolStickyCookie(t *testing.T) {
	ups := []*testUpstream{startTestUpstream(t, "a", nil), startTestUpstream(t, "b", nil), startTestUpstream(t, "c", nil)}
	byName := map[string]*testUpstream{}
	var urls []string
	for _, u := range ups {
		byName[u.name] = u
		urls = append(urls, u.url())
	}
	_, base := newTestPool(t, strings.Join(urls, " "), poolEnv(func(o *Options) { o.ProxyLB = "cookie:srv" }))
	jar, _ := cookiejar.New(nil)
	client := &http.Client{Timeout: 10 * time.Second, Jar: jar}
	_, first := getBody(t, client, base+"/")
	for i := range 30 {
		if _, got := getBody(t, client, base+"/"); got != first {
			t.Fatalf("request %d went to %s, not %s where the cookie points", i, got, first)
		}
	}
	// Other clients spread: the cookie is per client.
	seen := map[string]bool{}
	for range 6 {
		_, got := getBody(t, &http.Client{Timeout: 10 * time.Second}, base+"/")
		seen[got] = true
	}
	if len(seen) < 2 {
		t.Fatalf("new clients all went to %v", seen)
	}
	// A forged cookie (another id, or a bad signature) is not followed.
	forged := &http.Client{Timeout: 10 * time.Second}
	for _, v := range []string{memberID(ups[0].url()) + ".AAAAAAAAAAAAAAAAAAAAAA", "x.y", ""} {
		req, _ := http.NewRequest("GET", base+"/", nil)
		req.Header.Set("Cookie", "srv="+v)
		resp, err := forged.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if len(resp.Header.Values("Set-Cookie")) != 1 {
			t.Fatalf("forged cookie %q: Set-Cookie %q, want a fresh one", v, resp.Header.Values("Set-Cookie"))
		}
	}

	byName[first].kill()
	_, moved := getBody(t, client, base+"/")
	if moved == first || byName[moved] == nil {
		t.Fatalf("after %s died the client got %q", first, moved)
	}
	for i := range 30 {
		if _, got := getBody(t, client, base+"/"); got != moved {
			t.Fatalf("request %d after the fail-over went to %s, not %s", i, got, moved)
		}
	}
}

// With every upstream down the answer is a fast 503 with Retry-After, and
// counted.
func TestPoolAllDown(t *testing.T) {
	a, b := startTestUpstream(t, "a", nil), startTestUpstream(t, "b", nil)
	pl, base := newTestPool(t, a.url()+" "+b.url(), poolEnv(func(o *Options) { o.ProxyFailTimeout = 30 * time.Second }))
	a.kill()
	b.kill()
	client := &http.Client{Timeout: 10 * time.Second}
	// The first request finds both dead, marking them down: 502.
	if code, _ := getBody(t, client, base+"/"); code != http.StatusBadGateway {
		t.Fatalf("first request: %d, want 502", code)
	}
	start := time.Now()
	resp, err := client.Get(base + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("all down: %d Retry-After %q, want 503 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	if ra := resp.Header.Get("Retry-After"); ra != "30" && ra != "29" {
		t.Fatalf("Retry-After %s, want the 30s of proxy_fail_timeout", ra)
	}
	if took := time.Since(start); took > time.Second {
		t.Fatalf("503 took %v", took)
	}
	if st := pl.state(time.Now()); st.Unavailable != 1 {
		t.Fatalf("state %+v, want 1 unavailable", st)
	}
}

// An upstream that takes a request and closes without a byte of answer:
// a GET goes on to the next upstream, a POST is never sent twice.
func TestPoolRetriesOnlyIdempotent(t *testing.T) {
	dropper, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer dropper.Close()
	var dropped atomic.Int64
	go func() {
		for {
			c, err := dropper.Accept()
			if err != nil {
				return
			}
			go func() {
				buf := make([]byte, 4096)
				c.Read(buf)
				dropped.Add(1)
				c.Close()
			}()
		}
	}()
	good := startTestUpstream(t, "good", nil)
	// round_robin over weights 1, 1: each request tries the dropper
	// first every other time; buffering makes the POST body replayable,
	// which must still not make a POST retried.
	_, base := newTestPool(t, "http://"+dropper.Addr().String()+" "+good.url(), poolEnv(func(o *Options) {
		o.ProxyMaxFails = 0
		o.ProxyRequestBuffering = true
	}))
	client := &http.Client{Timeout: 10 * time.Second}
	for i := range 6 {
		if code, body := getBody(t, client, base+"/"); code != 200 || body != "good" {
			t.Fatalf("GET %d: %d %q", i, code, body)
		}
	}
	var fails int
	for range 6 {
		resp, err := client.Post(base+"/", "text/plain", strings.NewReader("pay once"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusBadGateway {
			fails++
		}
	}
	if fails != 3 || good.hits.Load() != 6+3 {
		t.Fatalf("POSTs: %d failed, good upstream saw %d requests; want 3 failed and none sent twice", fails, good.hits.Load())
	}
}

// Kill one of three upstreams during a 20 s load run: no request fails
// once the first failure is seen, active checks mark it down within two
// intervals, and it is back in rotation after it returns.
func TestPoolKillOneUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("20 s load run")
	}
	ups := []*testUpstream{startTestUpstream(t, "a", nil), startTestUpstream(t, "b", nil), startTestUpstream(t, "c", nil)}
	const interval = 400 * time.Millisecond
	pl, base := newTestPool(t, ups[0].url()+" "+ups[1].url()+" "+ups[2].url(), poolEnv(func(o *Options) {
		o.ProxyHealthURI = "/health"
		o.ProxyHealthInterval = interval
		o.ProxyHealthTimeout = 300 * time.Millisecond
		o.ProxyFailTimeout = time.Second
	}))
	victim := ups[2]
	isDown := func() (passive, active bool) {
		m := pl.members[2]
		return !m.up(time.Now()), m.activeDown.Load()
	}

	type result struct {
		start time.Time
		code  int
		body  string
	}
	var (
		mu      sync.Mutex
		results []result
	)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
			for i := 0; i < 200000 && ctx.Err() == nil; i++ {
				r := result{start: time.Now()}
				resp, err := client.Get(fmt.Sprintf("%s/w%d/%d", base, w, i))
				if err == nil {
					b, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					r.code, r.body = resp.StatusCode, string(b)
				}
				mu.Lock()
				results = append(results, r)
				mu.Unlock()
				time.Sleep(2 * time.Millisecond)
			}
		}()
	}

	time.Sleep(4 * time.Second)
	killed := time.Now()
	checksAtKill := ups[0].checks.Load()
	victim.kill()
	// Marked down by the active checks within two intervals. An interval
	// is counted by the checks a live upstream got meanwhile, not by the
	// wall clock, which a loaded machine stretches: the two failed checks
	// fall needs, and the one that may have been under way at the kill.
	var activeAt time.Duration
	var rounds int64
	for time.Since(killed) < 15*time.Second {
		if _, active := isDown(); active {
			activeAt = time.Since(killed)
			rounds = ups[0].checks.Load() - checksAtKill
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if activeAt == 0 || rounds > 3 {
		t.Errorf("active checks marked the killed upstream down after %v and %d rounds of checks, want within 2 intervals (%v each)", activeAt, rounds, interval)
	}
	time.Sleep(5 * time.Second)
	hitsBefore := victim.hits.Load()
	returned := time.Now()
	victim.start(victim.addr)
	var backAt time.Duration
	for time.Since(returned) < 5*time.Second {
		if passive, active := isDown(); !passive && !active {
			backAt = time.Since(returned)
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if backAt == 0 {
		t.Errorf("the upstream is not back in rotation 5s after it returned")
	}
	wg.Wait()
	if victim.hits.Load() <= hitsBefore+10 {
		t.Errorf("the returned upstream got %d requests after it came back", victim.hits.Load()-hitsBefore)
	}

	mu.Lock()
	defer mu.Unlock()
	var firstFail time.Time
	var failed, failedAfter, total int
	for _, r := range results {
		total++
		if r.code == 200 {
			continue
		}
		failed++
		if firstFail.IsZero() || r.start.Before(firstFail) {
			firstFail = r.start
		}
	}
	for _, r := range results {
		if r.code != 200 && r.start.After(firstFail) {
			failedAfter++
		}
	}
	st := pl.state(time.Now())
	t.Logf("%d requests, %d failed (%d started after the first failure); handed on %d; down by active checks after %v (%d rounds of checks), back after %v",
		total, failed, failedAfter, st.Retried, activeAt, rounds, backAt)
	if failedAfter > 0 {
		t.Errorf("%d requests failed after the first failure was seen", failedAfter)
	}
	if total < 1000 {
		t.Errorf("only %d requests in the run", total)
	}
}

// The metrics show each upstream's state and the pool's counters; a
// closed pool leaves them.
func TestPoolMetrics(t *testing.T) {
	a, b := startTestUpstream(t, "a", nil), startTestUpstream(t, "b", nil)
	m := NewMetrics(Sources{Server: "main", ProxyProtocol: func() ProxyProtocolCounts { return ProxyProtocolCounts{Accepted: 3, Untrusted: 2} }})
	env := poolEnv(nil)
	env.Metrics = m
	pl, base := newTestPool(t, a.url()+" "+b.url(), env)
	b.kill()
	client := &http.Client{Timeout: 10 * time.Second}
	for range 4 {
		if code, _ := getBody(t, client, base+"/"); code != 200 {
			t.Fatalf("status %d", code)
		}
	}
	scrape := func() string {
		mfs, err := m.Registry().Gather()
		if err != nil {
			t.Fatal(err)
		}
		var sb strings.Builder
		for _, mf := range mfs {
			for _, mt := range mf.Metric {
				sb.WriteString(mf.GetName())
				for _, l := range mt.Label {
					fmt.Fprintf(&sb, " %s=%s", l.GetName(), l.GetValue())
				}
				v := mt.GetGauge().GetValue() + mt.GetCounter().GetValue()
				fmt.Fprintf(&sb, " %v\n", v)
			}
		}
		return sb.String()
	}
	out := scrape()
	target := a.url() + " " + b.url()
	for _, want := range []string{
		"tlsedge_pool_upstream_up pool=" + target + " server=main upstream=" + a.url() + " 1",
		"tlsedge_pool_upstream_up pool=" + target + " server=main upstream=" + b.url() + " 0",
		"tlsedge_pool_retries_total pool=" + target + " server=main 1",
		"tlsedge_proxy_protocol_connections_total outcome=untrusted server=main 2",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("metrics lack %q:\n%s", want, out)
		}
	}
	if snap := m.Snapshot(); len(snap.Pools) != 1 || snap.Pools[0].Retried != 1 || snap.Pools[0].Upstreams[1].Up {
		t.Errorf("snapshot pools %+v", snap.Pools)
	}
	pl.Close()
	if out := scrape(); strings.Contains(out, "tlsedge_pool_upstream_up") {
		t.Errorf("a closed pool is still in the metrics")
	}
}

// header:NAME (and ip_hash, by the same rendezvous hashing) sends one key
// to one upstream; when that upstream dies, only its keys move.
func TestPoolHashKeepsKeysWhereTheyWere(t *testing.T) {
	ups := []*testUpstream{startTestUpstream(t, "a", nil), startTestUpstream(t, "b", nil), startTestUpstream(t, "c", nil)}
	byName := map[string]*testUpstream{"a": ups[0], "b": ups[1], "c": ups[2]}
	_, base := newTestPool(t, ups[0].url()+" "+ups[1].url()+" "+ups[2].url(), poolEnv(func(o *Options) { o.ProxyLB = "header:X-User" }))
	client := &http.Client{Timeout: 10 * time.Second}
	where := map[string]string{}
	for i := range 60 {
		key := fmt.Sprint("user-", i)
		_, where[key] = getBody(t, client, base+"/", "X-User", key)
		for range 3 {
			if _, again := getBody(t, client, base+"/", "X-User", key); again != where[key] {
				t.Fatalf("%s went to %s, then %s", key, where[key], again)
			}
		}
	}
	byName["b"].kill()
	moved := 0
	for key, was := range where {
		_, now := getBody(t, client, base+"/", "X-User", key)
		switch {
		case now == "b" || byName[now] == nil:
			t.Fatalf("%s answered by %q with b dead", key, now)
		case was != "b" && now != was:
			t.Fatalf("%s moved from %s to %s though %s is up", key, was, now, was)
		case was == "b":
			moved++
		}
	}
	if moved == 0 {
		t.Fatal("no key was on b")
	}

	// ip_hash: every request of this test comes from 127.0.0.1, so all go
	// to one upstream.
	_, ipBase := newTestPool(t, ups[0].url()+" "+ups[2].url(), poolEnv(func(o *Options) { o.ProxyLB = "ip_hash" }))
	_, first := getBody(t, client, ipBase+"/")
	for range 10 {
		if _, got := getBody(t, client, ipBase+"/"); got != first {
			t.Fatalf("ip_hash sent one client to %s and %s", first, got)
		}
	}
}

// A streamed body (proxy_request_buffering off) goes on to another
// upstream when the first could not be connected to: not a byte of it was
// read yet.
func TestPoolStreamedBodyAfterRefusedConnection(t *testing.T) {
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadURL := "http://" + dead.Addr().String()
	dead.Close()
	echo := startTestUpstream(t, "echo", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Write(b)
	}))
	_, base := newTestPool(t, deadURL+" "+echo.url(), poolEnv(func(o *Options) { o.ProxyMaxFails = 0 }))
	client := &http.Client{Timeout: 10 * time.Second}
	for i := range 4 {
		body := strings.Repeat(fmt.Sprint("part ", i, " "), 5000)
		pr, pw := io.Pipe()
		go func() {
			pw.Write([]byte(body[:len(body)/2]))
			pw.Write([]byte(body[len(body)/2:]))
			pw.Close()
		}()
		resp, err := client.Post(base+"/", "text/plain", pr) // chunked: streamed
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(got) != body {
			t.Fatalf("POST %d: %d, %d bytes back of %d", i, resp.StatusCode, len(got), len(body))
		}
	}
}

// A response cut off mid-body (the proxy aborts the client's answer by
// panicking) still ends the request's count in flight, which least_conn
// relies on.
func TestPoolInflightAfterAbort(t *testing.T) {
	cut := startTestUpstream(t, "cut", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "1000")
		w.Write([]byte("short"))
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler)
	}))
	pl, base := newTestPool(t, cut.url()+";weight=1", poolEnv(nil))
	client := &http.Client{Timeout: 10 * time.Second}
	for range 3 {
		if resp, err := client.Get(base + "/"); err == nil {
			io.ReadAll(resp.Body)
			resp.Body.Close()
		}
	}
	if n := pl.members[0].inflight.Load(); n != 0 {
		t.Fatalf("in flight %d after the requests ended", n)
	}
}

// A reload's new pool keeps the health of the upstreams it shares with
// the pool it replaces: one known to be down stays out of rotation until
// its checks pass again.
func TestPoolReloadKeepsHealth(t *testing.T) {
	a, b := startTestUpstream(t, "a", nil), startTestUpstream(t, "b", nil)
	c := startTestUpstream(t, "c", nil)
	env := poolEnv(func(o *Options) {
		o.ProxyHealthURI = "/health"
		o.ProxyHealthInterval = 200 * time.Millisecond
		o.ProxyHealthTimeout = 100 * time.Millisecond
	})
	env.Metrics = NewMetrics(Sources{})
	old, _ := newTestPool(t, a.url()+" "+b.url(), env)
	b.kill()
	deadline := time.Now().Add(5 * time.Second)
	for !old.members[1].activeDown.Load() {
		if time.Now().After(deadline) {
			t.Fatal("b never marked down")
		}
		time.Sleep(10 * time.Millisecond)
	}
	// The reload adds c and keeps a and b.
	next, base := newTestPool(t, a.url()+" "+b.url()+" "+c.url(), env)
	st := next.state(time.Now())
	if !st.Upstreams[0].Up || st.Upstreams[1].Up || !st.Upstreams[1].HealthDown || !st.Upstreams[2].Up {
		t.Fatalf("after the reload: %+v; want b still down, a and c up", st.Upstreams)
	}
	client := &http.Client{Timeout: 10 * time.Second}
	for range 10 {
		if code, _ := getBody(t, client, base+"/"); code != 200 {
			t.Fatalf("status %d", code)
		}
	}
	if st := next.state(time.Now()); st.Retried != 0 {
		t.Fatalf("%d requests were tried on b after the reload", st.Retried)
	}
}
