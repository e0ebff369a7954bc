package tlsadapter

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"

	"tlsedge/integration"
	"tlsedge/internal/testenv"
)

// defaultACMEOptions fills ACMEOptions from its `default` tags the way the
// server does, so tests run with the shipped defaults (and prove they parse).
func defaultACMEOptions(t testing.TB) ACMEOptions {
	t.Helper()
	var o ACMEOptions
	v := reflect.ValueOf(&o).Elem()
	for i := 0; i < v.NumField(); i++ {
		f := v.Type().Field(i)
		def, ok := f.Tag.Lookup("default")
		if !ok {
			continue
		}
		fv := v.Field(i)
		if u, ok := fv.Addr().Interface().(encoding.TextUnmarshaler); ok {
			if err := u.UnmarshalText([]byte(def)); err != nil {
				t.Fatalf("%s default %q: %v", f.Name, def, err)
			}
			continue
		}
		var err error
		switch fv.Interface().(type) {
		case string:
			fv.SetString(def)
		case bool:
			var b bool
			b, err = strconv.ParseBool(def)
			fv.SetBool(b)
		case int:
			var n int
			n, err = strconv.Atoi(def)
			fv.SetInt(int64(n))
		case time.Duration:
			var d time.Duration
			d, err = time.ParseDuration(def)
			fv.SetInt(int64(d))
		case []string:
			fv.Set(reflect.ValueOf(strings.Split(def, ",")))
		default:
			t.Fatalf("%s: unsupported type %s", f.Name, fv.Type())
		}
		if err != nil {
			t.Fatalf("%s default %q: %v", f.Name, def, err)
		}
	}
	return o
}

// acmeTestServer is the acme adapter behind a real loopback TLS listener,
// answering every request with "ok" so clients can count failures.
type acmeTestServer struct {
	t        *Terminator
	a        *acmeAdapter
	logf     func(format string, args ...any)
	ln       net.Listener
	port     int
	failures atomic.Int64 // handshakes that failed (probes excluded)
	probes   atomic.Int64 // tls-alpn-01 probes answered
	wg       sync.WaitGroup
}

// pebbleOptions are options pointing at pb with fresh storage.
func pebbleOptions(t testing.TB, pb *integration.Pebble, challenges ...string) ACMEOptions {
	o := defaultACMEOptions(t)
	o.CA = pb.Directory
	o.CARoot = pb.RootFile
	o.Email = "admin@example.com"
	o.Storage = filepath.Join(t.TempDir(), "acme")
	o.Challenges = challenges
	o.HTTPPort = pb.HTTPPort
	o.RenewInterval = time.Second
	o.RetryInterval = time.Second
	return o
}

// acmeNode is what a test adds to the options when it builds an acme
// adapter: for a node of a cluster, the shared storage (acme_storage is then
// cleared, as a node leaves it unset, and the per-node data directory holds
// nothing of the certificate) and a logger naming the node. The zero value
// is a single server on files, logging to the test.
type acmeNode struct {
	Storage certmagic.Storage
	Log     *slog.Logger
}

// startACMEServer is acmeNode{}.start: one server on files.
func startACMEServer(t testing.TB, port int, o ACMEOptions) (*acmeTestServer, error) {
	t.Helper()
	return acmeNode{}.start(t, port, o)
}

// start builds the adapter, then listens on port (pebble's tls-alpn-01
// port, or 0) and serves, in the order the server must use: the start-up
// obtain answers tls-alpn-01 on a listener certmagic binds for the
// duration, so the port must still be free while the factory runs.
func (n acmeNode) start(t testing.TB, port int, o ACMEOptions) (*acmeTestServer, error) {
	t.Helper()
	if port == 0 {
		port = integration.FreePort(t)
	}
	ad, err := n.adapter(t, port, o)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", integration.HostPort(port))
	if err != nil {
		ad.Close()
		t.Fatal(err)
	}
	return serveACME(t, ad, ln), nil
}

func newTestAdapter(t testing.TB, port int, o ACMEOptions) (*Terminator, error) {
	return acmeNode{}.adapter(t, port, o)
}

// adapter builds the adapter for a server on port without listening.
func (n acmeNode) adapter(t testing.TB, port int, o ACMEOptions) (*Terminator, error) {
	log := n.Log
	if log == nil {
		log = testLogger(t)
	}
	if n.Storage != nil {
		o.Storage = ""
	}
	p := Params{
		Options: Options{SSLModule: "acme", ACME: o},
		Logger:  log,
		Host:    "127.0.0.1",
		Port:    port,
		DataDir: t.TempDir(),
		Storage: n.Storage,
	}
	return NewRegistry().New(context.Background(), "acme", p)
}

