package policy

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"

	"tlsedge/peercred"
)

// This file is the rule language of server.policy: an ordered list of rules,
// each "allow" or "deny" followed by conditions that must all hold; the first
// rule whose conditions hold decides, and once any rule exists a request no
// rule matches is denied. The README documents the language; the parser
// reports every error with the rule's number and the column in its text, which
// the loader turns into file:line:column.

// Stage is how far a connection has come, and so which facts are known: a
// rule is judged as soon as every fact it names is known.
type Stage int

// The stages, in order.
const (
	StageAccept    Stage = iota // source address, transport, peer credentials and executable
	StageHandshake              // + TLS: SNI, the client certificate
	StageRequest                // + host, method and path
)

func (s Stage) String() string {
	switch s {
	case StageAccept:
		return "accept"
	case StageHandshake:
		return "handshake"
	}
	return "request"
}

// MarshalText implements encoding.TextMarshaler: accept, handshake or request.
func (s Stage) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (s *Stage) UnmarshalText(b []byte) error {
	for x := StageAccept; x <= StageRequest; x++ {
		if x.String() == string(b) {
			*s = x
			return nil
		}
	}
	return fmt.Errorf("%q is not a stage (accept, handshake or request)", b)
}

// Facts are what a rule can be judged on. The server fills them in as they
// become known; explain fills them from its flags.
type Facts struct {
	Src      netip.Addr      // the client's address; invalid on a UNIX socket
	Peer     *peercred.Creds // UNIX peer credentials; nil when none were read
	Exe      string          // the peer's executable from /proc at accept; "" when unknown
	SNI      string          // server name the client sent in the handshake
	Cert     *x509.Certificate
	Verified bool // Cert chains to ssl_client_ca (VerifiedChains non-empty)
	Host     string
	Method   string
	Path     string // the request's path as the core parsed it (r.URL.Path)

	norm, normOf string // NormalizePath(Path), computed once per Path
}

// normPath is NormalizePath(f.Path), computed once however many rules ask.
func (f *Facts) normPath() string {
	if f.norm == "" || f.normOf != f.Path {
		f.norm, f.normOf = NormalizePath(f.Path), f.Path
	}
	return f.norm
}

// SetTLS takes the SNI and client certificate facts from cs (nil for a plain
// connection).
func (f *Facts) SetTLS(cs *tls.ConnectionState) {
	if cs == nil {
		return
	}
	f.SNI = cs.ServerName
	f.Cert, f.Verified = ClientCertificate(cs)
}

// Action is what a matching rule does.
type Action bool

// The two actions.
const (
	Deny  Action = false
	Allow Action = true
)

func (a Action) String() string {
	if a {
		return "allow"
	}
	return "deny"
}

// condKind names a condition; its fact stage is kindStage[kind].
type condKind int

const (
	condAny condKind = iota // "*"
	condHost
	condSNI
	condPath
	condMethod
	condSrc
	condCN
	condOU
	condDNS
	condURI
	condIssuer
	condSPKI
	condVerified
	condUID
	condGID
	condUser
	condGroup
	condExe
)

var condNames = map[string]condKind{
	"host": condHost, "sni": condSNI, "path": condPath, "method": condMethod, "src": condSrc,
	"cert.cn": condCN, "cert.ou": condOU, "cert.dns": condDNS, "cert.uri": condURI, "cert.issuer": condIssuer,
	"cert.spki": condSPKI, "cert.verified": condVerified,
	"peer.uid": condUID, "peer.gid": condGID, "peer.user": condUser, "peer.group": condGroup, "peer.exe": condExe,
}

func (k condKind) stage() Stage {
	switch k {
	case condHost, condPath, condMethod:
		return StageRequest
	case condSNI, condCN, condOU, condDNS, condURI, condIssuer, condSPKI, condVerified:
		return StageHandshake
	}
	return StageAccept
}

// cond is one KIND:VALUE[,VALUE...] term; it holds when any value matches.
type cond struct {
	kind   condKind
	text   string // as written
	col    int    // 1-based column of text in the rule
	strs   []string
	ids    []uint32
	nets   []netip.Prefix
	sums   [][]byte
	truthy bool // cert.verified
}

// Rule is one parsed rule.
type Rule struct {
	Num    int    // 1-based position in the list
	Text   string // as written
	Origin string // the option it came from: "policy", or an allow-list it stands for
	Action Action
	conds  []cond
}

