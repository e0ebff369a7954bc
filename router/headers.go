package router

import (
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"tlsedge/conninfo"
	"tlsedge/peercred"
	"tlsedge/policy"
)

// Header rules: per mount, set, add and remove request headers (before the
// mounted handler sees the request) and response headers (as the handler's
// final response head is written). Compression, when the mount has it,
// stands outside the rules: it reads the client's own Accept-Encoding (a
// rule removing it keeps an upstream's answer uncompressed for the edge to
// compress) and sees the response the rules made (a rule setting
// Cache-Control: no-transform keeps it uncompressed). Each rule is one item
// of the header_rule option:
//
//	KEY=request|response set|add|remove NAME [VALUE]
//
// KEY is a mount key as the mount option writes it ("/api", "a.test/",
// "*.b.test/") or "*" for every mount; the rules of "*" run first, then the
// mount's own, in the order given. VALUE is the rest of the item, spaces
// and commas included, and may hold variables: {client_ip}, {client_port},
// {host}, {scheme}, {server}, {request_id}, {tls_sni}, {tls_version},
// {tls_cipher}, {tls_client_cn}, {peer_uid}, {peer_gid}, {peer_pid},
// {peer_user}, {peer_group}; "{{" is a literal "{". A variable whose fact
// is absent (no client certificate, a TCP client's peer_uid) is empty; set
// with an empty value removes the header and add adds nothing, so an absent
// fact never reaches an upstream as an empty header. {tls_client_cn} is the
// subject common name of a client certificate only when it was verified
// against ssl_client_ca: in the request mode anyone can present any
// certificate.
//
// What the edge vouches for stays the edge's (policy/edgeheaders.go): a
// request rule may not name an identity header (X-SSL-*, X-Remote-*,
// Remote-User, X-Forwarded-Client-Cert) or a forwarding header (Forwarded,
// X-Forwarded-*, X-Real-IP...), since those are stripped from every client
// and set only from the connection's facts, or X-Request-Id, the id the
// logs and the upstream share; nor may any rule name a header
// that frames the message (Content-Length, Transfer-Encoding, Connection,
// Host...), or a response rule Content-Encoding. Each is refused at
// start-up, naming the option.

// HeaderRules is the header_rule option: rules parsed and checked when the
// configuration is loaded. The zero value has no rules.
type HeaderRules struct {
	items []string
	rules []headerRule
}

type headerRule struct {
	key      string // a cleaned mount key, or "*"
	response bool
	op       string // "set", "add" or "remove"
	name     string // canonical form
	value    []segment
}

// segment is a literal (v == nil) or a variable of a header value.
type segment struct {
	lit string
	v   func(*http.Request, *conninfo.Info) string
}

// WholeItems marks header rules as never split at commas: a value may hold one.
func (HeaderRules) WholeItems() {}

// List implements config.ListValue.
func (h HeaderRules) List() []string { return slices.Clone(h.items) }

// Len is the number of rules.
func (h HeaderRules) Len() int { return len(h.rules) }

// ParseHeaderRules parses rules as the header_rule option does.
func ParseHeaderRules(items ...string) (HeaderRules, error) {
	var h HeaderRules
	err := h.SetList(items)
	return h, err
}

