package httpcore

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// bigWriter writes 64 MiB in 64 KiB chunks and reports how its writes ended
// and when, measured from its first write.
func bigWriter(done chan<- error, took chan<- time.Duration, before func(http.ResponseWriter)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if before != nil {
			before(w)
		}
		chunk := bytes.Repeat([]byte("w"), 64<<10)
		start := time.Now()
		for i := 0; i < 1024; i++ {
			if _, err := w.Write(chunk); err != nil {
				took <- time.Since(start)
				done <- err
				return
			}
		}
		took <- time.Since(start)
		done <- nil
	})
}

// An h2 client that stops reading its socket altogether (flow control wide
// open, so only the socket can stall the server) is cut off by
// write_timeout, and the handler's write fails. The bounds: of the 64 MiB
// the handler writes, the server sends less than 16 MiB (what the sockets
// hold) and the heap and stacks grow by less than 8 MiB.
func TestH2SlowReaderCutOff(t *testing.T) {
	done, took := make(chan error, 1), make(chan time.Duration, 1)
	c := newCore(t, bigWriter(done, took, nil), func(o *Options) { o.WriteTimeout = 300 * time.Millisecond })
	addr, client := startTLS(t, c)
	raw, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	raw.(*net.TCPConn).SetReadBuffer(4096)
	cfg := client.Transport.(*http.Transport).TLSClientConfig.Clone()
	cfg.NextProtos = []string{"h2"}
	cfg.ServerName = "127.0.0.1"
	tc := tls.Client(raw, cfg)
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	if tc.ConnectionState().NegotiatedProtocol != "h2" {
		t.Fatal("h2 not negotiated")
	}
	io.WriteString(tc, http2.ClientPreface)
	fr := http2.NewFramer(tc, tc)
	fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1<<31 - 1})
	fr.WriteWindowUpdate(0, 1<<31-1-65535)
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	for _, f := range [][2]string{{":method", "GET"}, {":scheme", "https"}, {":authority", "127.0.0.1"}, {":path", "/"}} {
		enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hb.Bytes(), EndStream: true, EndHeaders: true}); err != nil {
		t.Fatal(err)
	}
	heap := watchHeap()
	wrote0 := c.Stats().BytesWritten
	// ... and never read again.
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("64 MiB written to a client that reads nothing")
		}
		t.Logf("handler write failed after %v: %v", <-took, err)
	case <-time.After(10 * time.Second):
		t.Fatal("the handler's writes never failed")
	}
	grew, wrote := heap.grew(), c.Stats().BytesWritten-wrote0
	t.Logf("the server wrote %d KiB; heap and stacks grew %d KiB", wrote>>10, grew>>10)
	if wrote > 16<<20 {
		t.Errorf("the server wrote %d KiB to a client that reads nothing, want less than 16 MiB", wrote>>10)
	}
	if grew > 8<<20 {
		t.Errorf("the heap and stacks grew by %d KiB, want less than 8 MiB", grew>>10)
	}
	wantReset(t, raw)
}

// wantReset reads what is left on a connection the server cut off for a
// write timeout: the close is a reset, which the client sees within
// moments. An orderly close would leave the megabytes in the server's
// socket buffer to trickle through the client's small window before any
// FIN (and, on TLS, a close_notify after a torn record).
func wantReset(t *testing.T, raw net.Conn) {
	t.Helper()
	raw.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 64<<10)
	var err error
	for err == nil {
		_, err = raw.Read(buf)
	}
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("after the write timeout the client's reads ended with %v, want a reset", err)
	}
}

// The same for HTTP/1.1: a client that stops reading is cut off by
// write_timeout with a reset.
func TestSlowReaderReset(t *testing.T) {
	done, took := make(chan error, 1), make(chan time.Duration, 1)
	ts := startServer(t, bigWriter(done, took, nil), func(o *Options) { o.WriteTimeout = 300 * time.Millisecond })
	raw, err := net.Dial("tcp", ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	raw.(*net.TCPConn).SetReadBuffer(4096)
	io.WriteString(raw, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("64 MiB written to a client that reads nothing")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the handler's writes never failed")
	}
	wantReset(t, raw)
}

// A handler that sets its own write deadline (http.ResponseController)
// gets it instead of write_timeout, for its response.
func TestHandlerWriteDeadlineOverridesWriteTimeout(t *testing.T) {
	done, took := make(chan error, 1), make(chan time.Duration, 1)
	const own = 1500 * time.Millisecond
	h := bigWriter(done, took, func(w http.ResponseWriter) {
		if err := http.NewResponseController(w).SetWriteDeadline(time.Now().Add(own)); err != nil {
			t.Error(err)
		}
	})
	ts := startServer(t, h, func(o *Options) { o.WriteTimeout = 200 * time.Millisecond })
	nc, err := net.Dial("tcp", ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.(*net.TCPConn).SetReadBuffer(4096)
	io.WriteString(nc, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
	select {
	case err := <-done:
		d := <-took
		if err == nil || !isTimeout(err) {
			t.Fatalf("write error %v, want a timeout", err)
		}
		if d < own-300*time.Millisecond {
			t.Fatalf("writes failed after %v: write_timeout (200ms) won over the handler's %v deadline", d, own)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the handler's writes never failed")
	}
}
