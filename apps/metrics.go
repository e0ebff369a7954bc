package apps

import (
	"cmp"
	"maps"
	"net/http"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	dto "github.com/prometheus/client_model/go"

	"tlsedge/policy"
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
	// Server names the server these figures are about: the value of the
	// server label on every series ("main" when empty, as in the logs). One
	// Metrics serves one server; a total across servers is Prometheus's sum.
	Server string
	Core   func() httpcore.Stats
	TLS    func() TLSStats
	// Version is the version the build was stamped with (make build's git
	// describe); "" reads the module version from the build information.
	Version string
	// Servers lists every server of the process, for the status page's
	// overview; nil shows only this one.
	Servers func() []ServerSummary
	// Cluster is the node's id, the shared storage's health and locks and
	// the server's session-ticket keys (cluster.go); nil leaves them out.
	Cluster func() ClusterStatus
	// ProxyProtocol, when set, reads the server's PROXY protocol counts.
	ProxyProtocol func() ProxyProtocolCounts
	// Policy reads the server.policy decision counters; nil or an empty
	// answer shows none.
	Policy func() []policy.Count
	// Quota reads the policy_quota refusal counters; nil shows none.
	Quota func() []policy.QuotaCount
}

// ServerSummary is one server of the process, as the status page lists it.
type ServerSummary struct {
	Name        string `json:"name"`
	Base        string `json:"base"` // where it is reached: https://host:port or a socket path
	Module      string `json:"ssl_module"`
	Connections int64  `json:"connections"` // open now
	Requests    uint64 `json:"requests"`    // handed to handlers so far
}

// latencyBuckets span a cached static file (well under a millisecond) to a
// slow upstream (seconds).
var latencyBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// Route label values that are not mount prefixes.
const (
	// routeNone: no mount matched (the dispatcher's 404), or the request
	// was not dispatched at all.
	routeNone = "none"
	// routeOther: past maxRoutes distinct prefixes (reloads that kept
	// mounting new ones), the rest are counted together.
	routeOther = "other"
	maxRoutes  = 256
)

// Metrics counts requests by route (the mount prefix that served them) and
// status, and their latency (Wrap), and serves those together with the
// core's and the TLS code's figures, as Prometheus text and as a JSON
// Snapshot. Its registry is its own: nothing is registered globally, so two
// servers in one process never collide.
type Metrics struct {
	reg      *prometheus.Registry
	src      Sources
	server   string
	start    time.Time
	inFlight atomic.Int64

	routes    statsTable // by mount prefix
	upstreams statsTable // by upstream address, for proxied requests
	pools     poolRegistry
}

// statsTable holds figures by key (a route, an upstream). It is copied on
// write: the request path reads it with one atomic load and a map lookup,
// and a new key (the first request a mount or upstream serves) takes mu and
// swaps in a larger copy. Past maxRoutes keys, new ones count as "other".
type statsTable struct {
	m  atomic.Pointer[map[string]*routeStats]
	mu sync.Mutex
}

// routeStats are one route's figures.
type routeStats struct {
	byStatus [600]atomic.Uint64 // index = status code; 0 holds out-of-range codes
	aborted  atomic.Uint64      // handlers that ended by panicking
	// latency is never registered: it only keeps the buckets (lock-free),
	// and Collect re-labels them.
	latency prometheus.Histogram
}

// NewMetrics returns a Metrics reading src at every scrape. The registry also
// carries the Go runtime and process collectors.
func NewMetrics(src Sources) *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry(), src: src, server: cmp.Or(src.Server, "main"), start: time.Now()}
	m.routes.m.Store(&map[string]*routeStats{})
	m.upstreams.m.Store(&map[string]*routeStats{})
	m.reg.MustRegister((*metricsCollector)(m), (*poolCollector)(m),
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Registry is where the metrics live, for a caller that adds its own.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// route returns the figures of the route with mount prefix p ("" when no
// mount matched), making them on first use.
func (m *Metrics) route(p string) *routeStats {
	if p == "" {
		p = routeNone
	}
	return m.routes.get(p)
}

// get returns the figures for key, making them on first use.
func (t *statsTable) get(p string) *routeStats {
	if rs := (*t.m.Load())[p]; rs != nil {
		return rs
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	cur := *t.m.Load()
	if rs := cur[p]; rs != nil {
		return rs
	}
	if len(cur) >= maxRoutes {
		if rs := cur[routeOther]; rs != nil {
			return rs
		}
		p = routeOther
	}
	rs := &routeStats{latency: prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "tlsedge_http_request_duration_seconds", Buckets: latencyBuckets,
	})}
	next := make(map[string]*routeStats, len(cur)+1)
	maps.Copy(next, cur)
	next[p] = rs
	t.m.Store(&next)
	return rs
}

