package control_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"tlsedge/control"
	"tlsedge/peercred/peercredtest"
)

func TestMain(m *testing.M) {
	peercredtest.Main(m, map[string]func([]string) int{
		// ctl runs `tlsedge ctl args[1:]` against socket args[0].
		"ctl": func(args []string) int {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			if err := control.Ctl(ctx, args[0], args[1:], os.Stdout); err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
			return 0
		},
	})
}

type fakeServer struct {
	reloads  atomic.Int32
	stops    atomic.Int32
	stopped  chan struct{}
	reloadFn func(context.Context) error
}

type testConfig struct {
	SSLCertificate string            `json:"ssl_certificate"`
	SSLPrivateKey  string            `json:"ssl_private_key"`
	ACME           map[string]string `json:"acme"`
	Upstream       string            `json:"upstream"`
	Ask            string            `json:"acme_on_demand_ask"`
}

// start runs a control server on addr with callbacks counting calls.
func start(t *testing.T, opts control.Options) (*fakeServer, *control.Server) {
	t.Helper()
	f := &fakeServer{stopped: make(chan struct{}, 1)}
	srv, err := control.New(control.Config{
		Options: opts,
		Logger:  slog.New(slog.NewTextHandler(testWriter{t}, nil)),
		Callbacks: control.Callbacks{
			Stats: func() any { return map[string]int{"requests": 42} },
			Reload: func(ctx context.Context) error {
				f.reloads.Add(1)
				if f.reloadFn != nil {
					return f.reloadFn(ctx)
				}
				return nil
			},
			Stop: func() { f.stops.Add(1); f.stopped <- struct{}{} },
			Config: func() any {
				return testConfig{
					SSLCertificate: "/etc/tlsedge/cert.pem", SSLPrivateKey: "/etc/tlsedge/key.pem",
					ACME:     map[string]string{"eab_hmac_key": "c2VjcmV0", "email": "ops@example.com"},
					Upstream: "http://svc:hunter2@backend:8080/",
					Ask:      "https://ask.example/check?token=t0ps3cret&v=1",
				}
			},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := srv.Listen()
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		if err := <-done; !errors.Is(err, control.ErrServerClosed) {
			t.Errorf("Serve returned %v, want ErrServerClosed", err)
		}
	})
	return f, srv
}

func socketAddrs(t *testing.T) map[string]string {
	return map[string]string{
		"path":     filepath.Join(peercredtest.Dir(t), "ctl.sock"),
		"abstract": peercredtest.AbstractName(t),
	}
}

// TestCtlAsRoot drives every command through Ctl, as the CLI would.
func TestCtlAsRoot(t *testing.T) {
	for kind, addr := range socketAddrs(t) {
		t.Run(kind, func(t *testing.T) {
			f, _ := start(t, control.Options{ControlSocket: addr})
			ctx := context.Background()
			tests := []struct {
				cmd     string
				want    []string
				absent  []string
				wantErr string
			}{
				{"stats", []string{`"requests": 42`}, nil, ""},
				{"config", []string{`"ssl_private_key": "REDACTED"`, `"eab_hmac_key": "REDACTED"`, `"email": "ops@example.com"`,
					`"ssl_certificate": "/etc/tlsedge/cert.pem"`, `svc:REDACTED@backend`, `check?token=REDACTED`},
					[]string{"hunter2", "c2VjcmV0", "key.pem", "t0ps3cret"}, ""},
				{"reload", []string{`"status": "reloaded"`}, nil, ""},
				{"bogus", nil, nil, "unknown command"},
			}
			for _, tt := range tests {
				t.Run(tt.cmd, func(t *testing.T) {
					var out strings.Builder
					err := control.Ctl(ctx, addr, []string{tt.cmd}, &out)
					if tt.wantErr != "" {
						if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !errors.Is(err, control.ErrUsage) {
							t.Fatalf("Ctl err = %v, want %q wrapping ErrUsage", err, tt.wantErr)
						}
						return
					}
					if err != nil {
						t.Fatal(err)
					}
					for _, w := range tt.want {
						if !strings.Contains(out.String(), w) {
							t.Errorf("output lacks %s:\n%s", w, out.String())
						}
					}
					for _, a := range tt.absent {
						if strings.Contains(out.String(), a) {
							t.Errorf("output leaks %s:\n%s", a, out.String())
						}
					}
				})
			}
			if f.reloads.Load() != 1 {
				t.Errorf("reloads = %d, want 1", f.reloads.Load())
			}

			f.reloadFn = func(context.Context) error { return errors.New("bad certificate /etc/x.pem") }
			err := control.Ctl(ctx, addr, []string{"reload"}, io.Discard)
			var apiErr *control.APIError
			if !errors.As(err, &apiErr) || apiErr.Status != 500 || !strings.Contains(apiErr.Message, "bad certificate") {
				t.Errorf("failed reload: %v", err)
			}

			var out strings.Builder
			if err := control.Ctl(ctx, addr, []string{"stop"}, &out); err != nil {
				t.Fatal(err)
			}
			select {
			case <-f.stopped:
			case <-time.After(5 * time.Second):
				t.Fatal("Stop callback not called")
			}
			if !strings.Contains(out.String(), `"stopping"`) {
				t.Errorf("stop output %q", out.String())
			}
		})
	}
}

// TestProtocolLimits checks methods, unknown paths and the body limit.
func TestProtocolLimits(t *testing.T) {
	addr := filepath.Join(peercredtest.Dir(t), "ctl.sock")
	f, _ := start(t, control.Options{ControlSocket: addr})
	client := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", addr)
	}}}
	tests := []struct {
		method, path string
		body         string
		want         int
	}{
		{"GET", "/reload", "", http.StatusMethodNotAllowed},
		{"POST", "/stats", "", http.StatusMethodNotAllowed},
		{"GET", "/nope", "", http.StatusNotFound},
		{"POST", "/reload", strings.Repeat("x", 5000), http.StatusRequestEntityTooLarge},
		{"GET", "/stats", "", http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.method+tt.path, func(t *testing.T) {
			req, _ := http.NewRequest(tt.method, "http://c"+tt.path, strings.NewReader(tt.body))
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tt.want {
				t.Errorf("status %d, want %d", resp.StatusCode, tt.want)
			}
		})
	}
	if f.reloads.Load() != 0 {
		t.Error("an oversized request reached Reload")
	}
}