// SetList implements config.ListValue.
func (h *HeaderRules) SetList(items []string) error {
	var rules []headerRule
	var errs []error
	for _, s := range items {
		r, err := parseHeaderRule(s)
		if err != nil {
			errs = append(errs, fmt.Errorf("header rule %q: %w", s, err))
			continue
		}
		rules = append(rules, r)
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	*h = HeaderRules{items: slices.Clone(items), rules: rules}
	return nil
}

func parseHeaderRule(s string) (headerRule, error) {
	k, rest, ok := strings.Cut(strings.TrimSpace(s), "=")
	if !ok {
		return headerRule{}, errors.New("want KEY=request|response set|add|remove NAME [VALUE], KEY a mount key or *")
	}
	var r headerRule
	if k = strings.TrimSpace(k); k == "*" {
		r.key = "*"
	} else {
		host, prefix, err := cleanKey(k)
		if err != nil {
			return r, err
		}
		r.key = host + prefix
	}
	f := strings.Fields(rest)
	if len(f) < 3 {
		return r, errors.New("want request|response, then set, add or remove, then a header name")
	}
	switch f[0] {
	case "request":
	case "response":
		r.response = true
	default:
		return r, fmt.Errorf("%q: want request or response", f[0])
	}
	r.op = f[1]
	if r.op != "set" && r.op != "add" && r.op != "remove" {
		return r, fmt.Errorf("%q: want set, add or remove", r.op)
	}
	if !isToken(f[2]) {
		return r, fmt.Errorf("%q is not a header name", f[2])
	}
	r.name = http.CanonicalHeaderKey(f[2])
	if err := checkRuleHeader(r.name, r.response); err != nil {
		return r, err
	}
	// The value is the rest after the name, as written.
	value := strings.TrimSpace(rest)
	for range 3 {
		value = strings.TrimLeft(value, " \t")
		if i := strings.IndexAny(value, " \t"); i >= 0 {
			value = value[i:]
		} else {
			value = ""
		}
	}
	value = strings.TrimSpace(value)
	switch {
	case r.op == "remove" && value != "":
		return r, errors.New("remove takes no value")
	case r.op != "remove" && value == "":
		return r, fmt.Errorf("%s needs a value (remove the header with remove)", r.op)
	}
	var err error
	r.value, err = parseTemplate(value)
	return r, err
}

// checkRuleHeader refuses the headers a rule may not touch.
func checkRuleHeader(name string, response bool) error {
	if !response && policy.IsIdentityHeader(name) {
		return fmt.Errorf("%s is an identity header: only the edge sets it, from the connection (client certificate, peer credentials)", name)
	}
	if !response && policy.IsForwardingHeader(name) {
		return fmt.Errorf("%s is a forwarding header: only the edge sets it, from the connection and trusted_proxies", name)
	}
	if !response && strings.EqualFold(name, "X-Request-Id") {
		return errors.New("X-Request-Id is the edge's request id (kept from trusted_proxies, else made here): use {request_id} in another header")
	}
	switch strings.ToLower(name) {
	case "content-length", "transfer-encoding", "connection", "keep-alive", "proxy-connection", "te", "trailer", "upgrade", "host":
		return fmt.Errorf("%s frames the message or the connection: no rule may change it", name)
	case "content-encoding":
		if response {
			return errors.New("Content-Encoding describes the body: set it with compression (compress), not a rule")
		}
	}
	return nil
}

// headerVars are the variables a value may hold.
var headerVars = map[string]func(*http.Request, *conninfo.Info) string{
	"client_ip": func(_ *http.Request, ci *conninfo.Info) string {
		if ap, ok := tcpAddr(ci); ok {
			return ap.Addr().Unmap().String()
		}
		return ""
	},
	"client_port": func(_ *http.Request, ci *conninfo.Info) string {
		if ap, ok := tcpAddr(ci); ok {
			return strconv.Itoa(int(ap.Port()))
		}
		return ""
	},
	"host": func(r *http.Request, _ *conninfo.Info) string { return RequestHost(r) },
	"scheme": func(_ *http.Request, ci *conninfo.Info) string {
		if ci != nil && ci.TLS != nil {
			return "https"
		}
		return "http"
	},
	"server": func(_ *http.Request, ci *conninfo.Info) string {
		if ci == nil {
			return ""
		}
		return ci.Server
	},
	"request_id": func(r *http.Request, _ *conninfo.Info) string { return policy.RequestID(r) },
	"tls_sni": func(_ *http.Request, ci *conninfo.Info) string {
		if ci == nil || ci.TLS == nil {
			return ""
		}
		return ci.TLS.ServerName
	},
	"tls_version": func(_ *http.Request, ci *conninfo.Info) string {
		if ci == nil || ci.TLS == nil {
			return ""
		}
		return policy.ProtocolName(ci.TLS.Version)
	},
	"tls_cipher": func(_ *http.Request, ci *conninfo.Info) string {
		if ci == nil || ci.TLS == nil {
			return ""
		}
		return policy.CipherName(ci.TLS.CipherSuite)
	},
	"tls_client_cn": func(_ *http.Request, ci *conninfo.Info) string {
		if ci == nil {
			return ""
		}
		leaf, verified := policy.ClientCertificate(ci.TLS)
		if leaf == nil || !verified {
			return ""
		}
		return leaf.Subject.CommonName
	},
	"peer_uid": peerVar(func(c *peercred.Creds) string { return strconv.FormatUint(uint64(c.UID), 10) }),
	"peer_gid": peerVar(func(c *peercred.Creds) string { return strconv.FormatUint(uint64(c.GID), 10) }),
	"peer_pid": peerVar(func(c *peercred.Creds) string {
		if c.PID == 0 {
			return ""
		}
		return strconv.Itoa(int(c.PID))
	}),
	"peer_user":  peerVar(func(c *peercred.Creds) string { return c.User }),
	"peer_group": peerVar(func(c *peercred.Creds) string { return c.Group }),
}

// HeaderVariables lists the variables a header rule's value may hold.
func HeaderVariables() []string {
	var out []string
	for k := range headerVars {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func peerVar(f func(*peercred.Creds) string) func(*http.Request, *conninfo.Info) string {
	return func(_ *http.Request, ci *conninfo.Info) string {
		if ci == nil || ci.Peer == nil {
			return ""
		}
		return f(ci.Peer)
	}
}

func tcpAddr(ci *conninfo.Info) (netip.AddrPort, bool) {
	if ci == nil || ci.RemoteAddr == nil || ci.RemoteAddr.Network() == "unix" {
		return netip.AddrPort{}, false
	}
	ap, err := netip.ParseAddrPort(ci.RemoteAddr.String())
	return ap, err == nil
}

// parseTemplate splits a value into literals and variables.
func parseTemplate(v string) ([]segment, error) {
	var out []segment
	var lit strings.Builder
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c < 0x20 && c != '\t' || c == 0x7f {
			return nil, fmt.Errorf("control character %q in the value", c)
		}
		switch {
		case c == '{' && i+1 < len(v) && v[i+1] == '{':
			lit.WriteByte('{')
			i++
		case c == '{':
			end := strings.IndexByte(v[i:], '}')
			if end < 0 {
				return nil, errors.New("unclosed { in the value (write {{ for a literal {)")
			}
			name := v[i+1 : i+end]
			f, ok := headerVars[name]
			if !ok {
				return nil, fmt.Errorf("unknown variable {%s}; known: {%s}", name, strings.Join(HeaderVariables(), "}, {"))
			}
			if lit.Len() > 0 {
				out = append(out, segment{lit: lit.String()})
				lit.Reset()
			}
			out = append(out, segment{v: f})
			i += end
		default:
			lit.WriteByte(c)
		}
	}
	if lit.Len() > 0 {
		out = append(out, segment{lit: lit.String()})
	}
	return out, nil
}

// expand computes a value for r. A value made only of variables that are
// all empty is empty; a variable's text that cannot stand in a header as it
// is (a control character in a certificate name) is percent-encoded.
func expand(segs []segment, r *http.Request, ci *conninfo.Info) string {
	if len(segs) == 1 && segs[0].v == nil {
		return segs[0].lit
	}
	var b strings.Builder
	vars := false
	for _, s := range segs {
		if s.v == nil {
			b.WriteString(s.lit)
			continue
		}
		x := s.v(r, ci)
		if x != "" {
			vars = true
		}
		if !plainValue(x) {
			x = url.PathEscape(x)
		}
		b.WriteString(x)
	}
	if !vars {
		// Every variable was empty: the fact is absent, and literals
		// around nothing would say it was present.
		return ""
	}
	return b.String()
}

func plainValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < 0x20 && c != '\t' || c == 0x7f {
			return false
		}
	}
	return strings.TrimSpace(v) == v
}

