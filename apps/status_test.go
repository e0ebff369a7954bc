package apps

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"tlsedge/router"
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

// statusServer mounts, on the dispatcher a server uses, a status: handler
// at /status and a counted app at / and at /api, all measured by m (wrapped
// in front of the dispatcher, as the server wraps it).
func statusServer(t *testing.T, m *Metrics) string {
	t.Helper()
	app := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var code int
		fmt.Sscanf(r.URL.Query().Get("code"), "%d", &code)
		if code == 0 {
			code = 200
		}
		if d, err := time.ParseDuration(r.URL.Query().Get("sleep")); err == nil {
			time.Sleep(d)
		}
		if r.URL.Query().Has("panic") {
			panic(http.ErrAbortHandler)
		}
		w.WriteHeader(code)
	})
	d := router.NewDispatcher()
	for p, h := range map[string]http.Handler{"/status": mustNew(t, "status:", Env{Metrics: m}), "/": app, "/api": app} {
		if err := d.Mount(p, h); err != nil {
			t.Fatal(err)
		}
	}
	return serveTCP(t, m.Wrap(d))
}

func TestMetricsPrometheusText(t *testing.T) {
	now := time.Now()
	m := NewMetrics(fakeSources(now))
	front := statusServer(t, m)
	for _, q := range []string{"/app?code=200", "/app?code=200", "/app?code=404", "/app?code=502", "/app?sleep=30ms", "/api/x?code=503", "/api?panic=1"} {
		if strings.Contains(q, "panic") {
			// A POST: the client retries a GET whose connection broke.
			if resp, err := http.Post(front+q, "text/plain", nil); err == nil {
				resp.Body.Close()
			}
			continue
		}
		resp, err := http.Get(front + q)
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
		{"tlsedge_build_info", map[string]string{"goversion": runtime.Version()}, 1, false},
		{"tlsedge_http_requests_total", map[string]string{"server": "main", "route": "/", "code": "200"}, 3, false},
		{"tlsedge_http_requests_total", map[string]string{"route": "/", "code": "404"}, 1, false},
		{"tlsedge_http_requests_total", map[string]string{"route": "/", "code": "502"}, 1, false},
		{"tlsedge_http_requests_total", map[string]string{"route": "/api", "code": "503"}, 1, false},
		{"tlsedge_http_aborted_requests_total", map[string]string{"route": "/api"}, 1, false},
		{"tlsedge_http_aborted_requests_total", map[string]string{"route": "/"}, 0, false},
		{"tlsedge_http_request_duration_seconds", map[string]string{"route": "/"}, 5, false},
		{"tlsedge_http_request_duration_seconds", map[string]string{"route": "/api"}, 2, false},
		{"tlsedge_http_requests_in_flight", map[string]string{"server": "main"}, 1, false}, // the scrape itself
		{"tlsedge_workers", map[string]string{"state": "busy"}, 3, false},
		{"tlsedge_workers", map[string]string{"state": "idle"}, 7, false},
		{"tlsedge_queue_length", nil, 2, false},
		{"tlsedge_connections", map[string]string{"state": "active"}, 4, false},
		{"tlsedge_connections_accepted_total", nil, 42, false},
		{"tlsedge_core_rejections_total", map[string]string{"code": "503", "reason": "queue_full"}, 1, false},
		{"tlsedge_bytes_total", map[string]string{"direction": "written"}, 5000, false},
		{"tlsedge_tls_handshake_failures_total", map[string]string{"reason": "unknown_sni"}, 9, false},
		{"tlsedge_tls_handshakes_total", nil, 120 + 9 + 4 + 2, false},
		{"tlsedge_tls_plaintext_requests_total", nil, 5, false},
		{"tlsedge_certificate_expiry_timestamp_seconds", map[string]string{"name": "example.com", "source": "acme"}, float64(now.Add(10 * 24 * time.Hour).Unix()), false},
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
	var h *dto.Histogram
	for _, mt := range fams["tlsedge_http_request_duration_seconds"].Metric {
		for _, lp := range mt.Label {
			if lp.GetName() == "route" && lp.GetValue() == "/" {
				h = mt.Histogram
			}
		}
	}
	for _, b := range h.GetBucket() {
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

// metricsUnitRE finds units that are not base units (seconds, bytes) in a
// metric name, as a whole underscore-separated word.
var metricsUnitRE = regexp.MustCompile(`_(days|hours|minutes|milliseconds|microseconds|nanoseconds|ms|us|ns|kilobytes|megabytes|gigabytes|kb|mb|gb|kib|mib|percent)(_|$)`)

// TestMetricsNaming parses /status/metrics with Prometheus's own text parser
// (classic names only) and its linter, and checks every family against the
// naming rules: snake_case, counters and only counters end in _total, base
// units (_seconds, _bytes; no _days, no milliseconds), times and durations
// in seconds, every tlsedge_ series but build_info labelled with its
// server, and no label value empty.
func TestMetricsNaming(t *testing.T) {
	m := NewMetrics(fakeSources(time.Now()))
	front := statusServer(t, m)
	for _, q := range []string{"/app", "/api/x?code=500", "/status?format=json"} {
		resp, err := http.Get(front + q)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	resp, err := http.Get(front + "/status/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	parser := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := parser.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("Prometheus's parser refuses the output: %v", err)
	}
	problems, err := promlint.New(bytes.NewReader(body)).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
	snake := regexp.MustCompile(`^[a-z][a-z0-9]*(_[a-z0-9]+)*$`)
	ours := 0
	for name, f := range fams {
		isCounter := f.GetType() == dto.MetricType_COUNTER
		switch {
		case !snake.MatchString(name):
			t.Errorf("%s: not snake_case", name)
		case isCounter != strings.HasSuffix(name, "_total"):
			t.Errorf("%s: a %s; counters, and only counters, end in _total", name, f.GetType())
		case metricsUnitRE.MatchString(name) && name != "go_gc_gogc_percent":
			// go_gc_gogc_percent is the Go collector's: GOGC is a percentage
			// by definition.
			t.Errorf("%s: not a base unit (use _seconds or _bytes)", name)
		case regexp.MustCompile(`(duration|latency|expiry|timestamp|_time)`).MatchString(name) && !strings.Contains(name, "_seconds"):
			t.Errorf("%s: a time without _seconds", name)
		}
		if !strings.HasPrefix(name, "tlsedge_") {
			continue
		}
		ours++
		for _, mt := range f.Metric {
			hasServer := false
			for _, lp := range mt.Label {
				if !snake.MatchString(lp.GetName()) {
					t.Errorf("%s: label %q not snake_case", name, lp.GetName())
				}
				if lp.GetValue() == "" {
					t.Errorf("%s: label %s is empty", name, lp.GetName())
				}
				hasServer = hasServer || lp.GetName() == "server" && lp.GetValue() == "main"
			}
			if !hasServer && name != "tlsedge_build_info" {
				t.Errorf("%s%v: no server label", name, mt.Label)
			}
		}
	}
	if ours < 20 {
		t.Errorf("only %d tlsedge_ families: the sources were not read", ours)
	}
	for _, gone := range []string{"tlsedge_http_errors_total", "tlsedge_certificate_expiry_days"} {
		if _, ok := fams[gone]; ok {
			t.Errorf("%s is still served", gone)
		}
	}
}

// TestMetricsWrapAllocs: counting a request by route costs no allocation
// once the route has been seen (the writer in front is already a recorder,
// as when the access log wraps outside the metrics).
func TestMetricsWrapAllocs(t *testing.T) {
	m := NewMetrics(Sources{})
	d := router.NewDispatcher()
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(204) })
	d.Mount("/", ok)
	h := m.Wrap(d)
	r := httptest.NewRequest("GET", "/x", nil)
	w := &recorder{ResponseWriter: httptest.NewRecorder()}
	h.ServeHTTP(w, r)
	if n := testing.AllocsPerRun(100, func() { h.ServeHTTP(w, r) }); n != 0 {
		t.Errorf("%v allocations per request", n)
	}
	if got := m.Snapshot().Routes; len(got) != 1 || got[0].Route != "/" || got[0].Requests != 101+1 {
		t.Errorf("routes %+v", got)
	}
}
