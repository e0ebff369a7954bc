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
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/mholt/acmez/v3"

	"tlsedge/internal/boundedread"
	"tlsedge/policy"
)

// Terminator is the one TLS terminator: every connection of a TLS server,
// whatever its adapter, passes through its Wrap. It sniffs plain HTTP and
// answers it as ssl_plaintext_action says, runs the handshake under
// ssl_handshake_timeout, vets the SNI, applies the versions, ciphers, curves,
// ALPN, session tickets, client-certificate mode and allow-list, and counts
// every outcome by reason. The adapter behind it only supplies certificates,
// so no adapter (builtin, internal, acme, or one registered from Go) can
// skip a rule.
//
// For ssl_module none the terminator passes connections through as plain
// HTTP; TLS options are then a start-up error, never silently unused.
//
// A Terminator owns its adapter: Close closes both. It is safe for
// concurrent use.
type Terminator struct {
	module    string
	opts      Options
	port      int
	log       *slog.Logger
	rl        *rateLog
	src       Adapter
	challenge ChallengeResponder // nil unless the adapter answers validation probes
	plain     bool               // ssl_module none
	userCfg   *tls.Config        // the seeds' ssl_context, when given
	userCerts bool               // userCfg brings its own certificates
	base      *tls.Config        // shared by all connections; holds the ticket keys
	reject    *tls.Config        // no certificates: crypto/tls answers unrecognized_name
	policy    atomic.Pointer[tls.Config]
	stats     counters
	timeout   time.Duration
	cancel    context.CancelFunc
	rotation  chan struct{} // closed when the ticket rotation goroutine ends
	// ticketsRotated is when the ticket key in front was made (Unix ns);
	// ticketsShared: the keys come from the cluster's ring (tickets.go).
	ticketsRotated atomic.Int64
	ticketsShared  bool
	closeOnce      sync.Once
	closeErr       error
}

// ChallengeResponder is implemented by adapters that must answer a CA's
// validation probe in the handshake itself (ACME tls-alpn-01, RFC 8737).
// It is the one narrow exception to the server's policy: a probe is
// handshaken with the configuration returned here, then closed by the
// terminator without a byte of application data, so it can never reach the
// request core.
type ChallengeResponder interface {
	// ChallengeConfig returns the configuration for hello when hello is a
	// probe the adapter answers, else nil. It must match the probe's exact
	// shape (for tls-alpn-01: an SNI and acme-tls/1 as the only protocol).
	ChallengeConfig(hello *tls.ClientHelloInfo) *tls.Config
}

// reloadNotifier is implemented by adapters that reload by themselves (the
// builtin adapter watches its files): the terminator rereads its own policy
// files (ssl_client_ca) after each such reload and counts the outcome.
type reloadNotifier interface {
	OnReload(func(error))
}

