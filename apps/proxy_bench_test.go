package apps

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"syscall"
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

// benchClient is one keep-alive client connection of the proxy benchmarks.
type benchClient struct {
	c    net.Conn
	br   *bufio.Reader
	body []byte
}

var benchRequest = []byte("GET /bench?x=1 HTTP/1.1\r\nHost: bench.example\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n")

func dialBench(tb testing.TB, front string) *benchClient {
	c, err := net.DialTimeout("tcp", front[len("http://"):], 5*time.Second)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	return &benchClient{c: c, br: bufio.NewReader(c), body: make([]byte, 64)}
}

// roundTrip sends one GET and reads the 5-byte answer.
func (bc *benchClient) roundTrip() error {
	if _, err := bc.c.Write(benchRequest); err != nil {
		return err
	}
	n := -1
	first := true
	for {
		line, err := bc.br.ReadSlice('\n')
		if err != nil {
			return err
		}
		if first {
			if !bytes.HasPrefix(line, []byte("HTTP/1.1 200 ")) {
				return fmt.Errorf("answer %q", line)
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
		return fmt.Errorf("Content-Length %d", n)
	}
	_, err := io.ReadFull(bc.br, bc.body[:n])
	return err
}

func benchProxyFront(b *testing.B) string {
	up := rawHelloUpstream(b)
	h, err := New(up, Env{})
	if err != nil {
		b.Fatal(err)
	}
	front, _ := serveCore(b, map[string]http.Handler{"/": h}, nil)
	return front
}

// BenchmarkProxyThroughCore is one keep-alive client sending GETs through
// the request core to the proxy and on to a local upstream: the proxy's
// cost per request (ns/op and allocs/op, client and upstream included,
// both minimal).
func BenchmarkProxyThroughCore(b *testing.B) {
	bc := dialBench(b, benchProxyFront(b))
	if err := bc.roundTrip(); err != nil { // the upstream connection is pooled from here on
		b.Fatal(err)
	}
	b.ReportAllocs()
	cpu := processCPU()
	for b.Loop() {
		if err := bc.roundTrip(); err != nil {
			b.Fatal(err)
		}
	}
	reportCPU(b, cpu)
}

// processCPU is the process's CPU time so far (user and system), from
// getrusage: on a shared machine a steadier figure than the wall clock.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// reportCPU reports the process CPU time per iteration since start as
// cpu-ns/op: proxy, core, client and upstream together.
func reportCPU(b *testing.B, start time.Duration) {
	b.ReportMetric(float64(processCPU()-start)/float64(b.N), "cpu-ns/op")
}

// BenchmarkProxyThroughCoreParallel keeps 16 keep-alive clients busy at
// once, as a loaded edge is: ns/op is then about the CPU time a request
// costs the process (proxy, core, client and upstream together), not one
// client's latency.
func BenchmarkProxyThroughCoreParallel(b *testing.B) {
	front := benchProxyFront(b)
	clients := make(chan *benchClient, 64)
	b.ReportAllocs()
	b.SetParallelism(8)
	b.ResetTimer()
	cpu := processCPU()
	defer reportCPU(b, cpu)
	b.RunParallel(func(pb *testing.PB) {
		var bc *benchClient
		select {
		case bc = <-clients:
		default:
			bc = dialBench(b, front)
		}
		defer func() { clients <- bc }()
		for pb.Next() {
			if err := bc.roundTrip(); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