// Stage is the latest stage any of r's conditions needs.
func (r *Rule) Stage() Stage {
	s := StageAccept
	for _, c := range r.conds {
		s = max(s, c.kind.stage())
	}
	return s
}

// NeedsPeer reports whether r names peer credentials (peer.*).
func (r *Rule) NeedsPeer() bool {
	return slices.ContainsFunc(r.conds, func(c cond) bool { return c.kind >= condUID })
}

// RuleError is a problem with one rule: its index in the list (0-based, as
// the loader counts list items) and the 1-based column in the rule's text.
type RuleError struct {
	Item int
	Col  int
	Msg  string
}

func (e *RuleError) Error() string {
	return fmt.Sprintf("rule %d, column %d: %s", e.Item+1, e.Col, e.Msg)
}

// ItemPos implements config.ItemError: the loader places the error at the
// list item's line and column.
func (e *RuleError) ItemPos() (item, col int) { return e.Item, e.Col }

// ParseRules parses a rule list. Every bad rule and term is reported, each as
// a *RuleError.
func ParseRules(items []string) ([]Rule, error) {
	var rules []Rule
	var errs []error
	for i, text := range items {
		r, err := parseOneRule(i, text)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		rules = append(rules, r)
	}
	return rules, errors.Join(errs...)
}

const termHelp = "use *, host:, sni:, path:, method:, src:, cert.cn:, cert.ou:, cert.dns:, cert.uri:, cert.issuer:, cert.spki:sha256:, cert.verified:, peer.uid:, peer.gid:, peer.user:, peer.group: or peer.exe:"

func parseOneRule(item int, text string) (Rule, error) {
	r := Rule{Num: item + 1, Text: strings.TrimSpace(text), Origin: "policy"}
	type word struct {
		s   string
		col int
	}
	var words []word
	for i := 0; i < len(text); {
		if text[i] == ' ' || text[i] == '\t' {
			i++
			continue
		}
		// A word runs to the next blank outside double quotes, which let a
		// value hold spaces: cert.issuer:"Example CA". The quotes are dropped.
		j, quoted := i, false
		var b strings.Builder
		for ; j < len(text) && (quoted || text[j] != ' ' && text[j] != '\t'); j++ {
			if text[j] == '"' {
				quoted = !quoted
				continue
			}
			b.WriteByte(text[j])
		}
		if quoted {
			return r, &RuleError{Item: item, Col: i + 1, Msg: "a double quote is not closed"}
		}
		words = append(words, word{b.String(), i + 1})
		i = j
	}
	if len(words) == 0 {
		return r, &RuleError{Item: item, Col: 1, Msg: "empty rule: write allow or deny and conditions, e.g. \"allow path:/api\""}
	}
	switch strings.ToLower(words[0].s) {
	case "allow":
		r.Action = Allow
	case "deny":
		r.Action = Deny
	default:
		return r, &RuleError{Item: item, Col: words[0].col, Msg: fmt.Sprintf("%q: a rule starts with allow or deny", words[0].s)}
	}
	if len(words) == 1 {
		return r, &RuleError{Item: item, Col: words[0].col + len(words[0].s), Msg: "no conditions: write * to match everything"}
	}
	var errs []error
	for _, w := range words[1:] {
		c, err := parseCond(w.s)
		if err != nil {
			errs = append(errs, &RuleError{Item: item, Col: w.col + c.col, Msg: err.Error()})
			continue
		}
		c.col = w.col
		if c.kind == condAny && len(words) > 2 {
			errs = append(errs, &RuleError{Item: item, Col: w.col, Msg: "* matches everything and stands alone; drop it or the other conditions"})
			continue
		}
		r.conds = append(r.conds, c)
	}
	return r, errors.Join(errs...)
}

