package apps

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// upstream is the proxy's connection engine for one upstream: it dials
// (TCP, UNIX socket, optionally TLS and a PROXY v2 header first), keeps
// idle keep-alive connections in a pool, and tracks the upstream's health.
//
// An idle connection holds no goroutine: it sits in the pool with its
// buffered reader, and a timer (not a goroutine until it fires) closes it
// after the idle timeout. Before reuse, a non-blocking peek at its socket
// tells whether the upstream closed it (or sent bytes nobody asked for)
// while it was idle; such a connection is dropped, not used.
type upstream struct {
	network, addr  string
	tlsConf        *tls.Config // nil: plain HTTP
	connectTimeout time.Duration
	idleTimeout    time.Duration
	maxIdle        int
	maxRequests    int

	mu     sync.Mutex
	idle   map[string][]*upConn // by PROXY header ("" without one); last is newest
	nidle  int
	closed bool

	// Passive health: maxFails failures within failTimeout mark the
	// upstream down for failTimeout. maxFails 0 never marks it down.
	maxFails    int
	failTimeout time.Duration
	hmu         sync.Mutex
	fails       int
	firstFail   time.Time
	downUntil   time.Time
	lastFail    error
	// Mirrors read without hmu on every request: downNs is downUntil in
	// Unix nanoseconds (0: not down), failing is set while failures are
	// counted. Written under hmu.
	downNs  atomic.Int64
	failing atomic.Bool
}

// upConn is one connection to the upstream.
type upConn struct {
	nc       net.Conn
	br       *bufio.Reader
	key      string
	requests int // sent on it so far
	reused   bool
	timer    *time.Timer // closes it once idle too long
	u        *upstream
	addr     string // the address dialled, for the access log

	// For the peek at an idle connection (quiet).
	rc        syscall.RawConn
	peekFn    func(fd uintptr)
	peekBuf   [1]byte
	peekQuiet bool

	fields []hfield // the response head's, reused from exchange to exchange

	// The request's context is watched only once an exchange has run for
	// watchDelay (see watch).
	watchTimer *time.Timer
	wmu        sync.Mutex
	wctx       context.Context
	wstop      func() bool // of the context.AfterFunc, once registered
	wended     bool
}

// watchDelay is how long an exchange runs before its request's context is
// watched. Watching costs more than most exchanges last: the request core
// answers the first Done or AfterFunc with a goroutine that reads the
// client's connection to see it go away, and a system call or two to stop
// it. A client that goes away is still noticed within watchDelay of the
// start, and at once when the edge writes to it.
const watchDelay = 100 * time.Millisecond

// watch starts the delayed watch of ctx for one exchange on c: if the
// exchange is still running after watchDelay, a canceled ctx sets a
// deadline in the past on the connection, ending any blocked read or write.
func (c *upConn) watch(ctx context.Context) {
	c.wmu.Lock()
	c.wctx, c.wended = ctx, false
	c.wmu.Unlock()
	if c.watchTimer == nil {
		c.watchTimer = time.AfterFunc(watchDelay, c.startWatch)
	} else {
		c.watchTimer.Reset(watchDelay)
	}
}

func (c *upConn) startWatch() {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.wended || c.wstop != nil || c.wctx == nil || c.wctx.Done() == nil {
		return
	}
	c.wstop = context.AfterFunc(c.wctx, func() { c.nc.SetDeadline(aLongTimeAgo) })
}

// unwatch ends the watch of the exchange. It reports false when the
// context's cancellation already reached the connection: its deadline is
// spoiled, and it cannot be pooled.
func (c *upConn) unwatch() bool {
	// Whether or not the timer fired for this exchange, a startWatch of an
	// earlier one may have run late and registered on this one's context:
	// whatever is registered goes.
	c.watchTimer.Stop()
	c.wmu.Lock()
	c.wended, c.wctx = true, nil
	stop := c.wstop
	c.wstop = nil
	c.wmu.Unlock()
	return stop == nil || stop()
}

// get returns a pooled connection for key (the PROXY header, or "") that is
// still open, or a new one. fresh forces a new connection.
func (u *upstream) get(ctx context.Context, key string, ppHeader []byte, fresh bool) (*upConn, error) {
	if !fresh {
		for {
			c := u.takeIdle(key)
			if c == nil {
				break
			}
			if c.br.Buffered() == 0 && c.quiet() {
				c.reused = true
				return c, nil
			}
			c.nc.Close()
		}
	}
	return u.dial(ctx, key, ppHeader)
}

func (u *upstream) takeIdle(key string) *upConn {
	u.mu.Lock()
	defer u.mu.Unlock()
	l := u.idle[key]
	if len(l) == 0 {
		return nil
	}
	c := l[len(l)-1]
	l[len(l)-1] = nil
	if len(l) == 1 && key != "" {
		// A pool per PROXY header goes with its last connection; the
		// one pool without keeps its slice, so put does not make one
		// per request.
		delete(u.idle, key)
	} else {
		u.idle[key] = l[:len(l)-1]
	}
	u.nidle--
	c.timer.Stop()
	return c
}

