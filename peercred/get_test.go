package peercred_test

import (
	"crypto/tls"
	"errors"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"tlsedge/peercred"
	"tlsedge/peercred/peercredtest"
)

func TestMain(m *testing.M) {
	peercredtest.Main(m, map[string]func([]string) int{
		// dial connects to args[0] and waits for the server to close.
		"dial": func(args []string) int {
			c, err := net.Dial("unix", args[0])
			if err != nil {
				os.Stderr.WriteString(err.Error() + "\n")
				return 1
			}
			defer c.Close()
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			c.Read(make([]byte, 1))
			return 0
		},
	})
}

// acceptOne listens on addr and returns the listener and a channel that
// yields the peer credentials of the first connection, read at accept.
func acceptOne(t *testing.T, addr string) (net.Listener, <-chan result) {
	t.Helper()
	ln, err := net.Listen("unix", addr)
	if err != nil {
		t.Fatalf("listen %s: %v", addr, err)
	}
	t.Cleanup(func() { ln.Close() })
	if addr[0] != '@' {
		if err := os.Chmod(addr, 0o666); err != nil {
			t.Fatal(err)
		}
	}
	ch := make(chan result, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			ch <- result{err: err}
			return
		}
		defer c.Close()
		creds, err := peercred.Get(c)
		ch <- result{creds, err}
	}()
	return ln, ch
}

type result struct {
	creds *peercred.Creds
	err   error
}

func wait(t *testing.T, ch <-chan result) *peercred.Creds {
	t.Helper()
	select {
	case r := <-ch:
		if r.err != nil {
			t.Fatalf("Get: %v", r.err)
		}
		return r.creds
	case <-time.After(15 * time.Second):
		t.Fatal("no connection accepted")
		return nil
	}
}

func addrs(t *testing.T) map[string]string {
	m := map[string]string{"path": filepath.Join(peercredtest.Dir(t), "s.sock")}
	if runtime.GOOS == "linux" {
		m["abstract"] = peercredtest.AbstractName(t)
	}
	return m
}

// TestGetSelf connects from this process and expects our own pid, uid, gid.
func TestGetSelf(t *testing.T) {
	for name, addr := range addrs(t) {
		t.Run(name, func(t *testing.T) {
			_, ch := acceptOne(t, addr)
			c, err := net.Dial("unix", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			got := wait(t, ch)
			want := peercred.Creds{PID: int32(os.Getpid()), UID: uint32(os.Geteuid()), GID: uint32(os.Getegid())}
			if runtime.GOOS == "freebsd" {
				want.PID = 0
			}
			if got.PID != want.PID || got.UID != want.UID || got.GID != want.GID {
				t.Errorf("Get = %v, want %v", got, &want)
			}
		})
	}
}

// TestGetOtherUser runs a client as nobody and checks the kernel-reported
// credentials match that child, then that names resolve.
func TestGetOtherUser(t *testing.T) {
	peercredtest.RequireRoot(t)
	for name, addr := range addrs(t) {
		t.Run(name, func(t *testing.T) {
			ln, ch := acceptOne(t, addr)
			cmd := peercredtest.SelfCommand(t, peercredtest.Nobody, peercredtest.Nobody, "dial", addr)
			out, err := os.CreateTemp(t.TempDir(), "stderr")
			if err != nil {
				t.Fatal(err)
			}
			cmd.Stderr = out
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			got := wait(t, ch)
			ln.Close()
			if err := cmd.Wait(); err != nil {
				b, _ := os.ReadFile(out.Name())
				t.Fatalf("client: %v: %s", err, b)
			}
			if got.PID != int32(cmd.Process.Pid) || got.UID != peercredtest.Nobody || got.GID != peercredtest.Nobody {
				t.Errorf("Get = %v, want pid=%d uid=gid=%d", got, cmd.Process.Pid, peercredtest.Nobody)
			}
			peercred.NewResolver(peercred.ResolverConfig{}).Resolve(got)
			if _, err := os.Stat("/etc/debian_version"); err == nil {
				if got.User != "nobody" || got.Group != "nogroup" {
					t.Errorf("resolved %v, want nobody/nogroup", got)
				}
			}
			t.Logf("peer: %v groups=%v", got, got.Groups)
		})
	}
}

// wrapped hides a connection behind a NetConn method, like tlsedge's own
// counting wrappers do.
type wrapped struct{ net.Conn }

func (w wrapped) NetConn() net.Conn { return w.Conn }

type opaque struct{ net.Conn }

func TestGetTransports(t *testing.T) {
	dir := peercredtest.Dir(t)
	ul, err := net.Listen("unix", filepath.Join(dir, "w.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer ul.Close()
	uc, err := net.Dial("unix", ul.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer uc.Close()
	tl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer tl.Close()
	tc, err := net.Dial("tcp", tl.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()

	tests := []struct {
		name    string
		conn    net.Conn
		wantErr error
	}{
		{"unix", uc, nil},
		{"tls over unix", tls.Client(uc, &tls.Config{}), nil},
		{"NetConn wrapper", wrapped{uc}, nil},
		{"tcp", tc, peercred.ErrNotUnixSocket},
		{"tls over tcp", tls.Client(tc, &tls.Config{}), peercred.ErrNotUnixSocket},
		{"opaque wrapper", opaque{uc}, peercred.ErrNotUnixSocket},
		{"nil unix conn", (*net.UnixConn)(nil), peercred.ErrNotUnixSocket},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := peercred.Get(tt.conn)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Get err = %v, want %v", err, tt.wantErr)
			}
			if err == nil && c.UID != uint32(os.Geteuid()) {
				t.Errorf("uid = %d", c.UID)
			}
		})
	}
}
