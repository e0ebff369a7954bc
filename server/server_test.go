package server

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	"tlsedge/router"
)

func plainConfig(t *testing.T, h http.Handler) Config {
	t.Helper()
	c := NewConfig()
	c.SocketPort = 0
	c.TLS.SSLModule = "none"
	c.DataDir = t.TempDir()
	c.Handlers = map[string]http.Handler{"/": h}
	return c
}

func TestStartStopRestart(t *testing.T) {
	var hits atomic.Int64
	s, err := New(plainConfig(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		io.WriteString(w, "ok")
	})))
	if err != nil {
		t.Fatal(err)
	}
	if s.Ready() || s.BindAddr() != nil || s.Base() != "" {
		t.Fatal("a new server claims to be running")
	}
	ctx := context.Background()
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	// Start returned: the socket accepts at once.
	addr := s.BindAddr().String()
	if !s.Ready() || !strings.HasPrefix(s.Base(), "http://127.0.0.1:") {
		t.Fatalf("Ready %v Base %q", s.Ready(), s.Base())
	}
	if body := mustGet(t, "http://"+addr+"/"); body != "ok" {
		t.Fatalf("body %q", body)
	}
	if err := s.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	// Stop returned: the socket is released.
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Fatal("still accepting after Stop")
	}
	if err := s.Wait(ctx); !errors.Is(err, ErrServerClosed) {
		t.Fatalf("Wait after Stop = %v", err)
	}
	if err := s.Stop(ctx); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
	if err := s.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	defer s.Stop(ctx)
	if body := mustGet(t, "http://"+s.BindAddr().String()+"/"); body != "ok" || hits.Load() != 2 {
		t.Fatalf("after Restart: %q, %d hits", body, hits.Load())
	}
}

// Stop waits for a request in flight, within shutdown_timeout.
func TestStopDrainsInFlight(t *testing.T) {
	started := make(chan struct{})
	var handled atomic.Bool
	c := plainConfig(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(started)
		time.Sleep(300 * time.Millisecond)
		io.WriteString(w, "finished")
		handled.Store(true)
	}))
	s, err := New(c)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	got := make(chan string, 1)
	go func() { got <- mustGet(t, "http://"+s.BindAddr().String()+"/") }()
	<-started
	if err := s.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if !handled.Load() {
		t.Fatal("Stop returned before the in-flight request finished")
	}
	// The client reads the answer on its own goroutine, which may still be
	// at it when Stop returns.
	select {
	case body := <-got:
		if body != "finished" {
			t.Fatalf("in-flight request got %q", body)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the in-flight request never got its answer")
	}
}

// A request that outlives shutdown_timeout is cut off, and Stop still returns.
func TestStopHonoursShutdownTimeout(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	started := make(chan struct{})
	c := plainConfig(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(started)
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	c.ShutdownTimeout = 200 * time.Millisecond
	s, _ := New(c)
	ctx := context.Background()
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	go http.Get("http://" + s.BindAddr().String() + "/")
	<-started
	t0 := time.Now()
	s.Stop(ctx)
	if d := time.Since(t0); d > 5*time.Second {
		t.Fatalf("Stop took %v with shutdown_timeout 200ms", d)
	}
}

func TestEngineRunsSeveralServers(t *testing.T) {
	dir := t.TempDir()
	tcp := plainConfig(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "tcp") }))
	unixc := plainConfig(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "unix") }))
	unixc.Name, unixc.SocketFile = "local", filepath.Join(dir, "e.sock")
	a, err := New(tcp)
	if err != nil {
		t.Fatal(err)
	}
	b, err := New(unixc)
	if err != nil {
		t.Fatal(err)
	}
	var e Engine
	e.Subscribe(a)
	e.Subscribe(b)
	e.Subscribe(a) // twice is once
	if len(e.Servers()) != 2 {
		t.Fatalf("%d servers", len(e.Servers()))
	}
	ctx := context.Background()
	if err := e.Start(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if got := mustGet(t, "http://"+a.BindAddr().String()+"/"); got != "tcp" {
		t.Fatal(got)
	}
	uc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return net.Dial("unix", unixc.SocketFile)
	}}}
	resp, err := uc.Get("http://x/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "unix" || b.Base() != unixc.SocketFile {
		t.Fatalf("%q %q", body, b.Base())
	}
	e.Unsubscribe(b)
	if err := e.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if a.Ready() || !b.Ready() {
		t.Fatal("Stop stopped an unsubscribed server or missed a subscribed one")
	}
	b.Stop(ctx)
}

// If one server cannot bind, Engine.Start stops the ones it already bound.
func TestEngineStartRollsBack(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ok := plainConfig(t, http.NotFoundHandler())
	busy := plainConfig(t, http.NotFoundHandler())
	busy.Name, busy.SocketPort = "busy", l.Addr().(*net.TCPAddr).Port
	a, _ := New(ok)
	b, _ := New(busy)
	var e Engine
	e.Subscribe(a)
	e.Subscribe(b)
	err = e.Start(context.Background(), nil)
	if err == nil || !strings.Contains(err.Error(), "address already in use") {
		t.Fatalf("Start = %v", err)
	}
	if a.Ready() || a.BindAddr() != nil {
		t.Fatal("the first server was left running")
	}
}

func TestValidateErrorsNameTheServer(t *testing.T) {
	c := NewConfig()
	c.Name = "api"
	c.SocketPort = -1
	c.Core.ThreadPool = 0
	err := c.Validate()
	for _, want := range []string{"server.api.socket_port:", "server.api.thread_pool: must be >= 1"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %v, want %q", err, want)
		}
	}
}

