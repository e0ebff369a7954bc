package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime/debug"
	"slices"
	"sync/atomic"
	"time"

	"tlsedge/config"
	"tlsedge/peercred"
	"tlsedge/policy"
	"tlsedge/server/httpcore"
	"tlsedge/tlsadapter"
)

// gen is what one configuration builds for a running server: its TLS
// terminator (with the SSL adapter behind it), request core, handler and
// peer policy. A reload builds a new
// generation beside the running one and swaps it in whole; connections keep
// the generation they were accepted under.
type gen struct {
	cfg     Config
	term    *tlsadapter.Terminator // the one terminator, for every ssl_module
	core    *httpcore.Core
	handler *swapHandler       // the core's handler; a reload may swap what it serves
	serve   http.Handler       // what handler serves in this generation
	peers   *policy.PeerPolicy // accept-time peer-credential policy; nil allows all
	policy  *policy.Policy     // server.policy; nil when no rule is set
	quota   *policy.Limiter    // policy_quota; nil when none
	names   *peercred.Resolver // nil unless peercreds_resolve
	mounts  []http.Handler     // resolved mount targets, closed when retired
}

// swapHandler lets a reload change what a request core serves without
// replacing the core (and resetting its statistics).
type swapHandler struct {
	h        atomic.Pointer[http.Handler]
	reserved atomic.Pointer[func(*http.Request) bool] // the status mounts; nil for none
	trust    atomic.Pointer[policy.Trust]             // trusted_proxies, for request ids
}

func newSwapHandler(h http.Handler, reserved func(*http.Request) bool, trust *policy.Trust) *swapHandler {
	s := &swapHandler{}
	s.swap(h, reserved, trust)
	return s
}

// swap puts what a configuration serves in service.
func (s *swapHandler) swap(h http.Handler, reserved func(*http.Request) bool, trust *policy.Trust) {
	s.h.Store(&h)
	s.reserved.Store(&reserved)
	s.trust.Store(trust)
}

// prepare is the core's Options.Prepare: every request gets its id, judged
// against the trusted_proxies in service, before it waits for a worker.
func (s *swapHandler) prepare(r *http.Request) {
	policy.AssignRequestID(r, s.trust.Load())
}

// isReserved is the core's Options.Reserved: the status mounts of the
// configuration in service, which a reload may change without a new core.
func (s *swapHandler) isReserved(r *http.Request) bool {
	if f := *s.reserved.Load(); f != nil {
		return f(r)
	}
	return false
}

func (s *swapHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	(*s.h.Load()).ServeHTTP(w, r)
}

// newGen builds a generation for c. With prev (a reload), it reuses prev's
// terminator when the TLS options are unchanged and prev's core when the core
// options are, and changes nothing of prev's: the caller commits.
//
// A panic while building (a bug turning some option value into a crash) is
// returned as an error, so a reload refuses the configuration and the
// running generation keeps serving, and a start fails with a message.
func (s *Server) newGen(ctx context.Context, c *Config, lns []*listener, prev *gen) (_ *gen, err error) {
	g := &gen{cfg: *c}
	defer func() {
		if p := recover(); p != nil {
			s.log.Error("building the configuration panicked", "panic", p, "stack", string(debug.Stack()))
			err = fmt.Errorf("%sbuilding the configuration panicked: %v", c.KeyPrefix(), p)
			if prev != nil {
				err = fmt.Errorf("reload refused: %w", err)
			}
			closeMounts(g.mounts)
			if g.term != nil && (prev == nil || g.term != prev.term) {
				g.term.Close()
			}
		}
	}()
	if c.Peer.PeercredsResolve {
		g.names = peercred.NewResolver(peercred.ResolverConfig{Logger: s.log})
	}
	if g.peers, err = policy.NewPeerPolicy(c.Peer, policy.PeerPolicyConfig{Resolver: g.names, Logger: s.log}); err != nil {
		return nil, fmt.Errorf("%speercreds: %w", c.KeyPrefix(), err)
	}
	g.policy = policy.NewPolicy(c.Rule.Policy.Parsed(), g.peers.Resolver())
	g.quota = policy.NewLimiter(c.Rule.Quota.Quotas())
	handler, mounts, err := buildHandler(c)
	if err != nil {
		return nil, err
	}
	g.mounts = mounts
	defer func() {
		if err != nil {
			closeMounts(g.mounts)
		}
	}()
	mis := &misdirect{}
	handler = guard(handler, g.peers, g.policy, g.quota, c.Apps.TrustedProxies.Trust(), s.log, mis)
	if c.Middleware != nil {
		handler = c.Middleware(handler)
	}
	g.serve = policy.HSTS(handler, c.TLS.HSTS())

	switch {
	case prev != nil && sameOptions(&prev.cfg.TLS, &c.TLS):
		g.term = prev.term
	case prev != nil && (prev.cfg.TLS.SSLModule == "acme" || c.TLS.SSLModule == "acme"):
		return nil, fmt.Errorf("%sacme: changing ACME or SSL module settings needs a restart", c.KeyPrefix())
	default:
		host, port := c.SocketHost, 0
		if a, ok := lns[0].Addr().(*net.TCPAddr); ok {
			port = a.Port
		} else {
			host = ""
		}
		g.term, err = c.Registry.New(ctx, c.TLS.SSLModule, tlsadapter.Params{
			Options: c.TLS, Logger: s.log, Hosts: s.hosts(), Host: host, Port: port,
			DataDir: c.DataDir, TLSConfig: c.TLSConfig, Storage: c.Storage,
			Server: c.Name, TicketKeys: c.TicketKeys,
		})
		if err != nil {
			return nil, fmt.Errorf("%sssl_module %s: %w", c.KeyPrefix(), c.TLS.SSLModule, err)
		}
	}
	mis.term = g.term
	if prev != nil && sameOptions(&prev.cfg.Core, &c.Core) {
		g.core, g.handler = prev.core, prev.handler
		mis.core = g.core
		return g, nil
	}
	g.handler = newSwapHandler(g.serve, reservedFor(c.Mount), c.Apps.TrustedProxies.Trust())
	if g.core, err = newCore(c, g.handler, s.log, lns[0].Addr()); err != nil {
		if prev == nil || g.term != prev.term {
			g.term.Close()
		}
		return nil, err
	}
	mis.core = g.core
	return g, nil
}

