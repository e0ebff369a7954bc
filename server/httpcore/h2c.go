package httpcore

import (
	"net"

	"tlsedge/config"

	"golang.org/x/net/http2"
)

// h2 over cleartext with prior knowledge (RFC 9113 section 3.3), the h2c
// option.
//
// A client that knows the server speaks h2 (a TLS-terminating balancer
// such as Envoy or a cloud load balancer configured for an h2 backend, or a
// local client on a UNIX socket) opens a plain connection with the client
// preface, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", and goes on in h2 without
// waiting for an answer. With h2c on, the first request of a plain
// connection is looked at here, in the one place the HTTP/1.x loop starts
// reading a connection (conn.serve): if its first bytes are the preface,
// the connection goes to the core's own h2 engine (serveH2) with every
// byte already read; anything else stays HTTP/1.x. Later requests of an
// HTTP/1.x connection are never looked at: prior knowledge means the
// preface is the first thing sent.
//
// The HTTP/1.1 "Upgrade: h2c" dance (RFC 7540 section 3.2) is deprecated by
// RFC 9113 and not offered: such a request is served as HTTP/1.1 and its
// Upgrade ignored. A TLS connection never takes this path: there ALPN has
// chosen the protocol already.
//
// The requests of an h2c connection are the engine's as over TLS (the same
// admission, limits, statistics and parking) except that r.TLS is nil, so
// handlers and the proxy see plain HTTP (X-Forwarded-Proto: http). The
// :scheme a client sends is not checked against the connection: a
// balancer that terminated TLS may well say "https" (Envoy forwards the
// downstream's scheme), and the engine takes the scheme from the
// connection, never from :scheme, as x/net's server does.

// maybeH2C is the hook at the start of a plain connection's first request:
// the first byte has been read (waitFirstByte) and the head deadline set.
// It reports whether the connection went to the h2 engine, which then owns
// it (it closes it, or parks it, itself). The bytes looked at stay in the
// buffered reader when the connection stays HTTP/1.x.
func (cn *conn) maybeH2C() bool {
	c := cn.core
	if !c.opts.H2C || cn.rd.n != 1 || cn.info == nil || cn.info.TLS != nil || cn.bufs == nil {
		return false // off, not the first byte of the connection, or TLS
	}
	if !hasPreface(cn) {
		return false
	}
	br := cn.bufs.br
	b, _ := br.Peek(br.Buffered())
	pending := append([]byte(nil), b...)
	c.putBufs(cn.bufs)
	cn.bufs = nil
	cn.rd.hasFirst = false
	// The engine reads through cn.nc, so the bytes already read go in
	// front of it. Shutdown, Close and Revoke read cn.nc under c.mu.
	c.mu.Lock()
	cn.nc = &h2cConn{Conn: cn.nc, pending: pending}
	c.mu.Unlock()
	c.serveH2(cn)
	return true
}

// hasPreface reports whether the connection starts with the client
// preface. It reads no more than needed to tell: a request whose bytes part
// from the preface is HTTP/1.x at the first byte that differs, so an
// HTTP/1.x request shorter than the preface (or one that stops mid-line) is
// never waited for beyond what the HTTP/1.x parser itself would wait. A read
// error leaves the answer to the HTTP/1.x parser, which meets it again
// (a timeout is its 408).
func hasPreface(cn *conn) bool {
	br := cn.bufs.br
	const pre = http2.ClientPreface
	want := 1
	for {
		_, err := br.Peek(want) // waits for want bytes, takes what has come
		n := min(br.Buffered(), len(pre))
		b, _ := br.Peek(n)
		if string(b) != pre[:n] {
			return false
		}
		if n == len(pre) {
			return true
		}
		if err != nil {
			return false
		}
		want = n + 1 // all that came matches: wait for one byte more
	}
}

// h2cConn hands out the bytes the HTTP/1.x reader read ahead (the preface
// and whatever followed it in the same reads) before the socket's next
// ones. Once they are out it is the socket: the h2 engine's parking looks
// at the socket's readability only after a read found nothing waiting,
// which a read of pending bytes never does.
type h2cConn struct {
	net.Conn
	pending []byte
}

func (c *h2cConn) Read(p []byte) (int, error) {
	if len(c.pending) > 0 {
		n := copy(p, c.pending)
		c.pending = c.pending[n:]
		if len(c.pending) == 0 {
			c.pending = nil
		}
		return n, nil
	}
	return c.Conn.Read(p)
}

// errH2CWithTLS is Serve's answer to h2c with a tls.Config.
var errH2CWithTLS = config.KeyError("h2c", "applies to plain listeners only; over TLS, ALPN chooses h2 already: turn h2c off or serve without TLS")
