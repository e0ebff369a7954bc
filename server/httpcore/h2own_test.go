package httpcore

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// The protections of the core's h2 engine (h2own.go), each against a real
// client on loopback that misbehaves with raw frames. The bounds it shares
// with HTTP/1.1 (bodies, zero windows, slow readers, idle connections,
// header list size) are the tests of h2bounds_test.go, writetimeout_test.go
// and membudget_test.go.

// settled waits until f has read (and acknowledged) the server's SETTINGS,
// so that the acknowledgement cannot fall inside a header block the test
// sends.
func (f *h2Framer) settled(t *testing.T) {
	t.Helper()
	timeout := time.After(5 * time.Second)
	for {
		select {
		case fr, ok := <-f.frames:
			if !ok {
				t.Fatal("connection ended before the server's SETTINGS")
			}
			if fr.Type == http2.FrameSettings && !fr.Flags.Has(http2.FlagSettingsAck) {
				return
			}
		case <-timeout:
			t.Fatal("no SETTINGS from the server")
		}
	}
}

func ownCore(t *testing.T, h http.Handler, mod func(*Options)) *Core {
	t.Helper()
	return newCore(t, h, func(o *Options) {
		if mod != nil {
			mod(o)
		}
	})
}

// waitGoAway reads f's frames until GOAWAY (its code) or the end of the
// connection; ok is false if neither came within d.
func waitGoAway(f *h2Framer, d time.Duration) (code http2.ErrCode, got, ended bool) {
	timeout := time.After(d)
	for {
		select {
		case fr, ok := <-f.frames:
			if !ok {
				return code, got, true
			}
			if fr.Type == http2.FrameGoAway && !got {
				code, got = fr.code, true
			}
		case <-timeout:
			return code, got, false
		}
	}
}

// writeRaw sends frames under f's lock; errors are ignored, since the
// server may close the connection mid-flood.
func (f *h2Framer) writeRaw(fn func(fr *http2.Framer) error) error {
	f.wmu.Lock()
	defer f.wmu.Unlock()
	f.tc.SetWriteDeadline(time.Now().Add(2 * time.Second))
	return fn(f.fr)
}

// headerBlock encodes a GET of path with f's encoder.
func (f *h2Framer) headerBlock(path string) []byte {
	f.wmu.Lock()
	defer f.wmu.Unlock()
	f.hb.Reset()
	for _, kv := range [][2]string{{":method", "GET"}, {":scheme", "https"}, {":authority", "127.0.0.1"}, {":path", path}} {
		f.enc.WriteField(hpack.HeaderField{Name: kv[0], Value: kv[1]})
	}
	return bytes.Clone(f.hb.Bytes())
}

// Rapid reset (CVE-2023-44487): streams opened and reset at once, as fast
// as the client can. The handlers of reset streams keep their place until
// they return, so no more than h2MaxHandlers ever run for the connection,
// and past the rate of resets the connection gets GOAWAY
// ENHANCE_YOUR_CALM and is closed. The bounds: the streams the server
// processed (probes every 50) are at most what the reset and flood buckets
// let through in the flood's time, and the heap and stacks grow by less
// than 16 MiB.
func TestH2OwnRapidReset(t *testing.T) {
	var running, peak, started atomic.Int32
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		started.Add(1)
		n := running.Add(1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		select { // work that does not notice the reset at once
		case <-time.After(50 * time.Millisecond):
		case <-time.After(time.Second):
		}
		running.Add(-1)
	})
	c := ownCore(t, h, func(o *Options) { o.ThreadPool = 500 })
	addr, client := startTLS(t, c)
	f := dialFramer(t, addr, client)
	const streams, every = 5000, 50
	heap := watchHeap()
	start := time.Now()
	for i := 0; i < streams; i++ {
		if i%every == 0 && f.probe(uint64(i)) != nil {
			break
		}
		id := uint32(2*i + 1)
		block := f.headerBlock("/")
		err := f.writeRaw(func(fr *http2.Framer) error {
			if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: block, EndStream: true, EndHeaders: true}); err != nil {
				return err
			}
			return fr.WriteRSTStream(id, http2.ErrCodeCancel)
		})
		if err != nil {
			break
		}
	}
	code, got, ended, acked := floodEnd(f, 5*time.Second)
	took, grew := time.Since(start), heap.grew()
	t.Logf("the server processed %d to %d streams in %v; heap and stacks grew %d KiB", acked, acked+every, took.Round(time.Millisecond), grew>>10)
	if !got || code != http2.ErrCodeEnhanceYourCalm || !ended {
		t.Fatalf("after %d rapid resets: GOAWAY %v (%v), connection ended %v; want ENHANCE_YOUR_CALM and the end", streams, got, code, ended)
	}
	if bound := floodBound(h2ResetBurst+h2FloodBurst, h2ResetRate+h2FloodRate, took, 0); int(acked) > bound {
		t.Fatalf("the server processed more than %d streams in %v, want at most %d", acked, took, bound)
	}
	if grew > 16<<20 {
		t.Errorf("the flood grew the heap and stacks by %d KiB, want less than 16 MiB", grew>>10)
	}
	if p := peak.Load(); p > h2MaxHandlers {
		t.Fatalf("%d handlers ran at once for one connection, want at most %d", p, h2MaxHandlers)
	}
	if n := started.Load(); n >= streams/2 {
		t.Fatalf("%d of %d reset streams started a handler", n, streams)
	}
	// Past the handlers' bound new streams are refused, and resets of
	// those count as a flood: either counter ends the connection.
	if n := rejections(c, 0, "h2_rapid_reset") + rejections(c, 0, "h2_flood"); n != 1 {
		t.Fatalf("h2_rapid_reset and h2_flood counted %d times, want 1", n)
	}
}