// sameOptions reports whether two option structs hold the same values.
func sameOptions[T any](a, b *T) bool {
	fa, fb := config.Fields(a), config.Fields(b)
	for i := range fa {
		if fa[i].String() != fb[i].String() {
			return false
		}
	}
	return true
}

func closeMounts(mounts []http.Handler) {
	for _, h := range mounts {
		if c, ok := h.(io.Closer); ok {
			c.Close()
		}
	}
}

// listenerKeys are the options a reload cannot change: the sockets are bound
// once.
var listenerKeys = []string{"socket_host", "socket_port", "socket_file", "socket_file_mode", "socket_file_owner",
	"socket_file_group", "socket_queue_size", "reuse_port", "nodelay"}

// Reconfigure applies c to a running server without dropping a connection:
// it builds the new generation first, and only if all of it builds swaps it
// in; on any error the server keeps what it had. The sockets cannot change
// (a restart is needed for socket_* and reuse_port), nor can ACME settings.
// Connections already open finish under the generation they started with;
// a replaced request core drains within shutdown_timeout.
func (s *Server) Reconfigure(ctx context.Context, c Config) error {
	if err := c.Validate(); err != nil {
		return err
	}
	if c.Registry == nil {
		c.Registry = s.cfg.Registry
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	old, next := s.cfg.Options(), c.Options()
	var changed []string
	for _, k := range listenerKeys {
		a, _ := old.Lookup(k)
		b, _ := next.Lookup(k)
		if a.String() != b.String() {
			changed = append(changed, c.KeyPrefix()+k)
		}
	}
	if len(changed) > 0 {
		return fmt.Errorf("%s changed: the sockets are bound once, so this needs a restart", joinKeys(changed))
	}
	r := s.running
	if r == nil {
		s.cfg = c
		return nil
	}
	prev := r.gen.Load()
	g, err := s.newGen(ctx, &c, r.lns, prev)
	if err != nil {
		return err
	}
	if g.core == prev.core {
		g.handler.swap(g.serve, reservedFor(c.Mount), c.Apps.TrustedProxies.Trust())
	}
	r.setGen(g)
	if g.core == prev.core {
		// Connections stay with the core; their next requests meet the new
		// handler. Those whose identity the new policy refuses outright
		// are closed after their current request.
		if n := g.core.Revoke(g.revokes); n > 0 {
			s.log.Info("reload: closing connections the new policy denies, after their current request", "connections", n)
		}
	}
	r.limiter.SetMax(c.Core.MaxConnections)
	s.cfg = c
	var errs []error
	if g.term == prev.term {
		errs = append(errs, g.term.Reload(ctx))
	} else {
		errs = append(errs, prev.term.Close())
	}
	r.retire(prev, g, c.ShutdownTimeout, s)
	return errors.Join(errs...)
}

// retire drains what prev had and g does not: its request core (within
// timeout, then closed) and, once requests under it are done, its mounts.
func (r *run) retire(prev, g *gen, timeout time.Duration, s *Server) {
	r.retired.Add(1)
	go func() {
		defer r.retired.Done()
		if prev.core != g.core {
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			if err := prev.core.Shutdown(ctx); err != nil {
				s.log.Warn("previous configuration's connections outlived shutdown_timeout; closing them")
				prev.core.Close()
			}
			cancel()
		} else {
			select { // requests under the old handler finish
			case <-time.After(timeout):
			case <-r.ctx.Done():
			}
		}
		closeMounts(prev.mounts)
	}()
}

func joinKeys(keys []string) string {
	slices.Sort(keys)
	out := keys[0]
	for _, k := range keys[1:] {
		out += ", " + k
	}
	return out
}
