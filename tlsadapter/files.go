package tlsadapter

import (
	"context"
	"crypto/tls"
	"sync"
	"sync/atomic"

	"tlsedge/certs"
)

// files is the builtin adapter: certificates from PEM files, reloaded on
// SIGHUP and when the files change.
type files struct {
	store    *certs.Store // nil when a library user's tls.Config brings the certificates
	stop     context.CancelFunc
	wg       sync.WaitGroup
	closed   sync.Once
	onReload atomic.Pointer[func(error)]
}

// CertsConfig turns the ssl_* options into the certs package's Config: what
// the builtin adapter loads and what `tlsedge check` checks.
func CertsConfig(o Options, hosts []string) certs.Config {
	cfg := certs.Config{
		PasswordFile: o.SSLPrivateKeyPasswordFile,
		TrustBundle:  o.SSLTrustedCertificate,
		Hosts:        hosts,
	}
	for _, f := range o.pairFiles() {
		cfg.Pairs = append(cfg.Pairs, certs.PairFiles{Cert: f[0], Key: f[1], Chain: f[2]})
	}
	return cfg
}

// Certificate implements Adapter: the pair chosen by SNI and key type.
func (a *files) Certificate(h *tls.ClientHelloInfo) (*tls.Certificate, bool, error) {
	if a.store == nil {
		return nil, false, nil
	}
	c, known := a.store.Current().Certificate(h)
	return c, known, nil
}

// HasName implements Adapter.
func (a *files) HasName(host string) bool { return a.store != nil && a.store.Current().HasName(host) }

// OnReload registers f for the terminator: it runs after every reload the
// file watcher does by itself.
func (a *files) OnReload(f func(error)) { a.onReload.Store(&f) }

func newBuiltin(ctx context.Context, p Params) (Adapter, error) {
	if len(p.Options.SSLCertificate) == 0 && p.TLSConfig != nil &&
		(len(p.TLSConfig.Certificates) > 0 || p.TLSConfig.GetCertificate != nil) {
		// A library user's whole tls.Config, certificates included.
		return &files{stop: func() {}}, nil
	}
	if err := p.Options.Validate(); err != nil {
		return nil, err
	}
	cfg := CertsConfig(p.Options, p.Hosts)
	if p.Options.SSLClientCA != "" {
		cfg.Watch = append(cfg.Watch, p.Options.SSLClientCA)
	}
	store, err := certs.NewStore(cfg, p.Logger)
	if err != nil {
		return nil, err
	}
	wctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	a := &files{store: store, stop: stop}
	store.OnReload(func(_ *certs.Set, err error) {
		if f := a.onReload.Load(); f != nil {
			(*f)(err)
		}
	})
	if iv := p.Options.SSLReloadInterval; iv > 0 {
		a.wg.Add(1)
		go func() {
			defer a.wg.Done()
			store.Watch(wctx, iv)
		}()
	}
	return a, nil
}

// Reload implements Adapter: certificates are parsed and checked, then
// swapped in; on failure the current ones stay. The terminator rereads
// ssl_client_ca after it and counts the outcome.
func (a *files) Reload(context.Context) error {
	if a.store == nil {
		return nil
	}
	return a.store.Reload()
}

// Close implements Adapter.
func (a *files) Close() error {
	a.closed.Do(func() {
		a.stop()
		a.wg.Wait()
	})
	return nil
}

// Certificates implements CertificateLister: the pairs loaded now.
func (a *files) Certificates() []CertInfo {
	if a.store == nil {
		return nil
	}
	var out []CertInfo
	for _, p := range a.store.Current().Pairs {
		if leaf := p.TLS.Leaf; leaf != nil {
			out = append(out, CertInfo{Name: leafName(leaf), Source: "file", NotAfter: leaf.NotAfter})
		}
	}
	return out
}
