package cli

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// systemdListeners returns, per server (main first), the sockets systemd
// passed (LISTEN_FDS). With LISTEN_FDNAMES, a socket named "main" or a
// server's name goes to that server; unnamed sockets go to servers in order.
func systemdListeners(o *Options) ([][]net.Listener, error) {
	out := make([][]net.Listener, len(o.Servers()))
	if os.Getenv("LISTEN_PID") != strconv.Itoa(os.Getpid()) {
		return out, nil
	}
	n, err := strconv.Atoi(os.Getenv("LISTEN_FDS"))
	if err != nil || n < 1 {
		return out, nil
	}
	names := strings.Split(os.Getenv("LISTEN_FDNAMES"), ":")
	for _, k := range []string{"LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"} {
		os.Unsetenv(k)
	}
	index := map[string]int{"main": 0}
	for i, c := range o.Extras {
		index[c.Name] = i + 1
	}
	next := 0
	for i := range n {
		fd := 3 + i
		syscall.CloseOnExec(fd)
		f := os.NewFile(uintptr(fd), "systemd")
		ln, err := net.FileListener(f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("systemd socket %d (LISTEN_FDS): %w", fd, err)
		}
		target := -1
		if i < len(names) {
			if t, ok := index[names[i]]; ok {
				target = t
			}
		}
		if target < 0 {
			target = min(next, len(out)-1)
			next++
		}
		out[target] = append(out[target], ln)
	}
	return out, nil
}

// sdNotify sends state to systemd when it asked for notifications
// (NOTIFY_SOCKET, Type=notify); otherwise it does nothing.
func sdNotify(state string) {
	path := os.Getenv("NOTIFY_SOCKET")
	if path == "" {
		return
	}
	// Go's net package maps a leading @ to the abstract namespace itself.
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return
	}
	defer c.Close()
	c.Write([]byte(state))
}
