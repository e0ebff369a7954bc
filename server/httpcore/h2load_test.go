package httpcore

import (
	"context"
	"fmt"
	"net/http"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"tlsedge/internal/testenv"
)

// h2load against the core's h2 engine over TLS: 10,000 requests with 100
// streams in flight per connection, on one connection and on four, the
// server under the race detector when the package's tests are (make test).
// h2load does not check bodies, so each path has a body of its own length
// and content (the path repeated), the handler counts what it served per
// path, and h2load's figures must match the server's: every request
// succeeded with a 2xx, none failed, errored or timed out, and the DATA
// bytes h2load read are exactly the bodies the handler wrote for the
// requests it counted.
func TestH2LoadManyStreams(t *testing.T) {
	h2load := testenv.RequireTool(t, "h2load", "nghttp2-client")
	paths := []string{"/a", "/bb/1", "/ccc/22", "/dddd/333"}
	body := func(path string, i int) string {
		return strings.Repeat(path+";", 1+i*50)
	}
	for _, tt := range []struct {
		name    string
		clients int
	}{
		{"one connection", 1},
		{"four connections", 4},
	} {
		t.Run(tt.name, func(t *testing.T) {
			const requests, streams = 10000, 100
			var mu sync.Mutex
			served := map[string]int{}
			var wrong []string
			h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				for i, p := range paths {
					if r.URL.Path == p && r.Method == "GET" && r.ProtoMajor == 2 {
						mu.Lock()
						served[p]++
						mu.Unlock()
						b := body(p, i)
						w.Header().Set("Content-Length", strconv.Itoa(len(b)))
						w.Write([]byte(b))
						return
					}
				}
				mu.Lock()
				wrong = append(wrong, fmt.Sprintf("%s %s %s", r.Method, r.URL.Path, r.Proto))
				mu.Unlock()
				http.Error(w, "unexpected request", http.StatusNotFound)
			})
			c := ownCore(t, h, func(o *Options) { o.ThreadPool = 2 * streams })
			addr, _ := startTLS(t, c)
			args := []string{"-n", strconv.Itoa(requests), "-c", strconv.Itoa(tt.clients), "-m", strconv.Itoa(streams)}
			for _, p := range paths {
				args = append(args, "https://"+addr+p)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			out, err := exec.CommandContext(ctx, h2load, args...).CombinedOutput()
			if err != nil {
				t.Fatalf("h2load %s: %v\n%s", strings.Join(args, " "), err, out)
			}
			fig, err := h2loadFigures(string(out))
			if err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			if fig["h2"] != 1 {
				t.Fatalf("h2load did not speak h2 (ALPN):\n%s", out)
			}
			for k, want := range map[string]int64{"total": requests, "started": requests, "done": requests, "succeeded": requests,
				"failed": 0, "errored": 0, "timeout": 0, "2xx": requests, "3xx": 0, "4xx": 0, "5xx": 0} {
				if fig[k] != want {
					t.Errorf("h2load: %d %s, want %d", fig[k], k, want)
				}
			}
			mu.Lock()
			defer mu.Unlock()
			if len(wrong) > 0 {
				t.Errorf("%d requests the handler did not expect, the first: %s", len(wrong), wrong[0])
			}
			var n, data int64
			for i, p := range paths {
				n += int64(served[p])
				data += int64(served[p]) * int64(len(body(p, i)))
			}
			if n != requests {
				t.Errorf("the handler served %d requests (%v), want %d", n, served, requests)
			}
			if fig["data"] != data {
				t.Errorf("h2load read %d bytes of bodies, the handler wrote %d for its %d requests", fig["data"], data, n)
			}
			if st := c.Stats(); st.Requests != requests || len(st.Rejections) != 0 || st.StreamResets != 0 {
				t.Errorf("core: %d requests, rejections %v, %d stream resets; want %d, none, none", st.Requests, st.Rejections, st.StreamResets, requests)
			}
			if t.Failed() {
				t.Logf("h2load %s:\n%s", strings.Join(args, " "), out)
			}
		})
	}
}

// h2loadFigures reads h2load's summary: the requests line (total, started,
// done, succeeded, failed, errored, timeout), the status codes line (2xx,
// 3xx, 4xx, 5xx), the DATA bytes of the traffic line ("data"), and "h2" 1
// when the protocol line says h2 was negotiated.
func h2loadFigures(out string) (map[string]int64, error) {
	fig := map[string]int64{}
	for _, line := range strings.Split(out, "\n") {
		key, rest, ok := strings.Cut(line, ": ")
		if !ok {
			continue
		}
		switch key {
		case "requests", "status codes":
			for _, part := range strings.Split(rest, ", ") {
				f := strings.Fields(part)
				if len(f) != 2 {
					return nil, fmt.Errorf("h2load %s line: %q", key, line)
				}
				v, err := strconv.ParseInt(f[0], 10, 64)
				if err != nil {
					return nil, fmt.Errorf("h2load %s line: %q", key, line)
				}
				fig[f[1]] = v
			}
		case "traffic":
			m := regexp.MustCompile(`\((\d+)\) data`).FindStringSubmatch(rest)
			if m == nil {
				return nil, fmt.Errorf("h2load traffic line: %q", line)
			}
			fig["data"], _ = strconv.ParseInt(m[1], 10, 64)
		case "Application protocol":
			if strings.TrimSpace(rest) == "h2" {
				fig["h2"] = 1
			}
		}
	}
	for _, k := range []string{"total", "succeeded", "2xx", "data"} {
		if _, ok := fig[k]; !ok {
			return nil, fmt.Errorf("h2load's output has no %q figure", k)
		}
	}
	return fig, nil
}
