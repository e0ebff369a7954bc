package tlsadapter

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"tlsedge/internal/boundedread"
	"tlsedge/policy"
)

// CertSource supplies certificates to a Wrapper. The builtin adapter backs it
// with certificate files; the internal and acme adapters with their issuers.
type CertSource interface {
	// Certificate picks the certificate for hello. known is false when no
	// certificate covers hello.ServerName and a default is returned (or nil
	// when the source has no default).
	Certificate(hello *tls.ClientHelloInfo) (cert *tls.Certificate, known bool, err error)
	// HasName reports whether the source holds a certificate for host; plain
	// HTTP is redirected only to such names.
	HasName(host string) bool
}

// Wrapper runs tlsedge's TLS policy over accepted connections: sniffing for
// plain HTTP, the handshake under a timeout, SNI checks, client-certificate
// modes and allow-lists, and statistics. Adapters embed one and add their
// CertSource; it is safe for concurrent use.
type Wrapper struct {
	opts     Options
	port     int
	log      *slog.Logger
	rl       *rateLog
	src      CertSource
	userCfg  *tls.Config // the seeds' ssl_context, when given
	base     *tls.Config // shared by all connections; holds the ticket keys
	reject   *tls.Config // no certificates: crypto/tls answers unrecognized_name
	policy   atomic.Pointer[tls.Config]
	stats    counters
	timeout  time.Duration
	cancel   context.CancelFunc
	rotation chan struct{} // closed when the ticket rotation goroutine ends
}

// NewWrapper builds a Wrapper from p.Options (or p.TLSConfig when a library
// user handed one in; then ssl_ciphers, versions, curves and client auth come
// from it). The caller must Close it.
func NewWrapper(p Params, src CertSource) (*Wrapper, error) {
	if p.Logger == nil {
		p.Logger = slog.New(slog.DiscardHandler)
	}
	w := &Wrapper{
		opts:    p.Options,
		port:    p.Port,
		log:     p.Logger,
		rl:      &rateLog{log: p.Logger, burst: 10},
		src:     src,
		userCfg: p.TLSConfig,
		reject:  &tls.Config{},
		timeout: p.Options.SSLHandshakeTimeout,
	}
	if w.timeout == 0 {
		w.timeout = defaultHandshakeTimeout
	}
	pol, err := w.buildPolicy()
	if err != nil {
		return nil, err
	}
	w.policy.Store(pol)
	w.base = &tls.Config{GetConfigForClient: w.configForClient}
	ctx, cancel := context.WithCancel(context.Background())
	w.cancel = cancel
	w.rotation = make(chan struct{})
	go w.rotateTicketKeys(ctx)
	return w, nil
}

