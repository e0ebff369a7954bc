package httpcore

import (
	"log/slog"
	"net/http"
	"time"
	"tlsedge/config"
)

// Options configure a Core. Fields with an `opt` tag are user-facing options:
// the server package turns each into a flag (--kebab-name), a config-file key
// (server.name) and a README row, from the tags alone. `default` is written in
// flag syntax; sizes take bytes or units (500KiB), durations plain seconds or Go
// durations (1.5s).
type Options struct {
	ThreadPool           int           `opt:"thread_pool" default:"10" group:"Pool" help:"workers kept ready to run handlers"`
	ThreadPoolMax        int           `opt:"thread_pool_max" default:"-1" group:"Pool" help:"most workers the pool grows to on demand (-1: no limit)"`
	AcceptedQueueSize    int           `opt:"accepted_queue_size" default:"-1" group:"Pool" help:"parsed requests that may wait for a worker (-1: no limit)"`
	AcceptedQueueTimeout time.Duration `opt:"accepted_queue_timeout" default:"10s" group:"Pool" help:"longest a request waits for a worker before a 503"`
	MaxConnections       int           `opt:"max_connections" default:"10000" group:"Pool" help:"open connections allowed; past it new ones get a fast 503"`

	SocketTimeout        time.Duration `opt:"socket_timeout" default:"10s" group:"Timeouts" help:"wait for the first byte and between keep-alive requests"`
	RequestHeaderTimeout time.Duration `opt:"request_header_timeout" default:"10s" group:"Timeouts" help:"time to receive a whole request head (slowloris bound)"`
	MinRequestBodyRate   int64         `opt:"min_request_body_rate" default:"1KiB" unit:"bytes" group:"Timeouts" help:"slowest request body upload tolerated, bytes per second"`
	WriteTimeout         time.Duration `opt:"write_timeout" default:"30s" group:"Timeouts" help:"longest a single response write may block (slow readers)"`

	MaxRequestHeaderSize int64  `opt:"max_request_header_size" default:"500KiB" unit:"bytes" group:"Limits" help:"largest request head; larger gets 431"`
	MaxRequestBodySize   int64  `opt:"max_request_body_size" default:"100MiB" unit:"bytes" group:"Limits" help:"largest request body; larger gets 413 (0: no limit)"`
	ProtocolVersion      string `opt:"protocol_version" default:"HTTP/1.1" group:"HTTP" help:"highest HTTP version used in responses (HTTP/1.0 or HTTP/1.1)"`
	ServerName           string `opt:"server_name" default:"tlsedge" group:"HTTP" help:"value of the Server response header (empty: none)"`
	Statistics           bool   `opt:"statistics" default:"false" group:"HTTP" help:"keep request, byte and worker statistics"`
	// H2C serves h2 with prior knowledge on plain connections (h2c.go):
	// for an edge behind a TLS-terminating balancer that speaks h2 to it,
	// or for local clients on a UNIX socket. It is cleartext.
	H2C bool `opt:"h2c" default:"false" group:"HTTP" help:"serve h2 over cleartext to clients that start with the h2 preface (prior knowledge, RFC 9113 3.3); plain listeners only (ssl_module none; TCP or socket_file): cleartext, for a trusted balancer or local clients"`

	// MaxBufferedMemory bounds the request heads being read, in total across
	// connections (see Budget); -1 means DefaultBufferedMemory().
	MaxBufferedMemory int64 `opt:"max_buffered_memory" default:"-1" unit:"bytes" group:"Limits" help:"memory request heads and buffered request bodies may hold together; past it a head waits up to 1s, then gets 503, and a body goes to disk (-1: 1/8 of physical memory, at most 1GiB; 0: no limit)"`

	Handler http.Handler `opt:"-"` // serves every request; nil answers 404
	// Reserved picks the requests served by a small lane of their own
	// (status pages, metrics) instead of the worker pool, so that they are
	// answered when every worker is busy: at most reservedWorkers at once,
	// a short queue, and a fast 503 past it. Nil reserves nothing. It sees
	// the canonical request and must be quick.
	Reserved func(*http.Request) bool `opt:"-"`
	// Prepare runs on every request once it is parsed and canonical, before
	// it waits for a worker (the server gives it its request id there, so
	// that the core's own 5xx answers carry the id too). Nil does nothing.
	Prepare     func(*http.Request) `opt:"-"`
	Budget      *Budget             `opt:"-"` // a memory budget shared with others; nil: the Core makes its own of max_buffered_memory
	Logger      *slog.Logger        `opt:"-"` // nil discards
	BindAddress string              `opt:"-"` // the listener's address, reported as a label in Stats; "" if unknown

	// AllowEncodedSlash keeps %2F in request paths (encoded in the escaped
	// path, '/' in r.URL.Path) instead of answering 400. It is the hook for
	// mounts whose upstream gives %2F a meaning of its own; not an option
	// yet, because it applies to every mount of the core. See canonicalPath.
	AllowEncodedSlash bool `opt:"-"`

	// DisableExtendedConnect stops advertising SETTINGS_ENABLE_CONNECT_PROTOCOL
	// on h2 and refuses :protocol (RFC 8441), as x/net's server does by
	// default. A browser that sees the setting opens its WebSockets to the
	// origin as extended CONNECTs and does not fall back to an HTTP/1.1
	// Upgrade, so it must stay off when some handler can only answer the
	// Upgrade (gorilla/websocket and most Go WebSocket packages).
	DisableExtendedConnect bool `opt:"-"`
}

// DefaultOptions returns Options holding every documented default, read
// from the `default` tags above (the one place they are written), for
// library users and tests that set only what they change.
func DefaultOptions() Options { return config.Defaults[Options]() }
