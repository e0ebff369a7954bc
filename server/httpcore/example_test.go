package httpcore_test

import (
	"context"
	"crypto/tls"
	"log"
	"net"
	"strings"
	"time"

	"tlsedge/router"
	"tlsedge/server/httpcore"
)

// The core embedded directly: a dispatcher with two mounts, Serve as the
// accept loop over TLS, and Shutdown then Close on the way out.
func Example() {
	d := router.NewDispatcher()
	for _, spec := range []string{"/=text:hello", "/health=text:ok"} {
		prefix, target, err := router.ParseMount(spec)
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
	go core.Serve(ln, cfg) // handshakes off the accept loop; h2 when ALPN chooses it

	// ... later, on SIGTERM:
	ln.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := core.Shutdown(ctx); err != nil {
		core.Close()
	}
	_ = core.Stats()
}
