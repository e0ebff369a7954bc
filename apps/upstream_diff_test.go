package apps

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/http/httputil"
	"net/textproto"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// The differential tests send the same requests through the upstream engine
// and through net/http's httputil.ReverseProxy, the path the engine
// replaced, used here only as a reference: both behind the same net/http
// front, to the same scripted upstream. The client's view (status, body,
// the fields that matter, trailers, framing) and what the upstream got (the
// request line, the fields, the body, its framing and trailers) must agree,
// except for these documented differences:
//
//   - Field order in either direction: the engine writes the Host first and
//     its own fields last; ReverseProxy follows a map's order. Compared as
//     sorted sets.
//   - The forwarding fields: the engine replaces a client's X-Forwarded-*
//     and adds X-Forwarded-Proto/-Host and Forwarded; ReverseProxy appends
//     to X-Forwarded-For only. Left out of the comparison (proxy_test.go
//     checks the engine's).
//   - Date: each answer's own clock. Left out.
//   - Chunk sizes: both chunk a body of unknown length, in their own sizes;
//     the decoded bodies and trailers are compared.
//   - 1xx other than 101 (100 Continue, 103 Early Hints): ReverseProxy
//     relays them, the engine swallows them (the client gets the final
//     answer alone; the front answers a client's Expect itself). Checked
//     as such.
//   - TE: trailers: ReverseProxy passes it upstream (for gRPC); the engine
//     drops TE like every hop-by-hop field. Checked as such.
//   - Request trailers: ReverseProxy's outgoing request is a clone taken
//     before the body is read, so it announces the trailers (Trailer:) but
//     sends none of their values; the engine sends the values, without a
//     Trailer field (which RFC 9110 makes optional). Checked as such.
//   - Accept-Encoding: net/http's transport asks for gzip when the client
//     did not say; the engine passes the client's choice. The client here
//     always says.

// diffUpstream records each request as the upstream parsed it and answers
// from a script keyed by path.
type diffUpstream struct {
	addr   string
	answer map[string]string
	mu     sync.Mutex
	got    []upstreamGot
}

type upstreamGot struct {
	line     string   // the request line
	fields   []string // "name: value", in order, without the documented differences
	framing  string   // "cl=N", "chunked" or "none"
	body     string
	trailers []string
}

// ignoredUp are the request fields whose values differ by design.
var ignoredUp = []string{"x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "forwarded", "x-forwarded-prefix"}

func newDiffUpstream(t *testing.T, answer map[string]string) *diffUpstream {
	u := &diffUpstream{answer: answer}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	u.addr = ln.Addr().String()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go u.serve(c)
		}
	}()
	return u
}

func (u *diffUpstream) serve(c net.Conn) {
	defer c.Close()
	br := bufio.NewReader(c)
	for {
		var head bytes.Buffer
		var g upstreamGot
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return
			}
			head.WriteString(line)
			if line == "\r\n" {
				break
			}
			line = strings.TrimSuffix(line, "\r\n")
			if g.line == "" {
				g.line = line
				continue
			}
			name, _, _ := strings.Cut(line, ":")
			if !slices.Contains(ignoredUp, strings.ToLower(name)) {
				g.fields = append(g.fields, line)
			}
		}
		req, err := http.ReadRequest(bufio.NewReader(io.MultiReader(&head, br)))
		if err != nil {
			return
		}
		// The request's body reader reads from br through the head's
		// reader, which may hold bytes of the next request: read the body
		// from br directly instead, framed as the head says.
		var body []byte
		switch {
		case len(req.TransferEncoding) > 0:
			g.framing = "chunked"
			cr, _ := http.ReadRequest(bufio.NewReader(io.MultiReader(strings.NewReader("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"), br)))
			body, _ = io.ReadAll(cr.Body)
			for k, vs := range cr.Trailer {
				for _, v := range vs {
					g.trailers = append(g.trailers, k+": "+v)
				}
			}
			slices.Sort(g.trailers)
		case req.ContentLength > 0 || req.Header.Get("Content-Length") != "":
			g.framing = fmt.Sprintf("cl=%d", req.ContentLength)
			body = make([]byte, req.ContentLength)
			io.ReadFull(br, body)
		default:
			g.framing = "none"
		}
		g.body = string(body)
		slices.Sort(g.fields)
		u.mu.Lock()
		u.got = append(u.got, g)
		u.mu.Unlock()
		a, ok := u.answer[req.URL.Path]
		if !ok {
			a = "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"
		}
		if _, err := io.WriteString(c, a); err != nil {
			return
		}
		if strings.HasPrefix(a, "HTTP/1.1 101") {
			io.Copy(c, br) // an echo, until the client closes
			return
		}
	}
}

