package server

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"tlsedge/apps"
	"tlsedge/router"
)

// namedUpstream answers its name; /slow waits hold first.
func namedUpstream(t *testing.T, name string, hits *atomic.Int64, slow chan struct{}) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		if r.URL.Path == "/slow" {
			<-slow
		}
		io.WriteString(w, name)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return "http://" + ln.Addr().String()
}

// A reload that removes an upstream from a pool lets the requests in
// flight on it finish (it drains, even past shutdown_timeout), sends new
// requests only to the upstreams left, and a reload that adds one puts
// it in rotation.
func TestReloadPoolAddsAndRemovesUpstreams(t *testing.T) {
	var hitsA, hitsB, hitsC atomic.Int64
	slow := make(chan struct{})
	a := namedUpstream(t, "a", &hitsA, slow)
	b := namedUpstream(t, "b", &hitsB, slow)
	c := namedUpstream(t, "c", &hitsC, slow)
	cfg := func(mount string) Config {
		cf := plainConfig(t, nil)
		cf.Handlers = nil
		cf.ShutdownTimeout = 300 * time.Millisecond
		cf.Mount = router.MustMounts(mount)
		cf.Apps.ProxyLB = "least_conn"
		opts := cf.Apps
		cf.Targets = func(target string) (http.Handler, error) { return apps.New(target, apps.Env{Options: opts}) }
		return cf
	}
	s := startServer(t, cfg("/="+a+" "+b))
	base := "http://" + s.BindAddr().String()
	client := &http.Client{Timeout: 10 * time.Second}
	get := func(path string) (int, string) {
		resp, err := client.Get(base + path)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}

	// Four slow requests in flight: least_conn spreads them, two on a.
	var wg sync.WaitGroup
	answers := make(chan string, 4)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			code, body := get("/slow")
			answers <- fmt.Sprint(code, " ", body)
		}()
	}
	for hitsA.Load()+hitsB.Load() < 4 {
		time.Sleep(5 * time.Millisecond)
	}
	if err := s.Reconfigure(context.Background(), cfg("/="+b+" "+c)); err != nil {
		t.Fatal(err)
	}
	a0 := hitsA.Load()
	for i := range 30 {
		if code, body := get("/"); code != 200 || body == "a" {
			t.Fatalf("request %d after a was removed: %d %q", i, code, body)
		}
	}
	if hitsC.Load() == 0 || hitsA.Load() != a0 {
		t.Fatalf("after the reload: c got %d requests, a %d more", hitsC.Load(), hitsA.Load()-a0)
	}
	// The old pool outlives shutdown_timeout: its requests still finish.
	time.Sleep(500 * time.Millisecond)
	close(slow)
	wg.Wait()
	close(answers)
	fromA := 0
	for ans := range answers {
		if ans != "200 a" && ans != "200 b" {
			t.Fatalf("a request in flight across the reload got %q", ans)
		}
		if ans == "200 a" {
			fromA++
		}
	}
	if fromA == 0 {
		t.Fatal("no request was in flight on the removed upstream")
	}

	if err := s.Reconfigure(context.Background(), cfg("/="+a+" "+b+" "+c)); err != nil {
		t.Fatal(err)
	}
	for range 30 {
		if code, _ := get("/"); code != 200 {
			t.Fatalf("after adding a back: %d", code)
		}
	}
	if hitsA.Load() == a0 {
		t.Fatal("the upstream added back got no request")
	}
}
