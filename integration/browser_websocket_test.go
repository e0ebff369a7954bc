package integration

import (
	"bufio"
	"context"
	"crypto/sha1"
	"encoding/base64"
	be "encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"tlsedge/internal/testenv"
)

// TestBrowserWebSocket: a real browser opens a WebSocket to a page the edge
// serves, through the proxy, to an HTTP/1.1 WebSocket upstream, and
// exchanges a message each way. On h2 Chromium uses the extended CONNECT
// the edge offers (RFC 8441), which the proxy turns into the upstream's
// Upgrade; with h2 switched off in the browser it is the HTTP/1.1 Upgrade,
// spliced. The access log tells which way each went.
func TestBrowserWebSocket(t *testing.T) {
	bin := testenv.RequireTool(t, "chromium", "chromium")
	up := startWSEchoUpstream(t)

	www := t.TempDir()
	writeFile(t, filepath.Join(www, "index.html"), `<!doctype html><html><body><div id="out">pending</div><script>
const out = document.getElementById("out");
const got = [];
const ws = new WebSocket("wss://" + location.host + "/ws/chat", ["chat"]);
// Headless Chromium's virtual time stands still only while a fetch is in
// flight, not for WebSocket messages: /hold answers once the upstream has
// sent its echo, so the page is not judged before the echo is in.
ws.onopen = () => { ws.send("ping"); fetch("/hold"); };
ws.onmessage = (e) => { got.push(e.data); out.textContent = "got:" + got.join("|") + " protocol:" + ws.protocol; };
ws.onerror = () => { out.textContent = "error"; };
</script></body></html>`)
	accessLog := filepath.Join(t.TempDir(), "access.log")
	p := start(t, "--socket-port", "0", "--mount", "/=dir:"+www, "--mount", "/ws=http://"+up, "--mount", "/hold=http://"+up,
		"--access-log", accessLog)
	base := p.base("main")

	for _, tc := range []struct {
		name  string
		flags []string
		line  string // the access log's request line for the WebSocket
	}{
		{"h2", nil, `"CONNECT /ws/chat HTTP/2.0" 200 `},
		{"http/1.1", []string{"--disable-http2"}, `"GET /ws/chat HTTP/1.1" 101 `},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			defer cancel()
			args := append([]string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
				"--disable-background-networking", "--disable-component-update", "--disable-sync",
				"--ignore-certificate-errors", "--user-data-dir=" + t.TempDir(), "--virtual-time-budget=5000",
				"--dump-dom"}, tc.flags...)
			out, err := exec.CommandContext(ctx, bin, append(args, base+"/")...).Output()
			if err != nil {
				t.Fatalf("chromium: %v", err)
			}
			if want := `<div id="out">got:hello|echo:ping protocol:chat</div>`; !strings.Contains(string(out), want) {
				t.Fatalf("page shows %q, want %s", between(string(out), `<div id="out">`, `</div>`), want)
			}
			// The edge logs the WebSocket once it ends (Chromium has exited).
			deadline := time.Now().Add(10 * time.Second)
			for {
				b, _ := os.ReadFile(accessLog)
				if strings.Contains(string(b), tc.line) {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("access log has no %s:\n%s", tc.line, b)
				}
				time.Sleep(50 * time.Millisecond)
			}
		})
	}
}

func between(s, a, b string) string {
	_, rest, ok := strings.Cut(s, a)
	if !ok {
		return s
	}
	v, _, _ := strings.Cut(rest, b)
	return v
}

// startWSEchoUpstream runs a minimal RFC 6455 server: it answers the
// Upgrade (checking the key's Accept is computed from what it got, and
// picking the "chat" subprotocol), sends "hello", then answers every text
// message m with "echo:m" until the client closes. A plain request (no
// Upgrade) is answered once an echo has been sent, or after 10s.
func startWSEchoUpstream(t *testing.T) string {
	t.Helper()
	echoed := make(chan struct{}, 16)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key := r.Header.Get("Sec-WebSocket-Key")
		if r.Header.Get("Upgrade") == "" {
			select {
			case <-echoed:
			case <-time.After(10 * time.Second):
			}
			io.WriteString(w, "held")
			return
		}
		if r.Method != "GET" || !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") || key == "" {
			http.Error(w, "not a WebSocket handshake", http.StatusBadRequest)
			return
		}
		nc, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer nc.Close()
		sum := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
		fmt.Fprintf(brw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\nSec-WebSocket-Protocol: chat\r\n\r\n",
			base64.StdEncoding.EncodeToString(sum[:]))
		writeWSText(brw.Writer, "hello")
		brw.Flush()
		for {
			op, msg, err := readWSFrame(brw.Reader)
			if err != nil || op == 8 { // close
				return
			}
			if op == 1 {
				writeWSText(brw.Writer, "echo:"+string(msg))
				brw.Flush()
				echoed <- struct{}{}
			}
		}
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

func writeWSText(w *bufio.Writer, s string) {
	w.WriteByte(0x81)
	w.WriteByte(byte(len(s))) // short messages only
	w.WriteString(s)
}

// readWSFrame reads one client frame (masked, as RFC 6455 requires).
func readWSFrame(r *bufio.Reader) (op byte, payload []byte, err error) {
	var h [2]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return 0, nil, err
	}
	n := uint64(h[1] & 0x7f)
	switch n {
	case 126:
		var b [2]byte
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return 0, nil, err
		}
		n = uint64(be.BigEndian.Uint16(b[:]))
	case 127:
		var b [8]byte
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return 0, nil, err
		}
		n = be.BigEndian.Uint64(b[:])
	}
	if n > 1<<20 || h[1]&0x80 == 0 {
		return 0, nil, fmt.Errorf("frame of %d bytes, masked %v", n, h[1]&0x80 != 0)
	}
	var mask [4]byte
	if _, err := io.ReadFull(r, mask[:]); err != nil {
		return 0, nil, err
	}
	payload = make([]byte, n)
	if _, err := io.ReadFull(r, payload); err != nil {
		return 0, nil, err
	}
	for i := range payload {
		payload[i] ^= mask[i%4]
	}
	return h[0] & 0x0f, payload, nil
}
