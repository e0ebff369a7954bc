package httpcore

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"tlsedge/conninfo"
)

// Parked h2 connections (h2park.go), against a client that reads on the
// test's goroutine only, so that the goroutines counted are the server's.

// h2sync is an h2 client without goroutines: it writes a request and reads
// frames until that stream ends.
type h2sync struct {
	tc   *tls.Conn
	fr   *http2.Framer
	hb   bytes.Buffer
	enc  *hpack.Encoder
	dec  *hpack.Decoder
	hdrs map[string]string // the last response's head
	next uint32
}

func dialSync(t testing.TB, addr string, client *http.Client, settings ...http2.Setting) *h2sync {
	t.Helper()
	cfg := client.Transport.(*http.Transport).TLSClientConfig.Clone()
	cfg.NextProtos = []string{"h2"}
	cfg.ServerName = "127.0.0.1"
	tc, err := tls.Dial("tcp", addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tc.Close() })
	if tc.ConnectionState().NegotiatedProtocol != "h2" {
		t.Fatal("h2 not negotiated")
	}
	c := &h2sync{tc: tc, fr: http2.NewFramer(tc, tc), next: 1}
	c.enc = hpack.NewEncoder(&c.hb)
	table := uint32(4096)
	for _, s := range settings {
		if s.ID == http2.SettingHeaderTableSize {
			table = s.Val
		}
	}
	c.dec = hpack.NewDecoder(table, func(f hpack.HeaderField) { c.hdrs[f.Name] = f.Value })
	tc.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(tc, http2.ClientPreface)
	if err := c.fr.WriteSettings(settings...); err != nil {
		t.Fatal(err)
	}
	return c
}

// block encodes a GET of path with extra fields (name, value pairs).
func (c *h2sync) block(path string, extra ...string) []byte {
	c.hb.Reset()
	fields := append([]string{":method", "GET", ":scheme", "https", ":authority", "127.0.0.1", ":path", path}, extra...)
	for i := 0; i < len(fields); i += 2 {
		c.enc.WriteField(hpack.HeaderField{Name: fields[i], Value: fields[i+1]})
	}
	return bytes.Clone(c.hb.Bytes())
}

// get sends a GET on the next stream and returns the status and body.
func (c *h2sync) get(t testing.TB, path string, extra ...string) (int, string) {
	t.Helper()
	id := c.next
	c.next += 2
	c.tc.SetDeadline(time.Now().Add(5 * time.Second))
	if err := c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: c.block(path, extra...), EndStream: true, EndHeaders: true}); err != nil {
		t.Fatal(err)
	}
	return c.response(t, id)
}

// response reads frames until stream id ends, answering SETTINGS and PING.
func (c *h2sync) response(t testing.TB, id uint32) (int, string) {
	t.Helper()
	c.tc.SetDeadline(time.Now().Add(5 * time.Second))
	var body []byte
	status := 0
	for {
		f, err := c.fr.ReadFrame()
		if err != nil {
			t.Fatalf("stream %d: %v", id, err)
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				c.fr.WriteSettingsAck()
			}
		case *http2.PingFrame:
			if !f.IsAck() {
				c.fr.WritePing(true, f.Data)
			}
		case *http2.GoAwayFrame:
			t.Fatalf("stream %d: GOAWAY %v", id, f.ErrCode)
		case *http2.RSTStreamFrame:
			t.Fatalf("stream %d: RST_STREAM %v", f.StreamID, f.ErrCode)
		case *http2.HeadersFrame:
			c.hdrs = map[string]string{}
			_, err := c.dec.Write(f.HeaderBlockFragment())
			if err == nil {
				err = c.dec.Close() // the end of a header block
			}
			if err != nil {
				t.Fatalf("stream %d: response head: %v", id, err)
			}
			if f.StreamID == id {
				status, _ = strconv.Atoi(c.hdrs[":status"])
				if f.StreamEnded() {
					return status, string(body)
				}
			}
		case *http2.DataFrame:
			if f.StreamID == id {
				body = append(body, f.Data()...)
				if len(f.Data()) > 0 {
					c.fr.WriteWindowUpdate(0, uint32(len(f.Data())))
				}
				if f.StreamEnded() {
					return status, string(body)
				}
			}
		}
	}
}

