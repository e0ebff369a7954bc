package server

import (
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"

	"tlsedge/server/httpcore"
)

// newCore builds the pooled request core for a server.
func newCore(c *Config, h http.Handler, log *slog.Logger, bind net.Addr) (*httpcore.Core, error) {
	o := c.Core
	o.Handler, o.Logger, o.BindAddress = h, log, bind.String()
	return httpcore.New(o)
}

// buildHandler assembles the mount table: Go handlers and --mount specs.
func buildHandler(c *Config) (http.Handler, error) {
	d := httpcore.NewDispatcher()
	for prefix, h := range c.Handlers {
		if err := d.Mount(prefix, h); err != nil {
			return nil, err
		}
	}
	for _, spec := range c.Mount {
		prefix, target, err := httpcore.ParseMount(spec)
		if err != nil {
			return nil, fmt.Errorf("%smount: %w", c.keyPrefix(), err)
		}
		h, err := resolveTarget(c, target)
		if err != nil {
			return nil, fmt.Errorf("%smount %s: %w", c.keyPrefix(), spec, err)
		}
		if err := d.Mount(prefix, h); err != nil {
			return nil, fmt.Errorf("%smount %s: %w", c.keyPrefix(), spec, err)
		}
	}
	return d, nil
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
