package policy

import (
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"errors"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"time"

	"tlsedge/peercred"
)

func mustRules(t *testing.T, items ...string) *Policy {
	t.Helper()
	rules, err := ParseRules(items)
	if err != nil {
		t.Fatalf("parse %q: %v", items, err)
	}
	return NewPolicy(rules, fixedResolver())
}

// fixedResolver resolves over the real user database: uid 65534 is
// nobody/nogroup and uid 0 root, as on Debian.
func fixedResolver() *peercred.Resolver {
	return peercred.NewResolver(peercred.ResolverConfig{})
}

// TestRuleEvaluation is the table of evaluation: every condition, matching
// and not, and every path trick that must not slip past a path rule.
func TestRuleEvaluation(t *testing.T) {
	leaf := leafWith(t, func(c *x509.Certificate) {
		c.Subject = pkix.Name{CommonName: "web-1", OrganizationalUnit: []string{"ops", "web"}}
		c.DNSNames = []string{"Web.Internal.Example"}
		c.URIs = []*url.URL{{Scheme: "spiffe", Host: "prod.example", Path: "/ns/web/sa/frontend"}}
	})
	sum := sha256.Sum256(leaf.RawSubjectPublicKeyInfo)
	pin := base64.StdEncoding.EncodeToString(sum[:])
	root := &peercred.Creds{PID: 1, UID: 0, GID: 0}
	nobody := &peercred.Creds{PID: 2, UID: 65534, GID: 65534}
	src := netip.MustParseAddr("10.1.2.3")

	base := func(mod func(f *Facts)) *Facts {
		f := &Facts{Src: src, Host: "api.internal.example:8443", SNI: "api.internal.example", Method: "GET", Path: "/api/x", Cert: leaf, Verified: true}
		if mod != nil {
			mod(f)
		}
		return f
	}
	tests := []struct {
		name  string
		rule  string
		facts *Facts
		match bool
	}{
		{"star", "*", base(nil), true},
		{"host exact with port", "host:api.internal.example", base(nil), true},
		{"host case", "host:API.internal.example", base(nil), true},
		{"host wildcard one label", "host:*.internal.example", base(nil), true},
		{"host wildcard not two labels", "host:*.example", base(nil), false},
		{"host wildcard not the bare name", "host:*.internal.example", base(func(f *Facts) { f.Host = "internal.example" }), false},
		{"host other", "host:other.example", base(nil), false},
		{"host trailing dot", "host:api.internal.example", base(func(f *Facts) { f.Host = "api.internal.example." }), true},
		{"sni", "sni:api.internal.example", base(nil), true},
		{"sni wildcard", "sni:*.internal.example", base(nil), true},
		{"sni none", "sni:api.internal.example", base(func(f *Facts) { f.SNI = "" }), false},
		{"path exact", "path:/api", base(nil), true},
		{"path segment not prefix", "path:/ap", base(nil), false},
		{"path root", "path:/", base(nil), true},
		{"path list", "path:/x,/api", base(nil), true},
		{"path //admin", "path:/admin", base(func(f *Facts) { f.Path = "//admin" }), true},
		{"path dot-dot", "path:/admin", base(func(f *Facts) { f.Path = "/admin/../admin" }), true},
		{"path dot-dot from elsewhere", "path:/admin", base(func(f *Facts) { f.Path = "/api/../admin/x" }), true},
		{"path %2f", "path:/admin", base(func(f *Facts) { f.Path = "/%2fadmin" }), true},
		{"path %2e%2e", "path:/admin", base(func(f *Facts) { f.Path = "/x/%2e%2e/admin" }), true},
		{"path double-encoded", "path:/admin", base(func(f *Facts) { f.Path = "/%252fadmin" }), true},
		{"path upper case", "path:/admin", base(func(f *Facts) { f.Path = "/ADMIN" }), true},
		{"path mixed case rule", "path:/Admin", base(func(f *Facts) { f.Path = "/aDmIn/x" }), true},
		{"path backslash", "path:/admin", base(func(f *Facts) { f.Path = "\\admin\\x" }), true},
		{"path ;params", "path:/admin", base(func(f *Facts) { f.Path = "/admin;jsessionid=1/x" }), true},
		{"path trailing slash", "path:/admin", base(func(f *Facts) { f.Path = "/admin/" }), true},
		{"path /administrator", "path:/admin", base(func(f *Facts) { f.Path = "/administrator" }), false},
		{"path dot segments", "path:/admin", base(func(f *Facts) { f.Path = "/./admin/." }), true},
		{"method", "method:GET,POST", base(nil), true},
		{"method lower in rule", "method:get", base(nil), true},
		{"method other", "method:POST", base(nil), false},
		{"src ip", "src:10.1.2.3", base(nil), true},
		{"src cidr", "src:10.0.0.0/8", base(nil), true},
		{"src other cidr", "src:192.168.0.0/16", base(nil), false},
		{"src mapped v4", "src:10.0.0.0/8", base(func(f *Facts) { f.Src = netip.MustParseAddr("::ffff:10.9.9.9") }), true},
		{"src v6", "src:::1", base(func(f *Facts) { f.Src = netip.MustParseAddr("::1") }), true},
		{"src unix has none", "src:0.0.0.0/0", base(func(f *Facts) { f.Src = netip.Addr{} }), false},
		{"cert.cn", "cert.cn:web-1", base(nil), true},
		{"cert.cn glob", "cert.cn:web-*", base(nil), true},
		{"cert.cn other", "cert.cn:db-1", base(nil), false},
		{"cert.cn unverified", "cert.cn:web-1", base(func(f *Facts) { f.Verified = false }), false},
		{"cert.ou", "cert.ou:web", base(nil), true},
		{"cert.ou other", "cert.ou:db", base(nil), false},
		{"cert.dns", "cert.dns:web.internal.example", base(nil), true},
		{"cert.dns wildcard", "cert.dns:*.internal.example", base(nil), true},
		{"cert.dns other", "cert.dns:db.internal.example", base(nil), false},
		{"cert.uri exact", "cert.uri:spiffe://prod.example/ns/web/sa/frontend", base(nil), true},
		{"cert.uri * one segment", "cert.uri:spiffe://prod.example/ns/*/sa/frontend", base(nil), true},
		{"cert.uri * not two", "cert.uri:spiffe://prod.example/ns/*/frontend", base(nil), false},
		{"cert.uri ** rest", "cert.uri:spiffe://prod.example/ns/web/**", base(nil), true},
		{"cert.uri trailing * is one segment", "cert.uri:spiffe://prod.example/ns/web/*", base(nil), false},
		{"spiffe trust domain", "cert.uri:spiffe://prod.example", base(nil), true},
		{"spiffe other trust domain", "cert.uri:spiffe://staging.example", base(nil), false},
		{"spiffe trust domain is not a prefix", "cert.uri:spiffe://prod.ex", base(nil), false},
		{"cert.uri unverified", "cert.uri:spiffe://prod.example", base(func(f *Facts) { f.Verified = false }), false},
		{"cert.issuer", `cert.issuer:"id Test Root"`, base(nil), true},
		{"cert.issuer glob", `cert.issuer:"id *"`, base(nil), true},
		{"cert.issuer other", `cert.issuer:"other CA"`, base(nil), false},
		{"cert.spki", "cert.spki:sha256:" + pin, base(nil), true},
		{"cert.spki unverified still pins", "cert.spki:sha256:" + pin, base(func(f *Facts) { f.Verified = false }), true},
		{"cert.spki other", "cert.spki:sha256:" + base64.StdEncoding.EncodeToString(make([]byte, 32)), base(nil), false},
		{"cert.spki no cert", "cert.spki:sha256:" + pin, base(func(f *Facts) { f.Cert = nil }), false},
		{"cert.verified true", "cert.verified:true", base(nil), true},
		{"cert.verified false", "cert.verified:false", base(func(f *Facts) { f.Verified = false }), true},
		{"cert.verified false without a cert", "cert.verified:false", base(func(f *Facts) { f.Cert = nil }), true},
		{"cert.verified true unverified", "cert.verified:true", base(func(f *Facts) { f.Verified = false }), false},
		{"peer.uid", "peer.uid:0", base(func(f *Facts) { f.Peer = root }), true},
		{"peer.uid other", "peer.uid:0", base(func(f *Facts) { f.Peer = nobody }), false},
		{"peer.uid none", "peer.uid:0", base(nil), false},
		{"peer.gid", "peer.gid:65534", base(func(f *Facts) { f.Peer = nobody }), true},
		{"peer.user", "peer.user:nobody", base(func(f *Facts) { f.Peer = nobody }), true},
		{"peer.user other", "peer.user:root", base(func(f *Facts) { f.Peer = nobody }), false},
		{"peer.group primary", "peer.group:nogroup", base(func(f *Facts) { f.Peer = nobody }), true},
		{"peer.group supplementary", "peer.group:wheel", base(func(f *Facts) {
			f.Peer = &peercred.Creds{UID: 1000, GID: 1000, User: "alice", Group: "alice", Groups: []string{"alice", "wheel"}}
		}), true},
		{"peer.group not a member", "peer.group:wheel", base(func(f *Facts) {
			f.Peer = &peercred.Creds{UID: 1000, GID: 1000, User: "alice", Group: "alice", Groups: []string{"alice"}}
		}), false},
		{"peer.exe", "peer.exe:/usr/bin/curl", base(func(f *Facts) { f.Peer, f.Exe = root, "/usr/bin/curl" }), true},
		{"peer.exe glob", "peer.exe:/usr/bin/*", base(func(f *Facts) { f.Peer, f.Exe = root, "/usr/bin/curl" }), true},
		{"peer.exe glob one segment", "peer.exe:/usr/*", base(func(f *Facts) { f.Peer, f.Exe = root, "/usr/bin/curl" }), false},
		{"peer.exe unknown", "peer.exe:/usr/bin/curl", base(func(f *Facts) { f.Peer = root }), false},
		{"all conditions AND", "path:/api method:GET src:10.0.0.0/8 cert.uri:spiffe://prod.example", base(nil), true},
		{"one failing condition", "path:/api method:POST src:10.0.0.0/8", base(nil), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := mustRules(t, "allow "+tt.rule)
			d := p.Decide(tt.facts, StageRequest)
			if !d.Final {
				t.Fatalf("not final at the request stage")
			}
			if got := d.Action == Allow && d.Rule == 1; got != tt.match {
				t.Fatalf("rule %q on %+v: matched=%v, want %v (decision %v)", tt.rule, tt.facts, got, tt.match, d)
			}
			// Explain agrees with Decide.
			ed, steps := p.Explain(tt.facts)
			if ed != d || len(steps) != 1 || steps[0].Match != tt.match || !tt.match && steps[0].Reason == "" {
				t.Fatalf("explain = %v %+v, decide = %v", ed, steps, d)
			}
		})
	}
}

