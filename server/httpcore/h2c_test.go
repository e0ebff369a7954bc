package httpcore

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// h2cHandler tells what the request looked like to a handler.
func h2cHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("X-Proto", r.Proto)
		w.Header().Set("X-TLS", fmt.Sprint(r.TLS != nil))
		w.Header().Set("X-Upgrade", r.Header.Get("Upgrade"))
		w.Header().Set("X-Len", itoa(len(b)))
		io.WriteString(w, "hello "+r.URL.Path)
	})
}

// h2cClient is x/net's transport speaking h2 with prior knowledge over
// plain connections dialed by dial; dials counts them.
func h2cClient(dial func() (net.Conn, error), dials *atomic.Int32) *http.Client {
	tr := &http2.Transport{
		AllowHTTP: true,
		DialTLSContext: func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
			dials.Add(1)
			return dial()
		},
	}
	return &http.Client{Transport: tr, Timeout: 5 * time.Second}
}

func startUnix(t testing.TB, c *Core) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "s")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	go c.Serve(ln, nil)
	t.Cleanup(func() { ln.Close(); c.Close() })
	return path
}

// TestH2CPriorKnowledge: with h2c on, x/net's client speaking h2 with prior
// knowledge over TCP and over a UNIX socket (and on a connection parked
// before its first byte) is served as HTTP/2.0 on one
// connection, with r.TLS nil, whatever :scheme it sends, held to the same
// limits (413), and counted as an h2 connection.
func TestH2CPriorKnowledge(t *testing.T) {
	for _, name := range []string{"tcp", "unix", "tcp parked before the preface"} {
		t.Run(name, func(t *testing.T) {
			network, _, quiet := strings.Cut(name, " ")
			c := newCore(t, h2cHandler(), func(o *Options) { o.H2C = true; o.MaxRequestBodySize = 5000 })
			var addr string
			if network == "tcp" {
				ln, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					t.Fatal(err)
				}
				go c.Serve(ln, nil)
				t.Cleanup(func() { ln.Close(); c.Close() })
				addr = ln.Addr().String()
			} else {
				addr = startUnix(t, c)
			}
			var dials atomic.Int32
			client := h2cClient(func() (net.Conn, error) {
				nc, err := net.Dial(network, addr)
				if err == nil && quiet && runtime.GOOS == "linux" {
					// A balancer's pooled connection, quiet past idleHotWait:
					// parked before its first byte, woken by the preface.
					h2cWait(t, "the new connection idle", func() bool { return c.Stats().ConnectionsIdle == 1 })
					time.Sleep(3 * idleHotWait)
				}
				return nc, err
			}, &dials)
			// "https" makes the client send :scheme https over cleartext, as
			// a balancer that terminated TLS may: served, and still plain.
			for i, u := range []string{"http://x/a", "https://x:80/b", "http://x/c"} {
				resp, err := client.Post(u, "text/plain", strings.NewReader(strings.Repeat("z", i*1000)))
				if err != nil {
					t.Fatal(err)
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 || resp.ProtoMajor != 2 || resp.Header.Get("X-Proto") != "HTTP/2.0" ||
					resp.Header.Get("X-TLS") != "false" || resp.Header.Get("X-Len") != itoa(i*1000) || !strings.HasPrefix(string(b), "hello /") {
					t.Fatalf("%s: %d %s %v %q", u, resp.StatusCode, resp.Proto, resp.Header, b)
				}
			}
			// The limits are the engine's, as over TLS.
			resp, err := client.Post("http://x/big", "text/plain", strings.NewReader(strings.Repeat("z", 6000)))
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != 413 {
				t.Fatalf("body over max_request_body_size: %d", resp.StatusCode)
			}
			if n := dials.Load(); n != 1 {
				t.Fatalf("%d connections, want 1", n)
			}
			st := c.Stats()
			if st.H2Connections != 1 || st.Requests < 3 || st.BytesRead < uint64(len(http2.ClientPreface)+3000) {
				t.Fatalf("stats: h2 %d, requests %d, read %d", st.H2Connections, st.Requests, st.BytesRead)
			}
		})
	}
}

