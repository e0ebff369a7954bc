//go:build unix

package apps

import "syscall"

// peekQuiet peeks at the socket without blocking: nothing to read means
// the idle connection is as it was left.
func peekQuiet(rc syscall.RawConn) bool {
	quiet := false
	var b [1]byte
	err := rc.Read(func(fd uintptr) bool {
		n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		_ = n
		quiet = err == syscall.EAGAIN || err == syscall.EWOULDBLOCK
		return true
	})
	return err == nil && quiet
}
