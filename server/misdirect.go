package server

import (
	"net/http"

	"tlsedge/conninfo"
	"tlsedge/policy"
	"tlsedge/router"
	"tlsedge/server/httpcore"
	"tlsedge/tlsadapter"
)

// misdirect is the misdirected-request check of one generation: on a TLS
// connection, a request whose Host names a certificate other than the one
// its ClientHello's SNI was served is answered 421 before anything else
// sees it (see tlsadapter.Terminator.Misdirected). It stands in guard, the
// one place every request of a server passes whatever its mount, so host
// routing can never take a request to the mounts of a name its connection
// was not made for. term and core are set once the generation has them,
// before it serves.
type misdirect struct {
	term *tlsadapter.Terminator
	core *httpcore.Core
}

// reasonMisdirected is the rejection reason the 421s are counted under.
const reasonMisdirected = "misdirected"

func (m *misdirect) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if info, ok := conninfo.FromContext(r.Context()); ok && info.TLS != nil && m.term != nil {
			host := router.RequestHost(r)
			if host != "" && m.term.Misdirected(info.TLS.ServerName, host, info.LocalAddr, info.RemoteAddr) {
				if m.core != nil {
					m.core.CountRejection(http.StatusMisdirectedRequest, reasonMisdirected)
				}
				policy.Refuse(w, http.StatusMisdirectedRequest, "misdirected request: this connection was made for another host; connect to this one by its name")
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}
