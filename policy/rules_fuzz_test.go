package policy

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"tlsedge/peercred"
)

// FuzzRules feeds arbitrary rule text and request paths through the parser
// and the evaluation: neither may panic; every parse error is a RuleError
// whose column lies within the rule; and a path rule that parsed still
// covers the spellings of its own prefix that must not slip past it.
func FuzzRules(f *testing.F) {
	f.Add("allow peer.uid:0 path:/admin", "/admin")
	f.Add("allow cert.uri:spiffe://prod.example/ns/web/* path:/api method:GET,POST", "/api/x")
	f.Add("deny path:/admin", "//ADMIN/../admin/%2f")
	f.Add("allow src:10.0.0.0/8 host:*.internal.example", "/")
	f.Add(`allow cert.issuer:"Example CA" cert.spki:sha256:AAAA`, "/x;y")
	f.Add("allow *", "%zz")
	f.Add("allow peer.uid:0 path:/admin|deny path:/admin|allow peer.uid:1", "/x")
	f.Add("deny host:a.internal.example|allow src:10.0.0.0/8", "/")
	f.Fuzz(func(t *testing.T, rule, path string) {
		rules, err := ParseRules(strings.Split(rule, "|"))
		if err != nil {
			var re *RuleError
			if !errors.As(err, &re) {
				t.Fatalf("%q: error %v is not a RuleError", rule, err)
			}
			if re.Col < 1 || re.Col > len(rule)+1 {
				t.Fatalf("%q: column %d outside the rule", rule, re.Col)
			}
			return
		}
		p := NewPolicy(rules, peercred.NewResolver(peercred.ResolverConfig{}))
		facts := &Facts{Src: netip.MustParseAddr("10.0.0.1"), Peer: &peercred.Creds{UID: 1, GID: 1}, Host: "a.internal.example", Method: "GET", Path: path}
		// A decision made early never differs from the one all the facts
		// give: the server closes connections on it.
		full := p.Judge(facts, StageRequest)
		for s := StageAccept; s < StageRequest; s++ {
			if d := p.Judge(facts, s); d.Final && d.Action != full.Action {
				t.Fatalf("%q on %q: %v at %v, %v with every fact", rule, path, d, s, full)
			}
		}
		if d := p.Decide(facts, StageRequest); !d.Final {
			t.Fatalf("%q: not final at the request stage", rule)
		}
		_, _ = p.Explain(facts)
		// A deny on a path prefix covers every spelling of it.
		if !strings.HasPrefix(path, "/") || strings.ContainsAny(path, "%;,\\ \t\"\n\r\v\f") || len(path) > 200 {
			return
		}
		deny := NewPolicy(mustParse(t, "deny path:"+path, "allow *"), nil)
		trimmed := strings.TrimPrefix(path, "/")
		for _, q := range []string{path, "/" + path, strings.ToUpper(path), "/x/.." + path, "/%2f" + trimmed, "/%252f" + trimmed, path + "/", path + ";p"} {
			if d := deny.Decide(&Facts{Path: q}, StageRequest); d.Action != Deny {
				t.Fatalf("deny path:%s let %q through (%v)", path, q, d)
			}
		}
	})
}

func mustParse(t *testing.T, items ...string) []Rule {
	t.Helper()
	r, err := ParseRules(items)
	if err != nil {
		t.Fatalf("%q: %v", items, err)
	}
	return r
}
