package apps

import (
	"strings"
	"testing"
	"time"
)

// TestClusterMetrics: the cluster figures are gathered without a registry
// error and carry the node, storage health, each held lock with its holder,
// and the ticket-key rotation time; a directory storage shows the node
// only.
func TestClusterMetrics(t *testing.T) {
	rotated := time.Unix(1_800_000_000, 0)
	for _, tc := range []struct {
		name string
		c    ClusterStatus
		want map[string]float64 // series -> value; -1: must be absent
	}{
		{"postgres", ClusterStatus{Node: "n1/42/ab", Storage: "postgres", StorageUp: true, StorageLatency: 0.002, StorageOutages: 3,
			Locks:             []LockStatus{{Name: "issue_cert_a.test", Owner: "n2/7/cd", Expires: time.Unix(1_800_000_030, 0)}, {Name: "issue_cert_a.test", Owner: "dup"}},
			TicketKeysRotated: rotated, TicketKeysShared: true},
			map[string]float64{
				`tlsedge_node_info{node="n1/42/ab",storage="postgres"}`: 1,
				`tlsedge_storage_up`:              1,
				`tlsedge_storage_latency_seconds`: 0.002,
				`tlsedge_storage_outages_total`:   3,
				`tlsedge_storage_lock_expiry_timestamp_seconds{name="issue_cert_a.test",owner="n2/7/cd"}`: 1_800_000_030,
				`tlsedge_tls_ticket_keys_rotated_timestamp_seconds{server="edge",shared="true"}`:          1_800_000_000,
			}},
		{"directory", ClusterStatus{Node: "n1/42", Storage: "directory", TicketKeysRotated: rotated},
			map[string]float64{
				`tlsedge_node_info{node="n1/42",storage="directory"}`: 1,
				`tlsedge_storage_up`: -1,
				`tlsedge_tls_ticket_keys_rotated_timestamp_seconds{server="edge",shared="false"}`: 1_800_000_000,
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := NewMetrics(Sources{Server: "edge", Cluster: func() ClusterStatus { return tc.c }})
			got := gathered(t, m)
			for series, v := range tc.want {
				g, ok := got[series]
				switch {
				case v == -1 && ok:
					t.Errorf("%s = %v; want it absent", series, g)
				case v != -1 && (!ok || g != v):
					t.Errorf("%s = %v (present %v); want %v", series, g, ok, v)
				}
			}
			if s := m.Snapshot(); s.Cluster == nil || s.Cluster.Node != tc.c.Node {
				t.Errorf("snapshot cluster = %+v", s.Cluster)
			}
		})
	}
}

// gathered gathers m's registry (failing on an inconsistent scrape) into
// series -> value, series written name{label="value",...} in label order.
func gathered(t *testing.T, m *Metrics) map[string]float64 {
	t.Helper()
	fams, err := m.Registry().Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	out := map[string]float64{}
	for _, f := range fams {
		for _, s := range f.GetMetric() {
			name := f.GetName()
			if len(s.GetLabel()) > 0 {
				var parts []string
				for _, l := range s.GetLabel() {
					parts = append(parts, l.GetName()+`="`+l.GetValue()+`"`)
				}
				name += "{" + strings.Join(parts, ",") + "}"
			}
			switch {
			case s.Gauge != nil:
				out[name] = s.GetGauge().GetValue()
			case s.Counter != nil:
				out[name] = s.GetCounter().GetValue()
			}
		}
	}
	return out
}
