package httpcore

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"tlsedge/conninfo"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// FuzzH2Differential sends the same client frames (after the preface) to the
// core's h2 engine and to x/net's http2.Server, both with the same echo
// handler, and compares what came out at the level of streams: for each
// stream the client finished, the response (status, the echoed method, path
// and body) or that it was reset; and whether the connection ended with a
// GOAWAY carrying an error. x/net is here only as a reference: it is the
// server the engine replaced.
//
// The input is not raw bytes but a program of frames (h2prog): HEADERS with
// fields chosen from lists of good and bad values, CONTINUATION, DATA,
// RST_STREAM, WINDOW_UPDATE, SETTINGS, PING, PRIORITY, GOAWAY and an unknown
// frame type, so that most inputs are well-framed and reach the streams.
// The differences that are intended are the narrow exceptions of
// h2DiffExcused.
//
// testdata/fuzz holds the inputs that found something (each runs with every
// go test). The whole corpus of the fuzzing runs (a clean 10-minute run:
// 154,546 programs) is kept in testdata/corpus, outside what go test runs
// (it takes minutes); resume from it with
//
//	d="$(go env GOCACHE)/fuzz/tlsedge/server/httpcore/FuzzH2Differential"
//	mkdir -p "$d" && cp server/httpcore/testdata/corpus/FuzzH2Differential/* "$d"
//	go test -run XXX -fuzz FuzzH2Differential -fuzztime 10m -timeout 20m ./server/httpcore
func FuzzH2Differential(f *testing.F) {
	for _, seed := range h2DiffSeeds() {
		f.Add(seed)
	}
	ours := newCore(f, echoHandler(), func(o *Options) {
		o.ThreadPool = 300
		o.MaxRequestBodySize = 1 << 20
	})
	f.Fuzz(func(t *testing.T, prog []byte) {
		in, sent := h2prog(prog)
		a := h2Run(in, sent, func(nc net.Conn) {
			info := &conninfo.Info{Transport: "tcp", TLS: &tls.ConnectionState{NegotiatedProtocol: "h2", HandshakeComplete: true}}
			ours.ServeConn(nc, info)
		}, true)
		b := h2Run(in, sent, func(nc net.Conn) {
			ref := &http2.Server{MaxConcurrentStreams: h2MaxStreams}
			ref.ServeConn(nc, &http2.ServeConnOpts{Handler: echoHandler()})
		}, false) // x/net may linger a second after a connection error
		if testing.Verbose() && os.Getenv("H2DIFF_SHOW") != "" {
			t.Logf("engine: %s\nx/net:  %s", a, b)
		}
		if d := h2Compare(a, b); d != "" {
			t.Fatalf("the engine and x/net differ: %s\nengine: %s\nx/net:  %s", d, a, b)
		}
	})
}

// h2sent are the streams the client finished (sent a whole request,
// HEADERS to END_STREAM, and did not reset), each with the fields of its
// request, one "name: value" a line. Stream 0 has notes on the
// connection, one a line: "goaway" (the client sent GOAWAY), "again N" (a
// HEADERS, trailers or a new request, on stream N already used), "racy" (a
// HEADERS on a stream the client had ended: its outcome depends on timing),
// "selfdep" (a HEADERS whose stream depends on itself), "more" (DATA,
// RST_STREAM or WINDOW_UPDATE from the client on a stream it opened), "dupsettings" (one
// parameter twice in a SETTINGS), "even" (a HEADERS on an even stream),
// "badpad" (a HEADERS padded past its end), "late N" (DATA on stream N
// after the client ended it), "lower" (a HEADERS opening a stream below
// one the client opened before), "split N" (a header block on stream N in
// HEADERS and CONTINUATION), "below" (DATA, RST_STREAM or WINDOW_UPDATE
// on a stream never opened, below one that was), "acks" (more SETTINGS
// ACKs than the server sent SETTINGS), "zerowin" (an initial window of
// 0).
type h2sent map[uint32]string

