package httpcore

import (
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Many clients through a small pool and queue: every request gets either
// its answer or a clean 503, and the figures add up.
func TestConcurrentClients(t *testing.T) {
	ts := startServer(t, echoHandler(), func(o *Options) {
		o.ThreadPool, o.ThreadPoolMax, o.AcceptedQueueSize = 2, 4, 64
		o.AcceptedQueueTimeout = 5 * time.Second
	})
	tr := &http.Transport{MaxIdleConnsPerHost: 32}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	var ok, busy atomic.Int64
	var wg sync.WaitGroup
	for g := 0; g < 32; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 25; i++ {
				body := strings.Repeat("x", g*10+i)
				resp, err := client.Post("http://"+ts.addr+"/p", "text/plain", strings.NewReader(body))
				if err != nil {
					t.Error(err)
					return
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				switch {
				case resp.StatusCode == 200 && string(b) == body:
					ok.Add(1)
				case resp.StatusCode == 503:
					busy.Add(1)
				default:
					t.Errorf("status %d body %q", resp.StatusCode, b)
					return
				}
			}
		}(g)
	}
	wg.Wait()
	// A request is counted once its response is out, which the client may
	// see a moment before the counter moves.
	st := ts.core.Stats()
	for deadline := time.Now().Add(2 * time.Second); st.Requests != uint64(ok.Load()) && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
		st = ts.core.Stats()
	}
	if ok.Load()+busy.Load() != 32*25 || st.Requests != uint64(ok.Load()) || st.Threads > 4 {
		t.Fatalf("ok %d busy %d; stats requests %d threads %d", ok.Load(), busy.Load(), st.Requests, st.Threads)
	}
}
