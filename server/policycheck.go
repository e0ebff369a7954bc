package server

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"tlsedge/policy"
)

// outsider is the client PolicyWarnings imagines: no certificate, no peer
// credentials, an address of nobody's network (TEST-NET-3).
var outsider = netip.MustParseAddr("203.0.113.7")

// PolicyWarnings finds the trap of one process serving one app on several
// servers: a path one server restricts (a server.policy rule or a
// peercreds_mount_allow prefix that refuses an outsider) which another
// server of the same process serves to an outsider. Each warning names both
// servers, the path, the restricting rule and a fix.
func PolicyWarnings(cfgs []Config) []string {
	type judged struct {
		name   string
		mounts *policy.Policy
		pol    *policy.Policy
		gated  bool // no outsider gets in at all (accept lists, required client certificates)
		serves func(p string) bool
	}
	var all []judged
	for i := range cfgs {
		c := &cfgs[i]
		j := judged{name: cmp.Or(c.Name, "main"), pol: policy.NewPolicy(c.Rule.Policy.Parsed(), nil)}
		if pp, err := policy.NewPeerPolicy(c.Peer, policy.PeerPolicyConfig{}); err == nil {
			_, mr := pp.Rules()
			j.mounts = policy.NewPolicy(mr, nil)
			j.gated = !pp.Empty()
		}
		if c.TLS.SSLClientAuth == policy.ClientAuthRequireAndVerify || c.TLS.SSLClientAuth == policy.ClientAuthRequire {
			j.gated = true
		}
		var prefixes []string
		for p := range c.Handlers {
			prefixes = append(prefixes, p)
		}
		for _, m := range c.Mount.Specs() {
			prefixes = append(prefixes, m.Prefix)
		}
		j.serves = func(p string) bool {
			return slices.ContainsFunc(prefixes, func(pre string) bool {
				pre = policy.NormalizePath(pre)
				return pre == "/" || p == pre || strings.HasPrefix(p, pre+"/")
			})
		}
		all = append(all, j)
	}
	// denies says whether j refuses an outsider on p, and by which rule.
	denies := func(j judged, p string) (string, bool) {
		f := &policy.Facts{Src: outsider, Method: "GET", Path: p}
		if d := j.mounts.Judge(f, policy.StageRequest); d.Action == policy.Deny {
			return j.mounts.Rules()[max(d.Rule, 1)-1].Origin, true
		}
		d := j.pol.Judge(f, policy.StageRequest)
		if d.Rule == 0 {
			return "server.policy's default deny", d.Action == policy.Deny
		}
		return fmt.Sprintf("server.policy rule %d %q", d.Rule, d.Text), d.Action == policy.Deny
	}
	var out []string
	seen := map[string]bool{}
	for _, s := range all {
		var paths []string
		for _, pol := range []*policy.Policy{s.mounts, s.pol} {
			for _, r := range pol.Rules() {
				paths = append(paths, r.Paths()...)
			}
		}
		for _, p := range paths {
			if p == "/" {
				continue
			}
			why, restricted := denies(s, p)
			if !restricted {
				continue
			}
			for _, t := range all {
				if t.name == s.name || t.gated || !t.serves(p) {
					continue
				}
				if _, tr := denies(t, p); tr {
					continue
				}
				key := t.name + " " + p
				if seen[key] {
					continue
				}
				seen[key] = true
				out = append(out, fmt.Sprintf("warning: server %s serves %s to anyone, while server %s restricts it (%s); "+
					"restrict it on %s too, e.g. %s = [\"deny path:%s\", \"allow *\"]",
					t.name, p, s.name, why, t.name, policyKey(t.name), p))
			}
		}
	}
	return out
}

func policyKey(name string) string {
	if name == "main" {
		return "server.policy"
	}
	return "server." + name + ".policy"
}