// serveACME accepts on ln with adapter ad until the test ends.
func serveACME(t testing.TB, ad *Terminator, ln net.Listener) *acmeTestServer {
	s := &acmeTestServer{t: ad, a: ad.Adapter().(*acmeAdapter), ln: ln, port: ln.Addr().(*net.TCPAddr).Port, logf: t.Logf}
	s.wg.Add(1)
	go s.serve()
	t.Cleanup(s.close)
	return s
}

func (s *acmeTestServer) serve() {
	defer s.wg.Done()
	for {
		raw, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			c, _, err := s.t.Wrap(context.Background(), raw)
			if errors.Is(err, ErrChallenge) {
				s.probes.Add(1)
				return
			}
			if err != nil {
				s.failures.Add(1)
				s.logf("server-side handshake failure: %v", err)
				return
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(5 * time.Second))
			if _, err := http.ReadRequest(bufio.NewReader(c)); err != nil {
				return
			}
			fmt.Fprint(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
		}()
	}
}

func (s *acmeTestServer) close() {
	s.ln.Close()
	s.t.Close()
	s.wg.Wait()
}

// handshake connects with SNI name and returns the served leaf, verified
// against roots (when non-nil).
func (s *acmeTestServer) handshake(name string, roots *x509.CertPool, protos ...string) (*x509.Certificate, tls.ConnectionState, error) {
	d := &net.Dialer{Timeout: 5 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", integration.HostPort(s.port), &tls.Config{
		ServerName:         name,
		RootCAs:            roots,
		InsecureSkipVerify: roots == nil,
		NextProtos:         protos,
	})
	if err != nil {
		return nil, tls.ConnectionState{}, err
	}
	defer c.Close()
	st := c.ConnectionState()
	return st.PeerCertificates[0], st, nil
}

// get does one HTTPS request for name over a fresh connection.
func (s *acmeTestServer) get(name string, roots *x509.CertPool) (*x509.Certificate, error) {
	tr := &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: roots},
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, integration.HostPort(s.port))
		},
	}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Get("https://" + name + "/")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("status %s", resp.Status)
	}
	return resp.TLS.PeerCertificates[0], nil
}

