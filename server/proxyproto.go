package server

import (
	"context"
	"net"
	"sync/atomic"
	"time"

	"tlsedge/accept"
	"tlsedge/internal/proxyproto"
)

// ProxyProtocolStats counts what proxy_protocol_accept refused.
type ProxyProtocolStats struct {
	Accepted  uint64 // headers read; the connection has the client's address
	Untrusted uint64 // connections from peers not in proxy_protocol_trusted, closed at accept
	Bad       uint64 // connections closed for a missing, malformed or late header
}

type ppCounters struct{ accepted, untrusted, bad atomic.Uint64 }

func (c *ppCounters) stats() ProxyProtocolStats {
	return ProxyProtocolStats{Accepted: c.accepted.Load(), Untrusted: c.untrusted.Load(), Bad: c.bad.Load()}
}

// ProxyProtocolStats reports what proxy_protocol_accept has refused since
// start; the zero value when stopped.
func (s *Server) ProxyProtocolStats() ProxyProtocolStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.running == nil {
		return ProxyProtocolStats{}
	}
	return s.running.pp.stats()
}

// ppAllow is the accept loop's judge: with proxy_protocol_accept on, only
// the load balancers of proxy_protocol_trusted may connect at all. It reads
// nothing, so that the loop never waits on a client.
func (s *Server) ppAllow(r *run, nc net.Conn) bool {
	g := r.gen.Load()
	if !g.cfg.ProxyProtocolAccept {
		return true
	}
	if g.cfg.ProxyProtocolTrusted.Trust().TrustsAddr(nc.RemoteAddr()) {
		return true
	}
	r.pp.untrusted.Add(1)
	s.log.Debug("proxy_protocol_accept: connection from a peer not in proxy_protocol_trusted refused", "remote_addr", nc.RemoteAddr().String())
	return false
}

// readProxyHeader reads the connection's PROXY protocol header within
// proxy_protocol_timeout (or until the server stops) and gives its
// addresses to raw. A LOCAL header (the balancer's own health check)
// leaves the socket's addresses. The peer is judged again under c, the
// configuration the connection is served with: a reload between accept
// and here may have turned proxy_protocol_accept on.
func (s *Server) readProxyHeader(ctx context.Context, r *run, raw *accept.Conn, c *Config) bool {
	if !c.ProxyProtocolTrusted.Trust().TrustsAddr(raw.Conn.RemoteAddr()) {
		r.pp.untrusted.Add(1)
		s.log.Debug("proxy_protocol_accept: connection from a peer not in proxy_protocol_trusted refused", "remote_addr", raw.Conn.RemoteAddr().String())
		return false
	}
	timeout := c.ProxyProtocolTimeout
	_ = raw.SetReadDeadline(time.Now().Add(timeout))
	stop := context.AfterFunc(ctx, func() { _ = raw.SetReadDeadline(time.Unix(1, 0)) })
	h, err := proxyproto.Read(raw.Conn)
	if !stop() || err != nil {
		r.pp.bad.Add(1)
		s.log.Debug("proxy_protocol_accept: no valid PROXY protocol header; closing", "remote_addr", raw.RemoteAddr().String(), "err", err)
		return false
	}
	_ = raw.SetReadDeadline(time.Time{})
	r.pp.accepted.Add(1)
	if !h.Local {
		raw.SetAddrs(net.TCPAddrFromAddrPort(h.Src), net.TCPAddrFromAddrPort(h.Dst))
	}
	return true
}
