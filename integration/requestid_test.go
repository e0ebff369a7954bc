package integration

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// Request ids through the binary: a client's X-Request-Id is replaced (the
// client is no trusted proxy), a trusted proxy's is kept; either way the
// upstream receives the id the JSON access log writes, with the route, the
// time and the TLS facts.
func TestRequestIDThroughBinary(t *testing.T) {
	up := startUpstream(t)
	dir := t.TempDir()
	for _, tt := range []struct {
		name, trust, want string
	}{
		{"untrusted", "", ""},
		{"trusted", "127.0.0.1", "lb-7f3a"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			logFile := filepath.Join(dir, tt.name+".log")
			args := []string{"--socket-port", "0", "--mount", "/=http://" + up.addr, "--access-log", logFile, "--access-log-format", "json"}
			if tt.trust != "" {
				args = append(args, "--trusted-proxies", tt.trust)
			}
			p := start(t, args...)
			c := httpsClient(t, p.caFile())
			req, _ := http.NewRequest("GET", p.base("main")+"/rid", nil)
			req.Header.Set("X-Request-Id", "lb-7f3a")
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			got := up.lastHeaders().Get("X-Request-Id")
			if tt.want != "" && got != tt.want || tt.want == "" && !regexp.MustCompile(`^[0-9a-f]{16}$`).MatchString(got) {
				t.Fatalf("upstream got X-Request-Id %q, want %q (or a fresh id)", got, tt.want)
			}
			var e map[string]any
			deadline := time.Now().Add(5 * time.Second)
			for time.Now().Before(deadline) {
				b, _ := os.ReadFile(logFile)
				if line, _, ok := strings.Cut(string(b), "\n"); ok {
					if err := json.Unmarshal([]byte(line), &e); err != nil {
						t.Fatalf("%q: %v", line, err)
					}
					break
				}
				time.Sleep(10 * time.Millisecond)
			}
			if e["request_id"] != got || e["route"] != "/" || e["time"] == nil || e["tls_version"] != "TLSv1.3" {
				t.Errorf("log entry %v, upstream got id %q", e, got)
			}
		})
	}
}
