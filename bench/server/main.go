// Command server is the load-benchmark subject of bench/core.sh: it serves a
// fixed "hello" over TLS (h2 and http/1.1 by ALPN) with either the httpcore
// engine or plain net/http, from the same certificate and the same handler,
// so the two differ only in the engine. It also holds the tools the script
// needs around it: minting that certificate and opening idle TLS
// keep-alive connections for the memory figure.
//
//	server -gencert DIR                     write DIR/cert.pem and DIR/key.pem
//	server -mode httpcore|nethttp -cert F -key F -addr 127.0.0.1:8443
//	server -mode idle -addr HOST:PORT -n 1000
//	server -mode idleh2 -addr HOST:PORT -n 1000
//	server -mode revproxy -upstream http://127.0.0.1:PORT -cert F -key F
//	server -mode stall -addr HOST:PORT -n 200 -path /huge
//
// idleh2 is idle's h2 variant: n connections, one request on each, then
// held with nothing going on.
// revproxy is net/http's httputil.ReverseProxy (MaxIdleConnsPerHost 256)
// over TLS, the reference proxy of bench/proxy.sh; stall opens n TLS
// connections, sends one GET for path on each and never reads the answer,
// so that each request stays in flight, held by back-pressure.
// The serving modes print "ready ADDR" once listening. SIGUSR1 runs a GC and
// returns freed memory to the OS, so the script reads a comparable VmRSS.
package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"syscall"
	"time"

	"tlsedge/server/httpcore"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "bench server:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("server", flag.ContinueOnError)
	mode := fs.String("mode", "httpcore", "httpcore, nethttp, idle or idleh2")
	addr := fs.String("addr", "127.0.0.1:0", "listen address (idle: server address)")
	certFile := fs.String("cert", "", "PEM certificate")
	keyFile := fs.String("key", "", "PEM private key")
	gencert := fs.String("gencert", "", "write a self-signed cert.pem and key.pem into this directory and exit")
	n := fs.Int("n", 1000, "idle, stall: connections to open")
	upstream := fs.String("upstream", "", "revproxy: the upstream URL")
	path := fs.String("path", "/", "stall: the path to ask for")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *gencert != "" {
		return genCert(*gencert)
	}
	if *mode == "idle" {
		return idle(*addr, *n)
	}
	if *mode == "idleh2" {
		return idleH2(*addr, *n)
	}
	if *mode == "stall" {
		return stall(*addr, *path, *n)
	}
	cert, err := tls.LoadX509KeyPair(*certFile, *keyFile)
	if err != nil {
		return fmt.Errorf("loading certificate: %w", err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2", "http/1.1"}}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	if os.Getenv("BENCH_HEAP_PROFILE") != "" {
		runtime.MemProfileRate = 1 // every allocation, so per-connection bytes add up exactly
	}
	go gcOnSignal()
	handler := httpcore.Text("hello")
	fmt.Printf("ready %s\n", ln.Addr())
	switch *mode {
	case "revproxy":
		u, err := url.Parse(*upstream)
		if err != nil || u.Host == "" {
			return fmt.Errorf("-upstream %q: want http://HOST:PORT", *upstream)
		}
		rp := httputil.NewSingleHostReverseProxy(u)
		rp.Transport = &http.Transport{MaxIdleConnsPerHost: 256, MaxIdleConns: 256, IdleConnTimeout: 120 * time.Second}
		rp.ErrorLog = log.New(io.Discard, "", 0)
		srv := &http.Server{Handler: rp, TLSConfig: cfg, IdleTimeout: 120 * time.Second, ErrorLog: log.New(io.Discard, "", 0)}
		return srv.ServeTLS(ln, "", "")
	case "nethttp":
		srv := &http.Server{Handler: handler, TLSConfig: cfg, IdleTimeout: 120 * time.Second}
		return srv.ServeTLS(ln, "", "")
	case "xnethttp": // net/http with golang.org/x/net/http2 in place of its bundled copy
		srv := &http.Server{Handler: handler, TLSConfig: cfg, IdleTimeout: 120 * time.Second}
		if err := http2.ConfigureServer(srv, &http2.Server{}); err != nil {
			return err
		}
		return srv.ServeTLS(ln, "", "")
	case "httpcore":
		o := httpcore.DefaultOptions()
		o.Handler = handler
		o.SocketTimeout = 120 * time.Second
		o.MaxConnections = 100000
		o.ServerName = "" // net/http sends no Server field: the same response bytes on both sides
		core, err := httpcore.New(o)
		if err != nil {
			return err
		}
		return core.Serve(ln, cfg)
	}
	return fmt.Errorf("unknown mode %q", *mode)
}

