package apps

import "encoding/binary"

// proxyV2Sig opens every PROXY protocol v2 header.
var proxyV2Sig = [12]byte{'\r', '\n', '\r', '\n', 0, '\r', '\n', 'Q', 'U', 'I', 'T', '\n'}

// proxyV2Header builds a PROXY protocol v2 header (haproxy's
// proxy-protocol.txt, section 2.2) for a connection from src to dst. Peers
// without an IP address (UNIX sockets) get the LOCAL command, which tells the
// upstream to use the connection's own addresses.
func proxyV2Header(pe peer) []byte {
	src, dst := pe.addr, pe.local
	if !src.IsValid() || !dst.IsValid() || src.Addr().Is4() != dst.Addr().Is4() {
		// LOCAL command, UNSPEC family, no addresses.
		return append(proxyV2Sig[:], 0x20, 0x00, 0, 0)
	}
	h := append([]byte(nil), proxyV2Sig[:]...)
	h = append(h, 0x21) // version 2, PROXY
	if src.Addr().Is4() {
		h = append(h, 0x11, 0, 12) // TCP over IPv4, 12 address bytes
	} else {
		h = append(h, 0x21, 0, 36) // TCP over IPv6, 36 address bytes
	}
	s, d := src.Addr().AsSlice(), dst.Addr().AsSlice()
	h = append(h, s...)
	h = append(h, d...)
	h = binary.BigEndian.AppendUint16(h, src.Port())
	h = binary.BigEndian.AppendUint16(h, dst.Port())
	return h
}
