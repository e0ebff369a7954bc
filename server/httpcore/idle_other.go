//go:build !linux

package httpcore

// socketReadable cannot peek portably here: report readable, so the idle
// wait falls through to a blocking read (correct, only with a deeper stack
// while idle).
func socketReadable(fd uintptr, scratch *[1]byte) bool { return true }
