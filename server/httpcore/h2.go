package httpcore

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"

	"golang.org/x/net/http2"
)

// h2 (ALPN "h2" only; h2c stays off) is served by golang.org/x/net/http2
// with the core's handler behind the same admission (one pool slot per
// stream, the same queue and 503), the same limits (head size, body size)
// and the same statistics.

func (c *Core) initH2() error {
	c.h2base = &http.Server{
		Handler:        (*h2Handler)(c),
		MaxHeaderBytes: int(c.opts.MaxRequestHeaderSize),
		IdleTimeout:    c.opts.SocketTimeout,
		ErrorLog:       slog.NewLogLogger(c.log.Handler(), slog.LevelDebug),
	}
	// write_timeout is applied by h2Conn, not WriteByteTimeout (see
	// writeDeadline).
	c.h2srv = &http2.Server{IdleTimeout: c.opts.SocketTimeout}
	// Head memory per connection: MaxHeaderBytes above is announced (plus
	// 320) as MAX_HEADER_LIST_SIZE and enforced with 431; the HPACK table
	// stays at the default 4 KiB. Frames are read whole into a buffer the
	// connection keeps, so x/net's default 1 MiB frame size would let one
	// large frame pin 1 MiB per connection: 16 KiB is the protocol's default.
	c.h2srv.MaxReadFrameSize = 16 << 10
	if err := http2.ConfigureServer(c.h2base, c.h2srv); err != nil {
		return fmt.Errorf("httpcore: configuring h2: %w", err)
	}
	return nil
}

func (c *Core) serveH2(cn *conn) {
	c.g.h2Conns.Add(1)
	defer c.g.h2Conns.Add(-1)
	defer cn.cancel()
	var nc net.Conn = &h2Conn{Conn: cn.nc, st: c.st, dl: writeDeadline{timeout: c.opts.WriteTimeout}}
	if cs, ok := cn.nc.(connectionStater); ok {
		nc = &h2TLSConn{h2Conn: nc.(*h2Conn), cs: cs}
	}
	// The head must arrive within request_header_timeout of the handshake.
	cn.nc.SetReadDeadline(time.Time{})
	c.h2srv.ServeConn(nc, &http2.ServeConnOpts{
		Context:    cn.ctx,
		BaseConfig: c.h2base,
		Handler:    c.h2base.Handler,
	})
	cn.nc.Close()
}

// h2Conn is the connection http2 serves: it bounds every write by
// write_timeout and counts bytes into the totals (statistics on).
type h2Conn struct {
	net.Conn
	st *counters // nil: statistics off
	dl writeDeadline
}

func (h *h2Conn) Read(p []byte) (int, error) {
	n, err := h.Conn.Read(p)
	if h.st != nil {
		h.st.bytesRead.Add(uint64(n))
	}
	return n, err
}

// Write is called by one http2 goroutine at a time.
func (h *h2Conn) Write(p []byte) (int, error) {
	h.dl.arm(h.Conn)
	n, err := h.Conn.Write(p)
	if h.st != nil {
		h.st.bytesWritten.Add(uint64(n))
	}
	return n, err
}

type connectionStater interface {
	ConnectionState() tls.ConnectionState
}

// h2TLSConn keeps ConnectionState visible, so http2 still sees TLS (and
// sets Request.TLS).
type h2TLSConn struct {
	*h2Conn
	cs connectionStater
}

func (h *h2TLSConn) ConnectionState() tls.ConnectionState { return h.cs.ConnectionState() }

// h2Handler runs each h2 stream through admission, limits and the Core's
// handler. It is the Core under another name so that it is the handler
// http2 calls directly: every frame between http2's runHandler and the
// user's handler counts, because http2 starts a goroutine per stream and a
// deeper call chain makes its small initial stack grow (a copy) on every
// request. Hence no closures here and the recovery in a deferred method.
type h2Handler Core

func (h *h2Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ex := (*Core)(h).h2Begin(w, r)
	if ex == nil {
		return
	}
	defer ex.done()
	ex.c.handler.ServeHTTP(&ex.w, r)
}

// h2Begin admits a stream: nil means it was answered already (413, 503).
// It is a function of its own so that its frame is gone before the user's
// handler runs: the stream goroutine's stack is small, and a frame too many
// at the deepest point of a response costs a stack copy per request.
//
//go:noinline
func (c *Core) h2Begin(w http.ResponseWriter, r *http.Request) *h2Exchange {
	max := c.opts.MaxRequestBodySize
	if max > 0 && r.ContentLength > max {
		c.h2Reject(w, errCLTooLarge)
		return nil
	}
	wk, err := c.pool.acquire()
	if err != nil {
		rerr := errQueue503
		switch err {
		case errQueueTimeout:
			rerr = errQueueTimeout503
		case errPoolClosed:
			rerr = errShutdown503
		}
		c.h2Reject(w, rerr)
		return nil
	}
	ex := &h2Exchange{c: c, wk: wk, r: r, w: h2Writer{ResponseWriter: w, server: c.opts.ServerName}}
	if c.st != nil {
		ex.t0 = time.Now()
	}
	if r.Body != nil && r.Body != http.NoBody {
		ex.body = h2Body{rc: r.Body, limit: max}
		r.Body = &ex.body
		ex.w.body = &ex.body
	}
	return ex
}