func TestACMEHTTP01(t *testing.T) {
	pb := integration.StartPebble(t, integration.PebbleConfig{})
	o := pebbleOptions(t, pb, ChallengeHTTP01)
	o.Domains = []string{"http01.example.com"}
	start := time.Now()
	s, err := startACMEServer(t, 0, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("obtained in %s", time.Since(start))
	roots := pb.Roots(t)
	leaf, err := s.get("http01.example.com", roots)
	if err != nil {
		t.Fatalf("served certificate does not verify against pebble's root: %v", err)
	}
	if leaf.DNSNames[0] != "http01.example.com" {
		t.Errorf("leaf names %v", leaf.DNSNames)
	}
	if !strings.Contains(pb.Log(), "Attempting to validate w/ HTTP") {
		t.Errorf("pebble log shows no http-01 validation")
	}
	if n := pb.Orders(); n != 1 {
		t.Errorf("pebble saw %d orders, want 1", n)
	}
	st := s.a.ACMEStats()
	if st.Obtained != 1 || st.Failed != 0 || len(st.Names) != 1 || st.Names[0].State != "valid" || st.Names[0].DaysLeft < 89 {
		t.Errorf("stats %+v", st)
	}

	t.Run("redirect", func(t *testing.T) {
		c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		req, _ := http.NewRequest("GET", "http://"+s.a.HTTPAddr().String()+"/a/b?c=d", nil)
		req.Host = "http01.example.com"
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		want := fmt.Sprintf("https://http01.example.com:%d/a/b?c=d", s.port)
		if resp.StatusCode != http.StatusPermanentRedirect || resp.Header.Get("Location") != want {
			t.Errorf("got %s %q, want 308 %q", resp.Status, resp.Header.Get("Location"), want)
		}
	})

	t.Run("check", func(t *testing.T) {
		checks, err := CheckACME(context.Background(), Params{Options: Options{ACME: o}})
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range checks {
			t.Logf("%s ok=%v %s", c.What, c.OK, c.Detail)
			if !c.OK {
				t.Errorf("check %s failed: %s", c.What, c.Detail)
			}
		}
		if len(checks) != 3 || checks[2].Name == nil || checks[2].Name.State != "valid" {
			t.Errorf("checks %+v", checks)
		}
		// Keys are private: certmagic writes them 0600 under 0700 directories.
		filepath.WalkDir(o.Storage, func(path string, d os.DirEntry, err error) error {
			if err != nil {
				return err
			}
			fi, _ := d.Info()
			if d.IsDir() && fi.Mode().Perm() != 0o700 || strings.HasSuffix(path, ".key") && fi.Mode().Perm() != 0o600 {
				t.Errorf("%s is %s", path, fi.Mode().Perm())
			}
			return nil
		})
	})
}

func TestACMETLSALPN01(t *testing.T) {
	pb := integration.StartPebble(t, integration.PebbleConfig{})
	o := pebbleOptions(t, pb, ChallengeTLSALPN01)
	o.Domains = []string{"alpn.example.com"}
	s, err := startACMEServer(t, pb.TLSPort, o)
	if err != nil {
		t.Fatal(err)
	}
	if s.a.HTTPAddr() != nil {
		t.Error("http-01 listener open though only tls-alpn-01 is enabled")
	}
	roots := pb.Roots(t)
	if _, err := s.get("alpn.example.com", roots); err != nil {
		t.Fatalf("served certificate does not verify against pebble's root: %v", err)
	}
	// acme-tls/1 offered beside another protocol is not a probe: the ordinary
	// protocol is chosen and the real certificate served.
	_, st, err := s.handshake("alpn.example.com", roots, "acme-tls/1", "http/1.1")
	if err != nil || st.NegotiatedProtocol != "http/1.1" {
		t.Errorf("mixed ALPN: %v, negotiated %q", err, st.NegotiatedProtocol)
	}
	// A probe-shaped hello with no challenge pending gets nothing.
	if _, _, err := s.handshake("alpn.example.com", nil, "acme-tls/1"); err == nil {
		t.Error("probe without a pending challenge completed a handshake")
	}
	waitFor(t, "the stray probe's server-side failure", func() bool { return s.failures.Load() == 1 })

	// Renewals and on-demand orders happen while the server listens: their
	// probes reach Wrap, are answered there and never reach the application.
	if err := s.a.main.RenewCertSync(context.Background(), "alpn.example.com", true); err != nil {
		t.Fatalf("forced renewal: %v", err)
	}
	// Wrap returns a probe after its handshake, which the CA may have
	// finished validating (and issued on) just before.
	waitFor(t, "a tls-alpn-01 probe reaching Wrap during the renewal", func() bool { return s.probes.Load() > 0 })
	if pb.Orders() != 2 {
		t.Errorf("orders %d, want 2", pb.Orders())
	}
}

func TestACMERestartReusesStorage(t *testing.T) {
	pb := integration.StartPebble(t, integration.PebbleConfig{})
	o := pebbleOptions(t, pb, ChallengeTLSALPN01)
	o.Domains = []string{"restart.example.com"}
	s, err := startACMEServer(t, pb.TLSPort, o)
	if err != nil {
		t.Fatal(err)
	}
	roots := pb.Roots(t)
	first, err := s.get("restart.example.com", roots)
	if err != nil {
		t.Fatal(err)
	}
	s.close()

	s2, err := startACMEServer(t, pb.TLSPort, o)
	if err != nil {
		t.Fatal(err)
	}
	again, err := s2.get("restart.example.com", roots)
	if err != nil {
		t.Fatal(err)
	}
	if first.SerialNumber.Cmp(again.SerialNumber) != 0 {
		t.Errorf("serial changed across restart: %x -> %x", first.SerialNumber, again.SerialNumber)
	}
	if n := pb.Orders(); n != 1 {
		t.Errorf("pebble saw %d orders, want 1 (restart must reuse storage)", n)
	}
	if st := s2.a.ACMEStats(); st.Obtained != 0 || st.Names[0].State != "valid" {
		t.Errorf("restarted stats %+v", st)
	}
}

func TestACMERenewal(t *testing.T) {
	// One-minute certificates with a 90% window are due six seconds after
	// issue; maintenance runs every second. Clients keep connecting
	// throughout and none may fail.
	pb := integration.StartPebble(t, integration.PebbleConfig{Validity: time.Minute})
	o := pebbleOptions(t, pb, ChallengeHTTP01, ChallengeTLSALPN01)
	o.Domains = []string{"renew.example.com"}
	o.RenewWindow = 0.9
	s, err := startACMEServer(t, pb.TLSPort, o)
	if err != nil {
		t.Fatal(err)
	}
	roots := pb.Roots(t)
	serials := map[string]bool{}
	var requests, failed int
	deadline := time.Now().Add(45 * time.Second)
	for len(serials) < 3 && time.Now().Before(deadline) {
		leaf, err := s.get("renew.example.com", roots)
		requests++
		if err != nil {
			failed++
			t.Errorf("request %d failed: %v", requests, err)
			continue
		}
		serials[leaf.SerialNumber.Text(16)] = true
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("%d requests, %d failed, %d certificates served", requests, failed, len(serials))
	if len(serials) < 3 {
		t.Errorf("served %d distinct certificates, want an original and two renewals", len(serials))
	}
	if strings.Contains(pb.Log(), "set INVALID") {
		t.Error("pebble saw a failed validation")
	}
	// Renewals name the certificate they replace (ARI "replaces"), which
	// pebble records as it finalizes the order.
	if n := strings.Count(pb.Log(), "has been marked as replaced"); n < 2 {
		t.Errorf("pebble marked %d certificates as replaced, want one per renewal (ARI replaces not sent)", n)
	}
	// Server-side failures are not requests: pebble validates from several
	// perspectives and drops the connections it no longer needs (EOF).
	t.Logf("%d server-side handshake failures (abandoned validation probes)", s.failures.Load())
	if st := s.a.ACMEStats(); st.Renewed < 2 || st.Obtained != 1 {
		t.Errorf("stats %+v", st)
	}
}

func TestACMEOnDemand(t *testing.T) {
	pb := integration.StartPebble(t, integration.PebbleConfig{})
	o := pebbleOptions(t, pb, ChallengeTLSALPN01)
	o.OnDemand = true
	o.OnDemandAllow = []string{"*.ondemand.example.com", "~shop[0-9]+\\.example\\.org"}
	o.OnDemandRate = 2
	s, err := startACMEServer(t, pb.TLSPort, o)
	if err != nil {
		t.Fatal(err)
	}
	roots := pb.Roots(t)
	if pb.Orders() != 0 {
		t.Fatal("orders placed before any handshake")
	}
	leaf, err := s.get("a.ondemand.example.com", roots)
	if err != nil {
		t.Fatalf("allowed name: %v", err)
	}
	if leaf.DNSNames[0] != "a.ondemand.example.com" || pb.Orders() != 1 {
		t.Errorf("names %v, orders %d", leaf.DNSNames, pb.Orders())
	}
	// Second visit: served from the cache, no new order.
	if _, err := s.get("a.ondemand.example.com", roots); err != nil || pb.Orders() != 1 {
		t.Errorf("second visit: %v, orders %d", err, pb.Orders())
	}
	for _, refused := range []string{"evil.example.net", "ondemand.example.com", "shop1.example.org.evil.net", "x.shop1.example.org"} {
		if _, _, err := s.handshake(refused, nil); err == nil {
			t.Errorf("%s: handshake succeeded", refused)
		}
	}
	if n := pb.Orders(); n != 1 {
		t.Errorf("refused names placed orders: %d, want 1", n)
	}
	if _, err := s.get("shop7.example.org", roots); err != nil {
		t.Errorf("regexp-allowed name: %v", err)
	}
	// The rate (2 per minute) is used up: a third allowed name is refused
	// at once, before its order reaches pebble.
	start := time.Now()
	if _, _, err := s.handshake("b.ondemand.example.com", nil); err == nil {
		t.Error("rate limit did not refuse the third order")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("rate-limited handshake took %s to fail", d)
	}
	if n := pb.Orders(); n != 2 {
		t.Errorf("pebble saw %d orders, want 2", n)
	}
	st := s.a.ACMEStats()
	if st.Obtained != 2 || len(st.Names) != 2 {
		t.Errorf("stats %+v", st)
	}
}

func TestACMECADown(t *testing.T) {
	pb := integration.StartPebble(t, integration.PebbleConfig{})
	pb.Stop()

	t.Run("sync start fails clearly", func(t *testing.T) {
		o := pebbleOptions(t, pb, ChallengeTLSALPN01)
		o.Domains = []string{"down.example.com"}
		start := time.Now()
		_, err := startACMEServer(t, pb.TLSPort, o)
		if err == nil {
			t.Fatal("adapter started with its CA down")
		}
		t.Logf("after %s: %v", time.Since(start), err)
		for _, want := range []string{"down.example.com", pb.Directory, "acme_async"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error does not mention %q", want)
			}
		}
		if time.Since(start) > 30*time.Second {
			t.Errorf("took %s to give up", time.Since(start))
		}
	})

	t.Run("async falls back, then recovers", func(t *testing.T) {
		dev := testenv.NewCA(t, "fallback")
		o := pebbleOptions(t, pb, ChallengeTLSALPN01)
		o.Domains = []string{"down.example.com"}
		o.Async = true
		fallback := dev.Leaf(t, "down.example.com").TLS
		o.Fallback = func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return &fallback, nil }
		s, err := startACMEServer(t, pb.TLSPort, o)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.get("down.example.com", dev.Pool); err != nil {
			t.Fatalf("fallback certificate: %v", err)
		}
		pb.Start()
		roots := pb.Roots(t)
		deadline := time.Now().Add(30 * time.Second)
		for {
			_, err := s.get("down.example.com", roots)
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("no ACME certificate after the CA came back: %v", err)
			}
			time.Sleep(200 * time.Millisecond)
		}
		if st := s.a.ACMEStats(); st.Obtained != 1 || st.Names[0].State != "valid" {
			t.Errorf("stats %+v", st)
		}
	})
}

