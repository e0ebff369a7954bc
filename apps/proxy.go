package apps

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"tlsedge/conninfo"
	"tlsedge/policy"
	"tlsedge/router"
)

// StatusError is what the proxy looks for in a request-body read error to
// answer with the client's fault instead of blaming the upstream: a body
// reader that knows the right answer (408 for an upload that stalled, 400
// for broken chunking) returns an error with this method, found through
// errors.As. *http.MaxBytesError, which the core and http.MaxBytesReader
// return for an oversized body, means 413. Any other body read error means
// 400. Only 4xx statuses are taken from the error.
type StatusError interface {
	error
	HTTPStatus() int
}

// proxy is a reverse proxy to one HTTP/1.1 upstream, on the edge's own
// upstream engine (see upstream): pooled keep-alive connections without a
// goroutine each, pooled buffers, the request head written anew from what
// the core parsed (never the client's framing), and the response head
// parsed strictly before anything reaches the client. This type adds the
// edge's policy: forwarding headers, identity headers, timeouts, error
// mapping, passive health and retries and, with proxy_request_buffering,
// reading and checking a request's whole body before the upstream is
// contacted (see requestBuffer).
type proxy struct {
	target          string   // the mount target, for log lines
	upstream        *url.URL // scheme, host and base path requests are sent to
	base            string   // the escaped base path, without a trailing slash
	trust           *policy.Trust
	identity        HeaderHook // nil: PeerHeaders
	tlsHook         HeaderHook // nil: SSLHeaders, through ssl
	ssl             sslCache
	log             *slog.Logger
	limit           *logLimiter    // for the per-request failure lines
	ppPools         bool           // pool upstream connections per PROXY header
	ppTLV           bool           // the header carries TLVs (proxy_protocol_tlv)
	buffer          *requestBuffer // nil: request bodies stream
	up              *upstream
	responseTimeout time.Duration
}

// newProxy builds the proxy for target. network and addr say where to dial
// (tcp host:port or unix path); u carries scheme, Host header fallback and
// base path.
func newProxy(target string, u *url.URL, network, addr string, env Env) (*proxy, error) {
	trust := env.Trust
	if trust == nil {
		trust = env.Options.TrustedProxies.Trust()
	}
	log := env.logger().With("upstream", target)
	o := &env.Options
	p := &proxy{
		target:          target,
		upstream:        u,
		base:            u.EscapedPath(),
		trust:           trust,
		identity:        env.IdentityHeaders,
		tlsHook:         env.TLSHeaders,
		log:             log,
		limit:           newLogLimiter(5, 20),
		ppPools:         o.ProxyProtocol,
		ppTLV:           o.ProxyProtocolTLV,
		responseTimeout: o.ResponseTimeout(),
		up: &upstream{
			network:        network,
			addr:           addr,
			connectTimeout: o.ConnectTimeout(),
			idleTimeout:    o.KeepaliveTimeout(),
			maxIdle:        o.Keepalive(),
			maxRequests:    o.KeepaliveRequests(),
			maxFails:       o.ProxyMaxFails,
			failTimeout:    o.FailTimeout(),
		},
	}
	if o.ProxyRequestBuffering {
		dir := o.TempPath()
		if err := checkTempDir(dir); err != nil {
			return nil, fmt.Errorf("%w: proxy_temp_path: cannot make a directory for buffered request bodies under %s: %w (set proxy_temp_path to a directory the server's user may write)", ErrBadOption, dir, err)
		}
		p.buffer = &requestBuffer{memLimit: o.BufferSize(), dir: dir}
	}
	// Nil hooks mean the defaults, PeerHeaders and SSLHeaders, which
	// appendHead writes without a header map.
	if u.Scheme == "https" {
		conf := env.UpstreamTLS
		if conf == nil {
			c, err := UpstreamTLSConfig(o)
			if err != nil {
				return nil, err
			}
			conf = c
		}
		conf = conf.Clone()
		if conf.ServerName == "" {
			conf.ServerName = u.Hostname()
		}
		if len(conf.NextProtos) == 0 {
			conf.NextProtos = []string{"http/1.1"}
		}
		if conf.ClientSessionCache == nil {
			conf.ClientSessionCache = tls.NewLRUClientSessionCache(64)
		}
		p.up.tlsConf = conf
		if conf.InsecureSkipVerify && conf.VerifyConnection == nil && conf.VerifyPeerCertificate == nil {
			log.Warn("proxy: the upstream's certificate is not verified (proxy_ssl_verify is off): anyone on the path to it can read and change what it is sent", "server_name", conf.ServerName)
		}
	}
	return p, nil
}

// Close drops the idle upstream connections; requests in flight finish.
func (p *proxy) Close() error {
	p.up.close()
	return nil
}