// TestH2CPrefaceAnswer: the h2 preface on a plain connection. With h2c off
// it is an HTTP/1.1 request line of version 2.0: a 505, and the close. With
// h2c on it is h2 when it is the first thing sent, also in pieces, and only
// then: after an HTTP/1.1 request, or cut short, it is the HTTP/1.1 505 as
// with h2c off, and anything that parts from it is HTTP/1.1.
func TestH2CPrefaceAnswer(t *testing.T) {
	off := startServer(t, echoHandler(), nil)
	on := startServer(t, echoHandler(), func(o *Options) { o.H2C = true })
	const get = "GET / HTTP/1.1\r\nHost: a\r\n\r\n"
	for _, tt := range []struct {
		name   string
		ts     *testServer
		raw    string
		status int
		closed bool
	}{
		{"off: preface", off, http2.ClientPreface, 505, true},
		{"off: preface and SETTINGS", off, http2.ClientPreface + "\x00\x00\x00\x04\x00\x00\x00\x00\x00", 505, true},
		{"on: preface second", on, get + http2.ClientPreface, 505, true},
		{"on: preface cut short", on, http2.ClientPreface[:18] + "XX\r\n\r\n", 505, true},
		{"on: PRI over HTTP/1.1", on, "PRI / HTTP/1.1\r\nHost: a\r\n\r\n", 200, false},
		{"on: PRI * over HTTP/1.1", on, "PRI * HTTP/1.1\r\nHost: a\r\n\r\n", 400, true},
		{"on: short HTTP/1.0", on, "PUT / HTTP/1.0\r\n\r\n", 200, true},
		{"off: short HTTP/1.0", off, "PUT / HTTP/1.0\r\n\r\n", 200, true},
		{"on: GET", on, get, 200, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			out, closed := tt.ts.exchange(t, tt.raw, 500*time.Millisecond)
			rs := parseResponses(t, out)
			last := rs[len(rs)-1]
			if last.StatusCode != tt.status || closed != tt.closed {
				t.Fatalf("got %d closed %v, want %d closed %v:\n%s", last.StatusCode, closed, tt.status, tt.closed, out)
			}
			if tt.status == 505 && last.Header.Get("Content-Type") != "text/plain; charset=utf-8" {
				t.Fatalf("505 without its text: %v", last.Header)
			}
		})
	}
	if st := on.core.Stats(); st.H2Connections != 0 {
		t.Fatalf("h2 connections %d", st.H2Connections)
	}

	// The preface in pieces, as a slow client may send it: h2.
	nc, err := net.Dial("tcp", on.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	for _, part := range []string{"P", "RI * HTTP/2", ".0\r\n\r\nSM\r\n", "\r\n"} {
		io.WriteString(nc, part)
		time.Sleep(20 * time.Millisecond)
	}
	fr := http2.NewFramer(nc, nc)
	fr.WriteSettings()
	nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	f, err := fr.ReadFrame()
	if err != nil {
		t.Fatal(err)
	}
	if sf, ok := f.(*http2.SettingsFrame); !ok || sf.IsAck() {
		t.Fatalf("first frame %v, want the server's SETTINGS", f)
	}
}

