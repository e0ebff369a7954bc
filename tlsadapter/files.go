package tlsadapter

import (
	"context"
	"crypto/tls"
	"sync"

	"tlsedge/certs"
)

// files is the builtin adapter: certificates from PEM files, reloaded on
// SIGHUP and when the files change.
type files struct {
	*Wrapper
	store  *certs.Store
	stop   context.CancelFunc
	wg     sync.WaitGroup
	closed sync.Once
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

// storeSource adapts a certs.Store to CertSource.
type storeSource struct{ s *certs.Store }

func (s storeSource) Certificate(h *tls.ClientHelloInfo) (*tls.Certificate, bool, error) {
	c, known := s.s.Current().Certificate(h)
	return c, known, nil
}

func (s storeSource) HasName(host string) bool { return s.s.Current().HasName(host) }

func newBuiltin(ctx context.Context, p Params) (Adapter, error) {
	if len(p.Options.SSLCertificate) == 0 && p.TLSConfig != nil &&
		(len(p.TLSConfig.Certificates) > 0 || p.TLSConfig.GetCertificate != nil) {
		// A library user's whole tls.Config, certificates included.
		w, err := NewWrapper(p, nil)
		if err != nil {
			return nil, err
		}
		return &files{Wrapper: w, stop: func() {}}, nil
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
	w, err := NewWrapper(p, storeSource{store})
	if err != nil {
		return nil, err
	}
	store.OnReload(func(_ *certs.Set, err error) {
		if err == nil {
			err = w.ReloadPolicy() // ssl_client_ca may have changed too
		}
		w.CountReload(err)
	})
	wctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	a := &files{Wrapper: w, store: store, stop: stop}
	if iv := p.Options.SSLReloadInterval; iv > 0 {
		a.wg.Add(1)
		go func() {
			defer a.wg.Done()
			store.Watch(wctx, iv)
		}()
	}
	return a, nil
}

// Reload implements Adapter: certificates and ssl_client_ca are parsed and
// checked, then swapped in; on failure the current ones stay.
func (a *files) Reload(context.Context) error {
	if a.store != nil {
		// OnReload rereads the policy and counts the outcome; the second
		// read here only reports a bad ssl_client_ca to the caller.
		if err := a.store.Reload(); err != nil {
			return err
		}
		return a.ReloadPolicy()
	}
	err := a.ReloadPolicy()
	a.CountReload(err)
	return err
}

// Close implements Adapter.
func (a *files) Close() error {
	a.closed.Do(func() {
		a.stop()
		a.wg.Wait()
		_ = a.Wrapper.Close()
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
