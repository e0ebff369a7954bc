package httpcore

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// Extended CONNECT (RFC 8441, h2ext.go) against real h2 clients on
// loopback: a Framer where the request is malformed, x/net's Transport
// (which opens a tunnel only on a server advertising
// SETTINGS_ENABLE_CONNECT_PROTOCOL) for the tunnel itself.

// The engine's SETTINGS carry ENABLE_CONNECT_PROTOCOL = 1.
func TestH2ExtConnectSetting(t *testing.T) {
	for _, disabled := range []bool{false, true} {
		c := ownCore(t, echoHandler(), func(o *Options) { o.DisableExtendedConnect = disabled })
		addr, client := startTLS(t, c)
		cfg := client.Transport.(*http.Transport).TLSClientConfig.Clone()
		cfg.NextProtos = []string{"h2"}
		cfg.ServerName = "127.0.0.1"
		tc, err := tls.Dial("tcp", addr, cfg)
		if err != nil {
			t.Fatal(err)
		}
		tc.SetDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(tc, http2.ClientPreface)
		fr := http2.NewFramer(tc, tc)
		fr.WriteSettings()
		for {
			f, err := fr.ReadFrame()
			if err != nil {
				t.Fatalf("no SETTINGS: %v", err)
			}
			if sf, ok := f.(*http2.SettingsFrame); ok && !sf.IsAck() {
				v, sent := sf.Value(http2.SettingEnableConnectProtocol)
				if !disabled && (!sent || v != 1) {
					t.Errorf("SETTINGS_ENABLE_CONNECT_PROTOCOL = %d (sent: %v), want 1", v, sent)
				}
				if disabled && sent {
					t.Errorf("DisableExtendedConnect: SETTINGS_ENABLE_CONNECT_PROTOCOL sent (%d)", v)
				}
				break
			}
		}
		tc.Close()
		// Not offered, an extended CONNECT is malformed (RFC 8441 3), as
		// x/net's server has it by default.
		if disabled {
			got := h2Status(t, addr, client, ":method", "CONNECT", ":protocol", "websocket", ":scheme", "https", ":authority", "127.0.0.1", ":path", "/chat")
			if got != "reset PROTOCOL_ERROR" {
				t.Errorf("DisableExtendedConnect: an extended CONNECT got %s, want reset PROTOCOL_ERROR", got)
			}
		}
	}
}

// Which requests with :protocol (or CONNECT) are extended CONNECTs: one
// with :method CONNECT, :protocol, :scheme, :authority and :path reaches
// the handler (with its protocol in r.Header[":protocol"], as x/net's server
// gives it) after the canonical path checks; :protocol on another method,
// or a CONNECT short of a pseudo-header, is malformed (the stream's
// PROTOCOL_ERROR); a plain CONNECT is 405 as before.
func TestH2ExtConnectRules(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != "CONNECT" || r.Header.Get(":protocol") != "websocket" || r.URL.Path != "/chat" ||
			r.URL.RawQuery != "room=1" || r.Host != "127.0.0.1" || r.RequestURI != "/chat?room=1" {
			t.Errorf("handler got %s %q %q host %q %v", r.Method, r.RequestURI, r.URL, r.Host, r.Header)
			w.WriteHeader(http.StatusTeapot)
			return
		}
		w.WriteHeader(http.StatusOK)
	})
	c := ownCore(t, h, nil)
	addr, client := startTLS(t, c)
	ext := func(drop string, extra ...string) []string {
		var f []string
		for _, kv := range [][2]string{{":method", "CONNECT"}, {":protocol", "websocket"}, {":scheme", "https"}, {":authority", "127.0.0.1"}, {":path", "/chat?room=1"}} {
			if kv[0] != drop {
				f = append(f, kv[0], kv[1])
			}
		}
		return append(f, extra...)
	}
	get := []string{":method", "GET", ":scheme", "https", ":authority", "127.0.0.1", ":path", "/"}
	for _, tc := range []struct {
		name   string
		fields []string
		want   string
	}{
		{"extended CONNECT", ext(""), "200"},
		{"with its fields", ext("", "sec-websocket-version", "13", "sec-websocket-protocol", "chat"), "200"},
		{":protocol on GET", append(get, ":protocol", "websocket"), "reset PROTOCOL_ERROR"},
		{":protocol on POST", []string{":method", "POST", ":protocol", "websocket", ":scheme", "https", ":authority", "127.0.0.1", ":path", "/"}, "reset PROTOCOL_ERROR"},
		{"without :path", ext(":path"), "reset PROTOCOL_ERROR"},
		{"without :scheme", ext(":scheme"), "reset PROTOCOL_ERROR"},
		{"without :authority", ext(":authority", "host", "127.0.0.1"), "reset PROTOCOL_ERROR"},
		{"empty :protocol", []string{":method", "CONNECT", ":protocol", "", ":scheme", "https", ":authority", "127.0.0.1", ":path", "/chat?room=1"}, "reset PROTOCOL_ERROR"},
		{"two :protocol", ext("", ":protocol", "websocket"), "reset PROTOCOL_ERROR"},
		{"plain CONNECT", []string{":method", "CONNECT", ":authority", "127.0.0.1:443"}, "405"},
		// The canonical request's rules hold for its path as for any.
		{"path above the root", []string{":method", "CONNECT", ":protocol", "websocket", ":scheme", "https", ":authority", "127.0.0.1", ":path", "/a/../../x"}, "400"},
		{"asterisk path", []string{":method", "CONNECT", ":protocol", "websocket", ":scheme", "https", ":authority", "127.0.0.1", ":path", "*"}, "400"},
		{"bad authority", []string{":method", "CONNECT", ":protocol", "websocket", ":scheme", "https", ":authority", "a/b", ":path", "/chat"}, "400"},
	} {
		if got := h2Status(t, addr, client, tc.fields...); got != tc.want {
			t.Errorf("%s: got %s, want %s", tc.name, got, tc.want)
		}
	}
}

