package tlsadapter_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"time"

	"tlsedge/policy"
	"tlsedge/tlsadapter"
)

// How the server package wires an adapter: build it once per server, call
// Wrap in each connection's goroutine, Reload on SIGHUP, Close on shutdown.
func Example() {
	opts := tlsadapter.Options{
		SSLModule:      "builtin",
		SSLCertificate: []string{"/etc/tlsedge/site.pem"},
		SSLPrivateKey:  []string{"/etc/tlsedge/site.key"},
	}
	if err := opts.Validate(); err != nil {
		fmt.Println(err) // every problem, each naming its key
	}
	report := tlsadapter.Check(opts, []string{"www.example.com"}, nil) // `tlsedge check`
	fmt.Println(report.OK())

	reg := tlsadapter.NewRegistry()
	ad, err := reg.New(context.Background(), opts.SSLModule, tlsadapter.Params{
		Options: opts, Logger: slog.Default(), Hosts: []string{"www.example.com"}, Port: 443,
	})
	if err != nil {
		return // the files do not exist in this example
	}
	defer ad.Close()
	ln, _ := net.Listen("tcp", ":443")
	for {
		raw, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			conn, cs, err := ad.Wrap(context.Background(), raw)
			if err != nil {
				return // already answered, counted and logged
			}
			defer conn.Close()
			for _, v := range policy.SSLVars(cs, time.Now()) {
				_ = v // X-SSL-* headers for upstreams
			}
		}()
	}
	// Output: false
}
