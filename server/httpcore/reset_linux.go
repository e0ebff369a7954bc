package httpcore

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// lingerZero makes the socket's close a TCP reset (SO_LINGER with a zero
// timeout): the kernel drops what its buffers still hold for the peer.
func lingerZero(raw syscall.RawConn) {
	raw.Control(func(fd uintptr) {
		unix.SetsockoptLinger(int(fd), unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
	})
}
