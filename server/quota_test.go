package server

import (
	"bufio"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"testing"
	"time"

	"tlsedge/internal/testenv"
)

// TestQuotaTripsAndRecovers with real clients: by client IP, a request rate
// answered 429 with Retry-After past its burst and served again once the
// Retry-After has passed; a connection limit whose excess connection gets
// 429 and is closed, and which admits again once a connection closes; both
// counted.
func TestQuotaTripsAndRecovers(t *testing.T) {
	c := plainConfig(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	if err := c.Rule.Quota.SetList([]string{"ip conns:2 rps:2 burst:3"}); err != nil {
		t.Fatal(err)
	}
	s := startServer(t, c)
	addr := s.BindAddr().String()
	type client struct {
		nc net.Conn
		br *bufio.Reader
	}
	dial := func() client {
		nc, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { nc.Close() })
		return client{nc, bufio.NewReader(nc)}
	}
	get := func(cl client) *http.Response {
		t.Helper()
		fmt.Fprintf(cl.nc, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		cl.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
		resp, err := http.ReadResponse(cl.br, nil)
		if err != nil {
			t.Fatal(err)
		}
		io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp
	}
	a := dial()
	for i := range 3 {
		if r := get(a); r.StatusCode != 200 {
			t.Fatalf("request %d within the burst: %d", i+1, r.StatusCode)
		}
	}
	r := get(a)
	if r.StatusCode != 429 || r.Header.Get("Retry-After") != "1" || r.Close {
		t.Fatalf("past the burst: %d Retry-After %q close=%v, want 429, 1, kept open", r.StatusCode, r.Header.Get("Retry-After"), r.Close)
	}
	time.Sleep(time.Second) // the Retry-After
	if r := get(a); r.StatusCode != 200 {
		t.Fatalf("after Retry-After: %d", r.StatusCode)
	}

	b := dial() // a second connection: within conns:2
	time.Sleep(600 * time.Millisecond)
	if r := get(b); r.StatusCode != 200 {
		t.Fatalf("second connection: %d", r.StatusCode)
	}
	third := dial()
	r = get(third)
	if r.StatusCode != 429 || r.Header.Get("Retry-After") != "1" || !r.Close {
		t.Fatalf("third connection: %d Retry-After %q close=%v, want 429, 1, closed", r.StatusCode, r.Header.Get("Retry-After"), r.Close)
	}
	b.nc.Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		time.Sleep(600 * time.Millisecond) // a token, too
		r := get(dial())
		if r.StatusCode == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no connection admitted after one closed: %d", r.StatusCode)
		}
	}
	q := s.QuotaCounts()
	if len(q) != 1 || q[0].Requests < 1 || q[0].Connections < 1 {
		t.Fatalf("counts = %+v", q)
	}
}

// TestQuotaBySPIFFEID: a rate keyed by SPIFFE ID counts each verified
// identity apart, though every client comes from the same address, and
// leaves clients without one alone.
func TestQuotaBySPIFFEID(t *testing.T) {
	ca := testenv.NewCA(t, "q")
	id := func(path string) *testenv.Issued {
		return ca.Issue(t, &x509.Certificate{ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			URIs: []*url.URL{{Scheme: "spiffe", Host: "prod.example", Path: path}}})
	}
	a, b := id("/ns/a"), id("/ns/b")
	c := policyTLSConfig(t, ca)
	if err := c.Rule.Quota.SetList([]string{"spiffe rps:0.1 burst:1"}); err != nil {
		t.Fatal(err)
	}
	s := startServer(t, c)
	addr := s.BindAddr().String()
	for _, r := range []struct {
		name string
		cert *testenv.Issued
		want int
	}{
		{"a first", a, 200}, {"b first", b, 200}, {"a again", a, 429}, {"b again", b, 429}, {"no certificate", nil, 200}, {"no certificate again", nil, 200},
	} {
		if got := policyGet(t, addr, ca, r.cert, "", "GET", "/"); got != r.want {
			t.Errorf("%s: %d, want %d", r.name, got, r.want)
		}
	}
	if q := s.QuotaCounts(); q[0].Requests != 2 {
		t.Errorf("counts = %+v", q)
	}
}
