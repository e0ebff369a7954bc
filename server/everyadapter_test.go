package server

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"golang.org/x/net/http2"

	"tlsedge/certs"
	"tlsedge/integration"
	"tlsedge/internal/testenv"
	"tlsedge/tlsadapter"
)

// twoCertAdapter is an adapter a library user registers from Go: one
// certificate per name, picked by SNI.
type twoCertAdapter map[string]*tls.Certificate

func (a twoCertAdapter) Certificate(h *tls.ClientHelloInfo) (*tls.Certificate, bool, error) {
	if c, ok := a[strings.ToLower(h.ServerName)]; ok {
		return c, true, nil
	}
	return a["a.test"], false, nil
}
func (a twoCertAdapter) HasName(host string) bool   { return a[strings.ToLower(host)] != nil }
func (twoCertAdapter) Reload(context.Context) error { return nil }
func (twoCertAdapter) Close() error                 { return nil }

// ruleAdapter is one certificate adapter under the server: the names it
// serves (a, and b: on a certificate of its own when split, on a's when the
// adapter issues one certificate for all its names) and set, which selects
// it in c and returns the roots its certificates chain to, asked once the
// server runs.
type ruleAdapter struct {
	module string
	a, b   string
	split  bool
	set    func(t *testing.T, c *Config) (roots func() *x509.CertPool)
}

// ruleAdapters are builtin (certificate files), internal (the local CA),
// acme (certificates from pebble over http-01, one order per name) and a
// user's adapter registered from Go.
func ruleAdapters(t *testing.T) []ruleAdapter {
	ca := testenv.NewCA(t, "every")
	// The default socket_host, 127.0.0.1, must be on a certificate.
	la, lb := ca.Leaf(t, "a.test", "127.0.0.1"), ca.Leaf(t, "b.test")
	return []ruleAdapter{
		{module: "builtin", a: "a.test", b: "b.test", split: true, set: func(t *testing.T, c *Config) func() *x509.CertPool {
			c.TLS.SSLModule = "builtin"
			c.TLS.SSLCertificate = []string{la.CertFile, lb.CertFile}
			c.TLS.SSLPrivateKey = []string{la.KeyFile, lb.KeyFile}
			return func() *x509.CertPool { return ca.Pool }
		}},
		// One leaf for localhost and the socket's address: a request for
		// one on a connection made for the other is coalescing, not a
		// misdirection.
		{module: "internal", a: "localhost", b: "127.0.0.1", set: func(t *testing.T, c *Config) func() *x509.CertPool {
			c.TLS.SSLModule = "internal"
			return func() *x509.CertPool {
				dca, err := certs.OpenDevCA(tlsadapter.DevCADir(c.DataDir))
				if err != nil {
					t.Fatal(err)
				}
				pem, err := os.ReadFile(dca.CertFile())
				if err != nil {
					t.Fatal(err)
				}
				p := x509.NewCertPool()
				p.AppendCertsFromPEM(pem)
				return p
			}
		}},
		{module: "acme", a: "a.example.com", b: "b.example.com", split: true, set: func(t *testing.T, c *Config) func() *x509.CertPool {
			pb := integration.StartPebble(t, integration.PebbleConfig{})
			c.TLS.SSLModule = "acme"
			o := &c.TLS.ACME
			o.Domains = []string{"a.example.com", "b.example.com"}
			o.CA, o.CARoot, o.Email = pb.Directory, pb.RootFile, "admin@example.com"
			o.Storage = filepath.Join(t.TempDir(), "acme")
			o.Challenges = []string{"http-01"}
			o.HTTPPort = pb.HTTPPort
			return func() *x509.CertPool { return pb.Roots(t) }
		}},
		{module: "mine", a: "a.test", b: "b.test", split: true, set: func(t *testing.T, c *Config) func() *x509.CertPool {
			c.TLS.SSLModule = "mine"
			c.Registry = tlsadapter.NewRegistry()
			ad := twoCertAdapter{"a.test": &la.TLS, "b.test": &lb.TLS}
			c.Registry.Register("mine", func(context.Context, tlsadapter.Params) (tlsadapter.Adapter, error) { return ad, nil })
			return func() *x509.CertPool { return ca.Pool }
		}},
	}
}

// ruleClient sends requests to addr over proto ("http/1.1" or "h2") on
// connections whose ClientHello names sni, verifying the server against
// roots and presenting cert (nil for none). It asks for no encoding of its
// own: the test sets Accept-Encoding and decodes.
type ruleClient struct {
	addr, sni, proto string
	roots            *x509.CertPool
	cert             *testenv.Issued
}

