package httpcore

import (
	"crypto/tls"
	"io"
	"net/http"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// A handler's Connection: close on h2 is not sent (h2 has no such field)
// but is honoured as on HTTP/1.1 and in x/net's server: the connection gets
// GOAWAY after the response, which arrives whole, and takes no new stream;
// a response without it leaves the connection open.
func TestH2HandlerConnectionClose(t *testing.T) {
	c := newCore(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/close" {
			w.Header().Set("Connection", "close")
		}
		io.WriteString(w, "answer")
	}), nil)
	addr, client := startTLS(t, c)
	cfg := client.Transport.(*http.Transport).TLSClientConfig.Clone()
	cfg.NextProtos, cfg.ServerName = []string{"h2"}, "127.0.0.1"
	nc, err := tls.Dial("tcp", addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	cc, err := (&http2.Transport{}).NewClientConn(nc)
	if err != nil {
		t.Fatal(err)
	}
	get := func(path string) {
		t.Helper()
		resp, err := cc.RoundTrip(mustReq("GET", "https://"+addr+path))
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 || string(b) != "answer" {
			t.Fatalf("GET %s: %d %q %v", path, resp.StatusCode, b, err)
		}
		if v, ok := resp.Header["Connection"]; ok {
			t.Errorf("GET %s: Connection %q sent over h2", path, v)
		}
	}
	get("/")
	if within(300*time.Millisecond, func() bool { return cc.State().Closing }) {
		t.Fatal("GOAWAY after a response without Connection: close")
	}
	get("/close")
	if !within(2*time.Second, func() bool { return cc.State().Closing }) {
		t.Fatal("no GOAWAY after a response with Connection: close")
	}
	if !within(2*time.Second, func() bool { return cc.State().Closed }) {
		t.Error("the connection stayed open after its GOAWAY")
	}
}
