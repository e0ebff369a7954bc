package server

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"
	"tlsedge/policy"
)

// A Go handler mounted through Config.Handlers sees none of the identity
// headers a client sent, in any spelling, and no forwarding header from a
// peer that is not a trusted proxy; from a trusted one it sees them.
func TestGoHandlerSeesNoForgedEdgeHeaders(t *testing.T) {
	seen := make(chan []string, 1)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var names []string
		for k := range r.Header {
			names = append(names, k)
		}
		sort.Strings(names)
		seen <- names
	})
	forged := []string{
		"X-Ssl-Client-Verify: SUCCESS", "X-Ssl-Client-S-Dn: CN=alice", "X_ssl_client_s_dn: CN=alice",
		"X-Remote-Groups: wheel", "X-Remote-User: root", "x_remote_uid: 0", "Remote_User: root",
		"X-Forwarded-Client-Cert: By=x", "X_Forwarded_For: 203.0.113.66", "X_Forwarded_Host: evil.example",
		"X-Forwarded-Proto: https", "X-Real-IP: 203.0.113.66", "True-Client-IP: 203.0.113.66",
		"X-Client-IP: 1.2.3.4", "Client-IP: 1.2.3.4", "Forwarded: for=203.0.113.66", "X-Forwarded-Port: 1",
	}
	forwarding := map[string]bool{"X_forwarded_for": true, "X_forwarded_host": true, "X-Forwarded-Proto": true,
		"X-Real-Ip": true, "True-Client-Ip": true, "X-Client-Ip": true, "Client-Ip": true, "Forwarded": true, "X-Forwarded-Port": true}
	for _, tt := range []struct {
		name    string
		trusted []string
	}{{"untrusted", nil}, {"trusted proxy", []string{"127.0.0.1"}}} {
		t.Run(tt.name, func(t *testing.T) {
			c := plainConfig(t, h)
			c.Apps.TrustedProxies, _ = policy.NewTrustedProxies(tt.trusted...)
			s := startServer(t, c)
			nc, err := net.Dial("tcp", s.BindAddr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			fmt.Fprintf(nc, "GET / HTTP/1.1\r\nHost: a\r\n%s\r\nConnection: close\r\n\r\n", strings.Join(forged, "\r\n"))
			if _, err := http.ReadResponse(bufio.NewReader(nc), nil); err != nil {
				t.Fatal(err)
			}
			names := <-seen
			for _, n := range names {
				switch {
				case n == "Host" || n == "Connection" || n == "X-Request-Id": // the id is the edge's own
				case tt.trusted != nil && forwarding[n]:
				default:
					t.Errorf("handler saw client-sent %s", n)
				}
			}
			if tt.trusted != nil && len(names) < len(forwarding) {
				t.Errorf("trusted proxy's forwarding headers dropped: %q", names)
			}
		})
	}
}

// Connections are counted against max_connections from accept, before any
// handshake: silent clients cannot hold more descriptors than the limit,
// and past it a connection is refused at once.
func TestMaxConnectionsCountsHandshakes(t *testing.T) {
	c := NewConfig()
	c.SocketPort = 0
	c.DataDir = t.TempDir()
	c.Core.MaxConnections = 20
	c.Handlers = map[string]http.Handler{"/": http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})}
	s := startServer(t, c) // internal CA: a TLS port, so a silent client sits in the handshake
	var held []net.Conn
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	for range 60 {
		nc, err := net.Dial("tcp", s.BindAddr().String())
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, nc)
	}
	deadline := time.Now().Add(5 * time.Second)
	for s.OpenConnections() != 20 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := s.OpenConnections(); n != 20 {
		t.Fatalf("%d connections hold a slot, want the limit of 20", n)
	}
	// Every connection past the limit was closed by the server at once.
	closed := 0
	for _, nc := range held {
		nc.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		if _, err := nc.Read(make([]byte, 1)); err != nil && !isTimeout(err) {
			closed++
		}
	}
	if closed != 40 {
		t.Fatalf("%d of 60 silent connections closed, want the 40 over the limit", closed)
	}
	// Slots come back when clients leave.
	for _, nc := range held {
		nc.Close()
	}
	held = nil
	for s.OpenConnections() != 0 && time.Now().Before(deadline.Add(5*time.Second)) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := s.OpenConnections(); n != 0 {
		t.Fatalf("%d slots still held after every client left", n)
	}
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

// startServer builds and starts a server from c, stopped when the test ends.
func startServer(t *testing.T, c Config) *Server {
	t.Helper()
	s, err := New(c)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Stop(context.Background()) })
	return s
}
