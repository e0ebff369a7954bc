// Package apps holds what tlsedge serves at a mount: reverse proxy, static
// files, status page and metrics, redirects, and the access log.
//
// Everything here is a plain http.Handler (or a middleware around one), so the
// request core, net/http's server or a test can serve it unchanged. New turns a
// mount target into a handler:
//
//	http://HOST:PORT[/base]     reverse proxy over TCP (https:// for TLS upstreams)
//	unix:/path.sock[:/base]     reverse proxy over a UNIX socket
//	dir:/path                   static files
//	status:                     statistics: HTML page, JSON snapshot, /metrics
//	redirect:https://HOST[/p]   permanent redirects
//	UPSTREAM[;weight=N] ...     a pool: several proxy targets separated by
//	                            spaces, chosen by proxy_lb, with passive and
//	                            active health checks (see pool)
//
// Handlers expect the dispatcher to strip the mount prefix from r.URL.Path the
// way http.StripPrefix does, and leave r.RequestURI as the client sent it.
//
// Connection facts come from conninfo.FromContext; headers derived from them
// (peer credentials, TLS facts) are computed by hooks in Env so that the code
// that owns those facts also owns their header names. Whatever the hooks do,
// the proxy first removes every client-supplied copy of those headers, so a
// client can never forge them.
package apps