// all returns the table's figures by key, in key order.
func (t *statsTable) all() ([]string, map[string]*routeStats) {
	cur := *t.m.Load()
	return slices.Sorted(maps.Keys(cur)), cur
}

// tunnelTime stands for the length of an h2 extended CONNECT's tunnel,
// which is no more a latency than an upgraded connection's.
const tunnelTime = time.Duration(-1)

// count records one request's outcome in rs.
func (rs *routeStats) count(code int, returned bool, took time.Duration) {
	if !returned {
		rs.aborted.Add(1)
	}
	// An upgraded connection (WebSocket) lives as long as the client keeps
	// it open; its length is not a response latency.
	if code != http.StatusSwitchingProtocols && took != tunnelTime {
		rs.latency.Observe(took.Seconds())
	}
	if code < 0 || code >= len(rs.byStatus) {
		code = 0
	}
	rs.byStatus[code].Add(1)
}

// Wrap counts every request h serves: its route, its final status, how long
// it took, and whether its handler panicked. The server wraps the whole
// mount table with it; the dispatcher names the route through the recorder
// (router.RouteRecorder).
func (m *Metrics) Wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		m.inFlight.Add(1)
		rec, ok := w.(*recorder)
		if !ok {
			rec = &recorder{ResponseWriter: w}
		}
		returned := false
		defer func() {
			m.inFlight.Add(-1)
			code, took := rec.finalStatus(), time.Since(start)
			if _, tunnel := extendedConnect(r); tunnel && code < 300 {
				took = tunnelTime // an h2 WebSocket: HTTP/1.1's 101
			}
			m.route(rec.route).count(code, returned, took)
			if rec.upstream != "" {
				m.upstreams.get(rec.upstream).count(code, returned, took)
			}
		}()
		h.ServeHTTP(rec, r)
		returned = true
	})
}