// untilEnd reads frames until the connection ends, for up to d, and
// reports whether a GOAWAY came first (its code) and whether the
// connection ended.
func (c *h2sync) untilEnd(d time.Duration) (code http2.ErrCode, goaway, ended bool) {
	c.tc.SetDeadline(time.Now().Add(d))
	for {
		f, err := c.fr.ReadFrame()
		if err != nil {
			return code, goaway, !isTimeout(err)
		}
		switch f := f.(type) {
		case *http2.GoAwayFrame:
			if !goaway {
				code, goaway = f.ErrCode, true
			}
		case *http2.SettingsFrame:
			if !f.IsAck() {
				c.fr.WriteSettingsAck()
			}
		}
	}
}

// echoHeader answers with the value of the request's X-Token field, and
// fields of its own that the server's HPACK encoder indexes.
var echoHeader = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Echo", r.Header.Get("X-Token"))
	io.WriteString(w, "token="+r.Header.Get("X-Token"))
})

func parkedH2(c *Core, n int) func() bool {
	return func() bool {
		st := c.Stats()
		return st.ConnectionsIdle == int64(n) && st.H2Connections == int64(n)
	}
}

// Idle h2 connections give up their goroutines (the reader's; the writer
// stops with nothing to write), keep their HPACK state across the park
// (requests whose fields the client indexed before parking decode after),
// are served again on the same connection, and Shutdown sends each of them
// GOAWAY and returns once they closed.
func TestH2ParkedHoldNoGoroutine(t *testing.T) {
	const n = 100
	c := ownCore(t, echoHeader, func(o *Options) { o.SocketTimeout = 30 * time.Second })
	addr, client := startTLS(t, c)
	base := runtime.NumGoroutine()
	conns := make([]*h2sync, n)
	for i := range conns {
		conns[i] = dialSync(t, addr, client)
		tok := fmt.Sprintf("tok-%d-abcdefghijklmnop", i)
		// Indexed in the HPACK tables of both ends by this request.
		if code, body := conns[i].get(t, "/", "x-token", tok); code != 200 || body != "token="+tok {
			t.Fatalf("conn %d: %d %q", i, code, body)
		}
	}
	parkedAll := func() bool { return parkedH2(c, n)() && runtime.NumGoroutine() <= base+n/10 }
	if !waitFor(5*time.Second, parkedAll) {
		st := c.Stats()
		t.Fatalf("idle h2 connections still hold goroutines: %d goroutines (%d before %d connections), %d idle, %d h2",
			runtime.NumGoroutine(), base, n, st.ConnectionsIdle, st.H2Connections)
	}
	for round := 2; round <= 3; round++ {
		for i, hc := range conns {
			tok := fmt.Sprintf("tok-%d-abcdefghijklmnop", i)
			code, body := hc.get(t, "/", "x-token", tok)
			if code != 200 || body != "token="+tok || hc.hdrs["x-echo"] != tok {
				t.Fatalf("round %d conn %d: %d %q, x-echo %q", round, i, code, body, hc.hdrs["x-echo"])
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
		t.Fatalf("shutdown with parked h2 connections: %v", err)
	}
	for i, hc := range conns {
		code, goaway, ended := hc.untilEnd(3 * time.Second)
		if !goaway || code != http2.ErrCodeNo || !ended {
			t.Fatalf("conn %d at shutdown: GOAWAY %v (%v), ended %v", i, goaway, code, ended)
		}
	}
	if st := c.Stats(); st.ConnectionsOpen != 0 || st.ConnectionsIdle != 0 || st.H2Connections != 0 {
		t.Fatalf("after shutdown: %d open, %d idle, %d h2", st.ConnectionsOpen, st.ConnectionsIdle, st.H2Connections)
	}
}

// The block the HPACK tables of both ends hold must be the same after a
// park: a field indexed before it is sent as an index after it, and the
// server's answer, encoded against its own table, decodes.
func TestH2ParkedKeepsHPACK(t *testing.T) {
	c := ownCore(t, echoHeader, func(o *Options) { o.SocketTimeout = 30 * time.Second })
	addr, client := startTLS(t, c)
	hc := dialSync(t, addr, client)
	tok := "a-token-long-enough-to-be-worth-indexing"
	if code, body := hc.get(t, "/", "x-token", tok); code != 200 || body != "token="+tok {
		t.Fatalf("before parking: %d %q", code, body)
	}
	full := len(hc.block("/", "x-token", tok)) // all indexed now: the table does not change
	if full >= len(tok) {
		t.Fatalf("the client did not index the field: a block of %d bytes", full)
	}
	if !waitFor(5*time.Second, parkedH2(c, 1)) {
		t.Fatal("not parked")
	}
	for i := range 3 {
		code, body := hc.get(t, "/", "x-token", tok)
		if code != 200 || body != "token="+tok || hc.hdrs["x-echo"] != tok {
			t.Fatalf("after park %d: %d %q, x-echo %q", i, code, body, hc.hdrs["x-echo"])
		}
		if !waitFor(5*time.Second, parkedH2(c, 1)) {
			t.Fatalf("not parked again after request %d", i)
		}
	}

	// A client whose HPACK table is smaller than the default: the
	// responses after a park keep within it.
	small := dialSync(t, addr, client, http2.Setting{ID: http2.SettingHeaderTableSize, Val: 100})
	for i := range 3 {
		code, body := small.get(t, "/", "x-token", tok)
		if code != 200 || body != "token="+tok || small.hdrs["x-echo"] != tok {
			t.Fatalf("small table, request %d: %d %q, x-echo %q", i, code, body, small.hdrs["x-echo"])
		}
		if !waitFor(5*time.Second, parkedH2(c, 2)) {
			t.Fatalf("small table: not parked after request %d", i)
		}
	}
	small.tc.Close()

	// x/net's Transport, one connection parked between its requests.
	hc.tc.Close()
	if !waitFor(5*time.Second, parkedH2(c, 0)) {
		t.Fatal("the first connection is not gone")
	}
	for i := range 4 {
		tok := fmt.Sprintf("%s-%d", tok, i%2)
		req, _ := http.NewRequest("GET", "https://"+addr+"/", nil)
		req.Header.Set("X-Token", tok)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("transport request %d: %v", i, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.ProtoMajor != 2 || string(body) != "token="+tok || resp.Header.Get("X-Echo") != tok {
			t.Fatalf("transport request %d: %s %q, X-Echo %q", i, resp.Proto, body, resp.Header.Get("X-Echo"))
		}
		if !waitFor(5*time.Second, parkedH2(c, 1)) {
			t.Fatalf("transport connection not parked after request %d", i)
		}
	}
	if st := c.Stats(); st.Accepts != 3 {
		t.Fatalf("%d connections accepted, want 3: the transport's was not reused", st.Accepts)
	}
}

// A parked h2 connection still answers PING (which counts as activity), and
// is closed with GOAWAY once quiet for socket_timeout, without a socket
// error; a request arriving split across the park (its first byte, then
// the rest after the hot wait) is served.
func TestH2ParkedPingTimeoutAndSplit(t *testing.T) {
	const idle = time.Second
	c := ownCore(t, echoHeader, func(o *Options) { o.SocketTimeout = idle })
	addr, client := startTLS(t, c)
	hc := dialSync(t, addr, client)
	if code, _ := hc.get(t, "/", "x-token", "one"); code != 200 {
		t.Fatal(code)
	}
	if !waitFor(2*time.Second, parkedH2(c, 1)) {
		t.Fatal("not parked")
	}

	// A request's HEADERS frame, its first byte in a TLS record of its own.
	var raw bytes.Buffer
	wf := http2.NewFramer(&raw, nil)
	wf.WriteHeaders(http2.HeadersFrameParam{StreamID: hc.next, BlockFragment: hc.block("/", "x-token", "split"), EndStream: true, EndHeaders: true})
	id := hc.next
	hc.next += 2
	hc.tc.SetDeadline(time.Now().Add(5 * time.Second))
	hc.tc.Write(raw.Bytes()[:1])
	time.Sleep(idleHotWait + 150*time.Millisecond)
	hc.tc.Write(raw.Bytes()[1:5])
	time.Sleep(idleHotWait + 150*time.Millisecond)
	hc.tc.Write(raw.Bytes()[5:])
	if code, body := hc.response(t, id); code != 200 || body != "token=split" {
		t.Fatalf("split request across the park: %d %q", code, body)
	}
	if !waitFor(2*time.Second, parkedH2(c, 1)) {
		t.Fatal("not parked after the split request")
	}

	// A header block left open over a pause longer than the hot wait: the
	// connection must not park with CONTINUATION owed (the new Framer would
	// not expect it).
	block := hc.block("/", "x-token", "continued")
	id = hc.next
	hc.next += 2
	hc.tc.SetDeadline(time.Now().Add(5 * time.Second))
	hc.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: block[:len(block)/2], EndStream: true})
	time.Sleep(idleHotWait + 200*time.Millisecond)
	if st := c.Stats(); st.ConnectionsIdle != 0 {
		t.Fatalf("parked with a header block open: %d idle", st.ConnectionsIdle)
	}
	hc.fr.WriteContinuation(id, true, block[len(block)/2:])
	if code, body := hc.response(t, id); code != 200 || body != "token=continued" {
		t.Fatalf("header block continued after a pause: %d %q", code, body)
	}
	if !waitFor(2*time.Second, parkedH2(c, 1)) {
		t.Fatal("not parked after the continued request")
	}

	// PING while parked: answered, and the connection parks again.
	time.Sleep(idle / 2)
	hc.tc.SetDeadline(time.Now().Add(5 * time.Second))
	ping := [8]byte{'p', 'a', 'r', 'k', 'e', 'd'}
	if err := hc.fr.WritePing(false, ping); err != nil {
		t.Fatal(err)
	}
	pinged := time.Now()
	for {
		f, err := hc.fr.ReadFrame()
		if err != nil {
			t.Fatalf("no PING ack from a parked connection: %v", err)
		}
		if p, ok := f.(*http2.PingFrame); ok && p.IsAck() && p.Data == ping {
			break
		}
	}
	if !waitFor(2*time.Second, parkedH2(c, 1)) {
		t.Fatal("not parked after the PING")
	}
	code, goaway, ended := hc.untilEnd(5 * time.Second)
	quiet := time.Since(pinged)
	if !goaway || code != http2.ErrCodeNo || !ended {
		t.Fatalf("parked connection at socket_timeout: GOAWAY %v (%v), ended %v", goaway, code, ended)
	}
	if quiet < idle-100*time.Millisecond || quiet > 3*idle+time.Second {
		t.Fatalf("closed after %v of quiet since the PING; socket_timeout is %v", quiet, idle)
	}
	if !waitFor(2*time.Second, func() bool {
		st := c.Stats()
		return st.ConnectionsOpen == 0 && st.ConnectionsIdle == 0 && st.H2Connections == 0
	}) {
		st := c.Stats()
		t.Fatalf("after the idle timeout: %d open, %d idle, %d h2", st.ConnectionsOpen, st.ConnectionsIdle, st.H2Connections)
	}
	if st := c.Stats(); st.SocketErrors != 0 {
		t.Fatalf("an idle timeout is not a socket error: %d", st.SocketErrors)
	}
}

// Revoke ends a parked h2 connection with GOAWAY, and a client that hangs
// up while parked is forgotten; the others stay served.
func TestH2ParkedRevokeAndHangup(t *testing.T) {
	c := ownCore(t, echoHeader, func(o *Options) { o.SocketTimeout = 30 * time.Second })
	addr, client := startTLS(t, c)
	a := dialSync(t, addr, client)
	b := dialSync(t, addr, client)
	keep := dialSync(t, addr, client)
	for _, hc := range []*h2sync{a, b, keep} {
		if code, _ := hc.get(t, "/"); code != 200 {
			t.Fatal(code)
		}
	}
	if !waitFor(5*time.Second, parkedH2(c, 3)) {
		t.Fatal("not parked")
	}
	aPort := a.tc.LocalAddr().String()
	if n := c.Revoke(func(info *conninfo.Info) bool { return info.RemoteAddr.String() == aPort }); n != 1 {
		t.Fatalf("revoked %d connections, want 1", n)
	}
	if code, goaway, ended := a.untilEnd(3 * time.Second); !goaway || code != http2.ErrCodeNo || !ended {
		t.Fatalf("revoked parked connection: GOAWAY %v (%v), ended %v", goaway, code, ended)
	}
	b.tc.Close()
	if !waitFor(5*time.Second, func() bool {
		st := c.Stats()
		return st.ConnectionsOpen == 1 && st.ConnectionsIdle == 1 && st.H2Connections == 1
	}) {
		st := c.Stats()
		t.Fatalf("after revoke and hang-up: %d open, %d idle, %d h2", st.ConnectionsOpen, st.ConnectionsIdle, st.H2Connections)
	}
	if code, _ := keep.get(t, "/"); code != 200 {
		t.Fatalf("the connection left alone: %d", code)
	}
	if st := c.Stats(); st.SocketErrors != 0 {
		t.Fatalf("socket errors: %d", st.SocketErrors)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Shutdown(ctx); err != nil && !errors.Is(err, context.Canceled) {
		t.Fatalf("shutdown: %v", err)
	}
}

// Wakes, the parker's timer, Revoke and Shutdown racing over h2
// connections that park and wake all the time: every answer is right, no
// connection is finished twice or lost (the gauges end at zero), Shutdown
// returns, and no goroutine is left behind.
func TestH2ParkedRaces(t *testing.T) {
	const clients, idle = 24, 400 * time.Millisecond
	c := ownCore(t, echoHeader, func(o *Options) { o.SocketTimeout = idle })
	addr, client := startTLS(t, c)
	base := runtime.NumGoroutine()
	var wg sync.WaitGroup
	stop := make(chan struct{})
	var ok, failed atomic.Int64
	var wrong atomic.Value
	pauses := []time.Duration{0, 30 * time.Millisecond, idleHotWait + 20*time.Millisecond, 200 * time.Millisecond, idle + 50*time.Millisecond}
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tr := h2Transport(t, client)
			defer tr.CloseIdleConnections()
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				case <-time.After(pauses[(i+n)%len(pauses)]):
				}
				tok := fmt.Sprintf("c%d-r%d", i, n)
				req := mustReq("GET", "https://"+addr+"/")
				req.Header.Set("X-Token", tok)
				resp, err := tr.RoundTrip(req)
				if err != nil {
					if os.Getenv("H2PARK_DEBUG") != "" {
						t.Logf("client %d: %v", i, err)
					}
					failed.Add(1) // GOAWAY, revoked, shut down: the next request dials again
					continue
				}
				body, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				switch {
				case err != nil:
					failed.Add(1)
				case resp.StatusCode != 200 || string(body) != "token="+tok || resp.Header.Get("X-Echo") != tok:
					wrong.Store(fmt.Sprintf("asked %s, got %d %q (X-Echo %q)", tok, resp.StatusCode, body, resp.Header.Get("X-Echo")))
				default:
					ok.Add(1)
				}
			}
		}()
	}
	var revoked int
	for r := 0; r < 12; r++ {
		time.Sleep(100 * time.Millisecond)
		revoked += c.Revoke(func(*conninfo.Info) bool { return mrand.IntN(6) == 0 })
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	t0 := time.Now()
	err := c.Shutdown(ctx)
	took := time.Since(t0)
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatalf("Shutdown amid parks and wakes: %v after %v", err, took)
	}
	if w := wrong.Load(); w != nil {
		t.Fatal(w)
	}
	if st := c.Stats(); st.ConnectionsOpen != 0 || st.ConnectionsIdle != 0 || st.H2Connections != 0 {
		t.Fatalf("after Shutdown: %d open, %d idle, %d h2", st.ConnectionsOpen, st.ConnectionsIdle, st.H2Connections)
	}
	if ok.Load() < clients {
		t.Fatalf("only %d requests answered (%d failed)", ok.Load(), failed.Load())
	}
	if !waitFor(3*time.Second, func() bool { return runtime.NumGoroutine() <= base+2 }) {
		buf := make([]byte, 1<<20)
		t.Fatalf("goroutines: %d, %d before\n%s", runtime.NumGoroutine(), base, buf[:runtime.Stack(buf, true)])
	}
	t.Logf("%d answered, %d failed (GOAWAY races, revokes), %d connections revoked, Shutdown took %v", ok.Load(), failed.Load(), revoked, took)
}
