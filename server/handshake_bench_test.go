package server

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
	"time"

	"tlsedge/internal/testenv"
)

// BenchmarkFullHandshake costs one full TLS 1.3 handshake (no resumption)
// and one request per iteration, against the server package (the accept
// loop, the one terminator, the request core) and, in the same run, against
// net/http's ServeTLS with the same certificate: the baseline the
// terminator must not fall behind. The client runs in a process of its own
// (TestHandshakeClient), so server-us/op is the server's CPU alone, from
// getrusage; ns/op is wall time.
//
//	go test -run '^$' -bench FullHandshake -benchtime 2000x -count 5 ./server
func BenchmarkFullHandshake(b *testing.B) {
	ca := testenv.NewCA(b, "bench")
	leaf := ca.Leaf(b, "localhost", "127.0.0.1")
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })

	c := NewConfig()
	c.SocketPort = 0
	c.DataDir = b.TempDir()
	c.TLS.SSLModule = "builtin"
	c.TLS.SSLCertificate = []string{leaf.CertFile}
	c.TLS.SSLPrivateKey = []string{leaf.KeyFile}
	c.TLS.SSLReloadInterval = 0
	c.Handlers = map[string]http.Handler{"/": handler}
	s, err := New(c)
	if err != nil {
		b.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Stop(context.Background()) })

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	hs := &http.Server{Handler: handler, TLSConfig: &tls.Config{Certificates: []tls.Certificate{leaf.TLS}}}
	go hs.ServeTLS(ln, "", "")
	b.Cleanup(func() { hs.Close() })

	for _, sub := range []struct{ name, addr string }{
		{"tlsedge", s.BindAddr().String()},
		{"net-http", ln.Addr().String()},
	} {
		b.Run(sub.name, func(b *testing.B) {
			cmd := exec.Command(os.Args[0], "-test.run=^TestHandshakeClient$")
			cmd.Env = append(os.Environ(), "TLSEDGE_HS_ADDR="+sub.addr, "TLSEDGE_HS_CA="+ca.File(), "TLSEDGE_HS_N="+strconv.Itoa(b.N))
			cmd.Stderr = os.Stderr
			before := serverCPU()
			b.ResetTimer()
			if out, err := cmd.Output(); err != nil {
				b.Fatalf("client: %v\n%s", err, out)
			}
			b.StopTimer()
			b.ReportMetric(float64((serverCPU()-before).Microseconds())/float64(b.N), "server-us/op")
		})
	}
}

// serverCPU is this process's user and system CPU time.
func serverCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// TestHandshakeClient is BenchmarkFullHandshake's client process: with
// TLSEDGE_HS_ADDR set it makes TLSEDGE_HS_N full handshakes, one request
// each.
func TestHandshakeClient(t *testing.T) {
	addr := os.Getenv("TLSEDGE_HS_ADDR")
	if addr == "" {
		return // only run as the benchmark's subprocess
	}
	pem, err := os.ReadFile(os.Getenv("TLSEDGE_HS_CA"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	cfg := &tls.Config{RootCAs: pool, ServerName: "localhost", NextProtos: []string{"http/1.1"}}
	n, _ := strconv.Atoi(os.Getenv("TLSEDGE_HS_N"))
	for range n {
		if err := oneHandshake(addr, cfg); err != nil {
			t.Fatal(err)
		}
	}
}

func oneHandshake(addr string, cfg *tls.Config) error {
	c, err := tls.Dial("tcp", addr, cfg)
	if err != nil {
		return err
	}
	defer c.Close()
	fmt.Fprint(c, "GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	return err
}
