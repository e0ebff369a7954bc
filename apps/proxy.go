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
	"net/http/httputil"
	"net/netip"
	"net/url"
	"strings"
	"sync/atomic"
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

// proxy is a reverse proxy to one upstream, built on httputil.ReverseProxy:
// it streams bodies both ways, handles upgrades and drops hop-by-hop headers.
// This type adds the edge's policy: forwarding headers, identity headers,
// timeouts, error mapping and, with proxy_request_buffering, reading and
// checking a request's whole body before the upstream is contacted (see
// requestBuffer).
type proxy struct {
	target   string   // the mount target, for log lines
	upstream *url.URL // scheme, host and base path requests are sent to
	trust    *policy.Trust
	identity HeaderHook
	tlsHook  HeaderHook
	log      *slog.Logger
	limit    *logLimiter    // for the per-request failure lines
	ppPools  bool           // pool upstream connections per PROXY header
	buffer   *requestBuffer // nil: request bodies stream
	rp       *httputil.ReverseProxy
	tr       *http.Transport
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
	p := &proxy{
		target:   target,
		upstream: u,
		trust:    trust,
		identity: env.IdentityHeaders,
		tlsHook:  env.TLSHeaders,
		log:      log,
		limit:    newLogLimiter(5, 20),
		ppPools:  env.Options.ProxyProtocol,
	}
	if env.Options.ProxyRequestBuffering {
		dir := env.Options.TempPath()
		if err := checkTempDir(dir); err != nil {
			return nil, fmt.Errorf("%w: proxy_temp_path: cannot make a directory for buffered request bodies under %s: %w (set proxy_temp_path to a directory the server's user may write)", ErrBadOption, dir, err)
		}
		p.buffer = &requestBuffer{memLimit: env.Options.BufferSize(), dir: dir}
	}
	if p.identity == nil {
		p.identity = PeerHeaders
	}
	if p.tlsHook == nil {
		p.tlsHook = SSLHeaders
	}
	connectTimeout := env.Options.ConnectTimeout()
	dialer := &net.Dialer{Timeout: connectTimeout, KeepAlive: 30 * time.Second}
	sendProxyHeader := env.Options.ProxyProtocol
	dial := func(ctx context.Context, _, _ string) (net.Conn, error) {
		c, err := dialer.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		if sendProxyHeader {
			if err := writeProxyHeader(ctx, c, connectTimeout); err != nil {
				c.Close()
				return nil, fmt.Errorf("apps: sending PROXY header: %w", err)
			}
		}
		return c, nil
	}
	tlsConf := &tls.Config{MinVersion: tls.VersionTLS12}
	if env.UpstreamTLS != nil {
		tlsConf = env.UpstreamTLS.Clone()
	}
	if tlsConf.ServerName == "" {
		tlsConf.ServerName = u.Hostname()
	}
	tr := &http.Transport{
		// Never route through an HTTP_PROXY from the environment: the upstream
		// is named by the mount.
		Proxy:                 nil,
		DialContext:           dial,
		TLSClientConfig:       tlsConf,
		TLSHandshakeTimeout:   connectTimeout,
		ResponseHeaderTimeout: env.Options.ResponseTimeout(),
		ExpectContinueTimeout: time.Second,
		IdleConnTimeout:       90 * time.Second,
		MaxIdleConns:          512,
		MaxIdleConnsPerHost:   128,
		// The client's Accept-Encoding goes through untouched and the body
		// comes back as the upstream encoded it.
		DisableCompression: true,
	}
	p.tr = tr
	p.rp = &httputil.ReverseProxy{
		Rewrite:      p.rewrite,
		Transport:    tr,
		ErrorHandler: p.fail,
		ErrorLog:     slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		// Zero: ReverseProxy still flushes at once for unknown-length and
		// event-stream responses; fixed-length bodies flush as buffers fill.
		FlushInterval: 0,
	}
	return p, nil
}

func (p *proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if p.buffer != nil && r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0 {
		sb, err := p.buffer.read(r)
		if err != nil {
			p.failBuffering(w, r, err)
			return
		}
		defer sb.Close()
		r = buffered(r, sb)
	}
	p.rp.ServeHTTP(w, r)
}

// Close drops the idle upstream connections; requests in flight finish.
func (p *proxy) Close() error {
	p.tr.CloseIdleConnections()
	return nil
}

// rewrite turns the inbound request into the upstream one. ReverseProxy has
// already removed hop-by-hop headers and every Forwarded/X-Forwarded-* header
// from pr.Out.
func (p *proxy) rewrite(pr *httputil.ProxyRequest) {
	pr.SetURL(p.upstream)
	// Keep the Host the client asked for, as most edges do: upstreams build
	// links and pick virtual hosts from it. A client without one gets the
	// upstream's.
	pr.Out.Host = pr.In.Host
	if pr.Out.Host == "" {
		pr.Out.Host = p.upstream.Host
	}
	pe := clientAddrs(pr.In)
	// Client-sent identity headers, and forwarding headers from untrusted
	// peers, never reach this far: policy.EdgeHeaders removed them in front
	// of every handler.
	p.setForwarded(pr, pe)
	p.identity(pr.In, pr.Out.Header)
	p.tlsHook(pr.In, pr.Out.Header)
	if _, spooled := pr.Out.Body.(spoolReader); !spooled && pr.Out.Body != nil && pr.Out.Body != http.NoBody {
		pr.Out.Body = &watchedBody{ReadCloser: pr.Out.Body}
	}
	ctx := context.WithValue(pr.Out.Context(), clientAddrKey{}, pe)
	pr.Out = pr.Out.WithContext(ctx)
	if p.ppPools {
		// The Transport pools connections by URL host, and the dialer ignores
		// it (TLS names come from TLSClientConfig, the Host header from
		// pr.Out.Host). A host per PROXY header gives each client its own
		// pool, so a connection never carries a request whose client its
		// header does not name.
		pr.Out.URL.Host = proxyPoolHost(pe)
	}
}

