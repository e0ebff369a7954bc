package server

import (
	"context"
	"crypto/tls"
	"net/http"
	"strings"
	"testing"
	"time"

	"tlsedge/internal/testenv"
	"tlsedge/tlsadapter"
)

// staticAdapter is an adapter a library user registers: one certificate.
type staticAdapter struct{ cert *tls.Certificate }

func (a staticAdapter) Certificate(*tls.ClientHelloInfo) (*tls.Certificate, bool, error) {
	return a.cert, true, nil
}
func (staticAdapter) HasName(string) bool          { return true }
func (staticAdapter) Reload(context.Context) error { return nil }
func (staticAdapter) Close() error                 { return nil }

// ssl_hsts_max_age is sent on every HTTPS response whatever the module
// (acme: integration/TestACMEBinaryAppliesTLSPolicy), and is refused at
// start-up where it cannot apply (plain HTTP).
func TestHSTSEveryModule(t *testing.T) {
	ca := testenv.NewCA(t, "hsts")
	leaf := ca.Leaf(t, "localhost", "127.0.0.1")
	for _, module := range []string{"builtin", "internal", "mine", "none"} {
		t.Run(module, func(t *testing.T) {
			c := plainConfig(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
			c.TLS.SSLModule = module
			c.TLS.SSLHSTSMaxAge = time.Hour
			c.TLS.SSLHSTSIncludeSubdomains = true
			switch module {
			case "builtin":
				c.TLS.SSLCertificate, c.TLS.SSLPrivateKey = []string{leaf.CertFile}, []string{leaf.KeyFile}
			case "mine":
				c.Registry = tlsadapter.NewRegistry()
				c.Registry.Register("mine", func(context.Context, tlsadapter.Params) (tlsadapter.Adapter, error) {
					return staticAdapter{&leaf.TLS}, nil
				})
			}
			s, err := New(c)
			if err == nil {
				err = s.Start(t.Context())
			}
			if module == "none" {
				if err == nil || !strings.Contains(err.Error(), "ssl_hsts_max_age") {
					t.Fatalf("HSTS on plain HTTP: %v; want a start-up error naming ssl_hsts_max_age", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer s.Stop(context.Background())
			cl := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
			resp, err := cl.Get("https://" + s.BindAddr().String() + "/")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if h := resp.Header.Get("Strict-Transport-Security"); h != "max-age=3600; includeSubDomains" {
				t.Errorf("Strict-Transport-Security %q", h)
			}
		})
	}
}
