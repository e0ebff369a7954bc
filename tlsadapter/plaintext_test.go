package tlsadapter

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"tlsedge/internal/testenv"
)

// The exact answer to plain HTTP on a TLS port, written out here rather than
// computed so that a change to it fails this test.
const want400 = "HTTP/1.1 400 Bad Request\r\n" +
	"Content-Type: text/plain; charset=utf-8\r\n" +
	"Content-Length: 85\r\n" +
	"Connection: close\r\n" +
	"\r\n" +
	"The client sent a plain HTTP request, but this server only speaks HTTPS on this port."

// rawExchange sends req on a plain TCP connection and reads until the server
// closes; a reset is an error.
func rawExchange(t *testing.T, addr, req string) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(c)
	if err != nil {
		if errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("connection reset after %q", b)
		}
		t.Fatal(err)
	}
	return string(b)
}

func plaintextServer(t *testing.T, action PlaintextAction) (*server, *Terminator) {
	ca := testenv.NewCA(t, "p")
	a := ca.Leaf(t, "a.test", "*.w.test")
	o := builtinOpts(a.CertFile, a.KeyFile)
	o.SSLPlaintextAction = action
	ad := newBuiltinT(t, o)
	return serve(t, ad), ad
}

func TestPlaintext400(t *testing.T) {
	s, ad := plaintextServer(t, Plaintext400)
	body := strings.Repeat("x", 100_000)
	reqs := map[string]string{
		"GET":       "GET / HTTP/1.1\r\nHost: a.test\r\n\r\n",
		"POST":      fmt.Sprintf("POST /form HTTP/1.1\r\nHost: a.test\r\nContent-Length: %d\r\n\r\n%s", len(body), body),
		"lowercase": "get /x http/1.0\r\n\r\n",
		"PROPFIND":  "PROPFIND /dav HTTP/1.1\r\nHost: a.test\r\n\r\n",
		"HTTP/1.0":  "HEAD / HTTP/1.0\n\n",
	}
	for name, req := range reqs {
		t.Run(name, func(t *testing.T) {
			if got := rawExchange(t, s.addr, req); got != want400 {
				t.Fatalf("got %q\nwant %q", got, want400)
			}
		})
	}
	waitStat(t, ad, func(st TLSStats) bool { return st.Plaintext == uint64(len(reqs)) })
}

func TestPlaintextRedirect(t *testing.T) {
	s, _ := plaintextServer(t, PlaintextRedirect)
	tests := []struct{ name, req, want string }{
		{"held name", "GET /p?q=1 HTTP/1.1\r\nHost: a.test:" + fmt.Sprint(s.port) + "\r\n\r\n",
			"HTTP/1.1 308 Permanent Redirect\r\nLocation: https://a.test:" + fmt.Sprint(s.port) + "/p?q=1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"},
		{"wildcard, lowercase method", "post /up HTTP/1.1\r\nHost: X.W.Test\r\nContent-Length: 3\r\n\r\nabc",
			"HTTP/1.1 308 Permanent Redirect\r\nLocation: https://x.w.test:" + fmt.Sprint(s.port) + "/up\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"},
		{"absolute form", "GET http://a.test/abs HTTP/1.1\r\nHost: a.test\r\n\r\n",
			"HTTP/1.1 308 Permanent Redirect\r\nLocation: https://a.test:" + fmt.Sprint(s.port) + "/abs\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"},
		{"port named in Host (a balancer's)", "GET /p HTTP/1.1\r\nHost: a.test:443\r\n\r\n",
			"HTTP/1.1 308 Permanent Redirect\r\nLocation: https://a.test/p\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"},
		{"other port named in Host", "GET /p HTTP/1.1\r\nHost: a.test:9443\r\n\r\n",
			"HTTP/1.1 308 Permanent Redirect\r\nLocation: https://a.test:9443/p\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"},
		{"foreign name", "GET / HTTP/1.1\r\nHost: evil.test\r\n\r\n", want400},
		{"no host", "GET / HTTP/1.0\r\n\r\n", want400},
		{"bad host", "GET / HTTP/1.1\r\nHost: a.test/x\r\n\r\n", want400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := rawExchange(t, s.addr, tt.req); got != tt.want {
				t.Fatalf("got %q\nwant %q", got, tt.want)
			}
		})
	}
}

