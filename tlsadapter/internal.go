package tlsadapter

import (
	"context"
	"crypto/tls"
	"fmt"
	"path/filepath"
	"slices"
	"strings"

	"tlsedge/certs"
)

// internalAdapter serves HTTPS with leaves from the local development CA, so
// `tlsedge` with no flags speaks verifiable HTTPS on a fresh machine.
type internalAdapter struct {
	ca    *certs.DevCA
	names []string
}

// DevCADir is where the internal module keeps its CA under a data directory.
func DevCADir(dataDir string) string { return filepath.Join(dataDir, "ca") }

func newInternal(_ context.Context, p Params) (Adapter, error) {
	if p.DataDir == "" {
		return nil, fmt.Errorf("the internal CA needs a data directory (--data-dir)")
	}
	ca, err := certs.OpenDevCA(DevCADir(p.DataDir))
	if err != nil {
		return nil, err
	}
	src := devCASource{ca: ca, names: []string{"localhost", "127.0.0.1", "::1"}}
	for _, h := range p.Hosts {
		if !slices.Contains(src.names, h) {
			src.names = append(src.names, h)
		}
	}
	if _, err := ca.Certificate(src.names...); err != nil {
		return nil, err
	}
	return &internalAdapter{ca: src.ca, names: src.names}, nil
}

// CAFile is the CA certificate clients should trust.
func (a *internalAdapter) CAFile() string { return a.ca.CertFile() }

// Reload implements Adapter: the CA and its leaves need none.
func (a *internalAdapter) Reload(context.Context) error { return nil }

// Close implements Adapter.
func (a *internalAdapter) Close() error { return nil }

// Certificate implements Adapter: one leaf for the server's names.
func (a *internalAdapter) Certificate(hello *tls.ClientHelloInfo) (*tls.Certificate, bool, error) {
	return devCASource{ca: a.ca, names: a.names}.Certificate(hello)
}

// HasName implements Adapter.
func (a *internalAdapter) HasName(host string) bool {
	return devCASource{ca: a.ca, names: a.names}.HasName(host)
}

// devCASource issues one leaf, for the server's names, from the local CA.
type devCASource struct {
	ca    *certs.DevCA
	names []string
}

func (s devCASource) Certificate(hello *tls.ClientHelloInfo) (*tls.Certificate, bool, error) {
	c, err := s.ca.Certificate(s.names...)
	return c, hello.ServerName == "" || s.HasName(hello.ServerName), err
}

func (s devCASource) HasName(host string) bool {
	return slices.ContainsFunc(s.names, func(n string) bool { return strings.EqualFold(n, host) })
}

// CAFiler is implemented by adapters whose certificates chain to a local CA
// that clients must be told to trust.
type CAFiler interface{ CAFile() string }

// Certificates implements CertificateLister: the leaf the local CA issued.
func (a *internalAdapter) Certificates() []CertInfo {
	c, err := a.ca.Certificate(a.names...)
	if err != nil || c.Leaf == nil {
		return nil
	}
	return []CertInfo{{Name: leafName(c.Leaf), Source: "internal", NotAfter: c.Leaf.NotAfter}}
}
