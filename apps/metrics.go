package apps

import (
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	dto "github.com/prometheus/client_model/go"

	"tlsedge/server/httpcore"
)

// TLSStats are the TLS and certificate figures the status page shows. The
// TLS and ACME code own them; the server hands a function returning them to
// NewMetrics. Counters only ever grow.
type TLSStats struct {
	Handshakes     []HandshakeCount `json:"handshakes"`       // by result ("ok", "failed") and reason
	PlaintextOnTLS uint64           `json:"plaintext_on_tls"` // plain HTTP requests caught on a TLS port
	Certificates   []CertStatus     `json:"certificates"`     // every certificate being served
	ACME           []EventCount     `json:"acme"`             // ACME events by kind (obtained, renewed, failed...)
}

// HandshakeCount counts TLS handshakes with one result and reason; reason is
// a short stable key such as "unknown_sni" or "bad_certificate", empty on
// success.
type HandshakeCount struct {
	Result string `json:"result"`
	Reason string `json:"reason,omitempty"`
	Count  uint64 `json:"count"`
}

// CertStatus is one certificate in service.
type CertStatus struct {
	Name     string    `json:"name"`   // what it is known by: its first SAN, or the config name
	Source   string    `json:"source"` // "file", "acme", "internal"...
	NotAfter time.Time `json:"not_after"`
}

// EventCount counts events of one kind.
type EventCount struct {
	Event string `json:"event"`
	Count uint64 `json:"count"`
}

// Sources are the figures Metrics reads at scrape time from the parts of the
// server that own them. A nil function leaves its figures out. They are first
// called at the first scrape or Snapshot, never by NewMetrics, so they may
// refer to a core built after the Metrics.
type Sources struct {
	Core func() httpcore.Stats
	TLS  func() TLSStats
}

// latencyBuckets span a cached static file (well under a millisecond) to a
// slow upstream (seconds).
var latencyBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// Metrics counts requests by status and their latency (Wrap), and serves
// those together with the core's and the TLS code's figures, as Prometheus
// text and as a JSON Snapshot. Its registry is its own: nothing is
// registered globally, so two servers in one process never collide.
type Metrics struct {
	reg      *prometheus.Registry
	src      Sources
	start    time.Time
	byStatus [600]atomic.Uint64 // index = status code; 0 holds out-of-range codes
	inFlight atomic.Int64
	latency  prometheus.Histogram
}

// NewMetrics returns a Metrics reading src at every scrape. The registry also
// carries the Go runtime and process collectors.
func NewMetrics(src Sources) *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry(), src: src, start: time.Now()}
	m.latency = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "tlsedge_http_request_duration_seconds",
		Help:    "Time from the handler starting a request to its response being written.",
		Buckets: latencyBuckets,
	})
	m.reg.MustRegister(m.latency, (*metricsCollector)(m),
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Registry is where the metrics live, for a caller that adds its own.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Wrap counts every request h serves: its final status and how long it took.
// The lead wraps the dispatcher with it so every mount is counted.
func (m *Metrics) Wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		m.inFlight.Add(1)
		rec, ok := w.(*recorder)
		if !ok {
			rec = &recorder{ResponseWriter: w}
		}
		defer func() {
			m.inFlight.Add(-1)
			code := rec.finalStatus()
			// An upgraded connection (WebSocket) lives as long as the client
			// keeps it open; its length is not a response latency.
			if code != http.StatusSwitchingProtocols {
				m.latency.Observe(time.Since(start).Seconds())
			}
			if code < 0 || code >= len(m.byStatus) {
				code = 0
			}
			m.byStatus[code].Add(1)
		}()
		h.ServeHTTP(rec, r)
	})
}

