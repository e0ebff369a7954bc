package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"tlsedge/accept"
	"tlsedge/config"
	"tlsedge/conninfo"
	"tlsedge/peercred"
	"tlsedge/policy"
	"tlsedge/server/httpcore"
	"tlsedge/tlsadapter"
)

// ErrServerClosed is returned by Wait after Stop.
var ErrServerClosed = errors.New("server: stopped")

// Server is one listening server: the seeds' ServerAdapter and the HTTP
// server it drives, in one value. Its methods are safe for concurrent use.
type Server struct {
	cfg Config
	log *slog.Logger

	mu      sync.Mutex // serialises Start, Stop, Restart
	running *run       // nil when stopped
	ready   atomic.Bool
	last    *run // the most recent run, for Wait
}

// run is everything one Start creates and the matching Stop tears down.
type run struct {
	lns     []*listener
	limiter *accept.Limiter     // max_connections, counted from accept to close
	gen     atomic.Pointer[gen] // the configuration in service
	genMu   sync.Mutex
	genNext chan struct{}   // closed when gen is replaced
	retired sync.WaitGroup  // earlier generations still draining
	ctx     context.Context // cancelled on stop: in-flight handshakes end
	cancel  context.CancelFunc
	loops   sync.WaitGroup // accept loops
	conns   sync.WaitGroup // connection goroutines
	done    chan struct{}  // closed when the run is fully stopped
	errOnce sync.Once
	err     error // first fatal accept error
	stopped atomic.Bool
	pp      ppCounters // proxy_protocol_accept
}

// New validates cfg and returns a stopped Server.
func New(cfg Config) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.Registry == nil {
		cfg.Registry = tlsadapter.NewRegistry()
	}
	if !cfg.Registry.Has(cfg.TLS.SSLModule) {
		return nil, config.KeyError(cfg.KeyPrefix()+"ssl_module", "unknown module %q; registered: %s%s", cfg.TLS.SSLModule,
			strings.Join(cfg.Registry.Names(), ", "), config.SuggestValue(cfg.TLS.SSLModule, cfg.Registry.Names()))
	}
	name := cfg.Name
	if name == "" {
		name = "main"
	}
	return &Server{cfg: cfg, log: log.With("server", name)}, nil
}

// Config returns a copy of the server's configuration.
func (s *Server) Config() Config {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cfg
}

// Listen binds the listeners and builds the SSL adapter and the request core
// without accepting yet, so a caller can drop privileges between binding and
// serving. Start accepts afterwards.
func (s *Server) Listen(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.running != nil {
		return errors.New("server: already started")
	}
	r, err := s.start(ctx)
	if err != nil {
		return err
	}
	s.running, s.last = r, r
	return nil
}

// Start begins accepting connections, binding first if Listen was not
// called, and returns once the server accepts. Starting a started server
// does nothing.
func (s *Server) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.running == nil {
		r, err := s.start(ctx)
		if err != nil {
			return err
		}
		s.running, s.last = r, r
	}
	r := s.running
	if s.ready.Load() {
		return nil
	}
	for _, l := range r.lns {
		r.loops.Add(1)
		go s.acceptLoop(r, l)
	}
	// The ACME module may need its start-up orders validated by tls-alpn-01
	// probes answered on this very listener, so it obtains only now.
	if st, ok := r.gen.Load().term.Adapter().(tlsadapter.ACMEStarter); ok {
		if err := st.Start(ctx); err != nil {
			s.running = nil
			s.stop(ctx, r)
			return err
		}
	}
	s.ready.Store(true)
	return nil
}

func (s *Server) start(ctx context.Context) (*run, error) {
	lns, err := listen(ctx, &s.cfg)
	if err != nil {
		return nil, err
	}
	g, err := s.newGen(ctx, &s.cfg, lns, nil)
	if err != nil {
		for _, l := range lns {
			l.Close()
		}
		return nil, err
	}
	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	r := &run{lns: lns, ctx: rctx, cancel: cancel, done: make(chan struct{}), genNext: make(chan struct{}),
		limiter: accept.NewLimiter(s.cfg.Core.MaxConnections)}
	r.gen.Store(g)
	return r, nil
}

// setGen puts g in service and wakes connections waiting to be handed to it.
func (r *run) setGen(g *gen) {
	r.genMu.Lock()
	defer r.genMu.Unlock()
	r.gen.Store(g)
	close(r.genNext)
	r.genNext = make(chan struct{})
}