// h2prog turns the fuzzer's bytes into client frames. It returns the
// frames and the streams the client finished (sent END_STREAM on and did
// not reset), the ones whose outcome is compared.
func h2prog(p []byte) ([]byte, h2sent) {
	var b, hb bytes.Buffer
	fr := http2.NewFramer(&b, nil)
	fr.AllowIllegalWrites = true
	he := hpack.NewEncoder(&hb)
	next := func() byte {
		if len(p) == 0 {
			return 0
		}
		c := p[0]
		p = p[1:]
		return c
	}
	// Streams are mostly the next odd ids in order; sometimes an old one,
	// 0, an even one or one far ahead.
	var last uint32
	stream := func() uint32 {
		c := next()
		switch c % 8 {
		case 0, 1, 2, 3:
			if last += 2; last%2 == 0 {
				last--
			}
			return last
		case 4:
			return max(last, 1)
		case 5:
			return uint32(c/8) | 1
		case 6:
			return 0
		default:
			return uint32(c/8) * 2
		}
	}
	opened := map[uint32]bool{}
	var top uint32 // the highest stream a HEADERS was sent on
	acks := 0      // SETTINGS ACKs sent
	reqs := map[uint32]string{}
	sent := h2sent{}
	ended := map[uint32]bool{}
	below := func(id uint32) {
		if id != 0 && !opened[id] && id < top {
			sent[0] += "below\n"
		}
	}
	fr.WriteSettings()
	for n := 0; len(p) > 0 && n < 64; n++ {
		switch op := next(); op % 12 {
		case 0, 1, 2: // HEADERS
			id := stream()
			fl := next()
			if opened[id] {
				sent[0] += fmt.Sprintf("again %d\n", id)
			}
			if id%2 == 0 {
				sent[0] += "even\n"
			}
			if !opened[id] && id < top {
				sent[0] += "lower\n"
			}
			top = max(top, id)
			if ended[id] && !strings.Contains(sent[0], "racy\n") {
				// Whether the stream is still half-closed or already
				// closed when this arrives depends on the handler's speed:
				// a stream error or a connection error (RFC 9113 5.1).
				sent[0] += "racy\n"
			}
			if fl&0x40 != 0 && opened[id] {
				// trailers
				hb.Reset()
				he.WriteField(hpack.HeaderField{Name: h2DiffRegular[int(next())%len(h2DiffRegular)][0], Value: "t"})
			} else {
				hb.Reset()
				reqs[id] = h2fields(he, next)
			}
			block := bytes.Clone(hb.Bytes())
			endStream := fl&1 == 0
			unended := false                 // the header block is left open: what follows is a connection error
			if fl&2 != 0 && len(block) > 1 { // split into HEADERS and CONTINUATION
				cut := int(next()) % len(block)
				sent[0] += fmt.Sprintf("split %d\n", id)
				fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: block[:cut], EndStream: endStream})
				if fl&4 != 0 { // something else between: a connection error
					fr.WritePing(false, [8]byte{})
				}
				fr.WriteContinuation(id, true, block[cut:])
			} else if fl&8 != 0 && len(p) > 0 && p[0] >= 0xf8 {
				c := next()
				// Padding longer than the frame: a connection error (RFC
				// 9113 section 6.2).
				sent[0] += "badpad\n"
				unended = true
				flags := http2.FlagHeadersPadded | http2.FlagHeadersEndHeaders
				if endStream {
					flags |= http2.FlagHeadersEndStream
				}
				fr.WriteRawFrame(http2.FrameHeaders, flags, id, append([]byte{byte(min(len(block)+1+int(c%8), 255))}, block...))
			} else {
				var pad uint8
				if fl&8 != 0 {
					pad = next() % 8
				}
				unended = fl&16 != 0
				if uint32(fl>>5)&3 == id {
					sent[0] += "selfdep\n"
				}
				fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: block, EndStream: endStream, EndHeaders: !unended, PadLength: pad, Priority: http2.PriorityParam{StreamDep: uint32(fl>>5) & 3, Weight: fl}})
			}
			opened[id] = true
			// Stream 0 holds the notes: a HEADERS on it is a connection
			// error, not a request to compare.
			if endStream && !ended[id] && !unended && id != 0 {
				ended[id] = true
				sent[id] = reqs[id]
			}
		case 3, 4: // DATA
			id := stream()
			if id != 0 && !opened[id] && next()&1 == 0 {
				id = last
			}
			below(id)
			fl := next()
			n := int(next())
			if fl&4 != 0 {
				n *= 64
			}
			endStream := fl&1 == 0
			if fl&0x1a == 0x1a {
				// Padding longer than the frame: a connection error (RFC
				// 9113 section 6.1).
				m := n % 128
				flags := http2.FlagDataPadded
				if endStream {
					flags |= http2.FlagDataEndStream
				}
				fr.WriteRawFrame(http2.FrameData, flags, id, append([]byte{byte(m + 1 + int(fl>>5))}, make([]byte, m)...))
				endStream = false
			} else if fl&2 != 0 {
				fr.WriteDataPadded(id, endStream, make([]byte, n), make([]byte, fl>>5))
			} else {
				fr.WriteData(id, endStream, bytes.Repeat([]byte{'d'}, n))
			}
			if opened[id] {
				sent[0] += "more\n"
			}
			if opened[id] && ended[id] {
				sent[0] += fmt.Sprintf("late %d\n", id)
			}
			if endStream && opened[id] && !ended[id] && id != 0 {
				ended[id] = true
				sent[id] = reqs[id]
			}
		case 5: // RST_STREAM
			id := stream()
			below(id)
			fr.WriteRSTStream(id, http2.ErrCode(next()%14))
			if opened[id] {
				sent[0] += "more\n"
			}
			if id != 0 { // stream 0 holds the notes
				delete(sent, id)
			}
			ended[id] = true
		case 6: // WINDOW_UPDATE
			id := uint32(0)
			if next()&1 != 0 {
				id = stream()
			}
			below(id)
			if id != 0 && opened[id] {
				sent[0] += "more\n"
			}
			incs := []uint32{1, 100, 65535, 1 << 20, 1<<31 - 1, 0}
			fr.WriteWindowUpdate(id, incs[int(next())%len(incs)])
		case 7: // SETTINGS
			var ss []http2.Setting
			for range next() % 4 {
				c := next()
				vals := []uint32{0, 1, 100, 4096, 16384, 65535, 1 << 20, 1<<31 - 1, 1 << 31, 1<<24 - 1, 1 << 24}
				ss = append(ss, http2.Setting{ID: http2.SettingID(c%8 + 1), Val: vals[int(next())%len(vals)]})
			}
			for i := range ss {
				if ss[i].ID == http2.SettingInitialWindowSize && ss[i].Val == 0 && !strings.Contains(sent[0], "zerowin\n") {
					sent[0] += "zerowin\n"
				}
				for j := range i {
					if ss[i].ID == ss[j].ID {
						sent[0] += "dupsettings\n"
					}
				}
			}
			if len(ss) > 0 && next()&7 == 0 {
				fr.WriteSettingsAck() // an ACK with a payload is written below as raw
				ss = nil
				if acks++; acks == 2 {
					sent[0] += "acks\n" // more than the server's one SETTINGS
				}
			}
			fr.WriteSettings(ss...)
		case 8: // PING
			c := next()
			fr.WritePing(c&1 != 0, [8]byte{c})
		case 9: // PRIORITY
			id := stream()
			c := next()
			fr.WritePriority(id, http2.PriorityParam{StreamDep: uint32(c>>4) | 1, Weight: c})
		case 10: // GOAWAY from the client
			fr.WriteGoAway(last, http2.ErrCode(next()%3), nil)
			sent[0] += "goaway\n"
		default: // a frame of unknown type, or a frame of a wrong length
			c := next()
			if c&1 == 0 {
				fr.WriteRawFrame(0x20+http2.FrameType(c>>4), 0, uint32(next()), []byte("x"))
			} else {
				kinds := []http2.FrameType{http2.FramePing, http2.FrameRSTStream, http2.FrameWindowUpdate, http2.FrameSettings, http2.FramePriority}
				fr.WriteRawFrame(kinds[int(c>>1)%len(kinds)], 0, uint32(next()%4), make([]byte, int(next()%10)))
			}
		}
	}
	return b.Bytes(), sent
}

