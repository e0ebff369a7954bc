package server

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"

	"tlsedge/server/httpcore"
)

// newCore builds the request core for a server.
func newCore(c *Config, h http.Handler, log *slog.Logger) (connServer, error) {
	return newNetHTTPCore(c, h, log), nil
}

// netHTTPCore serves wrapped connections with net/http.Server, fed through a
// channel listener. It is the bridge used until the pooled core is wired.
type netHTTPCore struct {
	srv  *http.Server
	ch   chan net.Conn
	once sync.Once
	done chan struct{}
	wg   sync.WaitGroup
}

func newNetHTTPCore(c *Config, h http.Handler, log *slog.Logger) *netHTTPCore {
	n := &netHTTPCore{ch: make(chan net.Conn), done: make(chan struct{})}
	n.srv = &http.Server{
		Handler:           h,
		ReadHeaderTimeout: c.Core.RequestHeaderTimeout,
		IdleTimeout:       c.Core.SocketTimeout,
		WriteTimeout:      c.Core.WriteTimeout,
		MaxHeaderBytes:    int(c.Core.MaxRequestHeaderSize),
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
		ConnContext: func(ctx context.Context, conn net.Conn) context.Context {
			if ic, ok := conn.(*infoConn); ok {
				return httpcore.NewContext(ctx, ic.info)
			}
			return ctx
		},
	}
	go n.srv.Serve(n)
	return n
}

type infoConn struct {
	net.Conn
	info *httpcore.ConnInfo
	n    *netHTTPCore
	once sync.Once
}

func (c *infoConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.n.wg.Done)
	return err
}

func (n *netHTTPCore) ServeConn(c net.Conn, info *httpcore.ConnInfo) {
	ic := &infoConn{Conn: c, info: info, n: n}
	n.wg.Add(1)
	select {
	case n.ch <- ic:
	case <-n.done:
		ic.Close()
	}
}

func (n *netHTTPCore) Accept() (net.Conn, error) {
	select {
	case c := <-n.ch:
		return c, nil
	case <-n.done:
		return nil, net.ErrClosed
	}
}
func (n *netHTTPCore) Addr() net.Addr { return &net.UnixAddr{Name: "core", Net: "unix"} }
func (n *netHTTPCore) Close() error {
	n.once.Do(func() { close(n.done) })
	return nil
}

func (n *netHTTPCore) Shutdown(ctx context.Context) error {
	n.Close()
	err := n.srv.Shutdown(ctx)
	if err == nil {
		n.wg.Wait()
	}
	return err
}

// mountTable is the bridge's path-prefix dispatcher: whole path segments,
// longest prefix first, prefix stripped.
type mountTable struct{ mux *http.ServeMux }

func newMountTable() *mountTable { return &mountTable{mux: http.NewServeMux()} }

func (m *mountTable) mount(prefix string, h http.Handler) {
	prefix = strings.TrimSuffix(prefix, "/")
	if prefix == "" {
		m.mux.Handle("/", h)
		return
	}
	m.mux.Handle(prefix+"/", http.StripPrefix(prefix, h))
	m.mux.Handle(prefix, http.StripPrefix(prefix, h))
}

func (m *mountTable) ServeHTTP(w http.ResponseWriter, r *http.Request) { m.mux.ServeHTTP(w, r) }

func textHandler(body string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Write([]byte(body))
	})
}
