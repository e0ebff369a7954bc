package proxyproto

import (
	"bytes"
	"errors"
	"io"
	"net/netip"
	"strings"
	"testing"
)

func TestRead(t *testing.T) {
	ap := netip.MustParseAddrPort
	v2 := func(src, dst string) []byte { return AppendV2(nil, ap(src), ap(dst)) }
	withTLV := func(b []byte, tlv []byte) []byte {
		b = append(b, tlv...)
		n := int(b[14])<<8 | int(b[15])
		n += len(tlv)
		b[14], b[15] = byte(n>>8), byte(n)
		return b
	}
	for _, tc := range []struct {
		name     string
		in       []byte
		src, dst string // "" for Local
		local    bool
		bad      bool
	}{
		{name: "v1 tcp4", in: []byte("PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n"), src: "192.0.2.1:56324", dst: "198.51.100.2:443"},
		{name: "v1 tcp6", in: []byte("PROXY TCP6 2001:db8::1 2001:db8::2 1 65535\r\n"), src: "[2001:db8::1]:1", dst: "[2001:db8::2]:65535"},
		{name: "v1 unknown", in: []byte("PROXY UNKNOWN\r\n"), local: true},
		{name: "v1 unknown with addresses", in: []byte("PROXY UNKNOWN ffff:f::1 ffff:f::2 1 2\r\n"), local: true},
		{name: "v1 family mismatch", in: []byte("PROXY TCP4 2001:db8::1 192.0.2.1 1 2\r\n"), bad: true},
		{name: "v1 port overflow", in: []byte("PROXY TCP4 192.0.2.1 192.0.2.2 65536 2\r\n"), bad: true},
		{name: "v1 leading zero", in: []byte("PROXY TCP4 192.0.2.1 192.0.2.2 080 2\r\n"), bad: true},
		{name: "v1 signed port", in: []byte("PROXY TCP4 192.0.2.1 192.0.2.2 +80 2\r\n"), bad: true},
		{name: "v1 bare LF", in: []byte("PROXY TCP4 192.0.2.1 192.0.2.2 80 2\n"), bad: true},
		{name: "v1 double space", in: []byte("PROXY TCP4  192.0.2.1 192.0.2.2 80 2\r\n"), bad: true},
		{name: "v1 zone", in: []byte("PROXY TCP6 fe80::1%eth0 fe80::2 80 2\r\n"), bad: true},
		{name: "v1 too long", in: []byte("PROXY TCP4 " + strings.Repeat("1", 120) + "\r\n"), bad: true},
		{name: "v1 truncated", in: []byte("PROXY TCP4 192.0.2.1"), bad: true},
		{name: "v2 tcp4", in: v2("192.0.2.1:56324", "198.51.100.2:443"), src: "192.0.2.1:56324", dst: "198.51.100.2:443"},
		{name: "v2 tcp6", in: v2("[2001:db8::1]:5", "[2001:db8::2]:6"), src: "[2001:db8::1]:5", dst: "[2001:db8::2]:6"},
		{name: "v2 local", in: AppendV2(nil, netip.AddrPort{}, netip.AddrPort{}), local: true},
		{name: "v2 with TLV", in: withTLV(v2("192.0.2.1:1", "192.0.2.2:2"), []byte{0x04, 0, 3, 'a', 'b', 'c'}), src: "192.0.2.1:1", dst: "192.0.2.2:2"},
		{name: "v2 udp", in: append(append(SigV2[:], 0x21, 0x12, 0, 12), make([]byte, 12)...), bad: true},
		{name: "v2 version 3", in: append(append(SigV2[:], 0x31, 0x11, 0, 12), make([]byte, 12)...), bad: true},
		{name: "v2 short block", in: append(append(SigV2[:], 0x21, 0x11, 0, 4), make([]byte, 4)...), bad: true},
		{name: "v2 too long", in: append(append(SigV2[:], 0x21, 0x11, 0xff, 0xff), make([]byte, 100)...), bad: true},
		{name: "v2 truncated", in: v2("192.0.2.1:1", "192.0.2.2:2")[:20], bad: true},
		{name: "no header", in: []byte("GET / HTTP/1.1\r\n\r\n"), bad: true},
		{name: "TLS hello", in: []byte{0x16, 3, 1, 0, 5, 1, 0, 0, 1, 0}, bad: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const after = "GET / HTTP/1.1\r\n"
			in := append([]byte(nil), tc.in...)
			if !tc.bad {
				in = append(in, after...) // a truncated header would read on into it
			}
			r := bytes.NewReader(in)
			h, err := Read(r)
			if tc.bad {
				if err == nil {
					t.Fatalf("Read = %+v, want an error", h)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if h.Local != tc.local {
				t.Fatalf("Local = %v, want %v", h.Local, tc.local)
			}
			if !tc.local && (h.Src != ap(tc.src) || h.Dst != ap(tc.dst)) {
				t.Fatalf("got %v -> %v, want %s -> %s", h.Src, h.Dst, tc.src, tc.dst)
			}
			rest, _ := io.ReadAll(r)
			if string(rest) != after {
				t.Fatalf("Read took bytes past the header: %q left", rest)
			}
		})
	}
}

func TestBadIsErrBad(t *testing.T) {
	_, err := Read(strings.NewReader("PROXY TCP9 a b c d\r\n"))
	if !errors.Is(err, ErrBad) {
		t.Fatalf("err = %v, want ErrBad", err)
	}
}

// FuzzRead: whatever the bytes, Read ends without panicking and reads at
// most the bound; a header it accepts is written again (v1 and v2) into
// one it reads back the same.
func FuzzRead(f *testing.F) {
	f.Add([]byte("PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n"))
	f.Add([]byte("PROXY TCP6 2001:db8::1 2001:db8::2 1 65535\r\nGET"))
	f.Add([]byte("PROXY UNKNOWN\r\n"))
	f.Add(AppendV2(nil, netip.MustParseAddrPort("192.0.2.1:1"), netip.MustParseAddrPort("192.0.2.2:2")))
	f.Add(AppendV2(nil, netip.MustParseAddrPort("[::1]:1"), netip.MustParseAddrPort("[::2]:2")))
	f.Add(append(SigV2[:], 0x21, 0x31, 0, 0))
	f.Fuzz(func(t *testing.T, in []byte) {
		r := bytes.NewReader(in)
		h, err := Read(r)
		if used := len(in) - r.Len(); used > MaxV2 {
			t.Fatalf("read %d bytes, more than MaxV2", used)
		}
		if err != nil || h.Local {
			return
		}
		for _, enc := range [][]byte{AppendV2(nil, h.Src, h.Dst), AppendV1(nil, h.Src, h.Dst)} {
			h2, err := Read(bytes.NewReader(enc))
			if err != nil {
				t.Fatalf("re-encoded %q: %v", enc, err)
			}
			if h2.Src != h.Src || h2.Dst != h.Dst {
				t.Fatalf("round trip %v->%v became %v->%v", h.Src, h.Dst, h2.Src, h2.Dst)
			}
		}
	})
}