// The header fields of a request: each pseudo-header from a list with good
// and bad values, sometimes left out, then regular fields.
var (
	h2DiffMethods = []string{"GET", "POST", "HEAD", "PUT", "OPTIONS", "CONNECT", "", "get", "G T", "DELETE"}
	h2DiffPaths   = []string{"/", "/a/b?c=d", "", "*", "x", "//a", "/a b", "/%zz", "http://h/p", "/\x7f"}
	h2DiffSchemes = []string{"https", "http", "", "ftp"}
	h2DiffAuths   = []string{"a", "example.com:443", "", "a b", "[::1]:8", "a@b", "a/b"}
	h2DiffRegular = [][2]string{
		{"content-length", "0"}, {"content-length", "3"}, {"content-length", "-1"}, {"content-length", "x"},
		{"content-length", "100"}, {"connection", "close"}, {"te", "trailers"}, {"te", "gzip"},
		{"keep-alive", "1"}, {"transfer-encoding", "chunked"}, {"upgrade", "h2c"}, {"host", "b"},
		{"X-Upper", "v"}, {"x-a", "v\x00"}, {"x-a", " v"}, {"x-a", ""}, {"", "v"}, {"x y", "v"},
		{":path", "/again"}, {":method", "GET"}, {":protocol", "websocket"}, {":unknown", "v"},
		{"cookie", "a=1"}, {"cookie", "b=2"}, {"x-a", "v\r\n"}, {"proxy-connection", "x"},
		{"content-type", "text/plain"}, {"accept", "*/*"},
	}
)

