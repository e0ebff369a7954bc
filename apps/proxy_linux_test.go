//go:build linux

package apps

import (
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// fullListener returns the address of a TCP listener whose accept queue is
// full and never drained: Linux then drops new SYNs, so a connect hangs the
// way it does to a dead host.
func fullListener(t *testing.T) string {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	f := os.NewFile(uintptr(fd), "full-listener")
	ln, err := net.FileListener(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	addr := ln.Addr().String()
	var held []net.Conn
	t.Cleanup(func() {
		for _, c := range held {
			c.Close()
		}
	})
	for range 16 {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return addr
		}
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
	}
	t.Skip("accept queue never filled; cannot simulate a silent upstream here")
	return ""
}

func TestProxyConnectTimeout(t *testing.T) {
	addr := fullListener(t)
	log, lb := testLogger(t)
	timeout := 300 * time.Millisecond
	front := serveTCP(t, mustNew(t, "http://"+addr, Env{Logger: log, Options: Options{ProxyConnectTimeout: timeout}}))
	start := time.Now()
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Get(front + "/")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	took := time.Since(start)
	if resp.StatusCode != http.StatusGatewayTimeout {
		t.Errorf("status %d (%q), want 504", resp.StatusCode, b)
	}
	if took < timeout || took > timeout+2*time.Second {
		t.Errorf("answered after %v, want about %v", took, timeout)
	}
	if l := lb.String(); !strings.Contains(l, "status="+strconv.Itoa(http.StatusGatewayTimeout)) || !strings.Contains(l, "upstream=http://"+addr) {
		t.Errorf("log %q", l)
	}
}
