package server

import (
	"io"
	"net/http"
	"regexp"
	"sync"
	"testing"
	"time"
)

// Every request gets its id in the core, before it waits for a worker: a
// handler sees it (a client's own replaced, the peer being no trusted
// proxy), and the core's own 503 for a full pool carries it in its body.
func TestRequestIDFromTheCore(t *testing.T) {
	release := make(chan struct{})
	var once sync.Once
	defer once.Do(func() { close(release) })
	seen := make(chan string, 4)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen <- r.Header.Get("X-Request-Id")
		if r.URL.Path == "/slow" {
			<-release
		}
	})
	c := plainConfig(t, h)
	c.Core.ThreadPool, c.Core.ThreadPoolMax, c.Core.AcceptedQueueSize = 1, 1, 0
	s := startServer(t, c)
	base := "http://" + s.BindAddr().String()
	hexID := regexp.MustCompile(`^[0-9a-f]{16}$`)

	req, _ := http.NewRequest("GET", base+"/", nil)
	req.Header.Set("X-Request-Id", "chosen-by-the-client")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if id := <-seen; !hexID.MatchString(id) {
		t.Fatalf("handler saw request id %q, want a fresh one", id)
	}

	go func() {
		if resp, err := http.Get(base + "/slow"); err == nil {
			resp.Body.Close()
		}
	}()
	<-seen // the only worker is busy now
	resp, err = (&http.Client{Timeout: 5 * time.Second}).Get(base + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 503 || !regexp.MustCompile(`\nrequest id: [0-9a-f]{16}\n$`).Match(body) {
		t.Fatalf("%d %q: want the core's 503 with a request id", resp.StatusCode, body)
	}
	once.Do(func() { close(release) })
}
