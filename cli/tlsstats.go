package cli

import (
	"sort"

	"tlsedge/apps"
	"tlsedge/tlsadapter"
)

// tlsStats returns an apps.Sources.TLS function that reads the server's
// terminator at every scrape: handshakes and failures by reason, and, from
// the adapter behind it, ACME events and the certificates served with their
// expiry. term returns the terminator in service, or nil while stopped. The
// command wires this, so that apps need not know the TLS layer.
func tlsStats(term func() *tlsadapter.Terminator) func() apps.TLSStats {
	return func() apps.TLSStats {
		t := term()
		if t == nil {
			return apps.TLSStats{}
		}
		var r tlsadapter.StatsReporter
		if t.Scheme() == "https" {
			r = t
		}
		return adapterTLSStats(r, t.Adapter())
	}
}

// adapterTLSStats turns a terminator's counters (r, nil for plain HTTP)
// and what its adapter a reports into the figures the status page and
// metrics show; figures nobody keeps are left out.
func adapterTLSStats(r tlsadapter.StatsReporter, a any) apps.TLSStats {
	var s apps.TLSStats
	if r != nil {
		st := r.TLSStats()
		s.Handshakes = append(s.Handshakes, apps.HandshakeCount{Result: "ok", Count: st.Handshakes})
		reasons := make([]string, 0, len(st.Failures))
		for reason := range st.Failures {
			reasons = append(reasons, reason)
		}
		sort.Strings(reasons)
		for _, reason := range reasons {
			s.Handshakes = append(s.Handshakes, apps.HandshakeCount{Result: "failed", Reason: reason, Count: st.Failures[reason]})
		}
		s.PlaintextOnTLS = st.Failures[tlsadapter.ReasonPlaintext]
	}
	if r, ok := a.(tlsadapter.ACMEStatsReporter); ok {
		st := r.ACMEStats()
		s.ACME = []apps.EventCount{
			{Event: "obtained", Count: uint64(max(st.Obtained, 0))},
			{Event: "renewed", Count: uint64(max(st.Renewed, 0))},
			{Event: "failed", Count: uint64(max(st.Failed, 0))},
			{Event: "storage_failed", Count: uint64(max(st.StorageFailed, 0))},
		}
		for _, n := range st.Names {
			if !n.NotAfter.IsZero() {
				s.Certificates = append(s.Certificates, apps.CertStatus{Name: n.Name, Source: "acme", NotAfter: n.NotAfter})
			}
		}
	}
	if l, ok := a.(tlsadapter.CertificateLister); ok {
		for _, c := range l.Certificates() {
			s.Certificates = append(s.Certificates, apps.CertStatus{Name: c.Name, Source: c.Source, NotAfter: c.NotAfter})
		}
	}
	return s
}