func h2fields(he *hpack.Encoder, next func() byte) string {
	var desc strings.Builder
	write := func(hf hpack.HeaderField) {
		he.WriteField(hf)
		fmt.Fprintf(&desc, "%s: %s\n", hf.Name, hf.Value)
	}
	pseudo := []struct {
		name string
		vals []string
	}{{":method", h2DiffMethods}, {":scheme", h2DiffSchemes}, {":authority", h2DiffAuths}, {":path", h2DiffPaths}}
	var late []hpack.HeaderField
	for _, ps := range pseudo {
		c := next()
		switch {
		case c&0xe0 == 0xe0: // left out
		case c&0xe0 == 0xc0: // after a regular field
			late = append(late, hpack.HeaderField{Name: ps.name, Value: ps.vals[int(c)%len(ps.vals)]})
		default:
			write(hpack.HeaderField{Name: ps.name, Value: ps.vals[int(c)%len(ps.vals)]})
		}
	}
	for range next() % 4 {
		kv := h2DiffRegular[int(next())%len(h2DiffRegular)]
		write(hpack.HeaderField{Name: kv[0], Value: kv[1]})
	}
	for _, hf := range late {
		write(hf)
	}
	return desc.String()
}

// h2outcome is what a server did with one connection.
type h2outcome struct {
	sent    h2sent
	streams map[uint32]string // per finished stream: "status method path len/body", "reset" or "refused"
	goaway  string            // "" (none), "NO_ERROR" or the error
	last    uint32            // the first GOAWAY's last stream id
	hung    bool              // a finished stream got no answer in time
	bad     string            // the server wrote something that is not h2
}

func (o h2outcome) String() string {
	ids := make([]uint32, 0, len(o.streams))
	for id := range o.streams {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	var b strings.Builder
	for _, id := range ids {
		fmt.Fprintf(&b, "[%d: %s] ", id, o.streams[id])
	}
	fmt.Fprintf(&b, "goaway=%q hung=%v bad=%q", o.goaway, o.hung, o.bad)
	return b.String()
}

// h2Run serves one connection with serve and sends it the preface and in,
// then a PING of its own, and collects the outcome: it waits for the PING's
// acknowledgement and then for every stream of sent to end (or the
// connection to), 3 seconds at most. With waitServe, serve must return
// once the connection is closed.
func h2Run(in []byte, sent h2sent, serve func(net.Conn), waitServe bool) h2outcome {
	cc, sc := net.Pipe()
	served := make(chan struct{})
	go func() {
		defer close(served)
		defer sc.Close()
		serve(sc)
	}()
	go func() {
		cc.SetWriteDeadline(time.Now().Add(2 * time.Second))
		cc.Write([]byte(http2.ClientPreface))
		cc.Write(in)
		fr := http2.NewFramer(cc, nil)
		fr.WritePing(false, [8]byte{'d', 'i', 'f', 'f'})
	}()
	out := h2outcome{sent: sent, streams: map[uint32]string{}}
	type stream struct {
		status, method, path, xlen string
		body                       int
		text                       []byte
		done                       bool
	}
	streams := map[uint32]*stream{}
	get := func(id uint32) *stream {
		if streams[id] == nil {
			streams[id] = &stream{}
		}
		return streams[id]
	}
	// Past a GOAWAY (either side's) nothing more than the streams' ends
	// is waited for: a closing server may read on for a while.
	pinged, goaway := false, strings.Contains(sent[0], "goaway\n")
	settled := func() bool {
		if !pinged && !goaway {
			return false
		}
		for id := range sent {
			if s := streams[id]; id != 0 && (s == nil || !s.done) {
				return false
			}
		}
		return true
	}
	deadline := time.Now().Add(3 * time.Second)
	cc.SetReadDeadline(deadline)
	fr := http2.NewFramer(io.Discard, cc)
	fr.ReadMetaHeaders = hpack.NewDecoder(65536, nil)
	fr.MaxHeaderListSize = 1 << 20
	for !settled() {
		f, err := fr.ReadFrame()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				// Silence is a hang only if a finished stream waits
				// for its answer: a closing connection is read on
				// for a while with no more frames (drain).
				for id := range sent {
					if s := streams[id]; id != 0 && (s == nil || !s.done) {
						out.hung = true
					}
				}
				if !pinged && out.goaway == "" {
					out.hung = true // neither the PING answered nor the connection ended
				}
			} else if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrClosedPipe) {
				out.bad = err.Error()
			}
			break
		}
		switch f := f.(type) {
		case *http2.PingFrame:
			if f.IsAck() && f.Data == [8]byte{'d', 'i', 'f', 'f'} {
				pinged = true
			}
		case *http2.GoAwayFrame:
			if out.goaway == "" {
				out.last = f.LastStreamID
			}
			out.goaway, goaway = f.ErrCode.String(), true
			if f.ErrCode != http2.ErrCodeNo {
				// A closing connection may be read on for a while (the
				// engine drains), but nothing more comes.
				pinged, sent = true, nil
			}
		case *http2.RSTStreamFrame:
			s := get(f.StreamID)
			if !s.done {
				// Which error code a reset carries is not compared: only
				// whether the stream was refused (safe to retry) or reset.
				s.status, s.done = "reset", true
				if f.ErrCode == http2.ErrCodeRefusedStream {
					s.status = "refused"
				}
			}
		case *http2.MetaHeadersFrame:
			s := get(f.StreamID)
			if s.status == "" {
				s.status = f.PseudoValue("status")
				for _, hf := range f.RegularFields() {
					switch hf.Name {
					case "x-method":
						s.method = hf.Value
					case "x-path":
						s.path = hf.Value
					case "x-len":
						s.xlen = hf.Value
					}
				}
			}
			if f.StreamEnded() {
				s.done = true
			}
		case *http2.DataFrame:
			s := get(f.StreamID)
			s.body += len(f.Data())
			if s.method == "" && len(s.text) < 100 {
				s.text = append(s.text, f.Data()...)
			}
			if f.StreamEnded() {
				s.done = true
			}
		}
	}
	cc.Close()
	if waitServe {
		select {
		case <-served:
		case <-time.After(5 * time.Second):
			out.bad = "the server did not return after its connection closed"
		}
	}
	for id := range sent {
		s := streams[id]
		switch {
		case id == 0:
		case s == nil && out.goaway != "" && id > out.last:
			out.streams[id] = "unprocessed" // above the server's GOAWAY
		case s == nil:
			out.streams[id] = "none"
		case !s.done:
			out.streams[id] = "unfinished " + s.status
		case s.status == "reset" || s.status == "refused":
			out.streams[id] = s.status
		case s.method == "": // not the handler's: the server's own refusal
			out.streams[id] = fmt.Sprintf("%s %q", s.status, bytes.TrimSpace(s.text))
		default:
			out.streams[id] = fmt.Sprintf("%s %s %s %s/%d", s.status, s.method, s.path, s.xlen, s.body)
		}
	}
	return out
}

