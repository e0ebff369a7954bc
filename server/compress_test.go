package server

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"tlsedge/apps"
	"tlsedge/internal/testenv"
	"tlsedge/router"
)

// compressServer serves a.test/ from dir: (big.json: 130 KB of JSON,
// small.txt, x.png: random bytes, already compressed), a.test/nt (the same
// JSON as text, with Cache-Control: no-transform set by a header rule) and
// /stream (no Content-Length, flushed line by line), all three with
// compress; b.test/ serves the same directory without it.
func compressServer(t *testing.T) (base string, big []byte) {
	t.Helper()
	c, big := compressConfig(t)
	s := startServer(t, c)
	return "http://" + s.BindAddr().String(), big
}

// compressConfig is compressServer's configuration and the JSON it serves.
func compressConfig(t *testing.T) (Config, []byte) {
	t.Helper()
	dir := t.TempDir()
	var b bytes.Buffer
	b.WriteString("[")
	for i := range 3000 {
		fmt.Fprintf(&b, `{"id":%d,"name":"item %d","tags":["a","b"]},`, i, i)
	}
	b.WriteString("{}]")
	png := make([]byte, 20000)
	rand.Read(png)
	for name, data := range map[string][]byte{"big.json": b.Bytes(), "small.txt": []byte("small\n"), "x.png": png} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	c := plainConfig(t, nil)
	c.Handlers = map[string]http.Handler{
		"/stream": http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain")
			for i := range 50 {
				fmt.Fprintf(w, "line %d %s\n", i, strings.Repeat("x", 1000))
				http.NewResponseController(w).Flush()
			}
		}),
	}
	c.Mount = router.MustMounts("a.test/=dir:"+dir, "b.test/=dir:"+dir, "a.test/nt=text:"+b.String())
	c.HeaderRule = mustRules(t, "a.test/nt=response set Cache-Control no-transform")
	c.Compress.Compress = []string{"a.test/", "a.test/nt", "/stream"}
	c.Targets = func(target string) (http.Handler, error) { return apps.New(target, apps.Env{}) }
	return c, b.Bytes()
}

// curlGet runs curl with args against url and returns the response head
// (lower-cased) and the body as curl wrote it (decoded with --compressed).
func curlGet(t *testing.T, curl, host, url string, args ...string) (string, []byte) {
	t.Helper()
	dir := t.TempDir()
	hf, bf := filepath.Join(dir, "h"), filepath.Join(dir, "b")
	all := append([]string{"-sS", "--max-time", "10", "-H", "Host: " + host, "-D", hf, "-o", bf}, args...)
	if out, err := exec.Command(curl, append(all, url)...).CombinedOutput(); err != nil {
		t.Fatalf("curl %v: %v\n%s", all, err, out)
	}
	h, _ := os.ReadFile(hf)
	body, _ := os.ReadFile(bf)
	return strings.ToLower(string(h)), body
}

// Compression end to end with curl: --compressed gets the same bytes back
// through zstd and gzip, with Vary set; small, already-compressed,
// no-transform, HEAD and range responses are left alone; a mount without
// compress and a client without Accept-Encoding get identity.
func TestCompressionCurl(t *testing.T) {
	curl := testenv.RequireTool(t, "curl", "curl")
	base, big := compressServer(t)
	compressionCurl(t, big, "HTTP/1.1", func(host, path string, args ...string) (string, []byte) {
		return curlGet(t, curl, host, base+path, args...)
	})
}

// The same over h2 (curl --http2 --compressed on TLS): the h2 engine
// carries the encoded body in DATA frames, with no Content-Length for a
// compressed response and the same Vary, and a streamed response stays
// streamed.
func TestCompressionCurlH2(t *testing.T) {
	curl := testenv.RequireTool(t, "curl", "curl")
	c, big := compressConfig(t)
	ca := testenv.NewCA(t, "compress")
	leaf := ca.Leaf(t, "a.test", "b.test", "c.test", "127.0.0.1")
	c.TLS.SSLModule = "builtin"
	c.TLS.SSLCertificate, c.TLS.SSLPrivateKey = []string{leaf.CertFile}, []string{leaf.KeyFile}
	s := startServer(t, c)
	port := s.BindAddr().(*net.TCPAddr).Port
	compressionCurl(t, big, "HTTP/2", func(host, path string, args ...string) (string, []byte) {
		url := fmt.Sprintf("https://%s:%d%s", host, port, path)
		args = append([]string{"--http2", "--cacert", ca.File(), "--resolve", fmt.Sprintf("%s:%d:127.0.0.1", host, port)}, args...)
		return curlGet(t, curl, host, url, args...)
	})
}

