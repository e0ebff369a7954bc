package tlsadapter

import (
	"context"
	"crypto/tls"
	"strings"
	"testing"
	"time"

	"tlsedge/internal/testenv"
)

func TestCurves(t *testing.T) {
	ca := testenv.NewCA(t, "cv")
	a := ca.Leaf(t, "a.test")
	t.Run("default prefers the post-quantum hybrid", func(t *testing.T) {
		s := serve(t, newBuiltinT(t, builtinOpts(a.CertFile, a.KeyFile)))
		_, cs, err := get(s.addr, clientCfg(ca, "a.test"))
		if err != nil || cs.CurveID != tls.X25519MLKEM768 {
			t.Fatalf("err %v, group %v", err, cs.CurveID)
		}
	})
	t.Run("ssl_curves restricts and keeps the hybrid", func(t *testing.T) {
		o := builtinOpts(a.CertFile, a.KeyFile)
		o.SSLCurves = mustCurves("P-384")
		s := serve(t, newBuiltinT(t, o))
		for _, tt := range []struct {
			offer []tls.CurveID
			want  tls.CurveID
		}{
			{nil, tls.X25519MLKEM768},
			{[]tls.CurveID{tls.CurveP384}, tls.CurveP384},
			{[]tls.CurveID{tls.X25519}, 0},
		} {
			cfg := clientCfg(ca, "a.test")
			cfg.CurvePreferences = tt.offer
			_, cs, err := get(s.addr, cfg)
			if tt.want == 0 {
				if err == nil {
					t.Errorf("offer %v: accepted", tt.offer)
				}
				continue
			}
			if err != nil || cs.CurveID != tt.want {
				t.Errorf("offer %v: err %v group %v", tt.offer, err, cs.CurveID)
			}
		}
	})
	if got := curvePreferences([]string{"-X25519MLKEM768", "x25519"}); len(got) != 1 || got[0] != tls.X25519 {
		t.Errorf("explicit removal: %v", got)
	}
}

func TestSessionTicketsOffAndRotation(t *testing.T) {
	ca := testenv.NewCA(t, "tk")
	a := ca.Leaf(t, "a.test")
	o := builtinOpts(a.CertFile, a.KeyFile)
	o.SSLSessionTickets = false
	s := serve(t, newBuiltinT(t, o))
	cfg := clientCfg(ca, "a.test")
	cfg.ClientSessionCache = tls.NewLRUClientSessionCache(4)
	for range 2 {
		if _, cs, err := get(s.addr, cfg); err != nil || cs.DidResume {
			t.Fatalf("tickets off: resumed=%v err=%v", cs != nil && cs.DidResume, err)
		}
	}

	// Two keys decrypt tickets, the current one and the one before, so a
	// ticket resumes across one rotation and not across two.
	const rot = time.Second
	o.SSLSessionTickets = true
	o.SSLSessionTicketKeyRotation = rot
	s = serve(t, newBuiltinT(t, o))
	cfg.ClientSessionCache = tls.NewLRUClientSessionCache(4)
	if _, _, err := get(s.addr, cfg); err != nil {
		t.Fatal(err)
	}
	time.Sleep(rot + rot/4) // one rotation: the key is the previous one now
	if _, cs, err := get(s.addr, cfg); err != nil || !cs.DidResume {
		t.Fatalf("after one rotation: resumed=%v err=%v", cs != nil && cs.DidResume, err)
	}
	cfg.ClientSessionCache = tls.NewLRUClientSessionCache(4)
	get(s.addr, cfg)
	time.Sleep(2*rot + rot/2) // two rotations or more: the key is gone
	if _, cs, err := get(s.addr, cfg); err != nil || cs.DidResume {
		t.Fatalf("after two rotations: resumed=%v err=%v", cs != nil && cs.DidResume, err)
	}
}

// A library user's own *tls.Config (the seeds' ssl_context) is honoured, and
// the sniffing and statistics still apply.
func TestUserTLSConfig(t *testing.T) {
	ca := testenv.NewCA(t, "ctx")
	a := ca.Leaf(t, "a.test")
	user := &tls.Config{Certificates: []tls.Certificate{a.TLS}, MinVersion: tls.VersionTLS13, NextProtos: []string{"x-custom"}}
	ad, err := NewRegistry().New(context.Background(), "builtin", Params{Options: Options{SSLModule: "builtin"}, TLSConfig: user, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	s := serve(t, ad)
	cfg := clientCfg(ca, "a.test")
	cfg.NextProtos = []string{"x-custom"}
	_, cs, err := get(s.addr, cfg)
	if err != nil || cs.Version != tls.VersionTLS13 || cs.NegotiatedProtocol != "x-custom" {
		t.Fatalf("err %v", err)
	}
	cfg.MaxVersion = tls.VersionTLS12
	if _, _, err := get(s.addr, cfg); err == nil {
		t.Fatal("TLS 1.2 accepted despite the user's MinVersion")
	}
	if got := rawExchange(t, s.addr, "GET / HTTP/1.1\r\n\r\n"); got != want400 {
		t.Fatalf("plain HTTP: %q", got)
	}
}

func TestHandshakeFailuresLogRateLimited(t *testing.T) {
	var b strings.Builder
	rl := &rateLog{log: testLoggerTo(&b), burst: 3}
	for range 10 {
		rl.log1(context.Background(), -4, "tls handshake failed")
	}
	if n := strings.Count(b.String(), "tls handshake failed"); n != 3 {
		t.Fatalf("%d lines logged, want 3", n)
	}
	time.Sleep(1100 * time.Millisecond)
	rl.log1(context.Background(), -4, "tls handshake failed")
	if !strings.Contains(b.String(), "suppressed=7") {
		t.Fatalf("suppressed count not reported:\n%s", b.String())
	}
}