// An abstract socket has no file to carry a mode, owner or group: setting
// them is refused rather than silently ignored, since any local user can
// connect to an abstract name whatever the mode says.
func TestAbstractSocketRefusesFileAccess(t *testing.T) {
	if NewConfig().SocketFileMode != defaultSocketFileMode {
		t.Fatal("defaultSocketFileMode differs from socket_file_mode's default tag")
	}
	tests := []struct {
		name string
		set  func(c *Config)
		want []string // "" for no error
	}{
		{"default mode", func(c *Config) {}, nil},
		{"mode", func(c *Config) { c.SocketFileMode = 0o600 }, []string{"socket_file_mode: 0600 cannot apply", "peercreds_allow_uid"}},
		{"owner", func(c *Config) { c.SocketFileOwner = "0" }, []string{"socket_file_owner: cannot apply", "any local user may connect"}},
		{"group", func(c *Config) { c.SocketFileGroup = "0" }, []string{"socket_file_group: cannot apply"}},
		{"all", func(c *Config) { c.SocketFileMode, c.SocketFileOwner, c.SocketFileGroup = 0o666, "0", "0" },
			[]string{"socket_file_mode: 0666", "socket_file_owner", "socket_file_group"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := NewConfig()
			c.SocketFile = "@tlsedge-test"
			tt.set(&c)
			err := c.Validate()
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("Validate() = %v", err)
				}
				return
			}
			for _, w := range tt.want {
				if err == nil || !strings.Contains(err.Error(), w) {
					t.Errorf("Validate() = %v, want %q", err, w)
				}
			}
			// The same options on a socket path are fine.
			c.SocketFile = filepath.Join(t.TempDir(), "s.sock")
			c.SocketFileOwner, c.SocketFileGroup = "", ""
			if err := c.Validate(); err != nil {
				t.Errorf("on a socket path: Validate() = %v", err)
			}
		})
	}
}

func mustGet(t *testing.T, url string) string {
	t.Helper()
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		t.Errorf("GET %s: %v", url, err)
		return ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// A reload under steady load swaps the mount table with zero failed
// requests; a change to the sockets, or a broken configuration, is refused
// and the server keeps serving what it had.
func TestReconfigureUnderLoad(t *testing.T) {
	c := plainConfig(t, nil)
	c.Handlers = nil
	c.Mount = router.MustMounts("/=text:one")
	s := startServer(t, c)
	ctx := context.Background()
	url := "http://" + s.BindAddr().String() + "/"
	var failed, seenTwo atomic.Int64
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		client := &http.Client{Timeout: 5 * time.Second}
		for {
			select {
			case <-stop:
				return
			default:
			}
			resp, err := client.Get(url)
			if err != nil {
				failed.Add(1)
				continue
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			switch string(b) {
			case "two":
				seenTwo.Add(1)
			case "one":
			default:
				failed.Add(1)
			}
		}
	}()
	time.Sleep(100 * time.Millisecond)
	next := s.Config()
	next.Mount = router.MustMounts("/=text:two")
	next.Core.MaxRequestBodySize = 1 << 20 // a core option too: a new core, the old one drains
	if err := s.Reconfigure(ctx, next); err != nil {
		t.Fatal(err)
	}
	bad := s.Config()
	bad.Mount = router.MustMounts("/=nothing:x")
	if err := s.Reconfigure(ctx, bad); err == nil {
		t.Fatal("a broken mount was accepted")
	}
	moved := s.Config()
	moved.SocketPort = 1
	if err := s.Reconfigure(ctx, moved); err == nil || !strings.Contains(err.Error(), "socket_port") {
		t.Fatalf("a socket change was accepted: %v", err)
	}
	time.Sleep(200 * time.Millisecond)
	close(stop)
	<-done
	if failed.Load() != 0 || seenTwo.Load() == 0 {
		t.Fatalf("%d failed requests, %d answered by the new configuration", failed.Load(), seenTwo.Load())
	}
	if body := mustGet(t, url); body != "two" {
		t.Fatalf("after the refused reloads: %q", body)
	}
}

// A configuration whose building panics (a bug in turning some option into
// what serves it) is refused like any broken one: the error says so, and the
// server keeps serving what it had. At start the panic is an error too.
func TestReconfigurePanicIsRefused(t *testing.T) {
	c := plainConfig(t, nil)
	c.Handlers = nil
	c.Mount = router.MustMounts("/=text:one")
	s := startServer(t, c)
	ctx := context.Background()
	url := "http://" + s.BindAddr().String() + "/"

	boom := s.Config()
	boom.Mount = router.MustMounts("/=text:two")
	boom.Middleware = func(http.Handler) http.Handler { panic("boom") }
	err := s.Reconfigure(ctx, boom)
	if err == nil || !strings.Contains(err.Error(), "reload refused") || !strings.Contains(err.Error(), "boom") {
		t.Fatalf("Reconfigure = %v, want a refusal naming the panic", err)
	}
	if body := mustGet(t, url); body != "one" {
		t.Fatalf("after the refused reload: %q, want the old configuration", body)
	}
	next := s.Config()
	next.Mount = router.MustMounts("/=text:two")
	if err := s.Reconfigure(ctx, next); err != nil {
		t.Fatalf("a good reload after the refused one: %v", err)
	}
	if body := mustGet(t, url); body != "two" {
		t.Fatalf("after the good reload: %q", body)
	}

	c.Middleware = boom.Middleware
	s2, err := New(c)
	if err != nil {
		t.Fatal(err)
	}
	if err := s2.Start(ctx); err == nil || !strings.Contains(err.Error(), "panicked: boom") {
		s2.Stop(ctx)
		t.Fatalf("Start = %v, want the panic as an error", err)
	}
}
