package integration

import (
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"testing"
	"time"
)

// Balancer is a TCP load balancer for tests, the kind that stands in front
// of a cluster of tlsedge nodes: it relays each accepted connection, as
// bytes, to a backend chosen at random. The choice is a shuffled deck (every
// backend once per round, in random order), so a handful of consecutive
// connections - the several probes of one ACME validation - cannot all land
// on the same node by chance. A backend that refuses the connection (a node
// that is down, or not listening yet) is passed over for the others, tried
// in random order, as a balancer with health checks or connect retries
// does; the client sees a failure only when every backend refuses.
type Balancer struct {
	Port int

	t        testing.TB
	ln       net.Listener
	mu       sync.Mutex
	backends []string
	deck     []int
	counts   map[string]int // connections relayed, by backend
	refused  int            // connections no backend took
	wg       sync.WaitGroup
	conns    map[net.Conn]struct{}
	closed   bool
	gate     chan struct{} // non-nil while Hold holds new connections
	waiting  int           // connections held at the gate
}

// StartBalancer listens on 127.0.0.1:port (0: a free port) and relays to
// backends (host:port) until the test ends.
func StartBalancer(t testing.TB, port int, backends ...string) *Balancer {
	t.Helper()
	ln, err := net.Listen("tcp", HostPort(port))
	if err != nil {
		t.Fatalf("balancer: %v", err)
	}
	b := &Balancer{Port: ln.Addr().(*net.TCPAddr).Port, t: t, ln: ln, backends: backends,
		counts: map[string]int{}, conns: map[net.Conn]struct{}{}}
	b.wg.Add(1)
	go b.accept()
	t.Cleanup(b.Close)
	return b
}

// Addr is the balancer's host:port.
func (b *Balancer) Addr() string { return HostPort(b.Port) }

// Counts returns how many connections went to each backend so far.
func (b *Balancer) Counts() map[string]int {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make(map[string]int, len(b.counts))
	for k, v := range b.counts {
		out[k] = v
	}
	return out
}

// Refused is how many connections found no backend taking them.
func (b *Balancer) Refused() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.refused
}

// Hold makes new connections wait, accepted but not yet relayed, until
// Release: a test lines events up with it (a CA's probes reaching the nodes
// only once a node is in the state the test wants).
func (b *Balancer) Hold() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.gate == nil {
		b.gate = make(chan struct{})
	}
}

// Release relays the held connections and stops holding.
func (b *Balancer) Release() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.gate != nil {
		close(b.gate)
		b.gate = nil
	}
}

// Waiting is how many connections Hold holds now.
func (b *Balancer) Waiting() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.waiting
}

// Close stops accepting and cuts every relayed connection.
func (b *Balancer) Close() {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return
	}
	b.closed = true
	if b.gate != nil {
		close(b.gate)
		b.gate = nil
	}
	b.ln.Close()
	for c := range b.conns {
		c.Close()
	}
	b.mu.Unlock()
	b.wg.Wait()
}

func (b *Balancer) accept() {
	defer b.wg.Done()
	for {
		c, err := b.ln.Accept()
		if err != nil {
			return
		}
		if !b.track(c) {
			c.Close()
			return
		}
		b.wg.Add(1)
		go b.relay(c)
	}
}

// track registers c for Close; false once closed.
func (b *Balancer) track(c net.Conn) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return false
	}
	b.conns[c] = struct{}{}
	return true
}

func (b *Balancer) untrack(c net.Conn) {
	b.mu.Lock()
	delete(b.conns, c)
	b.mu.Unlock()
}

// candidates is the order in which one connection tries the backends: the
// next card of the deck first, then every other backend once, shuffled.
// Each connection tries every backend, however many connections draw from
// the deck at once.
func (b *Balancer) candidates() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.deck) == 0 {
		b.deck = rand.Perm(len(b.backends))
	}
	first := b.deck[0]
	b.deck = b.deck[1:]
	out := []string{b.backends[first]}
	for _, i := range rand.Perm(len(b.backends)) {
		if i != first {
			out = append(out, b.backends[i])
		}
	}
	return out
}

func (b *Balancer) relay(client net.Conn) {
	defer b.wg.Done()
	defer b.untrack(client)
	defer client.Close()
	b.mu.Lock()
	gate := b.gate
	if gate != nil {
		b.waiting++
	}
	b.mu.Unlock()
	if gate != nil {
		<-gate
		b.mu.Lock()
		b.waiting--
		b.mu.Unlock()
	}
	var upstream net.Conn
	var target string
	for _, target = range b.candidates() {
		c, err := net.DialTimeout("tcp", target, 2*time.Second)
		if err == nil {
			upstream = c
			break
		}
	}
	b.mu.Lock()
	if upstream == nil {
		b.refused++
		b.mu.Unlock()
		return
	}
	b.counts[target]++
	b.mu.Unlock()
	if !b.track(upstream) {
		upstream.Close()
		return
	}
	defer b.untrack(upstream)
	defer upstream.Close()
	done := make(chan struct{})
	go func() {
		pipe(upstream, client)
		close(done)
	}()
	pipe(client, upstream)
	<-done
}

// pipe copies src to dst, then half-closes dst so the peer sees the EOF
// (a TLS close_notify or an HTTP request body end travels as it would
// through a real balancer).
func pipe(dst, src net.Conn) {
	_, err := io.Copy(dst, src)
	if tc, ok := dst.(*net.TCPConn); ok && err == nil {
		tc.CloseWrite()
		return
	}
	// A reset or a cut: pass it on, which also ends the other direction.
	dst.Close()
}