func TestPlaintextClose(t *testing.T) {
	s, _ := plaintextServer(t, PlaintextClose)
	if got := rawExchange(t, s.addr, "GET / HTTP/1.1\r\nHost: a.test\r\n\r\n"); got != "" {
		t.Fatalf("close mode answered %q", got)
	}
}

func TestNotTLSClosedQuietly(t *testing.T) {
	s, ad := plaintextServer(t, Plaintext400)
	for _, junk := range []string{"\x00\x01\x02\x03garbage", "SSH-2.0-OpenSSH_9.6\r\n", "\x16\x01\x00"} {
		if got := rawExchange(t, s.addr, junk); got != "" {
			t.Errorf("%q answered %q", junk, got)
		}
	}
	// An SSLv2-compatible ClientHello gets a protocol_version alert.
	v2 := "\x80\x2e\x01\x00\x02\x00\x15\x00\x00\x00\x10" + strings.Repeat("\x00", 21) + strings.Repeat("A", 16)
	if got := rawExchange(t, s.addr, v2); got != string(alertProtocolVersion) {
		t.Errorf("SSLv2 hello answered %q", got)
	}
	waitStat(t, ad, func(st TLSStats) bool { return st.Failures[ReasonNotTLS] == 3 && st.Failures[ReasonSSLv2] == 1 })
}

// A client that connects and says nothing must not delay anyone else.
func TestSilentClientsDoNotDelayHandshakes(t *testing.T) {
	ca := testenv.NewCA(t, "s")
	a := ca.Leaf(t, "a.test")
	s := serve(t, newBuiltinT(t, builtinOpts(a.CertFile, a.KeyFile)))
	cfg := clientCfg(ca, "a.test")
	baseline := timeHandshakes(t, s.addr, cfg)
	var silent []net.Conn
	for range 50 {
		c, err := net.Dial("tcp", s.addr)
		if err != nil {
			t.Fatal(err)
		}
		silent = append(silent, c)
		defer c.Close()
	}
	// And 50 more that stop in the middle of a ClientHello.
	for range 50 {
		c, err := net.Dial("tcp", s.addr)
		if err != nil {
			t.Fatal(err)
		}
		c.Write([]byte{0x16, 0x03, 0x01, 0x02, 0x00, 0x01})
		defer c.Close()
	}
	time.Sleep(50 * time.Millisecond)
	loaded := timeHandshakes(t, s.addr, cfg)
	t.Logf("handshake: %v alone, %v with 100 stalled clients", baseline, loaded)
	if loaded-baseline > 100*time.Millisecond {
		t.Fatalf("stalled clients delayed a handshake by %v", loaded-baseline)
	}
}

// timeHandshakes returns the median of a few handshake durations.
func timeHandshakes(t *testing.T, addr string, cfg *tls.Config) time.Duration {
	var ds []time.Duration
	for range 5 {
		start := time.Now()
		c, err := tls.Dial("tcp", addr, cfg)
		if err != nil {
			t.Fatal(err)
		}
		ds = append(ds, time.Since(start))
		c.Close()
	}
	for i := range ds {
		for j := i + 1; j < len(ds); j++ {
			if ds[j] < ds[i] {
				ds[i], ds[j] = ds[j], ds[i]
			}
		}
	}
	return ds[len(ds)/2]
}

func TestTruncatedClientHelloTimesOut(t *testing.T) {
	ca := testenv.NewCA(t, "t")
	a := ca.Leaf(t, "a.test")
	o := builtinOpts(a.CertFile, a.KeyFile)
	o.SSLHandshakeTimeout = 300 * time.Millisecond
	ad := newBuiltinT(t, o)
	s := serve(t, ad)
	for name, prefix := range map[string][]byte{
		"record header only": {0x16, 0x03, 0x01, 0x02, 0x00},
		"partial hello":      {0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03},
		"silent":             nil,
	} {
		t.Run(name, func(t *testing.T) {
			c, err := net.Dial("tcp", s.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.Write(prefix)
			start := time.Now()
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			_, err = io.ReadAll(c)
			el := time.Since(start)
			if el < 250*time.Millisecond || el > 2*time.Second {
				t.Fatalf("closed after %v (err %v), want about 300ms", el, err)
			}
		})
	}
	waitStat(t, ad, func(st TLSStats) bool { return st.Failures[ReasonTimeout] == 3 })
}
