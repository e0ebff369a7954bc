package tlsadapter

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"os"
	"strings"
	"testing"

	"tlsedge/internal/testenv"
	"tlsedge/policy"
)

func TestVersions(t *testing.T) {
	ca := testenv.NewCA(t, "v")
	leaf := ca.Leaf(t, "a.test")
	ad := newBuiltinT(t, builtinOpts(leaf.CertFile, leaf.KeyFile), "a.test")
	s := serve(t, ad)
	tests := []struct {
		name    string
		version uint16
		ok      bool
	}{
		{"TLS1.0", tls.VersionTLS10, false},
		{"TLS1.1", tls.VersionTLS11, false},
		{"TLS1.2", tls.VersionTLS12, true},
		{"TLS1.3", tls.VersionTLS13, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := clientCfg(ca, "a.test")
			cfg.MinVersion, cfg.MaxVersion = tt.version, tt.version
			body, cs, err := get(s.addr, cfg)
			if tt.ok != (err == nil) {
				t.Fatalf("err = %v, want ok=%v", err, tt.ok)
			}
			if tt.ok && (cs.Version != tt.version || !strings.Contains(body, "HTTPS=on")) {
				t.Fatalf("version %x body %q", cs.Version, body)
			}
		})
	}
	st := waitStat(t, ad, func(st TLSStats) bool { return st.Failures[ReasonUnsupportedVersion] == 2 })
	if st.Handshakes != 2 || st.Versions["TLSv1.3"] != 1 || st.Versions["TLSv1.2"] != 1 {
		t.Errorf("stats %+v", st)
	}
}

func TestVersionsOptIn(t *testing.T) {
	ca := testenv.NewCA(t, "v")
	leaf := ca.Leaf(t, "a.test")
	o := builtinOpts(leaf.CertFile, leaf.KeyFile)
	o.SSLMinVersion = 0x0301
	o.SSLCiphers = policy.MustCiphers("ECDHE+AESGCM:ECDHE+AES") // TLS 1.0 needs CBC suites
	if w := o.Warnings(); len(w) == 0 || !strings.Contains(w[0], "ssl_min_version") {
		t.Errorf("warnings = %q, want ssl_min_version first", w)
	}
	s := serve(t, newBuiltinT(t, o))
	cfg := clientCfg(ca, "a.test")
	cfg.MinVersion, cfg.MaxVersion = tls.VersionTLS10, tls.VersionTLS10
	if _, cs, err := get(s.addr, cfg); err != nil || cs.Version != tls.VersionTLS10 {
		t.Fatalf("TLS 1.0 with opt-in: %v", err)
	}
}

func cbcSuites() []uint16 {
	return []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA,
		tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA, tls.TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA,
		tls.TLS_RSA_WITH_AES_128_CBC_SHA, tls.TLS_RSA_WITH_AES_256_CBC_SHA, tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256}
}

func TestCBCOnlyClientRefused(t *testing.T) {
	ca := testenv.NewCA(t, "c")
	leaf := ca.Leaf(t, "a.test")
	ad := newBuiltinT(t, builtinOpts(leaf.CertFile, leaf.KeyFile))
	s := serve(t, ad)
	cfg := clientCfg(ca, "a.test")
	cfg.MaxVersion = tls.VersionTLS12
	cfg.CipherSuites = cbcSuites()
	if _, _, err := get(s.addr, cfg); err == nil || !strings.Contains(err.Error(), "handshake failure") {
		t.Fatalf("CBC-only client: err = %v, want handshake failure", err)
	}
	waitStat(t, ad, func(st TLSStats) bool { return st.Failures[ReasonNoSharedCipher] == 1 })
}

func TestCiphersHonoured(t *testing.T) {
	ca := testenv.NewCA(t, "c")
	leaf := ca.Leaf(t, "a.test")
	o := builtinOpts(leaf.CertFile, leaf.KeyFile)
	o.SSLCiphers = policy.MustCiphers("ECDHE-ECDSA-CHACHA20-POLY1305")
	s := serve(t, newBuiltinT(t, o))
	cfg := clientCfg(ca, "a.test")
	cfg.MaxVersion = tls.VersionTLS12
	_, cs, err := get(s.addr, cfg)
	if err != nil || cs.CipherSuite != tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256 {
		t.Fatalf("err %v suite %s", err, tls.CipherSuiteName(cs.CipherSuite))
	}
	cfg.CipherSuites = []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}
	if _, _, err := get(s.addr, cfg); err == nil {
		t.Fatal("a suite outside ssl_ciphers was negotiated")
	}
}

func TestChainServedWhole(t *testing.T) {
	root := testenv.NewCA(t, "root")
	inter, interIs := intermediate(t, root, "Test Intermediate")
	leaf := inter.Leaf(t, "a.test")
	// Chain in a separate file, and the leaf file holding the chain.
	combined := leaf.CertFile + ".full"
	lb, _ := os.ReadFile(leaf.CertFile)
	ib, _ := os.ReadFile(interIs.CertFile)
	os.WriteFile(combined, append(lb, ib...), 0o644)
	separate := builtinOpts(leaf.CertFile, leaf.KeyFile)
	separate.SSLCertificateChain = []string{interIs.CertFile}
	separate.SSLTrustedCertificate = root.File()
	for name, o := range map[string]Options{"chain file": separate, "leaf file": builtinOpts(combined, leaf.KeyFile)} {
		t.Run(name, func(t *testing.T) {
			s := serve(t, newBuiltinT(t, o, "a.test"))
			_, cs, err := get(s.addr, clientCfg(root, "a.test"))
			if err != nil {
				t.Fatal(err)
			}
			if n := len(cs.PeerCertificates); n != 2 {
				t.Fatalf("served %d certificates, want leaf + intermediate", n)
			}
			if !cs.PeerCertificates[1].Equal(interIs.Cert) || len(cs.VerifiedChains[0]) != 3 {
				t.Fatalf("chain does not verify through the intermediate to the root")
			}
		})
	}
}

