// Package unixsock holds what tlsedge's UNIX-socket listeners (the servers'
// and the control socket) share: replacing a socket file left by a process
// that is gone, without ever taking one that is alive or a file that is not
// a socket.
package unixsock

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"syscall"
	"time"
)

// ErrInUse is returned by RemoveStale when something still accepts on path.
var ErrInUse = errors.New("address already in use")

// RemoveStale removes the socket file at path if nothing listens on it any
// more. A missing path is fine; a live socket gives ErrInUse; a path that is
// not a socket is refused and left alone.
func RemoveStale(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi.Mode().Type() != fs.ModeSocket {
		return fmt.Errorf("%s exists and is not a socket; remove it or choose another path", path)
	}
	c, err := net.DialTimeout("unix", path, time.Second)
	if err == nil {
		c.Close()
		return fmt.Errorf("%w: %s", ErrInUse, path)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("checking the existing socket %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("removing the stale socket %s: %w", path, err)
	}
	return nil
}