// peer describes the immediate client of a request.
type peer struct {
	addr     netip.AddrPort // invalid for UNIX socket peers
	local    netip.AddrPort // the listener's address, when known
	unixPeer bool
	tls      bool
}

type clientAddrKey struct{}

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

// setForwarded writes X-Forwarded-For/-Proto/-Host/-Prefix and Forwarded. A client's
// own copies survive only if its address is in trusted_proxies; then its
// chain is extended. Anyone else's are replaced, so a client cannot claim to
// be someone else.
func (p *proxy) setForwarded(pr *httputil.ProxyRequest, pe peer) {
	trusted := p.trust.TrustsIP(pe.addr.Addr(), pe.unixPeer)
	in, out := pr.In.Header, pr.Out.Header
	proto := "http"
	if pe.tls {
		proto = "https"
	}

	var xff []string
	if trusted {
		xff = append(xff, in.Values("X-Forwarded-For")...)
	}
	if pe.addr.IsValid() {
		xff = append(xff, pe.addr.Addr().String())
	}
	if len(xff) > 0 {
		out.Set("X-Forwarded-For", strings.Join(xff, ", "))
	}
	if v := in.Get("X-Forwarded-Proto"); trusted && v != "" {
		out.Set("X-Forwarded-Proto", v)
	} else {
		out.Set("X-Forwarded-Proto", proto)
	}
	if v := in.Get("X-Forwarded-Host"); trusted && v != "" {
		out.Set("X-Forwarded-Host", v)
	} else if pr.In.Host != "" {
		out.Set("X-Forwarded-Host", pr.In.Host)
	}

	// X-Forwarded-Prefix tells an upstream mounted below a prefix how to
	// build its links. ReverseProxy leaves it alone, so without this a client
	// could choose it.
	prefix := ""
	if m, ok := router.MountFromContext(pr.In.Context()); ok && m.Prefix != "/" {
		prefix = m.Prefix
	}
	if v := in.Get("X-Forwarded-Prefix"); trusted && v != "" {
		prefix = strings.TrimSuffix(v, "/") + prefix
	}
	out.Del("X-Forwarded-Prefix")
	if prefix != "" {
		out.Set("X-Forwarded-Prefix", prefix)
	}

	// RFC 7239: for=node;host=host;proto=scheme, quoted where not a token.
	node := "unknown"
	if a := pe.addr.Addr(); a.Is6() {
		node = `"[` + a.String() + `]"`
	} else if a.IsValid() {
		node = a.String()
	}
	elem := "for=" + node
	if pr.In.Host != "" {
		elem += ";host=" + quoteIfNeeded(pr.In.Host)
	}
	elem += ";proto=" + proto
	if prior := in.Values("Forwarded"); trusted && len(prior) > 0 {
		elem = strings.Join(prior, ", ") + ", " + elem
	}
	out.Set("Forwarded", elem)
}

// quoteIfNeeded returns s as an RFC 7230 token, or quoted when it is not one
// (a Host with a port has a colon, which a token cannot hold).
func quoteIfNeeded(s string) string {
	for _, c := range s {
		if !isTokenChar(c) {
			return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
		}
	}
	return s
}

func isTokenChar(c rune) bool {
	return c < 127 && c > 32 && !strings.ContainsRune(`()<>@,;:\"/[]?={}`, c)
}

// watchedBody remembers the first error reading the client's request body, so
// that a failed upload is answered as the client's fault (400/413), not the
// upstream's (502).
type watchedBody struct {
	io.ReadCloser
	err atomic.Pointer[error]
}

func (b *watchedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil && err != io.EOF {
		b.err.CompareAndSwap(nil, &err)
	}
	return n, err
}

func (b *watchedBody) readErr() error {
	if e := b.err.Load(); e != nil {
		return *e
	}
	return nil
}

// fail answers a request the upstream could not serve: 400/413 (or the
// core's status) when reading the client's body failed, 504 on a timeout,
// 502 otherwise. Each is logged with the upstream's name (a burst of 20, then
// 5 lines a second, with a count of those dropped); a client that went away
// is logged at debug level only and gets nothing.
func (p *proxy) fail(w http.ResponseWriter, r *http.Request, err error) {
	status, msg := http.StatusBadGateway, "Bad Gateway: the upstream server is unavailable"
	level := slog.LevelWarn
	if bw, ok := r.Body.(*watchedBody); ok && bw.readErr() != nil {
		err = bw.readErr()
		status, msg, level = requestBodyStatus(err), "Bad Request: could not read the request body", slog.LevelInfo
		if status == http.StatusRequestEntityTooLarge {
			msg = "Request Entity Too Large"
		}
	} else if r.Context().Err() != nil && errors.Is(err, context.Canceled) {
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
	io.WriteString(w, msg+"\n")
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
	io.WriteString(w, msg+"\n")
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
