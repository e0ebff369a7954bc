package server

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

// TestReloadRevokesLiveConnections: a reload whose policy denies an
// identity closes that identity's live connections: a busy one after its
// current request (which completes, answered with Connection: close), an
// idle keep-alive one at once; a connection the new policy still admits
// stays open.
func TestReloadRevokesLiveConnections(t *testing.T) {
	release := make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			<-release
		}
		io.WriteString(w, "ok")
	})
	c := plainConfig(t, h)
	c.SocketHost = "0.0.0.0"
	setRules(t, &c, "allow src:127.0.0.1,127.0.0.2", "deny *")
	s := startServer(t, c)
	port := s.BindAddr().(*net.TCPAddr).Port

	dial := func(src string) (net.Conn, *bufio.Reader) {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
		nc, err := d.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { nc.Close() })
		return nc, bufio.NewReader(nc)
	}
	get := func(nc net.Conn, br *bufio.Reader, path string) *http.Response {
		t.Helper()
		fmt.Fprintf(nc, "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", path)
		nc.SetReadDeadline(time.Now().Add(5 * time.Second))
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp
	}
	closed := func(nc net.Conn, br *bufio.Reader) bool {
		nc.SetReadDeadline(time.Now().Add(2 * time.Second))
		_, err := br.ReadByte()
		return err != nil && !isTimeout(err)
	}

	idle, idleR := dial("127.0.0.1")
	busy, busyR := dial("127.0.0.1")
	kept, keptR := dial("127.0.0.2")
	for _, x := range []struct {
		nc net.Conn
		br *bufio.Reader
	}{{idle, idleR}, {busy, busyR}, {kept, keptR}} {
		if r := get(x.nc, x.br, "/"); r.StatusCode != 200 {
			t.Fatalf("before the reload: %d", r.StatusCode)
		}
	}
	// A request in flight on busy while the reload revokes 127.0.0.1.
	fmt.Fprintf(busy, "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
	time.Sleep(100 * time.Millisecond)
	next := s.Config()
	setRules(t, &next, "deny src:127.0.0.1", "allow *")
	if err := s.Reconfigure(t.Context(), next); err != nil {
		t.Fatal(err)
	}
	if !closed(idle, idleR) {
		t.Error("an idle connection of a revoked identity is still open after the reload")
	}
	close(release)
	busy.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(busyR, nil)
	if err != nil {
		t.Fatalf("the request in flight during the reload: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || string(body) != "ok" || !resp.Close {
		t.Errorf("in-flight request: %d %q close=%v, want 200 ok with Connection: close", resp.StatusCode, body, resp.Close)
	}
	if !closed(busy, busyR) {
		t.Error("the busy connection of a revoked identity stayed open after its current request")
	}
	if r := get(kept, keptR, "/"); r.StatusCode != 200 || r.Close {
		t.Errorf("an identity the new policy admits: %d close=%v", r.StatusCode, r.Close)
	}
	// A new connection from the revoked address is refused at accept.
	nc, br := dial("127.0.0.1")
	if !closed(nc, br) {
		t.Error("a new connection from a revoked address was not closed at accept")
	}
}
