// Package httpcore is the pooled request core: the HTTP/1.1 connection engine
// (strict request parsing, bodies, responses, keep-alive), the worker pool with
// admission control, the path-prefix dispatcher, statistics, and h2 via ALPN.
//
// Handlers are plain net/http Handlers, so any Go handler, httputil.ReverseProxy
// or http.FileServer mounts unchanged.
package httpcore
