package tlsadapter

import (
	"context"
	"crypto/tls"
	"net"
)

// none serves plain HTTP: typical on a UNIX socket or behind a local proxy.
type none struct{}

func newNone(context.Context, Params) (Adapter, error) { return none{}, nil }

func (none) Scheme() string { return "http" }
func (none) Wrap(_ context.Context, c net.Conn) (net.Conn, *tls.ConnectionState, error) {
	return c, nil, nil
}
func (none) Reload(context.Context) error { return nil }
func (none) Close() error                 { return nil }
