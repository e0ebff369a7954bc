package apps

import (
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// ProxyProtocolCounts are a server's PROXY protocol figures
// (proxy_protocol_accept): headers read, and connections refused.
type ProxyProtocolCounts struct {
	Accepted  uint64 // headers read; the connections carry the client's address
	Untrusted uint64 // peers outside proxy_protocol_trusted, closed at accept
	Bad       uint64 // a missing, malformed or late header
}

// poolRegistry holds the pools in service, by target, for the metrics: the
// newest pool of a target is shown. A reload's new pool takes its target's
// place; a retired pool, or one of a reload that failed, leaves only its
// own.
type poolRegistry struct {
	mu     sync.Mutex
	pools  map[string][]*pool // oldest first
	serial int64              // of the newest pool added
}

func (r *poolRegistry) add(pl *pool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.pools == nil {
		r.pools = map[string][]*pool{}
	}
	r.serial++
	pl.serial = r.serial
	r.pools[pl.target] = append(r.pools[pl.target], pl)
}

func (r *poolRegistry) remove(pl *pool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	l := slices.DeleteFunc(r.pools[pl.target], func(x *pool) bool { return x == pl })
	if len(l) == 0 {
		delete(r.pools, pl.target)
	} else {
		r.pools[pl.target] = l
	}
}

// member finds the newest member named name in the pools in service.
func (r *poolRegistry) member(name string) *member {
	r.mu.Lock()
	defer r.mu.Unlock()
	var newest *member
	var at int64
	for _, l := range r.pools {
		for _, pl := range l {
			for _, m := range pl.members {
				if m.name == name && (newest == nil || pl.serial > at) {
					newest, at = m, pl.serial
				}
			}
		}
	}
	return newest
}

func (r *poolRegistry) all() []*pool {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]*pool, 0, len(r.pools))
	for _, l := range r.pools {
		out = append(out, l[len(l)-1])
	}
	return out
}

var (
	descPoolUp          = prometheus.NewDesc("tlsedge_pool_upstream_up", "Whether a pool's upstream is in rotation (1) or down by its passive or active health checks (0).", []string{"server", "pool", "upstream"}, nil)
	descPoolInflight    = prometheus.NewDesc("tlsedge_pool_upstream_requests_in_flight", "Requests a pool's upstream is serving now.", []string{"server", "pool", "upstream"}, nil)
	descPoolUnavailable = prometheus.NewDesc("tlsedge_pool_unavailable_total", "Requests a pool answered 503 because none of its upstreams was up.", []string{"server", "pool"}, nil)
	descPoolRetried     = prometheus.NewDesc("tlsedge_pool_retries_total", "Requests a pool handed to another upstream after one failed before answering.", []string{"server", "pool"}, nil)
	descPPConns         = prometheus.NewDesc("tlsedge_proxy_protocol_connections_total", "Connections on a proxy_protocol_accept listener by outcome: accepted (header read), untrusted (peer outside proxy_protocol_trusted, refused at accept), bad (missing, malformed or late header).", []string{"server", "outcome"}, nil)
)

// poolCollector serves the pools' figures and the PROXY protocol counts.
type poolCollector Metrics

func (c *poolCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descPoolUp, descPoolInflight, descPoolUnavailable, descPoolRetried, descPPConns} {
		ch <- d
	}
}

func (c *poolCollector) Collect(ch chan<- prometheus.Metric) {
	m := (*Metrics)(c)
	now := time.Now()
	for _, pl := range m.pools.all() {
		st := pl.state(now)
		for _, u := range st.Upstreams {
			up := 0.0
			if u.Up {
				up = 1
			}
			ch <- prometheus.MustNewConstMetric(descPoolUp, prometheus.GaugeValue, up, m.server, st.Target, u.Name)
			ch <- prometheus.MustNewConstMetric(descPoolInflight, prometheus.GaugeValue, float64(u.Inflight), m.server, st.Target, u.Name)
		}
		ch <- prometheus.MustNewConstMetric(descPoolUnavailable, prometheus.CounterValue, float64(st.Unavailable), m.server, st.Target)
		ch <- prometheus.MustNewConstMetric(descPoolRetried, prometheus.CounterValue, float64(st.Retried), m.server, st.Target)
	}
	if m.src.ProxyProtocol != nil {
		pp := m.src.ProxyProtocol()
		ch <- prometheus.MustNewConstMetric(descPPConns, prometheus.CounterValue, float64(pp.Accepted), m.server, "accepted")
		ch <- prometheus.MustNewConstMetric(descPPConns, prometheus.CounterValue, float64(pp.Untrusted), m.server, "untrusted")
		ch <- prometheus.MustNewConstMetric(descPPConns, prometheus.CounterValue, float64(pp.Bad), m.server, "bad")
	}
}