// TestFirstMatchAndStages: the first matching rule decides, no match denies,
// and a rule waits for the stage that knows its facts.
func TestFirstMatchAndStages(t *testing.T) {
	p := mustRules(t,
		"allow peer.uid:0 path:/admin",
		"allow cert.uri:spiffe://prod.example/ns/web/* path:/api method:GET,POST",
		"deny path:/admin",
		"allow src:10.0.0.0/8 host:*.internal.example",
		"deny peer.uid:65534",
	)
	nobody := &peercred.Creds{UID: 65534, GID: 65534}
	root := &peercred.Creds{}
	cases := []struct {
		name  string
		f     Facts
		stage Stage
		want  Decision
	}{
		{"root /admin", Facts{Peer: root, Path: "/admin"}, StageRequest, Decision{Final: true, Action: Allow, Rule: 1}},
		{"nobody /admin", Facts{Peer: nobody, Path: "/ADMIN/"}, StageRequest, Decision{Final: true, Action: Deny, Rule: 3}},
		{"nobody at accept waits", Facts{Peer: nobody}, StageAccept, Decision{}},
		{"no rule matches", Facts{Path: "/x"}, StageRequest, Decision{Final: true, Action: Deny}},
		{"src internal host", Facts{Src: netip.MustParseAddr("10.0.0.1"), Host: "a.internal.example", Path: "/x"}, StageRequest, Decision{Final: true, Action: Allow, Rule: 4}},
	}
	for _, c := range cases {
		d := p.Decide(&c.f, c.stage)
		d.Text = ""
		if d != c.want {
			t.Errorf("%s: %v, want %v", c.name, d, c.want)
		}
	}
	// A deny decided at accept: the rule needs only accept-stage facts.
	early := mustRules(t, "deny peer.uid:65534", "allow *")
	if d := early.Decide(&Facts{Peer: nobody}, StageAccept); !d.Final || d.Action != Deny || d.Rule != 1 {
		t.Errorf("early deny = %v", d)
	}
	counts := early.Counts()
	if counts[0].N != 1 || counts[1].N != 0 || counts[2].N != 0 {
		t.Errorf("counts = %+v", counts)
	}
	if d := early.Decide(&Facts{Peer: root}, StageAccept); !d.Final || d.Action != Allow || d.Rule != 2 {
		t.Errorf("allow * at accept = %v", d)
	}
	// A peer no allow rule can admit, whatever path it asks for, is denied
	// at accept, as the default; or under a deny that matches already.
	noPath := mustRules(t, "allow peer.uid:0 path:/admin", "deny path:/admin", "allow peer.uid:1000", "allow src:10.0.0.0/8")
	if d := noPath.Decide(&Facts{Peer: nobody}, StageAccept); !d.Final || d.Action != Deny || d.Rule != 0 {
		t.Errorf("a peer no rule admits, at accept = %v", d)
	}
	laterDeny := mustRules(t, "allow peer.uid:0 path:/admin", "deny path:/x", "deny peer.uid:65534", "allow *")
	if d := laterDeny.Decide(&Facts{Peer: nobody}, StageAccept); !d.Final || d.Action != Deny || d.Rule != 3 {
		t.Errorf("a deny matching at accept after an undecided deny = %v", d)
	}
	if d := noPath.Decide(&Facts{Peer: root}, StageAccept); d.Final {
		t.Errorf("root, who rule 1 may admit, decided at accept: %v", d)
	}
	if d := noPath.Decide(&Facts{Peer: &peercred.Creds{UID: 1000}}, StageAccept); d.Final {
		t.Errorf("uid 1000 is admitted by rule 3 unless rule 2 matches: decided at accept: %v", d)
	}
	var none *Policy
	if d := none.Decide(&Facts{}, StageAccept); !d.Final || d.Action != Allow {
		t.Errorf("no policy = %v", d)
	}
}

