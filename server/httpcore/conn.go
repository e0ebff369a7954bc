package httpcore

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"runtime/debug"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"tlsedge/conninfo"
)

// Connection states, for graceful shutdown: Shutdown closes idle
// connections at once and lets active ones finish their request.
const (
	stateActive int32 = iota
	stateIdle
	stateClosing
)

// bufset is what a connection needs only while it is working on a request:
// the buffered reader and writer, the head scratch and the pending response
// body. Idle keep-alive connections hold none of it; it comes from the
// Core's pool when a request's first byte arrives.
type bufset struct {
	br     *bufio.Reader
	bw     *bufio.Writer
	head   []byte
	fields []field
	out    []byte      // response body buffered before the head is committed
	hdr    http.Header // response header map, cleared between requests
}

const (
	bufSize    = 4 << 10
	outBufSize = 4 << 10
	// headFree is the head scratch a connection may grow for free: heads
	// beyond it are charged to the memory budget (see growHead), and a
	// scratch grown past it is let go with its head rather than kept for the
	// next request or pooled, so that a flood's buffers go back to the heap.
	headFree = 8 << 10
	// maxHeadWait bounds how long a head waits for the memory budget before
	// its 503.
	maxHeadWait = time.Second
)

func (c *Core) getBufs(r io.Reader, w io.Writer) *bufset {
	if v := c.bufPool.Get(); v != nil {
		b := v.(*bufset)
		b.br.Reset(r)
		b.bw.Reset(w)
		return b
	}
	return &bufset{
		br:     bufio.NewReaderSize(r, bufSize),
		bw:     bufio.NewWriterSize(w, bufSize),
		head:   make([]byte, 0, 1024),
		fields: make([]field, 0, 16),
		out:    make([]byte, 0, outBufSize),
		hdr:    make(http.Header),
	}
}

func (c *Core) putBufs(b *bufset) {
	b.br.Reset(nil)
	b.bw.Reset(nil)
	if cap(b.head) > headFree {
		b.head = make([]byte, 0, 1024)
	}
	b.out = b.out[:0]
	clear(b.hdr)
	c.bufPool.Put(b)
}

// conn is one HTTP/1.x connection, served on its own goroutine.
type conn struct {
	core *Core
	nc   net.Conn
	// wmu orders the one write a body read may make (100 Continue, from
	// whichever goroutine reads first) with the response head's: taken by
	// both, and by other 1xx writes. Once the head is committed no body
	// read writes, so later response writes need no lock.
	wmu    sync.Mutex
	info   *conninfo.Info
	ctx    context.Context
	cancel context.CancelFunc
	remote string
	state  atomic.Int32

	bufs     *bufset // nil while idle
	rd       connReader
	wr       connWriter
	h        head
	resp     *response              // the exchange in progress
	cur      atomic.Pointer[reqCtx] // its context, for Close to cancel
	w        watch                  // notices a client leaving mid-request
	raw      syscall.RawConn        // the socket under nc, for waiting while idle; nil if none
	readable func(fd uintptr) bool
	peek     [1]byte

	hijacked bool
	revoked  atomic.Bool // Revoke: close after the current response

	h2 atomic.Pointer[h2sconn] // the h2 engine's connection, while it serves

	// Set while the connection is parked (see parker); woke tells the
	// goroutine the parker started that bytes are waiting.
	parkTok   uint64
	parkTimer *time.Timer
	woke      bool

	accIn, accOut int64 // byte counts already attributed to a request

	headCharged  int64     // bytes of the head charged to the core's budget
	headDeadline time.Time // when request_header_timeout ends for the head being read
}

// connReader counts bytes and hands out the first byte that waitFirstByte
// read before the buffers existed.
type connReader struct {
	nc       net.Conn
	n        int64
	first    [1]byte
	hasFirst bool
}

func (r *connReader) Read(p []byte) (int, error) {
	if r.hasFirst && len(p) > 0 {
		r.hasFirst = false
		p[0] = r.first[0]
		if len(p) == 1 {
			return 1, nil
		}
		n, err := r.nc.Read(p[1:])
		r.n += int64(n)
		return n + 1, err
	}
	n, err := r.nc.Read(p)
	r.n += int64(n)
	return n, err
}