// Buffers shared by every proxy: a head buffer for the request head each
// attempt sends and the response head it reads, and a copy buffer for
// bodies, both way. Neither is allocated per request. The copy buffer is
// 64 KiB: a loopback or LAN upstream fills it in one read, so a large body
// costs half the reads (and half the writes into the response) that 32 KiB
// did - 75 to 90 system calls per MiB against about 120, and less CPU per
// MiB than nginx with proxy_buffers 4 32k. It is held only while a request
// is in flight.
var (
	headPool = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}
	copyPool = sync.Pool{New: func() any { b := make([]byte, 64<<10); return &b }}
)

func putHead(b *[]byte, used []byte) {
	if cap(used) <= maxUpstreamHead {
		*b = used[:0]
		headPool.Put(b)
	}
}

// aLongTimeAgo is a deadline in the past: setting it makes every blocked
// read and write on a connection return at once.
var aLongTimeAgo = time.Unix(1, 0)

func (p *proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) { p.serve(w, r, nil) }

// noteUpstream names the upstream c reaches to the access log and the
// per-upstream metrics: the address dialled, or the target for a UNIX
// socket, whose peer has none.
func (p *proxy) noteUpstream(w http.ResponseWriter, c *upConn) {
	if ur, ok := w.(upstreamRecorder); ok {
		addr := c.addr
		if addr == "" || addr == "@" {
			addr = p.target
		}
		ur.setUpstream(addr)
	}
}

// serve is ServeHTTP for one upstream; alt, set when it is a pool's
// member, takes the failures another member may answer instead (see
// poolTry), which then leave w untouched. The pool buffers the body.
func (p *proxy) serve(w http.ResponseWriter, r *http.Request, alt *poolTry) {
	if proto, ok := extendedConnect(r); ok {
		p.serveTunnel(w, r, proto, alt) // WebSocket over h2 (wsh2.go)
		return
	}
	if alt == nil && p.buffer != nil && r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0 {
		sb, err := p.buffer.read(r)
		if err != nil {
			p.failBuffering(w, r, err)
			return
		}
		defer sb.Close()
		r = buffered(r, sb)
	}
	if down, why := p.up.down(time.Now()); down {
		err := fmt.Errorf("%w: %w", errUpstreamDown, why)
		if !alt.handoff(r, err, true) {
			p.fail(w, r, err, nil)
		}
		return
	}
	pe := clientAddrs(r)
	upType := upgradeType(r)

	hb := headPool.Get().(*[]byte)
	head := p.appendHead((*hb)[:0], r, pe, upType)
	defer func() { putHead(hb, head) }()
	var ppHeader []byte
	key := ""
	if p.ppPools {
		// A header speaks for a connection's whole life: a pool per
		// client address.
		ppHeader = proxyV2Header(pe)
		if p.ppTLV {
			ppHeader = proxyV2HeaderTLV(pe, r)
		}
		key = string(ppHeader)
	}
	bp := copyPool.Get().(*[]byte)
	defer copyPool.Put(bp)

	var body io.Reader
	spooled := false
	if r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0 {
		body = r.Body
		_, spooled = body.(spoolReader)
	}
	retryable := idempotent(r.Method) && (body == nil || spooled && r.GetBody != nil)
	for attempt := 0; ; attempt++ {
		if attempt > 0 && spooled {
			body, _ = r.GetBody()
		}
		c, err := p.up.get(r.Context(), key, ppHeader, attempt > 0)
		if err != nil {
			if upstreamFault(err) {
				p.up.failed(time.Now(), err)
			}
			if attempt == 0 && retryable && retryableErr(err) && r.Context().Err() == nil {
				continue
			}
			if !alt.handoff(r, err, true) {
				p.fail(w, r, err, nil)
			}
			return
		}
		p.noteUpstream(w, c)
		x := exchange{p: p, w: w, r: r, c: c, buf: *bp, upType: upType}
		x.run(head, body)
		if x.done {
			p.up.succeeded()
			return
		}
		if x.bodyErr != nil {
			p.fail(w, r, x.err, x.bodyErr)
			return
		}
		if !x.gotBytes && !c.reused && upstreamFault(x.err) {
			p.up.failed(time.Now(), x.err)
		}
		if attempt == 0 && retryable && !x.gotBytes && retryableErr(x.err) && r.Context().Err() == nil {
			p.log.Debug("proxy: retrying on a fresh connection", "method", r.Method, "path", r.URL.Path, "reused", c.reused, "err", x.err)
			continue
		}
		if x.gotBytes || !alt.handoff(r, x.err, false) {
			p.fail(w, r, x.err, nil)
		}
		return
	}
}

// isNoBody reports whether r carries no body at all: a zero length that the
// client did not state (a GET), rather than "Content-Length: 0".
func isNoBody(r *http.Request) bool {
	_, stated := r.Header["Content-Length"]
	return !stated && len(r.TransferEncoding) == 0
}

// idempotent methods may be sent again when they failed before any answer
// (RFC 9110 section 9.2.2).
func idempotent(method string) bool {
	switch method {
	case "GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE":
		return true
	}
	return false
}

