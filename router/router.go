// Package router is the mount table between the request core and the apps:
// it picks the handler for a request by path prefix (whole segments, the
// longest first) and hands it the path below its prefix. It sees the one
// canonical path the core produced, as every policy rule and app does.
package router

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
)

// Dispatcher is a mount table from host name and path prefix to Handler:
// the Go form of the seeds' WSGIPathInfoDispatcher, with virtual hosts. The
// longest matching prefix wins, and a prefix matches whole path segments
// only ("/blog" serves "/blog" and "/blog/x", never "/blogger"). The
// handler sees the path with the prefix removed, the way http.StripPrefix
// presents it; the prefix and the original path stay available through
// MountFromContext (and r.RequestURI is never changed), so logs show what
// the client asked for. Matching is on r.URL.Path, which the core has made
// canonical (no dot or empty segments, see canonicalize): the same path
// every path rule in front judges.
//
// A mount may name a host ("a.test/api", "*.b.test/"). The request's host
// (r.Host: the Host header or h2 :authority, its port and a trailing dot
// ignored, any case) picks the mounts tried, in this order: the mounts of
// that exact name, then those of the matching wildcards, the longest
// suffix first, then the host-less mounts; the first group with a prefix
// matching the path serves it. So "a.test/api" and "/" send a.test/api to
// the first and a.test/other to the second, as a catch-all should. A
// request without a host (HTTP/1.0) is tried on the host-less mounts only.
// A wildcard "*.b.test" matches one or more labels before ".b.test", never
// "b.test" itself.
//
// Mount every handler before serving: a Dispatcher is safe for concurrent
// ServeHTTP calls but not for Mount concurrently with them.
type Dispatcher struct {
	exact    map[string][]mountEntry // by host name; each longest prefix first
	wild     []hostGroup             // "*.b.test" as suffix ".b.test", longest first
	mounts   []mountEntry            // host-less, longest prefix first
	NotFound http.Handler            // answers paths no prefix matches; nil means http.NotFound
}

type hostGroup struct {
	suffix string // ".b.test" for "*.b.test"
	mounts []mountEntry
}

type mountEntry struct {
	host   string // "" for a host-less mount, "a.test", "*.b.test"
	prefix string
	route  string // host+prefix, what RouteRecorder is told
	h      http.Handler
}

// Mount is what MountFromContext reports to a mounted handler.
type Mount struct {
	Host         string // the mount's host as written in its key ("a.test", "*.b.test"); "" for a host-less mount
	Prefix       string // the mount prefix, e.g. "/blog" ("/" for the root)
	OriginalPath string // r.URL.Path before the prefix was removed
}

// Route is how a mount is named in metrics, the status page and logs: its
// prefix, after its host when it has one ("a.test/api", "*.b.test/").
func (m Mount) Route() string { return m.Host + m.Prefix }

type mountKey struct{}

// MountFromContext returns the mount that dispatched the request, if any.
func MountFromContext(ctx context.Context) (Mount, bool) {
	m, ok := ctx.Value(mountKey{}).(*Mount)
	if !ok || m == nil {
		return Mount{}, false
	}
	return *m, true
}

// RouteRecorder is implemented by a ResponseWriter that wants to know which
// mount served its request: the metrics and access-log wrappers in front of
// the Dispatcher, which see the request before it is routed and cannot read
// the mount from the copy the Dispatcher hands on. The Dispatcher calls
// SetRoute with the matched route (Mount.Route: "/" for the root mount,
// "a.test/api" for a mount with a host) before the mounted handler runs,
// and not at all when no prefix matches. Asking the writer costs a type
// assertion: nothing is allocated per request.
type RouteRecorder interface {
	SetRoute(route string)
}

// NewDispatcher returns an empty mount table.
func NewDispatcher() *Dispatcher { return &Dispatcher{} }

