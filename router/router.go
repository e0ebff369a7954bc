// Package router is the mount table between the request core and the apps:
// it picks the handler for a request by path prefix (whole segments, the
// longest first) and hands it the path below its prefix. It sees the one
// canonical path the core produced, as every policy rule and app does.
package router

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
)

// Dispatcher is a mount table from path prefix to Handler: the Go form of
// the seeds' WSGIPathInfoDispatcher. The longest matching prefix wins, and a
// prefix matches whole path segments only ("/blog" serves "/blog" and
// "/blog/x", never "/blogger"). The handler sees the path with the prefix
// removed, the way http.StripPrefix presents it; the prefix and the original
// path stay available through MountFromContext (and r.RequestURI is never
// changed), so logs show what the client asked for. Matching is on
// r.URL.Path, which the core has made canonical (no dot or empty segments,
// see canonicalize): the same path every path rule in front judges.
//
// Mount every handler before serving: a Dispatcher is safe for concurrent
// ServeHTTP calls but not for Mount concurrently with them.
type Dispatcher struct {
	mounts   []mountEntry // longest prefix first
	NotFound http.Handler // answers paths no prefix matches; nil means http.NotFound
}

type mountEntry struct {
	prefix string
	h      http.Handler
}

// Mount is what MountFromContext reports to a mounted handler.
type Mount struct {
	Prefix       string // the mount prefix, e.g. "/blog" ("/" for the root)
	OriginalPath string // r.URL.Path before the prefix was removed
}

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
// SetRoute with the matched prefix ("/" for the root mount) before the
// mounted handler runs, and not at all when no prefix matches. Asking the
// writer costs a type assertion: nothing is allocated per request.
type RouteRecorder interface {
	SetRoute(prefix string)
}

// NewDispatcher returns an empty mount table.
func NewDispatcher() *Dispatcher { return &Dispatcher{} }

// Mount adds h at prefix. The prefix must start with "/"; a trailing slash
// is ignored ("/blog/" is "/blog"). Mounting the same prefix twice is an
// error.
func (d *Dispatcher) Mount(prefix string, h http.Handler) error {
	p, err := cleanPrefix(prefix)
	if err != nil {
		return err
	}
	if h == nil {
		return fmt.Errorf("router: mount %q: nil handler", prefix)
	}
	for _, m := range d.mounts {
		if m.prefix == p {
			return fmt.Errorf("router: mount %q: prefix already mounted", prefix)
		}
	}
	d.mounts = append(d.mounts, mountEntry{prefix: p, h: h})
	sort.SliceStable(d.mounts, func(i, j int) bool { return len(d.mounts[i].prefix) > len(d.mounts[j].prefix) })
	return nil
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

// Prefixes lists the mounted prefixes, longest first.
func (d *Dispatcher) Prefixes() []string {
	out := make([]string, len(d.mounts))
	for i, m := range d.mounts {
		out[i] = m.prefix
	}
	return out
}

// mounted is the request copy a prefixed mount hands on, allocated at once.
type mounted struct {
	req http.Request
	url url.URL
	m   Mount
}

func (d *Dispatcher) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p := r.URL.Path
	for i := range d.mounts {
		m := &d.mounts[i]
		if m.prefix == "/" {
			// The root mount strips nothing: no copy needed.
			recordRoute(w, m.prefix)
			m.h.ServeHTTP(w, r)
			return
		}
		if !strings.HasPrefix(p, m.prefix) || len(p) > len(m.prefix) && p[len(m.prefix)] != '/' {
			continue
		}
		rp := ""
		if r.URL.RawPath != "" {
			rp = rawAfter(r.URL.RawPath, len(m.prefix))
		}
		x := &mounted{url: *r.URL, m: Mount{Prefix: m.prefix, OriginalPath: p}}
		x.url.Path = p[len(m.prefix):]
		x.url.RawPath = rp
		x.req = *r.WithContext(context.WithValue(r.Context(), mountKey{}, &x.m))
		x.req.URL = &x.url
		recordRoute(w, m.prefix)
		m.h.ServeHTTP(w, &x.req)
		return
	}
	if d.NotFound != nil {
		d.NotFound.ServeHTTP(w, r)
		return
	}
	http.NotFound(w, r)
}

func recordRoute(w http.ResponseWriter, prefix string) {
	if rr, ok := w.(RouteRecorder); ok {
		rr.SetRoute(prefix)
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

// ParseMount splits a --mount PREFIX=TARGET spec. The prefix is checked and
// cleaned as Dispatcher.Mount does; the target must be non-empty and is
// returned as written (its scheme, such as text:, is resolved by the caller).
func ParseMount(spec string) (prefix, target string, err error) {
	p, t, ok := strings.Cut(spec, "=")
	if !ok {
		return "", "", fmt.Errorf("mount %q: want PREFIX=TARGET", spec)
	}
	if t == "" {
		return "", "", fmt.Errorf("mount %q: empty target", spec)
	}
	prefix, err = cleanPrefix(p)
	if err != nil {
		return "", "", fmt.Errorf("mount %q: %w", spec, err)
	}
	return prefix, t, nil
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

// MountSpec is one --mount PREFIX=TARGET, parsed.
type MountSpec struct {
	Prefix string // cleaned as Dispatcher.Mount cleans it
	Target string // as written; its scheme is resolved by the caller
	Spec   string // the whole spec as written, for messages
}

// Mounts is the mount option: PREFIX=TARGET specs parsed and checked when
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
		prefix, target, err := ParseMount(s)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, MountSpec{Prefix: prefix, Target: target, Spec: s})
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
