package apps

import (
	"testing"

	"tlsedge/policy"
)

// The policy's decision counters and the quotas' refusals are Prometheus
// series, by rule and by quota.
func TestPolicyMetrics(t *testing.T) {
	m := NewMetrics(Sources{Server: "edge",
		Policy: func() []policy.Count {
			return []policy.Count{{Rule: 1, Action: policy.Allow, N: 7}, {Rule: 0, Action: policy.Deny, N: 2}}
		},
		Quota: func() []policy.QuotaCount {
			return []policy.QuotaCount{{Quota: "ip rps:5", Connections: 1, Requests: 4}}
		},
	})
	fams, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, f := range fams {
		for _, mt := range f.GetMetric() {
			key := f.GetName()
			for _, l := range mt.GetLabel() {
				key += " " + l.GetName() + "=" + l.GetValue()
			}
			got[key] = mt.GetCounter().GetValue()
		}
	}
	for k, v := range map[string]float64{
		"tlsedge_policy_decisions_total action=allow rule=1 server=edge":                  7,
		"tlsedge_policy_decisions_total action=deny rule=0 server=edge":                   2,
		"tlsedge_policy_quota_refusals_total kind=connections quota=ip rps:5 server=edge": 1,
		"tlsedge_policy_quota_refusals_total kind=requests quota=ip rps:5 server=edge":    4,
	} {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
}