// upstreamFault reports the failures that count against the upstream's
// health: refused, reset, closed before answering, timed out.
func upstreamFault(err error) bool {
	return isTimeout(err) || retryableErr(err)
}

// retryableErr reports the failures worth one more try on a fresh
// connection: the connection refused, reset or closed before any byte of
// an answer. A timeout is not retried: the client has waited once already.
func retryableErr(err error) bool {
	return errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNABORTED) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}

// upgradeType is the protocol a request asks to switch to (WebSocket), or
// "".
func upgradeType(r *http.Request) string {
	up := r.Header["Upgrade"]
	if len(up) != 1 || r.ProtoMajor != 1 || r.ProtoMinor != 1 {
		return ""
	}
	// Never h2c (RFC 7540 3.2, deprecated by RFC 9113): an upstream that
	// switched would give the client a tunnel of h2 requests the edge never
	// sees, past its policy ("h2c smuggling"). The request goes on as
	// HTTP/1.1, its Upgrade dropped as a hop-by-hop field.
	if hasToken(up[0], "h2c") {
		return ""
	}
	for _, v := range r.Header["Connection"] {
		if hasToken(v, "upgrade") {
			return up[0]
		}
	}
	return ""
}

// appendHead writes the upstream request head: the method, the base path
// and the path as the core decoded and re-escaped it, the Host, the
// client's end-to-end fields, then the edge's forwarding, identity and TLS
// fields. The framing (Content-Length or chunked) and Connection come from
// the edge alone, whatever the client sent; hop-by-hop fields stop here.
//
// The edge's own fields go straight into b: no header map is built, cloned
// or canonicalized per request. Only hooks given in Env (and the default
// identity hook for a UNIX-socket peer) fill a map, which then wins over
// the client's fields of the same names.
func (p *proxy) appendHead(b []byte, r *http.Request, pe peer, upType string) []byte {
	b = append(b, r.Method...)
	b = append(b, ' ')
	b = append(b, p.base...)
	path := r.URL.EscapedPath()
	if path == "" || path[0] != '/' {
		b = append(b, '/')
	}
	b = append(b, path...)
	if r.URL.RawQuery != "" {
		b = append(b, '?')
		b = append(b, r.URL.RawQuery...)
	}
	b = append(b, " HTTP/1.1\r\nHost: "...)
	host := r.Host
	if host == "" || !validFieldValue(host) || strings.ContainsAny(host, " \t") {
		host = p.upstream.Host
	}
	b = append(b, host...)
	b = append(b, "\r\n"...)

	// The hooks' fields, kept apart from the client's so that the client's
	// map is only read, never cloned.
	var hooked http.Header
	if p.identity != nil || pe.unixPeer {
		hooked = make(http.Header, 4)
		if p.identity != nil {
			p.identity(r, hooked)
		} else {
			PeerHeaders(r, hooked)
		}
	}
	if p.tlsHook != nil {
		if hooked == nil {
			hooked = make(http.Header, 8)
		}
		p.tlsHook(r, hooked)
	}
	var ssl []policy.Var
	var sslNames []string
	if p.tlsHook == nil {
		ssl, sslNames = p.ssl.get(r)
	}

	conn := ""
	if v := r.Header["Connection"]; len(v) == 1 {
		conn = v[0]
	} else if len(v) > 1 {
		conn = strings.Join(v, ",")
	}
	for k, vs := range r.Header {
		if hopByHop(k, conn) || isForwarding(k) || strings.EqualFold(k, "Host") || strings.EqualFold(k, "Expect") {
			continue
		}
		if hooked != nil {
			if _, ours := hooked[k]; ours {
				continue
			}
		}
		if ssl != nil && len(k) > 6 && strings.EqualFold(k[:6], "X-Ssl-") && namedIn(sslNames, k) {
			continue
		}
		b = appendFields(b, k, vs)
	}
	b = p.appendForwarded(b, r, pe)
	for k, vs := range hooked {
		b = appendFields(b, k, vs)
	}
	for i, v := range ssl {
		if name := sslNames[i]; name != "" {
			b = appendField(b, name, sslHeaderValue(v.Value))
		}
	}
	switch {
	case upType != "":
		b = append(b, "Connection: Upgrade\r\nUpgrade: "...)
		b = append(b, upType...)
		b = append(b, "\r\n"...)
	case r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0:
		if !isNoBody(r) || r.Method == "POST" || r.Method == "PUT" || r.Method == "PATCH" {
			b = append(b, "Content-Length: 0\r\n"...)
		}
	case r.ContentLength > 0:
		b = append(b, "Content-Length: "...)
		b = strconv.AppendInt(b, r.ContentLength, 10)
		b = append(b, "\r\n"...)
	default:
		b = append(b, "Transfer-Encoding: chunked\r\n"...)
	}
	return append(b, "\r\n"...)
}

// isForwarding reports the fields setForwarded owns: a client's copies
// reach the upstream only through it.
func isForwarding(k string) bool {
	return strings.EqualFold(k, "Forwarded") || len(k) > 12 && strings.EqualFold(k[:12], "X-Forwarded-")
}

