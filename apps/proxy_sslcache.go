package apps

import (
	"crypto/tls"
	"net/http"
	"sync"
	"time"

	"tlsedge/conninfo"
	"tlsedge/policy"
)

// sslCache keeps the mod_ssl variables of recent TLS connections, so that a
// keep-alive connection's requests derive them (cipher and protocol names,
// the client certificate's fields and PEM) once, not per request. A
// connection's state does not change after its handshake; an entry is
// still made again after sslCacheTTL, for SSL_CLIENT_V_REMAIN's count of
// days. The cache holds at most sslCacheMax connections and starts over
// when full, so it keeps no more than that alive.
type sslCache struct {
	mu sync.Mutex
	m  map[*tls.ConnectionState]sslEntry
}

type sslEntry struct {
	vars  []policy.Var
	names []string // the header of each var, "" for none
	until time.Time
}

const (
	sslCacheMax = 4096
	sslCacheTTL = time.Minute
)

// get returns the variables of r's TLS connection and their headers, or
// none for a plain one.
func (sc *sslCache) get(r *http.Request) ([]policy.Var, []string) {
	cs := r.TLS
	if ci, ok := conninfo.FromContext(r.Context()); ok && cs == nil {
		cs = ci.TLS
	}
	if cs == nil {
		return nil, nil
	}
	now := time.Now()
	sc.mu.Lock()
	e, ok := sc.m[cs]
	sc.mu.Unlock()
	if ok && now.Before(e.until) {
		return e.vars, e.names
	}
	e = sslEntry{vars: policy.SSLVars(cs, now), until: now.Add(sslCacheTTL)}
	e.names = make([]string, len(e.vars))
	for i, v := range e.vars {
		e.names[i] = sslHeaderName(v.Name)
	}
	sc.mu.Lock()
	if sc.m == nil || len(sc.m) >= sslCacheMax {
		sc.m = make(map[*tls.ConnectionState]sslEntry)
	}
	sc.m[cs] = e
	sc.mu.Unlock()
	return e.vars, e.names
}
