package apps

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"tlsedge/conninfo"
	"tlsedge/router"
	"tlsedge/server/httpcore"
)

// serveCore serves h through the request core and its dispatcher, the way
// the server does, rather than net/http's server: this checks the contracts
// the handlers rely on (prefix stripping, hijack for upgrades, aborted
// responses, typed body errors) against the real engine.
func serveCore(t testing.TB, mounts map[string]http.Handler, mod func(*httpcore.Options)) (string, *httpcore.Core) {
	t.Helper()
	d := router.NewDispatcher()
	for p, h := range mounts {
		if err := d.Mount(p, h); err != nil {
			t.Fatal(err)
		}
	}
	o := httpcore.DefaultOptions()
	o.Handler = d
	o.Statistics = true
	if mod != nil {
		mod(&o)
	}
	c, err := httpcore.New(o)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			c.CountAccept()
			go c.ServeConn(nc, &conninfo.Info{Transport: "tcp", LocalAddr: nc.LocalAddr(), RemoteAddr: nc.RemoteAddr()})
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		c.Close()
	})
	return "http://" + ln.Addr().String(), c
}

func TestUnderCore(t *testing.T) {
	root := staticTree(t)
	up := serveTCP(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/die":
			w.Header().Set("Content-Length", "1000000")
			w.Write(make([]byte, 1000))
			http.NewResponseController(w).Flush()
			if c, _, err := http.NewResponseController(w).Hijack(); err == nil {
				c.Close()
			}
		case "/upload":
			n, err := io.Copy(io.Discard, r.Body)
			if err != nil {
				return
			}
			fmt.Fprint(w, n)
		default:
			json.NewEncoder(w).Encode(map[string]any{"uri": r.RequestURI, "xff": r.Header.Get("X-Forwarded-For"), "prefix": r.Header.Get("X-Forwarded-Prefix")})
		}
	}))
	ws := serveTCP(t, wsEchoServer())
	var statsFn func() httpcore.Stats
	m := NewMetrics(Sources{Core: func() httpcore.Stats { return statsFn() }})
	front, core := serveCore(t, map[string]http.Handler{
		"/api":    mustNew(t, up, Env{}),
		"/ws":     mustNew(t, ws, Env{}),
		"/static": mustNew(t, "dir:"+root, Env{}),
		"/status": mustNew(t, "status:", Env{Metrics: m}),
	}, func(o *httpcore.Options) { o.MaxRequestBodySize = 1 << 20 })
	statsFn = core.Stats
	addr := strings.TrimPrefix(front, "http://")
	client := &http.Client{Timeout: 10 * time.Second}

	t.Run("proxy strips the prefix", func(t *testing.T) {
		req, _ := http.NewRequest("GET", front+"/api/x?y=1", nil)
		req.Header.Set("X-Forwarded-Prefix", "/forged")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var got map[string]string
		json.NewDecoder(resp.Body).Decode(&got)
		resp.Body.Close()
		if got["uri"] != "/x?y=1" || got["xff"] != "127.0.0.1" || got["prefix"] != "/api" {
			t.Errorf("upstream saw %v", got)
		}
	})
	t.Run("websocket", func(t *testing.T) { wsEcho(t, front, "/ws/chat") })
	t.Run("upstream dies", func(t *testing.T) {
		resp, err := client.Get(front + "/api/die")
		if err != nil {
			t.Fatal(err)
		}
		n, err := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err == nil || n >= 1000000 {
			t.Errorf("read %d bytes, err %v: want a truncated body", n, err)
		}
	})
	t.Run("body over the core's limit is 413", func(t *testing.T) {
		// Chunked, so the core only finds out while the proxy streams it.
		resp, err := client.Post(front+"/api/upload", "application/octet-stream", io.LimitReader(pattern{}, 2<<20))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestEntityTooLarge {
			t.Errorf("status %d %q, want 413", resp.StatusCode, b)
		}
	})
	t.Run("upload within the limit", func(t *testing.T) {
		resp, err := client.Post(front+"/api/upload", "application/octet-stream", io.LimitReader(pattern{}, 512<<10))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != strconv.Itoa(512<<10) {
			t.Errorf("upstream read %q", b)
		}
	})
	t.Run("static", func(t *testing.T) {
		status, h, body := rawGet(t, addr, "/static/hello.txt", "Range: bytes=6-10")
		if status != 206 || body != "world" {
			t.Errorf("%d %q %v", status, body, h)
		}
		status, h, _ = rawGet(t, addr, "/static")
		if status != 301 || h.Get("Location") != "static/" {
			t.Errorf("/static: %d %v", status, h)
		}
		status, _, body = rawGet(t, addr, "/static/%2e%2e/%2e%2e/etc/passwd")
		if status == 200 || strings.Contains(body, "root:") {
			t.Errorf("traversal: %d", status)
		}
	})
	t.Run("status and metrics", func(t *testing.T) {
		req, _ := http.NewRequest("GET", front+"/status", nil)
		req.Header.Set("Accept", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var s Snapshot
		json.NewDecoder(resp.Body).Decode(&s)
		resp.Body.Close()
		if s.Core == nil || !s.Core.Enabled || s.Core.Requests == 0 {
			t.Errorf("core figures missing: %+v", s.Core)
		}
		resp, err = client.Get(front + "/status/metrics")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !bytes.Contains(b, []byte("tlsedge_core_requests_total")) || !bytes.Contains(b, []byte(`tlsedge_workers{server="main",state="idle"}`)) {
			t.Errorf("metrics lack core figures:\n%s", b)
		}
	})
}
