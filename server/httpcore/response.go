package httpcore

import (
	"bufio"
	"errors"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// response is the http.ResponseWriter of one HTTP/1.x exchange.
//
// The body is buffered (up to outBufSize) before anything is sent. If the
// handler finishes within that, the response gets an exact Content-Length
// and goes out in one write; otherwise the head is committed with chunked
// framing (HTTP/1.1) or close-delimited (HTTP/1.0). Until commit the core
// can still replace the response, which is how a body error found while
// the handler read turns into 400/413 instead of the handler's 500.
type response struct {
	cn  *conn
	req *http.Request
	hdr http.Header
	bd  *body // the request body as the core made it (a handler may wrap r.Body)

	bodyHeld bool // the core has taken bd over (its mu is held): the handler returned

	status      int
	wroteHeader bool // the handler chose a status (WriteHeader or first Write)
	committed   bool // the head is in the connection's writer
	chunked     bool
	closeAfter  bool
	isHead      bool
	proto11     bool  // HTTP/1.1 framing allowed (request and protocol_version)
	declared    int64 // Content-Length the handler set; -1 none
	written     int64 // body bytes accepted from the handler
	err         error // sticky write error
}

func (w *response) init(cn *conn, r *http.Request) {
	*w = response{cn: cn, req: r, declared: -1, isHead: r.Method == "HEAD"}
	w.proto11 = r.ProtoMinor == 1 && cn.core.proto == "HTTP/1.1"
	w.closeAfter = r.Close
}

// Header returns the response header map. The map is the connection's,
// cleared and reused for each request: a ResponseWriter (and so its
// Header) must not be used after ServeHTTP returns.
func (w *response) Header() http.Header {
	if w.hdr == nil {
		if w.cn.bufs != nil {
			w.hdr = w.cn.bufs.hdr
		} else {
			w.hdr = make(http.Header)
		}
	}
	return w.hdr
}

func bodyAllowedForStatus(status int) bool {
	switch {
	case status >= 100 && status <= 199:
		return false
	case status == 204, status == 304:
		return false
	}
	return true
}

func (w *response) WriteHeader(code int) {
	if w.wroteHeader || w.cn.hijacked {
		if w.wroteHeader {
			w.cn.core.log.Debug("superfluous WriteHeader call", "remote_addr", w.cn.remote, "status", code)
		}
		return
	}
	if code < 100 || code > 999 {
		panic("httpcore: invalid WriteHeader code " + strconv.Itoa(code))
	}
	if code >= 100 && code <= 199 && code != http.StatusSwitchingProtocols {
		w.writeInformational(code)
		return
	}
	w.wroteHeader = true
	w.status = code
	if cl := w.hdr.Get("Content-Length"); cl != "" {
		n, rerr := parseContentLength(cl)
		if rerr == nil {
			w.declared = n
		} else {
			w.cn.core.log.Warn("handler set an invalid Content-Length; ignored", "remote_addr", w.cn.remote, "value", cl)
			w.hdr.Del("Content-Length")
		}
	}
}

// writeInformational sends a 1xx (103 Early Hints and the like) at once.
// HTTP/1.0 clients do not understand 1xx: they get nothing.
func (w *response) writeInformational(code int) {
	w.cn.wmu.Lock()
	defer w.cn.wmu.Unlock()
	if !w.proto11 || w.committed {
		return
	}
	if code == http.StatusContinue {
		if b := w.bd; b != nil && b.expectContinue {
			b.continueSent = true
		}
	}
	bw := w.cn.bufs.bw
	bw.WriteString("HTTP/1.1 ")
	writeStatus(bw, code)
	w.writeFields(bw)
	bw.WriteString("\r\n")
	if err := bw.Flush(); err != nil {
		w.err = err
	}
}

func (w *response) Write(p []byte) (int, error) {
	if w.cn.hijacked {
		return 0, http.ErrHijacked
	}
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if w.err != nil {
		return 0, w.err
	}
	if !bodyAllowedForStatus(w.status) {
		return 0, http.ErrBodyNotAllowed
	}
	n := len(p)
	var over error
	if w.declared >= 0 && w.written+int64(n) > w.declared {
		n = int(w.declared - w.written)
		p = p[:n]
		over = http.ErrContentLength
	}
	w.written += int64(n)
	if w.isHead {
		return n, over // counted for Content-Length, never sent
	}
	if !w.committed {
		out := w.cn.bufs.out
		if len(out)+n <= cap(out) {
			w.cn.bufs.out = append(out, p...)
			return n, over
		}
		w.commit(false)
		if w.err != nil {
			return 0, w.err
		}
	}
	if err := w.writeBody(p); err != nil {
		return 0, err
	}
	return n, over
}

// WriteString (io.StringWriter) buffers s without converting it when it
// fits before the head is committed, the common case of a small answer.
func (w *response) WriteString(s string) (int, error) {
	if w.wroteHeader && !w.committed && !w.isHead && w.err == nil && !w.cn.hijacked &&
		w.declared < 0 && bodyAllowedForStatus(w.status) {
		if out := w.cn.bufs.out; len(out)+len(s) <= cap(out) {
			w.cn.bufs.out = append(out, s...)
			w.written += int64(len(s))
			return len(s), nil
		}
	}
	return w.Write([]byte(s))
}

// writeBody sends p in the committed framing.
func (w *response) writeBody(p []byte) error {
	if len(p) == 0 {
		return nil
	}
	bw := w.cn.bufs.bw
	if w.chunked {
		bw.Write(strconv.AppendUint(bw.AvailableBuffer(), uint64(len(p)), 16))
		bw.WriteString("\r\n")
		bw.Write(p)
		_, err := bw.WriteString("\r\n")
		if err != nil {
			w.err = err
		}
		return err
	}
	if _, err := bw.Write(p); err != nil {
		w.err = err
		return err
	}
	return nil
}

// commit writes the head. final says the handler has returned, so the
// buffered body is all there is and its length is known.
func (w *response) commit(final bool) {
	w.cn.wmu.Lock()
	defer w.cn.wmu.Unlock()
	w.committed = true
	c := w.cn.core
	hdr := w.Header()
	out := w.cn.bufs.out
	allowed := bodyAllowedForStatus(w.status)

	// Framing. The handler's own Transfer-Encoding is ignored: framing is ours.
	delete(hdr, "Transfer-Encoding")
	var cl int64 = -1
	switch {
	case !allowed:
		if w.status != http.StatusNotModified {
			delete(hdr, "Content-Length")
		}
	case w.declared >= 0:
		cl = w.declared
	case w.proto11 && !w.isHead && len(hdr["Trailer"]) > 0:
		w.chunked = true // trailers need chunked framing even when the length is known
	case final && (!w.isHead || w.written > 0):
		cl = w.written
	case w.isHead:
		// unknown length; nothing to frame
	case w.proto11:
		w.chunked = true
	default:
		w.closeAfter = true // HTTP/1.0: the end of the body is the close
	}
	if v, ok := hdr["Connection"]; ok {
		for _, s := range v {
			if strings.Contains(strings.ToLower(s), "close") {
				w.closeAfter = true
			}
		}
		delete(hdr, "Connection")
	}
	if c.shutting.Load() || w.cn.revoked.Load() {
		w.closeAfter = true
	}
	if b := w.bd; b != nil {
		// Decide now, while Connection: close can still be said, whether
		// the unread rest of the body will be drained or the connection
		// closed (as net/http does). A body some other goroutine is reading
		// right now (a proxy streaming the upload on) cannot be judged:
		// close.
		if w.bodyBlocksKeepAlive(b) {
			w.closeAfter = true
		}
	}
	if allowed && len(out) > 0 {
		if _, ok := hdr["Content-Type"]; !ok {
			hdr["Content-Type"] = []string{http.DetectContentType(out)}
		}
	}

	bw := w.cn.bufs.bw
	if w.proto11 {
		bw.WriteString("HTTP/1.1 ")
	} else {
		bw.WriteString("HTTP/1.0 ")
	}
	writeStatus(bw, w.status)
	if _, ok := hdr["Date"]; !ok {
		bw.WriteString("Date: ")
		bw.Write(c.appendDate(bw.AvailableBuffer()))
		bw.WriteString("\r\n")
	}
	if c.opts.ServerName != "" {
		if _, ok := hdr["Server"]; !ok {
			bw.WriteString("Server: ")
			bw.WriteString(c.opts.ServerName)
			bw.WriteString("\r\n")
		}
	}
	if cl >= 0 {
		delete(hdr, "Content-Length")
		bw.WriteString("Content-Length: ")
		bw.Write(strconv.AppendInt(bw.AvailableBuffer(), cl, 10))
		bw.WriteString("\r\n")
	}
	if w.chunked {
		bw.WriteString("Transfer-Encoding: chunked\r\n")
	}
	w.hdr = hdr
	w.writeFields(bw)
	switch {
	case w.closeAfter:
		bw.WriteString("Connection: close\r\n")
	case !w.proto11 || w.req.ProtoMinor == 0:
		bw.WriteString("Connection: keep-alive\r\n")
	}
	_, err := bw.WriteString("\r\n")
	if err != nil {
		w.err = err
		return
	}
	if len(out) > 0 && !w.isHead && allowed {
		w.cn.bufs.out = out[:0]
		w.writeBody(out)
	}
}

// writeFields writes the handler's header fields, sorted for a stable
// output. Values are sanitised: every control character but HTAB becomes a
// space (net/http does this for CR and LF only), so a handler can neither
// split the response nor make it unreadable; invalid names are dropped.
func (w *response) writeFields(bw *bufio.Writer) {
	if len(w.hdr) == 0 {
		return
	}
	var kb [24]string
	keys := kb[:0]
	for k := range w.hdr {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if !isToken(k) {
			continue // including "Trailer:"-prefixed keys, sent after the body
		}
		for _, v := range w.hdr[k] {
			writeField(bw, k, v)
		}
	}
}

// writeTrailers writes the trailer fields the handler declared in the
// Trailer header, and those it set under http.TrailerPrefix, with the
// values it set by the time it returned (the net/http convention).
func (w *response) writeTrailers(bw *bufio.Writer) {
	for _, decl := range w.hdr["Trailer"] {
		for k := range strings.SplitSeq(decl, ",") {
			k = http.CanonicalHeaderKey(trimOWS(k))
			if !isToken(k) {
				continue
			}
			for _, v := range w.hdr[k] {
				writeField(bw, k, v)
			}
		}
	}
	for k, vs := range w.hdr {
		if name, ok := strings.CutPrefix(k, http.TrailerPrefix); ok && isToken(name) {
			for _, v := range vs {
				writeField(bw, name, v)
			}
		}
	}
}

func writeField(bw *bufio.Writer, k, v string) {
	bw.WriteString(k)
	bw.WriteString(": ")
	for i := 0; i < len(v); i++ {
		b := v[i]
		// RFC 9110 5.5: no control characters but HTAB in a field value.
		// CR and LF would split the response; the others make clients
		// reject it.
		if b < ' ' && b != '\t' || b == 0x7f {
			b = ' '
		}
		bw.WriteByte(b)
	}
	bw.WriteString("\r\n")
}

func writeStatus(bw *bufio.Writer, code int) {
	// AvailableBuffer: appending into the writer's own buffer allocates nothing.
	bw.Write(strconv.AppendInt(bw.AvailableBuffer(), int64(code), 10))
	bw.WriteByte(' ')
	text := http.StatusText(code)
	if text == "" {
		text = "status code " + strconv.Itoa(code)
	}
	bw.WriteString(text)
	bw.WriteString("\r\n")
}

// bodyBlocksKeepAlive reports whether the unread rest of the request body
// rules out keeping the connection: too much to drain, an error, a client
// still waiting for 100 Continue, or a body another goroutine is reading at
// this moment (a proxy streaming the upload on), whose state cannot be
// judged.
func (w *response) bodyBlocksKeepAlive(b *body) bool {
	if !w.bodyHeld {
		if !b.mu.TryLock() {
			return true
		}
		defer b.mu.Unlock()
	}
	return !b.done && (b.err != nil || b.expectContinue && !b.continueSent || !b.chunked && b.left > maxDrain)
}

// finish completes the response after the handler returned and reports
// whether the connection may be kept. bd is the request body, if any.
func (w *response) finish(bd *body, panicked bool) bool {
	cn := w.cn
	if w.err == nil && !w.committed {
		// Nothing on the wire yet: the core may still answer for the handler.
		var rerr *rejectError
		switch {
		case bd != nil && bd.rerr != nil:
			rerr = bd.rerr
		case panicked:
			rerr = errPanic500.withID(w.req)
		}
		if rerr != nil {
			cn.bufs.out = cn.bufs.out[:0]
			cn.writeReject(rerr, "")
			return false
		}
	}
	if panicked {
		// Part of the response is out: all we can do is cut it short.
		cn.bufs.bw.Flush()
		return false
	}
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if !w.committed {
		w.commit(true)
	}
	if w.chunked && w.err == nil {
		cn.bufs.bw.WriteString("0\r\n")
		w.writeTrailers(cn.bufs.bw)
		cn.bufs.bw.WriteString("\r\n")
	}
	if w.err == nil {
		w.err = cn.bufs.bw.Flush()
	}
	if w.err != nil {
		return false
	}
	if w.declared >= 0 && w.written < w.declared && bodyAllowedForStatus(w.status) && !w.isHead {
		return false // the client waits for bytes that will never come
	}
	if bd != nil && bd.rerr != nil {
		return false
	}
	return !w.closeAfter
}

// Flush sends what is buffered (http.Flusher).
func (w *response) Flush() { w.FlushError() }

// FlushError is Flush reporting the error (http.ResponseController).
func (w *response) FlushError() error {
	if w.cn.hijacked {
		return http.ErrHijacked
	}
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if !w.committed {
		w.commit(false)
	}
	if w.err != nil {
		return w.err
	}
	if err := w.cn.bufs.bw.Flush(); err != nil {
		w.err = err
	}
	return w.err
}

// Hijack hands the connection to the handler (http.Hijacker), for protocol
// upgrades such as WebSocket through httputil.ReverseProxy. The core then
// forgets the connection: no deadlines, no close.
func (w *response) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	cn := w.cn
	if cn.hijacked {
		return nil, nil, http.ErrHijacked
	}
	if w.committed {
		return nil, nil, errors.New("httpcore: Hijack after the response started")
	}
	cn.stopWatch() // a byte it read is still served first by the reader
	if bd := w.bd; bd != nil {
		// A goroutine still reading the body would go on consuming the
		// reader the handler now gets: end its read, and any later one.
		cn.takeBody(bd)
		bd.release()
	}
	cn.hijacked = true
	cn.nc.SetDeadline(time.Time{})
	rw := bufio.NewReadWriter(cn.bufs.br, cn.bufs.bw)
	// The buffers now belong to the handler: never pooled again.
	cn.bufs = nil
	return cn.nc, rw, nil
}

// SetReadDeadline and SetWriteDeadline serve http.ResponseController.
func (w *response) SetReadDeadline(t time.Time) error { return w.cn.nc.SetReadDeadline(t) }

// SetWriteDeadline: a write deadline the handler sets replaces write_timeout
// until the end of its response (the zero time: no deadline), as with
// net/http.
func (w *response) SetWriteDeadline(t time.Time) error {
	// Under wmu: a body read beside the handler may be writing its 100
	// Continue through the same connWriter.
	w.cn.wmu.Lock()
	defer w.cn.wmu.Unlock()
	w.cn.wr.handler = true
	return w.cn.nc.SetWriteDeadline(t)
}
