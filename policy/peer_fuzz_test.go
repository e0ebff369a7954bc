package policy_test

import (
	"strings"
	"testing"

	"tlsedge/peercred"
	"tlsedge/policy"
)

// FuzzPeerMountRules feeds arbitrary peercreds_mount_allow entries and
// request paths through compile and match: neither may panic, and a rule
// that compiled must still deny a request without credentials on its own
// prefix (fail closed).
func FuzzPeerMountRules(f *testing.F) {
	f.Add("/admin=uid:0 group:wheel", "/admin/x")
	f.Add("/=user:nobody", "/../..//x")
	f.Add("/a/=gid:4294967295", "/a")
	f.Add("=uid:1", "")
	f.Add("/x=uid:1 uid:", "/x/%2e%2e")
	f.Fuzz(func(t *testing.T, entry, path string) {
		opts := policy.PeerOptions{Peercreds: true, PeercredsMountAllow: []string{entry}}
		p, err := policy.NewPeerPolicy(opts, policy.PeerPolicyConfig{Resolver: peercred.NewResolver(peercred.ResolverConfig{})})
		if err != nil {
			return
		}
		_ = p.AllowPath(path, &peercred.Creds{UID: 1, GID: 1})
		if !p.HasMounts() {
			t.Fatalf("%q compiled without a mount rule", entry)
		}
		prefix, _, _ := strings.Cut(strings.TrimSpace(entry), "=")
		for _, q := range []string{prefix, prefix + "/sub", prefix + "/./sub/.."} {
			if p.AllowPath(q, nil) == nil {
				t.Fatalf("rule %q let a request without credentials reach %q", entry, q)
			}
		}
	})
}
