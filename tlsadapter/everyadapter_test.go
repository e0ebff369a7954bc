package tlsadapter

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"tlsedge/integration"
	"tlsedge/internal/testenv"
	"tlsedge/policy"
)

// keepOpen shares one adapter between the terminators of several cells:
// closing a cell's terminator leaves it open for the next.
type keepOpen struct{ Adapter }

func (keepOpen) Close() error { return nil }

// userAdapter is an adapter a library user registers from Go: one
// certificate, for one name.
type userAdapter struct {
	cert *tls.Certificate
	name string
}

func (u *userAdapter) Certificate(h *tls.ClientHelloInfo) (*tls.Certificate, bool, error) {
	return u.cert, h.ServerName == "" || strings.EqualFold(h.ServerName, u.name), nil
}
func (u *userAdapter) HasName(host string) bool     { return strings.EqualFold(host, u.name) }
func (u *userAdapter) Reload(context.Context) error { return nil }
func (u *userAdapter) Close() error                 { return nil }

// subject is one adapter under test: the module, the name it serves, the
// options it needs of its own, and the adapter itself.
type subject struct {
	module string
	name   string
	base   Options
	a      Adapter
}

// everyAdapter builds builtin (certificate files), internal (the local CA),
// acme (certificates from a real ACME CA, pebble, over http-01) and a user's
// own adapter registered from Go, each through the registry.
func everyAdapter(t *testing.T) []subject {
	ca := testenv.NewCA(t, "every")
	leaf := ca.Leaf(t, "a.test")
	var out []subject

	bo := builtinOpts(leaf.CertFile, leaf.KeyFile)
	term, err := NewRegistry().New(t.Context(), "builtin", Params{Options: bo, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { term.Close() })
	out = append(out, subject{"builtin", "a.test", bo, term.Adapter()})

	iopts := builtinOpts()
	iopts.SSLModule = "internal"
	term, err = NewRegistry().New(t.Context(), "internal", Params{Options: iopts, Logger: testLogger(t), DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { term.Close() })
	out = append(out, subject{"internal", "localhost", iopts, term.Adapter()})

	pb := integration.StartPebble(t, integration.PebbleConfig{})
	ao := pebbleOptions(t, pb, ChallengeHTTP01)
	ao.Domains = []string{"every.example.com"}
	term, err = newTestAdapter(t, integration.FreePort(t), ao)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { term.Close() })
	acmeOpts := builtinOpts()
	acmeOpts.SSLModule = "acme"
	out = append(out, subject{"acme", "every.example.com", acmeOpts, term.Adapter()})

	ua := &userAdapter{cert: &leaf.TLS, name: "a.test"}
	reg := NewRegistry()
	reg.Register("mine", func(context.Context, Params) (Adapter, error) { return ua, nil })
	uo := builtinOpts()
	uo.SSLModule = "mine"
	term, err = reg.New(t.Context(), "mine", Params{Options: uo, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { term.Close() })
	out = append(out, subject{"mine", "a.test", uo, term.Adapter()})
	return out
}

// A cell: options set on top of the adapter's own, and probes that must
// come out as stated. Each probe is one connection; fail names the reason
// the terminator must count, "" for a connection that must succeed.
type probe struct {
	what  string
	dial  func(t *testing.T, addr, name string) (*tls.ConnectionState, error)
	fail  string
	check func(t *testing.T, cs *tls.ConnectionState)
}

func handshake(cfg *tls.Config) func(t *testing.T, addr, name string) (*tls.ConnectionState, error) {
	return func(t *testing.T, addr, name string) (*tls.ConnectionState, error) {
		c := cfg.Clone()
		c.ServerName = name
		c.InsecureSkipVerify = true
		_, cs, err := get(addr, c)
		return cs, err
	}
}

// Every adapter crossed with every TLS policy option: each cell is enforced
// by the one terminator, the same way whatever supplies the certificates.
func TestEveryAdapterEveryPolicy(t *testing.T) {
	clientCA := testenv.NewCA(t, "clients")
	alice := clientCA.Leaf(t, "alice")
	bob := clientCA.Leaf(t, "bob")
	stranger := testenv.NewCA(t, "stranger").Leaf(t, "alice")
	// The client sends its certificate whatever CAs the server names, as a
	// hostile client would.
	cert := func(is *testenv.Issued) *tls.Config {
		return &tls.Config{GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &is.TLS, nil }}
	}
	cbcOnly := &tls.Config{MaxVersion: tls.VersionTLS12, CipherSuites: cbcSuites()}

	cells := []struct {
		name   string
		set    func(o *Options)
		probes []probe
	}{
		{"ssl_min_version 1.3", func(o *Options) { o.SSLMinVersion = policy.TLS13 }, []probe{
			{what: "TLS 1.2 client", dial: handshake(&tls.Config{MaxVersion: tls.VersionTLS12}), fail: ReasonUnsupportedVersion},
			{what: "TLS 1.3 client", dial: handshake(&tls.Config{}), check: func(t *testing.T, cs *tls.ConnectionState) {
				if cs.Version != tls.VersionTLS13 {
					t.Errorf("negotiated %s", tls.VersionName(cs.Version))
				}
			}},
		}},
		{"ssl_max_version 1.2", func(o *Options) { o.SSLMaxVersion = policy.TLS12 }, []probe{
			{what: "any client", dial: handshake(&tls.Config{}), check: func(t *testing.T, cs *tls.ConnectionState) {
				if cs.Version != tls.VersionTLS12 {
					t.Errorf("negotiated %s", tls.VersionName(cs.Version))
				}
			}},
		}},
		{"default ciphers refuse CBC", func(o *Options) {}, []probe{
			{what: "CBC-only TLS 1.2 client", dial: handshake(cbcOnly), fail: ReasonNoSharedCipher},
		}},
		{"ssl_ciphers ECDHE+AESGCM:!AES256", func(o *Options) {
			o.SSLCiphers = policy.MustCiphers("ECDHE+AESGCM:!AES256")
			o.SSLMaxVersion = policy.TLS12
		}, []probe{
			{what: "AES256-GCM only", dial: handshake(&tls.Config{MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{
				tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384}}), fail: ReasonNoSharedCipher},
			{what: "AES128-GCM", dial: handshake(&tls.Config{MaxVersion: tls.VersionTLS12}), check: func(t *testing.T, cs *tls.ConnectionState) {
				if n := tls.CipherSuiteName(cs.CipherSuite); !strings.Contains(n, "AES_128_GCM") {
					t.Errorf("negotiated %s", n)
				}
			}},
		}},
		{"ssl_curves P-384 only", func(o *Options) { o.SSLCurves = mustCurves("-X25519MLKEM768", "P-384") }, []probe{
			{what: "X25519-only client", dial: handshake(&tls.Config{CurvePreferences: []tls.CurveID{tls.X25519}}), fail: ReasonNoSharedCipher},
			{what: "P-384 client", dial: handshake(&tls.Config{CurvePreferences: []tls.CurveID{tls.CurveP384}})},
		}},
		{"ssl_session_tickets off", func(o *Options) { o.SSLSessionTickets = false }, []probe{
			{what: "resuming client", dial: func(t *testing.T, addr, name string) (*tls.ConnectionState, error) {
				cfg := &tls.Config{ServerName: name, InsecureSkipVerify: true, ClientSessionCache: tls.NewLRUClientSessionCache(2)}
				var cs *tls.ConnectionState
				for range 2 {
					var err error
					if _, cs, err = get(addr, cfg); err != nil {
						return nil, err
					}
					if cs.DidResume {
						t.Error("resumed a session with tickets off")
					}
				}
				return cs, nil
			}},
		}},
		{"ssl_client_auth request", func(o *Options) { o.SSLClientAuth = policy.ClientAuthRequest }, []probe{
			{what: "no certificate", dial: handshake(&tls.Config{})},
		}},
		{"ssl_client_auth require", func(o *Options) { o.SSLClientAuth = policy.ClientAuthRequire }, []probe{
			{what: "no certificate", dial: handshake(&tls.Config{}), fail: ReasonNoClientCert},
			{what: "any certificate", dial: handshake(cert(stranger))},
		}},
		{"ssl_client_auth verify-if-given", func(o *Options) {
			o.SSLClientAuth, o.SSLClientCA = policy.ClientAuthVerifyIfGiven, clientCA.File()
		}, []probe{
			{what: "no certificate", dial: handshake(&tls.Config{})},
			{what: "untrusted certificate", dial: handshake(cert(stranger)), fail: ReasonBadClientCert},
		}},
		{"ssl_client_auth require-and-verify", func(o *Options) {
			o.SSLClientAuth, o.SSLClientCA = policy.ClientAuthRequireAndVerify, clientCA.File()
		}, []probe{
			{what: "no certificate", dial: handshake(&tls.Config{}), fail: ReasonNoClientCert},
			{what: "untrusted certificate", dial: handshake(cert(stranger)), fail: ReasonBadClientCert},
			{what: "trusted certificate", dial: handshake(cert(alice))},
		}},
		{"ssl_client_allow cn:alice", func(o *Options) {
			o.SSLClientAuth, o.SSLClientCA, o.SSLClientAllow = policy.ClientAuthRequireAndVerify, clientCA.File(), mustAllow("cn:alice")
		}, []probe{
			{what: "alice", dial: handshake(cert(alice))},
			{what: "bob", dial: handshake(cert(bob)), fail: ReasonPolicyDenied},
			{what: "nobody", dial: handshake(&tls.Config{}), fail: ReasonNoClientCert},
		}},
		{"ssl_handshake_timeout 500ms", func(o *Options) { o.SSLHandshakeTimeout = 500 * time.Millisecond }, []probe{
			{what: "silent client", fail: ReasonTimeout, dial: func(t *testing.T, addr, name string) (*tls.ConnectionState, error) {
				c, err := net.Dial("tcp", addr)
				if err != nil {
					return nil, err
				}
				defer c.Close()
				start := time.Now()
				c.SetReadDeadline(time.Now().Add(10 * time.Second))
				_, err = c.Read(make([]byte, 1))
				if took := time.Since(start); took > 5*time.Second {
					t.Errorf("silent client held %v", took)
				}
				return nil, err
			}},
		}},
		{"ssl_plaintext_action 400", func(o *Options) { o.SSLPlaintextAction = Plaintext400 }, []probe{
			{what: "plain request", fail: ReasonPlaintext, dial: plainProbe("HTTP/1.1 400 ")},
		}},
		{"ssl_plaintext_action redirect", func(o *Options) { o.SSLPlaintextAction = PlaintextRedirect }, []probe{
			{what: "plain request", fail: ReasonPlaintext, dial: plainProbe("HTTP/1.1 308 ")},
		}},
		{"ssl_plaintext_action close", func(o *Options) { o.SSLPlaintextAction = PlaintextClose }, []probe{
			{what: "plain request", fail: ReasonPlaintext, dial: plainProbe("")},
		}},
	}
	for _, sub := range everyAdapter(t) {
		for _, cell := range cells {
			t.Run(sub.module+"/"+cell.name, func(t *testing.T) {
				o := sub.base
				cell.set(&o)
				term, err := newTerminator(sub.module, Params{Options: o, Logger: testLogger(t)}, keepOpen{sub.a})
				if err != nil {
					t.Fatalf("rejected at start-up: %v", err)
				}
				s := serve(t, term)
				for _, p := range cell.probes {
					before := term.TLSStats()
					cs, err := p.dial(t, s.addr, sub.name)
					if p.fail == "" {
						if err != nil {
							t.Errorf("%s: refused: %v", p.what, err)
						} else if p.check != nil {
							p.check(t, cs)
						}
						continue
					}
					if p.fail != ReasonPlaintext && p.fail != ReasonTimeout && err == nil {
						t.Errorf("%s: accepted, want refused (%s)", p.what, p.fail)
					}
					st := waitStat(t, term, func(st TLSStats) bool { return st.Failures[p.fail] > before.Failures[p.fail] })
					if st.Failures[p.fail] <= before.Failures[p.fail] {
						t.Errorf("%s: failure %s not counted: %v", p.what, p.fail, st.Failures)
					}
				}
			})
		}
	}
}

// plainProbe sends a plain HTTP request for name to the TLS port and wants
// an answer starting with want ("" for a close without an answer).
func plainProbe(want string) func(t *testing.T, addr, name string) (*tls.ConnectionState, error) {
	return func(t *testing.T, addr, name string) (*tls.ConnectionState, error) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			return nil, err
		}
		defer c.Close()
		fmt.Fprintf(c, "GET /x?y HTTP/1.1\r\nHost: %s\r\n\r\n", name)
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		line, err := bufio.NewReader(c).ReadString('\n')
		if want == "" {
			if line != "" {
				t.Errorf("close action answered %q", line)
			}
			if err != io.EOF {
				t.Errorf("close action: %v, want EOF", err)
			}
			return nil, nil
		}
		if !strings.HasPrefix(line, want) {
			t.Errorf("answer %q, want %q (err %v)", line, want, err)
		}
		return nil, nil
	}
}