// CONTINUATION flood (CVE-2024-27316 and its kin): a header block that
// never ends, in CONTINUATION frames of junk or of nothing at all. The
// block is bounded in bytes and empty frames count as floods: either way
// the connection gets GOAWAY and is closed long before the client is done.
// The bounds: the bytes the server read (a PING cannot probe inside a
// header block) are at most the block's bound, or the frames the flood
// bucket lets through, plus what the closing connection drains (1 MiB),
// and the heap and stacks grow by less than 8 MiB.
func TestH2OwnContinuationFlood(t *testing.T) {
	for _, tt := range []struct {
		name  string
		frag  []byte
		count int
	}{
		{"junk", bytes.Repeat([]byte{0x40}, 16<<10), 1000}, // 16 MiB
		{"empty", nil, 400000},                             // 3.5 MiB
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := ownCore(t, Text("ok"), func(o *Options) { o.MaxRequestHeaderSize = 64 << 10 })
			addr, client := startTLS(t, c)
			f := dialFramer(t, addr, client)
			f.settled(t)
			block := f.headerBlock("/")
			heap := watchHeap()
			start := time.Now()
			read0 := c.Stats().BytesRead
			f.writeRaw(func(fr *http2.Framer) error {
				return fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block, EndStream: true})
			})
			// The frames go out 1000 to a write (16 MiB of junk is 16
			// KiB frames already), so that the client sends far more
			// than the server may read.
			var batch bytes.Buffer
			bf := http2.NewFramer(&batch, nil)
			for range max(1, 16<<10/(9+len(tt.frag))) {
				bf.WriteContinuation(1, false, tt.frag)
			}
			per := batch.Len() / (9 + len(tt.frag))
			sent := 0
			for ; sent < tt.count; sent += per {
				if f.writeRaw(func(*http2.Framer) error { _, err := f.tc.Write(batch.Bytes()); return err }) != nil {
					break
				}
			}
			code, got, ended := waitGoAway(f, 5*time.Second)
			took, grew := time.Since(start), heap.grew()
			if !got || code != http2.ErrCodeEnhanceYourCalm || !ended {
				t.Fatalf("GOAWAY %v (%v), ended %v; want ENHANCE_YOUR_CALM and the end", got, code, ended)
			}
			read := int64(c.Stats().BytesRead - read0)
			frame := int64(9 + len(tt.frag))
			bound := int64(64<<10+320+16<<10) + frame + h2DrainBytes + 64<<10
			if tt.frag == nil {
				bound = int64(floodBound(h2FloodBurst, h2FloodRate, took, 0))*frame + h2DrainBytes + 64<<10
			}
			t.Logf("%d of %d frames sent (%d KiB) in %v; the server read %d KiB (bound %d KiB); heap and stacks grew %d KiB",
				sent, tt.count, int64(sent)*frame>>10, took.Round(time.Millisecond), read>>10, bound>>10, grew>>10)
			if read > bound {
				t.Errorf("the server read %d KiB of the flood, want at most %d KiB", read>>10, bound>>10)
			}
			if grew > 8<<20 {
				t.Errorf("the flood grew the heap and stacks by %d KiB, want less than 8 MiB", grew>>10)
			}
			// 16 MiB of junk cannot all be taken: the server reads at most
			// 1 MiB after its GOAWAY (drain). Empty frames are small enough
			// to fit in that and the socket buffers; for them the GOAWAY
			// above is the proof.
			if sent == tt.count && tt.frag != nil {
				t.Fatalf("all %d CONTINUATION frames were taken", sent)
			}
		})
	}
}

