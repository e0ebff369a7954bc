package server

import (
	"net/http"
	"strings"
	"testing"

	"tlsedge/internal/testenv"
)

// A server on every interface, or on a UNIX socket, starts with a
// certificate for its public name: it expects no particular host, so the
// certificate is not required to cover localhost. A server bound to a
// named host still needs a certificate covering that name.
func TestBuiltinCertificateHosts(t *testing.T) {
	leaf := testenv.NewCA(t, "hosts").Leaf(t, "example.com")
	for _, tc := range []struct {
		name, host, file string
		wantErr          bool
	}{
		{"ipv4 any", "0.0.0.0", "", false},
		{"ipv6 any", "::", "", false},
		{"unix socket", "", "tls.sock", false},
		{"named host", "localhost", "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := plainConfig(t, http.NotFoundHandler())
			c.SocketHost = tc.host
			if tc.file != "" {
				c.SocketFile = t.TempDir() + "/" + tc.file
			}
			c.TLS.SSLModule = "builtin"
			c.TLS.SSLCertificate, c.TLS.SSLPrivateKey = []string{leaf.CertFile}, []string{leaf.KeyFile}
			s, err := New(c)
			if err == nil {
				// tlsedge check and start-up agree.
				if _, cerr := s.Check(t.Context()); (cerr != nil) != tc.wantErr {
					t.Errorf("check: %v", cerr)
				}
				err = s.Start(t.Context())
				if err == nil {
					defer s.Stop(t.Context())
				}
			}
			if tc.wantErr {
				if err == nil || !strings.Contains(err.Error(), `no certificate covers host "localhost"`) {
					t.Fatalf("socket_host %s with a certificate for example.com: %v; want the uncovered host named", tc.host, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("socket_host %q socket_file %q with a certificate for example.com: %v", tc.host, tc.file, err)
			}
		})
	}
}
