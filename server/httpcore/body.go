package httpcore

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// body is a request body: Content-Length or chunked framing over the
// connection's reader, with the size limit, the minimum upload rate and
// Expect: 100-continue applied as the handler reads. A framing or limit
// error is remembered (rerr) so that, if the handler answers nothing of its
// own, the client still gets the right 400/408/413 and not the handler's 500
// or the reverse proxy's 502.
//
// A body may be read by a goroutine the handler started and left behind: a
// reverse proxy's transport goes on writing the request to a backend that
// has already answered. mu serializes every read with the core, which takes
// the body over when the handler returns (see conn.takeBody), so such a
// goroutine can never touch the connection's buffers once they are reused.
type body struct {
	mu          sync.Mutex  // held by a read, and by the core from the handler's return on
	interrupted atomic.Bool // the core cut a left-behind read short

	cn      *conn // nil once the request is finished: reads then fail
	chunked bool
	left    int64 // bytes left: of the body (Content-Length) or the current chunk
	limit   int64 // max_request_body_size; 0: none
	n       int64 // payload bytes read so far
	start   time.Time
	extra   int         // chunk-size line and extension bytes so far
	inChunk bool        // chunked: inside chunk data (left bytes to go)
	done    bool        // EOF reached
	closed  atomic.Bool // handler called Close (without waiting for a read in progress)
	err     error       // sticky error handed to the handler
	rerr    *rejectError

	expectContinue bool
	continueSent   bool

	trailer *http.Header // where trailers go (the request's Trailer field)
}

// maxChunkOverhead bounds chunk-size lines and extensions across one body,
// so a stream of tiny chunks with long extensions cannot make us work for
// free.
const maxChunkOverhead = 64 << 10

// maxDrain is how much of a request body the handler left unread we read
// and discard to keep the connection alive; past it we close instead.
const maxDrain = 256 << 10

var errBodyAfterClose = errors.New("httpcore: read on closed request body")

func (b *body) fail(r *rejectError, err error) (int, error) {
	b.rerr = r
	if err == nil {
		err = r
	}
	b.err = err
	return 0, err
}

func (b *body) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.read(p)
}

// read is Read with b.mu held.
func (b *body) read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	if b.closed.Load() {
		return 0, errBodyAfterClose
	}
	if b.done {
		return 0, io.EOF
	}
	cn := b.cn
	if cn == nil || cn.bufs == nil {
		return 0, errBodyAfterClose
	}
	if len(p) == 0 {
		return 0, nil
	}
	if b.expectContinue {
		if err := b.sendContinue(cn); err != nil {
			b.err = err
			return 0, err
		}
	}
	if b.start.IsZero() {
		b.start = time.Now()
	}
	br := cn.bufs.br
	if !b.chunked {
		if b.left <= 0 {
			b.done = true
			return 0, io.EOF
		}
		if int64(len(p)) > b.left {
			p = p[:b.left]
		}
		b.deadline(br, len(p))
		n, err := br.Read(p)
		b.left -= int64(n)
		b.n += int64(n)
		if b.left == 0 {
			b.done = true
			if err == nil {
				err = io.EOF
			}
			return n, err
		}
		if err != nil {
			_, err = b.netErr(err)
			return n, err
		}
		return n, nil
	}
	for !b.inChunk {
		if err := b.chunkHeader(br); err != nil {
			return 0, err
		}
		if b.done {
			return 0, io.EOF
		}
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	b.deadline(br, len(p))
	n, err := br.Read(p)
	b.left -= int64(n)
	b.n += int64(n)
	if err != nil {
		_, err = b.netErr(err)
		return n, err
	}
	if b.left == 0 {
		b.inChunk = false
		// CRLF must follow every chunk's data.
		b.deadline(br, 2)
		c1, err1 := br.ReadByte()
		c2, err2 := br.ReadByte()
		if err1 != nil || err2 != nil {
			_, err = b.netErr(errors.Join(err1, err2))
			return n, err
		}
		if c1 != '\r' || c2 != '\n' {
			_, err = b.fail(errBadChunk, nil)
			return n, err
		}
	}
	return n, nil
}