// appendFields writes name: value lines, leaving out any a header line
// could not carry as it is.
func appendFields(b []byte, name string, vs []string) []byte {
	if name == "" {
		return b
	}
	for i := 0; i < len(name); i++ {
		if !isTokenByte(name[i]) {
			return b
		}
	}
	for _, v := range vs {
		if !validFieldValue(v) {
			continue
		}
		b = append(b, name...)
		b = append(b, ": "...)
		b = append(b, v...)
		b = append(b, "\r\n"...)
	}
	return b
}

// appendField writes one name: value line, unless the value could not be
// carried as it is. name is the edge's own, a valid token.
func appendField(b []byte, name, v string) []byte {
	if !validFieldValue(v) {
		return b
	}
	b = append(b, name...)
	b = append(b, ": "...)
	b = append(b, v...)
	return append(b, "\r\n"...)
}

// validFieldValue reports whether v can be sent as a field value: no
// control characters but HTAB.
func validFieldValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

// errBodyTooLong is a request body that goes on past its Content-Length.
var errBodyTooLong = errors.New("apps: request body longer than its Content-Length")

// exchange is one attempt at a request on one upstream connection.
type exchange struct {
	p      *proxy
	w      http.ResponseWriter
	r      *http.Request
	c      *upConn
	buf    []byte
	upType string
	// For a WebSocket over h2 (wsh2.go): the client's extended CONNECT (r
	// is the handshake sent for it) and the Sec-WebSocket-Key sent.
	tunnel *http.Request
	wsKey  string

	// Outcome.
	done     bool  // the client has its answer (or an aborted one)
	gotBytes bool  // the upstream sent something back
	bodyErr  error // reading the client's body failed
	err      error
	keep     bool // the connection may go back to the pool
}

// run sends the request and relays the answer. On return the connection
// is pooled or closed. Unless x.done, nothing has been written to the
// client and x.err says why.
func (x *exchange) run(head []byte, body io.Reader) {
	c := x.c
	c.requests++
	c.watch(x.r.Context())
	watching := true
	defer func() {
		if watching && !c.unwatch() {
			x.keep = false // its deadline is spoiled
		}
		if x.keep {
			c.u.put(c)
		} else {
			c.nc.Close()
		}
	}()
	if x.err = x.send(head, body); x.err != nil && x.bodyErr != nil {
		return
	}
	// An upstream that answers before it has read the whole body (a 413,
	// a redirect) may have closed its side: its answer still counts.
	sendErr := x.err
	c.nc.SetReadDeadline(time.Now().Add(x.p.responseTimeout))
	if sendErr == nil {
		// The answer cannot be there yet: a read now would only find the
		// socket empty, then wait for it. Other goroutines run first; on a
		// busy edge the answer has come by the time this one is back, and
		// one system call and one park are saved.
		runtime.Gosched()
	}
	// The fields' slice is the connection's: the values in it point into
	// the head's string, which the client's header map keeps alive, not
	// into the slice.
	h := respHead{fields: c.fields[:0]}
	defer func() { c.fields = h.fields[:0] }()
	hb := headPool.Get().(*[]byte)
	defer func() { putHead(hb, *hb) }()
	for interim := 0; ; interim++ {
		raw, n, err := readHeadLines(c.br, (*hb)[:0], maxUpstreamHead)
		if n > 0 {
			x.gotBytes = true
		}
		if cap(raw) > cap(*hb) {
			*hb = raw[:0]
		}
		if err != nil {
			if sendErr != nil && n == 0 {
				err = sendErr
			}
			x.err = err
			return
		}
		if err := parseRespHead(string(raw), &h); err != nil {
			x.err = err
			return
		}
		if h.status == http.StatusSwitchingProtocols {
			break
		}
		if h.status >= 200 {
			break
		}
		// 100 Continue and other interim answers are swallowed: the edge
		// answered the client's Expect itself.
		if interim == maxInterim {
			x.err = badResponse("more than %d interim responses", maxInterim)
			return
		}
	}
	if x.tunnel != nil {
		if x.err = x.checkTunnelAnswer(&h); x.err != nil {
			return
		}
	}
	if h.status == http.StatusSwitchingProtocols {
		if x.upType == "" || !strings.EqualFold(h.upgrade, x.upType) {
			x.err = badResponse("101 switching to %q when %q was asked for", h.upgrade, x.upType)
			return
		}
		c.nc.SetReadDeadline(time.Time{})
		// From here the two connections end each other; the request's
		// context has no more say.
		c.unwatch()
		watching = false
		x.done = true
		if x.tunnel != nil {
			x.spliceH2(&h)
			return
		}
		x.splice(&h)
		return
	}
	if !h.bodyless(x.r.Method) && (h.contentLength < 0 || int64(c.br.Buffered()) < h.contentLength) {
		// The body is still to come, for as long as it takes. A body that
		// is all in the buffer reads nothing more from the socket: the
		// deadline stays until the next exchange sets its own (an idle
		// connection's peek does not look at deadlines), a timer change
		// saved per request.
		c.nc.SetReadDeadline(time.Time{})
	}
	x.relay(&h, sendErr == nil)
}

