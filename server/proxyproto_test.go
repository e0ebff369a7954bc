package server

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os/exec"
	"strings"
	"testing"
	"time"

	"tlsedge/accept"
	"tlsedge/apps"
	"tlsedge/conninfo"
	"tlsedge/internal/proxyproto"
	"tlsedge/internal/testenv"
	"tlsedge/policy"
	"tlsedge/router"
)

// addrEcho answers with what the edge believes of the client: the
// connection's facts and the request's RemoteAddr.
var addrEcho = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	ci, _ := conninfo.FromContext(r.Context())
	fmt.Fprintf(w, "conninfo=%s local=%s remote_addr=%s", ci.RemoteAddr, ci.LocalAddr, r.RemoteAddr)
})

// proxyProtocolServer starts a plain server that accepts PROXY headers from
// trusted, with "/" echoing the client address and "/up" proxied to an
// upstream that echoes its X-Forwarded-For.
func proxyProtocolServer(t *testing.T, trusted ...string) *Server {
	t.Helper()
	up := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "xff=%s", r.Header.Get("X-Forwarded-For"))
	})}
	uln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go up.Serve(uln)
	t.Cleanup(func() { up.Close() })
	c := plainConfig(t, addrEcho)
	c.ProxyProtocolAccept = true
	c.ProxyProtocolTimeout = 300 * time.Millisecond
	if c.ProxyProtocolTrusted, err = policy.NewTrustedProxies(trusted...); err != nil {
		t.Fatal(err)
	}
	c.Mount = router.MustMounts("/up=http://" + uln.Addr().String())
	// The load balancer is a trusted proxy too: its trust must not pass
	// to the clients it carries.
	if c.Apps.TrustedProxies, err = policy.NewTrustedProxies("127.0.0.1"); err != nil {
		t.Fatal(err)
	}
	opts := c.Apps
	c.Targets = func(target string) (http.Handler, error) { return apps.New(target, apps.Env{Options: opts}) }
	return startServer(t, c)
}

// rawRequest sends pre (a PROXY header, or nothing) then a GET of path on
// a fresh connection, with an X-Forwarded-For of its own, and returns the
// answer's body ("" when the edge closed the connection).
func rawRequest(t *testing.T, addr string, pre []byte, path string) string {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(5 * time.Second))
	nc.Write(pre)
	fmt.Fprintf(nc, "GET %s HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 6.6.6.6\r\nConnection: close\r\n\r\n", path)
	resp, err := http.ReadResponse(bufio.NewReader(nc), nil)
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// PROXY v1 (written by curl --haproxy-protocol) and v2 (written by a Go
// client) from a trusted load balancer set the client's address in the
// connection's facts, the request's RemoteAddr and the X-Forwarded-For an
// upstream gets, which holds the client alone: the balancer is in
// trusted_proxies, the client it carries is not, so the client's own
// X-Forwarded-For is dropped. A LOCAL v2 header (a balancer's own health check) keeps
// the socket's address.
func TestProxyProtocolTrustedSetsClientAddress(t *testing.T) {
	s := proxyProtocolServer(t, "127.0.0.1/32", "::1")
	addr := s.BindAddr().String()

	v2 := proxyproto.AppendV2(nil, netip.MustParseAddrPort("203.0.113.7:40000"), netip.MustParseAddrPort("198.51.100.1:443"))
	got := rawRequest(t, addr, v2, "/")
	if want := "conninfo=203.0.113.7:40000 local=198.51.100.1:443 remote_addr=203.0.113.7:40000"; got != want {
		t.Fatalf("v2: %q, want %q", got, want)
	}
	if got := rawRequest(t, addr, v2, "/up"); got != "xff=203.0.113.7" {
		t.Fatalf("v2 through the proxy: %q", got)
	}
	v2six := proxyproto.AppendV2(nil, netip.MustParseAddrPort("[2001:db8::5]:1234"), netip.MustParseAddrPort("[2001:db8::1]:443"))
	if got := rawRequest(t, addr, v2six, "/up"); got != "xff=2001:db8::5" {
		t.Fatalf("v2 IPv6 through the proxy: %q", got)
	}
	local := proxyproto.AppendV2(nil, netip.AddrPort{}, netip.AddrPort{})
	if got := rawRequest(t, addr, local, "/"); !strings.Contains(got, "remote_addr=127.0.0.1:") {
		t.Fatalf("v2 LOCAL: %q, want the socket's own address", got)
	}
	v1 := []byte("PROXY TCP4 192.0.2.9 198.51.100.1 5555 443\r\n")
	if got := rawRequest(t, addr, v1, "/"); !strings.HasPrefix(got, "conninfo=192.0.2.9:5555 ") {
		t.Fatalf("v1: %q", got)
	}

	// curl's own v1 header carries the address curl connected from:
	// the loopback address, on the port curl used, as the client.
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("no curl")
	}
	out, err := exec.Command("curl", "-sS", "--max-time", "10", "--haproxy-protocol", "http://"+addr+"/up").CombinedOutput()
	if err != nil || string(out) != "xff=127.0.0.1" {
		t.Fatalf("curl --haproxy-protocol: %q %v", out, err)
	}
	out, err = exec.Command("curl", "-sS", "--max-time", "10", "--haproxy-protocol", "http://"+addr+"/").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "conninfo=127.0.0.1:") {
		t.Fatalf("curl --haproxy-protocol: %q %v", out, err)
	}
	if st := s.ProxyProtocolStats(); st.Accepted < 7 || st.Untrusted != 0 || st.Bad != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// The same headers from a peer outside proxy_protocol_trusted are never
