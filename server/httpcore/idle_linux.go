package httpcore

import (
	"syscall"
	"unsafe"
)

// socketReadable reports whether the socket fd has bytes (or EOF, or an
// error) waiting, without consuming anything: a non-blocking MSG_PEEK. It
// is the condition syscall.RawConn.Read waits on while a connection idles.
func socketReadable(fd uintptr, scratch *[1]byte) bool {
	_, _, errno := syscall.Syscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(scratch)), 1,
		syscall.MSG_PEEK|syscall.MSG_DONTWAIT, 0, 0)
	return errno != syscall.EAGAIN && errno != syscall.EINTR
}
