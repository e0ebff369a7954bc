package apps

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"strconv"
	"testing"
	"time"
)

// rawHelloUpstream is a minimal HTTP/1.1 upstream on loopback: it reads
// request heads (no bodies) and answers each with a 5-byte body, keeping
// the connection. It allocates next to nothing per request, so that a
// benchmark through it measures the proxy.
func rawHelloUpstream(tb testing.TB) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { ln.Close() })
	const answer = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello"
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					for {
						line, err := br.ReadSlice('\n')
						if err != nil {
							return
						}
						if len(line) == 2 {
							break
						}
					}
					if _, err := io.WriteString(c, answer); err != nil {
						return
					}
				}
			}()
		}
	}()
	return "http://" + ln.Addr().String()
}

// BenchmarkProxyThroughCore is one keep-alive client sending GETs through
// the request core to the proxy and on to a local upstream: the proxy's
// cost per request (ns/op and allocs/op, client and upstream included,
// both minimal).
func BenchmarkProxyThroughCore(b *testing.B) {
	up := rawHelloUpstream(b)
	h, err := New(up, Env{})
	if err != nil {
		b.Fatal(err)
	}
	front, _ := serveCore(b, map[string]http.Handler{"/": h}, nil)
	c, err := net.DialTimeout("tcp", front[len("http://"):], 5*time.Second)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	req := []byte("GET /bench?x=1 HTTP/1.1\r\nHost: bench.example\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n")
	body := make([]byte, 64)
	roundTrip := func() {
		if _, err := c.Write(req); err != nil {
			b.Fatal(err)
		}
		n := -1
		first := true
		for {
			line, err := br.ReadSlice('\n')
			if err != nil {
				b.Fatal(err)
			}
			if first {
				if !bytes.HasPrefix(line, []byte("HTTP/1.1 200 ")) {
					b.Fatalf("answer %q", line)
				}
				first = false
			}
			if len(line) == 2 {
				break
			}
			if v, ok := bytes.CutPrefix(line, []byte("Content-Length: ")); ok {
				n, _ = strconv.Atoi(string(bytes.TrimSpace(v)))
			}
		}
		if n != 5 {
			b.Fatalf("Content-Length %d", n)
		}
		if _, err := io.ReadFull(br, body[:n]); err != nil {
			b.Fatal(err)
		}
	}
	roundTrip() // the upstream connection is pooled from here on
	b.ReportAllocs()
	for b.Loop() {
		roundTrip()
	}
}
