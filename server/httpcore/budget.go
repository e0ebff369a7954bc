package httpcore

import (
	"context"
	"errors"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"
)

// A Budget bounds the bytes that requests hold in memory while the core
// reads them, in total across connections: max_buffered_memory. Per
// connection, max_request_header_size bounds a head; but ten thousand
// connections each sending an unfinished head of that size would hold
// gigabytes, and a client can keep each for request_header_timeout. With a
// budget, every head that grows past a small free allowance (headFree)
// charges its buffer to the budget first; past the budget it waits briefly
// for bytes to come back and then gets a 503.
//
// A Budget is safe for concurrent use. One Budget may be shared by several
// Cores (Options.Budget), and by anything else that buffers on behalf of
// clients (h2 header blocks, buffered proxy bodies), so that together they
// stay under one figure.
//
// Bytes given back in a burst (a flood of large heads ending) are returned
// to the operating system soon after: see reclaimMin.
type Budget struct {
	limit int64        // 0: no limit, only counting
	used  atomic.Int64 // written under mu; read without it by InUse

	mu      sync.Mutex
	waiters []*budgetWaiter // first come, first served
	peak    int64           // most bytes in use since the last reclaim
	armed   bool            // a reclaim check is pending
	reclaim func()          // returns freed heap to the OS: debug.FreeOSMemory
	delay   time.Duration   // reclaimDelay; shorter in tests
}

// budgetWaiter is an Acquire waiting for n bytes; ready is closed when they
// have been taken for it.
type budgetWaiter struct {
	n     int64
	ready chan struct{}
}

// Reclaiming: once usage has peaked at reclaimMin bytes or more, a release
// schedules a check reclaimDelay later; if usage has fallen to half the peak
// by then, the Budget calls debug.FreeOSMemory. Go's runtime does give freed
// heap back by itself, but only after a garbage collection that an idle
// server may not run for minutes, and then gradually: a flood of 1,500
// unfinished 490 KB heads left a server at 1.4 GB of RSS for minutes after
// the flood ended. The delay turns a burst of releases into one collection,
// and steady traffic, whose usage never halves from a high peak, into none.
const (
	reclaimMin   = 32 << 20
	reclaimDelay = time.Second
)

// DefaultBufferedMemory is what max_buffered_memory = -1 means: 1/8 of the
// physical memory (or of a cgroup v2 memory limit, if lower), at most 1 GiB;
// 1 GiB where the memory size is unknown. It is at least 64 MiB.
func DefaultBufferedMemory() int64 {
	const most, least = 1 << 30, 64 << 20
	n := physicalMemory() / 8
	if n <= 0 || n > most {
		return most
	}
	return max(n, least)
}

// errMemory503 refuses a head the memory budget has no room for.
var errMemory503 = reject(503, "memory_budget", "server busy, try again")

// ErrBudgetExceeded is returned by Budget.Acquire when the bytes cannot be
// had: more than the whole budget, or the context ended first.
var ErrBudgetExceeded = errors.New("httpcore: memory budget exceeded")

// NewBudget returns a Budget of limit bytes; 0 means no limit (the Budget
// still counts, for InUse).
func NewBudget(limit int64) *Budget {
	return &Budget{limit: max(limit, 0), reclaim: debug.FreeOSMemory, delay: reclaimDelay}
}

// Limit is the budget in bytes; 0: no limit.
func (b *Budget) Limit() int64 { return b.limit }

// InUse is the number of bytes acquired and not yet released.
func (b *Budget) InUse() int64 { return b.used.Load() }

// TryAcquire takes n bytes if they are free now and nobody is waiting
// for bytes, and reports whether it did.
func (b *Budget) TryAcquire(n int64) bool {
	if n <= 0 {
		return true
	}
	b.mu.Lock()
	ok := len(b.waiters) == 0 && b.fitsLocked(n)
	if ok {
		b.takeLocked(n)
	}
	b.mu.Unlock()
	return ok
}

// Acquire takes n bytes, waiting for other holders to release them until
// ctx ends; it returns ErrBudgetExceeded (joined with ctx's error, if any)
// when they could not be had. n larger than the whole budget fails at once.
// Waiters are served in order of arrival.
func (b *Budget) Acquire(ctx context.Context, n int64) error {
	if b.acquire(n, ctx.Done(), nil) {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return errors.Join(ErrBudgetExceeded, err)
	}
	return ErrBudgetExceeded
}

// AcquireTimeout takes n bytes, waiting at most d for them, and reports
// whether it did.
func (b *Budget) AcquireTimeout(n int64, d time.Duration) bool {
	if b.TryAcquire(n) {
		return true
	}
	if d <= 0 {
		return false
	}
	t := time.NewTimer(d)
	defer t.Stop()
	return b.acquire(n, nil, t.C)
}

func (b *Budget) acquire(n int64, done <-chan struct{}, timeout <-chan time.Time) bool {
	if n <= 0 {
		return true
	}
	b.mu.Lock()
	if b.limit > 0 && n > b.limit {
		b.mu.Unlock()
		return false
	}
	if len(b.waiters) == 0 && b.fitsLocked(n) {
		b.takeLocked(n)
		b.mu.Unlock()
		return true
	}
	w := &budgetWaiter{n: n, ready: make(chan struct{})}
	b.waiters = append(b.waiters, w)
	b.mu.Unlock()
	select {
	case <-w.ready:
		return true
	case <-done:
	case <-timeout:
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	select {
	case <-w.ready: // granted as the wait ended
		return true
	default:
	}
	for i, x := range b.waiters {
		if x == w {
			b.waiters = append(b.waiters[:i], b.waiters[i+1:]...)
			if i == 0 {
				b.grantLocked() // the ones behind may fit
			}
			break
		}
	}
	return false
}

func (b *Budget) fitsLocked(n int64) bool {
	return b.limit == 0 || b.used.Load()+n <= b.limit
}

func (b *Budget) takeLocked(n int64) {
	u := b.used.Add(n)
	b.peak = max(b.peak, u)
}

// grantLocked serves the waiters, in order, that fit now.
func (b *Budget) grantLocked() {
	for len(b.waiters) > 0 && b.fitsLocked(b.waiters[0].n) {
		w := b.waiters[0]
		b.waiters[0] = nil
		b.waiters = b.waiters[1:]
		b.takeLocked(w.n)
		close(w.ready)
	}
}

// Release gives back n bytes acquired before.
func (b *Budget) Release(n int64) {
	if n <= 0 {
		return
	}
	b.mu.Lock()
	b.used.Add(-n)
	b.grantLocked()
	if !b.armed && b.reclaim != nil && b.peak >= reclaimMin {
		b.armed = true
		time.AfterFunc(b.delay, b.maybeReclaim)
	}
	b.mu.Unlock()
}

// maybeReclaim returns freed heap to the OS if usage has fallen to half its
// peak; while a flood goes on, the next release checks again.
func (b *Budget) maybeReclaim() {
	b.mu.Lock()
	b.armed = false
	u := b.used.Load()
	if u*2 > b.peak {
		b.mu.Unlock()
		return
	}
	b.peak = u
	f := b.reclaim
	b.mu.Unlock()
	f()
}

type budgetKey struct{}

// BudgetFromContext returns the memory budget of the Core serving the
// request whose context ctx is (nil outside a Core): a handler that holds
// request data in memory (the proxy's request buffering) charges it there,
// so one max_buffered_memory bounds heads and buffered bodies together.
func BudgetFromContext(ctx context.Context) *Budget {
	b, _ := ctx.Value(budgetKey{}).(*Budget)
	return b
}
