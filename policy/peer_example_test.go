package policy_test

import (
	"context"
	"log/slog"
	"net"
	"net/http"

	"tlsedge/conninfo"
	"tlsedge/peercred"
	"tlsedge/policy"
)

// Example_peerWiring shows how a server applies peer credentials: read them
// at accept, resolve names if asked to, close a denied connection before
// reading, hand the rest to HTTP with the creds in ConnInfo, and guard
// mounts with Middleware (peercreds_mount_allow) or PeerMiddleware (a mount
// with its own PeerOptions).
func Example_peerWiring() {
	opts := policy.PeerOptions{
		Peercreds:           true,
		PeercredsResolve:    true,
		PeercredsAllowGroup: []string{"www-data", "adm"},
		PeercredsMountAllow: []string{"/admin=uid:0 group:adm"},
	}
	res := peercred.NewResolver(peercred.ResolverConfig{})
	pol, err := policy.NewPeerPolicy(opts, policy.PeerPolicyConfig{Resolver: res, Logger: slog.Default()})
	if err != nil {
		panic(err) // the server reports Validate errors by option name
	}

	// A mount carrying its own options gets PeerMiddleware.
	metricsPol, _ := policy.NewPeerPolicy(policy.PeerOptions{Peercreds: true, PeercredsAllowUID: []string{"0"}}, policy.PeerPolicyConfig{})
	mux := http.NewServeMux()
	mux.Handle("/metrics", policy.PeerMiddleware(http.NotFoundHandler(), metricsPol))
	mux.Handle("/", http.NotFoundHandler())
	handler := pol.Middleware(mux)

	// At accept, before the first read.
	accept := func(c net.Conn) (context.Context, bool) {
		creds, err := peercred.Get(c)
		if err != nil {
			creds = nil // fail closed below if any list is set
		}
		if opts.PeercredsResolve {
			res.Resolve(creds)
		}
		if err := pol.Allow(creds); err != nil {
			slog.Info("peer denied at accept", "err", err)
			c.Close()
			return nil, false
		}
		return conninfo.NewContext(context.Background(), &conninfo.Info{Transport: "unix", Peer: creds}), true
	}
	_, _ = accept, handler
}
