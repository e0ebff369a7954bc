// Package httpcore is the pooled request core: the HTTP/1.1 connection engine
// (strict request parsing, bodies, responses, keep-alive), the worker pool with
// admission control, the path-prefix dispatcher, statistics, and h2 via ALPN.
//
// Handlers are plain net/http Handlers, so any Go handler, httputil.ReverseProxy
// or http.FileServer mounts unchanged.
//
// # Design
//
// Each connection is served on its own goroutine (Core.ServeConn). While a
// keep-alive connection waits for its next request it holds no worker and no
// bufio buffers, only a 1-byte read; and once it has been quiet for 100 ms,
// on Linux, not even a goroutine: it is parked in an epoll set of the Core's
// own (see parker) with a timer for socket_timeout, and gets a fresh
// goroutine when its socket becomes readable. An idle TLS keep-alive
// connection then costs about 11 KB, most of it crypto/tls state. An h2
// connection with no stream open is parked the same way (h2park.go), keeping
// only what the protocol needs (the HPACK decoder's table, the peer's
// settings, the windows). When the first
// byte arrives the connection takes its buffers from a pool, reads and
// validates the head under request_header_timeout, then acquires a worker
// slot (thread_pool, growing to thread_pool_max; a full pool queues the
// request for up to accepted_queue_timeout in a queue of accepted_queue_size,
// then answers 503) and runs the handler on the same goroutine. Workers are
// slots rather than goroutines so that admission costs no hand-off.
//
// A head larger than 8 KiB is charged to the Core's memory budget
// (max_buffered_memory, see Budget) while it is read and until its exchange
// ends, so that request heads are bounded in total and not only per
// connection; past the budget a head waits up to a second, then gets 503.
//
// Parsing follows RFC 9110/9112 strictly, because an edge that parses
// differently from the servers behind it is a request-smuggling hole: every
// request it refuses gets a status, a short text/plain body, Connection:
// close, and the connection is closed. One departure from the seeds: a
// request head over max_request_header_size gets 431 (RFC 6585), not 413.
// A request line over it gets 414.
//
// Every request, HTTP/1.x or h2, is made canonical before any handler runs
// (see canonical.go): its path is normalised once (dot segments removed,
// slashes merged, unreserved escapes decoded) and encoded slashes,
// backslashes, control characters and paths above the root are refused,
// so the dispatcher, path rules, static files and a proxy's upstream
// request line all see one path. h2 requests are held to the HTTP/1.1
// rules the h2 protocol leaves open (CONNECT, "*", :path bytes, methods,
// Content-Length), and "OPTIONS *" is answered by the core.
//
// When TLS ALPN selected "h2", ServeConn serves the connection with the
// core's h2 engine (h2own.go: x/net's Framer and HPACK, not its server),
// with the same handler, worker pool, limits, timeouts and statistics
// (h2.go lists how each bound applies to a stream). With the h2c option a
// plain connection that starts with the h2 preface is served by the same
// engine (prior knowledge, h2c.go); the HTTP/1.1 Upgrade to h2c is not
// offered.
// The engine reads every frame on the connection's goroutine, keeps stream
// state and flow control in one place, runs each stream's handler on a
// worker slot, and writes the frames of every stream ready at the moment
// in one write.
package httpcore
