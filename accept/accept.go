// Package accept is the one accept loop: it takes connections from a
// listener, counts each against max_connections from the moment it is
// accepted until it is closed (so a connection still in its TLS handshake
// holds a slot like any other), sheds the excess at once, and backs off
// instead of spinning when the process runs out of descriptors. It never
// reads from or writes to an admitted client, so one slow client cannot
// stall the loop.
package accept

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Limiter counts the open connections of one server across its listeners.
// The zero value admits nothing; build one with NewLimiter. It is safe for
// concurrent use.
type Limiter struct {
	max  atomic.Int64
	open atomic.Int64
	shed atomic.Uint64
}

// NewLimiter returns a Limiter that admits up to max open connections.
func NewLimiter(max int) *Limiter {
	l := &Limiter{}
	l.SetMax(max)
	return l
}

// SetMax changes the limit (a reload); connections over a lowered limit are
// not closed, new ones wait for the count to fall below it.
func (l *Limiter) SetMax(max int) { l.max.Store(int64(max)) }

// Max is the limit in force.
func (l *Limiter) Max() int { return int(l.max.Load()) }

// Open is the number of admitted connections not yet closed.
func (l *Limiter) Open() int64 { return l.open.Load() }

// Shed counts the connections refused for being over the limit.
func (l *Limiter) Shed() uint64 { return l.shed.Load() }

// admit takes a slot, or reports that none is free.
func (l *Limiter) admit() bool {
	if l.open.Add(1) > l.max.Load() {
		l.open.Add(-1)
		l.shed.Add(1)
		return false
	}
	return true
}

// Conn is an admitted connection: closing it (through any wrapper above it,
// such as a *tls.Conn) gives its slot back, once. It passes the socket
// through to whoever needs it (SyscallConn for the idle parker and peer
// credentials, CloseWrite for a lingering close).
type Conn struct {
	net.Conn
	l      *Limiter
	closed atomic.Bool
	// remote and local, when set, are the addresses a PROXY protocol
	// header gave (SetAddrs).
	remote, local net.Addr
}

// SetAddrs replaces the addresses RemoteAddr and LocalAddr report: the
// client's and the one it connected to, read from a PROXY protocol header
// its load balancer sent. Call it before the connection is served; from
// then on every reader of the connection's addresses (its facts, the
// access log, forwarding headers, rate limits, policy) sees the client.
func (c *Conn) SetAddrs(remote, local net.Addr) { c.remote, c.local = remote, local }

// RemoteAddr is the client's address: the socket's peer, or the address
// SetAddrs gave.
func (c *Conn) RemoteAddr() net.Addr {
	if c.remote != nil {
		return c.remote
	}
	return c.Conn.RemoteAddr()
}

// LocalAddr is the socket's address, or the address SetAddrs gave.
func (c *Conn) LocalAddr() net.Addr {
	if c.local != nil {
		return c.local
	}
	return c.Conn.LocalAddr()
}

// Close closes the connection and releases its slot.
func (c *Conn) Close() error {
	err := c.Conn.Close()
	if c.closed.CompareAndSwap(false, true) {
		c.l.open.Add(-1)
	}
	return err
}

// NetConn returns the accepted connection under c.
func (c *Conn) NetConn() net.Conn { return c.Conn }

// SyscallConn exposes the socket.
func (c *Conn) SyscallConn() (syscall.RawConn, error) {
	sc, ok := c.Conn.(syscall.Conn)
	if !ok {
		return nil, errors.ErrUnsupported
	}
	return sc.SyscallConn()
}

// CloseWrite half-closes the connection where the transport can.
func (c *Conn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.ErrUnsupported
}

// Loop accepts connections from one listener.
type Loop struct {
	Listener net.Listener
	Limiter  *Limiter
	// Serve handles one admitted connection on a goroutine of its own.
	// Closing the connection releases its slot.
	Serve func(nc *Conn)
	// Refuse answers a connection over the limit before it is closed (a
	// fast 503 on a plain listener); it must not block for long. Nil closes
	// at once, which is right on a TLS port: nothing can be said there
	// before a handshake the server will not spend.
	Refuse func(nc net.Conn)
	// Accepted, when set, is called for every connection accepted,
	// admitted or not (statistics).
	Accepted func()
	// Allow, when set, judges every accepted connection by its socket
	// alone (its peer's address: proxy_protocol_trusted) before it takes
	// a slot; a connection it refuses is closed at once, unanswered. It
	// must not read from the connection or block.
	Allow func(nc net.Conn) bool
	// Logger receives the back-off episodes. Nil discards.
	Logger *slog.Logger
	// Conns, when set, counts the goroutines Serve runs in, so that a
	// caller can wait for them after Run returns.
	Conns *sync.WaitGroup
}

// Run accepts until the listener is closed (it then returns nil) or fails
// for good (it returns that error). ctx ends a back-off wait early.
func (lp *Loop) Run(ctx context.Context) error {
	log := lp.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	addr := lp.Listener.Addr().String()
	var backoff time.Duration
	for {
		nc, err := lp.Listener.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) || ctx.Err() != nil {
				return nil
			}
			if !Temporary(err) {
				return fmt.Errorf("accept on %s: %w", addr, err)
			}
			// Out of descriptors (or a transient kernel error): back off
			// instead of spinning, log once per episode, resume when
			// descriptors free up.
			if backoff == 0 {
				backoff = 5 * time.Millisecond
				log.Warn("accept failing; backing off until it recovers", "listener", addr, "err", err)
			} else {
				backoff = min(2*backoff, time.Second)
			}
			select {
			case <-time.After(backoff):
			case <-ctx.Done():
				return nil
			}
			continue
		}
		if backoff != 0 {
			log.Info("accept recovered", "listener", addr)
			backoff = 0
		}
		if lp.Accepted != nil {
			lp.Accepted()
		}
		if lp.Allow != nil && !lp.Allow(nc) {
			nc.Close()
			continue
		}
		if !lp.Limiter.admit() {
			if lp.Refuse != nil {
				lp.Refuse(nc)
			}
			nc.Close()
			continue
		}
		c := &Conn{Conn: nc, l: lp.Limiter}
		if lp.Conns != nil {
			lp.Conns.Add(1)
			go func() {
				defer lp.Conns.Done()
				lp.Serve(c)
			}()
			continue
		}
		go lp.Serve(c)
	}
}

// Temporary reports whether an accept error passes: descriptors or buffers
// ran out, or the client went away before accept.
func Temporary(err error) bool {
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) ||
		errors.Is(err, syscall.ENOBUFS) || errors.Is(err, syscall.ENOMEM) ||
		errors.Is(err, syscall.ECONNABORTED) || errors.Is(err, syscall.EINTR)
}
