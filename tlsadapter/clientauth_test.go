package tlsadapter

import (
	"crypto/tls"
	"fmt"
	"os"
	"strings"
	"testing"

	"tlsedge/internal/testenv"
	"tlsedge/policy"
)

func TestMTLSMatrix(t *testing.T) {
	serverCA := testenv.NewCA(t, "srv")
	srv := serverCA.Leaf(t, "a.test")
	clientCA := testenv.NewCA(t, "clients")
	strangerCA := testenv.NewCA(t, "stranger")
	alice := clientCA.Leaf(t, "alice")
	mallory := strangerCA.Leaf(t, "alice") // same name, untrusted issuer

	type clientKind string
	const (
		trusted   clientKind = "trusted"
		untrusted clientKind = "untrusted"
		absent    clientKind = "absent"
	)
	type allowKind string
	const (
		noList allowKind = "no-list"
		hit    allowKind = "allow-hit"
		miss   allowKind = "allow-miss"
	)
	// want: "" for success with that SSL_CLIENT_VERIFY, else the failure reason.
	type outcome struct{ verify, reason string }
	ok := func(v string) outcome { return outcome{verify: v} }
	fail := func(r string) outcome { return outcome{reason: r} }
	want := map[policy.ClientAuth]map[allowKind]map[clientKind]outcome{
		policy.ClientAuthNone:    {noList: {trusted: ok("NONE"), untrusted: ok("NONE"), absent: ok("NONE")}},
		policy.ClientAuthRequest: {noList: {trusted: ok("GENEROUS"), untrusted: ok("GENEROUS"), absent: ok("NONE")}},
		policy.ClientAuthRequire: {noList: {trusted: ok("GENEROUS"), untrusted: ok("GENEROUS"), absent: fail(ReasonNoClientCert)}},
		policy.ClientAuthVerifyIfGiven: {
			noList: {trusted: ok("SUCCESS"), untrusted: fail(ReasonBadClientCert), absent: ok("NONE")},
			hit:    {trusted: ok("SUCCESS"), untrusted: fail(ReasonBadClientCert), absent: fail(ReasonPolicyDenied)},
			miss:   {trusted: fail(ReasonPolicyDenied), untrusted: fail(ReasonBadClientCert), absent: fail(ReasonPolicyDenied)},
		},
		policy.ClientAuthRequireAndVerify: {
			noList: {trusted: ok("SUCCESS"), untrusted: fail(ReasonBadClientCert), absent: fail(ReasonNoClientCert)},
			hit:    {trusted: ok("SUCCESS"), untrusted: fail(ReasonBadClientCert), absent: fail(ReasonNoClientCert)},
			miss:   {trusted: fail(ReasonPolicyDenied), untrusted: fail(ReasonBadClientCert), absent: fail(ReasonNoClientCert)},
		},
	}
	lists := map[allowKind][]string{noList: nil, hit: {"cn:bob", "cn:alice"}, miss: {"cn:bob", "ou:ops"}}
	certs := map[clientKind]*testenv.Issued{trusted: alice, untrusted: mallory, absent: nil}

	for mode, byList := range want {
		for list, byClient := range byList {
			o := builtinOpts(srv.CertFile, srv.KeyFile)
			o.SSLClientAuth = mode
			if mode.Verifies() {
				o.SSLClientCA = clientCA.File()
			}
			o.SSLClientAllow = mustAllow(lists[list]...)
			ad := newBuiltinT(t, o)
			s := serve(t, ad)
			for client, w := range byClient {
				for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
					name := fmt.Sprintf("%s/%s/%s/%s", mode, list, client, tls.VersionName(v))
					t.Run(name, func(t *testing.T) {
						cfg := clientCfg(serverCA, "a.test")
						cfg.MaxVersion = v
						if c := certs[client]; c != nil {
							// Always send it: Go's client would otherwise hold back a
							// certificate whose issuer the server did not list.
							cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &c.TLS, nil }
						}
						before := ad.TLSStats().Failures
						body, _, err := get(s.addr, cfg)
						if w.reason != "" {
							if err == nil {
								t.Fatalf("allowed, want refusal (%s); body %q", w.reason, body)
							}
							waitStat(t, ad, func(st TLSStats) bool { return st.Failures[w.reason] == before[w.reason]+1 })
							return
						}
						if err != nil {
							t.Fatalf("refused: %v", err)
						}
						if !strings.Contains(body, "SSL_CLIENT_VERIFY="+w.verify+"\n") {
							t.Fatalf("want SSL_CLIENT_VERIFY=%s in %q", w.verify, body)
						}
						if client == trusted && w.verify != "NONE" && !strings.Contains(body, "SSL_CLIENT_S_DN=CN=alice\n") {
							t.Fatalf("no client subject in %q", body)
						}
					})
				}
			}
		}
	}
}

func TestAllowListNeedsVerification(t *testing.T) {
	for _, mode := range []policy.ClientAuth{policy.ClientAuthNone, policy.ClientAuthRequest, policy.ClientAuthRequire} {
		o := builtinOpts("c.pem", "k.pem")
		o.SSLClientAuth = mode
		o.SSLClientAllow = mustAllow("cn:alice")
		if err := o.Validate(); err == nil || !strings.Contains(err.Error(), "ssl_client_allow") {
			t.Errorf("%s with an allow-list: err = %v", mode, err)
		}
	}
	o := builtinOpts("c.pem", "k.pem")
	o.SSLClientAuth = policy.ClientAuthRequireAndVerify
	if err := o.Validate(); err == nil || !strings.Contains(err.Error(), "ssl_client_ca") {
		t.Errorf("verify without a CA: err = %v", err)
	}
}

// Resumed sessions go through the same allow-list check, and a reloaded
// ssl_client_ca applies to the next handshake.
func TestClientAuthResumptionAndCAReload(t *testing.T) {
	serverCA := testenv.NewCA(t, "srv")
	srv := serverCA.Leaf(t, "a.test")
	oldCA, newCA := testenv.NewCA(t, "old"), testenv.NewCA(t, "new")
	alice := oldCA.Leaf(t, "alice")
	dir := t.TempDir()
	caFile := dir + "/clients.pem"
	if err := os.WriteFile(caFile, oldCA.CertPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	o := builtinOpts(srv.CertFile, srv.KeyFile)
	o.SSLClientAuth = policy.ClientAuthRequireAndVerify
	o.SSLClientCA = caFile
	o.SSLClientAllow = mustAllow("cn:alice")
	ad := newBuiltinT(t, o)
	s := serve(t, ad)
	cfg := clientCfg(serverCA, "a.test")
	cfg.Certificates = []tls.Certificate{alice.TLS}
	cfg.ClientSessionCache = tls.NewLRUClientSessionCache(4)
	for i := range 2 {
		body, cs, err := get(s.addr, cfg)
		if err != nil || cs.DidResume != (i == 1) || !strings.Contains(body, "SSL_CLIENT_VERIFY=SUCCESS") {
			t.Fatalf("round %d: err %v body %q", i, err, body)
		}
	}
	if err := os.WriteFile(caFile, newCA.CertPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := ad.Reload(t.Context()); err != nil {
		t.Fatal(err)
	}
	cfg.ClientSessionCache = nil
	cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &alice.TLS, nil }
	if _, _, err := get(s.addr, cfg); err == nil {
		t.Fatal("a client of the old CA was accepted after ssl_client_ca changed")
	}
}