// Frames that cost the server work and carry nothing, sent in a flood:
// past a burst and a rate the connection gets GOAWAY ENHANCE_YOUR_CALM.
// The bounds: the frames the server processed (probes every 100 frames)
// are at most what the token bucket lets through in the flood's time, and
// the flood grows the heap by less than 8 MiB.
func TestH2OwnControlFloods(t *testing.T) {
	for _, tt := range []struct {
		name  string
		setup func(f *h2Framer)
		frame func(fr *http2.Framer, i int) error
	}{
		{"SETTINGS", nil, func(fr *http2.Framer, i int) error { return fr.WriteSettings() }},
		{"PING", nil, func(fr *http2.Framer, i int) error { return fr.WritePing(false, [8]byte{byte(i)}) }},
		{"PRIORITY", nil, func(fr *http2.Framer, i int) error {
			return fr.WritePriority(uint32(2*i+1), http2.PriorityParam{Weight: 1})
		}},
		{"empty DATA", func(f *h2Framer) {
			block := f.headerBlock("/")
			f.writeRaw(func(fr *http2.Framer) error {
				return fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block, EndHeaders: true})
			})
		}, func(fr *http2.Framer, i int) error { return fr.WriteData(1, false, nil) }},
		{"empty HEADERS", nil, func(fr *http2.Framer, i int) error {
			return fr.WriteHeaders(http2.HeadersFrameParam{StreamID: uint32(2*i + 1), EndHeaders: false})
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.Copy(io.Discard, r.Body) })
			c := ownCore(t, h, nil)
			addr, client := startTLS(t, c)
			f := dialFramer(t, addr, client)
			if tt.setup != nil {
				tt.setup(f)
			}
			const flood, every = 20000, 100
			probes := tt.name != "empty HEADERS" // a PING inside a header block is an error of its own
			heap := watchHeap()
			start := time.Now()
			sent := 0
			for ; sent < flood; sent++ {
				i := sent
				if probes && i%every == 0 && f.probe(uint64(i)) != nil {
					break
				}
				if f.writeRaw(func(fr *http2.Framer) error { return tt.frame(fr, i) }) != nil {
					break
				}
			}
			code, got, ended, acked := floodEnd(f, 5*time.Second)
			took, grew := time.Since(start), heap.grew()
			t.Logf("%d frames sent in %v; heap and stacks grew %d KiB", sent, took.Round(time.Millisecond), grew>>10)
			if grew > 8<<20 {
				t.Errorf("the flood grew the heap and stacks by %d KiB, want less than 8 MiB", grew>>10)
			}
			if tt.name == "empty HEADERS" {
				// Each opens a header block the next frame breaks: a
				// PROTOCOL_ERROR at the second frame already.
				if !got || code != http2.ErrCodeProtocol || !ended {
					t.Fatalf("GOAWAY %v (%v), ended %v; want PROTOCOL_ERROR", got, code, ended)
				}
				return
			}
			if !got || code != http2.ErrCodeEnhanceYourCalm || !ended {
				t.Fatalf("%d frames sent: GOAWAY %v (%v), ended %v; want ENHANCE_YOUR_CALM and the end", sent, got, code, ended)
			}
			t.Logf("the server processed %d to %d frames", acked, acked+every)
			if bound := floodBound(h2FloodBurst, h2FloodRate, took, 0); int(acked) > bound {
				t.Fatalf("the server processed more than %d frames in %v, want at most %d (burst %d, %d a second)", acked, took, bound, h2FloodBurst, h2FloodRate)
			}
			if n := rejections(c, 0, "h2_flood"); n != 1 {
				t.Fatalf("h2_flood counted %d times, want 1", n)
			}
		})
	}
}

// A header list past max_request_header_size (plus the 320 bytes x/net
// allows, which is what MAX_HEADER_LIST_SIZE announces) gets 431 on its
// stream; the connection goes on serving.
func TestH2OwnHeaderListSize(t *testing.T) {
	c := ownCore(t, Text("ok"), func(o *Options) { o.MaxRequestHeaderSize = 4 << 10 })
	addr, client := startTLS(t, c)
	cfg := client.Transport.(*http.Transport).TLSClientConfig.Clone()
	cfg.NextProtos = []string{"h2"}
	tc, err := tls.Dial("tcp", addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	tc.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(tc, http2.ClientPreface)
	fr := http2.NewFramer(tc, tc)
	fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	fr.WriteSettings()
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	send := func(id uint32, big bool) {
		hb.Reset()
		for _, kv := range [][2]string{{":method", "GET"}, {":scheme", "https"}, {":authority", "127.0.0.1"}, {":path", "/"}} {
			enc.WriteField(hpack.HeaderField{Name: kv[0], Value: kv[1]})
		}
		if big {
			enc.WriteField(hpack.HeaderField{Name: "x-big", Value: string(bytes.Repeat([]byte("b"), 5<<10)), Sensitive: true})
		}
		if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: hb.Bytes(), EndStream: true, EndHeaders: true}); err != nil {
			t.Fatal(err)
		}
	}
	status := func(id uint32) string {
		for {
			f, err := fr.ReadFrame()
			if err != nil {
				t.Fatalf("stream %d: %v", id, err)
			}
			if mh, ok := f.(*http2.MetaHeadersFrame); ok && mh.StreamID == id {
				return mh.PseudoValue("status")
			}
		}
	}
	send(1, true)
	if st := status(1); st != "431" {
		t.Fatalf("oversized header list got %s, want 431", st)
	}
	send(3, false)
	if st := status(3); st != "200" {
		t.Fatalf("next request on the connection got %s", st)
	}
	if n := rejections(c, 431, errHeadTooLarge.reason); n != 1 {
		t.Fatalf("431 counted %d times, want 1", n)
	}
}

