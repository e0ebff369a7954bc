// Package bench holds the load benchmarks. core.sh runs tlsedge's httpcore
// engine and a plain net/http server (bench/server, same certificate, same
// handler), and optionally nginx, side by side on one core against wrk and
// h2load on the other, and reports server CPU time per request and memory
// per idle TLS keep-alive connection; static.sh compares static file serving
// with nginx. README.md has the figures and where the time goes.
package bench