// Mount adds h at key: a path prefix ("/blog"), or a host and a prefix
// ("a.test/blog", "*.b.test/"). The prefix must start with "/"; a trailing
// slash is ignored ("/blog/" is "/blog"). Mounting the same host and prefix
// twice is an error.
func (d *Dispatcher) Mount(key string, h http.Handler) error {
	host, p, err := cleanKey(key)
	if err != nil {
		return err
	}
	if h == nil {
		return fmt.Errorf("router: mount %q: nil handler", key)
	}
	e := mountEntry{host: host, prefix: p, route: host + p, h: h}
	switch {
	case host == "":
		return addEntry(&d.mounts, e, key)
	case strings.HasPrefix(host, "*."):
		suffix := host[1:]
		for i := range d.wild {
			if d.wild[i].suffix == suffix {
				return addEntry(&d.wild[i].mounts, e, key)
			}
		}
		d.wild = append(d.wild, hostGroup{suffix: suffix})
		sort.SliceStable(d.wild, func(i, j int) bool { return len(d.wild[i].suffix) > len(d.wild[j].suffix) })
		for i := range d.wild {
			if d.wild[i].suffix == suffix {
				return addEntry(&d.wild[i].mounts, e, key)
			}
		}
		panic("unreachable")
	default:
		if d.exact == nil {
			d.exact = map[string][]mountEntry{}
		}
		g := d.exact[host]
		if err := addEntry(&g, e, key); err != nil {
			return err
		}
		d.exact[host] = g
		return nil
	}
}

func addEntry(list *[]mountEntry, e mountEntry, key string) error {
	for _, m := range *list {
		if m.prefix == e.prefix {
			return fmt.Errorf("router: mount %q: prefix already mounted", key)
		}
	}
	*list = append(*list, e)
	sort.SliceStable(*list, func(i, j int) bool { return len((*list)[i].prefix) > len((*list)[j].prefix) })
	return nil
}

// cleanKey splits a mount key into its host (lower case, no trailing dot;
// "" when the key starts with "/") and its cleaned prefix.
func cleanKey(key string) (host, prefix string, err error) {
	i := strings.IndexByte(key, '/')
	if i < 0 {
		if key != "" && !strings.ContainsAny(key, "=") {
			return "", "", fmt.Errorf("router: mount %q must start with \"/\" (a path, like %q) or be a host name followed by a path (like %q)", key, "/"+key, key+"/")
		}
		return "", "", fmt.Errorf("router: mount prefix %q must start with \"/\" or a host name", key)
	}
	if i > 0 {
		if host, err = CleanHost(key[:i]); err != nil {
			return "", "", fmt.Errorf("router: mount %q: %w", key, err)
		}
	}
	prefix, err = cleanPrefix(key[i:])
	return host, prefix, err
}

// CleanKey checks a mount key ("/api", "a.test/", "*.b.test/x") as Mount
// does and returns it in the form routing compares and Mount.Route names:
// the host in lower case without a trailing dot, the prefix without a
// trailing slash. Options that name mounts (header_rule, compress) use it.
func CleanKey(key string) (string, error) {
	host, prefix, err := cleanKey(key)
	return host + prefix, err
}

// CleanHost checks the host of a mount key and returns it in the form
// routing compares: lower case, without a trailing dot. It is a DNS name
// (letters, digits, '-' and '.', labels of 1-63 bytes), or "*." and such a
// name for a wildcard, which matches any name ending in the rest. A port
// is refused: routing ignores the port a request names, so a mount key
// with one could never mean what it says.
func CleanHost(h string) (string, error) {
	if strings.Contains(h, ":") || strings.HasPrefix(h, "[") {
		return "", fmt.Errorf("host %q: no port or IP literal in a mount host (routing ignores the request's port); drop it", h)
	}
	h = strings.ToLower(strings.TrimSuffix(h, "."))
	name := h
	if rest, ok := strings.CutPrefix(h, "*."); ok {
		name = rest
	}
	if name == "" || len(name) > 253 {
		return "", fmt.Errorf("host %q: empty or longer than 253 bytes", h)
	}
	for label := range strings.SplitSeq(name, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return "", fmt.Errorf("host %q: label %q is empty, over 63 bytes or starts or ends with '-'", h, label)
		}
		for j := 0; j < len(label); j++ {
			c := label[j]
			if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-') {
				if c == '*' {
					return "", fmt.Errorf("host %q: a wildcard is only \"*.\" before a name, like *.example.com", h)
				}
				return "", fmt.Errorf("host %q: invalid character %q (a DNS name, or *.name)", h, c)
			}
		}
	}
	return h, nil
}

// RequestHost is the host name routing and the misdirected-request check
// compare: r.Host without its port and trailing dot, in lower case ("" when
// the request names none). It allocates only when the host has upper case.
func RequestHost(r *http.Request) string {
	return normHost(r.Host)
}

func normHost(h string) string {
	if h == "" {
		return ""
	}
	if h[0] == '[' {
		// An IP literal: no mount names one (CleanHost refuses them).
		if i := strings.IndexByte(h, ']'); i > 0 {
			return strings.ToLower(h[:i+1])
		}
		return h
	}
	if i := strings.LastIndexByte(h, ':'); i >= 0 {
		h = h[:i]
	}
	h = strings.TrimSuffix(h, ".")
	for i := 0; i < len(h); i++ {
		if 'A' <= h[i] && h[i] <= 'Z' {
			return strings.ToLower(h)
		}
	}
	return h
}