func (u *diffUpstream) take() []upstreamGot {
	u.mu.Lock()
	defer u.mu.Unlock()
	g := u.got
	u.got = nil
	return g
}

// clientSaw is what a client gets, without the documented differences.
type clientSaw struct {
	status   int
	interim  []int
	fields   []string
	framing  string
	body     string
	trailers []string
	echo     string // after an upgrade
}

type diffCase struct {
	name          string
	method, path  string
	hdr           map[string]string
	body          string
	unknownLength bool              // send the body chunked
	trailer       map[string]string // request trailers (chunked only)
	send          string            // written after an upgrade
	// The documented differences this case shows:
	// swallowed: the 1xx the engine swallows and ReverseProxy relays;
	// refOnlyUp: request fields only ReverseProxy passes upstream;
	// refLosesTrailers: ReverseProxy announces the request's trailers
	// but sends no values, the engine sends them (without announcing).
	swallowed        []int
	refOnlyUp        []string
	refLosesTrailers bool
}

func runDiff(t *testing.T, front string, c diffCase) clientSaw {
	t.Helper()
	var body io.Reader
	if c.body != "" {
		body = strings.NewReader(c.body)
		if c.unknownLength {
			body = struct{ io.Reader }{body}
		}
	}
	var saw clientSaw
	trace := &httptrace.ClientTrace{Got1xxResponse: func(code int, _ textproto.MIMEHeader) error {
		saw.interim = append(saw.interim, code)
		return nil
	}}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(ctx, trace), c.method, front+c.path, body)
	req.Host = "front.example"
	req.Header.Set("Accept-Encoding", "identity")
	req.Header.Set("User-Agent", "difftest")
	for k, v := range c.hdr {
		req.Header.Set(k, v)
	}
	if c.trailer != nil {
		req.Trailer = http.Header{}
		for k, v := range c.trailer {
			req.Trailer.Set(k, v)
		}
	}
	tr := &http.Transport{DisableKeepAlives: false}
	defer tr.CloseIdleConnections()
	// No Client.Timeout: its body wrapper would hide an upgrade's
	// read-write body. The test's own deadline bounds it.
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		t.Fatalf("%s: %v", c.name, err)
	}
	defer resp.Body.Close()
	saw.status = resp.StatusCode
	if resp.StatusCode == http.StatusSwitchingProtocols {
		rw := resp.Body.(io.ReadWriteCloser)
		io.WriteString(rw, c.send)
		b := make([]byte, len(c.send))
		io.ReadFull(rw, b)
		saw.echo = string(b)
		rw.Close()
		return saw
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil && resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("%s: reading the body: %v", c.name, err)
	}
	saw.body = string(b)
	for k, vs := range resp.Header {
		if k == "Date" {
			continue
		}
		for _, v := range vs {
			saw.fields = append(saw.fields, k+": "+v)
		}
	}
	slices.Sort(saw.fields)
	switch {
	case len(resp.TransferEncoding) > 0:
		saw.framing = "chunked"
	case resp.ContentLength >= 0:
		saw.framing = fmt.Sprintf("cl=%d", resp.ContentLength)
	default:
		saw.framing = "none"
	}
	for k, vs := range resp.Trailer {
		for _, v := range vs {
			saw.trailers = append(saw.trailers, k+": "+v)
		}
	}
	slices.Sort(saw.trailers)
	return saw
}

