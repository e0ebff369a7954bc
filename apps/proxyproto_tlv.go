package apps

import (
	"encoding/binary"
	"net/http"

	"tlsedge/conninfo"
	"tlsedge/policy"
)

// PROXY protocol v2 TLV types (haproxy's proxy-protocol.txt, section 2.2.x),
// and tlsedge's own in the range reserved for custom use.
const (
	pp2TypeALPN      = 0x01
	pp2TypeAuthority = 0x02 // the SNI the client sent
	pp2TypeSSL       = 0x20
	pp2SubSSLVersion = 0x21
	pp2SubSSLCN      = 0x22
	pp2SubSSLCipher  = 0x23
	pp2ClientSSL     = 0x01
	pp2ClientCert    = 0x02 // a certificate was presented on this connection

	// PP2TypeSPIFFE carries the SPIFFE ID (the first spiffe:// URI SAN) of a
	// verified client certificate.
	PP2TypeSPIFFE = 0xE0
	// PP2TypePeerUID, PP2TypePeerGID and PP2TypePeerPID carry a UNIX-socket
	// client's credentials as the kernel reported them at accept, as 4-byte
	// big-endian integers.
	PP2TypePeerUID = 0xE1
	PP2TypePeerGID = 0xE2
	PP2TypePeerPID = 0xE3
)

// unixAddrLen is the size of each address of the AF_UNIX family block.
const unixAddrLen = 108

// proxyV2HeaderTLV is proxyV2Header with the client's verified facts as
// TLVs. A UNIX-socket client gets the PROXY command with the AF_UNIX family
// (an unnamed source, the listener's path as destination) rather than
// LOCAL, whose TLVs a receiver is told to discard.
func proxyV2HeaderTLV(pe peer, r *http.Request) []byte {
	ci, _ := conninfo.FromContext(r.Context())
	var h []byte
	if pe.unixPeer && ci != nil {
		h = append(h, proxyV2Sig[:]...)
		h = append(h, 0x21, 0x31, 0, 0) // version 2 PROXY, UNIX stream; length below
		var addrs [2 * unixAddrLen]byte
		if ci.LocalAddr != nil {
			copy(addrs[unixAddrLen:2*unixAddrLen-1], ci.LocalAddr.String())
		}
		h = append(h, addrs[:]...)
	} else {
		h = proxyV2Header(pe)
		if h[12] == 0x20 {
			return h // LOCAL: a receiver discards what follows
		}
	}
	cs := r.TLS
	if cs == nil && ci != nil {
		cs = ci.TLS
	}
	if cs != nil {
		if cs.NegotiatedProtocol != "" {
			h = appendTLV(h, pp2TypeALPN, []byte(cs.NegotiatedProtocol))
		}
		if cs.ServerName != "" {
			h = appendTLV(h, pp2TypeAuthority, []byte(cs.ServerName))
		}
		leaf, verified := policy.ClientCertificate(cs)
		client := byte(pp2ClientSSL)
		if leaf != nil {
			client |= pp2ClientCert
		}
		verify := uint32(1) // not verified: no certificate, or none checked
		if verified {
			verify = 0
		}
		ssl := []byte{client}
		ssl = binary.BigEndian.AppendUint32(ssl, verify)
		ssl = appendTLV(ssl, pp2SubSSLVersion, []byte(policy.ProtocolName(cs.Version)))
		ssl = appendTLV(ssl, pp2SubSSLCipher, []byte(policy.CipherName(cs.CipherSuite)))
		if verified && leaf.Subject.CommonName != "" {
			ssl = appendTLV(ssl, pp2SubSSLCN, []byte(leaf.Subject.CommonName))
		}
		h = appendTLV(h, pp2TypeSSL, ssl)
		if verified {
			for _, u := range leaf.URIs {
				if u.Scheme == "spiffe" {
					h = appendTLV(h, PP2TypeSPIFFE, []byte(u.String()))
					break
				}
			}
		}
	}
	if ci != nil && ci.Peer != nil {
		h = appendTLV(h, PP2TypePeerUID, binary.BigEndian.AppendUint32(nil, ci.Peer.UID))
		h = appendTLV(h, PP2TypePeerGID, binary.BigEndian.AppendUint32(nil, ci.Peer.GID))
		h = appendTLV(h, PP2TypePeerPID, binary.BigEndian.AppendUint32(nil, uint32(ci.Peer.PID)))
	}
	binary.BigEndian.PutUint16(h[14:16], uint16(len(h)-16))
	return h
}

// appendTLV appends one type-length-value; values longer than a TLV holds
// are cut (no fact the edge sends comes near 64 KiB).
func appendTLV(b []byte, typ byte, v []byte) []byte {
	if len(v) > 0xffff {
		v = v[:0xffff]
	}
	b = append(b, typ)
	b = binary.BigEndian.AppendUint16(b, uint16(len(v)))
	return append(b, v...)
}
