package httpcore

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"
)

// The pool's workers are slots, not goroutines. A connection's own goroutine
// parses a request, acquires a slot, runs the handler and releases the slot.
// That bounds concurrent handlers exactly like cheroot's thread pool, without
// a goroutine hand-off (and its context switches) per request, and an idle
// keep-alive connection holds no slot at all.
//
// thread_pool slots are kept; the pool grows on demand up to thread_pool_max
// and slots idle for longer than poolIdleRetire beyond thread_pool are
// retired, so per-worker figures describe the pool as cheroot's would.

// poolIdleRetire is how long a slot above thread_pool stays idle before the
// pool shrinks it away.
const poolIdleRetire = 30 * time.Second

var (
	errQueueFull    = errors.New("httpcore: accepted queue full")
	errQueueTimeout = errors.New("httpcore: accepted queue timeout")
	errPoolClosed   = errors.New("httpcore: shutting down")
	errWaitCapFull  = errors.New("httpcore: too many waiting") // a waitCap of acquireFor's is full
	errWaitGone     = errors.New("httpcore: gave up waiting")  // acquireFor's context ended
)

// waitCap bounds one group of waiters (an h2 connection's streams, all h2
// streams) below the pool's own accepted_queue_size.
type waitCap struct {
	n   atomic.Int32
	max int32
}

func (w *waitCap) take() bool {
	if w.n.Add(1) > w.max {
		w.n.Add(-1)
		return false
	}
	return true
}

func (w *waitCap) give() { w.n.Add(-1) }

// worker is one slot. Its counters are atomics because Stats reads them while
// a connection goroutine updates them.
type worker struct {
	id        int
	idleSince time.Time
	busy      atomic.Bool

	requests     atomic.Uint64
	bytesRead    atomic.Uint64
	bytesWritten atomic.Uint64
	workNanos    atomic.Int64
}

type waiter struct {
	ch chan *worker // buffered(1); receives the slot handed over
}

type pool struct {
	min, max  int // max < 0: unbounded
	queueSize int // < 0: unbounded
	timeout   time.Duration
	retire    time.Duration // poolIdleRetire; shorter in tests

	mu      sync.Mutex
	all     map[int]*worker
	free    []*worker // idle slots, LIFO: the bottom is the longest idle
	nextID  int
	waiters []*waiter // FIFO
	closed  bool
}

func newPool(min, max, queueSize int, timeout time.Duration) *pool {
	p := &pool{min: min, max: max, queueSize: queueSize, timeout: timeout, retire: poolIdleRetire, all: make(map[int]*worker)}
	now := time.Now()
	for i := 0; i < min; i++ {
		w := p.newWorkerLocked()
		w.idleSince = now
		p.free = append(p.free, w)
	}
	return p
}

func (p *pool) newWorkerLocked() *worker {
	p.nextID++
	w := &worker{id: p.nextID}
	p.all[w.id] = w
	return w
}

// acquire returns a free slot, growing the pool if allowed, or waits in the
// bounded queue for at most the accepted_queue_timeout.
func (p *pool) acquire() (*worker, error) {
	w, _, err := p.acquireCapped(nil)
	return w, err
}

