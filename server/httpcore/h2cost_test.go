package httpcore

import (
	"encoding/binary"
	"runtime"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"
)

// What a flood costs the server, for the DoS tests of h2own_test.go and
// h2bounds_test.go: the memory it made the process hold (heapWatch) and
// the frames the server processed before it ended the connection (probes,
// or the bytes it read where a probe cannot be sent). Each test asserts a
// bound on both, derived from the engine's limits, not from speed.

// heapWatch samples the heap and the goroutine stacks in use while a flood
// runs, from a base taken after a GC.
type heapWatch struct {
	base uint64
	peak atomic.Uint64
	stop chan struct{}
	done chan struct{}
}

func watchHeap() *heapWatch {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	h := &heapWatch{base: ms.HeapInuse + ms.StackInuse, stop: make(chan struct{}), done: make(chan struct{})}
	h.peak.Store(h.base)
	go func() {
		defer close(h.done)
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			if n := ms.HeapInuse + ms.StackInuse; n > h.peak.Load() {
				h.peak.Store(n)
			}
			select {
			case <-h.stop:
				return
			case <-tick.C:
			}
		}
	}()
	return h
}

// grew stops the sampling and returns the peak growth over the base, in
// bytes (the client's side of the flood, in the same process, included).
func (h *heapWatch) grew() int64 {
	close(h.stop)
	<-h.done
	return int64(h.peak.Load()) - int64(h.base)
}

// probe sends a PING carrying n. The server acknowledges the PINGs it
// processes, in the order of the frames, so the last probe acknowledged
// before the connection ended (floodEnd) bounds the frames the server
// processed: at least that probe's n, and fewer than the next probe's.
func (f *h2Framer) probe(n uint64) error {
	data := [8]byte{'p', 'r'}
	binary.BigEndian.PutUint32(data[4:], uint32(n))
	return f.writeRaw(func(fr *http2.Framer) error { return fr.WritePing(false, data) })
}

// floodEnd reads f's frames until the connection ends or d passes: the
// first GOAWAY's code, whether one came and whether the connection ended,
// and acked, the n of the last probe acknowledged (0 if none).
func floodEnd(f *h2Framer, d time.Duration) (code http2.ErrCode, got, ended bool, acked uint64) {
	timeout := time.After(d)
	for {
		select {
		case fr, ok := <-f.frames:
			if !ok {
				return code, got, true, acked
			}
			if fr.Type == http2.FrameGoAway && !got {
				code, got = fr.code, true
			}
			if fr.Type == http2.FramePing && fr.Flags.Has(http2.FlagPingAck) {
				if fr.ping[0] == 'p' && fr.ping[1] == 'r' {
					acked = max(acked, uint64(binary.BigEndian.Uint32(fr.ping[4:])))
				}
			}
		case <-timeout:
			return code, got, false, acked
		}
	}
}

// floodBound is the most frames a token bucket of burst and rate (a
// second) lets through in d, plus slack frames.
func floodBound(burst, rate int, d time.Duration, slack int) int {
	return burst + int(float64(rate)*d.Seconds()) + slack
}