// send writes the head and the body, framed as the head says: exactly
// Content-Length bytes, or chunks. A failure to read the client's body sets
// x.bodyErr.
func (x *exchange) send(head []byte, body io.Reader) error {
	nc := x.c.nc
	if body == nil {
		_, err := nc.Write(head)
		return err
	}
	buf := x.buf
	cl := x.r.ContentLength
	if cl >= 0 {
		// The head and the body's first bytes go in one write.
		n := copy(buf, head)
		if n < len(head) {
			if _, err := nc.Write(head); err != nil {
				return err
			}
			n = 0
		}
		left := cl
		for {
			m := 0
			var rerr error
			if left > 0 {
				room := buf[n:]
				if int64(len(room)) > left {
					room = room[:left]
				}
				m, rerr = body.Read(room)
				left -= int64(m)
			}
			if left == 0 && rerr == nil {
				// The body's own end is its verdict (a body the core
				// refuses fails there): look for it before the last
				// bytes go, so that the upstream never gets a whole
				// body the client did not send whole.
				var probe [1]byte
				var k int
				k, rerr = body.Read(probe[:])
				if k > 0 {
					rerr = errBodyTooLong
				}
			}
			if rerr != nil && rerr != io.EOF || left > 0 && rerr == io.EOF {
				if rerr == io.EOF {
					rerr = io.ErrUnexpectedEOF
				}
				x.bodyErr = rerr
				return rerr
			}
			if n+m > 0 {
				if _, err := nc.Write(buf[:n+m]); err != nil {
					return err
				}
			}
			n = 0
			if left == 0 {
				return nil
			}
		}
	}
	// Chunked: each read goes out as one chunk, its size line in the 18
	// bytes kept in front and its CRLF behind.
	if _, err := nc.Write(head); err != nil {
		return err
	}
	const pre = 18
	for {
		m, rerr := body.Read(buf[pre : len(buf)-2])
		if m > 0 {
			sz := appendHex(buf[:0:pre], m)
			start := pre - len(sz)
			copy(buf[start:], sz)
			buf[pre+m], buf[pre+m+1] = '\r', '\n'
			if _, err := nc.Write(buf[start : pre+m+2]); err != nil {
				return err
			}
		}
		if rerr == io.EOF {
			end := append(buf[:0], "0\r\n"...)
			for k, vs := range x.r.Trailer {
				if !hopByHop(k, "") {
					end = appendFields(end, k, vs)
				}
			}
			end = append(end, "\r\n"...)
			_, err := nc.Write(end)
			return err
		}
		if rerr != nil {
			x.bodyErr = rerr
			return rerr
		}
	}
}

// relay passes a final response to the client: its end-to-end fields, then
// its body through w, which frames it for the client. A failure once the
// status is written aborts the client's response (http.ErrAbortHandler):
// a truncated body must not look complete.
func (x *exchange) relay(h *respHead, reusable bool) {
	w, c := x.w, x.c
	hdr := w.Header()
	// One array holds every value; each field's slice of it has no room
	// to grow, so that a repeated field (Set-Cookie) appends to a copy.
	vals := make([]string, len(h.fields)+1)
	for i, f := range h.fields {
		if hopByHop(f.name, h.connTokens) && !(h.chunked && strings.EqualFold(f.name, "Trailer")) {
			continue
		}
		k := http.CanonicalHeaderKey(f.name)
		vals[i] = f.value
		if prior, ok := hdr[k]; ok {
			hdr[k] = append(prior, f.value)
		} else {
			hdr[k] = vals[i : i+1 : i+1]
		}
	}
	bodyless := h.bodyless(x.r.Method)
	if h.contentLength >= 0 && h.status != http.StatusNoContent {
		cl := h.clText
		if cl == "" {
			cl = strconv.FormatInt(h.contentLength, 10)
		}
		vals[len(h.fields)] = cl
		hdr["Content-Length"] = vals[len(h.fields):]
	}
	if _, ok := hdr["Content-Type"]; !ok {
		// An answer the upstream sent without a type goes on without one,
		// as nginx passes it: the core must not guess one from the first
		// bytes, which would also make the answer depend on how they
		// arrived.
		hdr["Content-Type"] = nil
	}
	x.done = true
	w.WriteHeader(h.status)
	switch {
	case bodyless:
		x.keep = reusable && !h.close && c.br.Buffered() == 0
		return
	case h.contentLength >= 0:
		err := x.copyBody(nil, h.contentLength)
		if err != nil {
			x.abort(err)
		}
		// Bytes past the body are no answer to anything: the connection
		// goes.
		x.keep = reusable && !h.close && c.br.Buffered() == 0
		if c.br.Buffered() > 0 {
			x.p.log.Warn("proxy: upstream sent more than its Content-Length; connection dropped", "method", x.r.Method, "path", x.r.URL.Path)
		}
	case h.chunked:
		cr := &chunkedReader{br: c.br, scratch: x.buf[:0:0]}
		if err := x.copyBody(cr, -1); err != nil {
			x.abort(err)
		}
		fields, err := cr.trailerFields(h.fields[:0])
		if err != nil {
			x.abort(err)
		}
		for _, f := range fields {
			hdr[http.TrailerPrefix+http.CanonicalHeaderKey(f.name)] = append(hdr[http.TrailerPrefix+http.CanonicalHeaderKey(f.name)], f.value)
		}
		x.keep = reusable && !h.close && c.br.Buffered() == 0
	default:
		// Delimited by the close: all of it, and the connection is done.
		if err := x.copyBody(c.br, -1); err != nil {
			x.abort(err)
		}
	}
}

