package compression

import (
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

// writer decides, when the handler's final head is known, whether its
// response is compressed, and compresses it. Its states:
//
//	undecided: no final head yet
//	pass:      sent as the handler writes it
//	hold:      eligible without a Content-Length: the first bytes are held
//	           (at most compress_min_size) until the size is known
//	compress:  the head is sent, the body goes through the encoder
type writer struct {
	http.ResponseWriter
	c     *Compressor
	enc   string // the encoding the request accepts; "" for none
	state int
	code  int
	held  []byte
	out   encoder
}

const (
	undecided = iota
	pass
	hold
	compress
)

// encoder is what gzip.Writer and zstd.Encoder share.
type encoder interface {
	io.Writer
	Flush() error
	Close() error
}

func (w *writer) WriteHeader(code int) {
	if w.state != undecided {
		return // a second final head: net/http ignores it too
	}
	if code < 200 {
		w.ResponseWriter.WriteHeader(code) // 1xx: not the final head
		return
	}
	w.code = code
	h := w.ResponseWriter.Header()
	if !w.c.eligible(code, h) {
		w.state = pass
		w.ResponseWriter.WriteHeader(code)
		return
	}
	if cl := h.Get("Content-Length"); cl != "" {
		n, err := strconv.ParseInt(cl, 10, 64)
		if err != nil || n < int64(w.c.minSize) {
			w.state = pass // small: the same whatever Accept-Encoding says
			w.ResponseWriter.WriteHeader(code)
			return
		}
		w.start()
		return
	}
	w.state = hold
}

// start sends the head of an eligible response of sufficient size: vary
// always, compressed when the client accepts an encoding.
func (w *writer) start() {
	h := w.ResponseWriter.Header()
	addVary(h)
	if w.enc == "" {
		w.state = pass
		w.ResponseWriter.WriteHeader(w.code)
		return
	}
	out := w.c.get(w.enc, w.ResponseWriter)
	if out == nil {
		// Every encoder is busy: this one goes out as it is.
		w.state = pass
		w.ResponseWriter.WriteHeader(w.code)
		return
	}
	h.Del("Content-Length")
	h.Del("Accept-Ranges")
	if et := h.Get("ETag"); et != "" && !strings.HasPrefix(et, "W/") {
		h.Set("ETag", "W/"+et)
	}
	h.Set("Content-Encoding", w.enc)
	w.state = compress
	w.out = out
	w.ResponseWriter.WriteHeader(w.code)
}

func addVary(h http.Header) {
	for _, v := range h.Values("Vary") {
		for f := range strings.SplitSeq(v, ",") {
			if f = strings.TrimSpace(f); f == "*" || strings.EqualFold(f, "Accept-Encoding") {
				return
			}
		}
	}
	h.Add("Vary", "Accept-Encoding")
}

func (w *writer) Write(p []byte) (int, error) {
	if w.state == undecided {
		w.WriteHeader(http.StatusOK)
	}
	switch w.state {
	case hold:
		if len(w.held)+len(p) < w.c.minSize {
			w.held = append(w.held, p...)
			return len(p), nil
		}
		w.start()
		if err := w.release(); err != nil {
			return 0, err
		}
	}
	if w.state == compress {
		return w.out.Write(p)
	}
	return w.ResponseWriter.Write(p)
}

// release writes what was held, through the encoder when compressing.
func (w *writer) release() error {
	b := w.held
	w.held = nil
	if len(b) == 0 {
		return nil
	}
	var err error
	if w.state == compress {
		_, err = w.out.Write(b)
	} else {
		_, err = w.ResponseWriter.Write(b)
	}
	return err
}

// Flush sends what is buffered: a response still held is decided now (a
// handler that flushes is streaming, so its size will not be known), and
// the encoder's pending output is flushed before the connection's.
func (w *writer) Flush() {
	if w.state == undecided {
		w.WriteHeader(http.StatusOK)
	}
	if w.state == hold {
		w.start()
		if w.release() != nil {
			return
		}
	}
	if w.state == compress {
		if w.out.Flush() != nil {
			return
		}
	}
	http.NewResponseController(w.ResponseWriter).Flush()
}

// finish ends the response once the handler has returned: a body held
// below compress_min_size goes out as it is, with its length; an encoder
// writes its trailer and goes back to the pool. After a panic (an aborted
// response) the encoder is dropped, not pooled.
func (w *writer) finish() {
	if p := recover(); p != nil {
		if w.out != nil {
			w.c.drop()
			w.out = nil
		}
		panic(p)
	}
	switch w.state {
	case hold:
		w.state = pass
		w.ResponseWriter.Header().Set("Content-Length", strconv.Itoa(len(w.held)))
		w.ResponseWriter.WriteHeader(w.code)
		_ = w.release()
	case compress:
		if w.out.Close() == nil {
			w.c.put(w.out)
		} else {
			w.c.drop() // a write failed: the encoder's state is not trusted again
		}
		w.out = nil
	}
}

// Unwrap lets http.ResponseController reach the core's writer (deadlines).
func (w *writer) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// get takes an idle encoder for enc, or makes one while fewer than
// compress_max_encoders exist; nil when none is free. An idle encoder of
// the other encoding is dropped to make room, so one encoding's idle
// encoders never starve the other.
func (c *Compressor) get(enc string, dst io.Writer) encoder {
	if enc == "gzip" {
		select {
		case g := <-c.gzIdle:
			g.Reset(dst)
			return g
		default:
		}
	} else {
		select {
		case z := <-c.zsIdle:
			z.Reset(dst)
			return z
		default:
		}
	}
	if !c.reserve() {
		// Room held by idle encoders of the other kind is given back.
		select {
		case <-c.gzIdle:
			c.live.Add(-1)
		case <-c.zsIdle:
			c.live.Add(-1)
		default:
			return nil
		}
		if !c.reserve() {
			return nil
		}
	}
	if enc == "gzip" {
		g, _ := gzip.NewWriterLevel(dst, c.gzLevel) // the level is checked by Validate
		return g
	}
	z, err := zstd.NewWriter(dst, zstd.WithEncoderLevel(c.zsLevel), zstd.WithEncoderConcurrency(1),
		zstd.WithWindowSize(compressZstdWindow), zstd.WithLowerEncoderMem(true))
	if err != nil {
		c.live.Add(-1)
		return nil
	}
	return z
}

// reserve counts one more encoder if the cap allows.
func (c *Compressor) reserve() bool {
	for {
		n := c.live.Load()
		if n >= c.max {
			return false
		}
		if c.live.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// put returns a closed encoder to its idle list. It is reset to write
// nowhere, so an idle encoder holds no connection.
func (c *Compressor) put(e encoder) {
	switch e := e.(type) {
	case *gzip.Writer:
		e.Reset(io.Discard)
		select {
		case c.gzIdle <- e:
			return
		default:
		}
	case *zstd.Encoder:
		e.Reset(nil)
		select {
		case c.zsIdle <- e:
			return
		default:
		}
	}
	c.live.Add(-1)
}

// drop forgets an encoder that is not returned (its response was aborted).
func (c *Compressor) drop() { c.live.Add(-1) }