func cleanPrefix(prefix string) (string, error) {
	if !strings.HasPrefix(prefix, "/") {
		return "", fmt.Errorf("router: mount prefix %q must start with \"/\"", prefix)
	}
	for i := 0; i < len(prefix); i++ {
		if !plainPathByte(prefix[i]) && prefix[i] != '%' {
			return "", fmt.Errorf("router: mount prefix %q: invalid character %q", prefix, prefix[i])
		}
	}
	if strings.Contains(prefix, "//") {
		return "", fmt.Errorf("router: mount prefix %q: empty path segment", prefix)
	}
	for seg := range strings.SplitSeq(prefix, "/") {
		if seg == "." || seg == ".." {
			// Request paths reach the dispatcher without dot segments: such
			// a prefix could never match.
			return "", fmt.Errorf("httpcore: mount prefix %q: dot segment", prefix)
		}
	}
	if len(prefix) > 1 {
		prefix = strings.TrimSuffix(prefix, "/")
	}
	return prefix, nil
}

// Prefixes lists the mount keys (Mount.Route): exact hosts (by name), then
// wildcards (longest first), then host-less mounts, each group longest
// prefix first.
func (d *Dispatcher) Prefixes() []string {
	var out []string
	for _, h := range slices.Sorted(maps.Keys(d.exact)) {
		for _, m := range d.exact[h] {
			out = append(out, m.route)
		}
	}
	for _, g := range d.wild {
		for _, m := range g.mounts {
			out = append(out, m.route)
		}
	}
	for _, m := range d.mounts {
		out = append(out, m.route)
	}
	return out
}

// mounted is the request copy a prefixed mount hands on, allocated at once.
type mounted struct {
	req http.Request
	url url.URL
	m   Mount
}

// lookup finds the mount for host (as RequestHost gives it) and path.
func (d *Dispatcher) lookup(host, p string) *mountEntry {
	if host != "" {
		if len(d.exact) > 0 {
			if m := match(d.exact[host], p); m != nil {
				return m
			}
		}
		for i := range d.wild {
			g := &d.wild[i]
			if len(host) > len(g.suffix) && strings.HasSuffix(host, g.suffix) {
				if m := match(g.mounts, p); m != nil {
					return m
				}
			}
		}
	}
	return match(d.mounts, p)
}

func match(list []mountEntry, p string) *mountEntry {
	for i := range list {
		m := &list[i]
		if m.prefix == "/" || strings.HasPrefix(p, m.prefix) && (len(p) == len(m.prefix) || p[len(m.prefix)] == '/') {
			return m
		}
	}
	return nil
}

// Lookup reports the handler and route (Mount.Route) that would serve r,
// without serving it; ok is false when no mount matches.
func (d *Dispatcher) Lookup(r *http.Request) (h http.Handler, route string, ok bool) {
	host := ""
	if len(d.exact) > 0 || len(d.wild) > 0 {
		host = RequestHost(r)
	}
	m := d.lookup(host, r.URL.Path)
	if m == nil {
		return nil, "", false
	}
	return m.h, m.route, true
}

func (d *Dispatcher) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p := r.URL.Path
	host := ""
	if len(d.exact) > 0 || len(d.wild) > 0 {
		host = RequestHost(r)
	}
	m := d.lookup(host, p)
	if m == nil {
		if d.NotFound != nil {
			d.NotFound.ServeHTTP(w, r)
			return
		}
		http.NotFound(w, r)
		return
	}
	if m.prefix == "/" && m.host == "" {
		// The host-less root mount strips nothing: no copy needed.
		recordRoute(w, m.route)
		m.h.ServeHTTP(w, r)
		return
	}
	rp := ""
	if r.URL.RawPath != "" && m.prefix != "/" {
		rp = rawAfter(r.URL.RawPath, len(m.prefix))
	} else if m.prefix == "/" {
		rp = r.URL.RawPath
	}
	x := &mounted{url: *r.URL, m: Mount{Host: m.host, Prefix: m.prefix, OriginalPath: p}}
	if m.prefix != "/" {
		x.url.Path = p[len(m.prefix):]
	}
	x.url.RawPath = rp
	x.req = *r.WithContext(context.WithValue(r.Context(), mountKey{}, &x.m))
	x.req.URL = &x.url
	recordRoute(w, m.route)
	m.h.ServeHTTP(w, &x.req)
}

