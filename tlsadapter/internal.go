package tlsadapter

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"path/filepath"
	"slices"
	"time"

	"tlsedge/certs"
)

// internalAdapter serves HTTPS with leaves from the local development CA, so
// `tlsedge` with no flags speaks verifiable HTTPS on a fresh machine.
type internalAdapter struct {
	ca     *certs.DevCA
	config *tls.Config
	names  []string
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
	a := &internalAdapter{ca: ca, names: []string{"localhost", "127.0.0.1", "::1"}}
	for _, h := range p.Hosts {
		if !slices.Contains(a.names, h) {
			a.names = append(a.names, h)
		}
	}
	if _, err := ca.Certificate(a.names...); err != nil {
		return nil, err
	}
	base := &tls.Config{}
	if p.TLSConfig != nil {
		base = p.TLSConfig.Clone()
	}
	base.MinVersion = max(base.MinVersion, tls.VersionTLS12)
	if len(base.NextProtos) == 0 {
		base.NextProtos = []string{"h2", "http/1.1"}
	}
	base.GetCertificate = func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
		return a.ca.Certificate(a.names...)
	}
	a.config = base
	return a, nil
}

// CAFile is the CA certificate clients should trust.
func (a *internalAdapter) CAFile() string { return a.ca.CertFile() }

func (a *internalAdapter) Scheme() string { return "https" }

func (a *internalAdapter) Wrap(ctx context.Context, raw net.Conn) (net.Conn, *tls.ConnectionState, error) {
	return handshake(ctx, tls.Server(raw, a.config), 10*time.Second)
}

func (a *internalAdapter) Reload(context.Context) error { return nil }
func (a *internalAdapter) Close() error                 { return nil }

// handshake runs the server handshake under a timeout and returns the state.
func handshake(ctx context.Context, c *tls.Conn, timeout time.Duration) (net.Conn, *tls.ConnectionState, error) {
	hctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := c.HandshakeContext(hctx); err != nil {
		c.Close()
		return nil, nil, err
	}
	st := c.ConnectionState()
	return c, &st, nil
}

// CAFiler is implemented by adapters whose certificates chain to a local CA
// that clients must be told to trust.
type CAFiler interface{ CAFile() string }