// A tunnel through a plain net/http Handler, full-duplex: the handler
// answers 200, then echoes what it reads of the body while the client is
// still sending. The body is no upload: more than max_request_body_size
// goes through, and a quiet spell longer than socket_timeout (the body's
// grace on a request) does not end it, while the connection's PING keeps
// the client's liveness checked. The client's END_STREAM ends the
// handler's reads; a client's reset ends its handler as well.
func TestH2ExtConnectFullDuplex(t *testing.T) {
	const quiet = 300 * time.Millisecond
	handlerDone := make(chan error, 4)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get(":protocol") != "websocket" {
			w.WriteHeader(http.StatusTeapot)
			return
		}
		rc := http.NewResponseController(w)
		w.Header().Set("Sec-WebSocket-Protocol", "echo")
		w.WriteHeader(http.StatusOK)
		rc.Flush()
		buf := make([]byte, 4096)
		for {
			n, err := r.Body.Read(buf)
			if n > 0 {
				if _, werr := w.Write(append([]byte("echo:"), buf[:n]...)); werr != nil {
					handlerDone <- werr
					return
				}
				rc.Flush()
			}
			if err != nil {
				handlerDone <- err
				return
			}
		}
	})
	c := ownCore(t, h, func(o *Options) {
		o.MaxRequestBodySize = 1 << 10
		o.SocketTimeout = quiet
		o.MinRequestBodyRate = 64 << 10
	})
	addr, client := startTLS(t, c)
	tr := h2Transport(t, client)

	open := func(t *testing.T) (*io.PipeWriter, *http.Response, func(string) string) {
		pr, pw := io.Pipe()
		req, _ := http.NewRequest("CONNECT", "https://"+addr+"/tunnel", pr)
		req.Header.Set(":protocol", "websocket")
		resp, err := tr.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != 200 || resp.Header.Get("Sec-WebSocket-Protocol") != "echo" {
			t.Fatalf("tunnel answered %d %v", resp.StatusCode, resp.Header)
		}
		roundTrip := func(msg string) string {
			if _, err := io.WriteString(pw, msg); err != nil {
				t.Fatalf("send: %v", err)
			}
			want := "echo:" + msg
			got := make([]byte, 0, len(want))
			buf := make([]byte, len(want))
			for len(got) < len(want) {
				n, err := resp.Body.Read(buf[:len(want)-len(got)])
				got = append(got, buf[:n]...)
				if err != nil {
					break
				}
			}
			return string(got)
		}
		return pw, resp, roundTrip
	}

	t.Run("echo", func(t *testing.T) {
		pw, resp, roundTrip := open(t)
		defer resp.Body.Close()
		total := 0
		for i := range 8 {
			msg := strings.Repeat(string(rune('a'+i)), 1000)
			if got := roundTrip(msg); got != "echo:"+msg {
				t.Fatalf("message %d: got %q", i, got)
			}
			total += len(msg)
		}
		time.Sleep(3 * quiet) // quieter than socket_timeout and the body's grace
		if got := roundTrip("after a quiet spell"); got != "echo:after a quiet spell" {
			t.Fatalf("after a quiet spell: got %q", got)
		}
		pw.Close() // END_STREAM
		if rest, err := io.ReadAll(resp.Body); err != nil || len(rest) != 0 {
			t.Fatalf("after END_STREAM: %q, %v; want the stream's clean end", rest, err)
		}
		select {
		case err := <-handlerDone:
			if err != io.EOF {
				t.Errorf("handler's read ended with %v, want io.EOF", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("handler still running after END_STREAM")
		}
		t.Logf("%d bytes each way through a tunnel with max_request_body_size 1 KiB", total)
	})

	t.Run("client reset", func(t *testing.T) {
		pw, resp, roundTrip := open(t)
		if got := roundTrip("x"); got != "echo:x" {
			t.Fatalf("got %q", got)
		}
		resp.Body.Close() // RST_STREAM CANCEL
		pw.Close()
		select {
		case err := <-handlerDone:
			if err == nil || errors.Is(err, io.EOF) {
				t.Errorf("handler's read ended with %v, want an error", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("handler still running after the client's reset")
		}
		if !within(5*time.Second, func() bool { return busyWorkers(c) == 0 }) {
			t.Errorf("%d workers still busy", busyWorkers(c))
		}
	})

	// An ordinary request on the same server still has its body bounded.
	t.Run("requests keep their limit", func(t *testing.T) {
		req, _ := http.NewRequest("POST", "https://"+addr+"/", bytes.NewReader(make([]byte, 4<<10)))
		resp, err := tr.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestEntityTooLarge {
			t.Errorf("4 KiB POST: %d, want 413", resp.StatusCode)
		}
	})
}

// A handler that ends its tunnel while a goroutine of its own still reads
// the client's half (a full-duplex handler's usual shape): its response
// ends, the request's rest is refused (RST_STREAM NO_ERROR), and the
// blocked read returns an error at once rather than waiting forever for
// DATA the stream will never take, as x/net's server ends it.
func TestH2ExtConnectReaderWokenAtEnd(t *testing.T) {
	readEnded := make(chan error, 1)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusOK)
		http.NewResponseController(w).Flush()
		go func() {
			_, err := io.Copy(io.Discard, r.Body)
			readEnded <- err
		}()
		time.Sleep(50 * time.Millisecond) // the read is blocked by now
		io.WriteString(w, "bye")
	})
	c := ownCore(t, h, nil)
	addr, client := startTLS(t, c)
	tr := h2Transport(t, client)
	pr, pw := io.Pipe()
	defer pw.Close()
	req, _ := http.NewRequest("CONNECT", "https://"+addr+"/tunnel", pr)
	req.Header.Set(":protocol", "websocket")
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(resp.Body)
	if string(b) != "bye" || err != nil {
		t.Fatalf("got %q, %v", b, err)
	}
	select {
	case err := <-readEnded:
		if err == nil {
			t.Error("the read ended without an error; the client never ended its side")
		}
	case <-time.After(3 * time.Second):
		t.Fatal("the handler's read still blocked after its stream ended")
	}
}