// connWriter bounds every write with write_timeout (slow readers) and
// counts bytes.
type connWriter struct {
	nc       net.Conn
	n        int64
	dl       writeDeadline
	handler  bool // the handler set its own write deadline (ResponseController)
	timedOut bool // a write timed out: the close resets (see closeTimedOut)
}

func (w *connWriter) Write(p []byte) (int, error) {
	if !w.handler {
		w.dl.arm(w.nc)
	}
	n, err := w.nc.Write(p)
	w.n += int64(n)
	if err != nil && isTimeout(err) {
		w.timedOut = true
	}
	return n, err
}

// writeDeadline gives every write at least half of write_timeout and at
// most all of it. It moves the socket's deadline only when less than half
// is left, so a busy connection updates it a few times a second rather than
// on every write: each update is a runtime timer operation, and per write
// (twice, for http2's WriteByteTimeout) they add up to several percent of an
// h2 connection's CPU.
type writeDeadline struct {
	timeout time.Duration
	at      time.Time // the deadline now set on the socket
}

func (d *writeDeadline) arm(nc net.Conn) {
	now := time.Now()
	if d.at.Sub(now) < d.timeout/2 {
		d.at = now.Add(d.timeout)
		nc.SetWriteDeadline(d.at)
	}
}

// forget is for when somebody else set the socket's write deadline.
func (d *writeDeadline) forget() { d.at = time.Time{} }

// ServeConn serves conn until it is finished, then closes it. It takes
// ownership of conn; for TLS it must be an already-handshaken *tls.Conn and
// info.TLS its state. It is called on the connection's own goroutine and
// returns when the connection is closed, hijacked by a handler, or parked:
// on Linux a keep-alive connection that stays quiet past a short wait is
// handed to the Core's epoll set and served on from a new goroutine when its
// next request arrives. Shutdown waits for every connection, parked or not.
//
// For the smallest idle footprint, run the TLS handshake on a short-lived
// goroutine and call ServeConn from a fresh one (go c.ServeConn(...)): the
// stack a handshake grows stays with its goroutine. ServeConn itself keeps
// a small frame so an idle connection's stack can shrink (see
// waitFirstByte). A nil info is derived from conn.
func (c *Core) ServeConn(nc net.Conn, info *conninfo.Info) {
	if !c.TryServeConn(nc, info) {
		nc.Close() // shutting down: refused before a byte was read
	}
}

// TryServeConn is ServeConn for a caller that has another core to offer the
// connection to (a server swapping in a new configuration): when this core
// has begun shutting down it returns false at once, leaving nc open and
// unread; otherwise it serves nc as ServeConn does and returns true. The
// check and the core's registration of nc are one step, so no connection is
// lost between them.
func (c *Core) TryServeConn(nc net.Conn, info *conninfo.Info) bool {
	cn, h2, declined := c.newConn(nc, info)
	if declined {
		return false
	}
	if cn == nil {
		return true
	}
	if h2 {
		c.serveH2(cn)
		return true
	}
	cn.run()
	return true
}

// run serves an HTTP/1.x connection until it is finished (then closes it
// and lets the Core forget it) or parked.
func (cn *conn) run() {
	parked := false
	defer func() {
		if !parked {
			cn.close()
			cn.core.connDone(cn)
		}
	}()
	parked = cn.serve()
}

// finishParked closes a connection taken out of the parker by its timer,
// Shutdown or Close.
func (cn *conn) finishParked() {
	if sc := cn.h2.Load(); sc != nil {
		go sc.resume(true) // GOAWAY first
		return
	}
	cn.state.Store(stateClosing)
	cn.core.g.connsIdle.Add(-1)
	cn.close()
	cn.core.connDone(cn)
}

// resumeParked serves on a connection the parker woke: bytes are waiting.
func (cn *conn) resumeParked() {
	if sc := cn.h2.Load(); sc != nil {
		cn.woke = false
		sc.resume(false)
		return
	}
	cn.run()
}

func (c *Core) connDone(cn *conn) {
	// The gauge first: untrack may release Shutdown, whose caller must see
	// the connection gone from the figures too.
	c.g.connsOpen.Add(-1)
	c.untrack(cn)
}