var (
	descRequests     = prometheus.NewDesc("tlsedge_http_requests_total", "Requests answered by handlers, by status code.", []string{"code"}, nil)
	descErrors       = prometheus.NewDesc("tlsedge_http_errors_total", "Requests answered with a 5xx status by handlers.", nil, nil)
	descInFlight     = prometheus.NewDesc("tlsedge_http_requests_in_flight", "Requests being handled now.", nil, nil)
	descRejections   = prometheus.NewDesc("tlsedge_core_rejections_total", "Requests the core answered itself, by status and reason.", []string{"code", "reason"}, nil)
	descAccepts      = prometheus.NewDesc("tlsedge_connections_accepted_total", "Connections accepted.", nil, nil)
	descSocketErrors = prometheus.NewDesc("tlsedge_socket_errors_total", "Accept and connection-level I/O errors.", nil, nil)
	descConns        = prometheus.NewDesc("tlsedge_connections", "Connections open now, by state.", []string{"state"}, nil)
	descH2           = prometheus.NewDesc("tlsedge_connections_h2", "Open connections served as HTTP/2.", nil, nil)
	descWorkers      = prometheus.NewDesc("tlsedge_workers", "Workers in the pool, by state.", []string{"state"}, nil)
	descQueue        = prometheus.NewDesc("tlsedge_queue_length", "Parsed requests waiting for a worker.", nil, nil)
	descCoreRequests = prometheus.NewDesc("tlsedge_core_requests_total", "Requests handed to handlers by the core.", nil, nil)
	descBytes        = prometheus.NewDesc("tlsedge_bytes_total", "Bytes exchanged with clients, by direction.", []string{"direction"}, nil)
	descWorkSeconds  = prometheus.NewDesc("tlsedge_work_seconds_total", "Seconds workers spent running handlers.", nil, nil)
	descHandshakes   = prometheus.NewDesc("tlsedge_tls_handshakes_total", "TLS handshakes by result and reason.", []string{"result", "reason"}, nil)
	descPlaintext    = prometheus.NewDesc("tlsedge_tls_plaintext_requests_total", "Plain HTTP requests received on a TLS port.", nil, nil)
	descCertDays     = prometheus.NewDesc("tlsedge_certificate_expiry_days", "Days until a certificate in service expires (negative: expired).", []string{"name", "source"}, nil)
	descACME         = prometheus.NewDesc("tlsedge_acme_events_total", "ACME events by kind.", []string{"event"}, nil)
)

// metricsCollector reads the counters and the sources at scrape time, so
// serving a request costs two atomic adds and a histogram observation.
type metricsCollector Metrics

// Describe lists the descriptors without collecting: registration happens
// in NewMetrics, before the core the sources read from may exist (the core
// is built around the handler Metrics wraps).
func (c *metricsCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descRequests, descErrors, descInFlight, descRejections, descAccepts,
		descSocketErrors, descConns, descH2, descWorkers, descQueue, descCoreRequests, descBytes, descWorkSeconds,
		descHandshakes, descPlaintext, descCertDays, descACME} {
		ch <- d
	}
}

func (c *metricsCollector) Collect(ch chan<- prometheus.Metric) {
	m := (*Metrics)(c)
	var errs uint64
	for code := range m.byStatus {
		n := m.byStatus[code].Load()
		if n == 0 {
			continue
		}
		if code >= 500 {
			errs += n
		}
		label := strconv.Itoa(code)
		if code == 0 {
			label = "other"
		}
		ch <- prometheus.MustNewConstMetric(descRequests, prometheus.CounterValue, float64(n), label)
	}
	ch <- prometheus.MustNewConstMetric(descErrors, prometheus.CounterValue, float64(errs))
	ch <- prometheus.MustNewConstMetric(descInFlight, prometheus.GaugeValue, float64(m.inFlight.Load()))
	if m.src.Core != nil {
		collectCore(ch, m.src.Core())
	}
	if m.src.TLS != nil {
		collectTLS(ch, m.src.TLS(), time.Now())
	}
}

func collectCore(ch chan<- prometheus.Metric, s httpcore.Stats) {
	gauge := func(d *prometheus.Desc, v float64, l ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, l...)
	}
	counter := func(d *prometheus.Desc, v float64, l ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, l...)
	}
	counter(descAccepts, float64(s.Accepts))
	counter(descSocketErrors, float64(s.SocketErrors))
	gauge(descConns, float64(s.ConnectionsOpen-s.ConnectionsIdle), "active")
	gauge(descConns, float64(s.ConnectionsIdle), "idle")
	gauge(descH2, float64(s.H2Connections))
	gauge(descWorkers, float64(s.Threads-s.ThreadsIdle), "busy")
	gauge(descWorkers, float64(s.ThreadsIdle), "idle")
	gauge(descQueue, float64(s.Queue))
	if !s.Enabled {
		return
	}
	counter(descCoreRequests, float64(s.Requests))
	counter(descBytes, float64(s.BytesRead), "read")
	counter(descBytes, float64(s.BytesWritten), "written")
	counter(descWorkSeconds, s.WorkTime)
	for _, r := range s.Rejections {
		counter(descRejections, float64(r.Count), strconv.Itoa(r.Status), r.Reason)
	}
}

