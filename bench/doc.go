// Package bench holds the load benchmark of the request core: core.sh runs
// tlsedge's httpcore engine and a plain net/http server (bench/server, same
// certificate, same handler) side by side, pinned to one core each against
// wrk and h2load on the other, and reports server CPU time per request and
// memory per idle TLS keep-alive connection.
package bench
