package integration

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"tlsedge/internal/testenv"
)

// testssl.sh against the built server's default TLS settings (plus HSTS, so
// it can be seen), once for each SNI name it serves: no vulnerability
// flagged, nothing below TLS 1.2, forward-secret AEAD suites only, client
// renegotiation refused, HSTS seen.
func TestTestSSL(t *testing.T) {
	testenv.Long(t)
	testssl := testenv.RequireTool(t, "testssl", "testssl.sh")
	ca := testenv.NewCA(t, "scan")
	a := ca.Leaf(t, "localhost", "127.0.0.1")
	b := ca.Leaf(t, "alt.example")
	p := startPlain(t, "--socket-port", "0", "--ssl-module", "builtin",
		"--ssl-certificate", a.CertFile, "--ssl-private-key", a.KeyFile,
		"--ssl-certificate", b.CertFile, "--ssl-private-key", b.KeyFile,
		"--ssl-hsts-max-age", "31536000", "--ssl-hsts-include-subdomains", "--mount", "/=text:scanned")
	port := p.base("main")[strings.LastIndexByte(p.base("main"), ':')+1:]
	for _, name := range []string{"localhost", "alt.example"} {
		t.Run(name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "testssl.json")
			ctx, cancel := context.WithTimeout(t.Context(), 20*time.Minute)
			defer cancel()
			// --ip connects to loopback while the URL's name is the SNI.
			cmd := exec.CommandContext(ctx, testssl, "--quiet", "--color", "0", "--warnings", "off", "--ip", "127.0.0.1",
				"--protocols", "--std", "--fs", "--vulnerable", "--headers", "--jsonfile", out, "https://"+name+":"+port)
			log, err := cmd.CombinedOutput()
			var ee *exec.ExitError
			if err != nil && !errors.As(err, &ee) {
				t.Fatalf("testssl: %v\n%s", err, log)
			}
			raw, err := os.ReadFile(out)
			if err != nil {
				t.Fatalf("no JSON from testssl: %v\n%s", err, log)
			}
			var findings []struct{ ID, Severity, Finding string }
			if err := json.Unmarshal(raw, &findings); err != nil {
				t.Fatal(err)
			}
			byID := map[string]string{}
			for _, f := range findings {
				byID[f.ID] = f.Finding
				// The test CA is in no trust store: certificate trust findings are expected.
				if (f.Severity == "HIGH" || f.Severity == "CRITICAL") && !strings.HasPrefix(f.ID, "cert") {
					t.Errorf("%s %s: %s", f.Severity, f.ID, f.Finding)
				}
			}
			for _, id := range []string{"SSLv2", "SSLv3", "TLS1", "TLS1_1"} {
				if !strings.Contains(byID[id], "not offered") {
					t.Errorf("%s: %q", id, byID[id])
				}
			}
			// IDs as testssl.sh 3.0.8 (Debian 12) writes them.
			for id, want := range map[string]string{
				"secure_client_renego": "not vulnerable", "HSTS_time": "365 days", "HSTS_subdomains": "includes subdomains",
				"cipherlist_NULL": "not offered", "cipherlist_aNULL": "not offered", "cipherlist_EXPORT": "not offered",
				"cipherlist_LOW": "not offered", "cipherlist_3DES_IDEA": "not offered", "cipherlist_AVERAGE": "not offered",
				"cipherlist_STRONG": "offered",
			} {
				if !strings.Contains(byID[id], want) {
					t.Errorf("%s: %q, want %q", id, byID[id], want)
				}
			}
			t.Logf("testssl %s: %d findings, protocols TLS1_2=%q TLS1_3=%q", name, len(findings), byID["TLS1_2"], byID["TLS1_3"])
		})
	}
}
