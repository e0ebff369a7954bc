//go:build !linux

package httpcore

import (
	"errors"
	"log/slog"
	"time"
)

// socketReadable cannot peek portably here: report readable, so the idle
// wait falls through to a blocking read (correct, only with a deeper stack
// while idle).
func socketReadable(fd uintptr, scratch *[1]byte) bool { return true }

// bytesWaiting cannot tell here; a connection past its idle deadline is
// closed.
func (cn *conn) bytesWaiting() bool { return false }

// parker exists on Linux only (epoll); elsewhere an idle connection keeps
// its goroutine.
type parker struct{}

func newParker(*slog.Logger) (*parker, error) {
	return nil, errors.New("httpcore: no idle parker on this system")
}

func (*parker) park(*conn, time.Time) parkResult { return parkRefused }
func (*parker) takeConn(*conn) bool              { return false }
func (*parker) close()                           {}