// ruleConn is one connection of a ruleClient: every request goes on it
// while the server keeps it open.
type ruleConn struct {
	rc ruleClient
	rt http.RoundTripper
	h2 *http2.ClientConn // over h2
}

// open makes a connection (over HTTP/1.1, at the first request).
func (rc ruleClient) open(t *testing.T) *ruleConn {
	t.Helper()
	tc := &tls.Config{ServerName: rc.sni, RootCAs: rc.roots, NextProtos: []string{rc.proto}}
	if rc.cert != nil {
		cert := rc.cert
		tc.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert.TLS, nil }
	}
	dial := func(ctx context.Context) (net.Conn, error) {
		d := &tls.Dialer{Config: tc, NetDialer: &net.Dialer{Timeout: 5 * time.Second}}
		nc, err := d.DialContext(ctx, "tcp", rc.addr)
		if err != nil {
			return nil, err
		}
		if got := nc.(*tls.Conn).ConnectionState().NegotiatedProtocol; got != rc.proto {
			nc.Close()
			return nil, fmt.Errorf("negotiated %q, want %q", got, rc.proto)
		}
		return nc, nil
	}
	c := &ruleConn{rc: rc}
	if rc.proto == "h2" {
		nc, err := dial(t.Context())
		if err != nil {
			t.Fatalf("connecting with SNI %s over h2: %v", rc.sni, err)
		}
		t.Cleanup(func() { nc.Close() })
		if c.h2, err = (&http2.Transport{DisableCompression: true}).NewClientConn(nc); err != nil {
			t.Fatal(err)
		}
		c.rt = c.h2
		return c
	}
	tr := &http.Transport{DisableCompression: true, MaxConnsPerHost: 1,
		DialTLSContext: func(ctx context.Context, _, _ string) (net.Conn, error) { return dial(ctx) }}
	t.Cleanup(tr.CloseIdleConnections)
	c.rt = tr
	return c
}

// get sends one request on a new connection (see ruleConn.get).
func (rc ruleClient) get(t *testing.T, host, path string, hdr ...string) (*http.Response, []byte) {
	t.Helper()
	c := rc.open(t)
	defer c.close()
	return c.get(t, host, path, hdr...)
}

func (c *ruleConn) close() {
	if c.h2 != nil {
		c.h2.Close()
	} else {
		c.rt.(*http.Transport).CloseIdleConnections()
	}
}

// closing reports whether the server ended the connection: for h2, a
// GOAWAY within two seconds; for HTTP/1.1, the response's Connection:
// close.
func (c *ruleConn) closing(resp *http.Response) bool {
	if c.h2 == nil {
		return resp.Close
	}
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if st := c.h2.State(); st.Closing || st.Closed {
			return true
		}
	}
	return false
}

// get sends GET path with Host host and the given header fields (name,
// value, ...; an empty value is left out); it returns the response with
// its body read (still encoded).
func (c *ruleConn) get(t *testing.T, host, path string, hdr ...string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest("GET", (&url.URL{Scheme: "https", Host: host, Path: path}).String(), nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		if hdr[i+1] != "" {
			req.Header.Set(hdr[i], hdr[i+1])
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	what := fmt.Sprintf("GET https://%s%s (SNI %s, %s)", host, path, c.rc.sni, c.rc.proto)
	resp, err := c.rt.RoundTrip(req.WithContext(ctx))
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s: reading the body: %v", what, err)
	}
	if want := map[string]int{"h2": 2, "http/1.1": 1}[c.rc.proto]; resp.ProtoMajor != want {
		t.Errorf("%s: answered over %s", what, resp.Proto)
	}
	return resp, body
}

// decode undoes Content-Encoding ce.
func decode(t *testing.T, ce string, b []byte) []byte {
	t.Helper()
	var r io.Reader
	switch ce {
	case "gzip":
		zr, err := gzip.NewReader(bytes.NewReader(b))
		if err != nil {
			t.Fatalf("gzip: %v", err)
		}
		r = zr
	case "zstd":
		zr, err := zstd.NewReader(bytes.NewReader(b))
		if err != nil {
			t.Fatalf("zstd: %v", err)
		}
		defer zr.Close()
		r = zr
	default:
		return b
	}
	out, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("%s body does not decode: %v", ce, err)
	}
	return out
}