// h2Compare says how a (the engine) and b (x/net) differ, "" if they do not
// or only as h2DiffExcused allows.
func h2Compare(a, b h2outcome) string {
	if a.bad != "" {
		return "the engine: " + a.bad
	}
	if a.hung && !b.hung && !h2ZeroWindowWait(a) {
		return "a finished stream of the engine got no answer"
	}
	if strings.Contains(a.sent[0], "racy\n") {
		return "" // the outcome depends on timing, on both sides
	}
	aerr := a.goaway != "" && a.goaway != "NO_ERROR"
	berr := b.goaway != "" && b.goaway != "NO_ERROR"
	if aerr != berr {
		if why := h2DiffExcusedConn(a, b); why != "" {
			return ""
		}
		return fmt.Sprintf("connection error %q vs %q", a.goaway, b.goaway)
	}
	if aerr || a.hung || b.hung {
		// The connection failed on both sides: which streams completed
		// before it did is a matter of timing.
		return ""
	}
	var diffs []string
	for id := range a.streams {
		if id == 0 {
			continue
		}
		sa, sb := a.streams[id], b.streams[id]
		// A stream above the last stream id of a server's GOAWAY was not
		// processed (RFC 9113 section 6.8). The engine ignores a stream
		// opened after its GOAWAY; x/net resets it if its Framer finds a
		// field malformed, a check it makes before its GOAWAY's. And a
		// stream x/net's Framer refused is not counted in x/net's GOAWAY,
		// whose reset may not come before its close, where the engine
		// resets the malformed stream. Neither server answered it.
		if sa == "unprocessed" && sb == "reset" && b.goaway != "" && id > b.last ||
			sa == "reset" && sb == "unprocessed" {
			continue
		}
		// DATA on a stream the client had ended is the stream's error
		// (STREAM_CLOSED, RFC 9113 section 5.1), which races with the
		// handler's answer: the engine runs the handler at once and may
		// have sent the whole response before it reads the DATA; x/net
		// reads it first. Either end is right.
		if (sa == "reset" || sb == "reset") && strings.Contains(a.sent[0], fmt.Sprintf("late %d\n", id)) {
			continue
		}
		if sa != sb && !h2DiffExcuse(sa, sb, a.sent[id]) {
			diffs = append(diffs, fmt.Sprintf("stream %d: %q vs %q, request:\n%s", id, sa, sb, a.sent[id]))
		}
	}
	sort.Strings(diffs)
	return strings.Join(diffs, "; ")
}

