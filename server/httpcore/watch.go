package httpcore

import (
	"sync"
	"time"
)

// watch notices a client that goes away while its handler runs, and then
// cancels the request's context, so a reverse proxy abandons the backend
// request (net/http does the same with a background read).
//
// It costs a goroutine and a read, so it starts only when somebody watches
// the request's context (Done or AfterFunc: a proxy's transport does), and
// only when the connection is otherwise quiet: no request body to read and
// nothing pipelined in the buffer. A byte it reads is the start of the next
// request and is handed back to the connection reader.
type watch struct {
	mu      sync.Mutex
	allowed bool // set per request by serveRequest
	running bool
	stopped bool
	done    chan struct{}
	gone    bool // the client closed or reset the connection
}

// arm is called before the handler runs.
func (cn *conn) armWatch(allowed bool) {
	cn.w.mu.Lock()
	cn.w.allowed, cn.w.running, cn.w.stopped, cn.w.gone = allowed, false, false, false
	cn.w.mu.Unlock()
}

// startWatch is the reqCtx hook; it may run on any goroutine.
func (cn *conn) startWatch(rc *reqCtx) {
	w := &cn.w
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.allowed || w.running || w.stopped {
		return
	}
	w.running = true
	if w.done == nil {
		w.done = make(chan struct{}, 1)
	}
	cn.nc.SetReadDeadline(time.Time{})
	go cn.watchLoop(rc)
}

func (cn *conn) watchLoop(rc *reqCtx) {
	n, err := cn.nc.Read(cn.rd.first[:])
	if n > 0 {
		cn.rd.hasFirst = true // published to the serving goroutine by w.done
		cn.rd.n++
	} else if err != nil && !isTimeout(err) {
		// EOF, reset, or closed under us: nobody is waiting for the answer.
		cn.w.mu.Lock()
		cn.w.gone = true
		cn.w.mu.Unlock()
		rc.cancel()
	}
	cn.w.done <- struct{}{}
}

// stopWatch ends the watch (at the end of the request, or before a Hijack)
// and reports whether the client went away.
func (cn *conn) stopWatch() bool {
	w := &cn.w
	w.mu.Lock()
	w.stopped = true
	running := w.running
	w.mu.Unlock()
	if !running {
		return false
	}
	cn.nc.SetReadDeadline(aLongTimeAgo)
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	w.running = false
	return w.gone
}

// aLongTimeAgo is a deadline that has passed: a read under it returns at once.
var aLongTimeAgo = time.Unix(1, 0)
