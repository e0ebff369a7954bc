package apps

import (
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"tlsedge/internal/testenv"
	"tlsedge/router"
	"tlsedge/server/httpcore"
)

// serveCoreH2 serves h through the core over TLS offering h2, as the server
// does, and returns the https:// base URL and a client that speaks h2 to it.
func serveCoreH2(t *testing.T, h http.Handler) (string, *http.Client) {
	t.Helper()
	d := router.NewDispatcher()
	if err := d.Mount("/", h); err != nil {
		t.Fatal(err)
	}
	o := httpcore.DefaultOptions()
	o.Handler = d
	c, err := httpcore.New(o)
	if err != nil {
		t.Fatal(err)
	}
	ca := testenv.NewCA(t, "h2front")
	leaf := ca.Leaf(t, "127.0.0.1")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go c.Serve(ln, &tls.Config{Certificates: []tls.Certificate{leaf.TLS}, NextProtos: []string{"h2", "http/1.1"}})
	t.Cleanup(func() { ln.Close(); c.Close() })
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool}, ForceAttemptHTTP2: true}
	t.Cleanup(tr.CloseIdleConnections)
	return "https://" + ln.Addr().String(), &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// h2 clients reach upstreams through the same engine: each stream becomes a
// proper HTTP/1.1 request with the canonical head (the request line, one
// Host from :authority, the edge's own framing, nothing of h2's), bodies of
// known and unknown length arrive whole, and the upstream's keep-alive
// connection is reused across streams, concurrent ones included.
func TestProxyH2ClientsThroughEngine(t *testing.T) {
	for _, buffering := range []bool{false, true} {
		t.Run(fmt.Sprintf("proxy_request_buffering=%v", buffering), func(t *testing.T) {
			up := newRawUpstream(t, func(n int, head string) string {
				return "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Up: " + fmt.Sprint(n) + "\r\nConnection: keep-alive\r\n\r\nok"
			})
			opts := Options{ProxyRequestBuffering: buffering, ProxyTempPath: t.TempDir()}
			front, client := serveCoreH2(t, mustNew(t, "http://"+up.addr+"/base", Env{Options: opts}))
			type req struct {
				method, path, body string
				unknownLength      bool
			}
			reqs := []req{
				{"GET", "/a%20b/c?x=1&y", "", false},
				{"POST", "/post", "hello over h2", false},
				{"POST", "/stream", "a body of unknown length", true},
				{"PUT", "/empty", "", false},
			}
			send := func(rq req) error {
				var body io.Reader
				if rq.body != "" {
					body = strings.NewReader(rq.body)
					if rq.unknownLength {
						body = struct{ io.Reader }{body}
					}
				}
				r, _ := http.NewRequest(rq.method, front+rq.path, body)
				r.Header.Set("Te", "trailers") // h2 allows this one hop-by-hop field
				resp, err := client.Do(r)
				if err != nil {
					return err
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.ProtoMajor != 2 || resp.StatusCode != 200 || string(b) != "ok" || resp.Header.Get("X-Up") == "" {
					return fmt.Errorf("%s %s: %s %d %q %v", rq.method, rq.path, resp.Proto, resp.StatusCode, b, resp.Header)
				}
				return nil
			}
			// In turn: every stream on one upstream connection.
			for _, rq := range reqs {
				if err := send(rq); err != nil {
					t.Fatal(err)
				}
			}
			conns, heads, _, bodies := up.log()
			if conns != 1 || len(heads) != len(reqs) {
				t.Errorf("upstream saw %d requests on %d connections, want %d on 1", len(heads), conns, len(reqs))
			}
			for i, h := range heads {
				rq := reqs[i]
				host := strings.TrimPrefix(front, "https://")
				wantLine := rq.method + " /base" + rq.path + " HTTP/1.1\r\nHost: " + host + "\r\n"
				if !strings.HasPrefix(h, wantLine) {
					t.Errorf("head %d starts %q, want %q", i, firstLines(h, 2), wantLine)
				}
				lower := strings.ToLower(h)
				for _, f := range []string{"\r\nconnection:", "\r\nte:", "\r\nupgrade:", "\r\n:", "http2-settings"} {
					if strings.Contains(lower, f) {
						t.Errorf("head %d carries %s: %q", i, f, h)
					}
				}
				cl, te := strings.Count(lower, "\r\ncontent-length:"), strings.Count(lower, "\r\ntransfer-encoding:")
				switch {
				case cl+te > 1:
					t.Errorf("head %d: two framings: %q", i, h)
				case rq.body == "" && rq.method == "GET" && cl+te != 0:
					t.Errorf("head %d: framing on a GET without a body: %q", i, h)
				case rq.body != "" && !rq.unknownLength && !strings.Contains(h, fmt.Sprintf("\r\nContent-Length: %d\r\n", len(rq.body))):
					t.Errorf("head %d: want Content-Length %d: %q", i, len(rq.body), h)
				case rq.unknownLength && !buffering && !strings.Contains(h, "\r\nTransfer-Encoding: chunked\r\n"):
					t.Errorf("head %d: a streamed body of unknown length is not chunked: %q", i, h)
				case rq.unknownLength && buffering && !strings.Contains(h, fmt.Sprintf("\r\nContent-Length: %d\r\n", len(rq.body))):
					t.Errorf("head %d: a buffered body goes up with its length: %q", i, h)
				}
				if !strings.Contains(h, "\r\nX-Forwarded-Proto: https\r\n") {
					t.Errorf("head %d: X-Forwarded-Proto is not https: %q", i, h)
				}
				if bodies[i] != rq.body {
					t.Errorf("body %d: %q, want %q", i, bodies[i], rq.body)
				}
			}

			// At once, on one h2 connection: the upstream sees at most as
			// many connections as there were requests in flight, and every
			// one is a whole request.
			const parallel, rounds = 4, 5
			var wg sync.WaitGroup
			errs := make(chan error, parallel*rounds)
			for range parallel {
				wg.Go(func() {
					for i := range rounds {
						if err := send(reqs[i%len(reqs)]); err != nil {
							errs <- err
						}
					}
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
			conns, heads, _, _ = up.log()
			if len(heads) != len(reqs)+parallel*rounds || conns > parallel {
				t.Errorf("upstream saw %d requests on %d connections, want %d on at most %d", len(heads), conns, len(reqs)+parallel*rounds, parallel)
			}
		})
	}
}
