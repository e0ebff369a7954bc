// Command memflood measures what unfinished large request heads cost a
// running tlsedge: it opens n connections to a loopback address, sends each
// an unfinished head of about size bytes, and reports the server's VmRSS
// (from /proc/PID/status) before, during and after, with the statuses the
// flood got and how a well-behaved request fared meanwhile.
//
//	go build -o /tmp/tlsedge-mem . && /tmp/tlsedge-mem --ssl-module none --socket-port 18080 &
//	go run ./bench/memflood -addr 127.0.0.1:18080 -pid $!
//
// It is bounded: n connections, each closed by the server's 408 or by a
// deadline, and only loopback addresses are accepted.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:18080", "server address (loopback only)")
	pid := flag.Int("pid", 0, "server process id, for VmRSS")
	n := flag.Int("n", 1500, "connections, each with one unfinished head")
	size := flag.Int("size", 490_000, "bytes of header value per head")
	wait := flag.Duration("wait", 30*time.Second, "longest wait for the server's answer to each head")
	after := flag.String("after", "1s,5s,30s", "when to sample VmRSS after the last head was answered")
	flag.Parse()
	host, _, err := net.SplitHostPort(*addr)
	if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
		fmt.Fprintln(os.Stderr, "memflood: -addr must be a loopback address")
		os.Exit(2)
	}
	if *n > 20000 || *size > 16<<20 {
		fmt.Fprintln(os.Stderr, "memflood: -n at most 20000, -size at most 16MiB")
		os.Exit(2)
	}
	rss := func(label string) {
		fmt.Printf("%-34s VmRSS %s\n", label, vmRSS(*pid))
	}
	rss("before")
	peak := make(chan int64)
	stop := make(chan struct{})
	go func() { // the highest VmRSS seen, sampled every 100ms
		var most int64
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			most = max(most, rssKB(*pid))
			select {
			case <-t.C:
			case <-stop:
				peak <- most
				return
			}
		}
	}()

	pad := strings.Repeat("a", *size)
	head := []byte("GET / HTTP/1.1\r\nHost: localhost\r\nX-Pad: " + pad) // no CRLF CRLF: unfinished
	var mu sync.Mutex
	statuses := map[string]int{}
	var sent, wg sync.WaitGroup
	start := time.Now()
	sem := make(chan struct{}, 64)
	for range *n {
		wg.Add(1)
		sent.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{} // 64 dials and writes at a time
			st := flood(*addr, head, *wait, func() { <-sem; sent.Done() })
			mu.Lock()
			statuses[st]++
			mu.Unlock()
		}()
	}
	sent.Wait()
	fmt.Printf("%d heads sent in %s\n", *n, time.Since(start).Round(time.Millisecond))
	rss("during (all heads sent)")
	fmt.Printf("well-behaved GET during the flood: %s\n", probe(*addr))
	time.Sleep(time.Second)
	rss("during (+1s)")
	wg.Wait()
	fmt.Printf("all heads answered after %s: %v\n", time.Since(start).Round(time.Millisecond), statuses)
	close(stop)
	fmt.Printf("%-34s VmRSS %d kB\n", "peak during the flood", <-peak)
	end := time.Now()
	for _, s := range strings.Split(*after, ",") {
		d, err := time.ParseDuration(s)
		if err != nil {
			continue
		}
		time.Sleep(time.Until(end.Add(d)))
		rss("after (+" + s + ")")
	}
}

// flood sends one unfinished head and returns the status the server
// answered with (or what ended the connection).
func flood(addr string, head []byte, wait time.Duration, sent func()) string {
	done := sync.OnceFunc(sent)
	defer done()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return "dial error"
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(wait))
	if _, err := c.Write(head); err != nil {
		done()
		return readStatus(c, "write error")
	}
	done()
	return readStatus(c, "closed")
}

func readStatus(c net.Conn, otherwise string) string {
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			return "no answer"
		}
		return otherwise
	}
	f := strings.Fields(line)
	if len(f) < 2 {
		return otherwise
	}
	return f[1]
}

// probe makes one small request on a fresh connection.
func probe(addr string) string {
	cl := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	t0 := time.Now()
	resp, err := cl.Get("http://" + addr + "/")
	if err != nil {
		return "error: " + err.Error()
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return fmt.Sprintf("%d in %s", resp.StatusCode, time.Since(t0).Round(time.Millisecond))
}

func rssKB(pid int) int64 {
	var n int64
	fmt.Sscanf(vmRSS(pid), "%d", &n)
	return n
}

func vmRSS(pid int) string {
	if pid == 0 {
		return "?"
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return "?"
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			return strings.TrimSpace(v)
		}
	}
	return "?"
}
