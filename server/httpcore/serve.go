package httpcore

import (
	"context"
	"crypto/tls"
	"net"

	"tlsedge/accept"
	"tlsedge/conninfo"
)

// Serve accepts connections on ln and serves each on goroutines of its
// own until ln is closed, then returns nil (or the accept error that
// stopped it). Connections are counted against max_connections from accept
// to close by the one accept loop (package accept), which sheds the excess
// with a fast 503. With cfg, each connection is a TLS server connection (h2
// when ALPN chooses it); the handshake, bounded by request_header_timeout,
// runs off the accept loop on a short-lived goroutine, and the connection
// is served from a fresh one so that the stack the handshake grew is not
// kept.
//
// It is the accept loop for programs that embed the core directly, with
// their own tls.Config; the server package puts the same loop in front of
// the one TLS terminator, with its policy, sniffing and peer credentials.
//
// With h2c on, cfg must be nil: over TLS, ALPN chooses h2.
func (c *Core) Serve(ln net.Listener, cfg *tls.Config) error {
	if cfg != nil && c.opts.H2C {
		return errH2CWithTLS
	}
	lp := &accept.Loop{
		Listener: ln,
		Limiter:  accept.NewLimiter(c.opts.MaxConnections),
		Serve:    func(nc *accept.Conn) { c.serveAccepted(nc, cfg) },
		Refuse:   func(nc net.Conn) { c.RefuseConn(nc, cfg == nil) },
		Accepted: c.CountAccept,
		Logger:   c.log,
	}
	return lp.Run(context.Background())
}

func (c *Core) serveAccepted(nc net.Conn, cfg *tls.Config) {
	if cfg == nil {
		c.ServeConn(nc, conninfo.New(nc))
		return
	}
	tc := tls.Server(nc, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), c.opts.RequestHeaderTimeout)
	err := tc.HandshakeContext(ctx)
	cancel()
	if err != nil {
		c.CountSocketError()
		nc.Close()
		return
	}
	go c.ServeConn(tc, conninfo.New(tc))
}