func collectTLS(ch chan<- prometheus.Metric, s TLSStats, now time.Time) {
	seen := map[[2]string]bool{}
	for _, h := range s.Handshakes {
		// Duplicate label sets would fail the whole scrape; keep the first.
		if k := [2]string{h.Result, h.Reason}; !seen[k] {
			seen[k] = true
			ch <- prometheus.MustNewConstMetric(descHandshakes, prometheus.CounterValue, float64(h.Count), h.Result, h.Reason)
		}
	}
	ch <- prometheus.MustNewConstMetric(descPlaintext, prometheus.CounterValue, float64(s.PlaintextOnTLS))
	seen = map[[2]string]bool{}
	for _, c := range s.Certificates {
		if k := [2]string{c.Name, c.Source}; !seen[k] {
			seen[k] = true
			ch <- prometheus.MustNewConstMetric(descCertDays, prometheus.GaugeValue, daysLeft(c.NotAfter, now), c.Name, c.Source)
		}
	}
	seen = map[[2]string]bool{}
	for _, e := range s.ACME {
		if k := [2]string{e.Event}; !seen[k] {
			seen[k] = true
			ch <- prometheus.MustNewConstMetric(descACME, prometheus.CounterValue, float64(e.Count), e.Event)
		}
	}
}

func daysLeft(notAfter, now time.Time) float64 {
	return notAfter.Sub(now).Hours() / 24
}

// Snapshot is the JSON a status: mount answers with: this package's request
// figures plus the core's and the TLS code's, taken at one moment.
type Snapshot struct {
	Time     time.Time         `json:"time"`
	TimeMS   int64             `json:"time_ms"` // Time in Unix milliseconds, for scripts
	Uptime   float64           `json:"uptime"`  // seconds since NewMetrics
	Requests uint64            `json:"requests"`
	Errors   uint64            `json:"errors"` // 5xx
	InFlight int64             `json:"in_flight"`
	ByStatus map[string]uint64 `json:"by_status"`
	Latency  LatencyHistogram  `json:"latency"`
	Core     *httpcore.Stats   `json:"core,omitempty"`
	TLS      *TLSStats         `json:"tls,omitempty"`
	// CertDaysLeft mirrors TLS.Certificates, computed at Time.
	CertDaysLeft map[string]float64 `json:"cert_days_left,omitempty"`
}

// LatencyHistogram is a cumulative histogram: Counts[i] requests took at most
// Bounds[i] seconds; Count is every request.
type LatencyHistogram struct {
	Bounds []float64 `json:"bounds"`
	Counts []uint64  `json:"counts"`
	Count  uint64    `json:"count"`
	Sum    float64   `json:"sum"`
}

// Snapshot reads every figure now.
func (m *Metrics) Snapshot() Snapshot {
	now := time.Now()
	s := Snapshot{Time: now, TimeMS: now.UnixMilli(), Uptime: now.Sub(m.start).Seconds(), InFlight: m.inFlight.Load(), ByStatus: map[string]uint64{}}
	for code := range m.byStatus {
		if n := m.byStatus[code].Load(); n > 0 {
			s.Requests += n
			if code >= 500 {
				s.Errors += n
			}
			label := strconv.Itoa(code)
			if code == 0 {
				label = "other"
			}
			s.ByStatus[label] = n
		}
	}
	var d dto.Metric
	if err := m.latency.Write(&d); err == nil && d.Histogram != nil {
		h := d.Histogram
		s.Latency.Count, s.Latency.Sum = h.GetSampleCount(), h.GetSampleSum()
		for _, b := range h.Bucket {
			s.Latency.Bounds = append(s.Latency.Bounds, b.GetUpperBound())
			s.Latency.Counts = append(s.Latency.Counts, b.GetCumulativeCount())
		}
	}
	if m.src.Core != nil {
		cs := m.src.Core()
		s.Core = &cs
	}
	if m.src.TLS != nil {
		ts := m.src.TLS()
		s.TLS = &ts
		s.CertDaysLeft = map[string]float64{}
		for _, c := range ts.Certificates {
			s.CertDaysLeft[c.Name] = daysLeft(c.NotAfter, now)
		}
	}
	return s
}
