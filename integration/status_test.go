package integration

import (
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The status: mount through the binary: the JSON snapshot for programs,
// Prometheus text with live figures (requests, plaintext-on-TLS, the
// certificate's days left) and the HTML page for people.
func TestStatusMount(t *testing.T) {
	p := start(t, "--socket-port", "0", "--statistics", "--mount", "/=text:hi", "--mount", "/status=status:")
	c := httpsClient(t, p.caFile())
	base := p.base("main")
	for range 5 {
		get(t, c, base+"/")
	}
	rawExchange(t, strings.TrimPrefix(base, "https://"), "GET / HTTP/1.1\r\nHost: x\r\n\r\n") // plaintext on TLS

	req, _ := http.NewRequest("GET", base+"/status", nil)
	req.Header.Set("Accept", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var snap map[string]any
	err = json.NewDecoder(resp.Body).Decode(&snap)
	resp.Body.Close()
	if err != nil || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		t.Fatalf("JSON snapshot: %v %s", err, resp.Header.Get("Content-Type"))
	}
	code, metrics := get(t, c, base+"/status/metrics")
	if code != 200 {
		t.Fatalf("/status/metrics: %d", code)
	}
	for _, want := range []string{`tlsedge_http_requests_total{code="200",route="/",server="main"}`, `tlsedge_tls_plaintext_requests_total{server="main"} 1`,
		`tlsedge_certificate_expiry_timestamp_seconds{name="localhost",server="main",source="internal"} `, "tlsedge_workers", "tlsedge_build_info{"} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	// The internal CA's leaf lives about a week.
	_, expiry, _ := strings.Cut(metrics, `tlsedge_certificate_expiry_timestamp_seconds{name="localhost",server="main",source="internal"} `)
	expiry, _, _ = strings.Cut(expiry, "\n")
	if at, err := strconv.ParseFloat(expiry, 64); err != nil || time.Until(time.Unix(int64(at), 0)) < 6*24*time.Hour || time.Until(time.Unix(int64(at), 0)) > 8*24*time.Hour {
		t.Errorf("certificate expiry %q: want a Unix time about a week ahead", expiry)
	}
	req, _ = http.NewRequest("GET", base+"/status", nil)
	req.Header.Set("Accept", "text/html")
	resp, err = c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(page), "<html") || strings.Contains(string(page), "https://cdn") {
		t.Fatalf("status page: %.200s", page)
	}
}
