package httpcore

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/http/httpguts"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// The core's h2 connection engine, on x/net's Framer and HPACK codecs but
// not its server. One connection is three kinds of goroutine:
//
//   - the reader (the connection's own goroutine): reads and checks every
//     frame, keeps all stream state and flow control under one mutex, and
//     starts a stream's handler;
//   - one goroutine per running handler, which passes through the core's
//     admission, limits and statistics (h2Handler, h2.go) and
//     holds a worker slot of the core's pool while it runs;
//   - the writer, which takes every frame ready at the moment (control
//     frames first, then the streams' HEADERS and DATA in turn, within the
//     flow-control windows) and sends them in one write, so that a burst of
//     small responses costs a fraction of a system call each.
//
// Its bounds, beside those h2.go lists:
//
//   - concurrent streams (h2MaxStreams) and running handlers per connection
//     (a stream the client reset keeps its handler's place until the
//     handler returns), so rapid reset (CVE-2023-44487) cannot start
//     unbounded work; client resets past a rate end the connection;
//   - a header block is bounded in bytes (CONTINUATION flood) and a header
//     list past max_request_header_size gets 431;
//   - frames that cost work and carry nothing (SETTINGS, PING, PRIORITY,
//     empty DATA or CONTINUATION, RST_STREAM) are rate-bounded, and the
//     control frames queued for a client that does not read are capped;
//   - flow-control windows that overflow are errors; windows held at zero
//     are ended by the streams' write deadlines (write_timeout);
//   - a socket write blocked for write_timeout ends the connection.

const (
	// h2StreamWindow is the receive window of a stream (the protocol's
	// initial 65535, never changed), and h2ConnWindow the connection's.
	h2StreamWindow = 65535
	h2ConnWindow   = 1 << 20
	// h2MaxHandlers bounds the handlers running for one connection,
	// streams reset by the client included.
	h2MaxHandlers = 2 * h2MaxStreams
	// h2OutBuf is the most a stream's handler gets ahead of the writer.
	h2OutBuf = 32 << 10
	// h2HeadBuf is what a handler's first writes are collected into before
	// the response head is sent, so that a small response is one HEADERS
	// and one DATA frame (and gets a Content-Length).
	h2HeadBuf = 4 << 10
	// h2MaxCtrl caps the control frames queued for a client (SETTINGS and
	// PING acknowledgements, resets): one that sends them without reading
	// the answers is cut off.
	h2MaxCtrl = 2 * h2FloodBurst
	// Cheap frames (see the list above): a burst of h2FloodBurst, then
	// h2FloodRate a second.
	h2FloodBurst = 1000
	h2FloodRate  = 1000
	// Client resets of streams still in progress: a burst, then a rate.
	h2ResetBurst = 2 * h2MaxStreams
	h2ResetRate  = 100
	// h2DrainTime is how long a closing connection reads on after its
	// last frames (see drain), and h2DrainBytes the most it reads then.
	h2DrainTime  = time.Second
	h2DrainBytes = 1 << 20
	// h2WriteBatch is how much the writer collects before a write.
	h2WriteBatch = 64 << 10
)

var errH2StreamClosed = errors.New("httpcore: h2 stream closed")

// h2bucket is a token bucket counted in whole frames.
type h2bucket struct {
	tokens float64
	last   time.Time
}

