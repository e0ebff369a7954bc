package apps

import (
	"crypto/sha256"
	_ "embed"
	"encoding/base64"
	"encoding/json"
	"log/slog"
	"mime"
	"net/http"
	"regexp"
	"strings"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

//go:embed status.html
var statusPage []byte

// status serves a status: mount. PREFIX/metrics is Prometheus text; any other
// path is the snapshot as JSON when the client asks for application/json (or
// ?format=json), and otherwise the HTML page, which polls that JSON every
// second and draws its charts in place. The page is self-contained: one
// document, inline script and style, no third-party requests, which a
// Content-Security-Policy pins down.
type status struct {
	m       *Metrics
	metrics http.Handler
	csp     string
	log     *slog.Logger
}

func newStatus(env Env) *status {
	m := env.Metrics
	if m == nil {
		m = NewMetrics(Sources{})
	}
	log := env.logger()
	return &status{
		m: m,
		metrics: promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
			ErrorLog:      slog.NewLogLogger(log.Handler(), slog.LevelWarn),
			ErrorHandling: promhttp.ContinueOnError,
		}),
		csp: pageCSP(statusPage),
		log: log,
	}
}

var scriptRE = regexp.MustCompile(`(?s)<script>(.*?)</script>`)

// pageCSP allows exactly the page's own inline script (by hash), its inline
// style, and fetches back to the same origin.
func pageCSP(page []byte) string {
	var hashes []string
	for _, m := range scriptRE.FindAllSubmatch(page, -1) {
		sum := sha256.Sum256(m[1])
		hashes = append(hashes, "'sha256-"+base64.StdEncoding.EncodeToString(sum[:])+"'")
	}
	return "default-src 'none'; script-src " + strings.Join(hashes, " ") +
		"; style-src 'unsafe-inline'; connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
}

func (s *status) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/metrics" || strings.HasSuffix(r.URL.Path, "/metrics") {
		s.metrics.ServeHTTP(w, r)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "Method Not Allowed", http.StatusMethodNotAllowed)
		return
	}
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	h.Set("Vary", "Accept")
	h.Set("X-Content-Type-Options", "nosniff")
	if wantsJSON(r) {
		h.Set("Content-Type", "application/json")
		if r.Method == http.MethodHead {
			return
		}
		enc := json.NewEncoder(w)
		if err := enc.Encode(s.m.Snapshot()); err != nil {
			s.log.Debug("status: writing snapshot", "err", err)
		}
		return
	}
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", s.csp)
	h.Set("Referrer-Policy", "no-referrer")
	if r.Method == http.MethodHead {
		return
	}
	w.Write(statusPage)
}

// wantsJSON reports whether the client asked for the snapshot rather than
// the page: ?format=json, or an Accept that names application/json and not
// text/html (browsers list text/html; scripts and curl -H do not).
func wantsJSON(r *http.Request) bool {
	if r.URL.Query().Get("format") == "json" {
		return true
	}
	isJSON, isHTML := false, false
	for _, v := range r.Header.Values("Accept") {
		for part := range strings.SplitSeq(v, ",") {
			mt, params, err := mime.ParseMediaType(strings.TrimSpace(part))
			if err != nil || params["q"] == "0" {
				continue
			}
			switch mt {
			case "application/json":
				isJSON = true
			case "text/html":
				isHTML = true
			}
		}
	}
	return isJSON && !isHTML
}
