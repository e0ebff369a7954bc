//go:build unix

package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"tlsedge/internal/unixsock"
	"tlsedge/peercred"
)

// listener is one bound socket and how to clean it up.
type listener struct {
	net.Listener
	path string // UNIX socket file to remove on close ("" for TCP and abstract)
	ino  uint64 // inode of path when created, so a replacement is never removed
	kind string // "tcp" or "unix"
}

// Close closes the socket and removes the socket file it created, unless
// another process has replaced it meanwhile.
func (l *listener) Close() error {
	err := l.Listener.Close()
	if l.path != "" {
		if fi, serr := os.Lstat(l.path); serr == nil {
			if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Ino == l.ino {
				_ = os.Remove(l.path)
			}
		}
	}
	return err
}

// bindError is an address that could not be bound: one line naming it.
type bindError struct {
	Addr string
	Err  error
}

func (e *bindError) Error() string {
	if errors.Is(e.Err, syscall.EADDRINUSE) {
		return fmt.Sprintf("cannot listen on %s: address already in use (another process holds it; stop it or choose another port)", e.Addr)
	}
	if errors.Is(e.Err, syscall.EACCES) {
		return fmt.Sprintf("cannot listen on %s: permission denied (ports below 1024 need root or CAP_NET_BIND_SERVICE)", e.Addr)
	}
	if errors.Is(e.Err, syscall.EADDRNOTAVAIL) {
		return fmt.Sprintf("cannot listen on %s: no such address on this machine", e.Addr)
	}
	return fmt.Sprintf("cannot listen on %s: %v", e.Addr, e.Err)
}

func (e *bindError) Unwrap() error { return e.Err }

// listen binds every socket the config names.
func listen(ctx context.Context, c *Config) ([]*listener, error) {
	if len(c.Listeners) > 0 {
		out := make([]*listener, 0, len(c.Listeners))
		for _, ln := range c.Listeners {
			out = append(out, &listener{Listener: ln, kind: ln.Addr().Network()})
		}
		return out, nil
	}
	if c.SocketFile != "" {
		ln, err := listenUnix(c)
		if err != nil {
			return nil, err
		}
		return []*listener{ln}, nil
	}
	ips, err := resolveHost(ctx, c.SocketHost)
	if err != nil {
		return nil, err
	}
	var out []*listener
	port := c.SocketPort
	for _, ip := range ips {
		ln, err := listenTCP(ip, port, c)
		if err != nil {
			for _, l := range out {
				l.Close()
			}
			return nil, err
		}
		// With port 0 every address of a host name shares the first free port.
		port = ln.Addr().(*net.TCPAddr).Port
		out = append(out, ln)
	}
	return out, nil
}

// resolveHost turns socket_host into the addresses to bind. "::" binds one
// dual-stack socket; a name binds every address it resolves to.
func resolveHost(ctx context.Context, host string) ([]net.IP, error) {
	host = strings.Trim(host, "[]")
	if ip := net.ParseIP(host); ip != nil {
		return []net.IP{ip}, nil
	}
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	addrs, err := net.DefaultResolver.LookupIPAddr(rctx, host)
	if err != nil {
		return nil, fmt.Errorf("socket_host %q: %w (use an address, or a name this machine resolves)", host, err)
	}
	seen := map[string]bool{}
	var ips []net.IP
	for _, a := range addrs {
		if a.Zone != "" || seen[a.IP.String()] {
			continue
		}
		seen[a.IP.String()] = true
		ips = append(ips, a.IP)
	}
	if len(ips) == 0 {
		return nil, fmt.Errorf("socket_host %q resolves to no usable address", host)
	}
	return ips, nil
}

