package tlsadapter

import (
	"context"
	"crypto/tls"
)

// noneAdapter is ssl_module none: plain HTTP, typical on a UNIX socket or
// behind a local proxy. The terminator passes its connections through.
type noneAdapter struct{}

func newNone(context.Context, Params) (Adapter, error) { return noneAdapter{}, nil }

func (noneAdapter) Certificate(*tls.ClientHelloInfo) (*tls.Certificate, bool, error) {
	return nil, false, nil
}
func (noneAdapter) HasName(string) bool          { return false }
func (noneAdapter) Reload(context.Context) error { return nil }
func (noneAdapter) Close() error                 { return nil }