func apply(h http.Header, rules []headerRule, r *http.Request, ci *conninfo.Info) {
	for i := range rules {
		ru := &rules[i]
		switch ru.op {
		case "remove":
			delete(h, ru.name)
		case "set":
			if v := expand(ru.value, r, ci); v != "" {
				h[ru.name] = []string{v}
			} else {
				delete(h, ru.name)
			}
		case "add":
			if v := expand(ru.value, r, ci); v != "" {
				h[ru.name] = append(h[ru.name], v)
			}
		}
	}
}

// Keys lists the mount keys the rules name ("*" included), in order, each once.
func (h HeaderRules) Keys() []string {
	var out []string
	for _, r := range h.rules {
		if !slices.Contains(out, r.key) {
			out = append(out, r.key)
		}
	}
	return out
}

// Wrap returns next with the rules of "*" and of the mount key applied
// (key as MountSpec.Key gives it); next itself when none apply.
func (h HeaderRules) Wrap(key string, next http.Handler) http.Handler {
	var req, resp []headerRule
	for _, r := range h.rules {
		if r.key != "*" {
			continue
		}
		if r.response {
			resp = append(resp, r)
		} else {
			req = append(req, r)
		}
	}
	for _, r := range h.rules {
		if r.key != key {
			continue
		}
		if r.response {
			resp = append(resp, r)
		} else {
			req = append(req, r)
		}
	}
	if len(req) == 0 && len(resp) == 0 {
		return next
	}
	return &ruleHandler{next: next, req: req, resp: resp}
}

type ruleHandler struct {
	next      http.Handler
	req, resp []headerRule
}

func (h *ruleHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ci, _ := conninfo.FromContext(r.Context())
	if len(h.req) > 0 {
		apply(r.Header, h.req, r, ci)
	}
	if len(h.resp) > 0 {
		w = &ruleWriter{ResponseWriter: w, h: h, r: r, ci: ci}
	}
	h.next.ServeHTTP(w, r)
}

// ruleWriter applies the response rules once, as the final head is written.
type ruleWriter struct {
	http.ResponseWriter
	h    *ruleHandler
	r    *http.Request
	ci   *conninfo.Info
	done bool
}

func (w *ruleWriter) WriteHeader(code int) {
	if !w.done && code >= 200 {
		w.done = true
		apply(w.ResponseWriter.Header(), w.h.resp, w.r, w.ci)
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *ruleWriter) Write(p []byte) (int, error) {
	if !w.done {
		w.WriteHeader(http.StatusOK)
	}
	return w.ResponseWriter.Write(p)
}

func (w *ruleWriter) Flush() {
	if !w.done {
		w.WriteHeader(http.StatusOK)
	}
	http.NewResponseController(w.ResponseWriter).Flush()
}

// Unwrap lets http.ResponseController reach the core's writer (deadlines,
// hijacking).
func (w *ruleWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// isToken reports whether s is an RFC 9110 token, as a header name must be.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' {
			continue
		}
		if !strings.ContainsRune("!#$%&'*+-.^_`|~", rune(c)) {
			return false
		}
	}
	return true
}