func (b *h2bucket) take(burst, rate float64, now time.Time) bool {
	if b.last.IsZero() {
		b.tokens = burst
	} else {
		b.tokens = min(burst, b.tokens+now.Sub(b.last).Seconds()*rate)
	}
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// h2kv is one header field of a head, in the handler's spelling.
type h2kv struct {
	k string
	v []string
}

func headerKV(h http.Header) []h2kv {
	kv := make([]h2kv, 0, len(h))
	for k, v := range h {
		kv = append(kv, h2kv{k, v})
	}
	return kv
}

// h2ctrl is one control frame waiting for the writer.
type h2ctrl struct {
	typ  http2.FrameType
	id   uint32
	code http2.ErrCode
	val  uint32 // WINDOW_UPDATE's increment
	ack  bool
	data [8]byte
}

// h2head is a response head waiting for the writer to encode it (the
// HPACK encoder is the connection's and belongs to the writer).
type h2head struct {
	status int
	kv     []h2kv
	end    bool // END_STREAM on the HEADERS (no body, no trailers)
}

type h2sconn struct {
	c       *Core
	cn      *conn
	nc      net.Conn
	h       h2Handler
	remote  string
	tls     *tls.ConnectionState
	baseCtx context.Context

	rd   h2reader
	fr   *http2.Framer
	hdec *hpack.Decoder

	// header block being read: HEADERS then CONTINUATIONs
	hblock   []byte
	hstream  uint32
	hend     bool
	hprio    bool
	hselfdep bool // the HEADERS made its stream depend on itself
	fields   []hpack.HeaderField
	fsize    int64
	tooBig   bool
	maxBlock int
	maxList  int64 // MAX_HEADER_LIST_SIZE: max_request_header_size and 32 bytes for each of 10 fields, as x/net

	handlers sync.WaitGroup
	wake     chan struct{}
	wdone    chan struct{} // closed when the writer has stopped for good
	writing  bool          // a writer goroutine runs; under mu
	wfinal   bool          // the writer has stopped for good; under mu

	mu          sync.Mutex
	streams     map[uint32]*h2stream
	ctrl        []h2ctrl
	ready       []*h2stream
	maxID       uint32 // highest client stream id seen
	goawayLast  uint32 // the last stream id of the GOAWAY written (goawayOut); beside maxID, in its padding
	open        int    // client streams open or half-closed
	running     int    // handlers running
	goaway      bool   // GOAWAY sent: no new streams
	started     bool   // serve has read the preface and queued its SETTINGS
	goawayOut   bool   // a GOAWAY was written, with goawayLast
	closing     bool   // the writer flushes and stops
	dead        bool   // the connection is over
	sendWin     int64  // connection send window
	peerInit    int64  // peer's SETTINGS_INITIAL_WINDOW_SIZE
	peerFrame   int    // peer's SETTINGS_MAX_FRAME_SIZE
	recvWin     int64  // connection receive window left
	recvUnacked int64  // consumed, not yet given back
	lastActive  time.Time
	pingOut     bool
	parked      bool // the reader has handed the connection to the parker (h2park.go)
	between     bool // the reader waits for a frame's first byte (idleWait)
	hot         bool // and that wait has a deadline
	pingAt      time.Time
	idleTimer   *time.Timer
	flood       h2bucket
	resetIDs    [16]uint32 // streams this end reset lately (noteResetLocked)
	resetNext   int
	resets      h2bucket
	tableSize   uint32
	tableChange bool
	// the reader's own: a byte idleWait read, for h2reader to hand out
	// before the socket's next ones
	first    [1]byte
	hasFirst bool

	dateMu   sync.Mutex
	dateSec  int64
	dateText string

	// writer's own
	henc *hpack.Encoder
	hbuf bytes.Buffer
	wbuf bytes.Buffer
	wfr  *http2.Framer
	wdl  writeDeadline
}

// h2reader counts bytes, and hands out sc.first, the byte an idle
// connection's wait read (h2sconn.idleWait), before the socket's next ones.
type h2reader struct {
	nc net.Conn
	sc *h2sconn
}

func (r *h2reader) Read(p []byte) (int, error) {
	if sc := r.sc; sc.hasFirst && len(p) > 0 {
		p[0] = sc.first[0]
		sc.hasFirst = false
		return 1, nil
	}
	n, err := r.nc.Read(p)
	if st := r.sc.c.st; st != nil {
		st.bytesRead.Add(uint64(n))
	}
	return n, err
}

type h2stream struct {
	sc     *h2sconn
	id     uint32
	ctx    context.Context
	cancel context.CancelFunc
	method string
	// hostConflict: the request named two hosts (an :authority and a
	// different Host, or several Host fields), which RFC 9113 8.3.1 makes
	// malformed; the answer is HTTP/1.1's to two Hosts, a 400.
	hostConflict bool

	// under sc.mu
	remoteDone bool // END_STREAM received
	closed     bool // gone from sc.streams
	reset      bool // reset by either side: writes fail
	handler    bool // its handler runs
	in         []byte
	inErr      error
	bodyClosed bool
	recvWin    int64
	unacked    int64
	declCL     int64 // content-length, or -1
	got        int64
	trailer    http.Header // the request's, filled when trailers come
	sendWin    int64
	infos      []h2head
	hdr        *h2head
	out        []byte
	outEnd     bool
	trailers   http.Header
	endSent    bool
	queued     bool
	inWake     chan struct{}
	room       chan struct{}
	wdl        time.Time   // the write deadline; zero: none
	wdlTimer   *time.Timer // made when the deadline can matter (see armWriteLocked)
	blocked    bool        // output waits for window
	rdlTimer   *time.Timer
	rdlPassed  bool

	rw h2rw
}

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// serveH2 serves an h2 connection until it is finished (then closes it and
// lets the Core forget it) or parked (see h2sconn.idleWait): a parked
// connection is finished by whoever takes it out of the parker.
func (c *Core) serveH2(cn *conn) {
	c.g.h2Conns.Add(1)
	sc := &h2sconn{
		c: c, cn: cn, nc: cn.nc, remote: cn.remote,
		h:         h2Handler{c: c, waiting: waitCap{max: h2MaxWaitingPerConn}},
		streams:   make(map[uint32]*h2stream),
		wake:      make(chan struct{}, 1),
		wdone:     make(chan struct{}),
		sendWin:   65535,
		peerInit:  65535,
		peerFrame: 16384,
		recvWin:   h2ConnWindow,
		wdl:       writeDeadline{timeout: c.opts.WriteTimeout},
	}
	if cn.info != nil {
		sc.tls = cn.info.TLS
	}
	// The streams' contexts are canceled by their streams (a reset, the
	// end of the stream, and finish resets every stream), so they need no
	// link to the connection's: one would cost a map and a channel in the
	// connection's context for its whole life, parked included.
	sc.baseCtx = context.WithValue(context.WithoutCancel(cn.ctx), http.LocalAddrContextKey, cn.nc.LocalAddr())
	sc.rd = h2reader{nc: cn.nc, sc: sc}
	sc.maxList = c.opts.MaxRequestHeaderSize + 320
	sc.maxBlock = int(sc.maxList) + 16<<10
	cn.h2.Store(sc)
	if sc.serve() {
		return
	}
	sc.done()
}

// done is the end of a connection that is not parked: closed, forgotten
// by the Core, out of the gauges.
func (sc *h2sconn) done() {
	cn := sc.cn
	cn.nc.Close()
	cn.h2.Store(nil)
	cn.cancel()
	sc.c.g.h2Conns.Add(-1)
	sc.c.connDone(cn)
}

// serve reads the preface, sets the connection up and runs the reader
// loop. It reports whether the connection was parked (and now belongs to
// the parker).
func (sc *h2sconn) serve() (parked bool) {
	c := sc.c
	sc.nc.SetReadDeadline(time.Now().Add(c.opts.RequestHeaderTimeout))
	var pre [24]byte
	if _, err := io.ReadFull(&sc.rd, pre[:]); err != nil || string(pre[:]) != http2.ClientPreface {
		return false
	}
	sc.nc.SetReadDeadline(time.Time{})
	// No bufio.Reader: a tls.Conn keeps the record it decrypted and hands
	// it out without a system call, so the Framer's small reads cost a
	// copy each, and an idle connection keeps no 4 KiB buffer.
	sc.fr = sc.newReadFramer()
	sc.hdec = hpack.NewDecoder(4096, sc.emit)
	sc.hdec.SetMaxStringLength(2 * sc.maxBlock) // emit bounds the list
	sc.wfr = http2.NewFramer(&sc.wbuf, nil)
	sc.henc = hpack.NewEncoder(&sc.hbuf)

	sc.mu.Lock()
	sc.ctrl = append(sc.ctrl, h2ctrl{typ: http2.FrameSettings}, h2ctrl{typ: http2.FrameWindowUpdate, val: h2ConnWindow - 65535})
	sc.started = true
	if sc.goaway || c.shutting.Load() || sc.cn.revoked.Load() {
		// Shutdown or Revoke came while the preface was awaited (see
		// shutdown), or before the Core knew this for an h2 connection
		// (cn.h2 is stored after the Core tracks it): its GOAWAY
		// follows the SETTINGS.
		sc.goaway = true
		sc.ctrl = append(sc.ctrl, h2ctrl{typ: http2.FrameGoAway, code: http2.ErrCodeNo})
		sc.maybeCloseLocked()
	}
	sc.lastActive = time.Now()
	sc.idleTimer = time.AfterFunc(c.opts.SocketTimeout/2, sc.checkIdle)
	sc.kickLocked()
	sc.mu.Unlock()
	return sc.readLoop(true)
}

// newReadFramer makes the reader's Framer; the reader makes a new one
// after a park (see idleWait), so a parked connection keeps no read buffer.
func (sc *h2sconn) newReadFramer() *http2.Framer {
	fr := http2.NewFramer(nil, &sc.rd)
	fr.SetMaxReadFrameSize(16 << 10)
	return fr
}

// readLoop reads and processes frames until the connection ends (then it
// finishes it) or is parked while idle, which it reports. first: the
// client's SETTINGS has not come yet, and must be the first frame.
func (sc *h2sconn) readLoop(first bool) (parked bool) {
	canPark := !first && sc.mayPark()
	inBlock := false // a header block is open: CONTINUATION must follow
	for {
		if canPark && !inBlock {
			switch sc.idleWait() {
			case h2Parked:
				return true
			case h2Over:
				sc.finish()
				return false
			}
		}
		f, err := sc.readFrame()
		if err != nil {
			var se http2.StreamError
			if errors.As(err, &se) {
				sc.frameError(se)
				continue
			}
			sc.readError(err)
			break
		}
		if first {
			if sf, ok := f.(*http2.SettingsFrame); !ok || sf.IsAck() {
				sc.connError(http2.ErrCodeProtocol)
				break
			}
			first = false
			canPark = sc.mayPark()
		}
		switch f := f.(type) {
		case *http2.HeadersFrame:
			inBlock = !f.HeadersEnded()
		case *http2.ContinuationFrame:
			inBlock = !f.HeadersEnded()
		}
		if err := sc.process(f); err != nil {
			sc.frameError(err)
			if _, ok := err.(http2.ConnectionError); ok {
				break
			}
		}
		if sc.isOver() {
			break
		}
	}
	sc.finish()
	return false
}

// readFrame is the Framer's ReadFrame, but a HEADERS whose padding is
// longer than the frame is the connection's error (PROTOCOL_ERROR, RFC 9113
// section 6.2), where the Framer reports the stream's: the header block is
// not decoded, so the HPACK table would no longer be the client's (section
// 4.3). A DATA whose padding is too long the Framer already reports as the
// connection's error (section 6.1).
func (sc *h2sconn) readFrame() (http2.Frame, error) {
	fh, err := sc.fr.ReadFrameHeader()
	if err != nil {
		return nil, err
	}
	f, err := sc.fr.ReadFrameForHeader(fh)
	var se http2.StreamError
	if fh.Type == http2.FrameHeaders && errors.As(err, &se) {
		return nil, http2.ConnectionError(http2.ErrCodeProtocol)
	}
	return f, err
}

func (sc *h2sconn) isOver() bool {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	return sc.dead || sc.closing
}

// readError handles an error of ReadFrame that ends the connection: a
// protocol error gets its GOAWAY first.
func (sc *h2sconn) readError(err error) {
	var ce http2.ConnectionError
	switch {
	case errors.As(err, &ce):
		sc.connError(http2.ErrCode(ce))
	case err == http2.ErrFrameTooLarge:
		sc.connError(http2.ErrCodeFrameSize)
	}
}

func (sc *h2sconn) frameError(err error) {
	var ce http2.ConnectionError
	var se http2.StreamError
	switch {
	case errors.As(err, &ce):
		sc.connError(http2.ErrCode(ce))
	case errors.As(err, &se):
		sc.mu.Lock()
		if st := sc.streams[se.StreamID]; st != nil {
			sc.resetLocked(st, se.Code, true)
		} else {
			sc.queueCtrlLocked(h2ctrl{typ: http2.FrameRSTStream, id: se.StreamID, code: se.Code})
			sc.noteResetLocked(se.StreamID)
		}
		sc.mu.Unlock()
	}
}

// connError sends GOAWAY with code and ends the connection once it is out.
func (sc *h2sconn) connError(code http2.ErrCode) {
	sc.mu.Lock()
	if !sc.dead && !sc.closing {
		sc.ctrl = append(sc.ctrl, h2ctrl{typ: http2.FrameGoAway, id: sc.maxID, code: code})
		sc.goaway = true
		sc.closing = true
	}
	sc.kickLocked()
	sc.mu.Unlock()
}

// finish ends the connection: the writer's last frames go out (bounded by
// write_timeout), every stream is reset for its handler, and the reader
// waits for the handlers, so that Shutdown sees the requests finished.
func (sc *h2sconn) finish() {
	sc.mu.Lock()
	sc.closing = true
	sc.kickLocked()
	sc.mu.Unlock()
	flushed := true
	select {
	case <-sc.wdone:
	case <-time.After(sc.c.opts.WriteTimeout):
		flushed = false
	}
	sc.mu.Lock()
	sc.idleTimer.Stop()
	for _, st := range sc.streams {
		sc.resetLocked(st, 0, false)
	}
	flushed = flushed && !sc.dead
	sc.mu.Unlock()
	if flushed {
		sc.drain()
	}
	sc.nc.Close()
	sc.mu.Lock()
	sc.dead = true
	sc.kickLocked()
	sc.mu.Unlock()
	<-sc.wdone
	sc.handlers.Wait()
}

// drain reads what the client still sends, for a moment, before the close:
// closing a socket with unread bytes sends a TCP reset, which can destroy
// the last responses (and the GOAWAY) before the client has read them.
func (sc *h2sconn) drain() {
	sc.nc.SetReadDeadline(time.Now().Add(h2DrainTime))
	io.CopyN(io.Discard, &sc.rd, h2DrainBytes)
}

// shutdown is Core.Shutdown's: GOAWAY, no new streams, and the connection
// ends when its streams have.
func (sc *h2sconn) shutdown() {
	sc.mu.Lock()
	if !sc.started {
		// The client's preface is still awaited (request_header_timeout
		// bounds the wait, as x/net's server's): the server's first frame
		// must be its SETTINGS (RFC 9113 section 3.4), and the writer has
		// no Framer yet. serve sends the GOAWAY after the SETTINGS.
		sc.goaway = true
		sc.mu.Unlock()
		return
	}
	if !sc.goaway && !sc.dead {
		sc.goaway = true
		sc.ctrl = append(sc.ctrl, h2ctrl{typ: http2.FrameGoAway, id: sc.maxID, code: http2.ErrCodeNo})
	}
	sc.maybeCloseLocked()
	sc.kickLocked()
	sc.mu.Unlock()
	// The reader may be blocked on a quiet socket: once the streams are
	// done, the read ends. A parked connection has no reader: it is taken
	// out of the parker, to send its GOAWAY and close.
	sc.claimParked()
}

// maybeCloseLocked ends a connection that sent GOAWAY once nothing is left.
func (sc *h2sconn) maybeCloseLocked() {
	if sc.goaway && len(sc.streams) == 0 && sc.running == 0 && !sc.closing {
		sc.closing = true
		sc.nc.SetReadDeadline(aLongTimeAgo)
	}
}

// checkIdle runs every half socket_timeout: a connection without streams
// quiet for socket_timeout gets GOAWAY and is closed; one with streams but
// a silent client is pinged, and closed if the ping is not answered within
// socket_timeout.
func (sc *h2sconn) checkIdle() {
	t := sc.c.opts.SocketTimeout
	sc.mu.Lock()
	defer sc.mu.Unlock()
	if sc.dead || sc.closing || sc.parked {
		return // a parked connection's quiet is the parker's timer's
	}
	now := time.Now()
	quiet := now.Sub(sc.lastActive)
	switch {
	case len(sc.streams) == 0 && sc.running == 0 && quiet >= t:
		sc.ctrl = append(sc.ctrl, h2ctrl{typ: http2.FrameGoAway, id: sc.maxID, code: http2.ErrCodeNo})
		sc.goaway = true
		sc.closing = true
		sc.nc.SetReadDeadline(aLongTimeAgo)
		sc.kickLocked()
		return
	case sc.pingOut && now.Sub(sc.pingAt) >= t:
		sc.dead = true
		sc.nc.Close()
		return
	case !sc.pingOut && len(sc.streams) > 0 && quiet >= t:
		sc.pingOut = true
		sc.pingAt = now
		sc.queueCtrlLocked(h2ctrl{typ: http2.FramePing, data: [8]byte{'t', 'l', 's', 'e', 'd', 'g', 'e'}})
	}
	sc.idleTimer.Reset(t / 2)
}

func (sc *h2sconn) queueCtrlLocked(f h2ctrl) {
	sc.ctrl = append(sc.ctrl, f)
	if len(sc.ctrl) > h2MaxCtrl && !sc.closing && !sc.dead {
		// The client does not read what it asked for: a last GOAWAY,
		// which write_timeout bounds too.
		sc.countReject("h2_flood")
		sc.ctrl = append(sc.ctrl, h2ctrl{typ: http2.FrameGoAway, id: sc.maxID, code: http2.ErrCodeEnhanceYourCalm})
		sc.goaway = true
		sc.closing = true
		sc.nc.SetReadDeadline(aLongTimeAgo)
	}
	sc.kickLocked()
}

func (sc *h2sconn) cheap(now time.Time) error {
	if !sc.flood.take(h2FloodBurst, h2FloodRate, now) {
		sc.countReject("h2_flood")
		return http2.ConnectionError(http2.ErrCodeEnhanceYourCalm)
	}
	return nil
}

func (sc *h2sconn) countReject(reason string) {
	if sc.c.st != nil {
		sc.c.st.reject(0, reason)
	}
}

func (sc *h2sconn) process(f http2.Frame) error {
	now := time.Now()
	sc.mu.Lock()
	sc.lastActive = now
	sc.mu.Unlock()
	switch f := f.(type) {
	case *http2.SettingsFrame:
		return sc.onSettings(f, now)
	case *http2.PingFrame:
		if err := sc.cheap(now); err != nil {
			return err
		}
		sc.mu.Lock()
		defer sc.mu.Unlock()
		if f.IsAck() {
			sc.pingOut = false
			return nil
		}
		sc.queueCtrlLocked(h2ctrl{typ: http2.FramePing, ack: true, data: f.Data})
		return nil
	case *http2.HeadersFrame:
		return sc.onHeaders(f, now)
	case *http2.ContinuationFrame:
		if len(f.HeaderBlockFragment()) == 0 {
			if err := sc.cheap(now); err != nil {
				return err
			}
		}
		sc.hblock = append(sc.hblock, f.HeaderBlockFragment()...)
		if len(sc.hblock) > sc.maxBlock {
			sc.countReject("h2_header_block")
			return http2.ConnectionError(http2.ErrCodeEnhanceYourCalm)
		}
		if f.HeadersEnded() {
			return sc.endBlock()
		}
		return nil
	case *http2.DataFrame:
		return sc.onData(f, now)
	case *http2.WindowUpdateFrame:
		return sc.onWindowUpdate(f)
	case *http2.RSTStreamFrame:
		return sc.onReset(f, now)
	case *http2.PriorityFrame:
		if err := sc.cheap(now); err != nil {
			return err
		}
		if f.StreamDep == f.StreamID {
			return http2.StreamError{StreamID: f.StreamID, Code: http2.ErrCodeProtocol}
		}
		return nil
	case *http2.GoAwayFrame:
		sc.mu.Lock()
		if !sc.goaway {
			// A GOAWAY of our own before the close (RFC 9113 section
			// 6.8: a receiver of GOAWAY SHOULD still send one): it tells
			// the client that the streams it opens after its GOAWAY,
			// which are ignored, were not processed.
			sc.goaway = true
			sc.queueCtrlLocked(h2ctrl{typ: http2.FrameGoAway, id: sc.maxID, code: http2.ErrCodeNo})
		}
		sc.maybeCloseLocked()
		sc.mu.Unlock()
		return nil
	case *http2.PushPromiseFrame:
		return http2.ConnectionError(http2.ErrCodeProtocol)
	}
	return nil // unknown frame types are ignored
}

func (sc *h2sconn) onSettings(f *http2.SettingsFrame, now time.Time) error {
	if err := sc.cheap(now); err != nil {
		return err
	}
	if f.IsAck() {
		return nil
	}
	if err := f.ForeachSetting(func(s http2.Setting) error { return s.Valid() }); err != nil {
		return err
	}
	sc.mu.Lock()
	defer sc.mu.Unlock()
	err := f.ForeachSetting(func(s http2.Setting) error {
		switch s.ID {
		case http2.SettingInitialWindowSize:
			delta := int64(s.Val) - sc.peerInit
			sc.peerInit = int64(s.Val)
			for _, st := range sc.streams {
				st.sendWin += delta
				if st.sendWin > 1<<31-1 {
					return http2.ConnectionError(http2.ErrCodeFlowControl)
				}
				if delta > 0 {
					sc.scheduleLocked(st)
				}
			}
		case http2.SettingMaxFrameSize:
			sc.peerFrame = int(s.Val)
		case http2.SettingHeaderTableSize:
			sc.tableSize = min(s.Val, 4096)
			sc.tableChange = true
		}
		return nil
	})
	if err != nil {
		return err
	}
	sc.queueCtrlLocked(h2ctrl{typ: http2.FrameSettings, ack: true})
	return nil
}

func (sc *h2sconn) onWindowUpdate(f *http2.WindowUpdateFrame) error {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	if f.StreamID == 0 {
		sc.sendWin += int64(f.Increment)
		if sc.sendWin > 1<<31-1 {
			return http2.ConnectionError(http2.ErrCodeFlowControl)
		}
		for _, st := range sc.streams {
			if len(st.out) > 0 || st.outEnd && !st.endSent {
				sc.scheduleLocked(st)
			}
		}
		return nil
	}
	if f.StreamID > sc.maxID {
		return http2.ConnectionError(http2.ErrCodeProtocol)
	}
	st := sc.streams[f.StreamID]
	if st == nil {
		return nil
	}
	st.sendWin += int64(f.Increment)
	if st.sendWin > 1<<31-1 {
		return http2.StreamError{StreamID: st.id, Code: http2.ErrCodeFlowControl}
	}
	sc.scheduleLocked(st)
	return nil
}

func (sc *h2sconn) onReset(f *http2.RSTStreamFrame, now time.Time) error {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	if f.StreamID > sc.maxID {
		return http2.ConnectionError(http2.ErrCodeProtocol)
	}
	st := sc.streams[f.StreamID]
	if st == nil {
		return sc.cheap(now)
	}
	if !sc.resets.take(h2ResetBurst, h2ResetRate, now) {
		sc.countReject("h2_rapid_reset")
		return http2.ConnectionError(http2.ErrCodeEnhanceYourCalm)
	}
	sc.resetLocked(st, 0, false)
	return nil
}

func (sc *h2sconn) onData(f *http2.DataFrame, now time.Time) error {
	n := int64(f.Length)
	data := f.Data()
	if len(data) == 0 && !f.StreamEnded() {
		if err := sc.cheap(now); err != nil {
			return err
		}
	}
	sc.mu.Lock()
	defer sc.mu.Unlock()
	if n > sc.recvWin {
		return http2.ConnectionError(http2.ErrCodeFlowControl)
	}
	sc.recvWin -= n
	id := f.StreamID
	if id > sc.maxID {
		return http2.ConnectionError(http2.ErrCodeProtocol)
	}
	st := sc.streams[id]
	if st == nil || st.remoteDone {
		sc.giveBackLocked(nil, n)
		return http2.StreamError{StreamID: id, Code: http2.ErrCodeStreamClosed}
	}
	if n > st.recvWin {
		sc.giveBackLocked(nil, n)
		return http2.StreamError{StreamID: id, Code: http2.ErrCodeFlowControl}
	}
	st.recvWin -= n
	st.got += int64(len(data))
	if st.declCL >= 0 && (st.got > st.declCL || f.StreamEnded() && st.got != st.declCL) {
		sc.giveBackLocked(nil, n)
		return http2.StreamError{StreamID: id, Code: http2.ErrCodeProtocol}
	}
	if pad := n - int64(len(data)); pad > 0 {
		sc.giveBackLocked(st, pad)
	}
	if len(data) > 0 {
		if st.bodyClosed || st.inErr != nil {
			sc.giveBackLocked(nil, int64(len(data)))
		} else {
			st.in = append(st.in, data...)
		}
	}
	if f.StreamEnded() {
		sc.remoteEndLocked(st)
	}
	signal(st.inWake)
	return nil
}

// giveBackLocked returns n bytes of receive window: the connection's, and
// st's unless nil. Updates are sent once half a window is due.
func (sc *h2sconn) giveBackLocked(st *h2stream, n int64) {
	sc.recvUnacked += n
	if sc.recvUnacked >= h2ConnWindow/4 {
		sc.queueCtrlLocked(h2ctrl{typ: http2.FrameWindowUpdate, val: uint32(sc.recvUnacked)})
		sc.recvWin += sc.recvUnacked
		sc.recvUnacked = 0
	}
	if st == nil || st.remoteDone || st.closed {
		return
	}
	st.unacked += n
	if st.unacked >= h2StreamWindow/2 {
		sc.queueCtrlLocked(h2ctrl{typ: http2.FrameWindowUpdate, id: st.id, val: uint32(st.unacked)})
		st.recvWin += st.unacked
		st.unacked = 0
	}
}

func (sc *h2sconn) remoteEndLocked(st *h2stream) {
	st.remoteDone = true
	if st.inErr == nil {
		st.inErr = io.EOF
	}
	signal(st.inWake)
	if st.endSent {
		sc.closeStreamLocked(st)
	}
}

func (sc *h2sconn) onHeaders(f *http2.HeadersFrame, now time.Time) error {
	id := f.StreamID
	if id%2 == 0 {
		return http2.ConnectionError(http2.ErrCodeProtocol)
	}
	// A stream that depends on itself is the stream's error, but its header
	// block is decoded all the same (endBlock): the HPACK table is the
	// connection's, and skipping a block would decode the next requests
	// against a table the client does not have.
	sc.hselfdep = f.HasPriority() && f.Priority.StreamDep == id
	if len(f.HeaderBlockFragment()) == 0 {
		if err := sc.cheap(now); err != nil {
			return err
		}
	}
	sc.hblock = append(sc.hblock[:0], f.HeaderBlockFragment()...)
	sc.hstream, sc.hend = id, f.StreamEnded()
	if len(sc.hblock) > sc.maxBlock {
		sc.countReject("h2_header_block")
		return http2.ConnectionError(http2.ErrCodeEnhanceYourCalm)
	}
	if f.HeadersEnded() {
		return sc.endBlock()
	}
	return nil
}

func (sc *h2sconn) emit(hf hpack.HeaderField) {
	sc.fsize += int64(hf.Size())
	if sc.fsize > sc.maxList {
		sc.tooBig = true
		return
	}
	sc.fields = append(sc.fields, hf)
}

// endBlock decodes a complete header block: a new stream's request, or a
// stream's trailers.
func (sc *h2sconn) endBlock() error {
	sc.fields = sc.fields[:0]
	sc.fsize = 0
	sc.tooBig = false
	_, err := sc.hdec.Write(sc.hblock)
	if err == nil {
		err = sc.hdec.Close()
	}
	block := sc.hblock
	sc.hblock = sc.hblock[:0]
	if cap(block) > 64<<10 {
		sc.hblock = nil
	}
	if err != nil {
		return http2.ConnectionError(http2.ErrCodeCompression)
	}
	id := sc.hstream
	sc.mu.Lock()
	st := sc.streams[id]
	if sc.hselfdep {
		sc.maxID = max(sc.maxID, id)
		sc.mu.Unlock()
		return http2.StreamError{StreamID: id, Code: http2.ErrCodeProtocol}
	}
	if id <= sc.maxID {
		defer sc.mu.Unlock()
		if st == nil {
			if sc.resetByUsLocked(id) {
				// RFC 9113 section 5.1: frames on a stream this end
				// has reset are ignored (the client may have sent them
				// before the reset reached it); its block is decoded.
				return nil
			}
			return http2.ConnectionError(http2.ErrCodeStreamClosed)
		}
		if st.remoteDone {
			return http2.StreamError{StreamID: id, Code: http2.ErrCodeStreamClosed}
		}
		// trailers
		if !sc.hend {
			return http2.StreamError{StreamID: id, Code: http2.ErrCodeProtocol}
		}
		for _, hf := range sc.fields {
			if strings.HasPrefix(hf.Name, ":") || !validField(hf) {
				return http2.StreamError{StreamID: id, Code: http2.ErrCodeProtocol}
			}
		}
		if st.declCL >= 0 && st.got != st.declCL {
			return http2.StreamError{StreamID: id, Code: http2.ErrCodeProtocol}
		}
		if st.trailer != nil {
			for _, hf := range sc.fields {
				k := http.CanonicalHeaderKey(hf.Name)
				st.trailer[k] = append(st.trailer[k], hf.Value)
			}
		}
		sc.remoteEndLocked(st)
		return nil
	}
	sc.maxID = id
	if sc.goaway {
		sc.mu.Unlock()
		return nil
	}
	if sc.open >= h2MaxStreams || sc.running >= h2MaxHandlers {
		sc.countReject("h2_refused_stream")
		sc.queueCtrlLocked(h2ctrl{typ: http2.FrameRSTStream, id: id, code: http2.ErrCodeRefusedStream})
		sc.mu.Unlock()
		return nil
	}
	sc.mu.Unlock()
	req, st, err := sc.newRequest(id)
	if err != nil {
		return err
	}
	sc.mu.Lock()
	sc.streams[id] = st
	sc.open++
	if sc.hend {
		st.remoteDone = true
		st.inErr = io.EOF
	}
	if sc.tooBig {
		sc.mu.Unlock()
		sc.respondReject(st, errHeadTooLarge)
		return nil
	}
	// :authority (or Host) is checked as HTTP/1.1 checks Host: routing
	// by host and the upstream's Host must not see a value HTTP/1.1 would
	// have refused.
	if st.hostConflict || req.Host != "" && !validHost(req.Host) {
		sc.mu.Unlock()
		sc.respondReject(st, errBadHost)
		return nil
	}
	sc.running++
	st.handler = true
	sc.mu.Unlock()
	sc.handlers.Add(1)
	go sc.runHandler(st, req)
	return nil
}

func validField(hf hpack.HeaderField) bool {
	if !httpguts.ValidHeaderFieldValue(hf.Value) {
		return false
	}
	n := hf.Name
	if strings.HasPrefix(n, ":") {
		n = n[1:]
	}
	if !httpguts.ValidHeaderFieldName(n) {
		return false
	}
	for i := 0; i < len(n); i++ {
		if 'A' <= n[i] && n[i] <= 'Z' {
			return false
		}
	}
	return true
}

// newRequest checks the decoded fields of a new stream and makes its
// request; an error is the stream's (or the connection's).
func (sc *h2sconn) newRequest(id uint32) (*http.Request, *h2stream, error) {
	perr := http2.StreamError{StreamID: id, Code: http2.ErrCodeProtocol}
	var method, scheme, authority, path, protocol string
	var seen [5]bool
	regular := false
	hdr := make(http.Header, len(sc.fields))
	var cookies []string
	for _, hf := range sc.fields {
		if !validField(hf) {
			return nil, nil, perr
		}
		if strings.HasPrefix(hf.Name, ":") {
			if regular {
				return nil, nil, perr
			}
			var i int
			switch hf.Name {
			case ":method":
				i, method = 0, hf.Value
			case ":scheme":
				i, scheme = 1, hf.Value
			case ":authority":
				i, authority = 2, hf.Value
			case ":path":
				i, path = 3, hf.Value
			case ":protocol":
				i, protocol = 4, hf.Value
			default:
				return nil, nil, perr
			}
			if seen[i] {
				return nil, nil, perr
			}
			seen[i] = true
			continue
		}
		regular = true
		switch hf.Name {
		case "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade":
			return nil, nil, perr
		case "te":
			if hf.Value != "trailers" {
				return nil, nil, perr
			}
		case "cookie":
			cookies = append(cookies, hf.Value)
			continue
		}
		k := http.CanonicalHeaderKey(hf.Name)
		hdr[k] = append(hdr[k], hf.Value)
	}
	if len(cookies) > 0 {
		hdr["Cookie"] = []string{strings.Join(cookies, "; ")}
	}
	if method == "" || method != "CONNECT" && (scheme == "" || path == "") {
		return nil, nil, perr
	}
	if seen[4] {
		// Extended CONNECT (RFC 8441, h2ext.go): :protocol only on a
		// CONNECT, which then needs every pseudo-header a request has.
		if sc.c.opts.DisableExtendedConnect || !extendedConnectOK(method, scheme, authority, path, protocol) {
			return nil, nil, perr
		}
		hdr[h2ProtocolKey] = []string{protocol}
	}
	// A Content-Length that is not one number is the core's 400 (see
	// checkContentLength); one that the frames contradict is the
	// stream's error.
	cl := int64(-1)
	if v := hdr["Content-Length"]; len(v) > 0 && allSame(v) {
		if n, err := strconv.ParseInt(v[0], 10, 64); err == nil && n >= 0 {
			if sc.hend && n != 0 {
				return nil, nil, perr
			}
			cl = n
		}
	}
	hosts := hdr["Host"]
	conflict := len(hosts) > 1 || len(hosts) == 1 && authority != "" && !strings.EqualFold(hosts[0], authority)
	if authority == "" {
		authority = hdr.Get("Host")
	}
	delete(hdr, "Host")
	st := &h2stream{sc: sc, id: id, method: method, declCL: cl, recvWin: h2StreamWindow,
		inWake: make(chan struct{}, 1), room: make(chan struct{}, 1), hostConflict: conflict}
	st.ctx, st.cancel = context.WithCancel(sc.baseCtx)
	sc.mu.Lock()
	st.sendWin = sc.peerInit
	sc.mu.Unlock()
	st.rw.st = st
	st.rw.hdr = make(http.Header)
	req := &http.Request{
		Method:     method,
		Proto:      "HTTP/2.0",
		ProtoMajor: 2,
		Header:     hdr,
		Host:       authority,
		RequestURI: path,
		RemoteAddr: sc.remote,
		TLS:        sc.tls,
	}
	if path == "*" {
		req.URL = &url.URL{Path: "*"}
	} else if method == "CONNECT" && path == "" {
		req.URL = &url.URL{Host: authority}
		req.RequestURI = authority
	} else {
		u, err := url.ParseRequestURI(path)
		if err != nil {
			return nil, nil, perr
		}
		req.URL = u
	}
	if sc.hend {
		req.ContentLength = 0
		req.Body = http.NoBody
	} else {
		req.ContentLength = cl
		st.rw.reqBody = &h2reqBody{st: st}
		req.Body = st.rw.reqBody
		if v := hdr["Trailer"]; len(v) > 0 {
			st.trailer = make(http.Header)
			for _, line := range v {
				for _, k := range strings.Split(line, ",") {
					if k = http.CanonicalHeaderKey(strings.TrimSpace(k)); k != "" {
						st.trailer[k] = nil
					}
				}
			}
			req.Trailer = st.trailer
		}
	}
	// The stream's writes are bounded by write_timeout from here, moved on
	// by the stream's keeper while its handler runs; the timer is made
	// only when output waits for window (armWriteLocked), which most
	// streams never do.
	st.wdl = time.Now().Add(sc.c.opts.WriteTimeout)
	return req.WithContext(st.ctx), st, nil
}

func allSame(v []string) bool {
	for _, s := range v[1:] {
		if s != v[0] {
			return false
		}
	}
	return true
}

// respondReject answers a stream from the reader, without a handler.
func (sc *h2sconn) respondReject(st *h2stream, rerr *rejectError) {
	if sc.c.st != nil {
		sc.c.st.reject(rerr.status, rerr.reason)
	}
	h := http.Header{"Content-Type": {"text/plain; charset=utf-8"}}
	if sc.c.opts.ServerName != "" {
		h["Server"] = []string{sc.c.opts.ServerName}
	}
	body := rerr.text + "\n"
	h["Content-Length"] = []string{strconv.Itoa(len(body))}
	sc.mu.Lock()
	st.hdr = &h2head{status: rerr.status, kv: headerKV(h)}
	st.out = append(st.out, body...)
	st.outEnd = true
	sc.scheduleLocked(st)
	sc.mu.Unlock()
}

// runHandler runs a stream's handler on a goroutine of its own, through
// the core's admission (h2Handler), and ends its response.
func (sc *h2sconn) runHandler(st *h2stream, req *http.Request) {
	defer sc.handlerDone(st)
	sc.h.ServeHTTP(&st.rw, req)
}

func (sc *h2sconn) handlerDone(st *h2stream) {
	v := recover()
	if v != nil && v != http.ErrAbortHandler {
		sc.c.log.Error("handler panic", "remote_addr", sc.remote, "panic", v)
	}
	if v != nil {
		sc.mu.Lock()
		sc.resetLocked(st, http2.ErrCodeInternal, true)
		sc.mu.Unlock()
	} else {
		st.rw.end()
	}
	if b, ok := st.rw.body(); ok {
		b.Close()
	}
	sc.mu.Lock()
	st.handler = false
	if st.blocked && !st.closed {
		sc.armWriteLocked(st)
	}
	sc.running--
	sc.maybeCloseLocked()
	sc.kickLocked()
	sc.mu.Unlock()
	sc.handlers.Done()
}

// resetLocked ends st at once: its handler's reads and writes fail. With
// send, RST_STREAM with code goes to the client.
func (sc *h2sconn) resetLocked(st *h2stream, code http2.ErrCode, send bool) {
	if st.reset || st.closed && st.endSent {
		return
	}
	st.reset = true
	if st.inErr == nil || st.inErr == io.EOF && len(st.in) > 0 {
		st.inErr = errH2StreamClosed
	}
	sc.giveBackLocked(nil, int64(len(st.in)))
	st.in = nil
	st.out = nil
	st.hdr = nil
	if send {
		sc.queueCtrlLocked(h2ctrl{typ: http2.FrameRSTStream, id: st.id, code: code})
		sc.noteResetLocked(st.id)
	}
	st.cancel()
	signal(st.inWake)
	signal(st.room)
	sc.closeStreamLocked(st)
}

// noteResetLocked remembers that this end reset stream id (an error, or
// NO_ERROR after a response that came before the request's end), among
// the last len(resetIDs) such streams: a HEADERS the client sent on it
// before the reset reached it is ignored rather than a connection error.
func (sc *h2sconn) noteResetLocked(id uint32) {
	sc.resetIDs[sc.resetNext%len(sc.resetIDs)] = id
	sc.resetNext++
}

func (sc *h2sconn) resetByUsLocked(id uint32) bool {
	return id != 0 && slices.Contains(sc.resetIDs[:], id)
}

func (sc *h2sconn) closeStreamLocked(st *h2stream) {
	if st.closed {
		return
	}
	st.closed = true
	delete(sc.streams, st.id)
	sc.open--
	if sc.open == 0 {
		sc.lastActive = time.Now() // idle from here (checkIdle)
	}
	if st.wdlTimer != nil {
		st.wdlTimer.Stop()
	}
	if st.rdlTimer != nil {
		st.rdlTimer.Stop()
	}
	if !st.handler {
		st.cancel()
	}
	sc.maybeCloseLocked()
}

func (sc *h2sconn) scheduleLocked(st *h2stream) {
	if st.queued || st.closed && !st.hasOutput() {
		return
	}
	st.queued = true
	sc.ready = append(sc.ready, st)
	sc.kickLocked()
}

// kickLocked gets the writer going: wakes it, or starts it if it stopped
// because the connection had no stream (an idle connection keeps no writer
// goroutine).
func (sc *h2sconn) kickLocked() {
	switch {
	case sc.wfinal:
	case !sc.writing:
		sc.writing = true
		sc.writerFramerLocked()
		go sc.writeLoop()
	default:
		signal(sc.wake)
	}
}

// writerStopLocked ends the writer for good.
func (sc *h2sconn) writerStopLocked() {
	sc.writing = false
	if !sc.wfinal {
		sc.wfinal = true
		close(sc.wdone)
	}
}

func (st *h2stream) hasOutput() bool {
	return st.hdr != nil || len(st.infos) > 0 || len(st.out) > 0 || st.outEnd && !st.endSent
}

// armWriteLocked starts the timer of st's write deadline, once its output
// waits for window after its handler is done (while the handler runs, its
// keeper watches the writes).
func (sc *h2sconn) armWriteLocked(st *h2stream) {
	if st.wdlTimer != nil || st.wdl.IsZero() {
		return
	}
	st.wdlTimer = time.AfterFunc(max(time.Until(st.wdl), 0), st.onWriteTimeout)
}

func (st *h2stream) onWriteTimeout() {
	sc := st.sc
	sc.mu.Lock()
	defer sc.mu.Unlock()
	if st.closed || st.wdl.IsZero() {
		return
	}
	if left := time.Until(st.wdl); left > 0 {
		st.wdlTimer.Reset(left)
		return
	}
	if sc.c.st != nil && !st.handler {
		// A stream whose handler is done, held by a window that never
		// opens; while the handler runs, its keeper counts the reset.
		sc.c.st.streamResets.Add(1)
	}
	sc.resetLocked(st, http2.ErrCodeInternal, true)
}

func (st *h2stream) onReadTimeout() {
	sc := st.sc
	sc.mu.Lock()
	st.rdlPassed = true
	sc.mu.Unlock()
	signal(st.inWake)
}

// writeLoop is the connection's writer.
func (sc *h2sconn) writeLoop() {
	for {
		sc.mu.Lock()
		for len(sc.ctrl) == 0 && len(sc.ready) == 0 && !sc.closing && !sc.dead {
			if sc.wbuf.Cap() > 2*bufSize {
				sc.wbuf = bytes.Buffer{} // an idle connection keeps no batch buffer
			}
			if len(sc.streams) == 0 && sc.running == 0 {
				sc.writing = false // kickLocked starts another
				sc.pokeReaderLocked()
				sc.mu.Unlock()
				return
			}
			sc.mu.Unlock()
			<-sc.wake
			sc.mu.Lock()
		}
		if sc.running > 0 && !sc.closing {
			// Handlers are running that may be about to answer: let them,
			// so that their frames share this write (with one P, the
			// writer woken by the first would otherwise run before the
			// others and write once per response).
			sc.mu.Unlock()
			runtime.Gosched()
			sc.mu.Lock()
		}
		if sc.dead {
			sc.writerStopLocked()
			sc.mu.Unlock()
			return
		}
		sc.fillLocked()
		last := sc.closing && len(sc.ctrl) == 0
		sc.mu.Unlock()
		if sc.wbuf.Len() > 0 {
			sc.wdl.arm(sc.nc)
			n, err := sc.nc.Write(sc.wbuf.Bytes())
			if st := sc.c.st; st != nil {
				st.bytesWritten.Add(uint64(n))
			}
			sc.wbuf.Reset()
			if err != nil {
				sc.mu.Lock()
				sc.dead = true
				sc.writerStopLocked()
				sc.mu.Unlock()
				if isTimeout(err) {
					sc.cn.closeTimedOut() // a client that stopped reading: reset
				} else {
					sc.nc.Close()
				}
				return
			}
		}
		if last {
			sc.nc.SetReadDeadline(aLongTimeAgo)
			sc.mu.Lock()
			sc.writerStopLocked()
			sc.mu.Unlock()
			return
		}
	}
}

func (sc *h2sconn) fillLocked() {
	for i := range sc.ctrl {
		f := &sc.ctrl[i]
		switch f.typ {
		case http2.FrameSettings:
			if f.ack {
				sc.wfr.WriteSettingsAck()
			} else {
				set := [5]http2.Setting{
					{ID: http2.SettingMaxConcurrentStreams, Val: h2MaxStreams},
					{ID: http2.SettingMaxFrameSize, Val: 16 << 10},
					{ID: http2.SettingHeaderTableSize, Val: 4096},
					{ID: http2.SettingMaxHeaderListSize, Val: uint32(min(sc.maxList, 1<<31-1))},
					{ID: http2.SettingEnableConnectProtocol, Val: 1}, // h2ext.go
				}
				n := len(set)
				if sc.c.opts.DisableExtendedConnect {
					n--
				}
				sc.wfr.WriteSettings(set[:n]...)
			}
		case http2.FramePing:
			sc.wfr.WritePing(f.ack, f.data)
		case http2.FrameWindowUpdate:
			sc.wfr.WriteWindowUpdate(f.id, f.val)
		case http2.FrameRSTStream:
			sc.wfr.WriteRSTStream(f.id, f.code)
		case http2.FrameGoAway:
			// A later GOAWAY (a connection error after a graceful one)
			// never raises the last stream id (RFC 9113 section 6.8):
			// the streams opened after the first were not processed.
			if sc.goawayOut {
				f.id = min(f.id, sc.goawayLast)
			}
			sc.goawayOut, sc.goawayLast = true, f.id
			sc.wfr.WriteGoAway(f.id, f.code, nil)
		}
	}
	sc.ctrl = sc.ctrl[:0]
	if sc.closing {
		return // a connection error, or nothing is left
	}
	for len(sc.ready) > 0 && sc.wbuf.Len() < h2WriteBatch {
		keep := sc.ready[:0]
		progress := false
		for _, st := range sc.ready {
			more, did := sc.writeStreamLocked(st)
			progress = progress || did
			if more {
				keep = append(keep, st)
			} else {
				st.queued = false
			}
		}
		for i := len(keep); i < len(sc.ready); i++ {
			sc.ready[i] = nil
		}
		sc.ready = keep
		if !progress {
			break
		}
	}
}

// writeStreamLocked writes st's next frames: its pending heads, one DATA
// frame within the windows, and its end. more: it has more to send now.
func (sc *h2sconn) writeStreamLocked(st *h2stream) (more, did bool) {
	if st.reset {
		return false, false
	}
	for _, h := range st.infos {
		sc.writeHeadLocked(st, h)
		did = true
	}
	st.infos = st.infos[:0]
	if st.hdr != nil {
		h := st.hdr
		st.hdr = nil
		h.end = st.outEnd && len(st.out) == 0 && st.trailers == nil
		sc.writeHeadLocked(st, *h)
		did = true
		if h.end {
			sc.endSentLocked(st)
			return false, true
		}
	}
	if len(st.out) > 0 {
		n := min(len(st.out), sc.peerFrame, int(min(sc.sendWin, st.sendWin)))
		if n <= 0 {
			st.blocked = true
			if !st.handler {
				sc.armWriteLocked(st)
			}
			return false, did
		}
		st.blocked = false
		end := st.outEnd && n == len(st.out) && st.trailers == nil
		sc.wfr.WriteData(st.id, end, st.out[:n])
		sc.sendWin -= int64(n)
		st.sendWin -= int64(n)
		st.out = st.out[n:]
		if len(st.out) == 0 {
			st.out = nil
		}
		signal(st.room)
		did = true
		if end {
			sc.endSentLocked(st)
			return false, true
		}
	}
	if len(st.out) == 0 && st.outEnd && !st.endSent {
		if st.trailers != nil {
			sc.writeHeadLocked(st, h2head{kv: headerKV(st.trailers), end: true})
		} else {
			sc.wfr.WriteData(st.id, true, nil)
		}
		sc.endSentLocked(st)
		return false, true
	}
	return len(st.out) > 0 && sc.sendWin > 0 && st.sendWin > 0, did
}

func (sc *h2sconn) endSentLocked(st *h2stream) {
	st.endSent = true
	if !st.remoteDone {
		// The request's rest is not wanted (RFC 9113, 8.1).
		sc.wfr.WriteRSTStream(st.id, http2.ErrCodeNo)
		sc.noteResetLocked(st.id)
		st.remoteDone = true
		st.inErr = errH2StreamClosed
		sc.giveBackLocked(nil, int64(len(st.in)))
		st.in = nil
		signal(st.inWake) // a read still blocked (a full-duplex handler's) ends
	}
	sc.closeStreamLocked(st)
}

// writeHeadLocked encodes a head (status 0: trailers) as HEADERS and
// CONTINUATION frames.
func (sc *h2sconn) writeHeadLocked(st *h2stream, h h2head) {
	sc.hbuf.Reset()
	if sc.tableChange {
		sc.henc.SetMaxDynamicTableSizeLimit(sc.tableSize)
		sc.tableChange = false
	}
	if h.status != 0 {
		sc.henc.WriteField(hpack.HeaderField{Name: ":status", Value: statusText(h.status)})
	}
	for _, f := range h.kv {
		k, vs := f.k, f.v
		lk := lowerHeader(k)
		switch lk {
		case "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade":
			continue
		}
		for _, v := range vs {
			if !httpguts.ValidHeaderFieldValue(v) {
				continue
			}
			sc.henc.WriteField(hpack.HeaderField{Name: lk, Value: v})
		}
	}
	block := sc.hbuf.Bytes()
	max := sc.peerFrame
	first := true
	for first || len(block) > 0 {
		frag := block[:min(len(block), max)]
		block = block[len(frag):]
		if first {
			sc.wfr.WriteHeaders(http2.HeadersFrameParam{StreamID: st.id, BlockFragment: frag, EndStream: h.end, EndHeaders: len(block) == 0})
			first = false
		} else {
			sc.wfr.WriteContinuation(st.id, len(block) == 0, frag)
		}
	}
}

func statusText(code int) string {
	switch code {
	case 200:
		return "200"
	case 204:
		return "204"
	case 304:
		return "304"
	case 404:
		return "404"
	}
	return strconv.Itoa(code)
}

// lowerHeader is the h2 form of a canonical header key.
func lowerHeader(k string) string {
	for i := 0; i < len(k); i++ {
		if 'A' <= k[i] && k[i] <= 'Z' {
			return strings.ToLower(k)
		}
	}
	return k
}

// h2reqBody is a stream's request body as its handler reads it.
type h2reqBody struct {
	st *h2stream
}

func (b *h2reqBody) Read(p []byte) (int, error) {
	st := b.st
	sc := st.sc
	sc.mu.Lock()
	for len(st.in) == 0 && st.inErr == nil && !st.rdlPassed {
		sc.mu.Unlock()
		<-st.inWake
		sc.mu.Lock()
	}
	if len(st.in) == 0 {
		err := st.inErr
		if st.rdlPassed && err == nil {
			err = os.ErrDeadlineExceeded
		}
		sc.mu.Unlock()
		if err == errH2StreamClosed {
			err = errors.New("http2: stream closed")
		}
		return 0, err
	}
	n := copy(p, st.in)
	st.in = st.in[n:]
	if len(st.in) == 0 {
		st.in = st.in[:0:0]
	}
	sc.giveBackLocked(st, int64(n))
	sc.mu.Unlock()
	return n, nil
}

func (b *h2reqBody) Close() error {
	st := b.st
	sc := st.sc
	sc.mu.Lock()
	if !st.bodyClosed {
		st.bodyClosed = true
		sc.giveBackLocked(nil, int64(len(st.in)))
		st.in = nil
	}
	sc.mu.Unlock()
	return nil
}

// h2rw is a stream's http.ResponseWriter. Its handler calls it from one
// goroutine; what it hands to the writer goes under the connection's mutex.
type h2rw struct {
	st          *h2stream
	hdr         http.Header
	status      int
	committed   bool
	done        bool
	buf         []byte
	trailerKeys []string
	reqBody     *h2reqBody
}

func (w *h2rw) body() (*h2reqBody, bool) { return w.reqBody, w.reqBody != nil }

func (w *h2rw) Header() http.Header { return w.hdr }

func (w *h2rw) WriteHeader(code int) {
	if w.committed || w.status != 0 {
		return
	}
	if code < 100 || code > 999 {
		panic("invalid WriteHeader code " + strconv.Itoa(code))
	}
	if code < 200 {
		if code == 101 {
			return
		}
		sc := w.st.sc
		h := w.hdr.Clone()
		sc.mu.Lock()
		if !w.st.reset {
			w.st.infos = append(w.st.infos, h2head{status: code, kv: headerKV(h)})
			sc.scheduleLocked(w.st)
		}
		sc.mu.Unlock()
		return
	}
	w.status = code
}

func (w *h2rw) bodyAllowed() bool {
	return w.st.method != "HEAD" && w.status != 204 && w.status != 304
}

func (w *h2rw) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = 200
	}
	if !w.bodyAllowed() {
		if w.st.method == "HEAD" {
			return len(p), nil
		}
		return 0, http.ErrBodyNotAllowed
	}
	if !w.committed {
		if len(w.buf)+len(p) <= h2HeadBuf {
			w.buf = append(w.buf, p...)
			return len(p), nil
		}
		if err := w.commit(false); err != nil {
			return 0, err
		}
	}
	return len(p), w.send(p)
}

