package httpcore

import (
	"errors"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// h2 (ALPN "h2" only; h2c stays off) is served by the core's own engine
// (h2own.go, on x/net's Framer and HPACK codecs) with the core's handler
// behind the same admission (one pool slot per stream, the same queue and
// 503), the same limits (head size, body size) and the same statistics,
// and under the same time bounds as HTTP/1.1:
//
//   - the connection preface within request_header_timeout;
//   - an idle connection (no stream open) gets GOAWAY after socket_timeout, and
//     a connection with streams open but silent for socket_timeout is pinged
//     and closed if the ping is not answered within socket_timeout;
//   - a request body is read under min_request_body_rate with socket_timeout
//     as its grace, as body.deadline does it for HTTP/1.1: a stalled body ends
//     with 408 (or, once the response has begun, the response completes and
//     the engine resets the unfinished request side);
//   - a response write blocked for write_timeout (a zero flow-control window:
//     the socket is fine, the stream is not) resets the stream, and every
//     stream's last frames are bounded by write_timeout after its handler;
//   - streams waiting for a worker are capped per connection and in total, so
//     an excess stream gets a 503 at once instead of a place in the queue.

// h2MaxStreams is SETTINGS_MAX_CONCURRENT_STREAMS: the streams one client
// may have open at once, each with a goroutine of its own while its handler
// runs. 100 is the least RFC 9113 recommends (x/net's default is 250).
const h2MaxStreams = 100

// h2MaxWaitingPerConn caps one connection's streams waiting for a worker,
// so that one client cannot take the whole queue: an HTTP/1.1 connection has
// at most one request waiting. All h2 streams together wait no more than
// accepted_queue_size, or max_connections when that is unlimited (as many as
// HTTP/1.1 connections could).
const h2MaxWaitingPerConn = 16

var (
	errH2ConnQueue503 = reject(503, "h2_conn_queue_full", "server busy, try again")
	errH2Queue503     = reject(503, "h2_queue_full", "server busy, try again")
)

func (c *Core) initH2() error {
	c.h2waiting.max = int32(min(c.opts.MaxConnections, 1<<30))
	if c.opts.AcceptedQueueSize >= 0 {
		c.h2waiting.max = int32(min(c.opts.AcceptedQueueSize, 1<<30))
	}
	return nil
}

// h2Handler runs each h2 stream of one connection through admission,
// limits and the Core's handler. It is the handler the engine calls directly:
// every frame between the stream's goroutine and the user's handler counts,
// because each stream's goroutine starts small and a deeper call chain makes
// its small initial stack grow (a copy) on every request. Hence no closures
// here and the recovery in a deferred method.
type h2Handler struct {
	c       *Core
	waiting waitCap // this connection's streams waiting for a worker
}

func (h *h2Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ex := h.begin(w, r)
	if ex == nil {
		return
	}
	defer ex.done()
	ex.c.handlerFor(r).ServeHTTP(&ex.w, r)
}

// streamDeadliner is the engine's response writer: its deadlines are the
// stream's.
type streamDeadliner interface {
	SetReadDeadline(time.Time) error
	SetWriteDeadline(time.Time) error
}

// begin admits a stream: nil means it was answered already (413, 503) or
// reset while it waited. It is a function of its own so that its frame is
// gone before the user's handler runs: the stream goroutine's stack is
// small, and a frame too many at the deepest point of a response costs a
// stack copy per request.
//
//go:noinline
func (h *h2Handler) begin(w http.ResponseWriter, r *http.Request) *h2Exchange {
	c := h.c
	if rerr := c.canonicalize(r); rerr != nil {
		c.h2Reject(w, rerr)
		return nil
	}
	if c.opts.Prepare != nil {
		c.opts.Prepare(r)
	}
	max := c.opts.MaxRequestBodySize
	// An extended CONNECT's body is its tunnel's client half, held to no
	// size nor rate (h2ext.go); canonicalize lets no other CONNECT by.
	tunnel := r.Method == "CONNECT"
	if tunnel {
		max = 0
	}
	if max > 0 && r.ContentLength > max {
		c.h2Reject(w, errCLTooLarge)
		return nil
	}
	ex := &h2Exchange{c: c, r: r, w: h2Writer{ResponseWriter: w, server: c.opts.ServerName}}
	ex.sd, _ = w.(streamDeadliner)
	if ex.sd != nil {
		// From here on, so that a wait for a worker longer than half of
		// write_timeout does not see the stream reset.
		ex.mu.Lock()
		ex.keeper = time.AfterFunc(c.opts.WriteTimeout/2, ex.keep)
		ex.mu.Unlock()
	}
	ex.pool = c.poolFor(r)
	wk, full, err := ex.pool.acquireCapped(r.Context(), &h.waiting, &c.h2waiting)
	if err != nil {
		ex.finish()
		var rerr *rejectError
		switch {
		case err == errWaitGone:
			return nil // reset by the client: nobody to answer
		case err == errWaitCapFull && full == 0:
			rerr = errH2ConnQueue503
		case err == errWaitCapFull:
			rerr = errH2Queue503
		case err == errQueueTimeout:
			rerr = errQueueTimeout503
		case err == errPoolClosed:
			rerr = errShutdown503
		default:
			rerr = errQueue503
		}
		c.h2Reject(w, rerr.withID(r))
		return nil
	}
	ex.wk = wk
	if c.st != nil {
		ex.t0 = time.Now()
	}
	if r.Body != nil && r.Body != http.NoBody {
		ex.body = h2Body{rc: r.Body, limit: max, ex: ex, tunnel: tunnel}
		r.Body = &ex.body
		ex.w.body = &ex.body
	}
	return ex
}

// h2Exchange is one h2 stream's state in the core, allocated once.
type h2Exchange struct {
	c    *Core
	wk   *worker
	pool *pool // what wk came from: the worker pool or the reserved lane
	r    *http.Request
	t0   time.Time
	w    h2Writer
	body h2Body
	sd   streamDeadliner // the engine's writer; nil if it has no deadlines

	// The timers call into sd, which the engine takes back when the handler
	// returns: mu orders them with finish.
	mu        sync.Mutex
	over      bool        // finish ran: sd is not ours any more
	keeper    *time.Timer // every half write_timeout while the handler runs
	lastWrite uint64      // h2Writer.writes as keep last saw it
	bodyTimer *time.Timer // the body's read deadline; nil until the first read
	bodyDL    atomic.Int64
}

// keep runs every half write_timeout from the stream's admission until its
// handler returns. A write in progress now that was in progress at the last
// look too has been blocked for between half and all of write_timeout, as
// writeDeadline allows on a socket: the stream is reset, which fails the
// write. Otherwise the stream's write deadline moves on by write_timeout, so
// that it never fires while nothing is blocked (a handler waiting on its
// backend, a long upload).
func (ex *h2Exchange) keep() {
	ex.mu.Lock()
	defer ex.mu.Unlock()
	if ex.over || ex.w.ownWrite.Load() {
		return
	}
	wt := ex.c.opts.WriteTimeout
	seq := ex.w.writes.Load()
	if seq&1 == 1 && seq == ex.lastWrite {
		if ex.c.st != nil {
			ex.c.st.streamResets.Add(1)
		}
		ex.sd.SetWriteDeadline(aLongTimeAgo) // resets the stream now
		return
	}
	ex.lastWrite = seq
	ex.sd.SetWriteDeadline(time.Now().Add(wt))
	ex.keeper.Reset(wt / 2)
}

// checkBody fires at the body's read deadline (h2Body.arm): past it, the
// stream's body is ended with os.ErrDeadlineExceeded, which the handler's
// read returns (and h2Body turns into a 408).
func (ex *h2Exchange) checkBody() {
	ex.mu.Lock()
	defer ex.mu.Unlock()
	if ex.over || ex.w.ownRead.Load() {
		return
	}
	dl := ex.bodyDL.Load()
	if dl == 0 {
		return // the body ended
	}
	if left := time.Duration(dl - time.Now().UnixNano()); left > 0 {
		ex.bodyTimer.Reset(left)
		return
	}
	ex.sd.SetReadDeadline(aLongTimeAgo)
}

// finish stops the timers: the handler is done (or never ran), and sd is
// about to go back to the engine. The stream's write deadline stays armed, with
// at least half of write_timeout left, and bounds its last frames.
func (ex *h2Exchange) finish() {
	ex.mu.Lock()
	ex.over = true
	if ex.keeper != nil {
		ex.keeper.Stop()
	}
	if ex.bodyTimer != nil {
		ex.bodyTimer.Stop()
	}
	ex.mu.Unlock()
}

// done runs when the handler returns or panics: it answers a body error
// found while the handler read (when the response has not started), turns
// a panic into a 500 or a stream reset, and releases the worker slot.
func (ex *h2Exchange) done() {
	c, hw, r := ex.c, &ex.w, ex.r
	v := recover()
	ex.finish()
	if v != nil && v != http.ErrAbortHandler {
		c.log.Error("handler panic", "remote_addr", r.RemoteAddr, "method", r.Method, "uri", r.RequestURI, "panic", v)
	}
	switch {
	case v != nil && !hw.started:
		c.h2Reject(hw.ResponseWriter, errPanic500.withID(ex.r))
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
	ex.pool.release(ex.wk)
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
// It counts writes for keep, and notes deadlines the handler sets itself.
type h2Writer struct {
	http.ResponseWriter
	server  string // server_name, added unless the handler set Server
	body    *h2Body
	started bool
	dropped bool

	writes   atomic.Uint64 // odd while a Write or Flush is in progress
	ownWrite atomic.Bool   // the handler set its own write deadline
	ownRead  atomic.Bool   // the handler set its own read deadline
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
// goroutine's stack, which starts small for every request.
func (w *h2Writer) Write(p []byte) (int, error) {
	if !w.started && (w.dropped || !w.start()) {
		return len(p), nil
	}
	// A large write is handed over in pieces, each counted, so that the
	// stream's keeper sees progress: write_timeout bounds a write that
	// cannot move, not one that takes long because it is large.
	var n int
	for len(p) > 0 {
		chunk := p[:min(len(p), h2WriteChunk)]
		w.writes.Add(1)
		m, err := w.ResponseWriter.Write(chunk)
		w.writes.Add(1)
		n += m
		if err != nil {
			return n, err
		}
		p = p[m:]
	}
	return n, nil
}

// h2WriteChunk is the most a handler's write hands to the engine at once: one
// frame of the protocol's default size.
const h2WriteChunk = 16 << 10

func (w *h2Writer) Flush() {
	if !w.started && !w.dropped {
		w.WriteHeader(http.StatusOK)
	}
	if f, ok := w.ResponseWriter.(http.Flusher); ok && !w.dropped {
		w.writes.Add(1)
		f.Flush()
		w.writes.Add(1)
	}
}

// SetWriteDeadline and SetReadDeadline serve http.ResponseController: a
// deadline the handler sets replaces write_timeout (or the body's rate) for
// the rest of its stream, as on HTTP/1.1.
func (w *h2Writer) SetWriteDeadline(t time.Time) error {
	sd, ok := w.ResponseWriter.(streamDeadliner)
	if !ok {
		return http.ErrNotSupported
	}
	w.ownWrite.Store(true)
	return sd.SetWriteDeadline(t)
}

func (w *h2Writer) SetReadDeadline(t time.Time) error {
	sd, ok := w.ResponseWriter.(streamDeadliner)
	if !ok {
		return http.ErrNotSupported
	}
	w.ownRead.Store(true)
	return sd.SetReadDeadline(t)
}

// Unwrap lets http.ResponseController reach the h2 writer's other methods.
func (w *h2Writer) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// h2Body enforces max_request_body_size and min_request_body_rate on an h2
// request body.
type h2Body struct {
	rc    io.ReadCloser
	limit int64
	n     int64
	start time.Time // the first read
	ex    *h2Exchange
	rerr  *rejectError
	// tunnel: an extended CONNECT's, read with no deadline of the core's
	tunnel bool
}

func (b *h2Body) Read(p []byte) (int, error) {
	if b.rerr != nil {
		return 0, b.rerr
	}
	b.arm(len(p))
	n, err := b.rc.Read(p)
	b.n += int64(n)
	if err != nil {
		b.ex.bodyDL.Store(0) // the body is over: no deadline
	}
	if b.limit > 0 && b.n > b.limit {
		b.rerr = errBodyTooLarge
		return 0, &http.MaxBytesError{Limit: b.limit}
	}
	if err != nil && !errors.Is(err, io.EOF) && isTimeout(err) {
		b.rerr = errBodyTimeout
	}
	return n, err
}

// arm sets the body's read deadline before a read, as body.deadline does
// for HTTP/1.1: socket_timeout as a grace period, plus the time the bytes
// read so far and the next want bytes (and a read-ahead's worth) take at
// min_request_body_rate; without a rate, socket_timeout from this read.
// The deadline is a number checkBody's timer reads: moving it costs no
// timer operation.
func (b *h2Body) arm(want int) {
	ex := b.ex
	if ex.sd == nil || b.tunnel || ex.w.ownRead.Load() {
		return
	}
	o := &ex.c.opts
	now := time.Now()
	dl := now.Add(o.SocketTimeout)
	if o.MinRequestBodyRate > 0 {
		if b.start.IsZero() {
			b.start = now
		}
		w := int64(want)
		if cl := ex.r.ContentLength; cl >= 0 {
			w = min(w, cl-b.n)
		}
		bytes := b.n + w + bufSize
		dl = b.start.Add(o.SocketTimeout + time.Duration(float64(bytes)/float64(o.MinRequestBodyRate)*float64(time.Second)))
	}
	ex.bodyDL.Store(dl.UnixNano())
	if ex.bodyTimer == nil {
		ex.mu.Lock()
		if !ex.over && ex.bodyTimer == nil {
			ex.bodyTimer = time.AfterFunc(dl.Sub(now), ex.checkBody)
		}
		ex.mu.Unlock()
	}
}

func (b *h2Body) Close() error { return b.rc.Close() }