// put returns c to the pool after a complete exchange, or closes it when
// the pool is full, closed, or c has carried proxy_keepalive_requests.
func (u *upstream) put(c *upConn) {
	if c.requests >= u.maxRequests || c.br.Buffered() > 0 {
		c.nc.Close()
		return
	}
	u.mu.Lock()
	if u.closed || u.nidle >= u.maxIdle {
		u.mu.Unlock()
		c.nc.Close()
		return
	}
	if u.idle == nil {
		u.idle = make(map[string][]*upConn)
	}
	u.idle[c.key] = append(u.idle[c.key], c)
	u.nidle++
	if c.timer == nil {
		c.timer = time.AfterFunc(u.idleTimeout, func() { u.expire(c) })
	} else {
		c.timer.Reset(u.idleTimeout)
	}
	u.mu.Unlock()
}

// expire closes c if it is idle. A timer that fires as c is taken finds it
// gone from the pool and does nothing.
func (u *upstream) expire(c *upConn) {
	u.mu.Lock()
	l := u.idle[c.key]
	for i, x := range l {
		if x == c {
			copy(l[i:], l[i+1:])
			l[len(l)-1] = nil
			if len(l) == 1 && c.key != "" {
				delete(u.idle, c.key)
			} else {
				u.idle[c.key] = l[:len(l)-1]
			}
			u.nidle--
			u.mu.Unlock()
			c.nc.Close()
			return
		}
	}
	u.mu.Unlock()
}

// close drops every idle connection; those in use close when their
// requests end.
func (u *upstream) close() {
	u.mu.Lock()
	u.closed = true
	idle := u.idle
	u.idle, u.nidle = nil, 0
	u.mu.Unlock()
	for _, l := range idle {
		for _, c := range l {
			c.timer.Stop()
			c.nc.Close()
		}
	}
}

// dial connects, sends the PROXY header if there is one, and does the TLS
// handshake, all within proxy_connect_timeout.
func (u *upstream) dial(ctx context.Context, key string, ppHeader []byte) (*upConn, error) {
	deadline := time.Now().Add(u.connectTimeout)
	d := net.Dialer{Deadline: deadline, KeepAlive: 30 * time.Second}
	nc, err := d.DialContext(ctx, u.network, u.addr)
	if err != nil {
		return nil, err
	}
	if ppHeader != nil {
		nc.SetWriteDeadline(deadline)
		if _, err := nc.Write(ppHeader); err != nil {
			nc.Close()
			return nil, fmt.Errorf("apps: sending PROXY header: %w", err)
		}
		nc.SetWriteDeadline(time.Time{})
	}
	if u.tlsConf != nil {
		tc := tls.Client(nc, u.tlsConf)
		hctx, cancel := context.WithDeadline(ctx, deadline)
		err := tc.HandshakeContext(hctx)
		cancel()
		if err != nil {
			nc.Close()
			return nil, fmt.Errorf("apps: TLS handshake with the upstream: %w", err)
		}
		nc = tc
	}
	return &upConn{nc: nc, br: bufio.NewReaderSize(nc, 4096), key: key, u: u, addr: nc.RemoteAddr().String()}, nil
}

// down reports whether the upstream is marked down, and the failure that
// marked it.
func (u *upstream) down(now time.Time) (bool, error) {
	if u.maxFails == 0 {
		return false, nil
	}
	if until := u.downNs.Load(); until == 0 || now.UnixNano() >= until {
		return false, nil
	}
	u.hmu.Lock()
	defer u.hmu.Unlock()
	if now.Before(u.downUntil) {
		return true, u.lastFail
	}
	return false, nil
}

// failed counts a failure (refused, reset, timed out) against the upstream.
func (u *upstream) failed(now time.Time, err error) {
	if u.maxFails == 0 {
		return
	}
	u.hmu.Lock()
	defer u.hmu.Unlock()
	if u.fails == 0 || now.Sub(u.firstFail) > u.failTimeout {
		u.fails, u.firstFail = 0, now
	}
	u.fails++
	u.lastFail = err
	u.failing.Store(true)
	if u.fails >= u.maxFails {
		u.downUntil = now.Add(u.failTimeout)
		u.downNs.Store(u.downUntil.UnixNano())
		u.fails = 0
	}
}

// succeeded forgets the failures counted so far: an upstream that just
// answered is up, even if the attempt before it marked it down.
func (u *upstream) succeeded() {
	if u.maxFails == 0 || !u.failing.Load() {
		return // nothing counted: the common case takes no lock
	}
	u.hmu.Lock()
	u.fails = 0
	u.downUntil = time.Time{}
	u.downNs.Store(0)
	u.failing.Store(false)
	u.hmu.Unlock()
}

// errUpstreamDown is the failure of a request not sent because the upstream
// is marked down.
var errUpstreamDown = errors.New("apps: upstream marked down after failures (proxy_max_fails, proxy_fail_timeout)")

// quiet reports whether an idle connection has nothing to read: no bytes
// the upstream was not asked for, no close. It peeks without blocking, on
// the socket under any TLS layer, through the raw connection and the
// function kept since the dial, so that the check allocates nothing.
func (c *upConn) quiet() bool {
	if c.rc == nil {
		nc := c.nc
		if tc, ok := nc.(*tls.Conn); ok {
			nc = tc.NetConn()
		}
		sc, ok := nc.(syscall.Conn)
		if !ok {
			return true
		}
		rc, err := sc.SyscallConn()
		if err != nil {
			return false
		}
		c.rc, c.peekFn = rc, c.peek
	}
	c.peekQuiet = false
	if err := c.rc.Control(c.peekFn); err != nil {
		return false
	}
	return c.peekQuiet
}
