package tlsadapter

import (
	"context"
	"crypto/tls"
	"net"
	"strings"
	"sync/atomic"
	"syscall"
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

func (s *countingSource) HasName(host string) bool     { return host == "a.test" }
func (s *countingSource) Reload(context.Context) error { return nil }
func (s *countingSource) Close() error                 { return nil }

func TestBadSNINeverReachesTheSource(t *testing.T) {
	ca := testenv.NewCA(t, "src")
	a := ca.Leaf(t, "a.test")
	src := &countingSource{cert: &a.TLS}
	o := builtinOpts()
	o.SSLModule = "counting" // a module of its own, as internal and acme are
	o.SSLRejectUnknownSNI = true
	reg := NewRegistry()
	reg.Register("counting", func(context.Context, Params) (Adapter, error) { return src, nil })
	term, err := reg.New(t.Context(), "counting", Params{Options: o, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	s := serve(t, term)
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

// The connection Wrap returns exposes its socket (syscall.Conn under the
// tls.Conn), which the request core needs to park an idle keep-alive
// connection without a goroutine; the descriptor is the accepted socket's.
func TestWrappedConnExposesSocket(t *testing.T) {
	ca := testenv.NewCA(t, "sock")
	leaf := ca.Leaf(t, "a.test")
	ad := newBuiltinT(t, builtinOpts(leaf.CertFile, leaf.KeyFile), "a.test")
	defer ad.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := tls.Dial("tcp", ln.Addr().String(), clientCfg(ca, "a.test"))
		if err == nil {
			c.Read(make([]byte, 1)) // hold it open until the server closes
			c.Close()
		}
	}()
	raw, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	conn, _, err := ad.Wrap(context.Background(), raw)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fdOf := func(c any) uintptr {
		t.Helper()
		sc, ok := c.(syscall.Conn)
		if !ok {
			t.Fatalf("%T is not a syscall.Conn", c)
		}
		rc, err := sc.SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		var fd uintptr
		if err := rc.Control(func(f uintptr) { fd = f }); err != nil {
			t.Fatal(err)
		}
		return fd
	}
	tc, ok := conn.(*tls.Conn)
	if !ok {
		t.Fatalf("Wrap returned %T", conn)
	}
	if got, want := fdOf(tc.NetConn()), fdOf(raw); got != want {
		t.Fatalf("socket under the TLS connection is fd %d, accepted fd %d", got, want)
	}
}