// newConn admits and registers a connection; nil means it was refused (and
// closed), or, with declined, that the core is shutting down and nc was left
// untouched.
func (c *Core) newConn(nc net.Conn, info *conninfo.Info) (_ *conn, h2, declined bool) {
	if info == nil {
		info = conninfo.New(nc)
	}
	h2 = info.TLS != nil && info.TLS.NegotiatedProtocol == "h2"
	cn := &conn{core: c, nc: nc, info: info}
	cn.rd.nc = nc
	cn.wr = connWriter{nc: nc, dl: writeDeadline{timeout: c.opts.WriteTimeout}}
	if info.RemoteAddr != nil {
		cn.remote = info.RemoteAddr.String()
	}
	cn.ctx, cn.cancel = context.WithCancel(context.WithValue(conninfo.NewContext(context.Background(), info), budgetKey{}, c.budget))
	cn.raw = rawConn(nc)
	if cn.raw != nil {
		cn.readable = func(fd uintptr) bool { return socketReadable(fd, &cn.peek) }
	}
	if !c.track(cn) {
		cn.cancel()
		return nil, false, true
	}
	return cn, h2, false
}

// rawConn finds the socket under nc (itself, or under a *tls.Conn).
func rawConn(nc net.Conn) syscall.RawConn {
	under := nc
	if tc, ok := nc.(*tls.Conn); ok {
		under = tc.NetConn()
	}
	sc, ok := under.(syscall.Conn)
	if !ok {
		return nil
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	return raw
}

// RefuseConn is the accept loop's answer to a connection over
// max_connections: counted, and on a plain listener (answer) a fast 503
// written without reading the request, since the point is to shed load.
// The caller closes nc.
func (c *Core) RefuseConn(nc net.Conn, answer bool) {
	if c.st != nil {
		c.st.reject(errMaxConns503.status, errMaxConns503.reason)
	}
	if answer {
		nc.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
		nc.Write(c.rejectBytes(errMaxConns503, "HTTP/1.1"))
	}
}

// serve is the request loop. It reports whether it ended by parking the
// connection, which then belongs to the parker.
func (cn *conn) serve() (parked bool) {
	c := cn.core
	for {
		if cn.bufs == nil {
			started, parked := cn.waitFirstByte()
			if parked {
				return true
			}
			if !started {
				return false
			}
		}
		cn.headDeadline = time.Now().Add(c.opts.RequestHeaderTimeout)
		cn.nc.SetReadDeadline(cn.headDeadline)
		if c.opts.H2C && cn.maybeH2C() {
			return true // the h2 engine's now (h2c.go)
		}
		raw, err := readHead(cn.bufs.br, cn.bufs.head, c.opts.MaxRequestHeaderSize, cn)
		cn.bufs.head = raw[:0]
		if err != nil {
			cn.dropHead()
			var rerr *rejectError
			switch {
			case err == errIdle:
			case errors.As(err, &rerr):
				cn.rejectAndClose(rerr, "")
			case isTimeout(err):
				cn.rejectAndClose(errRequestTimeout, "")
			default:
				if !errors.Is(err, io.EOF) {
					c.g.socketErrors.Add(1)
				}
			}
			return false
		}
		ex := &exchange{}
		fields, rerr := parseHead(raw, cn.bufs.fields, c.opts.MaxRequestBodySize, &cn.h, &ex.url)
		cn.bufs.fields = fields[:0]
		if rerr != nil {
			cn.dropHead()
			proto := ""
			if cn.h.minor == 0 && cn.h.proto == "HTTP/1.0" {
				proto = "HTTP/1.0"
			}
			cn.rejectAndClose(rerr, proto)
			return false
		}
		cn.keepHead(len(raw))
		keep := cn.serveRequest(ex)
		cn.dropHead()
		if !keep || cn.hijacked {
			return false
		}
		if c.shutting.Load() || cn.revoked.Load() {
			return false
		}
		cn.h = head{} // keep nothing of the last request while idle
		if cn.bufs.br.Buffered() == 0 && !cn.rd.hasFirst {
			// Nothing pipelined: go idle without buffers.
			c.putBufs(cn.bufs)
			cn.bufs = nil
		}
	}
}

// waitFirstByte is the idle phase: no worker, no buffers, and, on TCP and
// TLS-over-TCP connections, soon no goroutine either. It reports whether a
// request started, or that the connection was parked (and now belongs to
// the parker).
func (cn *conn) waitFirstByte() (started, parked bool) {
	c := cn.core
	if !cn.woke {
		cn.state.Store(stateIdle)
		c.g.connsIdle.Add(1)
		if c.shutting.Load() || cn.revoked.Load() {
			c.g.connsIdle.Add(-1)
			return false, false
		}
	}
	n, err, parked := cn.idleRead()
	if parked {
		return false, true
	}
	c.g.connsIdle.Add(-1)
	if !cn.state.CompareAndSwap(stateIdle, stateActive) {
		return false, false // Shutdown closed us while idle
	}
	if n == 0 {
		if err != nil && !errors.Is(err, io.EOF) && !isTimeout(err) && !errors.Is(err, net.ErrClosed) {
			c.g.socketErrors.Add(1)
		}
		return false, false
	}
	cn.rd.n++
	cn.rd.hasFirst = true
	cn.bufs = c.getBufs(&cn.rd, &cn.wr)
	return true, false
}

// idleRead reads the first byte of the next request into cn.rd.first, or
// parks the connection.
//
// A keep-alive client usually sends its next request at once, so the
// first idleHotWait is spent in an ordinary blocking read: two syscalls, as
// cheap as it gets. A connection that stays quiet longer is parked (see
// parker) and its goroutine ends. The timed-out read proves the TLS layer
// holds no complete record, so the socket's readability is the whole truth.
//
// Where there is no parker, the connection waits for readability on the raw
// socket instead (syscall.RawConn.Read): a few shallow frames rather than
// the record layer's call chain, so the GC can shrink the idle goroutine's
// stack to its minimum.
func (cn *conn) idleRead() (n int, err error, parked bool) {
	c := cn.core
	timeout := c.opts.SocketTimeout
	if cn.woke {
		// Back from the parker with bytes waiting; a TLS record may still be
		// incomplete, so the read may wait for the rest, within socket_timeout.
		cn.woke = false
		cn.nc.SetReadDeadline(time.Now().Add(timeout))
		n, err = cn.nc.Read(cn.rd.first[:])
		return n, err, false
	}
	start := time.Now()
	if cn.raw == nil || timeout <= idleHotWait {
		cn.nc.SetReadDeadline(start.Add(timeout))
		n, err = cn.nc.Read(cn.rd.first[:])
		if n == 0 && isTimeout(err) && cn.raw != nil && cn.bytesWaiting() {
			// The deadline's wake-up beat the socket's on a loaded machine;
			// the request came in time.
			cn.nc.SetReadDeadline(time.Now().Add(timeout))
			n, err = cn.nc.Read(cn.rd.first[:])
		}
		return n, err, false
	}
	cn.nc.SetReadDeadline(start.Add(idleHotWait))
	n, err = cn.nc.Read(cn.rd.first[:])
	if n > 0 || !isTimeout(err) {
		return n, err, false
	}
	if p := c.idleParker(); p != nil {
		switch p.park(cn, start.Add(timeout)) {
		case parkOK:
			return 0, nil, true
		case parkClosed:
			return 0, net.ErrClosed, false
		}
	}
	// Not parked. The deadline may have passed already, when this goroutine
	// ran late (a loaded machine): a read then fails without looking, so a
	// request already in the socket is served rather than reset. The same
	// holds for a timed-out wait whose deadline woke it before the socket
	// did.
	cn.nc.SetReadDeadline(start.Add(timeout))
	if err := cn.raw.Read(cn.readable); err != nil && !(isTimeout(err) && cn.bytesWaiting()) {
		return 0, err, false
	}
	cn.nc.SetReadDeadline(time.Now().Add(timeout))
	n, err = cn.nc.Read(cn.rd.first[:])
	return n, err, false
}

// Results of parker.park.
type parkResult int

const (
	parkOK      parkResult = iota // the connection now belongs to the parker
	parkRefused                   // not parked: wait some other way
	parkClosed                    // not parked: the connection was closed meanwhile
)

// idleHotWait is how long an idle connection waits in a plain read before
// moving to the shallow wait.
const idleHotWait = 100 * time.Millisecond

func (cn *conn) close() {
	cn.cancel()
	cn.dropHead()
	if cn.hijacked {
		return
	}
	if cn.bufs != nil {
		cn.core.putBufs(cn.bufs)
		cn.bufs = nil
	}
	if cn.wr.timedOut {
		cn.closeTimedOut()
		return
	}
	cn.nc.Close()
}

// closeTimedOut closes a connection whose write timed out, a client that
// stopped reading, with a TCP reset, as nginx's reset_timedout_connection
// does. An orderly close would leave the kernel holding what the socket
// buffer has (several MiB per connection, autotuned) and trickling it to
// the client before its FIN; on TLS it would also first write close_notify
// after a record the deadline may have cut, which the client reads as a
// record of garbage. The reset frees the buffer and tells the client at
// once.
func (cn *conn) closeTimedOut() {
	if cn.raw != nil {
		lingerZero(cn.raw)
	}
	if tc, ok := cn.nc.(*tls.Conn); ok {
		tc.NetConn().Close() // no close_notify after a torn record
	}
	cn.nc.Close()
}

// headGrower makes a larger buffer for a head being read; see readHead.
type headGrower interface {
	growHead(buf []byte, need int) ([]byte, error)
}

// growHead gives the head being read a buffer of at least need bytes,
// holding buf's. Up to headFree it is free; beyond, the whole buffer is
// charged to the core's memory budget first, and when the budget is spent
// the head waits up to maxHeadWait (within request_header_timeout) for
// bytes to come back, then is refused with a 503. Buffers grow fourfold, so
// a 500 KiB head is copied five times rather than the dozens append would
// take, and leaves a third as much garbage behind.
func (cn *conn) growHead(buf []byte, need int) ([]byte, error) {
	n := max(need, 4*cap(buf), 1024)
	if need <= headFree {
		n = min(n, headFree)
	}
	n = min(n, max(need, int(cn.core.opts.MaxRequestHeaderSize)))
	if n > headFree {
		if !cn.chargeHead(int64(n) - cn.headCharged) {
			return buf, errMemory503
		}
		cn.headCharged = int64(n)
	}
	nb := make([]byte, len(buf), n)
	copy(nb, buf)
	return nb, nil
}

// chargeHead takes n more bytes of the budget for the head being read.
func (cn *conn) chargeHead(n int64) bool {
	c := cn.core
	if c.budget.TryAcquire(n) {
		return true
	}
	c.g.memWaits.Add(1)
	if c.budget.AcquireTimeout(n, min(maxHeadWait, time.Until(cn.headDeadline))) {
		return true
	}
	c.g.memRejects.Add(1)
	c.log.Debug("request head refused: memory budget spent", "remote_addr", cn.remote, "max_buffered_memory", c.budget.Limit())
	return false
}

// keepHead is for a head parsed: it lives on as one string of n bytes (every
// string of the request is a substring of it) until the exchange ends. So a
// charged head stays charged for n bytes, and its larger buffer goes.
func (cn *conn) keepHead(n int) {
	if cn.headCharged == 0 {
		return
	}
	cn.core.budget.Release(cn.headCharged - int64(n))
	cn.headCharged = int64(n)
	cn.bufs.head = nil
}

// dropHead gives back the head's charge, and a head buffer grown past
// headFree, when the head and its exchange are over.
func (cn *conn) dropHead() {
	if cn.headCharged > 0 {
		cn.core.budget.Release(cn.headCharged)
		cn.headCharged = 0
	}
	if cn.bufs != nil && cap(cn.bufs.head) > headFree {
		cn.bufs.head = nil
	}
}

// rejectAndClose sends a core-generated error response and closes the
// connection gracefully enough that the client can read it.
func (cn *conn) rejectAndClose(rerr *rejectError, proto string) {
	cn.writeReject(rerr, proto)
	cn.lingerClose()
}

// writeReject sends a core-generated error response; the caller closes.
func (cn *conn) writeReject(rerr *rejectError, proto string) {
	c := cn.core
	if c.st != nil {
		c.st.reject(rerr.status, rerr.reason)
	}
	c.log.Debug("request rejected", "remote_addr", cn.remote, "status", rerr.status, "reason", rerr.reason)
	if proto == "" {
		proto = c.proto
	}
	bw := cn.bufs.bw
	bw.Write(c.rejectBytes(rerr, proto))
	bw.Flush()
}

// lingerClose half-closes the connection and discards what the client is
// still sending for a moment before closing: closing a TCP socket with
// unread input makes the kernel send RST, which can destroy the response
// before the client has read it. A client that is mid-upload when it gets
// a 413 typically writes on until its body is out and only then reads the
// answer, so the linger must outlast a few MiB on a fast link (as nginx's
// lingering_close does), and it is bounded in bytes and time.
func (cn *conn) lingerClose() {
	nc := cn.nc
	if tc, ok := nc.(*tls.Conn); ok {
		tc.SetWriteDeadline(time.Now().Add(time.Second))
		tc.CloseWrite()
		nc = tc.NetConn()
	}
	if cw, ok := nc.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
		nc.SetReadDeadline(time.Now().Add(lingerTime))
		io.CopyN(io.Discard, nc, lingerBytes)
	}
}

