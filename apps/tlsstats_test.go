package apps

import (
	"context"
	"crypto/tls"
	"net"
	"reflect"
	"testing"
	"time"

	"tlsedge/tlsadapter"
)

// fakeAdapter reports fixed TLS and ACME figures.
type fakeAdapter struct{ now time.Time }

func (fakeAdapter) Scheme() string { return "https" }
func (fakeAdapter) Wrap(context.Context, net.Conn) (net.Conn, *tls.ConnectionState, error) {
	return nil, nil, nil
}
func (fakeAdapter) Reload(context.Context) error { return nil }
func (fakeAdapter) Close() error                 { return nil }
func (fakeAdapter) TLSStats() tlsadapter.TLSStats {
	return tlsadapter.TLSStats{Handshakes: 50, Failures: map[string]uint64{"unknown_sni": 3, "plaintext": 2, "eof": 0}}
}
func (f fakeAdapter) ACMEStats() tlsadapter.ACMEStats {
	return tlsadapter.ACMEStats{Obtained: 1, Renewed: 2, Failed: 3, StorageFailed: 4, Names: []tlsadapter.ACMENameState{
		{Name: "a.example", State: "valid", NotAfter: f.now.Add(48 * time.Hour)},
		{Name: "pending.example", State: "pending"},
	}}
}

func TestAdapterTLSStats(t *testing.T) {
	now := time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC)
	file := CertStatus{Name: "files.example", Source: "file", NotAfter: now.Add(24 * time.Hour)}
	tests := []struct {
		name    string
		adapter tlsadapter.Adapter
		want    TLSStats
	}{
		{"stopped", nil, TLSStats{Certificates: []CertStatus{file}}},
		{"acme", fakeAdapter{now}, TLSStats{
			Handshakes: []HandshakeCount{
				{Result: "ok", Count: 50},
				{Result: "failed", Reason: "eof", Count: 0},
				{Result: "failed", Reason: "plaintext", Count: 2},
				{Result: "failed", Reason: "unknown_sni", Count: 3},
			},
			PlaintextOnTLS: 2,
			Certificates: []CertStatus{
				{Name: "a.example", Source: "acme", NotAfter: now.Add(48 * time.Hour)},
				file,
			},
			ACME: []EventCount{{"obtained", 1}, {"renewed", 2}, {"failed", 3}, {"storage_failed", 4}},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := AdapterTLSStats(func() tlsadapter.Adapter { return tt.adapter }, func() []CertStatus { return []CertStatus{file} })()
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}
