package httpcore

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestH2Spec runs h2spec (github.com/summerwind/h2spec, a tool of this
// module: go tool h2spec) against the core's h2 engine over TLS: every one
// of its 145 cases of RFC 7540 and RFC 7541 must pass. The handler reads
// the request body and answers with a small one, which is what h2spec's
// cases expect of a server.
func TestH2Spec(t *testing.T) {
	if testing.Short() {
		t.Skip("h2spec takes a few seconds")
	}
	c := newCore(t, h2specHandler(), func(o *Options) {
		o.SocketTimeout = 5 * time.Second
	})
	addr, _ := startTLS(t, c)
	m, text := runH2Spec(t, addr, "-t", "-k")
	t.Logf("h2spec: %s", m[0])
	if m[1] != "145" || m[2] != "145" {
		i := strings.Index(text, "Failures:")
		if i < 0 {
			i = 0
		}
		t.Fatalf("h2spec: %s, want 145 of 145 passed\n%s", m[0], text[i:])
	}
}

// h2specHandler reads the request body and answers with a small one, which
// is what h2spec's cases expect of a server.
func h2specHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		io.WriteString(w, "the h2spec answer\n")
	})
}

// runH2Spec runs go tool h2spec (with args: -t -k for TLS) against addr and
// returns its summary's counts (the match, then tests, passed, skipped,
// failed) and its whole output.
func runH2Spec(t *testing.T, addr string, args ...string) (summary []string, text string) {
	t.Helper()
	_, port, _ := net.SplitHostPort(addr)
	gobin := filepath.Join(runtime.GOROOT(), "bin", "go")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, gobin, append(append([]string{"tool", "h2spec"}, args...), "-o", "2", "-h", "127.0.0.1", "-p", port)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	text = out.String()
	summary = regexp.MustCompile(`(\d+) tests, (\d+) passed, (\d+) skipped, (\d+) failed`).FindStringSubmatch(text)
	if summary == nil {
		t.Fatalf("h2spec did not run (%v):\n%s", err, text)
	}
	return summary, text
}
