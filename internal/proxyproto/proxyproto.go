// Package proxyproto reads and writes the PROXY protocol header (haproxy's
// proxy-protocol.txt, versions 1 and 2) that a load balancer sends first on
// a connection to say whom it carries it for. The edge writes version 2 to
// upstreams (proxy_protocol) and reads either version on listeners
// (proxy_protocol_accept).
//
// Read never reads past the header: the bytes after it (a ClientHello, a
// request) stay in the socket for whoever reads next, so that nothing needs
// to be buffered in front of the connection and the idle parker and TLS
// terminator see the socket as it is.
package proxyproto

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strconv"
)

// SigV2 opens every version 2 header.
var SigV2 = [12]byte{'\r', '\n', '\r', '\n', 0, '\r', '\n', 'Q', 'U', 'I', 'T', '\n'}

// sigV1 opens every version 1 header.
const sigV1 = "PROXY "

const (
	// MaxV1 is the longest version 1 header, CRLF included (the
	// specification's 107 bytes).
	MaxV1 = 107
	// MaxV2 bounds a version 2 header, TLVs included. The format allows
	// 64 KiB; load balancers send a few hundred bytes at most (addresses
	// and a few TLVs), so more is refused rather than read.
	MaxV2 = 16 + 2048
)

// Header is a parsed PROXY header.
type Header struct {
	Version int
	// Local is the LOCAL command (v2) or UNKNOWN family (v1): the sender
	// speaks for itself (a health check), and the connection's own
	// addresses stand.
	Local bool
	// Src and Dst are the client's and the address it connected to; both
	// valid unless Local.
	Src, Dst netip.AddrPort
}

// ErrBad is a header that is not one: a wrong signature, a malformed line
// or block, an unsupported family, too long.
var ErrBad = errors.New("proxyproto: malformed PROXY protocol header")

func bad(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrBad, fmt.Sprintf(format, args...))
}

// Read reads one header, v1 or v2, from r, reading not one byte past it.
// The caller bounds the time (a deadline on the connection).
func Read(r io.Reader) (Header, error) {
	var b [MaxV1]byte
	// Both versions are at least 15 bytes long ("PROXY UNKNOWN\r\n", and
	// v2's 16-byte block): 8 can be read at once.
	if _, err := io.ReadFull(r, b[:8]); err != nil {
		return Header{}, err
	}
	switch {
	case string(b[:6]) == sigV1:
		n := 8
		for {
			if n >= 2 && b[n-2] == '\r' && b[n-1] == '\n' {
				return ParseV1(b[:n])
			}
			if n == MaxV1 {
				return Header{}, bad("v1 line longer than %d bytes", MaxV1)
			}
			if _, err := io.ReadFull(r, b[n:n+1]); err != nil {
				return Header{}, unexpected(err)
			}
			n++
		}
	case bytes.Equal(b[:8], SigV2[:8]):
		var h [MaxV2]byte
		copy(h[:], b[:8])
		if _, err := io.ReadFull(r, h[8:16]); err != nil {
			return Header{}, unexpected(err)
		}
		l := int(binary.BigEndian.Uint16(h[14:16]))
		if 16+l > MaxV2 {
			return Header{}, bad("v2 header of %d bytes; at most %d are accepted", 16+l, MaxV2)
		}
		if _, err := io.ReadFull(r, h[16:16+l]); err != nil {
			return Header{}, unexpected(err)
		}
		return ParseV2(h[:16+l])
	}
	return Header{}, bad("no PROXY protocol signature")
}

func unexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// ParseV1 parses a whole v1 line, CRLF included:
// "PROXY TCP4|TCP6 SRC DST SPORT DPORT\r\n" or "PROXY UNKNOWN[ ...]\r\n".
func ParseV1(line []byte) (Header, error) {
	if len(line) > MaxV1 || !bytes.HasPrefix(line, []byte(sigV1)) || !bytes.HasSuffix(line, []byte("\r\n")) {
		return Header{}, bad("v1 line not \"PROXY ...\\r\\n\" within %d bytes", MaxV1)
	}
	rest := line[len(sigV1) : len(line)-2]
	if bytes.IndexByte(rest, '\r') >= 0 || bytes.IndexByte(rest, '\n') >= 0 {
		return Header{}, bad("CR or LF inside the v1 line")
	}
	f := bytes.Split(rest, []byte{' '})
	h := Header{Version: 1}
	if string(f[0]) == "UNKNOWN" {
		h.Local = true
		return h, nil
	}
	if len(f) != 5 {
		return Header{}, bad("v1 line has %d fields, want 5", len(f))
	}
	var v4 bool
	switch string(f[0]) {
	case "TCP4":
		v4 = true
	case "TCP6":
	default:
		return Header{}, bad("v1 family %q", f[0])
	}
	src, err1 := parseAddr(f[1], v4)
	dst, err2 := parseAddr(f[2], v4)
	sp, err3 := parsePort(f[3])
	dp, err4 := parsePort(f[4])
	if err := errors.Join(err1, err2, err3, err4); err != nil {
		return Header{}, err
	}
	h.Src, h.Dst = netip.AddrPortFrom(src, sp), netip.AddrPortFrom(dst, dp)
	return h, nil
}

