package httpcore

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"runtime"
	"testing"
	"time"
)

// waitFor polls cond for up to d.
func waitFor(d time.Duration, cond func() bool) bool {
	for end := time.Now().Add(d); ; time.Sleep(20 * time.Millisecond) {
		if cond() {
			return true
		}
		if time.Now().After(end) {
			return false
		}
	}
}

// getOn sends one keep-alive GET on c and reads the response.
func getOn(t *testing.T, c net.Conn, br *bufio.Reader) int {
	t.Helper()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: a\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// Idle keep-alive TLS connections give up their goroutines (the parker holds
// them), are served again when a request arrives, stay counted as open and
// idle, and are closed by Shutdown.
func TestParkedConnectionsHoldNoGoroutine(t *testing.T) {
	const n = 200
	c := newCore(t, Text("ok"), func(o *Options) { o.SocketTimeout = 30 * time.Second })
	addr, client := startTLS(t, c)
	cfg := client.Transport.(*http.Transport).TLSClientConfig.Clone()
	cfg.NextProtos = []string{"http/1.1"}
	base := runtime.NumGoroutine()

	conns := make([]*tls.Conn, n)
	brs := make([]*bufio.Reader, n)
	for i := range conns {
		tc, err := tls.Dial("tcp", addr, cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer tc.Close()
		conns[i], brs[i] = tc, bufio.NewReader(tc)
		if code := getOn(t, tc, brs[i]); code != 200 {
			t.Fatalf("conn %d: %d", i, code)
		}
	}
	parkedAll := func() bool {
		st := c.Stats()
		return st.ConnectionsIdle == n && runtime.NumGoroutine() <= base+n/10
	}
	if !waitFor(5*time.Second, parkedAll) {
		t.Fatalf("idle connections still hold goroutines: %d goroutines (%d before %d connections), %d idle",
			runtime.NumGoroutine(), base, n, c.Stats().ConnectionsIdle)
	}
	for round := 2; round <= 3; round++ {
		for i, tc := range conns {
			if code := getOn(t, tc, brs[i]); code != 200 {
				t.Fatalf("round %d conn %d: %d", round, i, code)
			}
		}
		if !waitFor(5*time.Second, parkedAll) {
			t.Fatalf("round %d: not parked again: %d goroutines", round, runtime.NumGoroutine())
		}
	}
	if st := c.Stats(); st.Requests != 3*n || st.ConnectionsOpen != n {
		t.Fatalf("requests %d (want %d), open %d (want %d)", st.Requests, 3*n, st.ConnectionsOpen, n)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown with parked connections: %v", err)
	}
	for i, tc := range conns {
		tc.SetReadDeadline(time.Now().Add(2 * time.Second))
		if _, err := brs[i].ReadByte(); err == nil || errors.Is(err, context.DeadlineExceeded) || isTimeout(err) {
			t.Fatalf("conn %d not closed by shutdown: %v", i, err)
		}
	}
	if st := c.Stats(); st.ConnectionsOpen != 0 || st.ConnectionsIdle != 0 {
		t.Fatalf("after shutdown: %d open, %d idle", st.ConnectionsOpen, st.ConnectionsIdle)
	}
}

// A parked connection still ends after socket_timeout of quiet, silently,
// and a request that arrives in pieces after parking is still served.
func TestParkedTimeoutAndSplitRequest(t *testing.T) {
	ts := startServer(t, Text("ok"), func(o *Options) { o.SocketTimeout = 600 * time.Millisecond })
	nc, err := net.Dial("tcp", ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	br := bufio.NewReader(nc)
	if code := getOn(t, nc, br); code != 200 {
		t.Fatal(code)
	}
	time.Sleep(idleHotWait + 150*time.Millisecond) // parked by now
	io.WriteString(nc, "GET / HT")
	time.Sleep(150 * time.Millisecond)
	io.WriteString(nc, "TP/1.1\r\nHost: a\r\n\r\n")
	nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("split request after parking: %v %v", resp, err)
	}
	io.Copy(io.Discard, resp.Body)

	t0 := time.Now()
	nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	b, err := br.ReadByte()
	quiet := time.Since(t0)
	if err == nil || isTimeout(err) {
		t.Fatalf("parked connection not closed after socket_timeout: %q %v", b, err)
	}
	if quiet < 500*time.Millisecond || quiet > 3*time.Second {
		t.Fatalf("closed after %v of quiet; socket_timeout is 600ms", quiet)
	}
	if !waitFor(2*time.Second, func() bool { st := ts.core.Stats(); return st.ConnectionsOpen == 0 && st.ConnectionsIdle == 0 }) {
		st := ts.core.Stats()
		t.Fatalf("after the idle timeout: %d open, %d idle", st.ConnectionsOpen, st.ConnectionsIdle)
	}
	if st := ts.core.Stats(); st.SocketErrors != 0 {
		t.Fatalf("an idle timeout is not a socket error: %d", st.SocketErrors)
	}
}

// Close (Shutdown's last resort) also finishes parked connections, so the
// Core ends with nothing open, and a client that hangs up while parked is
// forgotten at once.
func TestParkedCloseAndHangup(t *testing.T) {
	ts := startServer(t, Text("ok"), func(o *Options) { o.SocketTimeout = time.Minute })
	var conns []net.Conn
	for range 5 {
		nc, err := net.Dial("tcp", ts.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		if code := getOn(t, nc, bufio.NewReader(nc)); code != 200 {
			t.Fatal(code)
		}
		conns = append(conns, nc)
	}
	if !waitFor(3*time.Second, func() bool { return ts.core.Stats().ConnectionsIdle == 5 }) {
		t.Fatal("not idle")
	}
	time.Sleep(idleHotWait + 100*time.Millisecond)
	conns[0].Close() // hang up while parked
	if !waitFor(3*time.Second, func() bool { return ts.core.Stats().ConnectionsOpen == 4 }) {
		t.Fatalf("hung-up parked connection still open: %d", ts.core.Stats().ConnectionsOpen)
	}
	ts.core.Close()
	for _, nc := range conns[1:] {
		nc.SetReadDeadline(time.Now().Add(2 * time.Second))
		if _, err := nc.Read(make([]byte, 1)); err == nil || isTimeout(err) {
			t.Fatalf("parked connection survived Close: %v", err)
		}
	}
	if !waitFor(2*time.Second, func() bool { st := ts.core.Stats(); return st.ConnectionsOpen == 0 && st.ConnectionsIdle == 0 }) {
		st := ts.core.Stats()
		t.Fatalf("after Close: %d open, %d idle", st.ConnectionsOpen, st.ConnectionsIdle)
	}
}
