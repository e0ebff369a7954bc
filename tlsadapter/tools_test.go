package tlsadapter

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"tlsedge/internal/testenv"
	"tlsedge/policy"
)

func runTool(t *testing.T, stdin string, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func TestCurl(t *testing.T) {
	curl := testenv.RequireTool(t, "curl", "curl")
	root := testenv.NewCA(t, "curl")
	inter, interIs := intermediate(t, root, "Curl Intermediate")
	leaf := inter.Leaf(t, "a.test")
	o := builtinOpts(leaf.CertFile, leaf.KeyFile)
	o.SSLCertificateChain = []string{interIs.CertFile}
	s := serve(t, newBuiltinT(t, o, "a.test"))
	url := fmt.Sprintf("https://a.test:%d/", s.port)
	resolve := fmt.Sprintf("a.test:%d:127.0.0.1", s.port)
	base := []string{"-sS", "--max-time", "10", "--cacert", root.File(), "--resolve", resolve, "--http1.1"}
	tests := []struct {
		name string
		args []string
		ok   bool
		want string
	}{
		{"default", nil, true, "SSL_PROTOCOL=TLSv1.3"},
		{"TLS 1.2", []string{"--tls-max", "1.2"}, true, "SSL_CIPHER=ECDHE-ECDSA-"},
		// SECLEVEL=0 lets curl's OpenSSL offer TLS 1.0/1.1 at all, so the
		// refusal seen is the server's protocol_version alert.
		{"TLS 1.1 refused", []string{"--tlsv1.1", "--tls-max", "1.1", "--ciphers", "DEFAULT@SECLEVEL=0"}, false, "protocol version"},
		{"TLS 1.0 refused", []string{"--tlsv1.0", "--tls-max", "1.0", "--ciphers", "DEFAULT@SECLEVEL=0"}, false, "protocol version"},
		{"CBC only refused", []string{"--tls-max", "1.2", "--ciphers", "ECDHE-ECDSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA:ECDHE-ECDSA-AES128-SHA256"}, false, ""},
		{"chain verifies", []string{"-w", "%{ssl_verify_result}"}, true, "SSL_TLS_SNI=a.test"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := runTool(t, "", curl, append(append(base, tt.args...), url)...)
			if tt.ok != (err == nil) || !strings.Contains(out, tt.want) {
				t.Fatalf("err %v, output:\n%s", err, out)
			}
		})
	}
	t.Run("plain HTTP", func(t *testing.T) {
		for _, args := range [][]string{{}, {"-X", "POST", "-d", "a=1"}} {
			out, err := runTool(t, "", curl, append(append([]string{"-sS", "-i", "--max-time", "10"}, args...), fmt.Sprintf("http://127.0.0.1:%d/x", s.port))...)
			if err != nil || !strings.HasPrefix(out, "HTTP/1.1 400 Bad Request\r\n") || !strings.HasSuffix(out, "\r\n\r\n"+PlaintextBody) {
				t.Fatalf("err %v, output %q", err, out)
			}
		}
	})
}

func TestOpenSSLClient(t *testing.T) {
	openssl := testenv.RequireTool(t, "openssl", "openssl")
	root := testenv.NewCA(t, "ossl")
	inter, interIs := intermediate(t, root, "OpenSSL Intermediate")
	leaf := inter.Leaf(t, "a.test")
	o := builtinOpts(leaf.CertFile, leaf.KeyFile)
	o.SSLCertificateChain = []string{interIs.CertFile}
	o.SSLCiphers = policy.MustCiphers("ECDHE+AESGCM")
	s := serve(t, newBuiltinT(t, o, "a.test"))
	base := []string{"s_client", "-connect", s.addr, "-servername", "a.test", "-CAfile", root.File()}
	tests := []struct {
		name string
		args []string
		ok   bool
		want []string
	}{
		{"chain served whole", []string{"-showcerts", "-verify_return_error"}, true, []string{"Verify return code: 0 (ok)", "1 s:CN = OpenSSL Intermediate"}},
		{"TLS 1.2 AES-GCM", []string{"-tls1_2"}, true, []string{"Cipher is ECDHE-ECDSA-AES"}},
		{"ssl_ciphers excludes CHACHA20", []string{"-tls1_2", "-cipher", "ECDHE-ECDSA-CHACHA20-POLY1305"}, false, nil},
		{"TLS 1.1 refused", []string{"-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0"}, false, []string{"alert protocol version"}},
		{"TLS 1.0 refused", []string{"-tls1", "-cipher", "DEFAULT@SECLEVEL=0"}, false, []string{"alert protocol version"}},
		{"CBC only refused", []string{"-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA"}, false, []string{"alert handshake failure"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := runTool(t, "", openssl, append(base, tt.args...)...)
			if tt.ok != (err == nil) {
				t.Fatalf("err %v, output:\n%s", err, out)
			}
			for _, w := range tt.want {
				if !strings.Contains(out, w) {
					t.Fatalf("want %q in:\n%s", w, out)
				}
			}
			if tt.name == "chain served whole" && strings.Count(out, "BEGIN CERTIFICATE") != 2 {
				t.Fatalf("served %d certificates, want leaf and intermediate (no root)", strings.Count(out, "BEGIN CERTIFICATE"))
			}
		})
	}
	t.Run("client renegotiation refused", func(t *testing.T) {
		// "R" on its own line asks s_client to renegotiate (TLS 1.2 only).
		out, _ := runTool(t, "R\n", openssl, append(base, "-tls1_2")...)
		if !strings.Contains(out, "RENEGOTIATING") {
			t.Skipf("s_client did not try to renegotiate:\n%s", out)
		}
		if !strings.Contains(out, "alert") && !strings.Contains(out, "errno") && !strings.Contains(out, "error") {
			t.Fatalf("renegotiation was not refused:\n%s", out)
		}
	})
}