func (w *h2rw) WriteString(s string) (int, error) {
	if !w.committed && len(w.buf)+len(s) <= h2HeadBuf && w.status != 0 && w.bodyAllowed() {
		w.buf = append(w.buf, s...)
		return len(s), nil
	}
	return w.Write([]byte(s))
}

// send hands p to the writer, waiting while the stream is h2OutBuf ahead.
func (w *h2rw) send(p []byte) error {
	st := w.st
	sc := st.sc
	sc.mu.Lock()
	defer sc.mu.Unlock()
	for len(p) > 0 {
		if st.reset || sc.dead {
			return errH2StreamClosed
		}
		room := h2OutBuf - len(st.out)
		if room <= 0 {
			sc.mu.Unlock()
			<-st.room
			sc.mu.Lock()
			continue
		}
		n := min(room, len(p))
		st.out = append(st.out, p[:n]...)
		p = p[n:]
		sc.scheduleLocked(st)
	}
	return nil
}

// commit sends the response head, with what was written so far; end: the
// handler is done and this is the whole response.
func (w *h2rw) commit(end bool) error {
	w.committed = true
	if w.status == 0 {
		w.status = 200
	}
	// A snapshot of the fields (not of their values, which the handler
	// does not change once sent), cheaper than a copy of the map.
	kv := make([]h2kv, 0, len(w.hdr)+3)
	var hasDate, hasCT, hasCL, encoded, trailerPrefix, closeConn bool
	// A 2xx to a CONNECT opens a tunnel: its bytes are no representation,
	// and RFC 9110 9.3.6 forbids a Content-Length on it.
	tunnel := w.st.method == "CONNECT" && w.status >= 200 && w.status < 300
	for k, v := range w.hdr {
		switch {
		case strings.HasPrefix(k, http.TrailerPrefix):
			trailerPrefix = true
			continue
		case k == "Connection":
			// Not a field h2 carries (the encoder leaves it out), but a
			// handler's "close" means here what it means on HTTP/1.1
			// (response.go), and in x/net's server: the connection takes
			// no more requests. It gets GOAWAY below; its streams in
			// progress, this one included, finish. policy_quota's refusal
			// of a connection over its limit relies on it.
			for _, s := range v {
				if strings.Contains(strings.ToLower(s), "close") {
					closeConn = true
				}
			}
		case k == "Date":
			hasDate = true
		case k == "Content-Type":
			hasCT = true
		case k == "Content-Length":
			if tunnel {
				continue
			}
			hasCL = true
		case k == "Content-Encoding":
			encoded = len(v) > 0 && v[0] != ""
		case k == "Trailer":
			for _, line := range v {
				for _, t := range strings.Split(line, ",") {
					if t = http.CanonicalHeaderKey(strings.TrimSpace(t)); t != "" {
						w.trailerKeys = append(w.trailerKeys, t)
					}
				}
			}
		}
		kv = append(kv, h2kv{k, v})
	}
	if !hasDate {
		kv = append(kv, h2kv{"Date", []string{w.st.sc.date()}})
	}
	allowed := w.status != 204 && w.status != 304 && w.status >= 200
	if !hasCT && allowed && len(w.buf) > 0 && !encoded && !tunnel {
		kv = append(kv, h2kv{"Content-Type", []string{http.DetectContentType(w.buf)}})
	}
	if end && allowed && !tunnel && len(w.trailerKeys) == 0 && !trailerPrefix && !hasCL && (len(w.buf) > 0 || w.st.method != "HEAD") {
		kv = append(kv, h2kv{"Content-Length", []string{strconv.Itoa(len(w.buf))}})
	}
	st := w.st
	sc := st.sc
	sc.mu.Lock()
	if st.reset || sc.dead {
		sc.mu.Unlock()
		return errH2StreamClosed
	}
	st.hdr = &h2head{status: w.status, kv: kv}
	if len(st.out) == 0 {
		st.out, w.buf = w.buf, nil // handed over: the writer lets it go
	} else {
		st.out = append(st.out, w.buf...)
		w.buf = w.buf[:0]
	}
	if end {
		st.outEnd = true
		st.trailers = w.trailers()
	}
	sc.scheduleLocked(st)
	sc.mu.Unlock()
	if closeConn {
		sc.shutdown()
	}
	return nil
}

