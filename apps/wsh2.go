package apps

import (
	"context"
	"crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"time"
)

// WebSocket over h2 (RFC 8441) through the proxy. An h2 client opens a
// WebSocket with an extended CONNECT (:method CONNECT, :protocol websocket)
// on one stream, which the core hands to the proxy as a CONNECT request
// with r.Header[":protocol"]; the stream's DATA both ways is the tunnel.
// The upstream speaks HTTP/1.1, so the proxy turns the request into the
// handshake RFC 6455 has: a GET with Connection: Upgrade, Upgrade:
// websocket, the client's Sec-WebSocket-Version, -Protocol and -Extensions
// (and its other end-to-end fields, with the edge's forwarding ones), and a
// Sec-WebSocket-Key the proxy makes itself, since an h2 client sends none
// (RFC 8441 section 5). The upstream's answer:
//
//   - 101 to websocket with the Sec-WebSocket-Accept of that key: the
//     client gets 200 with the upstream's other end-to-end fields (the
//     negotiated Sec-WebSocket-Protocol and -Extensions among them), then
//     bytes are copied both ways until either side ends;
//   - 101 with a wrong or missing Accept, or to another protocol: 502, the
//     upstream is not speaking WebSocket to this handshake;
//   - another 2xx: 502 as well, since a 2xx is what tells an h2 client that
//     its tunnel is open, and this one is not;
//   - anything else (a 403, a 404, a redirect): passed on as an ordinary
//     response.
//
// The tunnel's ends (RFC 8441 section 5: END_STREAM is TCP's FIN, RST_STREAM
// its reset): the client's END_STREAM half-closes the upstream connection
// (CloseWrite), which then has proxy_response_timeout to end its side; the
// upstream's close ends the stream with END_STREAM, and a failure on it
// with RST_STREAM; the client's RST_STREAM closes the upstream connection.
// An open tunnel has no idle bound, as an HTTP/1.1 WebSocket's splice has
// none (a WebSocket may be quiet for long): the core's h2 PING finds a dead
// client, write_timeout one that stops reading. Other :protocol values get
// 501: the proxy carries WebSocket only.

// wsGUID is RFC 6455's key suffix for Sec-WebSocket-Accept.
const wsGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// extendedConnect returns the :protocol of an h2 extended CONNECT (the
// core lets no other CONNECT reach a handler).
func extendedConnect(r *http.Request) (string, bool) {
	if r.Method != http.MethodConnect || r.ProtoMajor != 2 {
		return "", false
	}
	if v := r.Header[":protocol"]; len(v) == 1 {
		return v[0], true
	}
	return "", false
}

// webSocketAccept is the Sec-WebSocket-Accept answering key (RFC 6455 section 4.2.2).
func webSocketAccept(key string) string {
	h := sha1.Sum([]byte(key + wsGUID))
	return base64.StdEncoding.EncodeToString(h[:])
}

func newWSKey() string {
	var b [16]byte
	rand.Read(b[:])
	return base64.StdEncoding.EncodeToString(b[:])
}

// wsHandshake is the HTTP/1.1 handshake request standing for r: a GET with
// r's fields but :protocol, any key or accept of the client's and framing,
// and key as Sec-WebSocket-Key. appendHead adds Connection and Upgrade.
func wsHandshake(r *http.Request, key string) *http.Request {
	up := new(http.Request)
	*up = *r
	up.Method = http.MethodGet
	h := make(http.Header, len(r.Header)+1)
	for k, v := range r.Header {
		switch k {
		case ":protocol", "Sec-Websocket-Key", "Sec-Websocket-Accept", "Content-Length", "Transfer-Encoding":
			continue
		}
		h[k] = v
	}
	h["Sec-Websocket-Key"] = []string{key}
	up.Header = h
	up.Body, up.ContentLength, up.Trailer = http.NoBody, 0, nil
	return up
}

// serveTunnel is serve for an extended CONNECT.
func (p *proxy) serveTunnel(w http.ResponseWriter, r *http.Request, proto string, alt *poolTry) {
	if !strings.EqualFold(proto, "websocket") {
		p.answer(w, r, http.StatusNotImplemented, slog.LevelInfo, "proxy: extended CONNECT for a protocol other than websocket", fmt.Errorf(":protocol %q", proto))
		w.WriteHeader(http.StatusNotImplemented)
		io.WriteString(w, "Not Implemented: the proxy carries only the websocket protocol over extended CONNECT\n")
		return
	}
	if down, why := p.up.down(time.Now()); down {
		err := fmt.Errorf("%w: %w", errUpstreamDown, why)
		if !alt.handoff(r, err, true) {
			p.fail(w, r, err, nil)
		}
		return
	}
	key := newWSKey()
	up := wsHandshake(r, key)
	pe := clientAddrs(r)
	hb := headPool.Get().(*[]byte)
	head := p.appendHead((*hb)[:0], up, pe, "websocket")
	defer func() { putHead(hb, head) }()
	var ppHeader []byte
	pool := ""
	if p.ppPools {
		ppHeader = proxyV2Header(pe)
		if p.ppTLV {
			ppHeader = proxyV2HeaderTLV(pe, r)
		}
		pool = string(ppHeader)
	}
	bp := copyPool.Get().(*[]byte)
	defer copyPool.Put(bp)
	// The handshake is a GET without a body: one more try on a fresh
	// connection is as safe as for any GET.
	for attempt := 0; ; attempt++ {
		c, err := p.up.get(r.Context(), pool, ppHeader, attempt > 0)
		if err != nil {
			if upstreamFault(err) {
				p.up.failed(time.Now(), err)
			}
			if attempt == 0 && retryableErr(err) && r.Context().Err() == nil {
				continue
			}
			if !alt.handoff(r, err, true) {
				p.fail(w, r, err, nil)
			}
			return
		}
		p.noteUpstream(w, c)
		x := exchange{p: p, w: w, r: up, c: c, buf: *bp, upType: "websocket", tunnel: r, wsKey: key}
		x.run(head, nil)
		if x.done {
			p.up.succeeded()
			return
		}
		if !x.gotBytes && !c.reused && upstreamFault(x.err) {
			p.up.failed(time.Now(), x.err)
		}
		if attempt == 0 && !x.gotBytes && retryableErr(x.err) && r.Context().Err() == nil {
			continue
		}
		if x.gotBytes || !alt.handoff(r, x.err, false) {
			p.fail(w, r, x.err, nil)
		}
		return
	}
}

