package integration

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"tlsedge/internal/testenv"
)

// Under ssl_module acme the built binary applies every TLS rule, as the
// other modules do: the client-certificate mode and allow-list, the
// minimum version, the handshake timeout, the plaintext redirect, HSTS,
// and the handshake counters in the metrics. Each of these was silently
// dropped when the acme module ran a handshake of its own.
func TestACMEBinaryAppliesTLSPolicy(t *testing.T) {
	pb := StartPebble(t, PebbleConfig{})
	clients := testenv.NewCA(t, "clients")
	alice, bob := clients.Leaf(t, "alice"), clients.Leaf(t, "bob")
	port := freePort(t)
	args := append(acmeArgs(pb, port, "http-01", "policy.example.com"),
		"--ssl-client-auth", "require-and-verify", "--ssl-client-ca", clients.File(), "--ssl-client-allow", "cn:alice",
		"--ssl-min-version", "1.3", "--ssl-handshake-timeout", "1", "--ssl-plaintext-action", "redirect",
		"--ssl-hsts-max-age", "3600", "--mount", "/=text:ok", "--mount", "/status=status:")
	start(t, args...)
	roots := pb.Roots(t)
	addr := HostPort(port)
	dial := func(cfg *tls.Config) (*http.Response, error) {
		cfg.ServerName, cfg.RootCAs = "policy.example.com", roots
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, cfg)
		if err != nil {
			return nil, err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		fmt.Fprint(c, "GET / HTTP/1.1\r\nHost: policy.example.com\r\nConnection: close\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			return nil, err
		}
		io.ReadAll(resp.Body)
		return resp, nil
	}
	sendCert := func(is *testenv.Issued) *tls.Config {
		return &tls.Config{GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &is.TLS, nil }}
	}

	resp, err := dial(sendCert(alice))
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("alice: %v %v", resp, err)
	}
	if h := resp.Header.Get("Strict-Transport-Security"); h != "max-age=3600" {
		t.Errorf("HSTS %q", h)
	}
	if _, err := dial(&tls.Config{}); err == nil {
		t.Error("a client without a certificate was served")
	}
	if _, err := dial(sendCert(bob)); err == nil {
		t.Error("bob, who is not on the allow-list, was served")
	}
	if _, err := dial(&tls.Config{MaxVersion: tls.VersionTLS12, GetClientCertificate: sendCert(alice).GetClientCertificate}); err == nil {
		t.Error("TLS 1.2 negotiated under ssl_min_version 1.3")
	}

	// A silent client is cut at the handshake timeout (1 s), not 10 s.
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	c.SetReadDeadline(time.Now().Add(8 * time.Second))
	c.Read(make([]byte, 1))
	c.Close()
	if took := time.Since(t0); took > 4*time.Second {
		t.Errorf("silent client held %v under ssl_handshake_timeout 1s", took)
	}

	// Plain HTTP on the TLS port is redirected.
	c, err = net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprint(c, "GET /x HTTP/1.1\r\nHost: policy.example.com\r\n\r\n")
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	pr, err := http.ReadResponse(bufio.NewReader(c), nil)
	c.Close()
	if err != nil || pr.StatusCode != 308 || pr.Header.Get("Location") != "https://policy.example.com:"+strconv.Itoa(port)+"/x" {
		t.Errorf("plain HTTP: %v %v", pr, err)
	}

	// The handshakes are counted, by reason.
	req, _ := http.NewRequest("GET", "https://policy.example.com/status/metrics", nil)
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: "policy.example.com", GetClientCertificate: sendCert(alice).GetClientCertificate},
		DisableKeepAlives: true}
	tr.DialContext = func(ctx context.Context, network, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	}
	mresp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(mresp.Body)
	mresp.Body.Close()
	// Every attempt counts in tlsedge_tls_handshakes_total (reason "" here),
	// each failure also in tlsedge_tls_handshake_failures_total by reason.
	counted := func(reason string) bool {
		for line := range strings.SplitSeq(string(body), "\n") {
			if (reason == "" && strings.HasPrefix(line, "tlsedge_tls_handshakes_total{") ||
				strings.HasPrefix(line, "tlsedge_tls_handshake_failures_total{") && strings.Contains(line, `reason="`+reason+`"`)) &&
				!strings.HasSuffix(line, " 0") {
				return true
			}
		}
		return false
	}
	for _, reason := range []string{"", "no_client_cert", "policy_denied", "unsupported_version", "plaintext", "timeout"} {
		if !counted(reason) {
			t.Errorf("no handshake counted with reason %q", reason)
		}
	}
	if t.Failed() {
		t.Logf("metrics:\n%s", body)
	}
}