// The series. Every per-server series carries the server label first;
// build_info and the Go and process collectors are the process's.
//
// TLS handshakes follow Prometheus's advice for failures: a counter of every
// attempt and a counter of failures by reason, rather than one counter with
// result and reason labels. The ratio is then failures/attempts, and no
// series carries a reason that does not apply (the old reason="" on
// successes).
var (
	descBuildInfo    = prometheus.NewDesc("tlsedge_build_info", "The tlsedge build: module version, VCS revision and Go version; always 1.", []string{"version", "revision", "goversion"}, nil)
	descRequests     = prometheus.NewDesc("tlsedge_http_requests_total", "Requests answered by handlers, by route (mount prefix, \"none\" when no mount matched) and status code; 5xx codes are the errors.", []string{"server", "route", "code"}, nil)
	descAborted      = prometheus.NewDesc("tlsedge_http_aborted_requests_total", "Requests whose handler ended by panicking (an upstream failing mid-answer, a bug), by route: the client got a cut-off answer or the core's 500. Counted in tlsedge_http_requests_total too, with the status sent before.", []string{"server", "route"}, nil)
	descLatency      = prometheus.NewDesc("tlsedge_http_request_duration_seconds", "Time from the handler starting a request to its response being written, by route.", []string{"server", "route"}, nil)
	descUpRequests   = prometheus.NewDesc("tlsedge_upstream_requests_total", "Proxied requests by upstream address and the status the client got; 502 and 504 are the upstream's failures.", []string{"server", "upstream", "code"}, nil)
	descUpAborted    = prometheus.NewDesc("tlsedge_upstream_aborted_requests_total", "Proxied requests cut off mid-answer, by upstream.", []string{"server", "upstream"}, nil)
	descUpLatency    = prometheus.NewDesc("tlsedge_upstream_request_duration_seconds", "Time from the handler starting a proxied request to its response being written, by upstream.", []string{"server", "upstream"}, nil)
	descInFlight     = prometheus.NewDesc("tlsedge_http_requests_in_flight", "Requests being handled now.", []string{"server"}, nil)
	descRejections   = prometheus.NewDesc("tlsedge_core_rejections_total", "Requests the core answered itself, by status and reason.", []string{"server", "code", "reason"}, nil)
	descAccepts      = prometheus.NewDesc("tlsedge_connections_accepted_total", "Connections accepted.", []string{"server"}, nil)
	descSocketErrors = prometheus.NewDesc("tlsedge_socket_errors_total", "Accept and connection-level I/O errors.", []string{"server"}, nil)
	descConns        = prometheus.NewDesc("tlsedge_connections", "Connections open now, by state.", []string{"server", "state"}, nil)
	descH2           = prometheus.NewDesc("tlsedge_connections_h2", "Open connections served as HTTP/2.", []string{"server"}, nil)
	descWorkers      = prometheus.NewDesc("tlsedge_workers", "Workers in the pool, by state.", []string{"server", "state"}, nil)
	descQueue        = prometheus.NewDesc("tlsedge_queue_length", "Parsed requests waiting for a worker.", []string{"server"}, nil)
	descCoreRequests = prometheus.NewDesc("tlsedge_core_requests_total", "Requests handed to handlers by the core.", []string{"server"}, nil)
	descBytes        = prometheus.NewDesc("tlsedge_bytes_total", "Bytes exchanged with clients, by direction.", []string{"server", "direction"}, nil)
	descWorkSeconds  = prometheus.NewDesc("tlsedge_work_seconds_total", "Seconds workers spent running handlers.", []string{"server"}, nil)
	descHandshakes   = prometheus.NewDesc("tlsedge_tls_handshakes_total", "TLS handshakes attempted: completed plus failed.", []string{"server"}, nil)
	descHSFailures   = prometheus.NewDesc("tlsedge_tls_handshake_failures_total", "TLS handshakes that failed or were refused, by reason.", []string{"server", "reason"}, nil)
	descPlaintext    = prometheus.NewDesc("tlsedge_tls_plaintext_requests_total", "Plain HTTP requests received on a TLS port.", []string{"server"}, nil)
	descCertExpiry   = prometheus.NewDesc("tlsedge_certificate_expiry_timestamp_seconds", "When a certificate in service expires, as a Unix time (its NotAfter).", []string{"server", "name", "source"}, nil)
	descPolicy       = prometheus.NewDesc("tlsedge_policy_decisions_total", "server.policy decisions by rule number (0: the default deny) and action: connections closed at accept or after the handshake, and requests.", []string{"server", "rule", "action"}, nil)
	descQuota        = prometheus.NewDesc("tlsedge_policy_quota_refusals_total", "Refusals by policy_quota entry: connections over their limit and requests over their rate, each answered 429.", []string{"server", "quota", "kind"}, nil)
	descACME         = prometheus.NewDesc("tlsedge_acme_events_total", "ACME events by kind.", []string{"server", "event"}, nil)
)

// metricsCollector reads the counters and the sources at scrape time, so
// serving a request costs a few atomic adds and a histogram observation.
type metricsCollector Metrics

// Describe lists the descriptors without collecting: registration happens
// in NewMetrics, before the core the sources read from may exist (the core
// is built around the handler Metrics wraps).
func (c *metricsCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descBuildInfo, descRequests, descAborted, descLatency,
		descUpRequests, descUpAborted, descUpLatency, descInFlight,
		descRejections, descAccepts, descSocketErrors, descConns, descH2, descWorkers, descQueue, descCoreRequests,
		descBytes, descWorkSeconds, descHandshakes, descHSFailures, descPlaintext, descCertExpiry, descACME, descPolicy, descQuota} {
		ch <- d
	}
	for _, d := range clusterDescs {
		ch <- d
	}
}