func TestProxyDifferential(t *testing.T) {
	large := strings.Repeat("0123456789abcdef", 1<<16) // 1 MiB
	answers := map[string]string{
		"/plain":   "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-Custom: a\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\nCache-Control: no-store\r\nContent-Length: 5\r\n\r\nhello",
		"/chunked": "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTrailer: X-Sum\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\nX-Sum: 42\r\n\r\n",
		"/head":    "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 1234\r\n\r\n",
		"/204":     "HTTP/1.1 204 No Content\r\nX-Custom: none\r\n\r\n",
		"/304":     "HTTP/1.1 304 Not Modified\r\nETag: \"v1\"\r\nCache-Control: max-age=60\r\n\r\n",
		"/103":     "HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\nHTTP/1.1 200 OK\r\nLink: </s.css>; rel=preload\r\nContent-Length: 2\r\n\r\nok",
		"/100":     "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 7\r\n\r\ncreated",
		"/large":   "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: " + fmt.Sprint(len(large)) + "\r\n\r\n" + large,
		"/large-chunked": "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + fmt.Sprintf("%x\r\n%s\r\n", len(large)/2, large[:len(large)/2]) +
			fmt.Sprintf("%x\r\n%s\r\n", len(large)/2, large[len(large)/2:]) + "0\r\n\r\n",
		"/hop":  "HTTP/1.1 200 OK\r\nConnection: X-Up-Hop\r\nX-Up-Hop: 1\r\nKeep-Alive: timeout=5\r\nContent-Length: 2\r\n\r\nok",
		"/echo": "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\ndone",
		"/ws":   "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: abc\r\n\r\n",
	}
	cases := []diffCase{
		{name: "GET with a Content-Length answer", method: "GET", path: "/plain?q=1&r=%20"},
		{name: "chunked answer with a trailer", method: "GET", path: "/chunked"},
		{name: "HEAD", method: "HEAD", path: "/head"},
		{name: "204", method: "GET", path: "/204"},
		{name: "304", method: "GET", path: "/304", hdr: map[string]string{"If-None-Match": `"v1"`}},
		{name: "103 then 200", method: "GET", path: "/103", swallowed: []int{103}},
		{name: "100 then 201", method: "POST", path: "/100", body: "payload", hdr: map[string]string{"Content-Type": "text/plain"}, swallowed: []int{100}},
		{name: "1 MiB answer", method: "GET", path: "/large"},
		{name: "1 MiB chunked answer", method: "GET", path: "/large-chunked"},
		{name: "hop-by-hop fields both ways", method: "GET", path: "/hop", hdr: map[string]string{"Connection": "X-Hop", "X-Hop": "1", "Te": "trailers", "X-End": "kept"}, refOnlyUp: []string{"Te: trailers"}},
		{name: "POST with a length", method: "POST", path: "/echo", body: "a=1&b=2", hdr: map[string]string{"Content-Type": "application/x-www-form-urlencoded"}},
		{name: "POST chunked", method: "POST", path: "/echo", body: "streamed body", unknownLength: true},
		{name: "POST chunked with trailers", method: "POST", path: "/echo", body: "body then trailer", unknownLength: true, trailer: map[string]string{"X-Checksum": "abc"}, refLosesTrailers: true, refOnlyUp: []string{"Trailer: X-Checksum"}},
		{name: "1 MiB upload", method: "PUT", path: "/echo", body: large},
		{name: "1 MiB chunked upload", method: "PUT", path: "/echo", body: large, unknownLength: true},
		{name: "empty POST", method: "POST", path: "/echo", hdr: map[string]string{"Content-Length": "0"}},
		{name: "DELETE", method: "DELETE", path: "/echo"},
		{name: "WebSocket upgrade", method: "GET", path: "/ws", hdr: map[string]string{"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Key": "k", "Sec-WebSocket-Version": "13"}, send: "ping over the spliced connection"},
	}

	up := newDiffUpstream(t, answers)
	engine := serveTCP(t, mustNew(t, "http://"+up.addr, Env{}))
	target, _ := url.Parse("http://" + up.addr)
	ref := httputil.NewSingleHostReverseProxy(target)
	ref.Transport = &http.Transport{DisableCompression: true}
	reference := serveTCP(t, ref)

	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			up.take()
			sawE := runDiff(t, engine, c)
			gotE := up.take()
			sawR := runDiff(t, reference, c)
			gotR := up.take()

			// The documented difference: 1xx other than 100/101.
			if c.swallowed != nil {
				if !slices.Equal(sawR.interim, c.swallowed) || len(sawE.interim) != 0 {
					t.Errorf("1xx: engine %v (want none), reference %v (want %v)", sawE.interim, sawR.interim, c.swallowed)
				}
				sawR.interim = nil
			}
			// The documented difference of an answer without a type: the
			// engine passes it on without one (a guessed type is how a
			// download becomes a page); ReverseProxy lets the server sniff
			// one from the body (for a streamed body only when its first
			// write beats its immediate flush, a race).
			if path, _, _ := strings.Cut(c.path, "?"); !strings.Contains(strings.ToLower(answers[path]), "\r\ncontent-type:") {
				for _, f := range sawE.fields {
					if strings.HasPrefix(f, "Content-Type:") {
						t.Errorf("the engine gave an untyped answer a type: %q", f)
					}
				}
				sawR.fields = slices.DeleteFunc(sawR.fields, func(f string) bool { return strings.HasPrefix(f, "Content-Type:") })
			}
			if d := diffSaw(sawE, sawR); d != "" {
				t.Errorf("client saw differently:\n%s", d)
			}
			if len(gotE) != 1 || len(gotR) != 1 {
				t.Fatalf("upstream got %d requests from the engine, %d from the reference, want 1 each", len(gotE), len(gotR))
			}
			for _, f := range c.refOnlyUp {
				i := slices.Index(gotR[0].fields, f)
				if i < 0 || slices.Contains(gotE[0].fields, f) {
					t.Errorf("field %q: want it from the reference only; engine %q, reference %q", f, gotE[0].fields, gotR[0].fields)
					continue
				}
				gotR[0].fields = slices.Delete(gotR[0].fields, i, i+1)
			}
			if c.refLosesTrailers {
				var want []string
				for k, v := range c.trailer {
					want = append(want, k+": "+v)
				}
				if !slices.Equal(gotE[0].trailers, want) || len(gotR[0].trailers) != 0 {
					t.Errorf("request trailers: engine %q (want %q), reference %q (want none)", gotE[0].trailers, want, gotR[0].trailers)
				}
				gotR[0].trailers = gotE[0].trailers
			}
			if d := diffGot(gotE[0], gotR[0]); d != "" {
				t.Errorf("upstream got differently:\n%s", d)
			}
		})
	}
}