// SETTINGS_MAX_CONCURRENT_STREAMS is kept: with h2MaxStreams streams open
// (their handlers waiting), one more is refused with REFUSED_STREAM, and
// once they end new streams are served again. The bound on memory: the
// connection's h2MaxStreams blocked handlers and the refusal grow the heap
// and stacks by less than 16 MiB.
func TestH2OwnConcurrentStreams(t *testing.T) {
	release := make(chan struct{})
	var entered atomic.Int32
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/block" {
			entered.Add(1)
			<-release
		}
		io.WriteString(w, "ok")
	})
	c := ownCore(t, h, func(o *Options) { o.ThreadPool = h2MaxStreams + 10 })
	addr, client := startTLS(t, c)
	f := dialFramer(t, addr, client)
	heap := watchHeap()
	for i := 0; i < h2MaxStreams; i++ {
		f.request(t, uint32(2*i+1), "GET", "/block", true)
	}
	if !within(5*time.Second, func() bool { return entered.Load() == h2MaxStreams }) {
		t.Fatalf("%d of %d streams reached the handler", entered.Load(), h2MaxStreams)
	}
	extra := uint32(2*h2MaxStreams + 1)
	f.request(t, extra, "GET", "/", true)
	timeout := time.After(5 * time.Second)
	for refused := false; !refused; {
		select {
		case fr, ok := <-f.frames:
			if !ok {
				t.Fatal("connection ended")
			}
			if fr.StreamID == extra {
				if fr.Type != http2.FrameRSTStream || fr.code != http2.ErrCodeRefusedStream {
					t.Fatalf("stream past the limit: %v %v, want RST_STREAM REFUSED_STREAM", fr.Type, fr.code)
				}
				refused = true
			}
		case <-timeout:
			t.Fatal("the stream past the limit was not refused")
		}
	}
	if grew := heap.grew(); grew > 16<<20 {
		t.Errorf("%d blocked streams grew the heap and stacks by %d KiB, want less than 16 MiB", h2MaxStreams, grew>>10)
	}
	close(release)
	f.request(t, extra+2, "GET", "/", true)
	if !waitForEnd(f, extra+2, 5*time.Second) {
		t.Fatal("a stream after the others ended was not served")
	}
}

// Flow-control abuse: a WINDOW_UPDATE that takes a window past 2^31-1 is a
// stream error on a stream and a connection error on the connection, and
// DATA past the window the server gave is FLOW_CONTROL_ERROR.
func TestH2OwnWindowOverflow(t *testing.T) {
	blockHandler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
	})
	t.Run("stream", func(t *testing.T) {
		c := ownCore(t, blockHandler, nil)
		addr, client := startTLS(t, c)
		f := dialFramer(t, addr, client)
		f.request(t, 1, "POST", "/", false)
		f.writeRaw(func(fr *http2.Framer) error { return fr.WriteWindowUpdate(1, 1<<31-1) })
		timeout := time.After(5 * time.Second)
		for {
			select {
			case fr, ok := <-f.frames:
				if !ok {
					t.Fatal("connection ended; want only the stream reset")
				}
				if fr.Type == http2.FrameRSTStream && fr.StreamID == 1 {
					if fr.code != http2.ErrCodeFlowControl {
						t.Fatalf("RST_STREAM %v, want FLOW_CONTROL_ERROR", fr.code)
					}
					return
				}
			case <-timeout:
				t.Fatal("no RST_STREAM for a stream window overflow")
			}
		}
	})
	t.Run("connection", func(t *testing.T) {
		c := ownCore(t, blockHandler, nil)
		addr, client := startTLS(t, c)
		f := dialFramer(t, addr, client)
		f.writeRaw(func(fr *http2.Framer) error { return fr.WriteWindowUpdate(0, 1<<31-1) })
		code, got, ended := waitGoAway(f, 5*time.Second)
		if !got || code != http2.ErrCodeFlowControl || !ended {
			t.Fatalf("GOAWAY %v (%v), ended %v; want FLOW_CONTROL_ERROR", got, code, ended)
		}
	})
	t.Run("data past the window", func(t *testing.T) {
		c := ownCore(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			<-r.Context().Done() // never reads: the window is not given back
		}), nil)
		addr, client := startTLS(t, c)
		f := dialFramer(t, addr, client)
		f.request(t, 1, "POST", "/", false)
		chunk := make([]byte, 16<<10)
		for i := 0; i < 5; i++ { // 80 KiB into a window of 64 KiB
			f.writeRaw(func(fr *http2.Framer) error { return fr.WriteData(1, false, chunk) })
		}
		if !waitForReset(f, 1, 5*time.Second) {
			t.Fatal("DATA past the stream window was not reset")
		}
	})
}

// A connection whose streams are open but whose client has gone silent (it
// answers no PING) is pinged after socket_timeout and closed when the ping
// is not answered within socket_timeout; the handler's context ends. The
// bound on work: one PING, two at most, before the close.
func TestH2OwnPingTimeout(t *testing.T) {
	const idle = 300 * time.Millisecond
	gone := make(chan time.Time, 1)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done()
		gone <- time.Now()
	})
	c := ownCore(t, h, func(o *Options) { o.SocketTimeout = idle })
	addr, client := startTLS(t, c)
	cfg := client.Transport.(*http.Transport).TLSClientConfig.Clone()
	cfg.NextProtos = []string{"h2"}
	tc, err := tls.Dial("tcp", addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	io.WriteString(tc, http2.ClientPreface)
	fr := http2.NewFramer(tc, tc)
	fr.WriteSettings()
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	for _, kv := range [][2]string{{":method", "GET"}, {":scheme", "https"}, {":authority", "127.0.0.1"}, {":path", "/"}} {
		enc.WriteField(hpack.HeaderField{Name: kv[0], Value: kv[1]})
	}
	start := time.Now()
	fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hb.Bytes(), EndStream: true, EndHeaders: true})
	// Read everything, answer nothing (not even SETTINGS).
	pinged := make(chan struct{}, 1)
	var pings atomic.Int32
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		for {
			f, err := fr.ReadFrame()
			if err != nil {
				return
			}
			if p, ok := f.(*http2.PingFrame); ok && !p.IsAck() {
				pings.Add(1)
				select {
				case pinged <- struct{}{}:
				default:
				}
			}
		}
	}()
	select {
	case at := <-gone:
		if d := at.Sub(start); d > 3*idle+time.Second {
			t.Fatalf("silent client cut off after %v, socket_timeout %v", d, idle)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the silent client's stream was never ended")
	}
	select {
	case <-pinged:
	default:
		t.Fatal("no PING was sent before the close")
	}
	select {
	case <-readDone:
	case <-time.After(5 * time.Second):
		t.Fatal("the silent client's connection was not closed")
	}
	if n := pings.Load(); n > 2 {
		t.Fatalf("%d PINGs sent to a silent client, want at most 2", n)
	}
}