func (c *metricsCollector) Collect(ch chan<- prometheus.Metric) {
	m := (*Metrics)(c)
	b := m.build()
	ch <- prometheus.MustNewConstMetric(descBuildInfo, prometheus.GaugeValue, 1, b.Version, b.Revision, b.GoVersion)
	collectTable(ch, &m.routes, m.server, descRequests, descAborted, descLatency)
	collectTable(ch, &m.upstreams, m.server, descUpRequests, descUpAborted, descUpLatency)
	ch <- prometheus.MustNewConstMetric(descInFlight, prometheus.GaugeValue, float64(m.inFlight.Load()), m.server)
	if m.src.Core != nil {
		collectCore(ch, m.server, m.src.Core())
	}
	if m.src.TLS != nil {
		collectTLS(ch, m.server, m.src.TLS())
	}
	if m.src.Cluster != nil {
		collectCluster(ch, m.server, m.src.Cluster())
	}
	if m.src.Policy != nil {
		for _, c := range m.src.Policy() {
			ch <- prometheus.MustNewConstMetric(descPolicy, prometheus.CounterValue, float64(c.N), m.server, strconv.Itoa(c.Rule), c.Action.String())
		}
	}
	if m.src.Quota != nil {
		for _, c := range m.src.Quota() {
			ch <- prometheus.MustNewConstMetric(descQuota, prometheus.CounterValue, float64(c.Connections), m.server, c.Quota, "connections")
			ch <- prometheus.MustNewConstMetric(descQuota, prometheus.CounterValue, float64(c.Requests), m.server, c.Quota, "requests")
		}
	}
}

func statusLabel(code int) string {
	if code == 0 {
		return "other"
	}
	return strconv.Itoa(code)
}

func collectCore(ch chan<- prometheus.Metric, server string, s httpcore.Stats) {
	gauge := func(d *prometheus.Desc, v float64, l ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, append([]string{server}, l...)...)
	}
	counter := func(d *prometheus.Desc, v float64, l ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, append([]string{server}, l...)...)
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
	seen := map[[2]string]bool{}
	for _, r := range s.Rejections {
		k := [2]string{strconv.Itoa(r.Status), cmp.Or(r.Reason, "unknown")}
		if !seen[k] {
			seen[k] = true
			counter(descRejections, float64(r.Count), k[0], k[1])
		}
	}
}

func collectTLS(ch chan<- prometheus.Metric, server string, s TLSStats) {
	var attempts uint64
	failures := map[string]uint64{}
	for _, h := range s.Handshakes {
		attempts += h.Count
		if h.Result != "ok" {
			failures[cmp.Or(h.Reason, "unknown")] += h.Count
		}
	}
	ch <- prometheus.MustNewConstMetric(descHandshakes, prometheus.CounterValue, float64(attempts), server)
	for _, reason := range slices.Sorted(maps.Keys(failures)) {
		ch <- prometheus.MustNewConstMetric(descHSFailures, prometheus.CounterValue, float64(failures[reason]), server, reason)
	}
	ch <- prometheus.MustNewConstMetric(descPlaintext, prometheus.CounterValue, float64(s.PlaintextOnTLS), server)
	// Duplicate label sets would fail the whole scrape; keep the first.
	seen := map[[2]string]bool{}
	for _, c := range s.Certificates {
		k := [2]string{cmp.Or(c.Name, "unnamed"), cmp.Or(c.Source, "unknown")}
		if !seen[k] {
			seen[k] = true
			ch <- prometheus.MustNewConstMetric(descCertExpiry, prometheus.GaugeValue, float64(c.NotAfter.Unix()), server, k[0], k[1])
		}
	}
	seen = map[[2]string]bool{}
	for _, e := range s.ACME {
		if k := [2]string{cmp.Or(e.Event, "unknown")}; !seen[k] {
			seen[k] = true
			ch <- prometheus.MustNewConstMetric(descACME, prometheus.CounterValue, float64(e.Count), server, k[0])
		}
	}
}

// Build describes the running binary, as tlsedge_build_info shows it.
type Build struct {
	Version   string `json:"version"`   // the module version; "(devel)" for a build from a checkout
	Revision  string `json:"revision"`  // the VCS revision, "+dirty" when modified; "unknown" if not stamped
	GoVersion string `json:"goversion"` // runtime.Version()
}

// readBuild reads the build information the Go linker stamped.
// build is readBuild with the stamped version, when there is one.
func (m *Metrics) build() Build {
	b := readBuild()
	if m.src.Version != "" {
		b.Version = m.src.Version
	}
	return b
}