// waitFor polls cond for up to 5 seconds: server goroutines finish a moment
// after the client sees the result.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// TestACMEStartAfterAccept is the server's order: bind the listener, build
// the adapter (which cannot obtain yet: tls-alpn-01 probes would hit a socket
// nobody accepts on), accept, then Start, which obtains before "ready".
func TestACMEStartAfterAccept(t *testing.T) {
	pb := integration.StartPebble(t, integration.PebbleConfig{})
	o := pebbleOptions(t, pb, ChallengeTLSALPN01)
	o.Domains = []string{"bound.example.com"}
	ln, err := net.Listen("tcp", integration.HostPort(pb.TLSPort))
	if err != nil {
		t.Fatal(err)
	}
	ad, err := newTestAdapter(t, pb.TLSPort, o)
	if err != nil {
		ln.Close()
		t.Fatal(err)
	}
	if pb.Orders() != 0 {
		t.Fatal("the factory placed an order though the probe port was not accepting")
	}
	s := serveACME(t, ad, ln)
	if err := ad.Adapter().(ACMEStarter).Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := s.get("bound.example.com", pb.Roots(t)); err != nil {
		t.Fatal(err)
	}
	if s.probes.Load() == 0 {
		t.Error("no tls-alpn-01 probe reached Wrap")
	}
	if err := ad.Adapter().(ACMEStarter).Start(context.Background()); err != nil {
		t.Errorf("second Start: %v", err)
	}
	if pb.Orders() != 1 {
		t.Errorf("orders %d, want 1", pb.Orders())
	}
}