func diffSaw(e, r clientSaw) string {
	var b strings.Builder
	if e.status != r.status {
		fmt.Fprintf(&b, "status: engine %d, reference %d\n", e.status, r.status)
	}
	if !slices.Equal(e.interim, r.interim) {
		fmt.Fprintf(&b, "1xx: engine %v, reference %v\n", e.interim, r.interim)
	}
	if !slices.Equal(e.fields, r.fields) {
		fmt.Fprintf(&b, "fields:\n engine    %q\n reference %q\n", e.fields, r.fields)
	}
	if e.framing != r.framing {
		fmt.Fprintf(&b, "framing: engine %s, reference %s\n", e.framing, r.framing)
	}
	if e.body != r.body {
		fmt.Fprintf(&b, "body: engine %d bytes %q, reference %d bytes %q\n", len(e.body), truncate(e.body, 40), len(r.body), truncate(r.body, 40))
	}
	if !slices.Equal(e.trailers, r.trailers) {
		fmt.Fprintf(&b, "trailers: engine %q, reference %q\n", e.trailers, r.trailers)
	}
	if e.echo != r.echo {
		fmt.Fprintf(&b, "after the upgrade: engine %q, reference %q\n", e.echo, r.echo)
	}
	return b.String()
}

func diffGot(e, r upstreamGot) string {
	var b strings.Builder
	if e.line != r.line {
		fmt.Fprintf(&b, "request line: engine %q, reference %q\n", e.line, r.line)
	}
	if !slices.Equal(e.fields, r.fields) {
		fmt.Fprintf(&b, "fields:\n engine    %q\n reference %q\n", e.fields, r.fields)
	}
	if e.framing != r.framing {
		fmt.Fprintf(&b, "framing: engine %s, reference %s\n", e.framing, r.framing)
	}
	if e.body != r.body {
		fmt.Fprintf(&b, "body: engine %d bytes, reference %d bytes\n", len(e.body), len(r.body))
	}
	if !slices.Equal(e.trailers, r.trailers) {
		fmt.Fprintf(&b, "trailers: engine %q, reference %q\n", e.trailers, r.trailers)
	}
	return b.String()
}
