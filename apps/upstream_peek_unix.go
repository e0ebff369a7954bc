//go:build unix

package apps

import "syscall"

// peek looks at the socket without blocking or taking anything: nothing to
// read (EAGAIN) means the idle connection is as it was left. It runs under
// RawConn.Control, which neither checks nor waits on deadlines.
func (c *upConn) peek(fd uintptr) {
	_, _, err := syscall.Recvfrom(int(fd), c.peekBuf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	c.peekQuiet = err == syscall.EAGAIN || err == syscall.EWOULDBLOCK
}