func readBuild() Build {
	b := Build{Version: "unknown", Revision: "unknown", GoVersion: runtime.Version()}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return b
	}
	b.Version = cmp.Or(bi.Main.Version, b.Version)
	dirty := false
	for _, s := range bi.Settings {
		switch {
		case s.Key == "vcs.revision" && s.Value != "":
			b.Revision = s.Value
		case s.Key == "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if dirty && b.Revision != "unknown" {
		b.Revision += "+dirty"
	}
	return b
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
	Server   string            `json:"server"`  // the server label
	Build    Build             `json:"build"`
	Requests uint64            `json:"requests"`
	Errors   uint64            `json:"errors"` // 5xx
	InFlight int64             `json:"in_flight"`
	ByStatus map[string]uint64 `json:"by_status"`
	Latency  LatencyHistogram  `json:"latency"` // every route's together
	Routes   []RouteSnapshot   `json:"routes"`  // by route label, sorted
	Servers  []ServerSummary   `json:"servers,omitempty"`
	Core     *httpcore.Stats   `json:"core,omitempty"`
	TLS      *TLSStats         `json:"tls,omitempty"`
	// CertDaysLeft mirrors TLS.Certificates, computed at Time.
	CertDaysLeft map[string]float64 `json:"cert_days_left,omitempty"`
	Cluster      *ClusterStatus     `json:"cluster,omitempty"`
	// Pools are the upstream pools in service, by target.
	Pools []PoolState `json:"pools,omitempty"`
}

// RouteSnapshot is one route's figures.
type RouteSnapshot struct {
	Route    string  `json:"route"` // the mount prefix, "none" or "other" (see tlsedge_http_requests_total)
	Requests uint64  `json:"requests"`
	Errors   uint64  `json:"errors"` // 5xx
	Aborted  uint64  `json:"aborted"`
	Seconds  float64 `json:"seconds"` // the sum of their latencies
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
	s := Snapshot{Time: now, TimeMS: now.UnixMilli(), Uptime: now.Sub(m.start).Seconds(), Server: m.server, Build: m.build(),
		InFlight: m.inFlight.Load(), ByStatus: map[string]uint64{}, Routes: []RouteSnapshot{}}
	for _, pl := range m.pools.all() {
		s.Pools = append(s.Pools, pl.state(now))
	}
	slices.SortFunc(s.Pools, func(a, b PoolState) int { return strings.Compare(a.Target, b.Target) })
	s.Latency.Bounds = slices.Clone(latencyBuckets)
	s.Latency.Counts = make([]uint64, len(latencyBuckets))
	_, routes := m.routes.all()
	for _, route := range slices.Sorted(maps.Keys(routes)) {
		rs := routes[route]
		r := RouteSnapshot{Route: route, Aborted: rs.aborted.Load()}
		for code := range rs.byStatus {
			if n := rs.byStatus[code].Load(); n > 0 {
				r.Requests += n
				if code >= 500 {
					r.Errors += n
				}
				s.ByStatus[statusLabel(code)] += n
			}
		}
		var d dto.Metric
		if err := rs.latency.Write(&d); err == nil && d.Histogram != nil {
			h := d.Histogram
			r.Seconds = h.GetSampleSum()
			s.Latency.Count += h.GetSampleCount()
			s.Latency.Sum += h.GetSampleSum()
			for i, b := range h.Bucket {
				if i < len(s.Latency.Counts) {
					s.Latency.Counts[i] += b.GetCumulativeCount()
				}
			}
		}
		s.Requests += r.Requests
		s.Errors += r.Errors
		s.Routes = append(s.Routes, r)
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
	if m.src.Servers != nil {
		s.Servers = m.src.Servers()
	}
	if m.src.Cluster != nil {
		c := m.src.Cluster()
		s.Cluster = &c
	}
	return s
}

// collectTable sends one table's figures: requests by key and status,
// aborted requests and the latency histogram by key.
func collectTable(ch chan<- prometheus.Metric, t *statsTable, server string, requests, aborted, latency *prometheus.Desc) {
	keys, table := t.all()
	for _, key := range keys {
		rs := table[key]
		for code := range rs.byStatus {
			if n := rs.byStatus[code].Load(); n > 0 {
				ch <- prometheus.MustNewConstMetric(requests, prometheus.CounterValue, float64(n), server, key, statusLabel(code))
			}
		}
		ch <- prometheus.MustNewConstMetric(aborted, prometheus.CounterValue, float64(rs.aborted.Load()), server, key)
		var d dto.Metric
		if err := rs.latency.Write(&d); err == nil && d.Histogram != nil {
			h := d.Histogram
			buckets := make(map[float64]uint64, len(h.Bucket))
			for _, b := range h.Bucket {
				buckets[b.GetUpperBound()] = b.GetCumulativeCount()
			}
			ch <- prometheus.MustNewConstHistogram(latency, h.GetSampleCount(), h.GetSampleSum(), buckets, server, key)
		}
	}
}