// chunkHeader reads one chunk-size line (and the trailer section after the
// last chunk).
func (b *body) chunkHeader(br *bufio.Reader) error {
	b.deadline(br, 64)
	line, err := br.ReadSlice('\n')
	if err != nil {
		if err == bufio.ErrBufferFull {
			_, err = b.fail(errBadChunk, nil)
			return err
		}
		_, err = b.netErr(err)
		return err
	}
	b.extra += len(line)
	if b.extra > maxChunkOverhead {
		_, err = b.fail(errBadChunk, nil)
		return err
	}
	size, ok := parseChunkLine(line)
	if !ok {
		_, err = b.fail(errBadChunk, nil)
		return err
	}
	if size < 0 || (b.limit > 0 && size > b.limit-b.n) {
		_, err = b.fail(errBodyTooLarge, &http.MaxBytesError{Limit: b.limit})
		return err
	}
	if size == 0 {
		return b.readTrailer(br)
	}
	b.left = size
	b.inChunk = true
	return nil
}

// parseChunkLine parses chunk-size [ chunk-ext ] CRLF (RFC 9112 section
// 7.1). It returns -1 for a size too large for int64 (a 413, not a 400).
func parseChunkLine(line []byte) (int64, bool) {
	if len(line) < 3 || line[len(line)-2] != '\r' {
		return 0, false
	}
	line = line[:len(line)-2]
	var size int64
	i := 0
	overflow := false
	for ; i < len(line); i++ {
		d, ok := unhex(line[i])
		if !ok {
			break
		}
		if size > (1<<63-1-int64(d))/16 {
			overflow = true
		} else {
			size = size*16 + int64(d)
		}
	}
	if i == 0 {
		return 0, false
	}
	ext := line[i:]
	// chunk-ext = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )
	j := 0
	for j < len(ext) && (ext[j] == ' ' || ext[j] == '\t') {
		j++
	}
	if j < len(ext) && ext[j] != ';' {
		return 0, false
	}
	if j == len(ext) && j > 0 {
		return 0, false // trailing whitespace without an extension
	}
	for _, c := range ext[j:] {
		if (c < 0x20 && c != '\t') || c == 0x7f {
			return 0, false
		}
	}
	if overflow {
		return -1, true
	}
	return size, true
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// readTrailer reads the trailer section under the request-head size limit.
// Trailers go to Request.Trailer only, never into the header map: a field
// sent after the body must not pass for one the proxy in front checked.
func (b *body) readTrailer(br *bufio.Reader) error {
	limit := b.cn.core.opts.MaxRequestHeaderSize
	var total int64
	var tr http.Header
	for {
		b.deadline(br, 64)
		line, err := br.ReadSlice('\n')
		total += int64(len(line))
		if total > limit {
			_, err = b.fail(errTrailerTooLarge, nil)
			return err
		}
		if err != nil {
			if err == bufio.ErrBufferFull {
				_, err = b.fail(errTrailerTooLarge, nil)
				return err
			}
			_, err = b.netErr(err)
			return err
		}
		if len(line) < 2 || line[len(line)-2] != '\r' {
			_, err = b.fail(errBadTrailer, nil)
			return err
		}
		ln := line[:len(line)-2]
		if len(ln) == 0 {
			break
		}
		k, v, ok := parseFieldLine(ln)
		if !ok {
			_, err = b.fail(errBadTrailer, nil)
			return err
		}
		if tr == nil {
			tr = make(http.Header)
		}
		tr[k] = append(tr[k], v)
	}
	if tr != nil && b.trailer != nil {
		*b.trailer = tr
	}
	b.done = true
	return nil
}

// parseFieldLine validates one trailer field line (without CRLF) by the
// head's rules and returns its canonical name and trimmed value.
func parseFieldLine(ln []byte) (string, string, bool) {
	colon, v0, v1, err := splitField(ln)
	if err != nil {
		return "", "", false
	}
	return string(ln[:colon]), string(ln[v0:v1]), true
}

// sendContinue invites the client to send the body, once, when the body is
// first read: unless the response has started (the client then learns from
// it). The reader may be a goroutine of the handler's running beside it, so
// this is ordered with the response head by cn.wmu.
func (b *body) sendContinue(cn *conn) error {
	cn.wmu.Lock()
	defer cn.wmu.Unlock()
	if b.continueSent {
		return nil
	}
	b.continueSent = true
	if cn.resp.committed {
		return nil
	}
	bw := cn.bufs.bw
	bw.WriteString("HTTP/1.1 100 Continue\r\n\r\n")
	return bw.Flush()
}

// deadline sets the read deadline before a read that will reach the
// network: the socket_timeout as a grace period, plus the time the bytes
// read so far and the next want bytes take at min_request_body_rate. A
// client slower than that is cut off with a 408 (slow POST).
//
// Once the core is taking the body over (takeBody) its past deadline must
// win: takeBody sets interrupted before its deadline, so checking after
// setting ours catches every order of the two.
func (b *body) deadline(br *bufio.Reader, want int) {
	if br.Buffered() > 0 {
		return
	}
	o := &b.cn.core.opts
	d := o.SocketTimeout
	if o.MinRequestBodyRate > 0 {
		bytes := b.n + int64(want) + int64(br.Size())
		d += time.Duration(float64(bytes) / float64(o.MinRequestBodyRate) * float64(time.Second))
		b.cn.nc.SetReadDeadline(b.start.Add(d))
	} else {
		b.cn.nc.SetReadDeadline(time.Now().Add(d))
	}
	if b.interrupted.Load() {
		b.cn.nc.SetReadDeadline(aLongTimeAgo)
	}
}

// netErr classifies a read error in the middle of a body.
func (b *body) netErr(err error) (int, error) {
	var ne net.Error
	switch {
	case b.interrupted.Load():
		// The core took the body over: the client did nothing wrong.
		b.err = errBodyAfterClose
		return 0, b.err
	case errors.Is(err, os.ErrDeadlineExceeded) || errors.As(err, &ne) && ne.Timeout():
		return b.fail(errBodyTimeout, nil)
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		return b.fail(errBodyShort, io.ErrUnexpectedEOF)
	}
	b.err = err
	return 0, err
}

// Close marks the body closed. The rest is drained (or the connection
// closed) by the core once the handler returns.
//
// It does not take mu: a handler's Close must not wait for a read another
// of its goroutines has in progress (that read may wait for the client for
// as long as socket_timeout), or the handler's own answer would wait too.
func (b *body) Close() error {
	b.closed.Store(true)
	return nil
}

// drain reads and discards what the handler left, up to maxDrain, so the
// connection can carry the next request. It reports whether the connection
// can be kept. b.mu is held (the core has taken the body over).
func (b *body) drain() bool {
	if b.done {
		return true
	}
	if b.err != nil {
		return false
	}
	if b.expectContinue && !b.continueSent {
		return false // the client is still waiting for our go-ahead
	}
	if !b.chunked && b.left > maxDrain {
		return false
	}
	b.closed.Store(false)
	n, err := io.CopyN(io.Discard, lockedBody{b}, maxDrain+1)
	return err == io.EOF && n <= maxDrain
}

// release ends the core's hold on the body (see conn.takeBody): the request
// is over, and any read, one waiting for mu included, now fails.
func (b *body) release() {
	b.cn = nil
	b.mu.Unlock()
}

// lockedBody reads a body whose mu the caller holds.
type lockedBody struct{ b *body }

func (l lockedBody) Read(p []byte) (int, error) { return l.b.read(p) }