// date is the Date field's value, made once a second per connection.
func (sc *h2sconn) date() string {
	now := time.Now().Unix()
	sc.dateMu.Lock()
	defer sc.dateMu.Unlock()
	if now != sc.dateSec {
		sc.dateSec = now
		sc.dateText = string(sc.c.appendDate(nil))
	}
	return sc.dateText
}

// trailers collects the trailers the handler set: declared ones and
// http.TrailerPrefix ones. Nil: none.
func (w *h2rw) trailers() http.Header {
	var t http.Header
	add := func(k string, v []string) {
		if len(v) == 0 {
			return
		}
		if t == nil {
			t = make(http.Header)
		}
		t[http.CanonicalHeaderKey(k)] = v
	}
	for _, k := range w.trailerKeys {
		add(k, w.hdr[k])
	}
	for k, v := range w.hdr {
		if strings.HasPrefix(k, http.TrailerPrefix) {
			add(strings.TrimPrefix(k, http.TrailerPrefix), v)
		}
	}
	return t
}

func (w *h2rw) Flush() {
	if !w.committed {
		w.commit(false)
	}
}

func (w *h2rw) FlushError() error {
	if !w.committed {
		return w.commit(false)
	}
	return nil
}

// end finishes the response after the handler returned.
func (w *h2rw) end() {
	if w.done {
		return
	}
	w.done = true
	if !w.committed {
		w.commit(true)
		return
	}
	st := w.st
	sc := st.sc
	sc.mu.Lock()
	if !st.reset {
		st.outEnd = true
		st.trailers = w.trailers()
		sc.scheduleLocked(st)
	}
	sc.mu.Unlock()
}