// How long, and how much, lingerClose discards at most.
const (
	lingerTime  = time.Second
	lingerBytes = 4 << 20
)

// rejectBytes renders a complete core-generated response.
func (c *Core) rejectBytes(rerr *rejectError, proto string) []byte {
	b := make([]byte, 0, 256)
	b = append(b, proto...)
	b = append(b, ' ')
	b = strconv.AppendInt(b, int64(rerr.status), 10)
	b = append(b, ' ')
	b = append(b, http.StatusText(rerr.status)...)
	b = append(b, "\r\nDate: "...)
	b = c.appendDate(b)
	if c.opts.ServerName != "" {
		b = append(b, "\r\nServer: "...)
		b = append(b, c.opts.ServerName...)
	}
	b = append(b, "\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: "...)
	b = strconv.AppendInt(b, int64(len(rerr.text)+1), 10)
	if rerr.status == http.StatusServiceUnavailable {
		b = append(b, "\r\nRetry-After: 5"...)
	}
	b = append(b, "\r\nConnection: close\r\n\r\n"...)
	b = append(b, rerr.text...)
	b = append(b, '\n')
	return b
}

// exchange is one request and its response, allocated together.
type exchange struct {
	req  http.Request
	url  url.URL
	ctx  reqCtx
	resp response
	body body
}

