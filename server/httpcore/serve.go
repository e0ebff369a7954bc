package httpcore

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"syscall"
	"time"
	"tlsedge/conninfo"
)

// Serve accepts connections on ln and serves each on goroutines of its
// own until ln is closed, then returns the Accept error. With cfg, each
// connection is a TLS server connection (h2 when ALPN chooses it); the
// handshake, bounded by request_header_timeout, runs off the accept loop on
// a short-lived goroutine, and the connection is served from a fresh one so
// that the stack the handshake grew is not kept.
//
// It is the accept loop for programs that embed the core directly; the
// server package has its own, with listeners, SSL adapters and peer
// credentials. A full descriptor table backs off rather than spinning.
func (c *Core) Serve(ln net.Listener, cfg *tls.Config) error {
	var backoff time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if !errors.Is(err, syscall.EMFILE) && !errors.Is(err, syscall.ENFILE) {
				return err
			}
			c.CountSocketError()
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		c.CountAccept()
		go c.serveAccepted(nc, cfg)
	}
}

func (c *Core) serveAccepted(nc net.Conn, cfg *tls.Config) {
	info := &conninfo.Info{Transport: nc.LocalAddr().Network(), LocalAddr: nc.LocalAddr(), RemoteAddr: nc.RemoteAddr()}
	if cfg == nil {
		c.ServeConn(nc, info)
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
	st := tc.ConnectionState()
	info.TLS = &st
	go c.ServeConn(tc, info)
}