// Every certificate adapter crossed with every rule the server enforces in
// its one guard and connection path, over HTTP/1.1 and h2, with real
// handshakes and requests: the misdirected-request check (421),
// server.policy (403), policy_quota (429 over a rate; 429 and a close, on h2
// a GOAWAY, for a connection over the identity's limit), header_rule
// (with {tls_client_cn}) and compression (gzip and zstd, whole, sized and
// streamed bodies, decoded and compared, with Vary). One server per adapter
// holds all the rules and one pebble serves acme; the adapter only supplies
// certificates, so each rule must come out the same whichever it is.
func TestEveryAdapterEveryRule(t *testing.T) {
	clientCA := testenv.NewCA(t, "clients")
	alice, bob := clientCA.Leaf(t, "alice"), clientCA.Leaf(t, "bob")
	spiffe := func(path string) *testenv.Issued {
		return clientCA.Issue(t, &x509.Certificate{ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			URIs: []*url.URL{{Scheme: "spiffe", Host: "every.example", Path: path}}})
	}
	var big bytes.Buffer
	big.WriteString("[")
	for i := range 2000 {
		fmt.Fprintf(&big, `{"id":%d,"name":"item %d"},`, i, i)
	}
	big.WriteString("{}]")

	for _, ad := range ruleAdapters(t) {
		// The body goes out in one write, with a Content-Length the
		// compressor must drop (/sized), or flushed in pieces without one
		// (/stream).
		c := plainConfig(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			switch r.URL.Path {
			case "/sized":
				w.Header().Set("Content-Length", strconv.Itoa(big.Len()))
			case "/stream":
				for p := range slices.Chunk(big.Bytes(), 4096) {
					w.Write(p)
					http.NewResponseController(w).Flush()
				}
				return
			}
			w.Write(big.Bytes())
		}))
		roots := ad.set(t, &c)
		if err := c.TLS.SSLClientAuth.UnmarshalText([]byte("verify-if-given")); err != nil {
			t.Fatal(err)
		}
		c.TLS.SSLClientCA = clientCA.File()
		setRules(t, &c, "allow path:/admin cert.cn:alice", "deny path:/admin", "allow *")
		if err := c.Rule.Quota.SetList([]string{"spiffe conns:1 rps:0.01 burst:2"}); err != nil {
			t.Fatal(err)
		}
		c.HeaderRule = mustRules(t, "*=response set X-Every-Rule on", "*=response set X-Client {tls_client_cn}")
		c.Compress.Compress = []string{"/"}
		start := time.Now()
		s := startServer(t, c)
		t.Logf("%s: server up in %v", ad.module, time.Since(start).Round(time.Millisecond))
		addr, pool := s.BindAddr().String(), roots()

		for _, proto := range []string{"http/1.1", "h2"} {
			t.Run(ad.module+"/"+proto, func(t *testing.T) {
				client := func(sni string, cert *testenv.Issued) ruleClient {
					return ruleClient{addr: addr, sni: sni, proto: proto, roots: pool, cert: cert}
				}
				anon := client(ad.a, nil)
				// One connection made for a, as a client coalescing its
				// requests would use it: b's Host belongs on a connection
				// of its own however it is spelled; a name no certificate
				// holds has nowhere else to go; a is served throughout.
				t.Run("421", func(t *testing.T) {
					m := anon.open(t)
					defer m.close()
					misdirected := http.StatusMisdirectedRequest
					if !ad.split {
						misdirected = http.StatusOK // one certificate covers both: coalescing
					}
					hosts := []struct {
						host string
						want int
					}{{ad.a, 200}, {ad.b, misdirected}, {"unnamed.test", 200}, {ad.a, 200}}
					if ad.split {
						hosts = append(hosts, []struct {
							host string
							want int
						}{{strings.ToUpper(ad.b), misdirected}, {ad.b + ".", misdirected}, {ad.b + ":443", misdirected}, {ad.a + ":443", 200}}...)
					}
					for _, h := range hosts {
						if resp, _ := m.get(t, h.host, "/"); resp.StatusCode != h.want {
							t.Errorf("Host %s on a connection for %s: %d, want %d", h.host, ad.a, resp.StatusCode, h.want)
						}
					}
					// A client that dialled the address sends no SNI and is
					// served the default certificate (the one with
					// 127.0.0.1; acme has none): b's Host is still not
					// its to ask for.
					if ad.module != "acme" {
						if resp, _ := client("127.0.0.1", nil).get(t, ad.b, "/"); resp.StatusCode != misdirected {
							t.Errorf("Host %s on a connection without SNI: %d, want %d", ad.b, resp.StatusCode, misdirected)
						}
					}
				})
				t.Run("policy", func(t *testing.T) {
					for _, p := range []struct {
						who  string
						cert *testenv.Issued
						path string
						want int
					}{
						{"alice", alice, "/admin", 200},
						{"bob", bob, "/admin", 403},
						{"nobody", nil, "/admin", 403},
						{"nobody", nil, "/ADMIN/../admin/x", 403},
						{"bob", bob, "/", 200},
					} {
						if resp, _ := client(ad.a, p.cert).get(t, ad.a, p.path); resp.StatusCode != p.want {
							t.Errorf("%s %s: %d, want %d", p.who, p.path, resp.StatusCode, p.want)
						}
					}
				})
				// Over its rate, a request gets 429 and its connection
				// stays open; a connection over its identity's limit gets
				// 429 with Retry-After: 1 and is closed, over h2 with GOAWAY.
				t.Run("quota rps", func(t *testing.T) {
					q := client(ad.a, spiffe("/rps/"+ad.module+"/"+proto)).open(t)
					defer q.close()
					for i := range 2 {
						if resp, _ := q.get(t, ad.a, "/"); resp.StatusCode != 200 {
							t.Fatalf("request %d within the burst: %d", i+1, resp.StatusCode)
						}
					}
					resp, _ := q.get(t, ad.a, "/")
					if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "1" || resp.Header.Get("Retry-After") == "" {
						t.Errorf("over the rate: %d, Retry-After %q, want 429 and the wait for a token", resp.StatusCode, resp.Header.Get("Retry-After"))
					}
					// Still open: the next request goes on the same connection.
					if resp.Close {
						t.Error("a connection over a request rate was closed")
					} else if resp, _ := q.get(t, ad.a, "/"); resp.StatusCode != http.StatusTooManyRequests {
						t.Errorf("again over the rate: %d", resp.StatusCode)
					}
				})
				t.Run("quota conns", func(t *testing.T) {
					id := client(ad.a, spiffe("/conns/"+ad.module+"/"+proto))
					first := id.open(t)
					defer first.close()
					if resp, _ := first.get(t, ad.a, "/"); resp.StatusCode != 200 {
						t.Fatalf("first connection: %d", resp.StatusCode)
					}
					second := id.open(t)
					defer second.close()
					resp, _ := second.get(t, ad.a, "/")
					if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") != "1" {
						t.Errorf("connection over the limit: %d, Retry-After %q, want 429 and 1", resp.StatusCode, resp.Header.Get("Retry-After"))
					}
					if !second.closing(resp) {
						t.Error("the connection over the limit was left open")
					}
					if resp, _ := first.get(t, ad.a, "/"); resp.StatusCode != 200 {
						t.Errorf("first connection after the refusal: %d", resp.StatusCode)
					}
				})
				t.Run("header_rule", func(t *testing.T) {
					resp, _ := anon.get(t, ad.a, "/")
					if got := resp.Header.Get("X-Every-Rule"); got != "on" {
						t.Errorf("X-Every-Rule %q, want on", got)
					}
					if got, ok := resp.Header["X-Client"]; ok {
						t.Errorf("X-Client %q without a client certificate, want none", got)
					}
					resp, _ = client(ad.a, alice).get(t, ad.a, "/")
					if got := resp.Header.Get("X-Client"); got != "alice" {
						t.Errorf("X-Client %q for alice's certificate", got)
					}
				})
				for _, cc := range []struct{ path, enc string }{
					{"/", "gzip"}, {"/", "zstd"}, {"/", ""},
					{"/sized", "gzip"}, {"/sized", "zstd"}, {"/stream", "gzip"}, {"/stream", "zstd"},
				} {
					path, enc := cc.path, cc.enc
					t.Run("compress "+path+" "+enc, func(t *testing.T) {
						resp, body := anon.get(t, ad.a, path, "Accept-Encoding", enc)
						if got := resp.Header.Get("Content-Encoding"); got != enc {
							t.Errorf("Content-Encoding %q, want %q", got, enc)
						}
						if got := resp.Header.Values("Vary"); !strings.EqualFold(strings.Join(got, ","), "Accept-Encoding") {
							t.Errorf("Vary %q, want Accept-Encoding", got)
						}
						if got := decode(t, enc, body); !bytes.Equal(got, big.Bytes()) {
							t.Errorf("%d bytes (%d on the wire) differ from the %d sent", len(got), len(body), big.Len())
						}
						if enc != "" && len(body) >= big.Len()/2 {
							t.Errorf("%d bytes on the wire for %d", len(body), big.Len())
						}
						if got := resp.Header.Get("X-Every-Rule"); got != "on" {
							t.Errorf("header rule lost on a compressed response: X-Every-Rule %q", got)
						}
						if enc != "" && resp.ContentLength >= 0 && resp.ContentLength != int64(len(body)) {
							t.Errorf("Content-Length %d for %d bytes on the wire", resp.ContentLength, len(body))
						}
					})
				}
			})
		}
	}
}