// serveRequest runs one parsed request through admission, the handler and
// the response, and reports whether the connection may carry another.
func (cn *conn) serveRequest(ex *exchange) bool {
	c := cn.core
	h := &cn.h
	r := &ex.req
	*r = http.Request{
		Method:     h.method,
		URL:        h.url,
		Proto:      h.proto,
		ProtoMajor: 1,
		ProtoMinor: h.minor,
		Header:     h.header,
		Body:       http.NoBody,
		Close:      h.close,
		Host:       h.host,
		RemoteAddr: cn.remote,
		RequestURI: h.target,
		TLS:        cn.info.TLS,
	}
	if rerr := c.canonicalize(r); rerr != nil {
		proto := ""
		if h.minor == 0 {
			proto = "HTTP/1.0"
		}
		cn.rejectAndClose(rerr, proto)
		return false
	}
	if c.opts.Prepare != nil {
		c.opts.Prepare(r)
	}
	var bd *body
	if h.chunked || h.contentLength > 0 {
		bd = &ex.body
		*bd = body{cn: cn, chunked: h.chunked, left: h.contentLength, limit: c.opts.MaxRequestBodySize, expectContinue: h.expectContinue, trailer: &r.Trailer}
		r.Body = bd
		r.ContentLength = h.contentLength
		if h.chunked {
			r.ContentLength = -1
			r.TransferEncoding = []string{"chunked"}
		}
	}
	ex.ctx.Context = cn.ctx
	if bd == nil && cn.raw != nil && cn.bufs.br.Buffered() == 0 && !cn.rd.hasFirst {
		cn.armWatch(true)
		ex.ctx.watcher = cn
	} else {
		cn.armWatch(false)
	}
	*r = *r.WithContext(&ex.ctx)
	cn.cur.Store(&ex.ctx)
	w := &ex.resp
	w.init(cn, r)
	w.bd = bd
	cn.resp = w

	pl := c.poolFor(r)
	wk, err := pl.acquire()
	if err != nil {
		rerr := errQueue503
		switch err {
		case errQueueTimeout:
			rerr = errQueueTimeout503
		case errPoolClosed:
			rerr = errShutdown503
		}
		cn.rejectAndClose(rerr.withID(r), "")
		return false
	}
	var t0 time.Time
	if c.st != nil {
		t0 = time.Now()
	}
	panicked := cn.runHandler(w, r)
	cn.cur.Store(nil)
	if !cn.hijacked && cn.stopWatch() {
		w.closeAfter = true // the client is gone: no keep-alive
	}
	if cn.hijacked {
		// As net/http: a hijacked request's context is left to the handler.
		pl.release(wk)
		return false
	}
	ex.ctx.cancel()
	if cn.takeBody(bd) {
		w.closeAfter = true // a read was cut short: the stream is not reusable
	}
	w.bodyHeld = bd != nil
	keep := w.finish(bd, panicked)
	if c.st != nil {
		in, out := cn.rd.n-cn.accIn, cn.wr.n-cn.accOut
		cn.accIn, cn.accOut = cn.rd.n, cn.wr.n
		d := time.Since(t0)
		c.st.requests.Add(1)
		c.st.bytesRead.Add(uint64(in))
		c.st.bytesWritten.Add(uint64(out))
		c.st.workNanos.Add(int64(d))
		wk.requests.Add(1)
		wk.bytesRead.Add(uint64(in))
		wk.bytesWritten.Add(uint64(out))
		wk.workNanos.Add(int64(d))
	}
	pl.release(wk)
	if keep && bd != nil {
		keep = bd.drain()
	}
	if bd != nil {
		bd.release()
	}
	cn.resp = nil
	if cn.wr.handler { // the handler's write deadline was for its response only
		cn.wr.handler = false
		cn.wr.dl.forget()
	}
	if cn.bufs != nil {
		clear(cn.bufs.hdr)
	}
	if !keep {
		cn.lingerClose()
	}
	return keep
}