// SetWriteDeadline bounds the stream's writes: when it passes, the stream
// is reset. A zero time removes the bound.
func (w *h2rw) SetWriteDeadline(t time.Time) error {
	st := w.st
	sc := st.sc
	sc.mu.Lock()
	defer sc.mu.Unlock()
	if st.closed {
		return nil
	}
	st.wdl = t
	if t.IsZero() {
		if st.wdlTimer != nil {
			st.wdlTimer.Stop()
		}
		return nil
	}
	d := time.Until(t)
	if d <= 0 {
		sc.resetLocked(st, http2.ErrCodeInternal, true)
		return nil
	}
	if st.wdlTimer == nil {
		st.wdlTimer = time.AfterFunc(d, st.onWriteTimeout)
	} else {
		st.wdlTimer.Reset(d)
	}
	return nil
}

// SetReadDeadline bounds the stream's body reads: past it, a read fails
// with os.ErrDeadlineExceeded.
func (w *h2rw) SetReadDeadline(t time.Time) error {
	st := w.st
	sc := st.sc
	sc.mu.Lock()
	defer sc.mu.Unlock()
	if st.closed && st.remoteDone {
		return nil
	}
	st.rdlPassed = false
	if st.rdlTimer != nil {
		st.rdlTimer.Stop()
	}
	if t.IsZero() {
		return nil
	}
	d := time.Until(t)
	if d <= 0 {
		st.rdlPassed = true
		signal(st.inWake)
		return nil
	}
	if st.rdlTimer == nil {
		st.rdlTimer = time.AfterFunc(d, st.onReadTimeout)
	} else {
		st.rdlTimer.Reset(d)
	}
	return nil
}