// TestH2CUpgradeIgnored: the HTTP/1.1 Upgrade to h2c (RFC 7540 3.2,
// deprecated by RFC 9113) is not offered, with h2c on or off: the request
// is served as HTTP/1.1 (no 101) and the connection stays HTTP/1.1.
func TestH2CUpgradeIgnored(t *testing.T) {
	for _, h2c := range []bool{false, true} {
		t.Run(fmt.Sprint("h2c=", h2c), func(t *testing.T) {
			ts := startServer(t, h2cHandler(), func(o *Options) { o.H2C = h2c })
			up := "GET /u HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n"
			out, closed := ts.exchange(t, up+"GET /v HTTP/1.1\r\nHost: a\r\n\r\n", 300*time.Millisecond)
			rs := parseResponses(t, out)
			if len(rs) != 2 || closed {
				t.Fatalf("%d responses, closed %v:\n%s", len(rs), closed, out)
			}
			for i, r := range rs {
				b, _ := io.ReadAll(r.Body)
				if r.StatusCode != 200 || r.ProtoMajor != 1 || r.Header.Get("X-Proto") != "HTTP/1.1" || r.Header.Get("Upgrade") != "" {
					t.Fatalf("response %d: %d %s %v %q", i, r.StatusCode, r.Proto, r.Header, b)
				}
			}
			if st := ts.core.Stats(); st.H2Connections != 0 {
				t.Fatalf("h2 connections %d", st.H2Connections)
			}
		})
	}
}

// TestH2CServeWithTLS: h2c is for plain listeners; Serve with a tls.Config
// says so, naming the option.
func TestH2CServeWithTLS(t *testing.T) {
	c := newCore(t, h2cHandler(), func(o *Options) { o.H2C = true })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	err = c.Serve(ln, &tls.Config{})
	if err == nil || !strings.Contains(err.Error(), "h2c") {
		t.Fatalf("Serve with TLS and h2c: %v", err)
	}
}

// TestH2CParked: an idle h2c connection is parked like a TLS one (its
// goroutine ends, the idle gauge counts it) and its next request wakes it,
// on the same connection, again and again. The preface and the first
// request came in one read, so the bytes read ahead were all handed over
// before the first park.
func TestH2CParked(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("parking is Linux's")
	}
	c := newCore(t, h2cHandler(), func(o *Options) { o.H2C = true; o.SocketTimeout = 5 * time.Second })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go c.Serve(ln, nil)
	t.Cleanup(func() { ln.Close(); c.Close() })
	nc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	var first bytes.Buffer // preface, SETTINGS and a request in one write
	first.WriteString(http2.ClientPreface)
	fr := http2.NewFramer(&first, nil)
	fr.WriteSettings()
	block := func(path string) []byte {
		hb.Reset()
		for _, kv := range [][2]string{{":method", "GET"}, {":scheme", "http"}, {":authority", "x"}, {":path", path}} {
			enc.WriteField(hpack.HeaderField{Name: kv[0], Value: kv[1]})
		}
		return bytes.Clone(hb.Bytes())
	}
	fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block("/0"), EndStream: true, EndHeaders: true})
	if _, err := nc.Write(first.Bytes()); err != nil {
		t.Fatal(err)
	}
	cfr := http2.NewFramer(nc, nc)
	dec := hpack.NewDecoder(4096, nil)
	await := func(id uint32) string {
		t.Helper()
		nc.SetReadDeadline(time.Now().Add(5 * time.Second))
		var body []byte
		for {
			f, err := cfr.ReadFrame()
			if err != nil {
				t.Fatalf("stream %d: %v", id, err)
			}
			switch f := f.(type) {
			case *http2.SettingsFrame:
				if !f.IsAck() {
					cfr.WriteSettingsAck()
				}
			case *http2.HeadersFrame:
				if _, err := dec.DecodeFull(f.HeaderBlockFragment()); err != nil {
					t.Fatal(err)
				}
				if f.StreamEnded() {
					return string(body)
				}
			case *http2.DataFrame:
				body = append(body, f.Data()...)
				if f.StreamEnded() {
					return string(body)
				}
			case *http2.GoAwayFrame, *http2.RSTStreamFrame:
				t.Fatalf("stream %d: %v", id, f)
			}
		}
	}
	if b := await(1); b != "hello /0" {
		t.Fatalf("first body %q", b)
	}
	for i := uint32(1); i <= 3; i++ {
		h2cWait(t, "the connection parked", func() bool { return c.Stats().ConnectionsIdle == 1 })
		id := 2*i + 1
		if err := cfr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: block("/" + itoa(int(i))), EndStream: true, EndHeaders: true}); err != nil {
			t.Fatal(err)
		}
		if b := await(id); b != "hello /"+itoa(int(i)) {
			t.Fatalf("after park %d: body %q", i, b)
		}
	}
	if st := c.Stats(); st.H2Connections != 1 || st.Requests != 4 {
		t.Fatalf("stats: h2 %d requests %d", st.H2Connections, st.Requests)
	}
}