// h2DiffExcused are the intended differences on one stream: the engine's
// own refusal (its status and text, as h2Run shows them) where x/net
// answers with the handler's 200 or resets the stream. Each is a check of
// the core that x/net does not make.
var h2DiffExcused = map[string]string{
	// canonical.go: a method must be a token the core knows (x/net passes
	// any token, and resets a method that is not one).
	`501 "method not implemented"`: "",
	`400 "malformed method"`:       "",
	// :authority is checked as HTTP/1.1's Host (validHost, stricter than
	// x/net's check).
	`400 "malformed Host header"`: "",
	// A Content-Length that is not one number (several different values
	// included) is the core's 400, as for HTTP/1.1 (checkContentLength);
	// x/net resets the stream.
	`400 "malformed Content-Length"`: "",
	// The core is no forward proxy: CONNECT is 405 (x/net passes it to
	// the handler), and an asterisk-form target is for OPTIONS only.
	`405 "CONNECT not supported: not a proxy"`: "",
	`400 "asterisk-form only for OPTIONS"`:     "",
	// canonical.go: the target and path checks, as for HTTP/1.1 (x/net
	// takes a :path with a space or a fragment).
	`400 "malformed request target"`:          "",
	`400 "fragment in request target"`:        "",
	`400 "request body incomplete"`:           "",
	`400 "h2 :path must be origin-form or *"`: "",
	`400 "encoded slash in path"`:             "",
	`400 "backslash in path"`:                 "",
	`400 "control character in path"`:         "",
	`400 "path climbs above the root"`:        "",
}

func h2DiffExcuse(a, b, req string) bool {
	// OPTIONS * is answered by the core itself (as for HTTP/1.1), not by
	// the handler.
	if a == `200 ""` && strings.Contains(req, ":method: OPTIONS\n") && strings.Contains(req, ":path: *\n") && strings.HasPrefix(b, "200 OPTIONS * ") {
		return true
	}
	// A refusal of a HEAD has no text to tell which it is: its status
	// must be one of those excused.
	if strings.HasSuffix(a, ` ""`) && strings.Contains(req, ":method: HEAD\n") && (strings.HasPrefix(b, "200 ") || b == "reset") {
		for k := range h2DiffExcused {
			if strings.HasPrefix(k, strings.TrimSuffix(a, `""`)) {
				return true
			}
		}
	}
	// x/net's answer: the handler's (200, or 500 when the body failed),
	// a reset, or x/net's own 400 for a request with more than one fault
	// (the two servers check in different orders).
	xnet := strings.HasPrefix(b, "200 ") || b == "reset" || strings.HasPrefix(b, `500 "read: `) || strings.HasPrefix(b, "400 ")
	if _, ok := h2DiffExcused[a]; ok && xnet {
		return true
	}
	// The core's canonical path (canonical.go: repeated slashes merged,
	// dot segments resolved), where x/net gives the handler the path as
	// sent.
	fa, fb := strings.Fields(a), strings.Fields(b)
	if len(fa) == 4 && len(fb) == 4 && fa[0] == "200" && fa[0] == fb[0] && fa[1] == fb[1] && fa[3] == fb[3] &&
		path.Clean(fa[2]) == path.Clean(fb[2]) {
		return true
	}
	// A body the frames contradict (Content-Length) is malformed, the
	// stream's error (RFC 9113 section 8.1.1): the engine resets it, x/net
	// gives the handler a read error (the echo handler's 500).
	if a == "reset" && strings.HasPrefix(b, `500 "read: `) {
		return true
	}
	// A malformed request (a connection-specific field, RFC 9113 section
	// 8.2.2) is reset by the engine, answered 400 by x/net: both refuse it.
	if a == "reset" && (strings.HasPrefix(b, `400 "request header `) || b == `400 ""` && strings.Contains(req, ":method: HEAD\n")) {
		return true
	}
	// A Content-Length the body does not match: the engine resets the
	// stream (RFC 9113 section 8.1.1), x/net's handler reads the body as
	// sent (x/net does not hold a request ended by its HEADERS to its
	// Content-Length). The method may hold a space: the length is the
	// last field.
	if fb := strings.Fields(b); a == "reset" && len(fb) >= 4 && fb[0] == "200" {
		got, _, _ := strings.Cut(fb[len(fb)-1], "/")
		for _, cl := range []string{"0", "3", "100"} {
			if strings.Contains(req, "content-length: "+cl+"\n") && got != cl {
				return true
			}
		}
	}
	// An extended CONNECT (RFC 8441, h2ext.go) reaches the handler; x/net
	// v0.62 resets every request with :protocol unless the process runs
	// with GODEBUG=http2xconnect=1 (off by default, golang/go#71128). Its
	// malformed forms (:protocol on another method, a pseudo-header
	// missing) are reset by both; its path and :authority checks are the
	// excused refusals above. (With GODEBUG=http2xconnect=1, x/net serves
	// the complete form as the engine does, but also takes :protocol on
	// any method and a CONNECT without :scheme or :authority, which the
	// engine resets: RFC 8441 section 4, RFC 9113 section 8.1.1.)
	if strings.HasPrefix(a, "200 CONNECT ") && b == "reset" && strings.Contains(req, ":method: CONNECT\n") && strings.Contains(req, ":protocol: websocket\n") {
		return true
	}
	// TE in more than one field line, each "trailers": RFC 9113 section
	// 8.2.2 allows TE whose only value is "trailers", which the list
	// "trailers, trailers" is; the engine passes it, x/net refuses it (a
	// refusal of a HEAD has no text).
	teRefused := b == `400 "request header \"TE\" may only be \"trailers\" in HTTP/2"` || b == `400 ""` && strings.Contains(req, ":method: HEAD\n")
	if strings.HasPrefix(a, "200 ") && teRefused &&
		strings.Count(req, "te: trailers\n") > 1 && strings.Count(req, "te: ") == strings.Count(req, "te: trailers\n") {
		return true
	}
	// RFC 9113 8.3.1 does not restrict :scheme to http and https; the
	// engine passes any scheme on (the proxy does not forward it), x/net
	// resets the stream.
	if strings.HasPrefix(a, "200 ") && b == "reset" && strings.Contains(req, ":scheme: ftp\n") {
		return true
	}
	return false
}