// buildPolicy makes the per-connection config from the options; it reads
// ssl_client_ca, so it is redone on reload.
func (w *Wrapper) buildPolicy() (*tls.Config, error) {
	o := w.opts
	alpn := o.SSLALPN
	if len(alpn) == 0 {
		alpn = defaultALPN
	}
	if w.userCfg != nil {
		c := w.userCfg.Clone()
		if len(c.Certificates) == 0 && c.GetCertificate == nil && w.src != nil {
			c.GetCertificate = w.getCertificate
		}
		if len(c.NextProtos) == 0 {
			c.NextProtos = alpn
		}
		return c, nil
	}
	if err := o.Validate(); err != nil {
		return nil, err
	}
	sel, _ := policy.ParseCipherString(o.SSLCiphers) // checked by Validate
	c := &tls.Config{
		MinVersion:             uint16(o.SSLMinVersion.Or(policy.DefaultMinVersion)),
		MaxVersion:             uint16(o.SSLMaxVersion.Or(policy.DefaultMaxVersion)),
		CipherSuites:           sel.Suites,
		CurvePreferences:       curvePreferences(o.SSLCurves),
		NextProtos:             alpn,
		SessionTicketsDisabled: !o.SSLSessionTickets,
		ClientAuth:             o.SSLClientAuth.TLS(),
		GetCertificate:         w.getCertificate,
	}
	if o.SSLClientCA != "" {
		pem, err := boundedread.ReadFile(o.SSLClientCA)
		if err != nil {
			return nil, fmt.Errorf("ssl_client_ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("ssl_client_ca: %s holds no PEM certificate", o.SSLClientCA)
		}
		c.ClientCAs = pool
	}
	if len(o.SSLClientAllow) > 0 {
		allow, err := policy.ParseAllowList(o.SSLClientAllow)
		if err != nil {
			return nil, fmt.Errorf("ssl_client_allow: %w", err)
		}
		c.VerifyConnection = policy.VerifyConnection(o.SSLClientAuth, allow)
	}
	return c, nil
}

// curvePreferences maps ssl_curves; X25519MLKEM768 is kept in front unless
// listed as -X25519MLKEM768. nil lets Go choose (post-quantum hybrids first).
func curvePreferences(names []string) []tls.CurveID {
	if len(names) == 0 {
		return nil
	}
	out := []tls.CurveID{tls.X25519MLKEM768}
	for _, n := range names {
		n = strings.ToLower(n)
		if n == "-x25519mlkem768" {
			out = out[1:]
			continue
		}
		if id, ok := curveIDs[n]; ok && tls.CurveID(id) != tls.X25519MLKEM768 {
			out = append(out, tls.CurveID(id))
		}
	}
	return out
}

// ReloadPolicy rereads ssl_client_ca; on failure the old policy stays.
func (w *Wrapper) ReloadPolicy() error {
	pol, err := w.buildPolicy()
	if err != nil {
		return err
	}
	w.policy.Store(pol)
	return nil
}

// CountReload records the outcome of a certificate reload in the statistics.
func (w *Wrapper) CountReload(err error) {
	if err != nil {
		w.stats.reloadFailures.Add(1)
	} else {
		w.stats.reloads.Add(1)
	}
}

// TLSStats implements StatsReporter.
func (w *Wrapper) TLSStats() TLSStats { return w.stats.snapshot() }

// Scheme implements part of Adapter.
func (w *Wrapper) Scheme() string { return "https" }

// Close stops the ticket-key rotation.
func (w *Wrapper) Close() error {
	w.cancel()
	<-w.rotation
	return nil
}

func (w *Wrapper) getCertificate(h *tls.ClientHelloInfo) (*tls.Certificate, error) {
	c, _, err := w.src.Certificate(h)
	return c, err
}

// configForClient runs first in every handshake: the SNI is vetted here,
// before any certificate lookup (which for ACME may mean issuance).
func (w *Wrapper) configForClient(h *tls.ClientHelloInfo) (*tls.Config, error) {
	sc, _ := h.Conn.(*sniffConn)
	if h.ServerName != "" && !validHostName(h.ServerName) {
		sc.mark(ReasonBadSNI)
		return w.reject, nil
	}
	if w.opts.SSLRejectUnknownSNI && w.src != nil {
		if _, known, err := w.src.Certificate(h); err == nil && !known {
			sc.mark(ReasonUnknownSNI)
			return w.reject, nil
		}
	}
	return w.policy.Load(), nil
}

// rotateTicketKeys installs a fresh session-ticket key every rotation period,
// keeping the previous six so tickets stay usable for a week of rotations.
func (w *Wrapper) rotateTicketKeys(ctx context.Context) {
	defer close(w.rotation)
	every := w.opts.SSLSessionTicketKeyRotation
	if every == 0 {
		every = defaultTicketRotation
	}
	var keys [][32]byte
	rotate := func() {
		var k [32]byte
		_, _ = rand.Read(k[:])
		keys = append([][32]byte{k}, keys...)
		if len(keys) > 7 {
			keys = keys[:7]
		}
		w.base.SetSessionTicketKeys(keys)
	}
	rotate()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			rotate()
		}
	}
}

// sniffConn replays the bytes read while sniffing, and carries the refusal
// reason that configForClient found for this connection.
type sniffConn struct {
	net.Conn
	buf    []byte
	reason string
}

func (c *sniffConn) Read(p []byte) (int, error) {
	if len(c.buf) > 0 {
		n := copy(p, c.buf)
		c.buf = c.buf[n:]
		if len(c.buf) == 0 {
			c.buf = nil // the handshake has it; keep no sniff buffer per connection
		}
		return n, nil
	}
	return c.Conn.Read(p)
}

// SyscallConn exposes the socket, so the request core can wait on it while
// a connection idles (and park it without a goroutine). The replayed bytes
// are the start of the ClientHello, long consumed by then; the core waits on
// the socket only after a read through every layer has timed out, which
// proves nothing is buffered above it.
func (c *sniffConn) SyscallConn() (syscall.RawConn, error) {
	sc, ok := c.Conn.(syscall.Conn)
	if !ok {
		return nil, errors.ErrUnsupported
	}
	return sc.SyscallConn()
}

func (c *sniffConn) mark(reason string) {
	if c != nil {
		c.reason = reason
	}
}

// ErrPlaintext and ErrNotTLS are what Wrap returns (wrapped or bare) when it
// refused a connection before any handshake; the server need not log them,
// the adapter already counted and logged them rate-limited.
var (
	ErrPlaintext = errors.New("tlsadapter: plain HTTP request on a TLS port")
	ErrNotTLS    = errors.New("tlsadapter: not a TLS connection")
)

var aLongTimeAgo = time.Unix(1, 0)