func h2cWait(t testing.TB, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestH2CCurl: curl --http2-prior-knowledge over TCP and over a UNIX
// socket is served as HTTP/2.
func TestH2CCurl(t *testing.T) {
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Skip("no curl")
	}
	c := newCore(t, h2cHandler(), func(o *Options) { o.H2C = true })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go c.Serve(ln, nil)
	t.Cleanup(func() { ln.Close(); c.Close() })
	c2 := newCore(t, h2cHandler(), func(o *Options) { o.H2C = true })
	sock := startUnix(t, c2)
	for _, tt := range []struct {
		name string
		args []string
		core *Core
	}{
		{"tcp", []string{"http://" + ln.Addr().String() + "/t"}, c},
		{"unix", []string{"--unix-socket", sock, "http://localhost/t"}, c2},
	} {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"-sS", "--max-time", "5", "--http2-prior-knowledge", "-D", "-", "-d", "abc"}, tt.args...)
			out, err := exec.Command(curl, args...).CombinedOutput()
			if err != nil {
				t.Fatalf("curl: %v\n%s", err, out)
			}
			s := string(out)
			if !strings.HasPrefix(s, "HTTP/2 200") || !strings.Contains(s, "x-proto: HTTP/2.0") || !strings.Contains(s, "x-len: 3") || !strings.HasSuffix(s, "hello /t") {
				t.Fatalf("curl output:\n%s", s)
			}
			h2cWait(t, "the request counted", func() bool { return tt.core.Stats().Requests == 1 })
		})
	}
}

// TestH2SpecH2C runs h2spec over h2c (no -t): of the 145 cases TestH2Spec
// passes over TLS, all pass over cleartext but one that cannot apply to a
// port serving HTTP/1.1 and h2c together. "3.5/2 Sends invalid connection
// preface" sends "INVALID CONNECTION PREFACE\r\n\r\n" and wants the
// connection closed without a byte; over TLS the preface can only be h2's
// (ALPN said so), but on a plain connection anything that is not the
// preface is HTTP/1.1, and this is a malformed HTTP/1.1 request line: its
// 400, then the close. That case must fail exactly that way, and no other.
func TestH2SpecH2C(t *testing.T) {
	if testing.Short() {
		t.Skip("h2spec takes a few seconds")
	}
	ts := startServer(t, h2specHandler(), func(o *Options) {
		o.H2C = true
		o.SocketTimeout = 5 * time.Second
	})
	m, text := runH2Spec(t, ts.addr)
	t.Logf("h2spec over h2c: %s", m[0])
	failures := ""
	if i := strings.Index(text, "Failures:"); i >= 0 {
		failures = text[i:]
	}
	http1 := regexp.MustCompile(`3\.5\. HTTP/2 Connection Preface\s+× 2: Sends invalid connection preface\s+-> The endpoint MUST terminate the TCP connection\.\s+Expected: Connection closed\s+Actual: .*HTTP/1\.1`)
	if m[1] != "145" || m[2] != "144" || m[4] != "1" || !http1.MatchString(failures) {
		t.Fatalf("h2spec over h2c: %s, want 144 of 145 passed and 3.5/2 answered as HTTP/1.1\n%s", m[0], failures)
	}
}