// Many streams at once on one connection, through x/net's client: 10,000
// requests, 100 in flight at a time, each with a body of its own that the
// handler echoes with a trailer, and every response whole and its own. The
// writer coalesces frames of many streams into one write: no response may
// get another's bytes, lose its end or its trailer.
func TestH2OwnManyStreams(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			t.Errorf("read body: %v", err)
			return
		}
		w.Header().Set("Trailer", "X-Len")
		w.Write(b)
		if len(b) > 2000 {
			w.(http.Flusher).Flush()
		}
		w.Write(b)
		w.Header().Set("X-Len", strconv.Itoa(2*len(b)))
	})
	c := ownCore(t, h, func(o *Options) { o.ThreadPool = 100 })
	addr, client := startTLS(t, c)
	tr := h2Transport(t, client)
	const workers, each = 100, 100
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				body := strings.Repeat(fmt.Sprintf("w%d-i%d;", w, i), 1+(w*each+i)%700)
				req, _ := http.NewRequest("POST", "https://"+addr+"/", strings.NewReader(body))
				resp, err := tr.RoundTrip(req)
				if err != nil {
					errs <- err
					return
				}
				got, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil || string(got) != body+body || resp.Trailer.Get("X-Len") != strconv.Itoa(2*len(body)) {
					errs <- fmt.Errorf("worker %d request %d: %d bytes (want %d), trailer %q, err %v", w, i, len(got), 2*len(body), resp.Trailer.Get("X-Len"), err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if st := c.Stats(); st.Requests != workers*each || st.H2Connections != 1 {
		t.Fatalf("requests %d on %d h2 connections, want %d on 1", st.Requests, st.H2Connections, workers*each)
	}
}

// A HEADERS whose stream depends on itself is that stream's error
// (PROTOCOL_ERROR), but its header block still goes through the
// connection's HPACK decoder: the client's encoder has added its fields to
// the dynamic table, and the next request refers to them. Found by
// FuzzH2Differential: the engine skipped the block and failed the next
// request with COMPRESSION_ERROR, where x/net answers it.
func TestH2OwnSelfDependentHeadersKeepHPACK(t *testing.T) {
	c := ownCore(t, echoHandler(), nil)
	addr, client := startTLS(t, c)
	f := dialFramer(t, addr, client)
	f.settled(t)
	block := f.headerBlock("/self") // indexes :authority and :path
	f.writeRaw(func(fr *http2.Framer) error {
		return fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block, EndStream: true, EndHeaders: true,
			Priority: http2.PriorityParam{StreamDep: 1, Weight: 15}})
	})
	block = f.headerBlock("/self") // now all from the dynamic table
	f.writeRaw(func(fr *http2.Framer) error {
		return fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: block, EndStream: true, EndHeaders: true})
	})
	var reset, answered bool
	timeout := time.After(5 * time.Second)
	for !reset || !answered {
		select {
		case ev, ok := <-f.frames:
			if !ok {
				t.Fatalf("connection ended: reset of stream 1 %v, answer on stream 3 %v", reset, answered)
			}
			switch {
			case ev.Type == http2.FrameGoAway:
				t.Fatalf("GOAWAY %v: the connection's HPACK state was lost", ev.code)
			case ev.Type == http2.FrameRSTStream && ev.StreamID == 1:
				if ev.code != http2.ErrCodeProtocol {
					t.Fatalf("stream 1 reset with %v, want PROTOCOL_ERROR", ev.code)
				}
				reset = true
			case ev.Type == http2.FrameHeaders && ev.StreamID == 3:
				answered = true
			case ev.StreamID == 1 && ev.Type != http2.FrameRSTStream:
				t.Fatalf("stream 1 got %v, want only its reset", ev.Type)
			}
		case <-timeout:
			t.Fatalf("reset of stream 1 %v, answer on stream 3 %v", reset, answered)
		}
	}
}

// h2Status sends one GET with the given pseudo-header and regular fields
// on a new connection and returns the response's :status, or "reset CODE"
// or "goaway CODE".
func h2Status(t *testing.T, addr string, client *http.Client, fields ...string) string {
	t.Helper()
	cfg := client.Transport.(*http.Transport).TLSClientConfig.Clone()
	cfg.NextProtos = []string{"h2"}
	cfg.ServerName = "127.0.0.1"
	tc, err := tls.Dial("tcp", addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	tc.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(tc, http2.ClientPreface)
	fr := http2.NewFramer(tc, tc)
	fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	fr.WriteSettings()
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	for i := 0; i+1 < len(fields); i += 2 {
		enc.WriteField(hpack.HeaderField{Name: fields[i], Value: fields[i+1]})
	}
	fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hb.Bytes(), EndStream: true, EndHeaders: true})
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("no answer: %v", err)
		}
		switch f := f.(type) {
		case *http2.MetaHeadersFrame:
			return f.PseudoValue("status")
		case *http2.RSTStreamFrame:
			return "reset " + f.ErrCode.String()
		case *http2.GoAwayFrame:
			return "goaway " + f.ErrCode.String()
		}
	}
}

