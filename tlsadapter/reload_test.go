package tlsadapter

import (
	"crypto/tls"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"tlsedge/internal/testenv"
)

// replaceFiles installs is's certificate and key at the given paths with
// atomic renames, the way deploy tools and cert-manager write them.
func replaceFiles(t *testing.T, is *testenv.Issued, certPath, keyPath string) {
	t.Helper()
	for _, f := range [][2]string{{is.CertFile, certPath}, {is.KeyFile, keyPath}} {
		b, err := os.ReadFile(f[0])
		if err != nil {
			t.Fatal(err)
		}
		tmp := f[1] + ".tmp"
		if err := os.WriteFile(tmp, b, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, f[1]); err != nil {
			t.Fatal(err)
		}
	}
}

func TestReloadUnderLoad(t *testing.T) {
	ca := testenv.NewCA(t, "r")
	dir := t.TempDir()
	certPath, keyPath := dir+"/cert.pem", dir+"/key.pem"
	replaceFiles(t, ca.Leaf(t, "a.test"), certPath, keyPath)
	ad := newBuiltinT(t, builtinOpts(certPath, keyPath), "a.test")
	s := serve(t, ad)
	cfg := clientCfg(ca, "a.test")

	// A connection opened before the swaps keeps working after them.
	early, err := tls.Dial("tcp", s.addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer early.Close()

	leaves := make([]*testenv.Issued, 5)
	for i := range leaves {
		leaves[i] = ca.Leaf(t, "a.test")
	}
	// 500 requests, 50 at a time, each on a new connection with a full
	// handshake; a swap happens after every 80 completed requests, so all
	// five land while requests are in flight.
	const clients, perClient = 50, 10
	var failures, done atomic.Int64
	var wg sync.WaitGroup
	start := make(chan struct{})
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			for range perClient {
				if _, _, err := get(s.addr, cfg); err != nil {
					failures.Add(1)
					t.Log(err)
				}
				done.Add(1)
			}
		}()
	}
	close(start)
	for i, l := range leaves {
		for done.Load() < int64(80*(i+1)) {
			time.Sleep(time.Millisecond)
		}
		replaceFiles(t, l, certPath, keyPath)
		start := time.Now()
		if err := ad.Reload(t.Context()); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			t.Logf("Reload took %v under load", time.Since(start).Round(time.Microsecond))
		}
	}
	wg.Wait()
	if n := failures.Load(); n != 0 {
		t.Fatalf("%d of %d requests failed across 5 swaps", n, clients*perClient)
	}
	_, cs, err := get(s.addr, cfg)
	if err != nil || !cs.PeerCertificates[0].Equal(leaves[4].Cert) {
		t.Fatalf("after the swaps: err %v, not serving the last certificate", err)
	}
	early.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(early, "GET / HTTP/1.1\r\n\r\n")
	if b, err := io.ReadAll(early); err != nil || len(b) == 0 {
		t.Fatalf("connection opened before the swaps: %v", err)
	}
	if st := ad.TLSStats(); st.Reloads != 5 {
		t.Errorf("reloads counted %d, want 5", st.Reloads)
	}
}

func TestReloadOnFileChange(t *testing.T) {
	ca := testenv.NewCA(t, "w")
	dir := t.TempDir()
	certPath, keyPath := dir+"/cert.pem", dir+"/key.pem"
	replaceFiles(t, ca.Leaf(t, "a.test"), certPath, keyPath)
	o := builtinOpts(certPath, keyPath)
	o.SSLReloadInterval = time.Second
	ad := newBuiltinT(t, o)
	s := serve(t, ad)
	next := ca.Leaf(t, "a.test")
	time.Sleep(10 * time.Millisecond)
	changed := time.Now()
	replaceFiles(t, next, certPath, keyPath)
	for {
		_, cs, err := get(s.addr, clientCfg(ca, "a.test"))
		if err != nil {
			t.Fatal(err)
		}
		if cs.PeerCertificates[0].Equal(next.Cert) {
			break
		}
		if time.Since(changed) > 2*time.Second {
			t.Fatal("new certificate not served within 2s of the file change")
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("new certificate served %v after the file change", time.Since(changed).Round(time.Millisecond))
}

func TestBadReloadKeepsServing(t *testing.T) {
	ca := testenv.NewCA(t, "b")
	dir := t.TempDir()
	certPath, keyPath := dir+"/cert.pem", dir+"/key.pem"
	first := ca.Leaf(t, "a.test")
	replaceFiles(t, first, certPath, keyPath)
	ad := newBuiltinT(t, builtinOpts(certPath, keyPath))
	s := serve(t, ad)
	other := ca.Leaf(t, "a.test")
	cases := map[string]func(){
		"key of another certificate": func() { b, _ := os.ReadFile(other.KeyFile); os.WriteFile(keyPath, b, 0o600) },
		"garbage key":                func() { os.WriteFile(keyPath, []byte("not a key"), 0o600) },
		"missing certificate":        func() { os.Remove(certPath) },
	}
	for name, breakIt := range cases {
		t.Run(name, func(t *testing.T) {
			replaceFiles(t, first, certPath, keyPath)
			breakIt()
			if err := ad.Reload(t.Context()); err == nil {
				t.Fatal("reload of broken files succeeded")
			}
			_, cs, err := get(s.addr, clientCfg(ca, "a.test"))
			if err != nil || !cs.PeerCertificates[0].Equal(first.Cert) {
				t.Fatalf("after a failed reload: err %v", err)
			}
		})
	}
	if st := ad.TLSStats(); st.ReloadFailures != 3 {
		t.Errorf("reload failures counted %d, want 3", st.ReloadFailures)
	}
}