// takeBody takes the request body over from the handler (b.mu stays held
// until the exchange ends). A goroutine the handler left behind may still be
// inside a read, waiting for the client: its read is cut short, and takeBody
// reports that, because the connection is then closed rather than reused.
func (cn *conn) takeBody(b *body) (straggler bool) {
	if b == nil || b.mu.TryLock() {
		return false
	}
	b.interrupted.Store(true)
	cn.nc.SetReadDeadline(aLongTimeAgo)
	b.mu.Lock()
	return true
}

// runHandler calls the handler, turning a panic into a logged error. A
// panic harms only this connection.
func (cn *conn) runHandler(w *response, r *http.Request) (panicked bool) {
	defer func() {
		if v := recover(); v != nil {
			panicked = true
			if v == http.ErrAbortHandler {
				return
			}
			cn.core.log.Error("handler panic", "remote_addr", cn.remote, "method", r.Method, "uri", r.RequestURI, "panic", v, "stack", string(debug.Stack()))
		}
	}()
	cn.core.handlerFor(r).ServeHTTP(w, r)
	return false
}

func isTimeout(err error) bool {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// errPanic500 is the core's answer for a handler that panicked before
// writing anything.
var errPanic500 = reject(500, "panic", "internal server error")

// requestIDHeader is where the server's Prepare puts a request's id
// (policy.AssignRequestID).
const requestIDHeader = "X-Request-Id"

// withID returns rerr with the request's id after its text when it is a 5xx
// and r has one, so a user who reports it hands over the key to the log
// lines; rerr itself otherwise. It allocates only on that path.
func (rerr *rejectError) withID(r *http.Request) *rejectError {
	if rerr.status < 500 || r == nil {
		return rerr
	}
	v := r.Header[requestIDHeader]
	if len(v) != 1 {
		return rerr
	}
	c := *rerr
	c.text += "\nrequest id: " + v[0]
	return &c
}