// current is the generation in service and a channel closed when it is
// replaced.
func (r *run) current() (*gen, <-chan struct{}) {
	r.genMu.Lock()
	defer r.genMu.Unlock()
	return r.gen.Load(), r.genNext
}

// hosts are the names clients are expected to use for this server: its
// socket_host when that names one address or host. A server on every
// interface (0.0.0.0, ::) or a UNIX socket expects no particular name, so
// none is given: a certificate for example.com must not be refused for not
// covering localhost. (The internal CA always covers localhost itself.)
func (s *Server) hosts() []string {
	h := strings.Trim(s.cfg.SocketHost, "[]")
	if s.cfg.SocketFile != "" || h == "" {
		return nil
	}
	if ip := net.ParseIP(h); ip != nil && ip.IsUnspecified() {
		return nil
	}
	return []string{h}
}

// acceptLoop runs the one accept loop (package accept) on l: every
// connection holds a max_connections slot from accept to close, handshake
// included, and the excess is shed at once (a fast 503 on a plain listener,
// a close on a TLS one, where nothing can be said before a handshake).
func (s *Server) acceptLoop(r *run, l *listener) {
	defer r.loops.Done()
	lp := &accept.Loop{
		Listener: l,
		Limiter:  r.limiter,
		Serve:    func(nc *accept.Conn) { s.serveConn(r, l, nc) },
		Refuse: func(nc net.Conn) {
			g := r.gen.Load()
			g.core.RefuseConn(nc, g.term.Scheme() == "http")
		},
		Accepted: func() { r.gen.Load().core.CountAccept() },
		Allow:    func(nc net.Conn) bool { return s.ppAllow(r, nc) },
		Logger:   s.log,
		Conns:    &r.conns,
	}
	if err := lp.Run(r.ctx); err != nil && !r.stopped.Load() {
		r.gen.Load().core.CountSocketError()
		r.errOnce.Do(func() { r.err = err })
		s.log.Error("accept failed; listener stopped", "listener", l.Addr().String(), "err", err)
	}
}

// serveConn runs on the connection's own goroutine: it builds the
// connection's facts (the one place they are built), checks UNIX peer
// credentials, passes the connection through the one TLS terminator, then
// serves it with the core until it closes or is parked.
func (s *Server) serveConn(r *run, l *listener, raw *accept.Conn) {
	g := r.gen.Load() // this connection's configuration, whatever reloads follow
	if tc, ok := raw.NetConn().(*net.TCPConn); ok && !g.cfg.Nodelay {
		_ = tc.SetNoDelay(false) // Go sets TCP_NODELAY by default
	}
	if g.cfg.ProxyProtocolAccept && !s.readProxyHeader(r.ctx, r, raw, &g.cfg) {
		raw.Close()
		return
	}
	info := conninfo.New(raw)
	info.Server, info.Transport = g.cfg.Name, l.kind
	if l.kind == "unix" && g.cfg.Peer.Peercreds {
		// Who is on the other end is read from the kernel once, before any
		// byte is read, and checked before the client is served at all.
		creds, err := peercred.Get(raw)
		if err != nil {
			s.log.Warn("cannot read peer credentials; closing", "listener", l.Addr().String(), "err", err)
			raw.Close()
			return
		}
		if g.names != nil {
			g.names.Resolve(creds)
		}
		if err := g.peers.Allow(creds); err != nil {
			s.log.Info("peer refused at accept", "listener", l.Addr().String(), "peer", creds, "err", err)
			raw.Close()
			return
		}
		info.Peer = creds
		if g.policy.NeedsExe() {
			info.PeerExe = peerExe(creds.PID)
		}
	}
	if !g.admitConn(s.log, info, policy.StageAccept) {
		raw.Close()
		return
	}
	// Only a server with quotas pays for the wrapper that gives their
	// connection slots back at close.
	var nc net.Conn = raw
	var qc *quotaConn
	if g.quota != nil {
		qc = &quotaConn{Conn: raw}
		nc = qc
		g.takeQuota(qc, info, policy.StageAccept)
	}
	conn, state, err := g.term.Wrap(r.ctx, nc)
	if err != nil {
		s.log.Debug("connection dropped before HTTP", "remote_addr", raw.RemoteAddr().String(), "err", err)
		nc.Close()
		return
	}
	info.TLS = state
	if info.Policy == "" && !g.admitConn(s.log, info, policy.StageHandshake) {
		conn.Close()
		return
	}
	if qc != nil {
		g.takeQuota(qc, info, policy.StageHandshake)
	}
	// Served on this goroutine: an idle keep-alive connection is parked
	// without one (and its grown stack) after a short wait, so a fresh
	// goroutine here would only cost a second stack growth per connection.
	// A reload may have retired this generation's core during the
	// handshake: the connection goes to the core in service, waiting
	// (without spinning) for the new generation if the swap is under way.
	for {
		g, replaced := r.current()
		if g.core.TryServeConn(conn, info) {
			return
		}
		select {
		case <-replaced:
		case <-r.ctx.Done():
			conn.Close()
			return
		}
	}
}

