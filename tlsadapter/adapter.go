// Package tlsadapter is the SSL adapter registry: it turns accepted connections
// into served connections (plain, certificate files, the local development CA,
// ACME-managed certificates, or a user's own adapter), sniffing plain HTTP sent
// to a TLS port and running handshakes under policy.
package tlsadapter

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/caddyserver/certmagic"
)

// Adapter supplies certificates to the one Terminator; it never sees a
// connection. Sniffing, the handshake and every ssl_* rule are the
// terminator's, the same for every adapter, so an adapter cannot skip them.
// Implementations must be safe for concurrent use.
//
// An adapter may also implement ChallengeResponder (it answers a CA's
// validation probes in the handshake), CertificateLister (the status page),
// CAFiler (a local CA clients must trust), ACMEStarter and
// ACMEStatsReporter.
type Adapter interface {
	// Certificate picks the certificate for hello. known is false when no
	// certificate covers hello.ServerName and a default is returned (or nil
	// when there is none). An error fails the handshake (counted as
	// unknown_sni); it may take time (ACME on-demand issuance) within the
	// handshake timeout.
	Certificate(hello *tls.ClientHelloInfo) (cert *tls.Certificate, known bool, err error)
	// HasName reports whether the adapter holds a certificate for host:
	// plain HTTP is redirected only to such names.
	HasName(host string) bool
	// Reload re-reads certificates: parse and check everything, then swap;
	// on failure the adapter keeps serving what it had.
	Reload(ctx context.Context) error
	// Close stops background work (file watchers, ACME maintenance).
	Close() error
}

// Params is what a Factory gets to build an Adapter for one server.
type Params struct {
	Options Options      // the server's ssl_* (and acme_*) options
	Logger  *slog.Logger // never nil
	// Hosts are the names the server is configured for (socket_host when it is
	// a name, and the names clients are expected to ask for).
	Hosts []string
	// Host is the server's socket_host ("" for UNIX sockets); adapters that
	// open listeners of their own (ACME http-01) bind to it.
	Host string
	// Port is the server's TCP port (0 for UNIX sockets).
	Port int
	// DataDir is tlsedge's per-user data directory (local CA, ACME storage).
	DataDir string
	// Storage is where the acme module keeps accounts, keys, certificates
	// and its locks when acme_storage does not name a directory: the
	// storage nodes of a cluster share (engine.storage). Nil means files
	// under DataDir/acme.
	Storage certmagic.Storage
	// Server is the server's name ("" or "main" for the main server). It
	// names the server's session-ticket key ring: one ring per server, so
	// a ticket one server issued never resumes on another.
	Server string
	// TicketKeys is the session-ticket key ring the nodes of a cluster
	// share (engine.storage on PostgreSQL); nil: keys of this process's
	// own, rotated in memory.
	TicketKeys TicketKeySource
	// TLSConfig is the seeds' ssl_context: a whole *tls.Config from a library
	// user. Adapters that honour it use it as their base; nil otherwise.
	TLSConfig *tls.Config
}

// Factory builds an Adapter. Registry.New puts what it returns behind the
// one Terminator.
type Factory func(ctx context.Context, p Params) (Adapter, error)

// ErrUnknownModule is returned by Registry.New for a name nobody registered.
var ErrUnknownModule = errors.New("tlsadapter: unknown ssl_module")

// Registry maps ssl_module names to factories. It is a value: build one with
// NewRegistry and register your own adapters on it.
type Registry struct {
	mu        sync.RWMutex
	factories map[string]Factory
}

// NewRegistry returns a registry holding the adapters tlsedge ships.
func NewRegistry() *Registry {
	r := &Registry{factories: map[string]Factory{}}
	for name, f := range builtinFactories() {
		r.Register(name, f)
	}
	return r
}

// Register adds or replaces the factory for name.
func (r *Registry) Register(name string, f Factory) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.factories[name] = f
}

// Names lists the registered module names, sorted.
func (r *Registry) Names() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	names := make([]string, 0, len(r.factories))
	for n := range r.factories {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Has reports whether name is registered.
func (r *Registry) Has(name string) bool {
	return slices.Contains(r.Names(), name)
}

// New builds the adapter named name and puts it behind the one terminator,
// which is all a server ever serves connections through. Options the module
// cannot honour are an error naming them.
func (r *Registry) New(ctx context.Context, name string, p Params) (*Terminator, error) {
	r.mu.RLock()
	f, ok := r.factories[name]
	r.mu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("%w %q (registered: %s)", ErrUnknownModule, name, strings.Join(r.Names(), ", "))
	}
	if p.Logger == nil {
		p.Logger = slog.New(slog.DiscardHandler)
	}
	if err := CheckModuleOptions(name, p.Options, p.TLSConfig); err != nil {
		return nil, err
	}
	a, err := f(ctx, p)
	if err != nil {
		return nil, err
	}
	t, err := newTerminator(name, p, a)
	if err != nil {
		a.Close()
		return nil, err
	}
	return t, nil
}