// read: the connection is closed at accept, and counted. A trusted peer
// that sends no header, or a bad one, or none in time, is closed too.
func TestProxyProtocolUntrustedRefused(t *testing.T) {
	s := proxyProtocolServer(t, "192.0.2.0/24")
	addr := s.BindAddr().String()
	v2 := proxyproto.AppendV2(nil, netip.MustParseAddrPort("203.0.113.7:40000"), netip.MustParseAddrPort("198.51.100.1:443"))
	if got := rawRequest(t, addr, v2, "/"); got != "" {
		t.Fatalf("untrusted v2 answered %q", got)
	}
	if got := rawRequest(t, addr, []byte("PROXY TCP4 192.0.2.9 198.51.100.1 5555 443\r\n"), "/"); got != "" {
		t.Fatalf("untrusted v1 answered %q", got)
	}
	if _, err := exec.LookPath("curl"); err == nil {
		out, err := exec.Command("curl", "-sS", "--max-time", "10", "--haproxy-protocol", "http://"+addr+"/").CombinedOutput()
		if err == nil {
			t.Fatalf("curl --haproxy-protocol from an untrusted peer got %q", out)
		}
	}
	if st := s.ProxyProtocolStats(); st.Untrusted < 2 || st.Accepted != 0 {
		t.Fatalf("stats %+v, want the refusals counted", st)
	}

	// Trusted, but no header, a bad one, or a silent client.
	s2 := proxyProtocolServer(t, "127.0.0.1")
	addr2 := s2.BindAddr().String()
	if got := rawRequest(t, addr2, nil, "/"); got != "" {
		t.Fatalf("no header answered %q", got)
	}
	if got := rawRequest(t, addr2, []byte("PROXY TCP4 1.2.3.4 5.6.7.8 99999 1\r\n"), "/"); got != "" {
		t.Fatalf("bad header answered %q", got)
	}
	nc, err := net.Dial("tcp", addr2)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	start := time.Now()
	nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := nc.Read(make([]byte, 1)); err == nil {
		t.Fatal("a silent client got bytes")
	}
	if took := time.Since(start); took > 2*300*time.Millisecond+500*time.Millisecond {
		t.Fatalf("silent client closed after %v; proxy_protocol_timeout is 300ms", took)
	}
	if st := s2.ProxyProtocolStats(); st.Bad != 3 {
		t.Fatalf("stats %+v, want 3 bad", st)
	}
}

// With TLS the header comes first, then the ClientHello.
func TestProxyProtocolBeforeTLS(t *testing.T) {
	ca := testenv.NewCA(t, "pp")
	leaf := ca.Leaf(t, "localhost", "127.0.0.1")
	c := plainConfig(t, addrEcho)
	c.TLS.SSLModule = "builtin"
	c.TLS.SSLCertificate, c.TLS.SSLPrivateKey = []string{leaf.CertFile}, []string{leaf.KeyFile}
	c.ProxyProtocolAccept = true
	c.ProxyProtocolTrusted, _ = policy.NewTrustedProxies("127.0.0.0/8")
	s := startServer(t, c)
	v2 := proxyproto.AppendV2(nil, netip.MustParseAddrPort("203.0.113.8:1000"), netip.MustParseAddrPort("198.51.100.1:443"))
	tr := &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: ca.Pool, ServerName: "localhost"},
		DialContext: func(ctx context.Context, network, a string) (net.Conn, error) {
			var d net.Dialer
			nc, err := d.DialContext(ctx, network, a)
			if err == nil {
				_, err = nc.Write(v2)
			}
			return nc, err
		},
	}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Get("https://" + s.BindAddr().String() + "/")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.HasPrefix(string(b), "conninfo=203.0.113.8:1000 ") {
		t.Fatalf("TLS after v2: %q", b)
	}
}

