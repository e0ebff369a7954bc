// Command demoserver serves HTTPS through the builtin SSL adapter with the
// default options, so scanners such as testssl.sh can be pointed at the TLS
// layer before the full server is wired. It is a test aid, not a product.
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"tlsedge/policy"
	"tlsedge/tlsadapter"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "demoserver:", err)
		os.Exit(1)
	}
}

// chanListener hands already-wrapped connections to http.Server.
type chanListener struct {
	addr net.Addr
	ch   chan net.Conn
	done chan struct{}
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}
func (l *chanListener) Close() error   { return nil }
func (l *chanListener) Addr() net.Addr { return l.addr }

func run() error {
	addr := flag.String("addr", "127.0.0.1:8443", "listen address")
	cert := flag.String("cert", "", "certificate file")
	key := flag.String("key", "", "key file")
	hsts := flag.Duration("hsts", 0, "HSTS max-age (0: off)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	o := tlsadapter.Options{
		SSLModule: "builtin", SSLCertificate: []string{*cert}, SSLPrivateKey: []string{*key},
		SSLMinVersion: policy.TLS12, SSLMaxVersion: policy.TLS13, SSLSessionTickets: true,
		SSLHSTSMaxAge: *hsts, SSLHSTSIncludeSubdomains: *hsts > 0,
		SSLALPN: []string{"http/1.1"}, // this demo serves HTTP/1.1 only
	}
	ad, err := tlsadapter.NewRegistry().New(ctx, "builtin", tlsadapter.Params{Options: o, Logger: log})
	if err != nil {
		return err
	}
	defer ad.Close()
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	go func() {
		for range hup {
			if err := ad.Reload(ctx); err != nil {
				log.Warn("reload failed", "err", err)
			}
		}
	}()
	cl := &chanListener{addr: ln.Addr(), ch: make(chan net.Conn), done: make(chan struct{})}
	go func() {
		for {
			raw, err := ln.Accept()
			if err != nil {
				close(cl.done)
				return
			}
			go func() {
				c, _, err := ad.Wrap(ctx, raw)
				if err != nil {
					return
				}
				select {
				case cl.ch <- c:
				case <-cl.done:
					c.Close()
				}
			}()
		}
	}()
	h := policy.HSTS(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello over %s\n", policy.ProtocolName(r.TLS.Version))
	}), o.HSTS())
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, TLSNextProto: map[string]func(*http.Server, *tls.Conn, http.Handler){}}
	go func() { <-ctx.Done(); ln.Close(); srv.Close() }()
	log.Info("serving", "addr", ln.Addr().String())
	if err := srv.Serve(cl); err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
		return err
	}
	return nil
}