// newTerminator puts src behind the one terminator. module is the
// ssl_module src was built for; options it cannot honour are an error.
func newTerminator(module string, p Params, src Adapter) (*Terminator, error) {
	if p.Logger == nil {
		p.Logger = slog.New(slog.DiscardHandler)
	}
	if err := CheckModuleOptions(module, p.Options, p.TLSConfig); err != nil {
		return nil, err
	}
	t := &Terminator{
		module:  module,
		opts:    p.Options,
		port:    p.Port,
		log:     p.Logger,
		rl:      &rateLog{log: p.Logger, burst: 10},
		src:     src,
		userCfg: p.TLSConfig,
		reject:  &tls.Config{},
		timeout: p.Options.SSLHandshakeTimeout,
	}
	if _, ok := src.(noneAdapter); ok {
		t.plain = true
		return t, nil
	}
	if t.userCfg != nil {
		t.userCerts = len(t.userCfg.Certificates) > 0 || t.userCfg.GetCertificate != nil
	}
	if t.timeout == 0 {
		t.timeout = defaults.SSLHandshakeTimeout
	}
	t.challenge, _ = src.(ChallengeResponder)
	pol, err := t.buildPolicy()
	if err != nil {
		return nil, err
	}
	t.policy.Store(pol)
	t.base = &tls.Config{GetConfigForClient: t.configForClient}
	if n, ok := src.(reloadNotifier); ok {
		n.OnReload(func(err error) {
			if err == nil {
				err = t.ReloadPolicy() // ssl_client_ca may have changed too
			}
			t.CountReload(err)
		})
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.cancel = cancel
	t.rotation = make(chan struct{})
	t.startTicketKeys(ctx, p)
	return t, nil
}

// buildPolicy makes the per-connection config from the options; it reads
// ssl_client_ca, so it is redone on reload.
func (t *Terminator) buildPolicy() (*tls.Config, error) {
	return policyConfig(t.opts, t.userCfg, t.getCertificate)
}

// policyConfig is the handshake configuration the options (or a library
// user's tls.Config) describe, certificates from getCert. `tlsedge check`
// builds it too, so what check accepts is what the server runs.
func policyConfig(o Options, userCfg *tls.Config, getCert func(*tls.ClientHelloInfo) (*tls.Certificate, error)) (*tls.Config, error) {
	alpn := o.SSLALPN
	if len(alpn) == 0 {
		alpn = defaults.SSLALPN
	}
	if userCfg != nil {
		c := userCfg.Clone()
		if len(c.Certificates) == 0 && c.GetCertificate == nil {
			c.GetCertificate = getCert
		}
		if len(c.NextProtos) == 0 {
			c.NextProtos = alpn
		}
		// acme-tls/1 is only ever negotiated by a validation probe, which
		// never gets this config.
		c.NextProtos = slices.DeleteFunc(slices.Clone(c.NextProtos), func(p string) bool { return p == acmez.ACMETLS1Protocol })
		c.GetConfigForClient = nil
		return c, nil
	}
	if err := o.Validate(); err != nil {
		return nil, err
	}
	sel := o.SSLCiphers.Selection()
	c := &tls.Config{
		MinVersion:             uint16(o.SSLMinVersion.Or(policy.DefaultMinVersion)),
		MaxVersion:             uint16(o.SSLMaxVersion.Or(policy.DefaultMaxVersion)),
		CipherSuites:           sel.Suites,
		CurvePreferences:       o.SSLCurves.IDs(),
		NextProtos:             alpn,
		SessionTicketsDisabled: !o.SSLSessionTickets,
		ClientAuth:             o.SSLClientAuth.TLS(),
		GetCertificate:         getCert,
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
	if allow := o.SSLClientAllow.AllowList(); allow != nil {
		c.VerifyConnection = policy.VerifyConnection(o.SSLClientAuth, allow)
	}
	return c, nil
}

// curvePreferences maps ssl_curves (checked by Validate) to Go's IDs, in the
// order given, each once. X25519MLKEM768 comes first unless some entry is
// -X25519MLKEM768. nil lets Go choose (post-quantum hybrids first).
func curvePreferences(names []string) []tls.CurveID {
	if len(names) == 0 {
		return nil
	}
	var out []tls.CurveID
	add := func(id tls.CurveID) {
		if !slices.Contains(out, id) {
			out = append(out, id)
		}
	}
	dropHybrid := slices.ContainsFunc(names, func(n string) bool { return strings.EqualFold(n, "-x25519mlkem768") })
	if !dropHybrid {
		add(tls.X25519MLKEM768)
	}
	for _, n := range names {
		id, ok := curveIDs[strings.ToLower(n)]
		if ok && !(dropHybrid && tls.CurveID(id) == tls.X25519MLKEM768) {
			add(tls.CurveID(id))
		}
	}
	if len(out) == 0 {
		// Only the hybrid was excluded: Go's classical groups, never an
		// empty list (which crypto/tls would read as "Go's defaults",
		// hybrid included).
		return []tls.CurveID{tls.X25519, tls.CurveP256, tls.CurveP384}
	}
	return out
}

// Adapter returns the certificate source behind the terminator, for its
// optional abilities (CAFiler, ACMEStarter, ACMEStatsReporter,
// CertificateLister).
func (t *Terminator) Adapter() Adapter { return t.src }

// Module is the ssl_module the terminator serves.
func (t *Terminator) Module() string { return t.module }

// Scheme is "https", or "http" for ssl_module none.
func (t *Terminator) Scheme() string {
	if t.plain {
		return "http"
	}
	return "https"
}

// ReloadPolicy rereads ssl_client_ca; on failure the old policy stays.
func (t *Terminator) ReloadPolicy() error {
	if t.plain {
		return nil
	}
	pol, err := t.buildPolicy()
	if err != nil {
		return err
	}
	t.policy.Store(pol)
	return nil
}

// Reload re-reads the adapter's certificates and the terminator's own
// files: everything is parsed and checked before anything is swapped, and
// on failure what was serving stays.
func (t *Terminator) Reload(ctx context.Context) error {
	err := t.src.Reload(ctx)
	if err == nil {
		err = t.ReloadPolicy()
	}
	if _, counted := t.src.(reloadNotifier); !counted && !t.plain {
		// An adapter that reloads by itself had its outcome counted by the
		// hook; the policy read above only reports an error to the caller.
		t.CountReload(err)
	}
	return err
}

// CountReload records the outcome of a certificate reload in the statistics.
func (t *Terminator) CountReload(err error) {
	if err != nil {
		t.stats.reloadFailures.Add(1)
	} else {
		t.stats.reloads.Add(1)
	}
}

// TLSStats returns the handshake counters; the zero value for plain HTTP.
func (t *Terminator) TLSStats() TLSStats { return t.stats.snapshot() }

// Close stops the ticket-key rotation and closes the adapter.
func (t *Terminator) Close() error {
	t.closeOnce.Do(func() {
		if t.cancel != nil {
			t.cancel()
			<-t.rotation
		}
		t.closeErr = t.src.Close()
	})
	return t.closeErr
}

// getCertificate hands crypto/tls the certificate configForClient chose
// for this connection; a handshake that did not pass there (a library
// user's own GetConfigForClient) asks the adapter.
func (t *Terminator) getCertificate(h *tls.ClientHelloInfo) (*tls.Certificate, error) {
	if sc, ok := h.Conn.(*sniffConn); ok && sc.cert != nil {
		return sc.cert, nil
	}
	c, _, err := t.src.Certificate(h)
	return c, err
}

// configForClient runs first in every handshake: a validation probe is
// recognised by its exact shape, the SNI is vetted before any certificate
// lookup (which for ACME may mean issuance), and the certificate is looked
// up once for the connection.
func (t *Terminator) configForClient(h *tls.ClientHelloInfo) (*tls.Config, error) {
	sc, _ := h.Conn.(*sniffConn)
	if t.challenge != nil {
		if cfg := t.challenge.ChallengeConfig(h); cfg != nil {
			sc.markChallenge()
			return cfg, nil
		}
	}
	if h.ServerName != "" && !validHostName(h.ServerName) {
		sc.mark(ReasonBadSNI)
		return t.reject, nil
	}
	if !t.userCerts {
		cert, known, err := t.src.Certificate(h)
		if err != nil {
			sc.mark(ReasonUnknownSNI)
			return nil, err
		}
		if !known && t.opts.SSLRejectUnknownSNI {
			sc.mark(ReasonUnknownSNI)
			return t.reject, nil
		}
		if cert == nil {
			sc.mark(ReasonUnknownSNI)
			return t.reject, nil
		}
		if sc != nil {
			sc.cert = cert
		}
	}
	return t.policy.Load(), nil
}

// rotateTicketKeys installs a fresh session-ticket key every rotation period
// and keeps the one before it, so a ticket resumes for at most two periods
// (24 hours at the default rotation of 12), then needs a full handshake.
// These keys are this terminator's own: the single-node case (a cluster
// shares a ring instead, see shareTicketKeys).
func (t *Terminator) rotateTicketKeys(ctx context.Context, every time.Duration) {
	defer close(t.rotation)
	var keys [][32]byte
	rotate := func() {
		var k [32]byte
		_, _ = rand.Read(k[:])
		keys = append([][32]byte{k}, keys...)
		if len(keys) > ticketKeysKept {
			keys = keys[:ticketKeysKept]
		}
		t.base.SetSessionTicketKeys(keys)
		t.ticketsRotated.Store(time.Now().UnixNano())
	}
	rotate()
	tk := time.NewTicker(every)
	defer tk.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tk.C:
			rotate()
		}
	}
}

