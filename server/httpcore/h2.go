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
		Handler:        http.HandlerFunc(c.serveH2Request),
		MaxHeaderBytes: int(c.opts.MaxRequestHeaderSize),
		IdleTimeout:    c.opts.SocketTimeout,
		ErrorLog:       slog.NewLogLogger(c.log.Handler(), slog.LevelDebug),
	}
	c.h2srv = &http2.Server{
		IdleTimeout:      c.opts.SocketTimeout,
		WriteByteTimeout: c.opts.WriteTimeout,
	}
	if err := http2.ConfigureServer(c.h2base, c.h2srv); err != nil {
		return fmt.Errorf("httpcore: configuring h2: %w", err)
	}
	return nil
}

func (c *Core) serveH2(cn *conn) {
	c.g.h2Conns.Add(1)
	defer c.g.h2Conns.Add(-1)
	defer cn.cancel()
	nc := cn.nc
	if c.st != nil {
		if tc, ok := nc.(*tls.Conn); ok {
			nc = &h2CountConn{Conn: tc, tc: tc, st: c.st}
		}
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

// h2CountConn counts an h2 connection's bytes into the totals and keeps
// ConnectionState visible so http2 still sees TLS (and sets Request.TLS).
type h2CountConn struct {
	net.Conn
	tc *tls.Conn
	st *counters
}

func (h *h2CountConn) Read(p []byte) (int, error) {
	n, err := h.Conn.Read(p)
	h.st.bytesRead.Add(uint64(n))
	return n, err
}

func (h *h2CountConn) Write(p []byte) (int, error) {
	n, err := h.Conn.Write(p)
	h.st.bytesWritten.Add(uint64(n))
	return n, err
}

func (h *h2CountConn) ConnectionState() tls.ConnectionState { return h.tc.ConnectionState() }

// serveH2Request runs one h2 stream through admission, limits and the handler.
func (c *Core) serveH2Request(w http.ResponseWriter, r *http.Request) {
	max := c.opts.MaxRequestBodySize
	if max > 0 && r.ContentLength > max {
		c.h2Reject(w, errCLTooLarge)
		return
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
		return
	}
	var t0 time.Time
	if c.st != nil {
		t0 = time.Now()
	}
	hw := &h2Writer{ResponseWriter: w, server: c.opts.ServerName}
	if r.Body != nil && r.Body != http.NoBody {
		lb := &h2Body{rc: r.Body, limit: max, w: hw}
		r.Body = lb
		hw.body = lb
	}
	func() {
		defer func() {
			if v := recover(); v != nil {
				if v != http.ErrAbortHandler {
					c.log.Error("handler panic", "remote_addr", r.RemoteAddr, "method", r.Method, "uri", r.RequestURI, "panic", v)
				}
				if !hw.started {
					c.h2Reject(w, reject(500, "panic", "internal server error"))
					return
				}
				panic(http.ErrAbortHandler) // reset the stream
			}
		}()
		c.handler.ServeHTTP(hw, r)
	}()
	if hw.body != nil && hw.body.rerr != nil && !hw.started {
		c.h2Reject(w, hw.body.rerr)
	}
	if c.st != nil {
		d := time.Since(t0)
		c.st.requests.Add(1)
		c.st.workNanos.Add(int64(d))
		wk.requests.Add(1)
		wk.workNanos.Add(int64(d))
	}
	c.pool.release(wk)
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
	if w.body != nil && w.body.rerr != nil && code >= 200 {
		w.dropped = true // the core answers instead, after the handler returns
		return
	}
	if code >= 200 {
		w.started = true
		if w.server != "" {
			if h := w.ResponseWriter.Header(); len(h["Server"]) == 0 {
				h["Server"] = []string{w.server}
			}
		}
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *h2Writer) Write(p []byte) (int, error) {
	if !w.started && !w.dropped {
		w.WriteHeader(http.StatusOK)
	}
	if w.dropped {
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
	w     *h2Writer
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