// :authority is checked as HTTP/1.1 checks Host (400 "malformed Host
// header"), and so is a Host field standing in for an absent :authority.
// Found by FuzzH2Differential: the engine passed "a/b" to the handler as
// the request's Host, where HTTP/1.1 refuses it and x/net resets the
// stream.
func TestH2OwnAuthorityChecked(t *testing.T) {
	c := ownCore(t, echoHandler(), nil)
	addr, client := startTLS(t, c)
	for _, tc := range []struct {
		fields []string
		want   string
	}{
		{[]string{":authority", "example.com:443"}, "200"},
		{[]string{":authority", "[::1]:8443"}, "200"},
		{[]string{":authority", "a/b"}, "400"},
		{[]string{":authority", "a@b"}, "400"},
		{[]string{":authority", "a:b"}, "400"},
		{[]string{":authority", "[::1"}, "400"},
		{[]string{"host", "a/b"}, "400"},
		// Two hosts, which RFC 9113 8.3.1 makes malformed: routing by
		// host and the 421 check must not read one and the upstream the
		// other.
		{[]string{":authority", "a.test", "host", "A.test"}, "200"},
		{[]string{":authority", "a.test", "host", "b.test"}, "400"},
		{[]string{"host", "a.test", "host", "b.test"}, "400"},
	} {
		var pseudo, regular []string
		for i := 0; i+1 < len(tc.fields); i += 2 {
			if strings.HasPrefix(tc.fields[i], ":") {
				pseudo = append(pseudo, tc.fields[i], tc.fields[i+1])
			} else {
				regular = append(regular, tc.fields[i], tc.fields[i+1])
			}
		}
		fields := append(append(pseudo, ":method", "GET", ":scheme", "https", ":path", "/"), regular...)
		if got := h2Status(t, addr, client, fields...); got != tc.want {
			t.Errorf("%q: got %s, want %s", tc.fields, got, tc.want)
		}
	}
}

// A client's trailers on a stream the server has just reset (here for a
// request without :path) are ignored, as RFC 9113 section 5.1 wants of
// frames on a stream this end reset: the client may have sent them before
// the reset reached it. Found by FuzzH2Differential: the engine ended the
// whole connection with STREAM_CLOSED, its other streams with it.
func TestH2OwnHeadersAfterOurResetIgnored(t *testing.T) {
	c := ownCore(t, echoHandler(), nil)
	addr, client := startTLS(t, c)
	f := dialFramer(t, addr, client)
	f.settled(t)
	block := func(kv ...string) []byte {
		f.wmu.Lock()
		defer f.wmu.Unlock()
		f.hb.Reset()
		for i := 0; i+1 < len(kv); i += 2 {
			f.enc.WriteField(hpack.HeaderField{Name: kv[i], Value: kv[i+1]})
		}
		return bytes.Clone(f.hb.Bytes())
	}
	bad := block(":method", "POST", ":scheme", "https", ":authority", "127.0.0.1") // no :path
	f.writeRaw(func(fr *http2.Framer) error {
		return fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: bad, EndHeaders: true})
	})
	reset := false
	timeout := time.After(5 * time.Second)
	for !reset {
		select {
		case ev, ok := <-f.frames:
			if !ok {
				t.Fatal("connection ended")
			}
			reset = ev.Type == http2.FrameRSTStream && ev.StreamID == 1
		case <-timeout:
			t.Fatal("stream 1 not reset")
		}
	}
	trailers := block("x-t", "v")
	f.writeRaw(func(fr *http2.Framer) error {
		return fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: trailers, EndStream: true, EndHeaders: true})
	})
	get := f.headerBlock("/after")
	f.writeRaw(func(fr *http2.Framer) error {
		return fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: get, EndStream: true, EndHeaders: true})
	})
	for {
		select {
		case ev, ok := <-f.frames:
			if !ok {
				t.Fatal("connection ended")
			}
			if ev.Type == http2.FrameGoAway {
				t.Fatalf("GOAWAY %v for trailers on a stream the server reset", ev.code)
			}
			if ev.Type == http2.FrameHeaders && ev.StreamID == 3 {
				return
			}
		case <-timeout:
			t.Fatal("no answer on stream 3")
		}
	}
}

