package cli

import (
	"reflect"
	"testing"
	"time"

	"tlsedge/apps"
	"tlsedge/tlsadapter"
)

// fakeAdapter reports fixed TLS and ACME figures.
type fakeAdapter struct{ now time.Time }

func (fakeAdapter) TLSStats() tlsadapter.TLSStats {
	return tlsadapter.TLSStats{Handshakes: 50, Failures: map[string]uint64{"unknown_sni": 3, "plaintext": 2, "eof": 0}}
}
func (f fakeAdapter) ACMEStats() tlsadapter.ACMEStats {
	return tlsadapter.ACMEStats{Obtained: 1, Renewed: 2, Failed: 3, StorageFailed: 4, Names: []tlsadapter.ACMENameState{
		{Name: "a.example", State: "valid", NotAfter: f.now.Add(48 * time.Hour)},
		{Name: "pending.example", State: "pending"},
	}}
}

func TestTLSStats(t *testing.T) {
	now := time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name    string
		adapter *fakeAdapter
		want    apps.TLSStats
	}{
		{"plain", nil, apps.TLSStats{}},
		{"acme", &fakeAdapter{now}, apps.TLSStats{
			Handshakes: []apps.HandshakeCount{
				{Result: "ok", Count: 50},
				{Result: "failed", Reason: "eof", Count: 0},
				{Result: "failed", Reason: "plaintext", Count: 2},
				{Result: "failed", Reason: "unknown_sni", Count: 3},
			},
			PlaintextOnTLS: 2,
			Certificates: []apps.CertStatus{
				{Name: "a.example", Source: "acme", NotAfter: now.Add(48 * time.Hour)},
			},
			ACME: []apps.EventCount{{Event: "obtained", Count: 1}, {Event: "renewed", Count: 2}, {Event: "failed", Count: 3}, {Event: "storage_failed", Count: 4}},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var r tlsadapter.StatsReporter
			var a any
			if tt.adapter != nil {
				r, a = tt.adapter, tt.adapter
			}
			got := adapterTLSStats(r, a)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}
