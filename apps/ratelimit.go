package apps

import (
	"sync"
	"time"
)

// logLimiter lets a burst of log lines through and then about rate per
// second, counting what it drops so the next line can say so. Upstream
// failures are logged per request, and a dead upstream or a client sending
// broken bodies on purpose must not flood the log.
type logLimiter struct {
	rate  float64 // lines per second
	burst float64

	mu         sync.Mutex
	tokens     float64
	last       time.Time
	suppressed int
}

func newLogLimiter(rate, burst float64) *logLimiter {
	return &logLimiter{rate: rate, burst: burst, tokens: burst}
}

// allow reports whether a line may be written now, and how many were
// dropped since the last one that was.
func (l *logLimiter) allow(now time.Time) (bool, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.last.IsZero() {
		l.tokens = min(l.burst, l.tokens+now.Sub(l.last).Seconds()*l.rate)
	}
	l.last = now
	if l.tokens < 1 {
		l.suppressed++
		return false, 0
	}
	l.tokens--
	n := l.suppressed
	l.suppressed = 0
	return true, n
}
