package httpcore

import (
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// Stats is a point-in-time snapshot of a Core's figures: every figure cheroot's
// statistics keep, plus rejections by status and reason, open and idle
// connections, and per-worker figures. It is a plain value, safe to keep,
// compare and encode as JSON.
//
// Durations are reported in seconds (float) because that is what cheroot's
// figures, the status page and Prometheus all expect. Throughputs are bytes
// per second of work time, as cheroot computes them.
type Stats struct {
	Enabled     bool    `json:"enabled"`      // statistics=true; when false only the gauges below are filled
	BindAddress string  `json:"bind_address"` // Options.BindAddress, as a label
	RunTime     float64 `json:"run_time"`     // seconds since New

	Accepts       uint64  `json:"accepts"`         // connections accepted (Core.CountAccept)
	AcceptsPerSec float64 `json:"accepts_per_sec"` // Accepts / RunTime
	SocketErrors  uint64  `json:"socket_errors"`   // accept and connection-level I/O errors

	Queue       int `json:"queue"`        // parsed requests waiting for a worker
	Threads     int `json:"threads"`      // workers in the pool (busy + idle)
	ThreadsIdle int `json:"threads_idle"` // workers not running a handler

	Requests        uint64  `json:"requests"`         // requests handed to the handler (h1 and h2)
	BytesRead       uint64  `json:"bytes_read"`       // bytes read from clients, heads and bodies
	BytesWritten    uint64  `json:"bytes_written"`    // bytes written to clients
	WorkTime        float64 `json:"work_time"`        // seconds spent holding a worker
	ReadThroughput  float64 `json:"read_throughput"`  // BytesRead / WorkTime
	WriteThroughput float64 `json:"write_throughput"` // BytesWritten / WorkTime

	ConnectionsOpen int64 `json:"connections_open"` // connections being served now
	ConnectionsIdle int64 `json:"connections_idle"` // of those, waiting for a next request
	H2Connections   int64 `json:"h2_connections"`   // of those, served as h2

	StreamResets        uint64 `json:"stream_resets"`         // h2 streams the core reset: a write blocked for write_timeout
	BufferedMemory      int64  `json:"buffered_memory"`       // bytes charged to the memory budget now (by every Core sharing it)
	BufferedMemoryLimit int64  `json:"buffered_memory_limit"` // the budget, max_buffered_memory, in bytes; 0: no limit
	MemoryWaits         uint64 `json:"memory_waits"`          // request heads that had to wait for the budget
	MemoryRejections    uint64 `json:"memory_rejections"`     // request heads refused with 503 because the budget stayed full

	Rejections []Rejection   `json:"rejections"` // requests refused by the core, by status and reason, sorted
	Workers    []WorkerStats `json:"workers"`    // one row per worker in the pool, by ID
}

// Rejection counts responses the core generated itself instead of the
// handler: malformed requests (400, 505...), limits (413, 414, 431),
// timeouts (408) and admission (503).
type Rejection struct {
	Status int    `json:"status"`
	Reason string `json:"reason"` // short stable key, e.g. "bad_content_length", "queue_full"
	Count  uint64 `json:"count"`
}

// WorkerStats are the figures of one worker slot. A worker retired when the
// pool shrinks leaves its figures in the totals of Stats.
type WorkerStats struct {
	ID              int     `json:"id"`
	Busy            bool    `json:"busy"`
	Requests        uint64  `json:"requests"`
	BytesRead       uint64  `json:"bytes_read"`
	BytesWritten    uint64  `json:"bytes_written"`
	WorkTime        float64 `json:"work_time"` // seconds
	ReadThroughput  float64 `json:"read_throughput"`
	WriteThroughput float64 `json:"write_throughput"`
}

// counters are the live figures behind Stats. They exist only when
// statistics are on: the Core keeps a nil *counters otherwise, so every
// update is a single nil check and costs nothing else.
type counters struct {
	requests     atomic.Uint64
	bytesRead    atomic.Uint64
	bytesWritten atomic.Uint64
	workNanos    atomic.Int64
	streamResets atomic.Uint64

	mu         sync.Mutex
	rejections map[rejectKey]uint64
}

type rejectKey struct {
	status int
	reason string
}

func newCounters() *counters {
	return &counters{rejections: make(map[rejectKey]uint64)}
}

// gauges are kept whether or not statistics are on: admission and graceful
// shutdown need them anyway.
type gauges struct {
	accepts      atomic.Uint64
	socketErrors atomic.Uint64
	connsOpen    atomic.Int64
	connsIdle    atomic.Int64
	h2Conns      atomic.Int64
	memWaits     atomic.Uint64
	memRejects   atomic.Uint64
}

func (c *counters) reject(status int, reason string) {
	c.mu.Lock()
	c.rejections[rejectKey{status, reason}]++
	c.mu.Unlock()
}

func throughput(bytes uint64, secs float64) float64 {
	if secs <= 0 {
		return 0
	}
	return float64(bytes) / secs
}

// Stats returns a snapshot. With statistics off it reports only the gauges
// the core keeps anyway (connections, pool size, queue), so it stays cheap.
func (c *Core) Stats() Stats {
	now := time.Now()
	s := Stats{
		BindAddress:     c.opts.BindAddress,
		RunTime:         now.Sub(c.started).Seconds(),
		Accepts:         c.g.accepts.Load(),
		SocketErrors:    c.g.socketErrors.Load(),
		ConnectionsOpen: c.g.connsOpen.Load(),
		ConnectionsIdle: c.g.connsIdle.Load(),
		H2Connections:   c.g.h2Conns.Load(),

		BufferedMemory:      c.budget.InUse(),
		BufferedMemoryLimit: c.budget.Limit(),
		MemoryWaits:         c.g.memWaits.Load(),
		MemoryRejections:    c.g.memRejects.Load(),
	}
	if s.RunTime > 0 {
		s.AcceptsPerSec = float64(s.Accepts) / s.RunTime
	}
	ps := c.pool.snapshot(c.st != nil)
	s.Queue, s.Threads, s.ThreadsIdle = ps.queue, ps.threads, ps.idle
	if c.st == nil {
		return s
	}
	s.Enabled = true
	s.Requests = c.st.requests.Load()
	s.BytesRead = c.st.bytesRead.Load()
	s.BytesWritten = c.st.bytesWritten.Load()
	s.WorkTime = time.Duration(c.st.workNanos.Load()).Seconds()
	s.StreamResets = c.st.streamResets.Load()
	s.ReadThroughput = throughput(s.BytesRead, s.WorkTime)
	s.WriteThroughput = throughput(s.BytesWritten, s.WorkTime)
	s.Workers = ps.workers
	c.st.mu.Lock()
	s.Rejections = make([]Rejection, 0, len(c.st.rejections))
	for k, n := range c.st.rejections {
		s.Rejections = append(s.Rejections, Rejection{Status: k.status, Reason: k.reason, Count: n})
	}
	c.st.mu.Unlock()
	sort.Slice(s.Rejections, func(i, j int) bool {
		a, b := s.Rejections[i], s.Rejections[j]
		if a.Status != b.Status {
			return a.Status < b.Status
		}
		return a.Reason < b.Reason
	})
	return s
}

// CountAccept records one accepted connection; the server's accept loop calls it.
func (c *Core) CountAccept() { c.g.accepts.Add(1) }

// CountSocketError records one socket-level error (a failed accept or
// handshake); the server's accept loop calls it.
func (c *Core) CountSocketError() { c.g.socketErrors.Add(1) }