func listenTCP(ip net.IP, port int, c *Config) (*listener, error) {
	addr := net.JoinHostPort(ip.String(), strconv.Itoa(port))
	family, sa := unix.AF_INET6, unix.Sockaddr(nil)
	if ip4 := ip.To4(); ip4 != nil {
		family = unix.AF_INET
		s4 := &unix.SockaddrInet4{Port: port}
		copy(s4.Addr[:], ip4)
		sa = s4
	} else {
		s6 := &unix.SockaddrInet6{Port: port}
		copy(s6.Addr[:], ip.To16())
		sa = s6
	}
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		return nil, &bindError{addr, err}
	}
	ok := false
	defer func() {
		if !ok {
			unix.Close(fd)
		}
	}()
	// SO_REUSEADDR lets a restarted server bind while old connections sit in
	// TIME_WAIT; it never lets two listeners share a port (SO_REUSEPORT does).
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); err != nil {
		return nil, &bindError{addr, err}
	}
	if c.ReusePort {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEPORT, 1); err != nil {
			return nil, &bindError{addr, fmt.Errorf("SO_REUSEPORT: %w", err)}
		}
	}
	if family == unix.AF_INET6 {
		// "::" serves IPv4 too (dual stack); a specific IPv6 address only IPv6.
		v6only := 1
		if ip.IsUnspecified() {
			v6only = 0
		}
		_ = unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, v6only)
	}
	if err := unix.Bind(fd, sa); err != nil {
		return nil, &bindError{addr, err}
	}
	if err := unix.Listen(fd, c.SocketQueueSize); err != nil {
		return nil, &bindError{addr, err}
	}
	ok = true // fileListener owns fd from here, even when it fails
	ln, err := fileListener(fd, addr)
	if err != nil {
		return nil, &bindError{addr, err}
	}
	return &listener{Listener: ln, kind: "tcp"}, nil
}

func listenUnix(c *Config) (*listener, error) {
	path := c.SocketFile
	abstract := strings.HasPrefix(path, "@")
	if !abstract {
		if err := removeStaleSocket(path); err != nil {
			return nil, err
		}
	}
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		return nil, &bindError{path, err}
	}
	ok := false
	defer func() {
		if !ok {
			unix.Close(fd)
		}
	}()
	// x/sys/unix turns a leading @ into the abstract namespace's NUL byte.
	if err := unix.Bind(fd, &unix.SockaddrUnix{Name: path}); err != nil {
		return nil, &bindError{path, err}
	}
	l := &listener{kind: "unix"}
	if !abstract {
		// No client can connect before listen(2), so setting the mode and
		// owner here leaves no window in which the socket is open to more
		// users than configured, whatever the umask.
		if err := setSocketFileAccess(path, c); err != nil {
			os.Remove(path)
			return nil, err
		}
		fi, err := os.Lstat(path)
		if err != nil {
			return nil, &bindError{path, err}
		}
		l.path, l.ino = path, fi.Sys().(*syscall.Stat_t).Ino
	}
	if err := unix.Listen(fd, c.SocketQueueSize); err != nil {
		l.removeFile()
		return nil, &bindError{path, err}
	}
	ok = true // fileListener owns fd from here, even when it fails
	ln, err := fileListener(fd, path)
	if err != nil {
		l.removeFile()
		return nil, &bindError{path, err}
	}
	l.Listener = ln
	return l, nil
}

func (l *listener) removeFile() {
	if l.path != "" {
		os.Remove(l.path)
	}
}

// removeStaleSocket removes a socket file left by a process that is gone. A
// socket something still listens on, or a file that is not a socket, stays.
func removeStaleSocket(path string) error {
	err := unixsock.RemoveStale(path)
	if errors.Is(err, unixsock.ErrInUse) {
		return &bindError{path, syscall.EADDRINUSE}
	}
	if err != nil {
		return &bindError{path, err}
	}
	return nil
}

func setSocketFileAccess(path string, c *Config) error {
	if err := os.Chmod(path, c.SocketFileMode.Perm()); err != nil {
		return fmt.Errorf("socket_file_mode on %s: %w", path, err)
	}
	uid, gid := -1, -1
	if c.SocketFileOwner != "" {
		u, err := peercred.LookupUID(c.SocketFileOwner)
		if err != nil {
			return fmt.Errorf("socket_file_owner: %w", err)
		}
		uid = int(u)
	}
	if c.SocketFileGroup != "" {
		g, err := peercred.LookupGID(c.SocketFileGroup)
		if err != nil {
			return fmt.Errorf("socket_file_group: %w", err)
		}
		gid = int(g)
	}
	if uid != -1 || gid != -1 {
		if err := os.Lchown(path, uid, gid); err != nil {
			return fmt.Errorf("socket_file_owner/group on %s: %w", path, err)
		}
	}
	return nil
}

// fileListener wraps a listening socket fd as a net.Listener; the runtime's
// poller owns the duplicate and fd is closed.
func fileListener(fd int, name string) (net.Listener, error) {
	f := os.NewFile(uintptr(fd), name)
	defer f.Close()
	return net.FileListener(f)
}
