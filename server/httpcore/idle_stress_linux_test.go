package httpcore

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"tlsedge/conninfo"
	"tlsedge/internal/testenv"
)

// splitConn is a client socket that can cut its next write in two with a
// pause between the halves: for TLS that splits one record across the
// server's park boundary, for plain TCP one request head.
type splitConn struct {
	net.Conn
	pause atomic.Int64 // ns; >0: split the next Write
}

func (s *splitConn) Write(p []byte) (int, error) {
	d := time.Duration(s.pause.Swap(0))
	if d <= 0 || len(p) < 2 {
		return s.Conn.Write(p)
	}
	k := 1 + rand.IntN(len(p)-1)
	n, err := s.Conn.Write(p[:k])
	if err != nil {
		return n, err
	}
	time.Sleep(d)
	m, err := s.Conn.Write(p[k:])
	return n + m, err
}

type parkStressCase struct {
	name    string
	timeout time.Duration // socket_timeout
	end     string        // "shutdown", "close", "shutdown-timeout"
	// strict: socket_timeout is far longer than the traffic, so no request
	// may fail for want of time. The traffic pauses once in the middle:
	// every request sent by then must be answered (a lost wake-up shows
	// as a client's deadline), and the end must not wait for socket_timeout.
	strict bool
}

// The test's own limits are there to catch a hang, not to measure speed:
// on two cores loaded by other packages' tests under -race, the end of 300
// connections took up to 1.4s where it takes 0.1s on a quiet machine, and
// with the test at nice 10 beside three busy loops up to 8s; there, 60 TLS
// handshakes at once took over 5s, and the first requests over 4s.
const (
	parkStressEndLimit  = 20 * time.Second // Shutdown's context
	parkStressDrainWait = 20 * time.Second // clients, goroutines, descriptors after the end
	// A TLS handshake is not what is tested: both sides give it this
	// long, and the server's are cancelled at the end.
	parkStressHandshakeLimit = 30 * time.Second
	// A request's client waits this long for its responses: far less
	// than the strict case's socket_timeout, so that a lost wake-up there
	// shows as this deadline rather than being served when the parker's
	// timer finds the bytes.
	parkStressReplyLimit = 10 * time.Second
	// The first traffic phase goes on past its length until a connection
	// has been parked, for at most this long.
	parkStressParkLimit = 20 * time.Second
)

// Hundreds of keep-alive connections, plain and TLS, alternate between hot
// requests, idling right around idleHotWait, parking, idling into
// socket_timeout, split requests and TLS records across the park boundary,
// pipelining, hanging up while parked and slow handlers; then Shutdown or
// Close lands in the middle. Every response must be the right one, every
// request in the server's socket before socket_timeout could run out must be
// answered, the end must come without waiting for idle connections to time
// out, and nothing may be left: gauges (read the moment Shutdown returns),
// tracked connections, the parker, goroutines, descriptors.
//
// No bound here is on speed (a loaded machine may take seconds for what
// takes milliseconds alone): what must be answered is judged by what the
// client sent relative to socket_timeout, or by a pause in the traffic that
// lets every request finish; what must not wait for socket_timeout is judged
// against a socket_timeout of 30s.
func TestParkerStress(t *testing.T) {
	if testing.Short() {
		t.Skip("stress")
	}
	cases := []parkStressCase{
		{"shutdown", 300 * time.Millisecond, "shutdown", false},
		{"close", 160 * time.Millisecond, "close", false},
		{"shutdown-timeout-then-close", 30 * time.Second, "shutdown-timeout", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) { runParkStress(t, tc) })
	}
}

func countFDs() int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return -1
	}
	return len(ents)
}