// parseCond parses one term. On error, the returned cond's col is the offset
// (0-based) of the problem within the term.
func parseCond(term string) (cond, error) {
	if term == "*" {
		return cond{kind: condAny, text: term}, nil
	}
	name, val, ok := strings.Cut(term, ":")
	if !ok {
		return cond{}, fmt.Errorf("%q is not a condition: %s", term, termHelp)
	}
	kind, known := condNames[strings.ToLower(name)]
	if !known {
		return cond{}, fmt.Errorf("unknown condition %q: %s", name, termHelp)
	}
	c := cond{kind: kind, text: term}
	bad := func(off int, format string, args ...any) (cond, error) {
		return cond{col: len(name) + 1 + off}, fmt.Errorf(name+": "+format, args...)
	}
	if val == "" {
		return bad(0, "no value after the colon")
	}
	if kind == condSPKI {
		v, ok := strings.CutPrefix(val, "sha256:")
		if !ok {
			return bad(0, "write cert.spki:sha256:DIGEST (base64 or hex)")
		}
		for off := len("sha256:"); ; {
			one, rest, more := strings.Cut(v, ",")
			sum, err := parseSPKI(one)
			if err != nil {
				return bad(off, "%v", err)
			}
			c.sums = append(c.sums, sum)
			if !more {
				return c, nil
			}
			off += len(one) + 1
			v = strings.TrimPrefix(rest, "sha256:")
		}
	}
	off := 0
	for v := range strings.SplitSeq(val, ",") {
		if v == "" {
			return bad(off, "empty value (two commas, or a comma at the end)")
		}
		if err := c.add(v); err != nil {
			return bad(off, "%q: %v", v, err)
		}
		off += len(v) + 1
	}
	return c, nil
}

func parseSPKI(v string) ([]byte, error) {
	if b, err := hex.DecodeString(strings.ReplaceAll(v, ":", "")); err == nil && len(b) == sha256.Size {
		return b, nil
	}
	if b, err := base64.StdEncoding.DecodeString(v); err == nil && len(b) == sha256.Size {
		return b, nil
	}
	return nil, errors.New("the pin must be a SHA-256 digest of the SubjectPublicKeyInfo in base64 or hex")
}

