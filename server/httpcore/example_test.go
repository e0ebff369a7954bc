package httpcore_test

import (
	"context"
	"crypto/tls"
	"log"
	"net"
	"strings"
	"time"

	"tlsedge/server/httpcore"
)

// An accept loop in the shape the core expects: the handshake on a
// short-lived goroutine, the connection served from a fresh one (so idle
// connections do not keep the handshake's stack), ConnInfo filled from the
// handshake, and Shutdown then Close on the way out.
func Example() {
	d := httpcore.NewDispatcher()
	for _, spec := range []string{"/=text:hello", "/health=text:ok"} {
		prefix, target, err := httpcore.ParseMount(spec)
		if err != nil {
			log.Fatal(err)
		}
		body, _ := strings.CutPrefix(target, "text:")
		d.Mount(prefix, httpcore.Text(body))
	}
	o := httpcore.DefaultOptions()
	o.Handler = d
	o.Statistics = true
	core, err := httpcore.New(o)
	if err != nil {
		log.Fatal(err) // every bad option at once, each named by its key
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	cfg := &tls.Config{NextProtos: []string{"h2", "http/1.1"} /* , Certificates: ... */}
	go func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			core.CountAccept()
			go func() {
				tc := tls.Server(nc, cfg)
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				err := tc.HandshakeContext(ctx)
				cancel()
				if err != nil {
					core.CountSocketError()
					nc.Close()
					return
				}
				st := tc.ConnectionState()
				info := &httpcore.ConnInfo{Transport: "tcp", LocalAddr: nc.LocalAddr(), RemoteAddr: nc.RemoteAddr(), TLS: &st}
				go core.ServeConn(tc, info) // h2 when ALPN chose it
			}()
		}
	}()

	// ... later, on SIGTERM:
	ln.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := core.Shutdown(ctx); err != nil {
		core.Close()
	}
	_ = core.Stats()
}