func TestProxyProtocolOptionsChecked(t *testing.T) {
	c := plainConfig(t, addrEcho)
	c.ProxyProtocolAccept = true
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "proxy_protocol_trusted") {
		t.Fatalf("accept without trusted: %v; want an error naming proxy_protocol_trusted", err)
	}
}

// The peer is judged again when its header is read, under the
// configuration the connection is served with: a reload that turns
// proxy_protocol_accept on between accept and serving cannot let an
// untrusted peer's header through.
func TestProxyProtocolJudgedWhenRead(t *testing.T) {
	s := startServer(t, plainConfig(t, addrEcho))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err == nil {
			c.Write(proxyproto.AppendV2(nil, netip.MustParseAddrPort("203.0.113.7:1"), netip.MustParseAddrPort("198.51.100.1:2")))
			time.Sleep(time.Second)
			c.Close()
		}
	}()
	nc, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	cfg := plainConfig(t, addrEcho)
	cfg.ProxyProtocolAccept = true
	cfg.ProxyProtocolTimeout = time.Second
	cfg.ProxyProtocolTrusted, _ = policy.NewTrustedProxies("192.0.2.0/24")
	r := s.running
	raw := &accept.Conn{Conn: nc}
	if s.readProxyHeader(t.Context(), r, raw, &cfg) {
		t.Fatalf("an untrusted peer's header was read: remote %v", raw.RemoteAddr())
	}
	if st := r.pp.stats(); st.Untrusted != 1 {
		t.Fatalf("stats %+v", st)
	}
	cfg.ProxyProtocolTrusted, _ = policy.NewTrustedProxies("127.0.0.1")
	if !s.readProxyHeader(t.Context(), r, raw, &cfg) || raw.RemoteAddr().String() != "203.0.113.7:1" {
		t.Fatalf("a trusted peer's header: remote %v", raw.RemoteAddr())
	}
}

// A src: rule judges the client a trusted load balancer's PROXY header
// names, not the balancer: with the balancer on loopback, "allow
// src:10.0.0.0/8" admits a client from 10.1.2.3 and refuses one from
// 192.0.2.7 at accept, before any request is read; the balancer's own
// address is never what the rule sees.
func TestPolicySrcBehindProxyProtocol(t *testing.T) {
	c := plainConfig(t, addrEcho)
	c.ProxyProtocolAccept = true
	c.ProxyProtocolTimeout = 300 * time.Millisecond
	var err error
	if c.ProxyProtocolTrusted, err = policy.NewTrustedProxies("127.0.0.1"); err != nil {
		t.Fatal(err)
	}
	if err := c.Rule.Policy.SetList([]string{"deny src:192.0.2.0/24", "allow src:10.0.0.0/8"}); err != nil {
		t.Fatal(err)
	}
	s := startServer(t, c)
	addr := s.BindAddr().String()

	for _, tc := range []struct {
		name, header string
		admitted     bool
	}{
		{"v1 from 10/8", "PROXY TCP4 10.1.2.3 198.51.100.1 5555 443\r\n", true},
		{"v1 from a denied network", "PROXY TCP4 192.0.2.7 198.51.100.1 5555 443\r\n", false},
		{"v1 from no rule's network", "PROXY TCP4 203.0.113.9 198.51.100.1 5555 443\r\n", false},
	} {
		got := rawRequest(t, addr, []byte(tc.header), "/")
		if tc.admitted != strings.HasPrefix(got, "conninfo=10.1.2.3:5555 ") {
			t.Errorf("%s: answered %q, admitted want %v", tc.name, got, tc.admitted)
		}
	}
	v2 := proxyproto.AppendV2(nil, netip.MustParseAddrPort("10.9.8.7:40000"), netip.MustParseAddrPort("198.51.100.1:443"))
	if got := rawRequest(t, addr, v2, "/"); !strings.HasPrefix(got, "conninfo=10.9.8.7:40000 ") {
		t.Errorf("v2 from 10/8: %q", got)
	}
	// The balancer's own health check (LOCAL) is judged by its own
	// address, which no rule admits.
	if got := rawRequest(t, addr, proxyproto.AppendV2(nil, netip.AddrPort{}, netip.AddrPort{}), "/"); got != "" {
		t.Errorf("LOCAL from the balancer answered %q, want refused", got)
	}
	if _, err := exec.LookPath("curl"); err == nil {
		// curl's header names the loopback address it connected from.
		if out, err := exec.Command("curl", "-sS", "--max-time", "10", "--haproxy-protocol", "http://"+addr+"/").CombinedOutput(); err == nil {
			t.Errorf("curl --haproxy-protocol from 127.0.0.1 got %q, want refused", out)
		}
	}
}