// TestRuleParseErrors: every error names the rule and the column of the
// bad term.
func TestRuleParseErrors(t *testing.T) {
	for _, tt := range []struct {
		rule string
		col  int
		msg  string
	}{
		{"", 1, "empty rule"},
		{"permit *", 1, "starts with allow or deny"},
		{"allow", 6, "no conditions"},
		{"allow pth:/x", 7, `unknown condition "pth"`},
		{"allow path:x", 12, "starts with /"},
		{"allow  path:/a src:10.0.0.300", 20, "not an IP address"},
		{"deny peer.uid:0,x", 17, "not a numeric id"},
		{"deny peer.uid:0,,1", 17, "empty value"},
		{"allow method:GET cert.spki:sha256:abc", 35, "SHA-256"},
		{`allow cert.cn:"a b`, 7, "not closed"},
		{"allow cert.spki:abc", 17, "sha256:"},
		{"allow cert.uri:spiffe://a/**/b", 16, "** stands only at the end"},
		{"allow cert.uri:nope", 16, "not a URI"},
		{"allow cert.verified:maybe", 21, "true or false"},
		{"allow host:a.*.example", 12, "first label"},
		{"allow * path:/x", 7, "stands alone"},
		{"allow path", 7, "not a condition"},
		{"allow path:", 12, "no value"},
		{"allow peer.exe:curl", 16, "absolute path"},
	} {
		_, err := ParseRules([]string{"allow *", tt.rule})
		var re *RuleError
		if !errors.As(err, &re) {
			t.Errorf("%q: err = %v, want a RuleError", tt.rule, err)
			continue
		}
		if re.Item != 1 || re.Col != tt.col || !strings.Contains(re.Msg, tt.msg) {
			t.Errorf("%q: %v (item %d col %d), want rule 2 column %d containing %q", tt.rule, err, re.Item, re.Col, tt.col, tt.msg)
		}
	}
}

