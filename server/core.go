package server

import (
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"

	"tlsedge/compression"
	"tlsedge/config"
	"tlsedge/router"
	"tlsedge/server/httpcore"
)

// newCore builds the pooled request core for a server.
func newCore(c *Config, h *swapHandler, log *slog.Logger, bind net.Addr) (*httpcore.Core, error) {
	o := c.Core
	o.Handler, o.Logger, o.BindAddress = h, log, bind.String()
	o.Reserved = h.isReserved
	o.Prepare = h.prepare
	o.DisableExtendedConnect = len(c.Handlers) > 0 && !c.HandlersServeExtendedConnect
	return httpcore.New(o)
}

// buildHandler assembles the mount table: Go handlers and --mount specs,
// each with the header rules and compression its key is given. It returns
// the handlers it resolved from specs too, for the caller to close when they
// are retired (proxies hold pooled connections, dir: an open root).
func buildHandler(c *Config) (http.Handler, []http.Handler, error) {
	d := router.NewDispatcher()
	var resolved []http.Handler
	fail := func(err error) (http.Handler, []http.Handler, error) {
		closeMounts(resolved)
		return nil, nil, err
	}
	comp, err := compression.New(c.Compress)
	if err != nil {
		return fail(config.Prefix(err, c.KeyPrefix()))
	}
	keys := map[string]bool{}
	wrap := func(key string, h http.Handler) http.Handler {
		keys[key] = true
		return comp.Wrap(key, c.HeaderRule.Wrap(key, h))
	}
	for prefix, h := range c.Handlers {
		key, err := router.CleanKey(prefix)
		if err != nil {
			return fail(err)
		}
		if err := d.Mount(prefix, wrap(key, h)); err != nil {
			return fail(err)
		}
	}
	for _, m := range c.Mount.Specs() {
		h, err := resolveTarget(c, m.Target)
		if err != nil {
			return fail(fmt.Errorf("%smount %s: %w", c.KeyPrefix(), m.Spec, err))
		}
		resolved = append(resolved, h)
		if err := d.Mount(m.Key(), wrap(m.Key(), h)); err != nil {
			return fail(fmt.Errorf("%smount %s: %w", c.KeyPrefix(), m.Spec, err))
		}
	}
	// A rule or a compress entry for a mount that does not exist is a typo
	// that would silently do nothing.
	for _, o := range []struct {
		key   string
		names []string
	}{{"header_rule", c.HeaderRule.Keys()}, {"compress", comp.Keys()}} {
		for _, k := range o.names {
			if k != "*" && !keys[k] {
				return fail(config.KeyError(c.KeyPrefix()+o.key, "%s names no mount (mounted: %s)", k, strings.Join(d.Prefixes(), " ")))
			}
		}
	}
	return d, resolved, nil
}

func resolveTarget(c *Config, target string) (http.Handler, error) {
	if body, ok := strings.CutPrefix(target, "text:"); ok {
		return httpcore.Text(body), nil
	}
	if c.Targets == nil {
		return nil, fmt.Errorf("unknown target %q: use text:BODY", target)
	}
	return c.Targets(target)
}

// reservedFor picks the requests for status: mounts, which the core serves
// on its reserved lane so that the status page and the metrics answer while
// every worker is busy. Nil when there are none. The requests are picked by
// the same host and path routing the mount table applies: a mount table of
// markers, looked up without serving.
func reservedFor(m router.Mounts) func(*http.Request) bool {
	d := router.NewDispatcher()
	any := false
	for _, spec := range m.Specs() {
		h := http.Handler(laneMarker(false))
		if strings.HasPrefix(spec.Target, "status:") {
			h, any = laneMarker(true), true
		}
		if d.Mount(spec.Key(), h) != nil {
			return nil // refused by buildHandler first
		}
	}
	if !any {
		return nil
	}
	return func(r *http.Request) bool {
		h, _, ok := d.Lookup(r)
		return ok && h == laneMarker(true)
	}
}

// laneMarker marks a mount as served on the reserved lane (true) or not.
type laneMarker bool

func (laneMarker) ServeHTTP(http.ResponseWriter, *http.Request) {}
