// Package conninfo holds the facts about the connection a request arrived on
// (listener, addresses, TLS state, UNIX peer credentials) and carries them in
// a context. It is a leaf: the terminator, the request core, the policy and
// the apps all read these facts without importing one another.
package conninfo

import (
	"context"
	"crypto/tls"
	"net"

	"tlsedge/peercred"
)

// Info describes the connection a request arrived on: the Go form of the
// connection facts the seeds put into the WSGI environ. The server builds one
// per connection (New), the request core stores it in every request's
// context, and handlers read it with FromContext. It is immutable once the
// connection is being served.
type Info struct {
	Server     string               // name of the server in its Engine; "" for the main server
	Transport  string               // "tcp" or "unix"
	LocalAddr  net.Addr             // the listener's address
	RemoteAddr net.Addr             // the client's address
	TLS        *tls.ConnectionState // nil on plain connections
	Peer       *peercred.Creds      // nil unless a UNIX socket with peercreds enabled
	PeerExe    string               // the peer's executable from /proc at accept, when a peer.exe rule needs it
	// Policy is the server.policy decision made for the whole connection at
	// accept or after the handshake, as "allow rule 3" or "allow (no
	// policy)"; "" when the rules wait for each request.
	Policy string
	// Quota names the policy_quota whose connection limit this connection
	// exceeded; its requests are answered 429 and it is closed. "" when
	// within every quota.
	Quota string
}

// New describes nc as accepted: its transport and addresses, and its TLS
// state when nc is a *tls.Conn whose handshake is done. The caller adds what
// only it knows (Server, Peer) before the connection is served.
func New(nc net.Conn) *Info {
	info := &Info{LocalAddr: nc.LocalAddr(), RemoteAddr: nc.RemoteAddr()}
	if info.LocalAddr != nil {
		info.Transport = info.LocalAddr.Network()
	}
	if tc, ok := nc.(*tls.Conn); ok {
		st := tc.ConnectionState()
		info.TLS = &st
	}
	return info
}

type key struct{}

// NewContext returns ctx carrying info.
func NewContext(ctx context.Context, info *Info) context.Context {
	return context.WithValue(ctx, key{}, info)
}

// FromContext returns the Info stored in ctx, if any.
func FromContext(ctx context.Context) (*Info, bool) {
	info, ok := ctx.Value(key{}).(*Info)
	return info, ok && info != nil
}
