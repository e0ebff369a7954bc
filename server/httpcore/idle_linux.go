package httpcore

import (
	"fmt"
	"log/slog"
	"os"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// socketReadable reports whether the socket fd has bytes (or EOF, or an
// error) waiting, without consuming anything: a non-blocking MSG_PEEK. It
// is the condition syscall.RawConn.Read waits on while a connection idles
// and no parker is available.
func socketReadable(fd uintptr, scratch *[1]byte) bool {
	_, _, errno := syscall.Syscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(scratch)), 1,
		syscall.MSG_PEEK|syscall.MSG_DONTWAIT, 0, 0)
	return errno != syscall.EAGAIN && errno != syscall.EINTR
}

// bytesWaiting reports whether bytes (or EOF, or an error) wait in the
// socket under cn, without consuming them. It decides what to do with a
// connection whose idle deadline passed: a goroutine or timer that runs
// late must not reset a request that arrived in time.
func (cn *conn) bytesWaiting() bool {
	ready := false
	return cn.raw.Control(func(fd uintptr) { ready = cn.readable(fd) }) == nil && ready
}

// parker holds idle keep-alive connections (HTTP/1.1 ones between requests,
// h2 ones without streams, see h2sconn.idleWait) without a goroutine each: their
// sockets sit in an epoll set of the Core's own, with a timer for
// socket_timeout, and a connection gets a goroutine again only when its
// socket becomes readable. A parked connection costs its TLS state, its conn
// and a timer; a goroutine would add a stack of at least 2 KB, usually 4.
//
// The epoll descriptor is itself waited on through the Go runtime's poller
// (an epoll set is pollable), so the parker needs no thread of its own: its
// one goroutine sleeps until some parked socket is readable.
//
// Ownership: a parked connection belongs to whoever takes it out of conns
// (the wake, its timer, or Shutdown/Close); everyone else leaves it alone.
type parker struct {
	log    *slog.Logger
	epfd   int
	file   *os.File // epfd, registered with the runtime poller
	raw    syscall.RawConn
	events []unix.EpollEvent

	mu     sync.Mutex
	conns  map[uint64]*conn
	next   uint64
	closed bool
}

func newParker(log *slog.Logger) (*parker, error) {
	fd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("httpcore: epoll_create1: %w", err)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("httpcore: idle epoll set: %w", err)
	}
	f := os.NewFile(uintptr(fd), "httpcore-idle")
	raw, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("httpcore: idle epoll set: %w", err)
	}
	p := &parker{log: log, epfd: fd, file: f, raw: raw, events: make([]unix.EpollEvent, 128), conns: make(map[uint64]*conn)}
	go p.loop()
	return p, nil
}

// loop wakes parked connections whose sockets became readable (or hung up:
// the resumed read finds out which). It ends when the parker is closed.
func (p *parker) loop() {
	var werr error
	err := p.raw.Read(func(uintptr) bool {
		for {
			n, err := unix.EpollWait(p.epfd, p.events, 0)
			if err == unix.EINTR {
				continue
			}
			if err != nil {
				werr = err
				return true
			}
			for _, ev := range p.events[:n] {
				p.wake(uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32)
			}
			if n < len(p.events) {
				return false // drained: wait for the set to become readable again
			}
		}
	})
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return // closed by the Core, with nothing parked
	}
	// Only the kernel refusing epoll_wait on the parker's own set ends up
	// here. Parked connections would starve: close them, and park no more.
	if werr == nil {
		werr = err
	}
	p.log.Error("idle connection parker failed; idle connections now keep a goroutine", "err", werr)
	p.closed = true
	cs := p.conns
	p.conns = map[uint64]*conn{}
	p.mu.Unlock()
	for _, cn := range cs {
		cn.parkTimer.Stop()
		cn.finishParked()
	}
	// close() will find p.closed set and do nothing: release the set here.
	// Any park that got into cs has finished its epoll_ctl (closing its
	// socket above waited for Control), and later ones see p.closed.
	p.file.Close()
}

// park hands cn, idle since its last request, to the parker until its socket
// is readable or deadline passes. The caller must not touch cn after parkOK.
// cn.state must be stateIdle, and every layer above the socket must be known
// to hold no unread byte (a read has just timed out).
func (p *parker) park(cn *conn, deadline time.Time) parkResult {
	d := time.Until(deadline)
	if d <= 0 {
		return parkRefused
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return parkRefused
	}
	if cn.state.Load() != stateIdle {
		p.mu.Unlock()
		return parkClosed
	}
	p.next++
	tok := p.next
	cn.parkTok = tok
	p.conns[tok] = cn
	cn.parkTimer = time.AfterFunc(d, func() { p.expire(tok) })
	p.mu.Unlock()

	var ctlErr error
	err := cn.raw.Control(func(fd uintptr) {
		ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLONESHOT, Fd: int32(uint32(tok)), Pad: int32(uint32(tok >> 32))}
		// A connection parked before stays in the set, disarmed by
		// EPOLLONESHOT; closing its socket removes it.
		ctlErr = unix.EpollCtl(p.epfd, unix.EPOLL_CTL_MOD, int(fd), &ev)
		if ctlErr == unix.ENOENT {
			ctlErr = unix.EpollCtl(p.epfd, unix.EPOLL_CTL_ADD, int(fd), &ev)
		}
	})
	if err == nil && ctlErr == nil {
		return parkOK
	}
	if !p.takeConn(cn) {
		return parkOK // a timer or Shutdown took it meanwhile and finishes it
	}
	if err != nil {
		return parkClosed
	}
	return parkRefused
}

// take removes the connection parked under tok; nil if it is not (or no
// longer) parked.
func (p *parker) take(tok uint64) *conn {
	p.mu.Lock()
	cn := p.conns[tok]
	delete(p.conns, tok)
	p.mu.Unlock()
	return cn
}

// takeConn takes cn back if it is parked, stopping its timer, and reports
// whether it did: the caller then owns cn.
func (p *parker) takeConn(cn *conn) bool {
	p.mu.Lock()
	tok := cn.parkTok
	ok := tok != 0 && p.conns[tok] == cn
	if ok {
		delete(p.conns, tok)
	}
	p.mu.Unlock()
	if ok {
		cn.parkTimer.Stop()
	}
	return ok
}

// wake gives a connection whose socket became readable a goroutine again.
func (p *parker) wake(tok uint64) {
	cn := p.take(tok)
	if cn == nil {
		return // its timer or Shutdown got there first
	}
	cn.parkTimer.Stop()
	cn.woke = true
	go cn.resumeParked()
}

// expire closes a connection that stayed quiet for socket_timeout.
//
// Quiet means no byte arrived, not that the loop has not got round to it:
// the timer's goroutine runs at once, while the loop, readied by netpoll,
// can wait behind a saturated run queue for 100 ms and more. Bytes already
// in the socket resume the connection here instead of being reset.
func (p *parker) expire(tok uint64) {
	cn := p.take(tok)
	if cn == nil {
		return
	}
	if cn.bytesWaiting() {
		cn.woke = true
		cn.resumeParked() // AfterFunc gave us a goroutine of our own
		return
	}
	cn.finishParked()
}

// close stops the parker. The Core calls it once it has no connection left,
// so nothing is parked.
func (p *parker) close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	p.mu.Unlock()
	p.file.Close()
}