// ticketKeysKept is how many session-ticket keys decrypt tickets: the
// current one and the one before.
const ticketKeysKept = 2

// sniffConn replays the bytes read while sniffing, and carries what
// configForClient decided for this connection.
type sniffConn struct {
	net.Conn
	buf       []byte
	reason    string
	cert      *tls.Certificate // chosen in configForClient
	challenge bool             // a validation probe, never served
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

func (c *sniffConn) markChallenge() {
	if c != nil {
		c.challenge = true
	}
}

// ErrPlaintext and ErrNotTLS are what Wrap returns (wrapped or bare) when it
// refused a connection before any handshake; the server need not log them,
// the terminator already counted and logged them rate-limited.
var (
	ErrPlaintext = errors.New("tlsadapter: plain HTTP request on a TLS port")
	ErrNotTLS    = errors.New("tlsadapter: not a TLS connection")
)

// ErrChallenge is returned by Wrap for a connection that was a CA's
// validation probe (ACME tls-alpn-01): it was answered in the handshake and
// closed, and is not counted as a failure.
var ErrChallenge = errors.New("tlsadapter: answered a validation probe")

var aLongTimeAgo = time.Unix(1, 0)

// Wrap sniffs raw, answers plain HTTP, else runs the handshake within
// ssl_handshake_timeout (or ctx's deadline, if sooner) and returns the
// connection to serve with its TLS state. It blocks only the calling
// goroutine; run it off the accept loop. On error raw is closed, after an
// answer where one helps (plain HTTP on the TLS port). For ssl_module none
// it returns raw as it is.
func (t *Terminator) Wrap(ctx context.Context, raw net.Conn) (net.Conn, *tls.ConnectionState, error) {
	if t.plain {
		return raw, nil, nil
	}
	deadline := time.Now().Add(t.timeout)
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
		t.stats.fail(ReasonPlaintext)
		t.rl.log1(ctx, slog.LevelInfo, "plain HTTP request on the TLS port", "remote_addr", remote, "action", t.opts.SSLPlaintextAction.String())
		t.answerPlain(sc, deadline)
		stop()
		_ = raw.Close()
		return nil, nil, ErrPlaintext
	case kindSSLv2:
		t.stats.fail(ReasonSSLv2)
		t.rl.log1(ctx, slog.LevelDebug, "tls handshake failed", "remote_addr", remote, "reason", ReasonSSLv2)
		_, _ = raw.Write(alertProtocolVersion)
		stop()
		closeGently(raw)
		return nil, nil, fmt.Errorf("%w: SSLv2-style hello", ErrNotTLS)
	default:
		reason := ReasonNotTLS
		if err != nil {
			reason = classifyError(ctx, err)
		}
		t.stats.fail(reason)
		t.rl.log1(ctx, slog.LevelDebug, "tls handshake failed", "remote_addr", remote, "reason", reason, "err", err)
		stop()
		_ = raw.Close()
		if err != nil {
			return nil, nil, fmt.Errorf("tlsadapter: reading from %s: %w", remote, err)
		}
		return nil, nil, ErrNotTLS
	}
	tc := tls.Server(sc, t.base)
	hctx, cancel := context.WithDeadline(ctx, deadline)
	err = tc.HandshakeContext(hctx)
	cancel()
	stopped := stop()
	if err == nil && !stopped {
		err = ctx.Err() // shut down at the last moment
	}
	if sc.challenge && err == nil {
		// A validation probe: answered by the handshake itself, never served.
		_ = tc.Close()
		_ = raw.Close()
		return nil, nil, ErrChallenge
	}
	if err != nil {
		reason := sc.reason
		if reason == "" {
			reason = classifyError(ctx, err)
		}
		t.stats.fail(reason)
		t.rl.log1(ctx, slog.LevelDebug, "tls handshake failed", "remote_addr", remote, "reason", reason, "err", err)
		_ = raw.Close()
		return nil, nil, fmt.Errorf("tlsadapter: handshake with %s: %s: %w", remote, reason, err)
	}
	sc.cert = nil
	_ = raw.SetDeadline(time.Time{})
	cs := tc.ConnectionState()
	t.stats.handshakes.Add(1)
	if cs.DidResume {
		t.stats.resumed.Add(1)
	}
	switch {
	case cs.Version == tls.VersionTLS13:
		t.stats.tls13.Add(1)
	case cs.Version == tls.VersionTLS12:
		t.stats.tls12.Add(1)
	default:
		t.stats.tlsOld.Add(1)
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
func (t *Terminator) answerPlain(sc *sniffConn, deadline time.Time) {
	raw := sc.Conn
	if t.opts.SSLPlaintextAction == PlaintextClose {
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
	if t.opts.SSLPlaintextAction == PlaintextRedirect && req.host != "" && t.hasName(req.host) {
		// The port the client named in Host is the one it reached this
		// TLS port on; without one, our own port.
		port := req.port
		if port == 0 {
			port = t.port
			if a, ok := raw.LocalAddr().(*net.TCPAddr); ok {
				port = a.Port
			}
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

// hasName reports whether a plain request for host may be redirected: the
// adapter serves it (or, with a library user's certificates, any valid
// name).
func (t *Terminator) hasName(host string) bool {
	if t.userCerts {
		return validHostName(host)
	}
	return t.src.HasName(host)
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