// h2ZeroWindowWait says whether every stream of a that got no end has
// its response head: with an initial window of 0 the body waits for a
// WINDOW_UPDATE the client never sends (the engine's own refusals have
// bodies, which x/net's resets do not need), until write_timeout.
func h2ZeroWindowWait(a h2outcome) bool {
	if !strings.Contains(a.sent[0], "zerowin\n") {
		return false
	}
	for id, o := range a.streams {
		if id != 0 && (o == "unfinished " || o == "none") {
			return false
		}
	}
	return true
}

// h2Failed says whether the connection ended with an error.
func h2Failed(o h2outcome) bool { return o.goaway != "" && o.goaway != "NO_ERROR" }

// h2DiffExcusedConn is the list of intended differences in how a
// connection ends; it returns why one is excused.
func h2DiffExcusedConn(a, b h2outcome) string {
	// Once the client has sent GOAWAY the engine closes as soon as its
	// streams are done and reads no further frames, so an error in what
	// the client sends later is not seen; x/net reads on.
	if strings.Contains(a.sent[0], "goaway\n") && !a.hung && a.bad == "" {
		return "the client sent GOAWAY first"
	}
	// A HEADERS whose padding is longer than the frame is a connection
	// error (RFC 9113 section 6.2: its header block cannot be decoded, and
	// the HPACK table would be lost, section 4.3); x/net's Framer reports
	// the stream's error and goes on with its table out of step.
	if strings.Contains(a.sent[0], "badpad\n") && a.goaway == "PROTOCOL_ERROR" {
		return "a HEADERS with padding longer than the frame"
	}
	// A new stream below one the client opened before is a connection
	// error (RFC 9113 section 5.1.1: the lower stream is closed); x/net
	// does not count as opened a stream whose HEADERS its Framer refused
	// (a malformed field), and takes the lower one as new.
	if strings.Contains(a.sent[0], "lower\n") && (a.goaway == "PROTOCOL_ERROR" || a.goaway == "STREAM_CLOSED") && !h2Failed(b) {
		return "a new stream below one opened before"
	}
	// A malformed request whose header block goes on in CONTINUATION is
	// the stream's error (RFC 9113 section 8.1.1): the engine refuses the
	// stream; x/net ends the connection when a field is invalid before the
	// block's last fragment (it stops counting the list's size there).
	// (A stream the client did not end is not compared: its request may
	// be malformed.)
	if a.goaway == "" && !a.hung && b.goaway == "PROTOCOL_ERROR" {
		for _, line := range strings.Split(a.sent[0], "\n") {
			var id uint32
			if _, err := fmt.Sscanf(line, "split %d", &id); err != nil {
				continue
			}
			if o, ok := a.streams[id]; !ok || o == "reset" || strings.HasPrefix(o, "4") {
				return "a malformed request in HEADERS and CONTINUATION"
			}
		}
	}
	// A stream never opened, below one that was, is closed (RFC 9113
	// section 5.1.1): the engine takes DATA on it as the stream's error
	// and RST_STREAM or WINDOW_UPDATE as nothing. x/net does not count as
	// opened a stream whose HEADERS its Framer refused (a malformed
	// field), so the lower stream is idle to it, and those frames end its
	// connection.
	if strings.Contains(a.sent[0], "below\n") && a.goaway == "" && !a.hung && b.goaway == "PROTOCOL_ERROR" {
		return "a frame on a stream below one opened"
	}
	// A SETTINGS ACK with no SETTINGS of the server's to acknowledge:
	// RFC 9113 section 6.5.3 makes it no error, and the engine ignores
	// it; x/net ends the connection.
	if strings.Contains(a.sent[0], "acks\n") && a.goaway == "" && !a.hung && b.goaway == "PROTOCOL_ERROR" {
		return "an unsolicited SETTINGS ACK"
	}
	// A HEADERS on an even (server) stream is a connection error (RFC
	// 9113 section 5.1.1), whatever its block holds; x/net checks a
	// malformed block first and only resets the stream.
	if strings.Contains(a.sent[0], "even\n") && a.goaway == "PROTOCOL_ERROR" && b.goaway == "" {
		return "a HEADERS on an even stream"
	}
	// A pseudo-header after a regular field makes a malformed request, the
	// stream's error (RFC 9113 section 8.1.1); x/net ends the connection.
	if a.goaway == "" && !a.hung && b.goaway == "PROTOCOL_ERROR" {
		for id, req := range a.sent {
			regular := false
			for _, line := range strings.Split(req, "\n") {
				if id != 0 && strings.HasPrefix(line, ":") && regular {
					return "a pseudo-header after a regular field"
				}
				regular = regular || line != "" && !strings.HasPrefix(line, ":")
			}
		}
	}
	// A SETTINGS with one parameter twice: RFC 9113 section 6.5.3 has the
	// values processed in order, as the engine does; x/net refuses it.
	if strings.Contains(a.sent[0], "dupsettings\n") && a.goaway == "" && !a.hung && b.goaway == "PROTOCOL_ERROR" {
		return "a parameter twice in one SETTINGS"
	}
	// A HEADERS that makes its stream depend on itself: the engine opens
	// the stream and resets it (RFC 9113 sections 5.1.1 and 5.3.1), x/net
	// leaves it idle, so that what the client sends on it next (a
	// RST_STREAM, say) is an error on the connection for x/net only.
	// The same for a request x/net refuses at its HEADERS (a bad :path,
	// say): x/net resets it but counts it idle, so the client's DATA,
	// trailers, RST_STREAM or WINDOW_UPDATE on it end x/net's connection.
	if (strings.Contains(a.sent[0], "selfdep\n") || strings.Contains(a.sent[0], "more\n") || strings.Contains(a.sent[0], "again ")) && a.goaway == "" && !a.hung && b.goaway == "PROTOCOL_ERROR" {
		return "a stream that depends on itself"
	}
	// A HEADERS (trailers or a new request) on a stream the engine has
	// reset: the engine ignores it (RFC 9113 section 5.1: frames on a
	// stream this end reset are ignored; noteResetLocked); x/net may end
	// the connection.
	if a.goaway == "" && !a.hung && b.goaway != "" {
		for id, o := range a.streams {
			if id != 0 && o == "reset" && strings.Contains(a.sent[0], fmt.Sprintf("again %d\n", id)) {
				return "a request on a stream the engine reset"
			}
		}
	}
	return ""
}