// The same for trailers after an early refusal: the engine answered 400
// (a malformed :authority) before the client ended its request, and the
// client's trailers that follow are ignored, not a connection error.
// Found by FuzzH2Differential.
func TestH2OwnTrailersAfterEarlyRefusalIgnored(t *testing.T) {
	c := ownCore(t, echoHandler(), nil)
	addr, client := startTLS(t, c)
	f := dialFramer(t, addr, client)
	f.settled(t)
	block := func(kv ...string) []byte {
		f.wmu.Lock()
		defer f.wmu.Unlock()
		f.hb.Reset()
		for i := 0; i+1 < len(kv); i += 2 {
			f.enc.WriteField(hpack.HeaderField{Name: kv[i], Value: kv[i+1]})
		}
		return bytes.Clone(f.hb.Bytes())
	}
	bad := block(":method", "POST", ":scheme", "https", ":authority", "a/b", ":path", "/")
	f.writeRaw(func(fr *http2.Framer) error {
		return fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: bad, EndHeaders: true})
	})
	answered := false
	timeout := time.After(5 * time.Second)
	for !answered {
		select {
		case ev, ok := <-f.frames:
			if !ok {
				t.Fatal("connection ended")
			}
			answered = ev.StreamID == 1 && ev.Flags.Has(http2.FlagDataEndStream)
		case <-timeout:
			t.Fatal("stream 1 not answered")
		}
	}
	time.Sleep(50 * time.Millisecond) // the stream is closed on the server's side
	trailers := block("x-t", "v")
	f.writeRaw(func(fr *http2.Framer) error {
		return fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: trailers, EndStream: true, EndHeaders: true})
	})
	get := f.headerBlock("/after")
	f.writeRaw(func(fr *http2.Framer) error {
		return fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: get, EndStream: true, EndHeaders: true})
	})
	for {
		select {
		case ev, ok := <-f.frames:
			if !ok {
				t.Fatal("connection ended")
			}
			if ev.Type == http2.FrameGoAway {
				t.Fatalf("GOAWAY %v for trailers after the server's early answer", ev.code)
			}
			if ev.Type == http2.FrameHeaders && ev.StreamID == 3 {
				return
			}
		case <-timeout:
			t.Fatal("no answer on stream 3")
		}
	}
}

// Padding longer than its frame is the connection's error, PROTOCOL_ERROR:
// for DATA (RFC 9113 section 6.1) and for HEADERS (section 6.2), whose
// header block cannot then be decoded, which would leave the connection's
// HPACK table out of step with the client's (section 4.3). x/net's Framer
// reports the HEADERS case as the stream's error; the engine used to reset
// the stream and go on, decoding the next blocks against the wrong table.
// The frames are written byte by byte, as no Framer writes them.
func TestH2OwnPaddingTooLong(t *testing.T) {
	for _, tt := range []struct {
		name  string
		frame func(f *h2Framer) []byte
	}{
		{"HEADERS", func(f *h2Framer) []byte {
			block := f.headerBlock("/")
			// type 1, END_STREAM|END_HEADERS|PADDED, stream 1; the pad
			// length is one more than what follows it.
			hdr := []byte{0, 0, byte(1 + len(block)), 0x1, 0x1 | 0x4 | 0x8, 0, 0, 0, 1}
			return append(append(hdr, byte(len(block)+1)), block...)
		}},
		{"DATA", func(f *h2Framer) []byte {
			f.request(t, 1, "POST", "/", false)
			// type 0, END_STREAM|PADDED, stream 1: 4 bytes of data, a pad
			// length of 5.
			return []byte{0, 0, 5, 0x0, 0x1 | 0x8, 0, 0, 0, 1, 5, 'd', 'a', 't', 'a'}
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := ownCore(t, echoHandler(), nil)
			addr, client := startTLS(t, c)
			f := dialFramer(t, addr, client)
			f.settled(t)
			raw := tt.frame(f)
			f.writeRaw(func(*http2.Framer) error {
				_, err := f.tc.Write(raw)
				return err
			})
			// A request after it, which the server must not answer.
			f.request(t, 3, "GET", "/after", true)
			code, got, ended := waitGoAway(f, 5*time.Second)
			if !got || code != http2.ErrCodeProtocol || !ended {
				t.Fatalf("GOAWAY %v (%v), ended %v; want PROTOCOL_ERROR and the end", got, code, ended)
			}
		})
	}
}

// A client's GOAWAY is answered with the engine's own (NO_ERROR, its last
// stream id the last stream it took) before the connection closes, as RFC
// 9113 section 6.8 wants of a receiver of GOAWAY: a stream the client
// opens after its GOAWAY is ignored, and the server's GOAWAY tells the
// client it was not processed. Found by FuzzH2Differential: the engine
// closed without a word.
func TestH2OwnClientGoAwayAnswered(t *testing.T) {
	c := ownCore(t, echoHandler(), nil)
	addr, client := startTLS(t, c)
	f := dialFramer(t, addr, client)
	f.settled(t)
	f.request(t, 1, "GET", "/", true)
	if !waitForEnd(f, 1, 5*time.Second) {
		t.Fatal("stream 1 not answered")
	}
	f.writeRaw(func(fr *http2.Framer) error { return fr.WriteGoAway(0, http2.ErrCodeNo, nil) })
	f.request(t, 3, "GET", "/after", true)
	timeout := time.After(5 * time.Second)
	for {
		select {
		case ev, ok := <-f.frames:
			if !ok {
				t.Fatal("connection closed without a GOAWAY of the server's")
			}
			if ev.StreamID == 3 {
				t.Fatalf("stream 3, opened after the client's GOAWAY, got %v", ev.Type)
			}
			if ev.Type == http2.FrameGoAway {
				if ev.code != http2.ErrCodeNo {
					t.Fatalf("GOAWAY %v, want NO_ERROR", ev.code)
				}
				if _, _, ended := waitGoAway(f, 5*time.Second); !ended {
					t.Fatal("connection not closed after the GOAWAYs")
				}
				return
			}
		case <-timeout:
			t.Fatal("no GOAWAY and no close")
		}
	}
}

