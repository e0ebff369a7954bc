package apps

import (
	"bufio"
	"crypto/tls"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"strings"
	"testing"

	"tlsedge/peercred"
)

// tlvUpstream is an upstream that reads a PROXY v2 header with TLVs and
// answers each request with what the header said, one fact a line.
func tlvUpstream(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				facts, err := readTLVs(br)
				if err != nil {
					fmt.Fprintf(c, "HTTP/1.1 400 Bad\r\nContent-Length: 0\r\n\r\n")
					return
				}
				for {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					io.Copy(io.Discard, req.Body)
					body := strings.Join(facts, "\n")
					fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
				}
			}()
		}
	}()
	return "http://" + ln.Addr().String()
}

// readTLVs parses a PROXY v2 header as a receiver would.
func readTLVs(br *bufio.Reader) ([]string, error) {
	var hdr [16]byte
	if _, err := io.ReadFull(br, hdr[:]); err != nil {
		return nil, err
	}
	if string(hdr[:12]) != string(proxyV2Sig[:]) {
		return nil, fmt.Errorf("no signature")
	}
	body := make([]byte, binary.BigEndian.Uint16(hdr[14:]))
	if _, err := io.ReadFull(br, body); err != nil {
		return nil, err
	}
	facts := []string{fmt.Sprintf("cmd=%#x fam=%#x", hdr[12], hdr[13])}
	skip := map[byte]int{0x11: 12, 0x21: 36, 0x31: 216}[hdr[13]]
	if hdr[13] == 0x31 {
		facts = append(facts, "dst="+strings.TrimRight(string(body[108:216]), "\x00"))
	}
	tlvs := body[skip:]
	for len(tlvs) >= 3 {
		typ, n := tlvs[0], int(binary.BigEndian.Uint16(tlvs[1:3]))
		if len(tlvs) < 3+n {
			return nil, fmt.Errorf("TLV %#x overruns the header", typ)
		}
		v := tlvs[3 : 3+n]
		tlvs = tlvs[3+n:]
		switch typ {
		case PP2TypePeerUID, PP2TypePeerGID, PP2TypePeerPID:
			facts = append(facts, fmt.Sprintf("%#x=%d", typ, binary.BigEndian.Uint32(v)))
		case pp2TypeSSL:
			facts = append(facts, fmt.Sprintf("ssl client=%#x verify=%d", v[0], binary.BigEndian.Uint32(v[1:5])))
			for sub := v[5:]; len(sub) >= 3; {
				st, sn := sub[0], int(binary.BigEndian.Uint16(sub[1:3]))
				if st != pp2SubSSLCipher {
					facts = append(facts, fmt.Sprintf("ssl %#x=%s", st, sub[3:3+sn]))
				}
				sub = sub[3+sn:]
			}
		default:
			facts = append(facts, fmt.Sprintf("%#x=%s", typ, v))
		}
	}
	if len(tlvs) != 0 {
		return nil, fmt.Errorf("%d stray bytes after the TLVs", len(tlvs))
	}
	sort.Strings(facts[1:])
	return facts, nil
}

// TestProxyProtocolTLVs: with proxy_protocol_tlv an upstream learns from the
// PROXY v2 header alone who the client is: a UNIX-socket peer's uid, gid and
// pid (under the PROXY command and AF_UNIX family, not LOCAL, so the TLVs
// count), and a TLS client's version, SNI, verification and CN.
func TestProxyProtocolTLVs(t *testing.T) {
	up := tlvUpstream(t)
	h := mustNew(t, up, Env{Options: Options{ProxyProtocol: true, ProxyProtocolTLV: true}})
	sock := serveUnix(t, h, &peercred.Creds{PID: 4242, UID: 65534, GID: 65533})
	resp, err := unixClient(sock).Get("http://x/")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	want := "cmd=0x21 fam=0x31\n0xe1=65534\n0xe2=65533\n0xe3=4242\ndst=" + sock
	if string(b) != want {
		t.Errorf("UNIX peer: upstream saw\n%s\nwant\n%s", b, want)
	}

	ln, ca, client := clientCertListener(t, "tlv")
	front := strings.Replace(serveOn(t, ln, h, nil), "http://127.0.0.1", "https://localhost", 1)
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool, Certificates: []tls.Certificate{client.TLS}}}}
	resp, err = c.Get(front + "/")
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, w := range []string{"cmd=0x21 fam=0x11", "0x2=localhost", "ssl client=0x3 verify=0", "ssl 0x21=TLSv1.3", "ssl 0x22=client-7"} {
		if !strings.Contains(string(b), w) {
			t.Errorf("TLS client: upstream saw\n%s\nlacking %q", b, w)
		}
	}
}

// proxy_protocol_tlv without proxy_protocol is refused, naming both.
func TestProxyProtocolTLVNeedsProxyProtocol(t *testing.T) {
	_, err := New("http://127.0.0.1:1", Env{Options: Options{ProxyProtocolTLV: true}})
	if err == nil || !strings.Contains(err.Error(), "proxy_protocol_tlv: needs proxy_protocol") {
		t.Fatalf("err = %v", err)
	}
}