// Stop stops accepting, lets in-flight requests finish within
// shutdown_timeout (then closes what is left), and returns only once every
// connection goroutine has ended and the sockets are released. Stopping a
// stopped server does nothing.
func (s *Server) Stop(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.running
	if r == nil {
		return nil
	}
	s.ready.Store(false)
	s.running = nil
	return s.stop(ctx, r)
}

func (s *Server) stop(ctx context.Context, r *run) error {
	r.stopped.Store(true)
	var errs []error
	for _, l := range r.lns {
		if err := l.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			errs = append(errs, err)
		}
	}
	r.loops.Wait()
	g := r.gen.Load()
	sctx, cancel := context.WithTimeout(ctx, s.cfg.ShutdownTimeout)
	defer cancel()
	if err := g.core.Shutdown(sctx); err != nil {
		s.log.Warn("shutdown_timeout reached; closing the remaining connections", "timeout", s.cfg.ShutdownTimeout.String())
		g.core.Close()
		// A connection woken from the idle parker runs on a goroutine the
		// core started, not one of r.conns: wait for those here.
		_ = g.core.Shutdown(context.Background())
	}
	r.cancel() // ends handshakes still in progress
	r.retired.Wait()
	r.conns.Wait()
	if err := g.term.Close(); err != nil {
		errs = append(errs, err)
	}
	closeMounts(g.mounts)
	close(r.done)
	return errors.Join(errs...)
}

// Restart stops the server and starts it again with the same configuration.
func (s *Server) Restart(ctx context.Context) error {
	if err := s.Stop(ctx); err != nil {
		return err
	}
	return s.Start(ctx)
}

// Ready reports whether the server is accepting connections.
func (s *Server) Ready() bool { return s.ready.Load() }

// Wait blocks until the server has been stopped, or until ctx ends. It
// returns ErrServerClosed after Stop, or the accept error that stopped a
// listener.
func (s *Server) Wait(ctx context.Context) error {
	s.mu.Lock()
	r := s.last
	s.mu.Unlock()
	if r == nil {
		return ErrServerClosed
	}
	select {
	case <-r.done:
	case <-ctx.Done():
		return ctx.Err()
	}
	if r.err != nil {
		return r.err
	}
	return ErrServerClosed
}

// Reload asks the SSL adapter to re-read its certificates.
func (s *Server) Reload(ctx context.Context) error {
	s.mu.Lock()
	r := s.running
	s.mu.Unlock()
	if r == nil {
		return errors.New("server: not running")
	}
	return r.gen.Load().term.Reload(ctx)
}

// BindAddr is the address of the first listener (with the real port when
// socket_port is 0), or nil when stopped.
func (s *Server) BindAddr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.running == nil {
		return nil
	}
	return s.running.lns[0].Addr()
}

// Addrs lists the addresses of every listener.
func (s *Server) Addrs() []net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.running == nil {
		return nil
	}
	out := make([]net.Addr, len(s.running.lns))
	for i, l := range s.running.lns {
		out[i] = l.Addr()
	}
	return out
}

// Scheme is "https" or "http", from the SSL adapter; "" when stopped.
func (s *Server) Scheme() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.running == nil {
		return ""
	}
	return s.running.gen.Load().term.Scheme()
}

// Base is where the server can be reached: "https://host:port" for TCP (the
// configured host, or localhost for a wildcard address), or the socket path.
func (s *Server) Base() string {
	addr := s.BindAddr()
	if addr == nil {
		return ""
	}
	cfg := s.Config()
	ta, ok := addr.(*net.TCPAddr)
	if !ok {
		if cfg.SocketFile != "" && len(cfg.Listeners) == 0 {
			return cfg.SocketFile
		}
		return addr.String() // an inherited socket: its own name, not the configured one
	}
	host := strings.Trim(cfg.SocketHost, "[]")
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() || len(cfg.Listeners) > 0 {
		host = "localhost"
	}
	return s.Scheme() + "://" + net.JoinHostPort(host, strconv.Itoa(ta.Port))
}