// h2DiffSeeds are programs for h2prog: a GET, a POST with a body, trailers,
// a split header block, control frames, and HEADERS and DATA whose
// padding is longer than the frame.
func h2DiffSeeds() [][]byte {
	get := []byte{0, 0, 0, 0, 0, 0, 0, 0}
	return [][]byte{
		get,
		slices.Concat(get, get, get, get, get),
		{0, 0, 1, 1, 0, 0, 0, 1, 1, 3, 4, 0, 3},
		{0, 0, 1, 1, 0, 0, 0, 0, 3, 4, 1, 2, 0, 4, 0x40, 6},
		{0, 0, 2, 0, 0, 0, 0, 0, 3},
		slices.Concat([]byte{7, 2, 3, 6, 0, 0, 1}, get),
		slices.Concat([]byte{8, 0, 6, 0, 2, 9, 0, 5}, get),
		slices.Concat(get, []byte{5, 4, 8}, get),
		{0, 0, 0, 5, 0, 0, 0, 1, 20},                             // an extended CONNECT (:protocol websocket)
		slices.Concat([]byte{0, 0, 8, 0, 0, 0, 0, 0, 0xf8}, get), // HEADERS padded past its end
		{0, 0, 1, 1, 0, 0, 0, 0, 3, 4, 0x1a, 5},                  // DATA padded past its end
	}
}