// TestAllowListIsSugar: ssl_client_allow entries are judged as cert.*
// rules, so SPIFFE patterns and bare trust domains work there too.
func TestAllowListIsSugar(t *testing.T) {
	leaf := leafWith(t, func(c *x509.Certificate) {
		c.URIs = []*url.URL{{Scheme: "spiffe", Host: "prod.example", Path: "/ns/web/sa/frontend"}}
	})
	for _, tt := range []struct {
		entry string
		ok    bool
	}{
		{"spiffe://prod.example/ns/web/sa/frontend", true},
		{"spiffe://prod.example/ns/*/sa/frontend", true},
		{"uri:spiffe://prod.example/ns/web/**", true},
		{"spiffe://prod.example", true},
		{"spiffe://staging.example", false},
		{"spiffe://prod.example/ns/db/*", false},
	} {
		a, err := ParseAllowList([]string{tt.entry})
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := a.Allows(leaf); ok != tt.ok {
			t.Errorf("%s: allows = %v, want %v", tt.entry, ok, tt.ok)
		}
	}
}

// TestGlobMatch: * within a segment for paths, anywhere for names, and a
// long name is matched quickly.
func TestGlobMatch(t *testing.T) {
	for _, tt := range []struct {
		pat, s string
		sep    byte
		want   bool
	}{
		{"/usr/bin/*", "/usr/bin/curl", '/', true},
		{"/usr/*", "/usr/bin/curl", '/', false},
		{"/usr/*/curl", "/usr/bin/curl", '/', true},
		{"/opt/*-agent", "/opt/x-agent", '/', true},
		{"/opt/*-agent", "/opt/x-agent2", '/', false},
		{"ops-*", "ops-1", 0, true},
		{"*ops*", "devops-team", 0, true},
		{"a*b*c", "axxbyyc", 0, true},
		{"a*b*c", "axxbyy", 0, false},
		{"*", "", 0, true},
	} {
		if got := globMatch(tt.pat, tt.s, tt.sep); got != tt.want {
			t.Errorf("globMatch(%q, %q) = %v", tt.pat, tt.s, got)
		}
	}
	long := "/tmp/" + strings.Repeat("a", 1<<16)
	start := time.Now()
	if globMatch("/tmp/*a*a*b", long, '/') {
		t.Error("matched")
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("a 64 KiB name took %v", d)
	}
}

// BenchmarkDecide is one request judged by the README's five rules, falling
// through to the last.
func BenchmarkDecide(b *testing.B) {
	rules, err := ParseRules([]string{
		"allow peer.uid:0 path:/admin",
		"allow cert.uri:spiffe://prod.example/ns/web/* path:/api method:GET,POST",
		"deny path:/admin",
		"allow src:10.0.0.0/8 host:*.internal.example",
		"allow *",
	})
	if err != nil {
		b.Fatal(err)
	}
	p := NewPolicy(rules, nil)
	b.ReportAllocs()
	for b.Loop() {
		f := Facts{Src: netip.MustParseAddr("192.0.2.1"), Host: "www.example.org", Method: "GET", Path: "/static/app.js"}
		if d := p.Decide(&f, StageRequest); d.Rule != 5 {
			b.Fatal(d)
		}
	}
}
