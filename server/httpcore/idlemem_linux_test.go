package httpcore

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// BenchmarkIdleConnMemory reports what an idle connection costs the server
// in live heap and goroutine stacks, HTTP/1.1 and h2 side by side on one
// core: idleConns TLS connections of each kind, one request made on each,
// then held with nothing going on. The clients run in a child process (this
// test binary again, TestIdleConnClient), so the figures are the server's
// alone. Run it with -benchtime=1x; IDLE_HEAP_PROFILE=file writes a heap
// profile (every allocation sampled) with both kinds of connection open.
func BenchmarkIdleConnMemory(b *testing.B) {
	const idleConns = 300
	if p := os.Getenv("IDLE_HEAP_PROFILE"); p != "" {
		old := runtime.MemProfileRate
		runtime.MemProfileRate = 1
		defer func() { runtime.MemProfileRate = old }()
	}
	c := newCore(b, Text("hello"), nil)
	addr, _ := startTLS(b, c)
	// One connection of each kind first, so that what is made once per
	// core (the parker, pools) is not counted per connection.
	warm := []*exec.Cmd{idleClient(b, addr, "http/1.1", 1), idleClient(b, addr, "h2", 1)}
	settle(b, c, 2)
	for range b.N {
		before := memNow()
		idleClient(b, addr, "http/1.1", idleConns)
		settle(b, c, 2+idleConns)
		h1 := memNow()
		idleClient(b, addr, "h2", idleConns)
		settle(b, c, 2+2*idleConns)
		h2 := memNow()
		per := func(a, z runtime.MemStats, f func(runtime.MemStats) uint64) float64 {
			return (float64(f(z)) - float64(f(a))) / idleConns
		}
		heap := func(m runtime.MemStats) uint64 { return m.HeapAlloc }
		stack := func(m runtime.MemStats) uint64 { return m.StackInuse }
		b.ReportMetric(per(before, h1, heap), "h1-heap-B/conn")
		b.ReportMetric(per(before, h1, stack), "h1-stack-B/conn")
		b.ReportMetric(per(h1, h2, heap), "h2-heap-B/conn")
		b.ReportMetric(per(h1, h2, stack), "h2-stack-B/conn")
		b.ReportMetric(float64(runtime.NumGoroutine()), "goroutines")
		if p := os.Getenv("IDLE_HEAP_PROFILE"); p != "" {
			f, err := os.Create(p)
			if err != nil {
				b.Fatal(err)
			}
			pprof.Lookup("heap").WriteTo(f, 0)
			f.Close()
		}
		break // one measurement, whatever b.N
	}
	_ = warm
}

// settle waits until the core has n connections open, idle ones parked
// where they park, and the hot waits over.
func settle(b *testing.B, c *Core, n int) {
	b.Helper()
	if !waitFor(30*time.Second, func() bool { return c.Stats().ConnectionsOpen == int64(n) }) {
		b.Fatalf("%d connections open, want %d", c.Stats().ConnectionsOpen, n)
	}
	time.Sleep(3 * idleHotWait)
	waitFor(2*time.Second, func() bool { return c.Stats().ConnectionsIdle == int64(n) })
	time.Sleep(idleHotWait)
}

func memNow() runtime.MemStats {
	var m runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&m)
	return m
}

// idleClient starts the child that holds n idle connections of proto to
// addr; it ends when the test does (its stdin closes).
func idleClient(b *testing.B, addr, proto string, n int) *exec.Cmd {
	b.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestIdleConnClient$", "-test.count=1")
	cmd.Env = append(os.Environ(), "IDLE_CLIENT="+addr+","+proto+","+strconv.Itoa(n))
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { stdin.Close(); cmd.Wait() })
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "idle ") {
			go io.Copy(io.Discard, out)
			return cmd
		}
		if strings.HasPrefix(sc.Text(), "FAIL") || strings.HasPrefix(sc.Text(), "---") {
			b.Fatalf("idle client: %s", sc.Text())
		}
	}
	b.Fatal("idle client ended before its connections were open")
	return nil
}

// TestIdleConnClient is BenchmarkIdleConnMemory's child: it opens the
// connections IDLE_CLIENT names (addr,proto,n), one request on each, prints
// "idle n" and holds them until its stdin closes. Without IDLE_CLIENT it
// does nothing.
func TestIdleConnClient(t *testing.T) {
	spec := os.Getenv("IDLE_CLIENT")
	if spec == "" {
		t.Skip("the child of BenchmarkIdleConnMemory")
	}
	parts := strings.Split(spec, ",")
	addr, proto := parts[0], parts[1]
	n, _ := strconv.Atoi(parts[2])
	cfg := &tls.Config{InsecureSkipVerify: true, NextProtos: []string{proto}}
	conns := make([]net.Conn, 0, n)
	for i := 0; i < n; i++ {
		tc, err := tls.Dial("tcp", addr, cfg)
		if err != nil {
			t.Fatal(err)
		}
		tc.SetDeadline(time.Now().Add(10 * time.Second))
		if proto == "h2" {
			err = idleH2Request(tc)
		} else {
			_, err = io.WriteString(tc, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
			if err == nil {
				var buf [4096]byte
				_, err = tc.Read(buf[:])
			}
		}
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		tc.SetDeadline(time.Time{})
		conns = append(conns, tc)
	}
	fmt.Printf("idle %d\n", len(conns))
	io.Copy(io.Discard, os.Stdin)
}

// idleH2Request makes one GET on a new h2 connection and reads its answer.
func idleH2Request(tc *tls.Conn) error {
	fr := http2.NewFramer(tc, tc)
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	for _, kv := range [][2]string{{":method", "GET"}, {":scheme", "https"}, {":authority", "a"}, {":path", "/"}, {"user-agent", "idle-client"}} {
		enc.WriteField(hpack.HeaderField{Name: kv[0], Value: kv[1]})
	}
	io.WriteString(tc, http2.ClientPreface)
	fr.WriteSettings()
	fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hb.Bytes(), EndStream: true, EndHeaders: true})
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			return err
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				fr.WriteSettingsAck()
			}
		case *http2.GoAwayFrame:
			return fmt.Errorf("GOAWAY %v", f.ErrCode)
		case *http2.HeadersFrame:
			if f.StreamEnded() {
				return nil
			}
		case *http2.DataFrame:
			if f.StreamEnded() {
				return nil
			}
		}
	}
}
