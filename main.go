// Command tlsedge is a TLS edge server: it terminates HTTPS with certificate
// files, ACME-managed certificates or a local development CA, authenticates
// local clients by their UNIX peer credentials, and serves or proxies apps.
// Run it with no flags for HTTPS on https://127.0.0.1:8443; see --help.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"tlsedge/cli"
)

func main() {
	// SIGINT and SIGTERM stop gracefully; the command handles SIGHUP itself.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Main(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