// acquireCapped is acquire for a waiter that belongs to groups with caps of
// their own (an h2 stream: its connection's, and all h2 streams'): it joins
// the queue only if each non-nil cap has room, else fails at once with
// errWaitCapFull and the index of the full cap. A non-nil ctx ends the wait
// early (the stream was reset) with errWaitGone.
func (p *pool) acquireCapped(ctx context.Context, caps ...*waitCap) (_ *worker, capFull int, _ error) {
	p.mu.Lock()
	if n := len(p.free); n > 0 {
		w := p.free[n-1]
		p.free = p.free[:n-1]
		p.mu.Unlock()
		w.busy.Store(true)
		return w, -1, nil
	}
	if p.max < 0 || len(p.all) < p.max {
		w := p.newWorkerLocked()
		p.mu.Unlock()
		w.busy.Store(true)
		return w, -1, nil
	}
	if p.closed {
		p.mu.Unlock()
		return nil, -1, errPoolClosed
	}
	if p.queueSize >= 0 && len(p.waiters) >= p.queueSize {
		p.mu.Unlock()
		return nil, -1, errQueueFull
	}
	for i, c := range caps {
		if c != nil && !c.take() {
			for _, t := range caps[:i] {
				if t != nil {
					t.give()
				}
			}
			p.mu.Unlock()
			return nil, i, errWaitCapFull
		}
	}
	defer func() {
		for _, c := range caps {
			if c != nil {
				c.give()
			}
		}
	}()
	wt := &waiter{ch: make(chan *worker, 1)}
	p.waiters = append(p.waiters, wt)
	p.mu.Unlock()

	var gone <-chan struct{}
	if ctx != nil {
		gone = ctx.Done()
	}
	timer := time.NewTimer(p.timeout)
	defer timer.Stop()
	err := errQueueTimeout
	select {
	case w := <-wt.ch:
		w.busy.Store(true)
		return w, -1, nil
	case <-timer.C:
	case <-gone:
		err = errWaitGone
	}
	p.mu.Lock()
	for i, x := range p.waiters {
		if x == wt {
			p.waiters = append(p.waiters[:i], p.waiters[i+1:]...)
			p.mu.Unlock()
			return nil, -1, err
		}
	}
	p.mu.Unlock()
	// A releaser handed us a slot just as we gave up.
	w := <-wt.ch
	if err == errWaitGone {
		p.release(w) // nobody to serve: pass it on
		return nil, -1, err
	}
	w.busy.Store(true)
	return w, -1, nil
}

// release returns w to the pool, handing it straight to the oldest waiter.
func (p *pool) release(w *worker) {
	w.busy.Store(false)
	p.mu.Lock()
	if len(p.waiters) > 0 {
		wt := p.waiters[0]
		copy(p.waiters, p.waiters[1:])
		p.waiters[len(p.waiters)-1] = nil
		p.waiters = p.waiters[:len(p.waiters)-1]
		p.mu.Unlock()
		wt.ch <- w
		return
	}
	now := time.Now()
	w.idleSince = now
	p.free = append(p.free, w)
	p.shrinkLocked(now)
	p.mu.Unlock()
}

// shrinkLocked retires the longest-idle slots above thread_pool.
func (p *pool) shrinkLocked(now time.Time) {
	for len(p.all) > p.min && len(p.free) > 0 && now.Sub(p.free[0].idleSince) > p.retire {
		w := p.free[0]
		copy(p.free, p.free[1:])
		p.free[len(p.free)-1] = nil
		p.free = p.free[:len(p.free)-1]
		delete(p.all, w.id)
	}
}

// close makes queued and future waits fail at once so shutdown is not held
// up by requests that never got a worker.
func (p *pool) close() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
}

type poolSnapshot struct {
	queue, threads, idle int
	workers              []WorkerStats
}

func (p *pool) snapshot(withWorkers bool) poolSnapshot {
	p.mu.Lock()
	p.shrinkLocked(time.Now())
	s := poolSnapshot{queue: len(p.waiters), threads: len(p.all), idle: len(p.free)}
	var ws []*worker
	if withWorkers {
		ws = make([]*worker, 0, len(p.all))
		for _, w := range p.all {
			ws = append(ws, w)
		}
	}
	p.mu.Unlock()
	if !withWorkers {
		return s
	}
	s.workers = make([]WorkerStats, len(ws))
	for i, w := range ws {
		secs := time.Duration(w.workNanos.Load()).Seconds()
		r, wr := w.bytesRead.Load(), w.bytesWritten.Load()
		s.workers[i] = WorkerStats{
			ID: w.id, Busy: w.busy.Load(), Requests: w.requests.Load(),
			BytesRead: r, BytesWritten: wr, WorkTime: secs,
			ReadThroughput: throughput(r, secs), WriteThroughput: throughput(wr, secs),
		}
	}
	sortWorkers(s.workers)
	return s
}

func sortWorkers(ws []WorkerStats) {
	for i := 1; i < len(ws); i++ {
		for j := i; j > 0 && ws[j].ID < ws[j-1].ID; j-- {
			ws[j], ws[j-1] = ws[j-1], ws[j]
		}
	}
}