// Stats returns a snapshot of the request core's figures; the zero value when
// stopped.
func (s *Server) Stats() httpcore.Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.running == nil {
		return httpcore.Stats{}
	}
	return s.running.gen.Load().core.Stats()
}

// Terminator returns the running TLS terminator (and through it the SSL
// adapter), or nil when stopped.
func (s *Server) Terminator() *tlsadapter.Terminator {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.running == nil {
		return nil
	}
	return s.running.gen.Load().term
}

// OpenConnections is the number of connections holding a max_connections
// slot: accepted and not yet closed, handshakes included.
func (s *Server) OpenConnections() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.running == nil {
		return 0
	}
	return s.running.limiter.Open()
}

// Check builds what Start would (mount table, SSL adapter) without binding a
// socket, and reports what is wrong.
//
// For the acme module it checks storage, the CA and each name's stored
// certificate without building the adapter, which could place orders; the
// findings are returned as Check results, failures also as the error.
func (s *Server) Check(ctx context.Context) ([]string, error) {
	_, mounts, err := buildHandler(&s.cfg)
	if err != nil {
		return nil, err
	}
	closeMounts(mounts)
	if _, err := policy.NewPeerPolicy(s.cfg.Peer, policy.PeerPolicyConfig{}); err != nil {
		return nil, fmt.Errorf("%speercreds: %w", s.cfg.KeyPrefix(), err)
	}
	notes, errs := s.checkStartup()
	if err := errors.Join(errs...); err != nil {
		return notes, err
	}
	p := tlsadapter.Params{
		Options: s.cfg.TLS, Logger: s.log, Hosts: s.hosts(), Host: s.cfg.SocketHost, Port: s.cfg.SocketPort,
		DataDir: s.cfg.DataDir, TLSConfig: s.cfg.TLSConfig, Storage: s.cfg.Storage,
	}
	lines := notes
	report := tlsadapter.Check(s.cfg.TLS, s.hosts(), s.cfg.TLSConfig)
	for l := range strings.SplitSeq(strings.TrimSpace(report.String()), "\n") {
		if l != "" {
			lines = append(lines, fmt.Sprintf("server %s: %s", s.displayName(), l))
		}
	}
	if !report.OK() {
		return lines, fmt.Errorf("%sTLS settings or certificates have errors (listed above)", s.cfg.KeyPrefix())
	}
	if s.cfg.TLS.SSLModule == "acme" {
		more, err := s.checkACME(ctx, p)
		return append(lines, more...), err
	}
	if s.cfg.TLS.SSLModule == "internal" && !internalCAExists(s.cfg.DataDir) {
		// Check writes nothing: the CA is made by the first start.
		lines = append(lines, fmt.Sprintf("server %s: the local CA will be created in %s at the first start",
			s.displayName(), tlsadapter.DevCADir(s.cfg.DataDir)))
		return lines, nil
	}
	a, err := s.cfg.Registry.New(ctx, s.cfg.TLS.SSLModule, p)
	if err != nil {
		return lines, fmt.Errorf("%sssl_module %s: %w", s.cfg.KeyPrefix(), s.cfg.TLS.SSLModule, err)
	}
	lines = append(lines, certificateSummary(s.displayName(), a, time.Now())...)
	return lines, a.Close()
}

func (s *Server) checkACME(ctx context.Context, p tlsadapter.Params) ([]string, error) {
	checks, err := tlsadapter.CheckACME(ctx, p)
	if err != nil {
		return nil, fmt.Errorf("%sacme: %w", s.cfg.KeyPrefix(), err)
	}
	var lines []string
	var errs []error
	for _, c := range checks {
		lines = append(lines, c.String())
		if !c.OK {
			errs = append(errs, fmt.Errorf("%s%s", s.cfg.KeyPrefix(), c.String()))
		}
	}
	return lines, errors.Join(errs...)
}

// guard is what stands in front of every handler and app of a server,
// whatever its mount: the edge-owned headers a client sent are removed (one
// list, policy.EdgeHeaders), then server.policy and the per-path
// peer-credential rules apply. Before all of them, on TLS, a request whose
// Host belongs on another connection is answered 421 (misdirect).
func guard(next http.Handler, peers *policy.PeerPolicy, pol *policy.Policy, quota *policy.Limiter, trust *policy.Trust, log *slog.Logger, mis *misdirect) http.Handler {
	if peers.HasMounts() {
		next = peers.Middleware(next)
	}
	next = quotaGuard(next, quota)
	next = policyGuard(next, pol, log)
	next = policy.EdgeHeaders(next, trust)
	if mis != nil {
		next = mis.wrap(next)
	}
	return next
}