func runParkStress(t *testing.T, tc parkStressCase) {
	const (
		nPlain  = 240
		nTLS    = 60
		traffic = 1500 * time.Millisecond
	)
	ca := testenv.NewCA(t, "parkstress")
	leaf := ca.Leaf(t, "127.0.0.1")
	srvCfg := &tls.Config{Certificates: []tls.Certificate{leaf.TLS}, NextProtos: []string{"http/1.1"}}
	cliCfg := &tls.Config{RootCAs: ca.Pool, ServerName: "127.0.0.1", NextProtos: []string{"http/1.1"}}

	runtime.GC()
	baseG, baseFD := runtime.NumGoroutine(), countFDs()

	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if ms, _ := strconv.Atoi(r.URL.Query().Get("sleep")); ms > 0 {
			select { // watching the context starts the client-gone watch
			case <-time.After(time.Duration(ms) * time.Millisecond):
			case <-r.Context().Done():
			}
		}
		w.Header().Set("X-Echo", r.URL.Path)
		io.WriteString(w, r.URL.Path)
	})
	o := DefaultOptions()
	o.Handler = h
	o.Statistics = true
	o.SocketTimeout = tc.timeout
	o.ThreadPool = 64
	c, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	var srvWG sync.WaitGroup // accept loops and handshakes
	endCtx, endHandshakes := context.WithCancel(context.Background())
	defer endHandshakes()
	lnPlain, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	lnTLS, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	accept := func(ln net.Listener, wrap bool) {
		defer srvWG.Done()
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			c.CountAccept()
			info := &conninfo.Info{Transport: "tcp", LocalAddr: nc.LocalAddr(), RemoteAddr: nc.RemoteAddr()}
			if !wrap {
				go c.ServeConn(nc, info)
				continue
			}
			srvWG.Add(1)
			go func() {
				tlsc := tls.Server(nc, srvCfg)
				ctx, cancel := context.WithTimeout(endCtx, parkStressHandshakeLimit)
				err := tlsc.HandshakeContext(ctx)
				cancel()
				srvWG.Done()
				if err != nil {
					nc.Close()
					return
				}
				st := tlsc.ConnectionState()
				info.TLS = &st
				c.ServeConn(tlsc, info)
			}()
		}
	}
	srvWG.Add(2)
	go accept(lnPlain, false)
	go accept(lnTLS, true)

	stopCh := make(chan struct{})
	sleep := func(d time.Duration) {
		select {
		case <-time.After(d):
		case <-stopCh:
		}
	}
	var (
		stop     atomic.Bool
		gate     sync.RWMutex // held shared from a request's write to its responses; the pause holds it
		okN      atomic.Int64
		errN     atomic.Int64
		parkMax  atomic.Int64
		cliWG    sync.WaitGroup
		mu       sync.Mutex
		failures []string
	)
	fail := func(format string, args ...any) {
		mu.Lock()
		if len(failures) < 20 {
			failures = append(failures, fmt.Sprintf(format, args...))
		}
		mu.Unlock()
	}
	jitter := func(lo, hi time.Duration) time.Duration { return lo + rand.N(hi-lo+1) }
	// Idle lengths that stay safely inside socket_timeout.
	parkedMax := max(min(tc.timeout-60*time.Millisecond, 600*time.Millisecond), idleHotWait+15*time.Millisecond)

	client := func(id int, useTLS bool) {
		defer cliWG.Done()
		seq := 0
		for !stop.Load() {
			prevSent := time.Now() // the server's idle clock starts after this
			raw, err := net.Dial("tcp", map[bool]string{false: lnPlain.Addr().String(), true: lnTLS.Addr().String()}[useTLS])
			if err != nil {
				if !stop.Load() {
					fail("client %d: dial: %v", id, err)
				}
				return
			}
			sc := &splitConn{Conn: raw}
			var nc net.Conn = sc
			if useTLS {
				tcn := tls.Client(sc, cliCfg)
				tcn.SetDeadline(time.Now().Add(parkStressHandshakeLimit))
				if err := tcn.Handshake(); err != nil {
					raw.Close()
					if !stop.Load() {
						fail("client %d: handshake: %v", id, err)
					}
					return
				}
				nc = tcn
			}
			br := bufio.NewReader(nc)
			for !stop.Load() {
				var idle, split time.Duration
				sleepMS, pipeline, hangup := 0, false, false
				switch b := rand.IntN(100); {
				case b < 18: // hot
				case b < 38: // right at the hot read's timeout
					idle = jitter(idleHotWait-8*time.Millisecond, idleHotWait+8*time.Millisecond)
				case b < 56: // parked, then woken
					idle = jitter(idleHotWait+15*time.Millisecond, parkedMax)
				case b < 62: // racing socket_timeout's timer
					idle = jitter(tc.timeout-25*time.Millisecond, tc.timeout+25*time.Millisecond)
				case b < 70: // split right away: for TLS a record straddles the park
					split = jitter(idleHotWait-10*time.Millisecond, idleHotWait+40*time.Millisecond)
				case b < 76: // parked, then a request in pieces
					idle = jitter(idleHotWait+15*time.Millisecond, idleHotWait+80*time.Millisecond)
					split = jitter(20*time.Millisecond, 120*time.Millisecond)
				case b < 82: // hang up while parked
					idle, hangup = jitter(idleHotWait+10*time.Millisecond, idleHotWait+120*time.Millisecond), true
				case b < 90:
					pipeline = true
				default:
					sleepMS = 50 + rand.IntN(300)
				}
				sleep(idle)
				if hangup || stop.Load() {
					break
				}
				n := 1
				if pipeline {
					n = 2
				}
				paths := make([]string, n)
				var req strings.Builder
				for i := range paths {
					seq++
					paths[i] = fmt.Sprintf("/c%d/%d", id, seq)
					q := ""
					if sleepMS > 0 {
						q = "?sleep=" + strconv.Itoa(sleepMS)
					}
					fmt.Fprintf(&req, "GET %s%s HTTP/1.1\r\nHost: a\r\n\r\n", paths[i], q)
				}
				sc.pause.Store(int64(split))
				gate.RLock()
				sent := time.Now()
				nc.SetDeadline(sent.Add(parkStressReplyLimit))
				_, err := io.WriteString(nc, req.String())
				wrote := time.Now() // on loopback the bytes are in the server's socket by now
				for i := 0; err == nil && i < n; i++ {
					var resp *http.Response
					resp, err = http.ReadResponse(br, nil)
					if err != nil {
						break
					}
					body, rerr := io.ReadAll(resp.Body)
					resp.Body.Close()
					switch {
					case rerr != nil:
						err = rerr
					case resp.StatusCode == http.StatusServiceUnavailable && stop.Load():
						err = errors.New("503 while stopping")
					case resp.StatusCode != 200 || string(body) != paths[i] || resp.Header.Get("X-Echo") != paths[i]:
						fail("client %d: asked %s, got %d %q (X-Echo %q)", id, paths[i], resp.StatusCode, body, resp.Header.Get("X-Echo"))
						err = errors.New("wrong response")
					default:
						okN.Add(1)
					}
				}
				gate.RUnlock()
				if err != nil {
					errN.Add(1)
					// Lost wake-up (or worse). The server's idle clock started
					// after prevSent, so a request in its socket 25 ms before
					// socket_timeout could run out must be answered, however
					// late a loaded scheduler runs the parker's loop. Strict,
					// socket_timeout outlasts the traffic: that is every
					// request that failed before the end, and the pause
					// makes every request sent before it finish before the
					// end (a lost one fails at the client's deadline).
					inTime := wrote.Sub(prevSent) <= tc.timeout-25*time.Millisecond
					if inTime && !stop.Load() {
						fail("client %d: request %s (idle %v, split %v, in the socket %v after the last was sent) failed, stopping %v: %v", id, paths[0],
							idle, split, wrote.Sub(prevSent).Round(time.Millisecond), stop.Load(), err)
					}
					break
				}
				prevSent = sent
			}
			nc.Close()
		}
	}
	for i := range nPlain + nTLS {
		cliWG.Add(1)
		go client(i, i >= nPlain)
	}

	// Watch the parker fill while traffic runs.
	watch := func(d, orUntilParked time.Duration) {
		start := time.Now()
		for {
			if since := time.Since(start); since >= d && (parkMax.Load() > 0 || since >= orUntilParked) {
				return
			}
			if p := c.parker.Load(); p != nil {
				p.mu.Lock()
				n := int64(len(p.conns))
				p.mu.Unlock()
				if n > parkMax.Load() {
					parkMax.Store(n)
				}
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	watch(traffic, parkStressParkLimit)
	if tc.strict {
		// The pause: every request sent so far is answered (or fails
		// at its client's deadline, and is reported) before the
		// traffic goes on, however long a loaded machine takes.
		gate.Lock()
		ok := okN.Load()
		gate.Unlock()
		t.Logf("paused: %d answered, every request sent by then done", ok)
		watch(traffic/3, 0)
	}

	// The end lands in the middle of all that, as server.stop does it.
	stop.Store(true)
	close(stopCh)
	lnPlain.Close()
	lnTLS.Close()
	endHandshakes()
	shutdownWithin := func(d time.Duration) error {
		ctx, cancel := context.WithTimeout(context.Background(), d)
		defer cancel()
		return c.Shutdown(ctx)
	}
	t0 := time.Now()
	switch tc.end {
	case "shutdown":
		if err := shutdownWithin(parkStressEndLimit); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	case "close":
		c.Close()
		if err := shutdownWithin(parkStressEndLimit); err != nil {
			t.Errorf("Shutdown after Close: %v", err)
		}
	case "shutdown-timeout":
		t.Logf("short Shutdown: %v", shutdownWithin(20*time.Millisecond))
		c.Close()
		if err := shutdownWithin(parkStressEndLimit); err != nil {
			t.Errorf("Shutdown after Close: %v", err)
		}
	}
	took := time.Since(t0)
	// Shutdown has returned: every connection must be gone, gauges included.
	st := c.Stats()
	c.mu.Lock()
	tracked := len(c.conns)
	c.mu.Unlock()
	parkerOpen := false
	if p := c.parker.Load(); p != nil {
		p.mu.Lock()
		parkerOpen = !p.closed || len(p.conns) != 0
		p.mu.Unlock()
	}
	if tc.strict && took >= tc.timeout/2 {
		// Close does not wait for the idle and parked connections'
		// socket_timeout.
		t.Errorf("%s took %v, socket_timeout is %v", tc.end, took, tc.timeout)
	}
	if st.ConnectionsOpen != 0 || st.ConnectionsIdle != 0 || tracked != 0 || parkerOpen {
		t.Errorf("right after %s: open %d, idle %d, tracked %d, parker open %v", tc.end, st.ConnectionsOpen, st.ConnectionsIdle, tracked, parkerOpen)
	}

	cdone := make(chan struct{})
	go func() { cliWG.Wait(); srvWG.Wait(); close(cdone) }()
	select {
	case <-cdone:
	case <-time.After(parkStressDrainWait):
		t.Fatal("clients or accept loops did not end")
	}
	t.Logf("clients ended %v after the end began", time.Since(t0))
	for _, f := range failures {
		t.Error(f)
	}
	if st := c.Stats(); st.ConnectionsOpen != 0 || st.ConnectionsIdle != 0 {
		t.Errorf("after the clients: open %d, idle %d", st.ConnectionsOpen, st.ConnectionsIdle)
	}
	if parkMax.Load() == 0 {
		t.Error("no connection was ever parked")
	}
	if !waitFor(parkStressDrainWait, func() bool { return runtime.NumGoroutine() <= baseG+3 }) {
		buf := make([]byte, 1<<20)
		t.Errorf("goroutines: %d, %d before\n%s", runtime.NumGoroutine(), baseG, buf[:runtime.Stack(buf, true)])
	}
	if !waitFor(parkStressDrainWait, func() bool { return countFDs() <= baseFD+2 }) {
		t.Errorf("descriptors: %d, %d before", countFDs(), baseFD)
	}
	t.Logf("%s: %d ok, %d broken off, up to %d parked at once, end took %v, stats: %d requests, %d socket errors",
		tc.end, okN.Load(), errN.Load(), parkMax.Load(), took.Round(time.Millisecond), c.Stats().Requests, c.Stats().SocketErrors)
}
