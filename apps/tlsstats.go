package apps

import (
	"sort"

	"tlsedge/tlsadapter"
)

// AdapterTLSStats returns a Sources.TLS function that reads the running SSL
// adapter's own figures at every scrape: handshakes and failures by reason
// (tlsadapter.StatsReporter), and ACME events and managed names with their
// expiry (tlsadapter.ACMEStatsReporter). adapter returns the adapter in
// service, or nil while stopped; figures an adapter does not keep are left
// out. extra, when non-nil, adds certificates the adapter does not report
// (certificate files).
func AdapterTLSStats(adapter func() tlsadapter.Adapter, extra func() []CertStatus) func() TLSStats {
	return func() TLSStats {
		var s TLSStats
		a := adapter()
		if r, ok := a.(tlsadapter.StatsReporter); ok {
			st := r.TLSStats()
			s.Handshakes = append(s.Handshakes, HandshakeCount{Result: "ok", Count: st.Handshakes})
			reasons := make([]string, 0, len(st.Failures))
			for reason := range st.Failures {
				reasons = append(reasons, reason)
			}
			sort.Strings(reasons)
			for _, reason := range reasons {
				s.Handshakes = append(s.Handshakes, HandshakeCount{Result: "failed", Reason: reason, Count: st.Failures[reason]})
			}
			s.PlaintextOnTLS = st.Failures[tlsadapter.ReasonPlaintext]
		}
		if r, ok := a.(tlsadapter.ACMEStatsReporter); ok {
			st := r.ACMEStats()
			s.ACME = []EventCount{
				{Event: "obtained", Count: uint64(max(st.Obtained, 0))},
				{Event: "renewed", Count: uint64(max(st.Renewed, 0))},
				{Event: "failed", Count: uint64(max(st.Failed, 0))},
				{Event: "storage_failed", Count: uint64(max(st.StorageFailed, 0))},
			}
			for _, n := range st.Names {
				if !n.NotAfter.IsZero() {
					s.Certificates = append(s.Certificates, CertStatus{Name: n.Name, Source: "acme", NotAfter: n.NotAfter})
				}
			}
		}
		if l, ok := a.(tlsadapter.CertificateLister); ok {
			for _, c := range l.Certificates() {
				s.Certificates = append(s.Certificates, CertStatus{Name: c.Name, Source: c.Source, NotAfter: c.NotAfter})
			}
		}
		if extra != nil {
			s.Certificates = append(s.Certificates, extra()...)
		}
		return s
	}
}