// With http-01 enabled too, a bound-but-not-accepting listener does not hold
// the start-up back: the factory obtains by http-01 alone (no tls-alpn-01
// probe is left to time out), and Start has nothing left to do.
func TestACMEBoundListenerUsesHTTP01(t *testing.T) {
	pb := integration.StartPebble(t, integration.PebbleConfig{})
	o := pebbleOptions(t, pb, ChallengeHTTP01, ChallengeTLSALPN01)
	o.Domains = []string{"both.example.com"}
	ln, err := net.Listen("tcp", integration.HostPort(pb.TLSPort))
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	ad, err := newTestAdapter(t, pb.TLSPort, o)
	if err != nil {
		ln.Close()
		t.Fatal(err)
	}
	t.Logf("factory took %s", time.Since(start))
	s := serveACME(t, ad, ln)
	if pb.Orders() != 1 || strings.Contains(pb.Log(), "set INVALID") || !strings.Contains(pb.Log(), "Attempting to validate w/ HTTP") {
		t.Fatalf("orders %d; want one order validated by http-01 alone", pb.Orders())
	}
	if err := ad.Adapter().(ACMEStarter).Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := s.get("both.example.com", pb.Roots(t)); err != nil {
		t.Fatal(err)
	}
	if pb.Orders() != 1 {
		t.Errorf("orders %d, want 1", pb.Orders())
	}
}