func TestSNISelection(t *testing.T) {
	ca := testenv.NewCA(t, "sni")
	a := ca.Leaf(t, "a.test")
	b := ca.Leaf(t, "b.test", "*.w.test")
	bRSA := issueRSA(t, ca, 2048, "b.test", "*.w.test")
	o := builtinOpts(a.CertFile, a.KeyFile, b.CertFile, b.KeyFile, bRSA.CertFile, bRSA.KeyFile)
	s := serve(t, newBuiltinT(t, o, "a.test", "b.test"))
	tests := []struct {
		sni     string
		suites  []uint16 // TLS 1.2 suites offered; nil: TLS 1.3
		want    *x509.Certificate
		wantErr bool
	}{
		{sni: "a.test", want: a.Cert},
		{sni: "b.test", want: b.Cert},
		{sni: "B.TEST", want: b.Cert},
		{sni: "x.w.test", want: b.Cert},
		{sni: "b.test", suites: []uint16{tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256}, want: bRSA.Cert},
		{sni: "y.w.test", suites: []uint16{tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256}, want: bRSA.Cert},
		{sni: "b.test", suites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}, want: b.Cert},
		{sni: "unknown.test", want: a.Cert}, // default certificate
	}
	for _, tt := range tests {
		t.Run(tt.sni, func(t *testing.T) {
			cfg := &tls.Config{ServerName: tt.sni, InsecureSkipVerify: tt.sni == "unknown.test"}
			cfg.RootCAs = ca.Pool
			if tt.suites != nil {
				cfg.MaxVersion, cfg.CipherSuites = tls.VersionTLS12, tt.suites
			}
			_, cs, err := get(s.addr, cfg)
			if err != nil {
				t.Fatal(err)
			}
			if !cs.PeerCertificates[0].Equal(tt.want) {
				t.Fatalf("got certificate %v %v", cs.PeerCertificates[0].DNSNames, cs.PeerCertificates[0].PublicKeyAlgorithm)
			}
		})
	}
}

func TestRejectUnknownSNI(t *testing.T) {
	ca := testenv.NewCA(t, "sni")
	a := ca.Leaf(t, "a.test")
	o := builtinOpts(a.CertFile, a.KeyFile)
	o.SSLRejectUnknownSNI = true
	ad := newBuiltinT(t, o)
	s := serve(t, ad)
	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		cfg := &tls.Config{ServerName: "other.test", InsecureSkipVerify: true, MaxVersion: v}
		_, _, err := get(s.addr, cfg)
		if err == nil || !strings.Contains(err.Error(), "unrecognized name") {
			t.Fatalf("TLS %x unknown SNI: err = %v, want unrecognized_name", v, err)
		}
	}
	if _, _, err := get(s.addr, clientCfg(ca, "a.test")); err != nil {
		t.Fatal(err)
	}
	waitStat(t, ad, func(st TLSStats) bool { return st.Failures[ReasonUnknownSNI] == 2 })
}

func TestBadSNIRefusedBeforeLookup(t *testing.T) {
	ca := testenv.NewCA(t, "sni")
	a := ca.Leaf(t, "a.test")
	ad := newBuiltinT(t, builtinOpts(a.CertFile, a.KeyFile))
	s := serve(t, ad)
	for _, sni := range []string{"bad name.test", "bad!.test", strings.Repeat("a.", 127) + "test", "-x.test"} {
		cfg := &tls.Config{ServerName: sni, InsecureSkipVerify: true}
		if _, _, err := get(s.addr, cfg); err == nil {
			t.Errorf("SNI %q accepted", sni)
		}
	}
	waitStat(t, ad, func(st TLSStats) bool { return st.Failures[ReasonBadSNI] == 4 })
}

func TestALPN(t *testing.T) {
	ca := testenv.NewCA(t, "alpn")
	a := ca.Leaf(t, "a.test")
	s := serve(t, newBuiltinT(t, builtinOpts(a.CertFile, a.KeyFile)))
	for _, protos := range [][]string{{"h2", "http/1.1"}, {"http/1.1"}} {
		cfg := clientCfg(ca, "a.test")
		cfg.NextProtos = protos
		_, cs, err := get(s.addr, cfg)
		if err != nil || cs.NegotiatedProtocol != protos[0] {
			t.Fatalf("offered %v: got %q, %v", protos, cs.NegotiatedProtocol, err)
		}
	}
}

func TestSessionResumption(t *testing.T) {
	ca := testenv.NewCA(t, "res")
	a := ca.Leaf(t, "a.test")
	ad := newBuiltinT(t, builtinOpts(a.CertFile, a.KeyFile))
	s := serve(t, ad)
	cfg := clientCfg(ca, "a.test")
	cfg.ClientSessionCache = tls.NewLRUClientSessionCache(4)
	for i := range 3 {
		if _, cs, err := get(s.addr, cfg); err != nil || (i > 0) != cs.DidResume {
			t.Fatalf("round %d: resumed=%v err=%v", i, cs != nil && cs.DidResume, err)
		}
	}
	waitStat(t, ad, func(st TLSStats) bool { return st.Resumed == 2 })
}

func TestUnknownModuleListsNames(t *testing.T) {
	_, err := NewRegistry().New(t.Context(), "nope", Params{})
	if !errors.Is(err, ErrUnknownModule) || !strings.Contains(err.Error(), "acme, builtin, internal, none") {
		t.Fatalf("err = %v", err)
	}
}
