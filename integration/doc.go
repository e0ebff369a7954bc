// Package integration holds end-to-end tests: they build the tlsedge binary and
// drive it with real clients (Go's http client, curl, openssl s_client), real
// UNIX sockets and a real ACME CA (pebble) on loopback.
package integration
