//go:build !linux

package httpcore

import "syscall"

// lingerZero is a no-op here: the close is an ordinary one.
func lingerZero(syscall.RawConn) {}
