package httpcore

import (
	"context"
	"crypto/tls"
	"net"

	"tlsedge/peercred"
)

// ConnInfo describes the connection a request arrived on: the Go form of the
// connection facts the seeds put into the WSGI environ. The core stores one in
// every request's context; handlers read it with FromContext. It is immutable
// once the connection is being served.
type ConnInfo struct {
	Server     string               // name of the server in its Engine; "" for the main server
	Transport  string               // "tcp" or "unix"
	LocalAddr  net.Addr             // the listener's address
	RemoteAddr net.Addr             // the client's address
	TLS        *tls.ConnectionState // nil on plain connections
	Peer       *peercred.Creds      // nil unless a UNIX socket with peercreds enabled
}

type connInfoKey struct{}

// NewContext returns ctx carrying info.
func NewContext(ctx context.Context, info *ConnInfo) context.Context {
	return context.WithValue(ctx, connInfoKey{}, info)
}

// FromContext returns the ConnInfo stored in ctx, if any.
func FromContext(ctx context.Context) (*ConnInfo, bool) {
	info, ok := ctx.Value(connInfoKey{}).(*ConnInfo)
	return info, ok && info != nil
}
