package httpcore

import (
	"context"
	"sync"
)

// reqCtx is a request's context: the connection's context (which carries
// the conninfo.Info) made cancelable the way net/http's request contexts are:
// canceled when ServeHTTP returns, or when the Core is closed under it.
//
// It lives inside the request's own allocation, and its Done channel is
// made only when someone asks for it, so a handler that never watches its
// context costs nothing extra. It implements AfterFunc, so contexts derived
// from it (context.WithCancel, the http.Transport of a reverse proxy) hook
// into it without a goroutine each.
type reqCtx struct {
	context.Context // the connection's

	mu    sync.Mutex
	done  chan struct{}
	err   error
	funcs map[*func()]struct{}

	// watcher is told (startWatch) when someone first watches; may be nil.
	// A pointer rather than a method value: that would be an allocation per
	// request.
	watcher *conn
}

// watchingLocked tells the watcher the first time the context is watched.
// c.mu is held.
func (c *reqCtx) watchingLocked() {
	if cn := c.watcher; cn != nil {
		c.watcher = nil
		cn.startWatch(c) // lock order: reqCtx.mu, then the connection's watch.mu
	}
}

func (c *reqCtx) Done() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done == nil {
		c.done = make(chan struct{})
		if c.err != nil {
			close(c.done)
		} else {
			c.watchingLocked()
		}
	}
	return c.done
}

func (c *reqCtx) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// AfterFunc arranges for f to run in its own goroutine once the context is
// canceled (see context.AfterFunc).
func (c *reqCtx) AfterFunc(f func()) (stop func() bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		go f()
		return func() bool { return false }
	}
	key := &f
	c.watchingLocked()
	if c.funcs == nil {
		c.funcs = make(map[*func()]struct{})
	}
	c.funcs[key] = struct{}{}
	return func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		if _, ok := c.funcs[key]; !ok {
			return false
		}
		delete(c.funcs, key)
		return true
	}
}

func (c *reqCtx) cancel() {
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return
	}
	c.err = context.Canceled
	c.watcher = nil
	if c.done != nil {
		close(c.done)
	}
	funcs := c.funcs
	c.funcs = nil
	c.mu.Unlock()
	for f := range funcs {
		go (*f)()
	}
}

func (c *reqCtx) String() string { return "httpcore.requestContext" }
