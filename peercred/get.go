package peercred

import (
	"crypto/tls"
	"fmt"
	"net"
)

// Get returns the credentials of the process at the other end of conn, as the
// kernel recorded them when that process called connect(2) (Linux) or as the
// socket's current peer credentials (BSD, macOS).
//
// conn must be a *net.UnixConn or wrap one: a *tls.Conn is unwrapped with
// NetConn, and any other wrapper may expose the socket by implementing
// interface{ NetConn() net.Conn }. The file descriptor is used in place through
// syscall.RawConn, never duplicated, so Get does not change the socket's
// blocking mode and leaks nothing.
//
// Errors: ErrNotUnixSocket for other transports, ErrNotImplemented where the OS
// has no supported call, or the wrapped getsockopt error.
func Get(conn net.Conn) (*Creds, error) {
	uc, err := unixConn(conn)
	if err != nil {
		return nil, err
	}
	rc, err := uc.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("peercred: raw connection: %w", err)
	}
	var (
		creds  *Creds
		getErr error
	)
	// Control runs the function while the descriptor is guaranteed open;
	// getsockopt does not block, so no Read/Write wait is needed.
	if err := rc.Control(func(fd uintptr) {
		creds, getErr = getFD(fd)
	}); err != nil {
		return nil, fmt.Errorf("peercred: socket control: %w", err)
	}
	if getErr != nil {
		return nil, getErr
	}
	return creds, nil
}

// netConner is implemented by connection wrappers (crypto/tls, and tlsedge's
// own counting or buffering wrappers) that can hand back the socket they wrap.
type netConner interface {
	NetConn() net.Conn
}

// unixConn digs the *net.UnixConn out of conn, following NetConn wrappers a
// bounded number of times so a wrapper that returns itself cannot loop.
func unixConn(conn net.Conn) (*net.UnixConn, error) {
	for range 8 {
		switch c := conn.(type) {
		case *net.UnixConn:
			if c == nil {
				return nil, ErrNotUnixSocket
			}
			return c, nil
		case *tls.Conn:
			conn = c.NetConn()
		case netConner:
			conn = c.NetConn()
		default:
			return nil, fmt.Errorf("%w (%T)", ErrNotUnixSocket, conn)
		}
	}
	return nil, fmt.Errorf("%w: too many wrappers", ErrNotUnixSocket)
}
