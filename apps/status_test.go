package apps

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"tlsedge/server/httpcore"
)

// fakeSources returns fixed core and TLS figures, with a certificate that
// expires in ten days.
func fakeSources(now time.Time) Sources {
	return Sources{
		Core: func() httpcore.Stats {
			return httpcore.Stats{
				Enabled: true, Accepts: 42, Threads: 10, ThreadsIdle: 7, Queue: 2,
				ConnectionsOpen: 5, ConnectionsIdle: 1, Requests: 99, BytesRead: 1000, BytesWritten: 5000,
				Rejections: []httpcore.Rejection{{Status: 400, Reason: "bad_request_line", Count: 3}, {Status: 503, Reason: "queue_full", Count: 1}},
			}
		},
		TLS: func() TLSStats {
			return TLSStats{
				Handshakes: []HandshakeCount{
					{Result: "ok", Count: 120},
					{Result: "failed", Reason: "unknown_sni", Count: 9},
					{Result: "failed", Reason: "bad_certificate", Count: 4},
					{Result: "failed", Reason: "protocol_version", Count: 2},
				},
				PlaintextOnTLS: 5,
				Certificates: []CertStatus{
					{Name: "example.com", Source: "acme", NotAfter: now.Add(10 * 24 * time.Hour)},
					{Name: "internal.example", Source: "file", NotAfter: now.Add(80 * 24 * time.Hour)},
					{Name: "old.example", Source: "file", NotAfter: now.Add(3 * 24 * time.Hour)},
				},
				ACME: []EventCount{{Event: "renewed", Count: 2}, {Event: "failed", Count: 1}},
			}
		},
	}
}

// statusServer mounts a status: handler at /status (prefix stripped, as the
// dispatcher does) and a counted app at /, both measured by m.
func statusServer(t *testing.T, m *Metrics) string {
	t.Helper()
	st := mustNew(t, "status:", Env{Metrics: m})
	mux := http.NewServeMux()
	mux.Handle("/status/", http.StripPrefix("/status", st))
	mux.Handle("/status", http.StripPrefix("/status", st))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		var code int
		fmt.Sscanf(r.URL.Query().Get("code"), "%d", &code)
		if code == 0 {
			code = 200
		}
		if d, err := time.ParseDuration(r.URL.Query().Get("sleep")); err == nil {
			time.Sleep(d)
		}
		w.WriteHeader(code)
	})
	return serveTCP(t, m.Wrap(mux))
}