// compressionCurl runs the compression cases through get (curl against
// compressServer's configuration for host and path, with curl's args
// added), each answered over proto.
func compressionCurl(t *testing.T, big []byte, proto string, get func(host, path string, args ...string) (string, []byte)) {
	t.Helper()
	var stream []byte
	for i := range 50 {
		stream = fmt.Appendf(stream, "line %d %s\n", i, strings.Repeat("x", 1000))
	}
	for _, tt := range []struct {
		name, host, path string
		args             []string
		encoding         string // "" for identity
		vary             bool
		body             []byte
	}{
		{"zstd", "a.test", "/big.json", []string{"--compressed"}, "zstd", true, big},
		{"gzip", "a.test", "/big.json", []string{"--compressed", "-H", "Accept-Encoding: gzip"}, "gzip", true, big},
		{"gzip by q", "a.test", "/big.json", []string{"--compressed", "-H", "Accept-Encoding: zstd;q=0.1, gzip;q=0.9"}, "gzip", true, big},
		{"no accept-encoding", "a.test", "/big.json", nil, "", true, big},
		{"refused by q=0", "a.test", "/big.json", []string{"--compressed", "-H", "Accept-Encoding: gzip;q=0, zstd;q=0"}, "", true, big},
		{"small", "a.test", "/small.txt", []string{"--compressed"}, "", false, []byte("small\n")},
		{"already compressed", "a.test", "/x.png", []string{"--compressed"}, "", false, nil},
		{"no-transform", "a.test", "/nt", []string{"--compressed"}, "", false, big},
		{"range", "a.test", "/big.json", []string{"--compressed", "-r", "0-99"}, "", false, big[:100]},
		{"not a compress mount", "b.test", "/big.json", []string{"--compressed"}, "", false, big},
		{"stream", "c.test", "/stream", []string{"--compressed"}, "zstd", true, stream},
	} {
		t.Run(tt.name, func(t *testing.T) {
			head, body := get(tt.host, tt.path, tt.args...)
			if !strings.HasPrefix(head, strings.ToLower(proto)+" ") {
				t.Fatalf("answered over another protocol than %s:\n%s", proto, head)
			}
			ce := ""
			for l := range strings.SplitSeq(head, "\r\n") {
				if v, ok := strings.CutPrefix(l, "content-encoding: "); ok {
					ce = v
				}
			}
			if ce != tt.encoding {
				t.Errorf("Content-Encoding %q, want %q\n%s", ce, tt.encoding, head)
			}
			if vary := strings.Contains(head, "\r\nvary: accept-encoding\r\n"); vary != tt.vary {
				t.Errorf("Vary: Accept-Encoding %v, want %v\n%s", vary, tt.vary, head)
			}
			if tt.body != nil && !bytes.Equal(body, tt.body) {
				t.Errorf("body of %d bytes differs from the %d sent", len(body), len(tt.body))
			}
			if tt.encoding != "" && strings.Contains(head, "content-length") && tt.name == "stream" {
				t.Errorf("a streamed compressed response with a length:\n%s", head)
			}
		})
	}
	// HEAD: no body, so nothing to compress, and no Content-Encoding
	// claimed for the body a GET would get.
	head, _ := get("a.test", "/big.json", "--compressed", "-I")
	if strings.Contains(head, "content-encoding") || !strings.Contains(head, fmt.Sprintf("content-length: %d", len(big))) {
		t.Errorf("HEAD:\n%s", head)
	}
}
