package server

import (
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"tlsedge/apps"
	"tlsedge/router"
)

// The status page and its metrics are served on a reserved lane: with every
// worker busy and a request queued, they still answer at once, and show
// the busy worker and the queue.
func TestStatusAnswersWhenPoolBusy(t *testing.T) {
	release := make(chan struct{})
	var once sync.Once
	defer once.Do(func() { close(release) })
	busy := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-release
		io.WriteString(w, "done")
	})
	c := plainConfig(t, busy)
	c.Handlers = map[string]http.Handler{"/app": busy}
	c.Mount = router.MustMounts("/status=status:")
	c.Targets = func(target string) (http.Handler, error) { return apps.New(target, apps.Env{}) }
	c.Core.ThreadPool, c.Core.ThreadPoolMax, c.Core.Statistics = 1, 1, true
	s := startServer(t, c)
	base := "http://" + s.BindAddr().String()

	var wg sync.WaitGroup
	for range 2 { // one holds the only worker, one waits in the queue
		wg.Go(func() {
			if resp, err := http.Get(base + "/app"); err == nil {
				resp.Body.Close()
			}
		})
	}
	deadline := time.Now().Add(5 * time.Second)
	for s.Stats().Queue < 1 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if s.Stats().Queue < 1 {
		t.Fatalf("the app requests did not fill the pool: %+v", s.Stats())
	}
	for _, path := range []string{"/status", "/status/metrics"} {
		cl := &http.Client{Timeout: 2 * time.Second}
		t0 := time.Now()
		resp, err := cl.Get(base + path)
		if err != nil {
			t.Fatalf("%s with every worker busy: %v", path, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("%s: %d %s", path, resp.StatusCode, body)
		}
		t.Logf("%s answered in %v with the pool full", path, time.Since(t0).Round(time.Millisecond))
		if path == "/status/metrics" && !strings.Contains(string(body), "tlsedge_") {
			t.Errorf("metrics body:\n%s", body)
		}
	}
	once.Do(func() { close(release) })
	wg.Wait()
}