// checkTunnelAnswer is run's check of the upstream's final answer to a
// tunnel's handshake: nil lets it through (a 101 goes on to spliceH2, a
// 3xx to 5xx to relay).
func (x *exchange) checkTunnelAnswer(h *respHead) error {
	if h.status != http.StatusSwitchingProtocols {
		if h.status < 300 {
			return badResponse("%d to a WebSocket handshake, which is no switch of protocols", h.status)
		}
		return nil
	}
	want := webSocketAccept(x.wsKey)
	n := 0
	for _, f := range h.fields {
		if strings.EqualFold(f.name, "Sec-WebSocket-Accept") {
			if n++; f.value != want {
				return badResponse("101 with Sec-WebSocket-Accept %q, not the %q its key makes", f.value, want)
			}
		}
	}
	if n != 1 {
		return badResponse("101 with %d Sec-WebSocket-Accept fields, not one", n)
	}
	return nil
}

// spliceH2 completes a tunnel: the client gets 200 with the upstream's
// end-to-end fields, then bytes are copied both ways: the client's from the
// stream's body to the upstream on a goroutine of their own, the upstream's
// to the stream on the handler's.
func (x *exchange) spliceH2(h *respHead) {
	w, c, r := x.w, x.c, x.tunnel
	hdr := w.Header()
	for _, f := range h.fields {
		if hopByHop(f.name, h.connTokens) || strings.EqualFold(f.name, "Sec-WebSocket-Accept") {
			continue
		}
		hdr.Add(f.name, f.value)
	}
	// The stream's reset (or the client's connection gone) ends the
	// upstream's side too.
	stop := context.AfterFunc(r.Context(), func() { c.nc.Close() })
	defer stop()
	rc := http.NewResponseController(w)
	w.WriteHeader(http.StatusOK)
	if err := rc.Flush(); err != nil {
		return
	}
	var halfClosed atomic.Bool
	done := make(chan struct{})
	go func() {
		defer close(done)
		bp := copyPool.Get().(*[]byte)
		defer copyPool.Put(bp)
		_, err := io.CopyBuffer(writerOnly{c.nc}, readerOnly{r.Body}, *bp)
		if err != nil {
			c.nc.Close() // the stream failed: so does the tunnel
			return
		}
		// END_STREAM: the client is done sending (TCP's FIN, RFC 8441
		// section 5). The upstream learns it the same way, and has
		// proxy_response_timeout to end its side.
		halfClosed.Store(true)
		c.nc.SetReadDeadline(time.Now().Add(x.p.responseTimeout))
		if cw, ok := c.nc.(interface{ CloseWrite() error }); ok {
			cw.CloseWrite()
		} else {
			c.nc.Close()
		}
	}()
	// The upstream's bytes, some of which may have come with its 101.
	var err error
	for {
		n, rerr := c.br.Read(x.buf)
		if n > 0 {
			if _, werr := w.Write(x.buf[:n]); werr != nil {
				err = clientWriteErr{werr}
				break
			}
			if c.br.Buffered() == 0 {
				flush(w)
			}
		}
		if rerr != nil {
			if rerr != io.EOF {
				err = rerr
			}
			break
		}
	}
	// Either way the client's half is over too: its reader is woken (a
	// read deadline in the past) and waited for, so that the handler
	// leaves nothing behind. A writer without read deadlines (not the
	// core's) ends the read when the stream ends, after the handler.
	c.nc.Close()
	r.Body.Close()
	if rc.SetReadDeadline(aLongTimeAgo) == nil {
		<-done
	}
	var cw clientWriteErr
	switch {
	case err == nil:
		// The upstream closed: END_STREAM for the client.
	case errors.As(err, &cw) || r.Context().Err() != nil:
		x.p.log.Debug("proxy: WebSocket client went away", "path", r.URL.Path, "err", err)
	case halfClosed.Load() && isTimeout(err):
		x.abort(fmt.Errorf("upstream did not close its side of the WebSocket within proxy_response_timeout after the client's: %w", err))
	default:
		x.abort(err)
	}
}

// readerOnly hides every method but Read, so that io.CopyBuffer uses its
// buffer.
type readerOnly struct{ io.Reader }