// TestPeerAccess runs `tlsedge ctl` as nobody against servers with various
// allow-lists: refused unless nobody's uid or gid is listed.
func TestPeerAccess(t *testing.T) {
	peercredtest.RequireRoot(t)
	tests := []struct {
		name    string
		kind    string
		uids    []string
		gids    []string
		mode    os.FileMode
		allowed bool
		errHint string
	}{
		{"root only, file mode refuses", "path", nil, nil, 0o600, false, "no permission"},
		{"root only, abstract, peer check refuses", "abstract", nil, nil, 0, false, "not in control_allow_uid"},
		{"other uid listed", "path", []string{"1000"}, nil, 0o666, false, "not in control_allow_uid"},
		{"other gid listed", "abstract", nil, []string{"0"}, 0, false, "not in control_allow_uid"},
		{"uid listed", "path", []string{"1000", "65534"}, nil, 0o666, true, ""},
		{"gid listed", "abstract", nil, []string{"65534"}, 0, true, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr := peercredtest.AbstractName(t)
			if tt.kind == "path" {
				addr = filepath.Join(peercredtest.Dir(t), "ctl.sock")
			}
			f, _ := start(t, control.Options{ControlSocket: addr, ControlAllowUID: tt.uids, ControlAllowGID: tt.gids})
			if tt.kind == "path" {
				fi, err := os.Stat(addr)
				if err != nil {
					t.Fatal(err)
				}
				if fi.Mode().Perm() != tt.mode {
					t.Errorf("socket mode %v, want %v", fi.Mode().Perm(), tt.mode)
				}
			}
			for _, cmd := range []string{"stats", "reload"} {
				c := peercredtest.SelfCommand(t, peercredtest.Nobody, peercredtest.Nobody, "ctl", addr, cmd)
				var stdout, stderr strings.Builder
				c.Stdout, c.Stderr = &stdout, &stderr
				err := c.Run()
				if tt.allowed {
					if err != nil {
						t.Fatalf("ctl %s as nobody: %v: %s", cmd, err, stderr.String())
					}
					if !strings.Contains(stdout.String(), "{") {
						t.Errorf("ctl %s output %q", cmd, stdout.String())
					}
					continue
				}
				if err == nil {
					t.Fatalf("ctl %s as nobody succeeded: %s", cmd, stdout.String())
				}
				if !strings.Contains(stderr.String(), tt.errHint) {
					t.Errorf("ctl %s error %q lacks %q", cmd, stderr.String(), tt.errHint)
				}
			}
			wantReloads := int32(0)
			if tt.allowed {
				wantReloads = 1
			}
			if got := f.reloads.Load(); got != wantReloads {
				t.Errorf("reloads = %d, want %d", got, wantReloads)
			}
		})
	}
}

