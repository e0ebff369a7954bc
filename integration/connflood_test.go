package integration

import (
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"testing"
	"time"
)

// openFDs counts the descriptors process pid holds.
func openFDs(t *testing.T, pid int) int {
	t.Helper()
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// 20,000 silent TCP connections from two clients against a TLS port with
// max_connections 100: each holds a slot from accept, handshake included,
// so the server's descriptors stay under the limit plus a small constant
// and every connection past it is closed at once; when the clients leave,
// a good client is served.
func TestSilentConnectionFlood(t *testing.T) {
	port := freePort(t)
	p := startPlain(t, "--socket-port", strconv.Itoa(port), "--max-connections", "100", "--mount", "/=text:ok")
	pid := p.cmd.Process.Pid
	base := openFDs(t, pid)
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))

	var (
		mu     sync.Mutex
		maxFDs int
	)
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() { // the server's descriptors, sampled while the flood arrives
		defer close(sampled)
		for {
			n := openFDs(t, pid)
			mu.Lock()
			maxFDs = max(maxFDs, n)
			mu.Unlock()
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	}()
	// Two clients, each a process of its own (a process may hold 20,000
	// descriptors here), open 10,000 silent connections and hold them.
	start := time.Now()
	opened := 0
	var clients []*exec.Cmd
	for range 2 {
		cmd := exec.Command(os.Args[0], "-test.run=^TestFloodClient$")
		cmd.Env = append(os.Environ(), "TLSEDGE_FLOOD_CLIENT="+addr)
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		in, err := cmd.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { in.Close(); cmd.Wait() }()
		clients = append(clients, cmd)
		go func() {
			var n int
			fmt.Fscan(out, &n)
			mu.Lock()
			opened += n
			mu.Unlock()
			io.Copy(io.Discard, out)
		}()
	}
	deadline := time.Now().Add(90 * time.Second)
	for {
		mu.Lock()
		done := opened
		mu.Unlock()
		if done >= 19000 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond)
	close(stop)
	<-sampled
	mu.Lock()
	held := opened
	mu.Unlock()
	t.Logf("%d connections opened in %v; server descriptors: %d at rest, at most %d during the flood",
		held, time.Since(start).Round(time.Millisecond), base, maxFDs)
	if held < 19000 {
		t.Fatalf("only %d of 20,000 connections opened", held)
	}
	if maxFDs > base+100+20 {
		t.Fatalf("server held %d descriptors, more than %d at rest + max_connections 100 + 20", maxFDs, base)
	}

	for _, c := range clients {
		c.Process.Kill() // the clients leave, all at once
	}
	// A good client is served once the flood has left.
	cfg := &tls.Config{InsecureSkipVerify: true}
	deadline = time.Now().Add(10 * time.Second)
	for {
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", addr, cfg)
		if err == nil {
			fmt.Fprint(c, "GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
			b := make([]byte, 512)
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			n, _ := c.Read(b)
			c.Close()
			if n > 12 && string(b[:12]) == "HTTP/1.1 200" {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no good client served after the flood: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestFloodClient is the flood's client process: with TLSEDGE_FLOOD_CLIENT
// set it opens 10,000 silent connections (within 60 s), prints how many
// opened, and holds them until its standard input closes.
func TestFloodClient(t *testing.T) {
	addr := os.Getenv("TLSEDGE_FLOOD_CLIENT")
	if addr == "" {
		return // only run as a subprocess of TestSilentConnectionFlood
	}
	var held []net.Conn
	d := net.Dialer{Timeout: 2 * time.Second}
	start := time.Now()
	for i := 0; i < 10000 && time.Since(start) < 60*time.Second; i++ {
		if c, err := d.Dial("tcp", addr); err == nil {
			held = append(held, c)
		}
	}
	fmt.Println(len(held))
	io.Copy(io.Discard, os.Stdin)
	for _, c := range held {
		c.Close()
	}
}
