package tlsadapter

import (
	"context"
	"crypto/tls"
	"strings"
	"sync/atomic"
	"testing"

	"tlsedge/internal/testenv"
)

// countingSource serves one certificate and counts lookups, standing in for
// an issuer (ACME) whose lookups are expensive.
type countingSource struct {
	cert    *tls.Certificate
	lookups atomic.Int64
}

func (s *countingSource) Certificate(h *tls.ClientHelloInfo) (*tls.Certificate, bool, error) {
	s.lookups.Add(1)
	return s.cert, strings.EqualFold(h.ServerName, "a.test") || h.ServerName == "", nil
}

func (s *countingSource) HasName(host string) bool { return host == "a.test" }

func TestBadSNINeverReachesTheSource(t *testing.T) {
	ca := testenv.NewCA(t, "src")
	a := ca.Leaf(t, "a.test")
	src := &countingSource{cert: &a.TLS}
	o := builtinOpts()
	o.SSLModule = "counting" // a module of its own, as internal and acme are
	o.SSLRejectUnknownSNI = true
	w, err := NewWrapper(Params{Options: o, Logger: testLogger(t)}, src)
	if err != nil {
		t.Fatal(err)
	}
	s := serve(t, wrapperAdapter{w})
	for _, sni := range []string{"bad_name!.test", "x y", strings.Repeat("a", 64) + ".test"} {
		if _, _, err := get(s.addr, &tls.Config{ServerName: sni, InsecureSkipVerify: true}); err == nil {
			t.Errorf("SNI %q accepted", sni)
		}
	}
	if n := src.lookups.Load(); n != 0 {
		t.Fatalf("%d certificate lookups for invalid names", n)
	}
	if _, _, err := get(s.addr, clientCfg(ca, "a.test")); err != nil || src.lookups.Load() == 0 {
		t.Fatalf("valid name: %v", err)
	}
}

// wrapperAdapter makes a bare Wrapper an Adapter, as the internal and acme
// modules do by embedding it.
type wrapperAdapter struct{ *Wrapper }

func (a wrapperAdapter) Reload(context.Context) error { return a.ReloadPolicy() }