// A 2xx to an extended CONNECT carries no Content-Length (RFC 9110 9.3.6
// forbids it: the tunnel's bytes are no representation), nor a sniffed
// Content-Type, whether the handler returns without a byte, writes a few
// and returns, or sets a Content-Length itself; a refusal keeps its own.
func TestH2ExtConnectNoContentLength(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/empty":
			w.WriteHeader(http.StatusOK)
		case "/bytes":
			io.WriteString(w, "<html>hello")
		case "/declared":
			w.Header().Set("Content-Length", "5")
			io.WriteString(w, "hello")
		default:
			http.Error(w, "no such tunnel", http.StatusNotFound)
		}
	})
	c := ownCore(t, h, nil)
	addr, client := startTLS(t, c)
	tr := h2Transport(t, client)
	for _, path := range []string{"/empty", "/bytes", "/declared", "/refused"} {
		pr, pw := io.Pipe()
		req, _ := http.NewRequest("CONNECT", "https://"+addr+path, pr)
		req.Header.Set(":protocol", "websocket")
		resp, err := tr.RoundTrip(req)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		pw.Close()
		cl, ct := resp.Header.Get("Content-Length"), resp.Header.Get("Content-Type")
		if path == "/refused" {
			if resp.StatusCode != 404 || cl == "" {
				t.Errorf("%s: %d Content-Length %q, want 404 with its length", path, resp.StatusCode, cl)
			}
			continue
		}
		if resp.StatusCode != 200 || cl != "" || ct != "" {
			t.Errorf("%s: %d Content-Length %q Content-Type %q, want 200 with neither", path, resp.StatusCode, cl, ct)
		}
	}
}