func parseAddr(b []byte, v4 bool) (netip.Addr, error) {
	a, err := netip.ParseAddr(string(b))
	if err != nil || a.Zone() != "" || a.Is4() != v4 {
		return netip.Addr{}, bad("v1 address %q", b)
	}
	return a, nil
}

// parsePort takes 0-65535 in decimal, without sign or leading zeros.
func parsePort(b []byte) (uint16, error) {
	if len(b) == 0 || len(b) > 5 || len(b) > 1 && b[0] == '0' {
		return 0, bad("v1 port %q", b)
	}
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, bad("v1 port %q", b)
		}
	}
	n, err := strconv.Atoi(string(b))
	if err != nil || n > 65535 {
		return 0, bad("v1 port %q", b)
	}
	return uint16(n), nil
}

// ParseV2 parses a whole v2 header: the 16-byte block and the length it
// states. TLVs are skipped.
func ParseV2(b []byte) (Header, error) {
	if len(b) < 16 || !bytes.Equal(b[:12], SigV2[:]) {
		return Header{}, bad("no v2 signature")
	}
	l := int(binary.BigEndian.Uint16(b[14:16]))
	if len(b) != 16+l {
		return Header{}, bad("v2 length %d, but %d bytes follow", l, len(b)-16)
	}
	if b[12]>>4 != 2 {
		return Header{}, bad("v2 version %d", b[12]>>4)
	}
	h := Header{Version: 2}
	switch b[12] & 0xf {
	case 0:
		h.Local = true
		return h, nil
	case 1:
	default:
		return Header{}, bad("v2 command %d", b[12]&0xf)
	}
	body := b[16:]
	switch b[13] {
	case 0x11: // TCP over IPv4
		if len(body) < 12 {
			return Header{}, bad("v2 IPv4 block of %d bytes", len(body))
		}
		h.Src = netip.AddrPortFrom(netip.AddrFrom4([4]byte(body[0:4])), binary.BigEndian.Uint16(body[8:10]))
		h.Dst = netip.AddrPortFrom(netip.AddrFrom4([4]byte(body[4:8])), binary.BigEndian.Uint16(body[10:12]))
	case 0x21: // TCP over IPv6
		if len(body) < 36 {
			return Header{}, bad("v2 IPv6 block of %d bytes", len(body))
		}
		h.Src = netip.AddrPortFrom(netip.AddrFrom16([16]byte(body[0:16])), binary.BigEndian.Uint16(body[32:34]))
		h.Dst = netip.AddrPortFrom(netip.AddrFrom16([16]byte(body[16:32])), binary.BigEndian.Uint16(body[34:36]))
	case 0x00, 0x31: // UNSPEC, UNIX stream: no IP to speak of
		h.Local = true
	default:
		return Header{}, bad("v2 family/transport 0x%02x (only TCP over IPv4 or IPv6, UNIX or UNSPEC)", b[13])
	}
	return h, nil
}

// AppendV2 appends a v2 PROXY header for a connection from src to dst: the
// LOCAL command when either is invalid or their families differ.
func AppendV2(b []byte, src, dst netip.AddrPort) []byte {
	b = append(b, SigV2[:]...)
	if !src.IsValid() || !dst.IsValid() || src.Addr().Is4() != dst.Addr().Is4() {
		return append(b, 0x20, 0x00, 0, 0) // LOCAL, UNSPEC, no addresses
	}
	b = append(b, 0x21) // version 2, PROXY
	if src.Addr().Is4() {
		b = append(b, 0x11, 0, 12)
	} else {
		b = append(b, 0x21, 0, 36)
	}
	b = append(b, src.Addr().AsSlice()...)
	b = append(b, dst.Addr().AsSlice()...)
	b = binary.BigEndian.AppendUint16(b, src.Port())
	return binary.BigEndian.AppendUint16(b, dst.Port())
}

// AppendV1 appends a v1 PROXY line for a connection from src to dst
// (UNKNOWN when either is invalid or their families differ).
func AppendV1(b []byte, src, dst netip.AddrPort) []byte {
	if !src.IsValid() || !dst.IsValid() || src.Addr().Is4() != dst.Addr().Is4() {
		return append(b, "PROXY UNKNOWN\r\n"...)
	}
	fam := "TCP6 "
	if src.Addr().Is4() {
		fam = "TCP4 "
	}
	b = append(b, sigV1+fam...)
	b = append(b, src.Addr().String()+" "+dst.Addr().String()+" "...)
	b = strconv.AppendUint(b, uint64(src.Port()), 10)
	b = append(b, ' ')
	b = strconv.AppendUint(b, uint64(dst.Port()), 10)
	return append(b, "\r\n"...)
}
