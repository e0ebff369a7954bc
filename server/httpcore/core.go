package httpcore

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
	"tlsedge/config"
)

// Core serves accepted connections: HTTP/1.x and h2 (when TLS ALPN chose
// it) each with an engine of its own, both through one handler,
// one worker pool and one set of figures. A Core is safe for concurrent use;
// its Options are frozen by New.
type Core struct {
	opts    Options
	handler http.Handler
	log     *slog.Logger
	started time.Time

	pool   *pool
	lane   *pool     // Options.Reserved requests; nil without it
	st     *counters // nil when statistics are off
	g      gauges
	budget *Budget // max_buffered_memory, or Options.Budget

	proto   string // protocol_version
	bufPool sync.Pool
	date    atomic.Pointer[dateEntry]

	shutting atomic.Bool
	mu       sync.Mutex
	conns    map[*conn]struct{}
	closed   bool
	drained  chan struct{}          // closed when conns empties after shutdown starts
	parker   atomic.Pointer[parker] // idle connections without a goroutine; made on first use
	noParker bool                   // creating one failed; under mu

	h2waiting waitCap // all h2 streams waiting for a worker
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
		proto:   o.ProtocolVersion,
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
	if o.Reserved != nil {
		c.lane = newPool(0, reservedWorkers, reservedQueue, reservedQueueTimeout)
	}
	c.budget = o.Budget
	if c.budget == nil {
		n := o.MaxBufferedMemory
		if n == -1 {
			n = max(DefaultBufferedMemory(), o.MaxRequestHeaderSize)
			c.opts.MaxBufferedMemory = n
		}
		c.budget = NewBudget(n)
	}
	if err := c.initH2(); err != nil {
		return nil, err
	}
	return c, nil
}

// validate reports every problem at once, each naming its option key.
func (o *Options) validate() error {
	var errs []error
	bad := func(key, msg string, args ...any) {
		errs = append(errs, config.KeyError(key, msg, args...))
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
	if m := o.MaxBufferedMemory; m < -1 || m > 0 && m < o.MaxRequestHeaderSize && o.Budget == nil {
		bad("max_buffered_memory", "must be -1 (automatic), 0 (no limit) or at least max_request_header_size (%d), got %d", o.MaxRequestHeaderSize, m)
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

// Budget returns the memory budget the Core charges request heads to, to
// share it with another Core (Options.Budget) or read its figures.
func (c *Core) Budget() *Budget { return c.budget }

// track registers cn for Shutdown and Close and counts it open, in one step
// under c.mu: a connection the core declines (it is shutting down) is never
// counted, so the figures read the moment Shutdown returns are exact.
// max_connections is not checked here: the accept loop counts every
// connection from accept to close, handshakes included (package accept).
func (c *Core) track(cn *conn) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.shutting.Load() || c.closed {
		return false
	}
	c.conns[cn] = struct{}{}
	c.g.connsOpen.Add(1)
	return true
}

func (c *Core) untrack(cn *conn) {
	c.mu.Lock()
	delete(c.conns, cn)
	if len(c.conns) == 0 && c.drained != nil {
		close(c.drained)
		c.drained = nil
	}
	c.closeParkerLocked()
	c.mu.Unlock()
}

// idleParker returns the Core's parker, making it on first use; nil where
// there is none (not Linux, or shutting down).
func (c *Core) idleParker() *parker {
	if p := c.parker.Load(); p != nil {
		return p
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.parker.Load() == nil && !c.noParker && !c.shutting.Load() {
		p, err := newParker(c.log)
		if err != nil {
			c.noParker = true
			c.log.Debug("idle connections keep a goroutine", "err", err)
			return nil
		}
		c.parker.Store(p)
	}
	return c.parker.Load()
}

// closeParkerLocked stops the parker once the Core is shutting down and has
// no connection left that could be parked.
func (c *Core) closeParkerLocked() {
	if c.shutting.Load() && len(c.conns) == 0 {
		if p := c.parker.Load(); p != nil {
			p.close()
		}
	}
}

// releaseParked closes the parked connections among cs (taken from c.conns
// while they were idle); the others are finished by their own goroutines.
func (c *Core) releaseParked(cs []*conn) {
	p := c.parker.Load()
	if p == nil {
		return
	}
	for _, cn := range cs {
		if p.takeConn(cn) {
			cn.finishParked()
		}
	}
}

// Shutdown stops reading new requests, closes idle keep-alive connections at
// once and waits for in-flight requests to finish. It returns ctx.Err() if ctx
// ends first; the caller then calls Close.
func (c *Core) Shutdown(ctx context.Context) error {
	c.mu.Lock()
	c.shutting.Store(true)
	c.pool.close()
	if c.lane != nil {
		c.lane.close()
	}
	var done chan struct{}
	if len(c.conns) > 0 {
		if c.drained == nil {
			c.drained = make(chan struct{})
		}
		done = c.drained
	}
	var idle []*conn
	var own []*h2sconn
	for cn := range c.conns {
		if sc := cn.h2.Load(); sc != nil {
			own = append(own, sc) // parked or not, it gets GOAWAY first
		} else if cn.state.CompareAndSwap(stateIdle, stateClosing) {
			cn.nc.Close()
			idle = append(idle, cn)
		}
	}
	c.closeParkerLocked()
	c.mu.Unlock()
	c.releaseParked(idle)
	for _, sc := range own {
		sc.shutdown() // GOAWAY; each ends when its streams do
	}
	if done == nil {
		return nil
	}
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close force-closes every connection. Handlers still running see their
// writes fail.
func (c *Core) Close() error {
	c.mu.Lock()
	c.shutting.Store(true)
	c.closed = true
	c.pool.close()
	if c.lane != nil {
		c.lane.close()
	}
	all := make([]*conn, 0, len(c.conns))
	for cn := range c.conns {
		cn.state.Store(stateClosing)
		cn.nc.Close()
		cn.cancel()
		if rc := cn.cur.Load(); rc != nil {
			rc.cancel()
		}
		all = append(all, cn)
	}
	c.closeParkerLocked()
	c.mu.Unlock()
	c.releaseParked(all)
	return nil
}

// appendDate appends the current time in IMF-fixdate, formatted at most
// once a second.
func (c *Core) appendDate(b []byte) []byte {
	now := time.Now()
	sec := now.Unix()
	if d := c.date.Load(); d != nil && d.sec == sec {
		return append(b, d.text...)
	}
	d := &dateEntry{sec: sec, text: now.UTC().AppendFormat(nil, http.TimeFormat)}
	c.date.Store(d)
	return append(b, d.text...)
}

type dateEntry struct {
	sec  int64
	text []byte
}

// The reserved lane: a few workers of its own for status and metrics, so
// that observability answers when the apps do not, and cannot itself become
// a way to load the server.
const (
	reservedWorkers      = 2
	reservedQueue        = 8
	reservedQueueTimeout = time.Second
)

// poolFor is the pool that serves r: the reserved lane for what
// Options.Reserved picks, the worker pool for everything else.
func (c *Core) poolFor(r *http.Request) *pool {
	if c.lane != nil && c.opts.Reserved(r) {
		return c.lane
	}
	return c.pool
}