// An HPACK bomb: one field of 3.9 KB in the dynamic table, then a header
// block of 16,000 one-byte references to it, a header list of 62 MB from
// a block of 16 KB. The list past max_request_header_size gets 431 on its
// stream, the block is decoded to its end so the connection's HPACK table
// stays the client's (the next request is served), and the fields past the
// bound are not kept: the heap and stacks grow by less than 4 MiB. The
// work is bounded by the block's size, which the block bound caps.
func TestH2OwnHPACKBomb(t *testing.T) {
	c := ownCore(t, Text("ok"), func(o *Options) { o.MaxRequestHeaderSize = 8 << 10 })
	addr, client := startTLS(t, c)
	cfg := client.Transport.(*http.Transport).TLSClientConfig.Clone()
	cfg.NextProtos = []string{"h2"}
	tc, err := tls.Dial("tcp", addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	tc.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(tc, http2.ClientPreface)
	fr := http2.NewFramer(tc, tc)
	fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	fr.WriteSettings()
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	get := func(sensitive bool) {
		for _, kv := range [][2]string{{":method", "GET"}, {":scheme", "https"}, {":authority", "127.0.0.1"}, {":path", "/"}} {
			enc.WriteField(hpack.HeaderField{Name: kv[0], Value: kv[1], Sensitive: sensitive})
		}
	}
	status := func(id uint32) string {
		for {
			f, err := fr.ReadFrame()
			if err != nil {
				t.Fatalf("stream %d: %v", id, err)
			}
			if mh, ok := f.(*http2.MetaHeadersFrame); ok && mh.StreamID == id {
				return mh.PseudoValue("status")
			}
		}
	}
	// Stream 1 puts the big field into the table (it is the newest entry:
	// index 62) and is served.
	get(false)
	big := hpack.HeaderField{Name: "x-b", Value: strings.Repeat("b", 3900)}
	enc.WriteField(big)
	fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hb.Bytes(), EndStream: true, EndHeaders: true})
	if st := status(1); st != "200" {
		t.Fatalf("the request that fills the table got %s", st)
	}
	// Stream 3: the bomb, its fields never indexed so the table keeps
	// the big field at 62.
	hb.Reset()
	get(true)
	const refs = 16000
	block := append(bytes.Clone(hb.Bytes()), bytes.Repeat([]byte{0x80 | 62}, refs)...)
	heap := watchHeap()
	fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: block[:16000], EndStream: true})
	fr.WriteContinuation(3, true, block[16000:])
	st := status(3)
	grew := heap.grew()
	t.Logf("a block of %d bytes decoding to %d MB of header list: %s; heap and stacks grew %d KiB", len(block), refs*big.Size()>>20, st, grew>>10)
	if st != "431" {
		t.Fatalf("the HPACK bomb got %s, want 431", st)
	}
	if grew > 4<<20 {
		t.Errorf("the HPACK bomb grew the heap and stacks by %d KiB, want less than 4 MiB", grew>>10)
	}
	hb.Reset()
	get(true)
	enc.WriteField(big) // indexed: 62 still
	fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 5, BlockFragment: hb.Bytes(), EndStream: true, EndHeaders: true})
	if st := status(5); st != "200" {
		t.Fatalf("the request after the bomb got %s: the HPACK table is out of step", st)
	}
}

// After a graceful GOAWAY (here the answer to the client's own) the
// streams the client still opens are ignored, and a connection error that
// follows sends a second GOAWAY: its last stream id must not be higher
// than the first's (RFC 9113 section 6.8), since the client may already
// have retried the ignored streams elsewhere. The engine used to send the
// highest stream id it had seen, ignored ones included.
func TestH2OwnSecondGoAwayKeepsLastStream(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.Copy(io.Discard, r.Body) })
	c := ownCore(t, h, nil)
	addr, client := startTLS(t, c)
	f := dialFramer(t, addr, client)
	f.settled(t)
	f.request(t, 1, "POST", "/", false) // open: its body never ends
	f.writeRaw(func(fr *http2.Framer) error { return fr.WriteGoAway(0, http2.ErrCodeNo, nil) })
	var goaways []h2Event
	timeout := time.After(5 * time.Second)
	for len(goaways) == 0 {
		select {
		case ev, ok := <-f.frames:
			if !ok {
				t.Fatal("connection ended before the server's GOAWAY")
			}
			if ev.Type == http2.FrameGoAway {
				goaways = append(goaways, ev)
			}
		case <-timeout:
			t.Fatal("no GOAWAY in answer to the client's")
		}
	}
	f.request(t, 3, "GET", "/", true)         // ignored
	f.writeRaw(func(fr *http2.Framer) error { // WINDOW_UPDATE 0 on the connection: PROTOCOL_ERROR
		return fr.WriteRawFrame(http2.FrameWindowUpdate, 0, 0, []byte{0, 0, 0, 0})
	})
	for ended := false; !ended; {
		select {
		case ev, ok := <-f.frames:
			if !ok {
				ended = true
				break
			}
			if ev.Type == http2.FrameGoAway {
				goaways = append(goaways, ev)
			}
		case <-timeout:
			t.Fatal("the connection did not end after the connection error")
		}
	}
	if len(goaways) != 2 || goaways[0].code != http2.ErrCodeNo || goaways[1].code != http2.ErrCodeProtocol {
		t.Fatalf("GOAWAYs %v, want NO_ERROR then PROTOCOL_ERROR", goaways)
	}
	for _, g := range goaways {
		if g.last != 1 {
			t.Fatalf("GOAWAY %v with last stream %d, want 1 (stream 3 came after the first GOAWAY)", g.code, g.last)
		}
	}
}