// copyBody copies a response body to the client with the pooled buffer,
// flushing whenever the upstream has nothing more at hand so that a
// streamed answer is not held back. n is the length when known; src nil
// means the n bytes that follow on the connection.
func (x *exchange) copyBody(src io.Reader, n int64) error {
	buf, br, w := x.buf, x.c.br, x.w
	var written int64
	for {
		var m int
		var rerr error
		if src != nil {
			m, rerr = src.Read(buf)
		} else if left := n - written; left == 0 {
			rerr = io.EOF
		} else {
			p := buf
			if int64(len(p)) > left {
				p = p[:left]
			}
			m, rerr = br.Read(p)
			if rerr == io.EOF {
				rerr = io.ErrUnexpectedEOF
			}
		}
		if m > 0 {
			if _, err := w.Write(buf[:m]); err != nil {
				return clientWriteErr{err}
			}
			written += int64(m)
			if br.Buffered() == 0 && written != n {
				flush(w)
			}
		}
		if rerr == io.EOF {
			if n >= 0 && written < n {
				return io.ErrUnexpectedEOF
			}
			return nil
		}
		if rerr != nil {
			return rerr
		}
	}
}

// clientWriteErr is a failure writing to the client, which is no fault of
// the upstream's.
type clientWriteErr struct{ err error }

func (e clientWriteErr) Error() string { return "writing to the client: " + e.err.Error() }
func (e clientWriteErr) Unwrap() error { return e.err }

func flush(w http.ResponseWriter) {
	if f, ok := w.(http.Flusher); ok {
		f.Flush()
		return
	}
	http.NewResponseController(w).Flush()
}

// abort ends a response whose head the client already has: the upstream
// connection is dropped and the client's cut (http.ErrAbortHandler), so
// that a truncated body never looks complete.
func (x *exchange) abort(err error) {
	x.keep = false
	x.c.nc.Close()
	var cw clientWriteErr
	switch {
	case errors.As(err, &cw) || x.r.Context().Err() != nil:
		x.p.log.Debug("proxy: client went away during the response", "method", x.r.Method, "path", x.r.URL.Path, "err", err)
	default:
		if ok, dropped := x.p.limit.allow(time.Now()); ok {
			attrs := []any{"method", x.r.Method, "path", x.r.URL.Path, "err", err}
			if dropped > 0 {
				attrs = append(attrs, "suppressed", dropped)
			}
			x.p.log.Warn("proxy: upstream response body failed; client response cut", attrs...)
		}
	}
	panic(http.ErrAbortHandler)
}

// splice completes an upgrade: the 101 goes to the client on its hijacked
// connection, then bytes are copied both ways until either side closes.
func (x *exchange) splice(h *respHead) {
	w, c := x.w, x.c
	hdr := w.Header()
	for _, f := range h.fields {
		if hopByHop(f.name, h.connTokens) {
			continue
		}
		hdr.Add(f.name, f.value)
	}
	hdr.Set("Connection", "Upgrade")
	hdr.Set("Upgrade", h.upgrade)
	cc, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		x.p.answer(w, x.r, http.StatusBadGateway, slog.LevelWarn, "proxy: cannot hijack the client connection for an upgrade", err)
		w.WriteHeader(http.StatusBadGateway)
		io.WriteString(w, "Bad Gateway: cannot switch protocols\n")
		return
	}
	defer cc.Close()
	bw := brw.Writer
	bw.WriteString("HTTP/1.1 101 Switching Protocols\r\n")
	hdr.Write(bw)
	bw.WriteString("\r\n")
	if n := c.br.Buffered(); n > 0 {
		b, _ := c.br.Peek(n)
		bw.Write(b)
	}
	if err := bw.Flush(); err != nil {
		return
	}
	if n := brw.Reader.Buffered(); n > 0 {
		b, _ := brw.Reader.Peek(n)
		if _, err := c.nc.Write(b); err != nil {
			return
		}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		bp := copyPool.Get().(*[]byte)
		defer copyPool.Put(bp)
		io.CopyBuffer(c.nc, cc, *bp)
		// The client is done sending: so is the upstream's reader.
		if cw, ok := c.nc.(interface{ CloseWrite() error }); ok {
			cw.CloseWrite()
		}
	}()
	io.CopyBuffer(cc, c.nc, x.buf)
	cc.Close()
	c.nc.Close()
	<-done
}

