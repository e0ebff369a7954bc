package peercred

import "errors"

// ErrNotImplemented is returned by Get on operating systems where tlsedge has
// no way to read a UNIX socket peer's credentials. Callers that require
// credentials (an allow-list is configured) must treat it as a denial.
var ErrNotImplemented = errors.New("peercred: not implemented on this OS")

// ErrNotUnixSocket is returned by Get for a connection that is not a UNIX
// domain stream socket (TCP, TLS over TCP, a pipe). Peer credentials only
// exist for UNIX sockets.
var ErrNotUnixSocket = errors.New("peercred: not a UNIX socket connection")