// gcOnSignal: SIGUSR1 collects garbage and returns it to the OS; SIGUSR2
// also prints where the memory is (stacks, heap, goroutines) on stderr.
//
// SIGHUP starts, and the next SIGHUP stops, a CPU profile written to
// $BENCH_CPU_PROFILE.
func gcOnSignal() {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGHUP)
	var prof *os.File
	for sig := range ch {
		if sig == syscall.SIGHUP {
			if prof != nil {
				pprof.StopCPUProfile()
				prof.Close()
				prof = nil
			} else if p := os.Getenv("BENCH_CPU_PROFILE"); p != "" {
				if f, err := os.Create(p); err == nil && pprof.StartCPUProfile(f) == nil {
					prof = f
				}
			}
			continue
		}
		debug.FreeOSMemory()
		if sig == syscall.SIGUSR2 {
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			fmt.Fprintf(os.Stderr, "goroutines %d stack_inuse %d heap_inuse %d heap_objects %d sys %d mallocs %d total_alloc %d\n",
				runtime.NumGoroutine(), ms.StackInuse, ms.HeapInuse, ms.HeapObjects, ms.Sys, ms.Mallocs, ms.TotalAlloc)
			if p := os.Getenv("BENCH_HEAP_PROFILE"); p != "" {
				if f, err := os.Create(p); err == nil {
					pprof.Lookup("heap").WriteTo(f, 0)
					f.Close()
				}
			}
		}
	}
}

// idle opens n TLS connections, sends one keep-alive request on each, reads
// the response and then holds them idle until killed.
func idle(addr string, n int) error {
	cfg := &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}}
	conns := make([]net.Conn, 0, n)
	req := []byte("GET / HTTP/1.1\r\nHost: bench\r\n\r\n")
	buf := make([]byte, 4096)
	for i := 0; i < n; i++ {
		c, err := tls.Dial("tcp", addr, cfg)
		if err != nil {
			return fmt.Errorf("connection %d: %w", i, err)
		}
		if _, err := c.Write(req); err != nil {
			return err
		}
		if _, err := c.Read(buf); err != nil && !errors.Is(err, io.EOF) {
			return err
		}
		conns = append(conns, c)
	}
	fmt.Printf("idle %d\n", len(conns))
	select {}
}

// idleH2 opens n h2 connections, makes one GET on each with a Framer of its
// own (no goroutine per connection here either), reads the response and
// then holds them idle until killed.
func idleH2(addr string, n int) error {
	cfg := &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2"}}
	conns := make([]net.Conn, 0, n)
	var hb bytes.Buffer
	for i := 0; i < n; i++ {
		c, err := tls.Dial("tcp", addr, cfg)
		if err != nil {
			return fmt.Errorf("connection %d: %w", i, err)
		}
		if p := c.ConnectionState().NegotiatedProtocol; p != "h2" {
			return fmt.Errorf("connection %d: protocol %q, not h2", i, p)
		}
		c.SetDeadline(time.Now().Add(10 * time.Second))
		fr := http2.NewFramer(c, c)
		hb.Reset()
		enc := hpack.NewEncoder(&hb)
		for _, kv := range [][2]string{{":method", "GET"}, {":scheme", "https"}, {":authority", "bench"}, {":path", "/"}, {"user-agent", "bench-idleh2"}} {
			enc.WriteField(hpack.HeaderField{Name: kv[0], Value: kv[1]})
		}
		io.WriteString(c, http2.ClientPreface)
		fr.WriteSettings()
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hb.Bytes(), EndStream: true, EndHeaders: true})
		for done := false; !done; {
			f, err := fr.ReadFrame()
			if err != nil {
				return fmt.Errorf("connection %d: %w", i, err)
			}
			switch f := f.(type) {
			case *http2.SettingsFrame:
				if !f.IsAck() {
					fr.WriteSettingsAck()
				}
			case *http2.GoAwayFrame:
				return fmt.Errorf("connection %d: GOAWAY %v", i, f.ErrCode)
			case *http2.HeadersFrame:
				done = f.StreamID == 1 && f.StreamEnded()
			case *http2.DataFrame:
				done = f.StreamID == 1 && f.StreamEnded()
			}
		}
		c.SetDeadline(time.Time{})
		conns = append(conns, c)
	}
	fmt.Printf("idle %d\n", len(conns))
	select {}
}

// stall opens n TLS connections, sends one GET for path on each and then
// reads nothing, until killed: n requests in flight, each held by
// back-pressure somewhere between the upstream and this client.
func stall(addr, path string, n int) error {
	cfg := &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}}
	conns := make([]net.Conn, 0, n)
	// The Host is the address: Caddy answers a name its site does not
	// match with an empty 200 instead of proxying.
	req := []byte("GET " + path + " HTTP/1.1\r\nHost: " + addr + "\r\n\r\n")
	for i := 0; i < n; i++ {
		c, err := tls.Dial("tcp", addr, cfg)
		if err != nil {
			return fmt.Errorf("connection %d: %w", i, err)
		}
		if _, err := c.Write(req); err != nil {
			return err
		}
		conns = append(conns, c)
	}
	fmt.Printf("stalled %d\n", len(conns))
	select {}
}

func genCert(dir string) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return err
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "cert.pem"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "key.pem"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600)
}