// peer describes the immediate client of a request.
type peer struct {
	addr     netip.AddrPort // invalid for UNIX socket peers
	local    netip.AddrPort // the listener's address, when known
	unixPeer bool
	tls      bool
}

// clientAddrs finds the client's and listener's addresses in the request's
// ConnInfo, falling back to r.RemoteAddr when the request did not come
// through the core.
func clientAddrs(r *http.Request) peer {
	var pe peer
	pe.tls = r.TLS != nil
	if ci, ok := conninfo.FromContext(r.Context()); ok {
		pe.unixPeer = ci.Transport == "unix"
		pe.tls = pe.tls || ci.TLS != nil
		pe.addr = addrPort(ci.RemoteAddr)
		pe.local = addrPort(ci.LocalAddr)
	}
	if !pe.addr.IsValid() && !pe.unixPeer {
		if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
			pe.addr = ap
		}
	}
	if !pe.local.IsValid() {
		if la, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
			pe.local = addrPort(la)
		}
	}
	pe.addr = netip.AddrPortFrom(pe.addr.Addr().Unmap(), pe.addr.Port())
	pe.local = netip.AddrPortFrom(pe.local.Addr().Unmap(), pe.local.Port())
	return pe
}

func addrPort(a net.Addr) netip.AddrPort {
	switch a := a.(type) {
	case *net.TCPAddr:
		return a.AddrPort()
	case nil:
		return netip.AddrPort{}
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return ap
}

// appendForwarded writes X-Forwarded-For/-Proto/-Host/-Prefix and
// Forwarded. A client's own copies survive only if its address is in
// trusted_proxies; then its chain is extended. Anyone else's are replaced,
// so a client cannot claim to be someone else.
func (p *proxy) appendForwarded(b []byte, r *http.Request, pe peer) []byte {
	trusted := p.trust.TrustsIP(pe.addr.Addr(), pe.unixPeer)
	in := r.Header
	proto := "http"
	if pe.tls {
		proto = "https"
	}

	// X-Forwarded-For: the trusted chain, then the client's address.
	var prior []string
	if trusted {
		prior = in.Values("X-Forwarded-For")
	}
	if (len(prior) > 0 || pe.addr.IsValid()) && allValid(prior) {
		b = append(b, "X-Forwarded-For: "...)
		for i, v := range prior {
			if i > 0 {
				b = append(b, ", "...)
			}
			b = append(b, v...)
		}
		if pe.addr.IsValid() {
			if len(prior) > 0 {
				b = append(b, ", "...)
			}
			b = pe.addr.Addr().AppendTo(b)
		}
		b = append(b, "\r\n"...)
	}
	if v := in.Get("X-Forwarded-Proto"); trusted && v != "" && validFieldValue(v) {
		b = appendField(b, "X-Forwarded-Proto", v)
	} else {
		b = appendField(b, "X-Forwarded-Proto", proto)
	}
	if v := in.Get("X-Forwarded-Host"); trusted && v != "" && validFieldValue(v) {
		b = appendField(b, "X-Forwarded-Host", v)
	} else if r.Host != "" {
		b = appendField(b, "X-Forwarded-Host", r.Host)
	}

	// X-Forwarded-Prefix tells an upstream mounted below a prefix how to
	// build its links; a client's own is never passed on as it is.
	prefix := ""
	if m, ok := router.MountFromContext(r.Context()); ok && m.Prefix != "/" {
		prefix = m.Prefix
	}
	if v := in.Get("X-Forwarded-Prefix"); trusted && v != "" {
		prefix = strings.TrimSuffix(v, "/") + prefix
	}
	if prefix != "" {
		b = appendField(b, "X-Forwarded-Prefix", prefix)
	}

	// RFC 7239: for=node;host=host;proto=scheme, quoted where not a token.
	var priorFw []string
	if trusted {
		priorFw = in.Values("Forwarded")
	}
	if !validFieldValue(r.Host) || !allValid(priorFw) {
		return b
	}
	b = append(b, "Forwarded: "...)
	for _, v := range priorFw {
		b = append(b, v...)
		b = append(b, ", "...)
	}
	b = append(b, "for="...)
	if a := pe.addr.Addr(); a.Is6() {
		b = append(b, `"[`...)
		b = a.AppendTo(b)
		b = append(b, `]"`...)
	} else if a.IsValid() {
		b = a.AppendTo(b)
	} else {
		b = append(b, "unknown"...)
	}
	if r.Host != "" {
		b = append(b, ";host="...)
		b = appendQuotedIfNeeded(b, r.Host)
	}
	b = append(b, ";proto="...)
	b = append(b, proto...)
	return append(b, "\r\n"...)
}

// namedIn reports whether the header name k is among names.
func namedIn(names []string, k string) bool {
	for _, n := range names {
		if n != "" && strings.EqualFold(n, k) {
			return true
		}
	}
	return false
}

// allValid reports whether every value can be sent as a field value.
func allValid(vs []string) bool {
	for _, v := range vs {
		if !validFieldValue(v) {
			return false
		}
	}
	return true
}

// appendQuotedIfNeeded appends s as an RFC 7230 token, or quoted when it is
// not one (a Host with a port has a colon, which a token cannot hold).
func appendQuotedIfNeeded(b []byte, s string) []byte {
	token := s != ""
	for i := 0; i < len(s); i++ {
		if !isTokenByte(s[i]) {
			token = false
			break
		}
	}
	if token {
		return append(b, s...)
	}
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		if c := s[i]; c == '\\' || c == '"' {
			b = append(b, '\\')
		}
		b = append(b, s[i])
	}
	return append(b, '"')
}