func TestListenStaleSocket(t *testing.T) {
	dir := peercredtest.Dir(t)
	tests := []struct {
		name    string
		prepare func(t *testing.T, path string)
		wantErr string
	}{
		{"fresh", func(*testing.T, string) {}, ""},
		{"stale socket removed", func(t *testing.T, path string) {
			ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
			if err != nil {
				t.Fatal(err)
			}
			ln.SetUnlinkOnClose(false)
			ln.Close()
		}, ""},
		{"live socket kept", func(t *testing.T, path string) {
			ln, err := net.Listen("unix", path)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { ln.Close() })
		}, "socket in use"},
		{"regular file kept", func(t *testing.T, path string) {
			os.WriteFile(path, []byte("precious"), 0o644)
		}, "not a socket"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(dir, fmt.Sprintf("s%d.sock", i))
			tt.prepare(t, path)
			srv, err := control.New(control.Config{Options: control.Options{ControlSocket: path}})
			if err != nil {
				t.Fatal(err)
			}
			ln, err := srv.Listen()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				ln.Close()
				return
			}
			if err == nil {
				ln.Close()
				t.Fatal("Listen succeeded")
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Listen err = %v, want %q", err, tt.wantErr)
			}
		})
	}
}

func TestOptionsValidate(t *testing.T) {
	tests := []struct {
		name string
		opts control.Options
		want []string
	}{
		{"off", control.Options{}, nil},
		{"on", control.Options{ControlSocket: "/run/tlsedge.ctl", ControlAllowUID: []string{"1000"}, ControlAllowGID: []string{" 27"}}, nil},
		{"empty abstract name", control.Options{ControlSocket: "@"}, []string{"needs a name after @"}},
		{"lists without socket", control.Options{ControlAllowUID: []string{"1"}}, []string{"control_socket is empty"}},
		{"bad values", control.Options{ControlSocket: "/" + strings.Repeat("x", 120), ControlAllowUID: []string{"root"}, ControlAllowGID: []string{"-4"}},
			[]string{"control_socket: ", `control_allow_uid: "root"`, `control_allow_gid: "-4"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.opts.Validate()
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil {
				t.Fatal("want error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q: %v", w, err)
				}
			}
		})
	}
}

func TestRedact(t *testing.T) {
	in := map[string]any{
		"password": "p", "db": map[string]any{"Token": "t", "tokens": []string{"a"}, "host": "h"},
		"ssl-private-key": "/k", "api_key_file": "", "list": []any{map[string]any{"secret": 1}},
		"url": "https://u:pw@h/", "plain_url": "https://u@h/", "n": 5,
	}
	got, err := control.Redact(in)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(got)
	want := `{"api_key_file":"","db":{"Token":"REDACTED","host":"h","tokens":"REDACTED"},"list":[{"secret":"REDACTED"}],"n":5,"password":"REDACTED","plain_url":"https://u@h/","ssl-private-key":"REDACTED","url":"https://u:REDACTED@h/"}`
	if string(b) != want {
		t.Errorf("Redact =\n%s\nwant\n%s", b, want)
	}
}

// URL-valued options carry credentials in the query as often as in the
// userinfo (acme_on_demand_ask = "https://ask/check?token=..."): every query
// value, the fragment and any password are masked; keys, host and path stay.
func TestRedactURLs(t *testing.T) {
	for in, want := range map[string]string{
		"https://ask.example/check?token=s3cr3t":                    "https://ask.example/check?token=REDACTED",
		"https://ask.example/check?domain=x&key=s3cr3t":             "https://ask.example/check?domain=REDACTED&key=REDACTED",
		"https://ask.example/check?s3cr3t":                          "https://ask.example/check?REDACTED",
		"https://ask.example/check?a=1&&b=":                         "https://ask.example/check?a=REDACTED&&b=REDACTED",
		"https://u:pw@ask.example/check?token=s3cr3t#frag":          "https://u:REDACTED@ask.example/check?token=REDACTED#REDACTED",
		"http://svc:s3cr3t@backend:8080/":                           "http://svc:REDACTED@backend:8080/",
		"https://ask.example/check":                                 "https://ask.example/check",
		"https://u@h/":                                              "https://u@h/",
		"/api=http://127.0.0.1:9000/x?key=s3cr3t":                   "/api=http://127.0.0.1:9000/x?key=REDACTED",
		"http://bad host/?token=s3cr3t":                             "REDACTED",
		"not a url ?token=s3cr3t":                                   "not a url ?token=s3cr3t", // no "://": not a URL option
		"https://ask.example/check?token=" + url.QueryEscape("a&b"): "https://ask.example/check?token=REDACTED",
	} {
		got, err := control.Redact(map[string]any{"acme_on_demand_ask": in})
		if err != nil {
			t.Fatal(err)
		}
		if g := got.(map[string]any)["acme_on_demand_ask"]; g != want {
			t.Errorf("Redact(%q) = %q, want %q", in, g, want)
		}
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}