func TestMetricsPrometheusText(t *testing.T) {
	m := NewMetrics(fakeSources(time.Now()))
	front := statusServer(t, m)
	for _, q := range []string{"code=200", "code=200", "code=404", "code=502", "sleep=30ms"} {
		resp, err := http.Get(front + "/app?" + q)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	resp, err := http.Get(front + "/status/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("Content-Type %q", ct)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	value := func(name string, labels map[string]string) (float64, bool) {
		f, ok := fams[name]
		if !ok {
			return 0, false
		}
	metrics:
		for _, mt := range f.Metric {
			for k, v := range labels {
				found := false
				for _, lp := range mt.Label {
					if lp.GetName() == k && lp.GetValue() == v {
						found = true
					}
				}
				if !found {
					continue metrics
				}
			}
			switch f.GetType() {
			case dto.MetricType_COUNTER:
				return mt.Counter.GetValue(), true
			case dto.MetricType_GAUGE:
				return mt.Gauge.GetValue(), true
			case dto.MetricType_HISTOGRAM:
				return float64(mt.Histogram.GetSampleCount()), true
			}
		}
		return 0, false
	}
	tests := []struct {
		name   string
		labels map[string]string
		want   float64
		approx bool
	}{
		{"tlsedge_http_requests_total", map[string]string{"code": "200"}, 3, false},
		{"tlsedge_http_requests_total", map[string]string{"code": "404"}, 1, false},
		{"tlsedge_http_requests_total", map[string]string{"code": "502"}, 1, false},
		{"tlsedge_http_errors_total", nil, 1, false},
		{"tlsedge_http_request_duration_seconds", nil, 5, false},
		{"tlsedge_http_requests_in_flight", nil, 1, false}, // the scrape itself
		{"tlsedge_workers", map[string]string{"state": "busy"}, 3, false},
		{"tlsedge_workers", map[string]string{"state": "idle"}, 7, false},
		{"tlsedge_queue_length", nil, 2, false},
		{"tlsedge_connections", map[string]string{"state": "active"}, 4, false},
		{"tlsedge_connections_accepted_total", nil, 42, false},
		{"tlsedge_core_rejections_total", map[string]string{"code": "503", "reason": "queue_full"}, 1, false},
		{"tlsedge_bytes_total", map[string]string{"direction": "written"}, 5000, false},
		{"tlsedge_tls_handshakes_total", map[string]string{"result": "failed", "reason": "unknown_sni"}, 9, false},
		{"tlsedge_tls_handshakes_total", map[string]string{"result": "ok"}, 120, false},
		{"tlsedge_tls_plaintext_requests_total", nil, 5, false},
		{"tlsedge_certificate_expiry_days", map[string]string{"name": "example.com", "source": "acme"}, 10, true},
		{"tlsedge_acme_events_total", map[string]string{"event": "renewed"}, 2, false},
		{"go_goroutines", nil, 0, true},
	}
	for _, tt := range tests {
		got, ok := value(tt.name, tt.labels)
		switch {
		case !ok:
			t.Errorf("%s%v missing", tt.name, tt.labels)
		case tt.approx && tt.want != 0 && (got < tt.want-0.01 || got > tt.want+0.01):
			t.Errorf("%s%v = %v, want about %v", tt.name, tt.labels, got, tt.want)
		case !tt.approx && got != tt.want:
			t.Errorf("%s%v = %v, want %v", tt.name, tt.labels, got, tt.want)
		}
	}
	// The 30ms request lands above the 25ms bucket boundary.
	h := fams["tlsedge_http_request_duration_seconds"].Metric[0].Histogram
	for _, b := range h.Bucket {
		if b.GetUpperBound() == 0.025 && b.GetCumulativeCount() != 4 {
			t.Errorf("le=0.025 holds %d, want 4", b.GetCumulativeCount())
		}
	}
}

func TestStatusNegotiation(t *testing.T) {
	m := NewMetrics(fakeSources(time.Now()))
	front := statusServer(t, m)
	http.Get(front + "/app?code=201")
	tests := []struct {
		path, accept, wantType string
	}{
		{"/status", "application/json", "application/json"},
		{"/status/", "application/json, */*;q=0.1", "application/json"},
		{"/status?format=json", "", "application/json"},
		{"/status", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", "text/html; charset=utf-8"},
		{"/status", "", "text/html; charset=utf-8"},
	}
	for _, tt := range tests {
		t.Run(tt.path+" "+tt.accept, func(t *testing.T) {
			req, _ := http.NewRequest("GET", front+tt.path, nil)
			if tt.accept != "" {
				req.Header.Set("Accept", tt.accept)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if got := resp.Header.Get("Content-Type"); got != tt.wantType {
				t.Fatalf("Content-Type %q, want %q", got, tt.wantType)
			}
			if tt.wantType == "application/json" {
				var s Snapshot
				if err := json.Unmarshal(body, &s); err != nil {
					t.Fatal(err)
				}
				if s.ByStatus["201"] != 1 || s.Core == nil || s.Core.Threads != 10 || s.TLS == nil || len(s.TLS.Certificates) != 3 || len(s.Latency.Bounds) != len(latencyBuckets) {
					t.Errorf("snapshot %+v", s)
				}
				return
			}
			csp := resp.Header.Get("Content-Security-Policy")
			if !strings.Contains(csp, "script-src 'sha256-") || !strings.Contains(csp, "default-src 'none'") {
				t.Errorf("CSP %q", csp)
			}
			for _, bad := range []string{"http://", "https://", "//cdn", "src=\"http"} {
				if strings.Contains(string(body), bad) {
					t.Errorf("page refers to %q: not self-contained", bad)
				}
			}
		})
	}
}