// fail answers a request the upstream could not serve: 400/413 (or the
// core's status) when reading the client's body failed (bodyErr), 504 on a
// timeout, 502 otherwise. Each is logged with the upstream's name (a burst
// of 20, then 5 lines a second, with a count of those dropped); a client
// that went away is logged at debug level only and gets nothing.
func (p *proxy) fail(w http.ResponseWriter, r *http.Request, err, bodyErr error) {
	status, msg := http.StatusBadGateway, "Bad Gateway: the upstream server is unavailable"
	level := slog.LevelWarn
	if bodyErr != nil {
		err = bodyErr
		status, msg, level = requestBodyStatus(err), "Bad Request: could not read the request body", slog.LevelInfo
		if status == http.StatusRequestEntityTooLarge {
			msg = "Request Entity Too Large"
		}
	} else if r.Context().Err() != nil {
		p.log.Debug("proxy: client went away", "method", r.Method, "path", r.URL.Path, "err", err)
		// nginx's 499: recorded by the access log, never seen by anyone.
		w.WriteHeader(499)
		return
	} else if isTimeout(err) {
		status, msg = http.StatusGatewayTimeout, "Gateway Timeout: the upstream server did not answer in time"
	}
	p.answer(w, r, status, level, "proxy: upstream request failed", err)
	if status < 500 {
		// The request body was not read to its end; the connection cannot
		// carry another request.
		w.Header().Set("Connection", "close")
	}
	w.WriteHeader(status)
	io.WriteString(w, withRequestID(r, msg, status)+"\n")
}

// failBuffering answers a request whose body could not be buffered: the
// client's status (400, 408, 413...) when reading it failed, 500 when the
// edge could not store it. Nothing has reached the upstream. Either way the
// body was not read to its end, so the connection closes.
func (p *proxy) failBuffering(w http.ResponseWriter, r *http.Request, err error) {
	status, msg, level := requestBodyStatus(err), "Bad Request: could not read the request body", slog.LevelInfo
	switch {
	case errors.Is(err, errSpool):
		status, msg, level = http.StatusInternalServerError, "Internal Server Error: could not buffer the request body", slog.LevelError
	case r.Context().Err() != nil:
		p.log.Debug("proxy: client went away", "method", r.Method, "path", r.URL.Path, "err", err)
		w.WriteHeader(499)
		return
	case status == http.StatusRequestEntityTooLarge:
		msg = "Request Entity Too Large"
	}
	p.answer(w, r, status, level, "proxy: request body refused before reaching the upstream", err)
	w.Header().Set("Connection", "close")
	w.WriteHeader(status)
	io.WriteString(w, withRequestID(r, msg, status)+"\n")
}

// answer logs a failed request (a burst of 20, then 5 lines a second, with a
// count of those dropped) and sets the headers of the short plain-text
// answer.
func (p *proxy) answer(w http.ResponseWriter, r *http.Request, status int, level slog.Level, logMsg string, err error) {
	if ok, dropped := p.limit.allow(time.Now()); ok {
		attrs := []any{"status", status, "method", r.Method, "path", r.URL.Path, "err", err}
		if dropped > 0 {
			attrs = append(attrs, "suppressed", dropped)
		}
		p.log.Log(r.Context(), level, logMsg, attrs...)
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
}

// requestBodyStatus maps a request-body read error to the status the client
// gets: the error's own (StatusError, 4xx only), 413 for http.MaxBytesError,
// else 400.
func requestBodyStatus(err error) int {
	var se StatusError
	if errors.As(err, &se) {
		if s := se.HTTPStatus(); s >= 400 && s < 500 {
			return s
		}
	}
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return http.StatusRequestEntityTooLarge
	}
	return http.StatusBadRequest
}

func isTimeout(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// withRequestID adds the request id to a 5xx answer's text, so that a user
// who reports it hands over the key to the log lines.
func withRequestID(r *http.Request, msg string, status int) string {
	if id := RequestID(r); id != "" && status >= 500 {
		msg += "\nrequest id: " + id
	}
	return msg
}