func recordRoute(w http.ResponseWriter, route string) {
	if rr, ok := w.(RouteRecorder); ok {
		rr.SetRoute(route)
	}
}

// rawAfter returns what follows the first n decoded bytes of the encoded
// path raw. Routing is on the decoded path alone, as every path rule sees
// it (see canonicalize); the encoded path is cut at the same place, so a
// prefix sent with an escape ("/a%3Bb" for the mount "/a;b") reaches the
// mount its decoded path names.
func rawAfter(raw string, n int) string {
	i := 0
	for ; n > 0 && i < len(raw); n-- {
		if raw[i] == '%' && i+2 < len(raw) {
			i += 3
		} else {
			i++
		}
	}
	return raw[i:]
}

// ParseMount splits a --mount KEY=TARGET spec, KEY being a path prefix
// ("/api") or a host and a prefix ("a.test/api", "*.b.test/"). The key is
// checked and cleaned as Dispatcher.Mount does (the host in lower case,
// without a trailing dot) and returned whole; the target must be non-empty
// and is returned as written (its scheme, such as text:, is resolved by the
// caller).
func ParseMount(spec string) (key, target string, err error) {
	host, prefix, target, err := parseMount(spec)
	return host + prefix, target, err
}

func parseMount(spec string) (host, prefix, target string, err error) {
	k, t, ok := strings.Cut(spec, "=")
	if !ok {
		return "", "", "", fmt.Errorf("mount %q: want [HOST]/PREFIX=TARGET", spec)
	}
	if t == "" {
		return "", "", "", fmt.Errorf("mount %q: empty target", spec)
	}
	host, prefix, err = cleanKey(k)
	if err != nil {
		return "", "", "", fmt.Errorf("mount %q: %w", spec, err)
	}
	return host, prefix, t, nil
}

// plainPathByte reports whether b may stand unescaped in a mount prefix:
// unreserved characters, sub-delims, ':', '@' and '/' (RFC 3986 pchar).
func plainPathByte(b byte) bool {
	switch {
	case 'a' <= b && b <= 'z', 'A' <= b && b <= 'Z', '0' <= b && b <= '9':
		return true
	}
	switch b {
	case '-', '.', '_', '~', '/', ':', '@', '!', '$', '&', '\'', '(', ')', '*', '+', ',', ';', '=':
		return true
	}
	return false
}

// MountSpec is one --mount [HOST]/PREFIX=TARGET, parsed.
type MountSpec struct {
	Host   string // "" for a host-less mount; lower case, no trailing dot ("a.test", "*.b.test")
	Prefix string // cleaned as Dispatcher.Mount cleans it
	Target string // as written; its scheme is resolved by the caller
	Spec   string // the whole spec as written, for messages
}

// Key is the spec's mount key as Dispatcher.Mount takes it and Mount.Route
// names it: the host, if any, then the prefix.
func (s MountSpec) Key() string { return s.Host + s.Prefix }

// Mounts is the mount option: [HOST]/PREFIX=TARGET specs parsed and checked when
// the configuration is loaded, so a bad prefix is an error naming the
// option, and building the mount table parses nothing again. The zero value
// mounts nothing.
type Mounts struct {
	specs []MountSpec
}

// ParseMounts parses specs as the mount option does.
func ParseMounts(specs ...string) (Mounts, error) {
	var m Mounts
	err := m.SetList(specs)
	return m, err
}

// MustMounts is ParseMounts for specs known to be good (tests, examples).
func MustMounts(specs ...string) Mounts {
	m, err := ParseMounts(specs...)
	if err != nil {
		panic(err)
	}
	return m
}

// SetList implements config.ListValue.
func (m *Mounts) SetList(items []string) error {
	var out []MountSpec
	var errs []error
	for _, s := range items {
		host, prefix, target, err := parseMount(s)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, MountSpec{Host: host, Prefix: prefix, Target: target, Spec: s})
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	*m = Mounts{specs: out}
	return nil
}

// WholeItems marks mount specs as never split at commas: a text: body or a
// URL may hold one.
func (Mounts) WholeItems() {}

// List implements config.ListValue.
func (m Mounts) List() []string {
	out := make([]string, len(m.specs))
	for i, s := range m.specs {
		out[i] = s.Spec
	}
	return out
}

// Specs are the parsed specs, in order.
func (m Mounts) Specs() []MountSpec { return slices.Clone(m.specs) }

// Len is the number of specs.
func (m Mounts) Len() int { return len(m.specs) }