// Wrap implements Adapter: sniff, answer plain HTTP, else handshake within
// the handshake timeout. It blocks only the calling goroutine.
func (w *Wrapper) Wrap(ctx context.Context, raw net.Conn) (net.Conn, *tls.ConnectionState, error) {
	deadline := time.Now().Add(w.timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	_ = raw.SetDeadline(deadline)
	// Shutdown interrupts a sniff or handshake in progress.
	stop := context.AfterFunc(ctx, func() { _ = raw.SetDeadline(aLongTimeAgo) })
	sc := &sniffConn{Conn: raw}
	kind, err := sniff(sc)
	remote := addrString(raw.RemoteAddr())
	switch kind {
	case kindTLS:
	case kindHTTP:
		w.stats.fail(ReasonPlaintext)
		w.rl.log1(ctx, slog.LevelInfo, "plain HTTP request on the TLS port", "remote_addr", remote, "action", w.opts.SSLPlaintextAction.String())
		w.answerPlain(sc, deadline)
		stop()
		_ = raw.Close()
		return nil, nil, ErrPlaintext
	case kindSSLv2:
		w.stats.fail(ReasonSSLv2)
		w.rl.log1(ctx, slog.LevelDebug, "tls handshake failed", "remote_addr", remote, "reason", ReasonSSLv2)
		_, _ = raw.Write(alertProtocolVersion)
		stop()
		closeGently(raw)
		return nil, nil, fmt.Errorf("%w: SSLv2-style hello", ErrNotTLS)
	default:
		reason := ReasonNotTLS
		if err != nil {
			reason = classifyError(ctx, err)
		}
		w.stats.fail(reason)
		w.rl.log1(ctx, slog.LevelDebug, "tls handshake failed", "remote_addr", remote, "reason", reason, "err", err)
		stop()
		_ = raw.Close()
		if err != nil {
			return nil, nil, fmt.Errorf("tlsadapter: reading from %s: %w", remote, err)
		}
		return nil, nil, ErrNotTLS
	}
	tc := tls.Server(sc, w.base)
	hctx, cancel := context.WithDeadline(ctx, deadline)
	err = tc.HandshakeContext(hctx)
	cancel()
	stopped := stop()
	if err == nil && !stopped {
		err = ctx.Err() // shut down at the last moment
	}
	if err != nil {
		reason := sc.reason
		if reason == "" {
			reason = classifyError(ctx, err)
		}
		w.stats.fail(reason)
		w.rl.log1(ctx, slog.LevelDebug, "tls handshake failed", "remote_addr", remote, "reason", reason, "err", err)
		_ = raw.Close()
		return nil, nil, fmt.Errorf("tlsadapter: handshake with %s: %s: %w", remote, reason, err)
	}
	_ = raw.SetDeadline(time.Time{})
	cs := tc.ConnectionState()
	w.stats.handshakes.Add(1)
	if cs.DidResume {
		w.stats.resumed.Add(1)
	}
	switch {
	case cs.Version == tls.VersionTLS13:
		w.stats.tls13.Add(1)
	case cs.Version == tls.VersionTLS12:
		w.stats.tls12.Add(1)
	default:
		w.stats.tlsOld.Add(1)
	}
	return tc, &cs, nil
}

// sniff reads until classify can decide.
func sniff(sc *sniffConn) (streamKind, error) {
	buf := make([]byte, 0, 64)
	for {
		if k := classify(buf); k != kindNeedMore {
			sc.buf = buf
			return k, nil
		}
		n, err := sc.Conn.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err != nil {
			sc.buf = buf
			if k := classify(buf); k != kindNeedMore {
				return k, nil
			}
			return kindOther, err
		}
	}
}

// maxPlainHead bounds how much of a plain request head we read.
const maxPlainHead = 16 << 10

// answerPlain reads the request head (to learn Host and the target), writes
// the configured answer and closes without a reset.
func (w *Wrapper) answerPlain(sc *sniffConn, deadline time.Time) {
	raw := sc.Conn
	if w.opts.SSLPlaintextAction == PlaintextClose {
		closeGently(raw)
		return
	}
	if d := time.Now().Add(2 * time.Second); d.Before(deadline) {
		_ = raw.SetReadDeadline(d)
	}
	head := sc.buf
	req := parsePlainHead(head)
	for !req.done && len(head) < maxPlainHead {
		chunk := make([]byte, 4096)
		n, err := raw.Read(chunk)
		head = append(head, chunk[:n]...)
		req = parsePlainHead(head)
		if err != nil {
			break
		}
	}
	var resp []byte
	if w.opts.SSLPlaintextAction == PlaintextRedirect && req.host != "" && w.src != nil && w.src.HasName(req.host) {
		port := w.port
		if a, ok := raw.LocalAddr().(*net.TCPAddr); ok {
			port = a.Port
		}
		resp = redirect308(req.host, port, req.target)
	}
	if resp == nil {
		resp = plaintext400()
	}
	_ = raw.SetWriteDeadline(time.Now().Add(2 * time.Second))
	_, _ = raw.Write(resp)
	closeGently(raw)
}

// closeGently half-closes and drains what the client still sends (a request
// body, say) before closing, so the kernel does not answer unread data with
// a reset that could destroy our response in flight.
func closeGently(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
		_ = c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		_, _ = io.CopyN(io.Discard, c, 256<<10)
	}
	_ = c.Close()
}

func addrString(a net.Addr) string {
	if a == nil {
		return ""
	}
	return a.String()
}
