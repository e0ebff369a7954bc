package apps

import "tlsedge/internal/proxyproto"

// proxyV2Header builds a PROXY protocol v2 header (haproxy's
// proxy-protocol.txt, section 2.2) for a connection from src to dst. Peers
// without an IP address (UNIX sockets) get the LOCAL command, which tells the
// upstream to use the connection's own addresses.
func proxyV2Header(pe peer) []byte {
	return proxyproto.AppendV2(nil, pe.addr, pe.local)
}

// proxyV2Sig opens every PROXY protocol v2 header.
var proxyV2Sig = proxyproto.SigV2