// h2Exchange is one h2 stream's state in the core, allocated once.
type h2Exchange struct {
	c    *Core
	wk   *worker
	r    *http.Request
	t0   time.Time
	w    h2Writer
	body h2Body
}

// done runs when the handler returns or panics: it answers a body error
// found while the handler read (when the response has not started), turns
// a panic into a 500 or a stream reset, and releases the worker slot.
func (ex *h2Exchange) done() {
	c, hw, r := ex.c, &ex.w, ex.r
	v := recover()
	if v != nil && v != http.ErrAbortHandler {
		c.log.Error("handler panic", "remote_addr", r.RemoteAddr, "method", r.Method, "uri", r.RequestURI, "panic", v)
	}
	switch {
	case v != nil && !hw.started:
		c.h2Reject(hw.ResponseWriter, reject(500, "panic", "internal server error"))
	case v == nil && hw.body != nil && hw.body.rerr != nil && !hw.started:
		c.h2Reject(hw.ResponseWriter, hw.body.rerr)
	}
	if c.st != nil {
		d := time.Since(ex.t0)
		c.st.requests.Add(1)
		c.st.workNanos.Add(int64(d))
		ex.wk.requests.Add(1)
		ex.wk.workNanos.Add(int64(d))
	}
	c.pool.release(ex.wk)
	if v != nil && hw.started {
		panic(http.ErrAbortHandler) // reset the stream
	}
}

func (c *Core) h2Reject(w http.ResponseWriter, rerr *rejectError) {
	if c.st != nil {
		c.st.reject(rerr.status, rerr.reason)
	}
	h := w.Header()
	clear(h)
	h.Set("Content-Type", "text/plain; charset=utf-8")
	if rerr.status == http.StatusServiceUnavailable {
		h.Set("Retry-After", "5")
	}
	if c.opts.ServerName != "" {
		h.Set("Server", c.opts.ServerName)
	}
	w.WriteHeader(rerr.status)
	io.WriteString(w, rerr.text+"\n")
}

// h2Writer notes whether the response started, so a body error found while
// the handler read can still become the response, and adds the Server field.
type h2Writer struct {
	http.ResponseWriter
	server  string // server_name, added unless the handler set Server
	body    *h2Body
	started bool
	dropped bool
}

func (w *h2Writer) WriteHeader(code int) {
	if w.started || w.dropped {
		return
	}
	if code >= 200 && !w.start() {
		return
	}
	w.ResponseWriter.WriteHeader(code)
}

// start marks the final response begun and adds the Server field; false
// means the response is dropped instead, because a body error found while
// the handler read is the answer (the core sends it after the handler).
func (w *h2Writer) start() bool {
	if w.body != nil && w.body.rerr != nil {
		w.dropped = true
		return false
	}
	w.started = true
	if w.server != "" {
		if h := w.ResponseWriter.Header(); len(h["Server"]) == 0 {
			h["Server"] = []string{w.server}
		}
	}
	return true
}

// Write starts the response itself rather than through WriteHeader (the
// wrapped writer sends its implicit 200): one frame less on the stream
// goroutine's stack, which http2 starts small for every request.
func (w *h2Writer) Write(p []byte) (int, error) {
	if !w.started && (w.dropped || !w.start()) {
		return len(p), nil
	}
	return w.ResponseWriter.Write(p)
}

func (w *h2Writer) Flush() {
	if !w.started && !w.dropped {
		w.WriteHeader(http.StatusOK)
	}
	if f, ok := w.ResponseWriter.(http.Flusher); ok && !w.dropped {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the h2 writer's deadlines.
func (w *h2Writer) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// h2Body enforces max_request_body_size on an h2 request body.
type h2Body struct {
	rc    io.ReadCloser
	limit int64
	n     int64
	rerr  *rejectError
}

func (b *h2Body) Read(p []byte) (int, error) {
	if b.rerr != nil {
		return 0, b.rerr
	}
	n, err := b.rc.Read(p)
	b.n += int64(n)
	if b.limit > 0 && b.n > b.limit {
		b.rerr = errBodyTooLarge
		return 0, &http.MaxBytesError{Limit: b.limit}
	}
	if err != nil && !errors.Is(err, io.EOF) && isTimeout(err) {
		b.rerr = errBodyTimeout
	}
	return n, err
}

func (b *h2Body) Close() error { return b.rc.Close() }