// add parses one value of c.
func (c *cond) add(v string) error {
	switch c.kind {
	case condHost, condSNI, condDNS:
		v = strings.TrimSuffix(strings.ToLower(v), ".")
		if strings.Contains(strings.TrimPrefix(v, "*."), "*") && v != "*" {
			return errors.New("* stands only for the first label, as in *.example.org")
		}
	case condPath:
		if !strings.HasPrefix(v, "/") {
			return errors.New("a path prefix starts with /")
		}
		v = NormalizePath(v)
	case condMethod:
		v = strings.ToUpper(v)
		for _, r := range v {
			if r < 'A' || r > 'Z' {
				if r != '-' && r != '_' {
					return errors.New("not a method name")
				}
			}
		}
	case condSrc:
		if p, err := netip.ParsePrefix(v); err == nil {
			c.nets = append(c.nets, p.Masked())
			return nil
		}
		a, err := netip.ParseAddr(v)
		if err != nil {
			return errors.New("not an IP address or CIDR (10.0.0.0/8, ::1)")
		}
		c.nets = append(c.nets, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
		return nil
	case condURI:
		u, err := url.Parse(v)
		if err != nil || u.Scheme == "" {
			return errors.New("not a URI (spiffe://trust.domain/path)")
		}
		if strings.Contains(strings.ReplaceAll(v, "**", ""), "**") {
			return errors.New("*** is not a pattern: * is one segment, ** the rest")
		}
		if i := strings.Index(v, "**"); i >= 0 && i != len(v)-2 {
			return errors.New("** stands only at the end, for the rest of the path")
		}
	case condVerified:
		b, err := strconv.ParseBool(v)
		if err != nil {
			return errors.New("use true or false")
		}
		c.truthy = b
		return nil
	case condUID, condGID:
		id, err := strconv.ParseUint(v, 10, 32)
		if err != nil {
			return errors.New("not a numeric id")
		}
		c.ids = append(c.ids, uint32(id))
		return nil
	case condCN, condOU, condIssuer:
		if strings.Count(v, "*") > 3 {
			return errors.New("at most three * in one value")
		}
	case condUser, condGroup:
		if strings.ContainsAny(v, "*/") {
			return errors.New("not a user or group name")
		}
	case condExe:
		if !strings.HasPrefix(v, "/") || strings.Count(v, "*") > 3 {
			return errors.New("an executable is an absolute path (a * matches within one path segment, at most three of them)")
		}
	}
	c.strs = append(c.strs, v)
	return nil
}

// NormalizePath is the form paths are compared in: percent-escapes decoded
// (repeatedly, so %252f is a /), backslashes as slashes, ;parameters cut from
// each segment, dot segments resolved, repeated and trailing slashes dropped,
// and letters lower-cased. A backend may read a request path in any of these
// ways (an encoded slash, Tomcat's ;jsessionid, a case-insensitive file
// system), so a rule sees the widest reading: "path:/admin" covers
// "//admin", "/admin/../admin", "/%2fadmin", "/ADMIN" and "/admin;x".
func NormalizePath(p string) string {
	for range 4 {
		d, err := url.PathUnescape(p)
		if err != nil || d == p {
			break
		}
		p = d
	}
	p = strings.ReplaceAll(p, "\\", "/")
	if strings.Contains(p, ";") {
		segs := strings.Split(p, "/")
		for i, s := range segs {
			if j := strings.IndexByte(s, ';'); j >= 0 {
				segs[i] = s[:j]
			}
		}
		p = strings.Join(segs, "/")
	}
	return strings.ToLower(path.Clean("/" + p))
}

// underPrefix reports whether the normalised path p is prefix or below it,
// on whole segments: /admin covers /admin and /admin/x, not /administrator.
func underPrefix(p, prefix string) bool {
	return prefix == "/" || p == prefix || strings.HasPrefix(p, prefix) && p[len(prefix)] == '/'
}

// hostMatch matches a lower-case DNS name against a pattern: exact, or
// *.suffix for exactly one label in front, or * for any non-empty name.
func hostMatch(pat, name string) bool {
	if name == "" {
		return false
	}
	if pat == "*" || pat == name {
		return true
	}
	if suf, ok := strings.CutPrefix(pat, "*"); ok {
		head, found := strings.CutSuffix(name, suf)
		return found && head != "" && !strings.Contains(head, ".")
	}
	return false
}

// uriMatch matches a URI SAN against a pattern: segments compared one by one,
// * for exactly one segment, ** at the end for any rest (none included). A
// pattern that is only a SPIFFE trust domain (spiffe://example.org) matches
// every SPIFFE ID in it.
func uriMatch(pat, uri string) bool {
	if rest, ok := strings.CutPrefix(pat, "spiffe://"); ok && !strings.Contains(rest, "/") {
		td, _, _ := strings.Cut(strings.TrimPrefix(uri, "spiffe://"), "/")
		return strings.HasPrefix(uri, "spiffe://") && strings.EqualFold(td, rest)
	}
	ps, us := strings.Split(pat, "/"), strings.Split(uri, "/")
	for i, p := range ps {
		if p == "**" && i == len(ps)-1 {
			return len(us) >= i // "a/**" matches "a" and "a/b/c"
		}
		if i >= len(us) {
			return false
		}
		if p == "*" {
			if us[i] == "" {
				return false
			}
			continue
		}
		if p != us[i] {
			return false
		}
	}
	return len(us) == len(ps)
}

// globMatch matches s against pat where * stands for any run of characters
// other than sep (no sep when sep is 0). With a sep, pattern and name are
// compared segment by segment.
func globMatch(pat, s string, sep byte) bool {
	if !strings.Contains(pat, "*") {
		return pat == s
	}
	if sep == 0 {
		return wildMatch(pat, s)
	}
	ps, ss := strings.Split(pat, string(sep)), strings.Split(s, string(sep))
	if len(ps) != len(ss) {
		return false
	}
	for i := range ps {
		if !wildMatch(ps[i], ss[i]) {
			return false
		}
	}
	return true
}

// wildMatch is the classic iterative wildcard match with one backtracking
// point (the last *): O(len(pat)*len(s)) at worst, whatever the input, so a
// long name (a peer's executable path) cannot make matching slow.
func wildMatch(pat, s string) bool {
	pi, si, star, mark := 0, 0, -1, 0
	for si < len(s) {
		switch {
		case pi < len(pat) && pat[pi] == '*':
			star, mark = pi, si
			pi++
		case pi < len(pat) && pat[pi] == s[si]:
			pi++
			si++
		case star >= 0:
			pi, mark = star+1, mark+1
			si = mark
		default:
			return false
		}
	}
	for pi < len(pat) && pat[pi] == '*' {
		pi++
	}
	return pi == len(pat)
}

// Policy is a compiled rule list: immutable rules and a decision counter per
// rule, safe for concurrent use. A nil *Policy has no rules and allows all.
type Policy struct {
	rules    []Rule
	counts   []atomic.Uint64 // per rule; the last one is the default deny
	resolver *peercred.Resolver
}

// NewPolicy compiles rules. resolver looks up user and group names for
// peer.user and peer.group when the peer's were not resolved already; nil
// makes a private one when some rule needs names.
func NewPolicy(rules []Rule, resolver *peercred.Resolver) *Policy {
	if len(rules) == 0 {
		return nil
	}
	p := &Policy{rules: slices.Clone(rules), counts: make([]atomic.Uint64, len(rules)+1), resolver: resolver}
	for i := range p.rules {
		p.rules[i].Num = i + 1
	}
	if p.resolver == nil && p.NeedsNames() {
		p.resolver = peercred.NewResolver(peercred.ResolverConfig{})
	}
	return p
}

// Rules returns the rules in order.
func (p *Policy) Rules() []Rule {
	if p == nil {
		return nil
	}
	return p.rules
}

func (p *Policy) needs(kinds ...condKind) bool {
	for _, r := range p.Rules() {
		for _, c := range r.conds {
			if slices.Contains(kinds, c.kind) {
				return true
			}
		}
	}
	return false
}

// NeedsNames reports whether some rule matches peer user or group names.
func (p *Policy) NeedsNames() bool { return p.needs(condUser, condGroup) }

// NeedsExe reports whether some rule matches the peer's executable, which
// the server then reads from /proc at accept.
func (p *Policy) NeedsExe() bool { return p.needs(condExe) }

// NeedsPeer reports whether some rule looks at peer credentials.
func (p *Policy) NeedsPeer() bool { return p.needs(condUID, condGID, condUser, condGroup, condExe) }

// Decision is the outcome of judging facts.
type Decision struct {
	Final  bool   // false: a rule needs facts of a later stage
	Action Action // when Final
	Rule   int    // the deciding rule's number; 0 for the default deny (or no policy)
	Text   string // the deciding rule as written; "" for the default
}

func (d Decision) String() string {
	if !d.Final {
		return "undecided"
	}
	if d.Rule == 0 {
		return d.Action.String() + " (default)"
	}
	return fmt.Sprintf("%s (rule %d)", d.Action, d.Rule)
}

// tri is a three-valued truth: a condition on a fact not known yet is unknown.
type tri int

const (
	no tri = iota
	unknown
	yes
)

// Judge is Decide without counting: for a connection-level check whose
// allow the request stage will count again.
func (p *Policy) Judge(f *Facts, s Stage) Decision {
	if p == nil {
		return Decision{Final: true, Action: Allow}
	}
	d, _ := p.judge(f, s, false)
	return d
}

// Count adds d, a final decision Judge returned, to its rule's counter.
func (p *Policy) Count(d Decision) {
	if p != nil && d.Final {
		p.counts[ruleIndex(d.Rule, len(p.rules))].Add(1)
	}
}

// Decide judges f as known at stage s. A rule with a failing known condition
// is passed over; a rule whose every condition holds decides; a rule with an
// unknown condition (and none failing) leaves the decision to a later stage.
// A final decision is counted.
func (p *Policy) Decide(f *Facts, s Stage) Decision {
	if p == nil {
		return Decision{Final: true, Action: Allow}
	}
	d, _ := p.judge(f, s, false)
	if d.Final {
		p.counts[ruleIndex(d.Rule, len(p.rules))].Add(1)
	}
	return d
}

func ruleIndex(num, n int) int {
	if num == 0 {
		return n
	}
	return num - 1
}

// Step is one rule's verdict in an explanation.
type Step struct {
	Rule   Rule
	Match  bool
	Reason string // why it did not match: the first failing condition and the fact
}

// Explain judges f at the request stage, as Decide would, and also returns
// every rule looked at with why it did or did not match. Nothing is counted.
func (p *Policy) Explain(f *Facts) (Decision, []Step) {
	if p == nil {
		return Decision{Final: true, Action: Allow}, nil
	}
	return p.judge(f, StageRequest, true)
}

func (p *Policy) judge(f *Facts, s Stage, explain bool) (Decision, []Step) {
	var steps []Step
	for _, r := range p.rules {
		t, why := p.ruleHolds(&r, f, s, explain)
		if explain {
			steps = append(steps, Step{Rule: r, Match: t == yes, Reason: why})
		}
		switch t {
		case yes:
			return Decision{Final: true, Action: r.Action, Rule: r.Num, Text: r.Text}, steps
		case unknown:
			if !explain {
				if possible, by := p.allowPossible(f, s, r.Num); !possible {
					// Whatever the later facts, no allow can match: deny
					// now, under the deny that matches already, or as the
					// default.
					d := Decision{Final: true, Action: Deny}
					if by != nil {
						d.Rule, d.Text = by.Num, by.Text
					}
					return d, steps
				}
			}
			return Decision{}, steps
		}
	}
	return Decision{Final: true, Action: Deny}, steps
}

// allowPossible reports whether some allow rule from number from on could
// still match f once later facts are known, before a deny surely matches;
// if not, by is that deny (nil when the default would decide).
func (p *Policy) allowPossible(f *Facts, s Stage, from int) (possible bool, by *Rule) {
	for i := from - 1; i < len(p.rules); i++ {
		r := &p.rules[i]
		t, _ := p.ruleHolds(r, f, s, false)
		switch {
		case t == no:
		case r.Action == Allow:
			return true, nil
		case t == yes: // a deny that matches now: nothing after it counts
			return false, r
		}
	}
	return false, nil
}

func (p *Policy) ruleHolds(r *Rule, f *Facts, s Stage, explain bool) (tri, string) {
	out := yes
	for i := range r.conds {
		c := &r.conds[i]
		if c.kind.stage() > s {
			out = unknown
			continue
		}
		if !p.condHolds(c, f) {
			why := ""
			if explain {
				why = c.text + " does not match " + c.fact(f)
			}
			return no, why
		}
	}
	return out, ""
}

func (p *Policy) condHolds(c *cond, f *Facts) bool {
	switch c.kind {
	case condAny:
		return true
	case condHost:
		h := hostOnly(f.Host)
		return slices.ContainsFunc(c.strs, func(pat string) bool { return hostMatch(pat, h) })
	case condSNI:
		n := strings.TrimSuffix(strings.ToLower(f.SNI), ".")
		return slices.ContainsFunc(c.strs, func(pat string) bool { return hostMatch(pat, n) })
	case condPath:
		np := f.normPath()
		return slices.ContainsFunc(c.strs, func(pre string) bool { return underPrefix(np, pre) })
	case condMethod:
		return slices.Contains(c.strs, strings.ToUpper(f.Method))
	case condSrc:
		if !f.Src.IsValid() {
			return false
		}
		a := f.Src.Unmap()
		return slices.ContainsFunc(c.nets, func(n netip.Prefix) bool { return n.Contains(a) })
	case condVerified:
		return (f.Cert != nil && f.Verified) == c.truthy
	case condSPKI:
		// A pin needs no CA: the handshake proved the client holds the key.
		if f.Cert == nil {
			return false
		}
		sum := sha256.Sum256(f.Cert.RawSubjectPublicKeyInfo)
		return slices.ContainsFunc(c.sums, func(b []byte) bool { return string(b) == string(sum[:]) })
	case condCN, condOU, condDNS, condURI, condIssuer:
		// Names in a certificate no CA vouched for prove nothing.
		if f.Cert == nil || !f.Verified {
			return false
		}
		return certMatch(c, f.Cert)
	case condUID:
		return f.Peer != nil && slices.Contains(c.ids, f.Peer.UID)
	case condGID:
		return f.Peer != nil && slices.Contains(c.ids, f.Peer.GID)
	case condUser, condGroup:
		if f.Peer == nil {
			return false
		}
		named := p.named(f.Peer)
		if c.kind == condUser {
			return named.User != "" && slices.Contains(c.strs, named.User)
		}
		return slices.ContainsFunc(c.strs, func(g string) bool {
			return g == named.Group || slices.Contains(named.Groups, g)
		})
	case condExe:
		return f.Exe != "" && slices.ContainsFunc(c.strs, func(pat string) bool { return globMatch(pat, f.Exe, '/') })
	}
	return false
}

func certMatch(c *cond, leaf *x509.Certificate) bool {
	for _, pat := range c.strs {
		switch c.kind {
		case condCN:
			if globMatch(pat, leaf.Subject.CommonName, 0) {
				return true
			}
		case condOU:
			if slices.ContainsFunc(leaf.Subject.OrganizationalUnit, func(ou string) bool { return globMatch(pat, ou, 0) }) {
				return true
			}
		case condDNS:
			if slices.ContainsFunc(leaf.DNSNames, func(n string) bool { return hostMatch(pat, strings.ToLower(n)) }) {
				return true
			}
		case condURI:
			if slices.ContainsFunc(leaf.URIs, func(u *url.URL) bool { return uriMatch(pat, u.String()) }) {
				return true
			}
		case condIssuer:
			if globMatch(pat, leaf.Issuer.CommonName, 0) || globMatch(pat, leaf.Issuer.String(), 0) {
				return true
			}
		}
	}
	return false
}

// named returns c with user and group names, resolving a copy when the
// server did not resolve them (peercreds_resolve decides what handlers see).
func (p *Policy) named(c *peercred.Creds) *peercred.Creds {
	if c.User != "" || c.Group != "" || len(c.Groups) > 0 || p.resolver == nil {
		return c
	}
	cp := *c
	p.resolver.Resolve(&cp)
	return &cp
}

func hostOnly(h string) string {
	h = strings.ToLower(h)
	if strings.HasPrefix(h, "[") {
		if i := strings.IndexByte(h, ']'); i > 0 {
			return h[1:i]
		}
	}
	if i := strings.LastIndexByte(h, ':'); i >= 0 && strings.Count(h, ":") == 1 {
		h = h[:i]
	}
	return strings.TrimSuffix(h, ".")
}

// fact describes the fact c looks at, for explanations.
func (c *cond) fact(f *Facts) string {
	noCert := func() string {
		if f.Cert == nil {
			return "(no client certificate)"
		}
		if !f.Verified && c.kind != condSPKI {
			return "(the client certificate is not verified)"
		}
		return ""
	}
	switch c.kind {
	case condHost:
		return strconv.Quote(hostOnly(f.Host))
	case condSNI:
		return strconv.Quote(f.SNI)
	case condPath:
		return strconv.Quote(NormalizePath(f.Path))
	case condMethod:
		return strconv.Quote(f.Method)
	case condSrc:
		if !f.Src.IsValid() {
			return "(no source address)"
		}
		return f.Src.String()
	case condVerified:
		return strconv.FormatBool(f.Cert != nil && f.Verified)
	case condCN, condOU, condDNS, condURI, condIssuer, condSPKI:
		if s := noCert(); s != "" {
			return s
		}
		switch c.kind {
		case condCN:
			return strconv.Quote(f.Cert.Subject.CommonName)
		case condOU:
			return fmt.Sprintf("%q", f.Cert.Subject.OrganizationalUnit)
		case condDNS:
			return fmt.Sprintf("%q", f.Cert.DNSNames)
		case condURI:
			var us []string
			for _, u := range f.Cert.URIs {
				us = append(us, u.String())
			}
			return fmt.Sprintf("%q", us)
		case condIssuer:
			return strconv.Quote(f.Cert.Issuer.String())
		}
		sum := sha256.Sum256(f.Cert.RawSubjectPublicKeyInfo)
		return "sha256:" + base64.StdEncoding.EncodeToString(sum[:])
	case condUID, condGID, condUser, condGroup:
		if f.Peer == nil {
			return "(no peer credentials)"
		}
		return f.Peer.String()
	case condExe:
		if f.Exe == "" {
			return "(executable unknown)"
		}
		return strconv.Quote(f.Exe)
	}
	return ""
}

// Count is one rule's decision count.
type Count struct {
	Rule   int // 0 for the default deny
	Action Action
	Text   string
	N      uint64
}

// Counts returns the decisions made by each rule, the default deny last.
func (p *Policy) Counts() []Count {
	if p == nil {
		return nil
	}
	out := make([]Count, 0, len(p.rules)+1)
	for i, r := range p.rules {
		out = append(out, Count{Rule: r.Num, Action: r.Action, Text: r.Text, N: p.counts[i].Load()})
	}
	return append(out, Count{Rule: 0, Action: Deny, Text: "default", N: p.counts[len(p.rules)].Load()})
}

// Paths lists the path prefixes r's path conditions name, normalised.
func (r *Rule) Paths() []string {
	var out []string
	for _, c := range r.conds {
		if c.kind == condPath {
			out = append(out, c.strs...)
		}
	}
	return out
}
