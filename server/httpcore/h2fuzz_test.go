package httpcore

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"testing"

	"tlsedge/conninfo"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// FuzzH2Conn feeds frames (after the client preface) to the h2 engine on
// an in-memory connection, with the echo handler behind it, and checks that
// the connection ends (no hang) and that everything the server wrote is a
// well-formed frame sequence: whole frames, header blocks contiguous and
// decodable, responses with a :status.
func FuzzH2Conn(f *testing.F) {
	for _, seed := range h2Seeds() {
		f.Add(seed)
	}
	o := DefaultOptions()
	o.MaxRequestBodySize = 1 << 16
	o.Handler = echoHandler()
	c, err := New(o)
	if err != nil {
		f.Fatal(err)
	}
	info := &conninfo.Info{Transport: "tcp", TLS: &tls.ConnectionState{NegotiatedProtocol: "h2", HandshakeComplete: true}}
	f.Fuzz(func(t *testing.T, in []byte) {
		var out bytes.Buffer
		c.ServeConn(&memConn{r: io.MultiReader(bytes.NewReader([]byte(http2.ClientPreface)), bytes.NewReader(in)), w: &out}, info)
		fr := http2.NewFramer(nil, &out)
		fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
		for {
			f, err := fr.ReadFrame()
			if errors.Is(err, io.EOF) {
				return
			}
			if err != nil {
				t.Fatalf("the server wrote a bad frame: %v", err)
			}
			if mh, ok := f.(*http2.MetaHeadersFrame); ok && mh.PseudoValue("status") == "" && !mh.StreamEnded() {
				t.Fatalf("response head without :status on stream %d", mh.StreamID)
			}
		}
	})
}

// h2Seeds are client frame sequences: requests with and without bodies and
// trailers, and the control frames.
func h2Seeds() [][]byte {
	var seeds [][]byte
	frames := func(fn func(fr *http2.Framer, enc func(kv ...string) []byte)) {
		var b, hb bytes.Buffer
		fr := http2.NewFramer(&b, nil)
		he := hpack.NewEncoder(&hb)
		enc := func(kv ...string) []byte {
			hb.Reset()
			for i := 0; i+1 < len(kv); i += 2 {
				he.WriteField(hpack.HeaderField{Name: kv[i], Value: kv[i+1]})
			}
			return bytes.Clone(hb.Bytes())
		}
		fr.WriteSettings()
		fn(fr, enc)
		seeds = append(seeds, b.Bytes())
	}
	get := []string{":method", "GET", ":scheme", "https", ":authority", "a", ":path", "/x?y=1"}
	post := []string{":method", "POST", ":scheme", "https", ":authority", "a", ":path", "/p", "content-length", "3"}
	frames(func(fr *http2.Framer, enc func(...string) []byte) {
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: enc(get...), EndStream: true, EndHeaders: true})
	})
	frames(func(fr *http2.Framer, enc func(...string) []byte) {
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: enc(post...), EndHeaders: true})
		fr.WriteData(1, true, []byte("abc"))
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: enc(get...), EndStream: true, EndHeaders: true})
	})
	frames(func(fr *http2.Framer, enc func(...string) []byte) {
		block := enc(append(post[:8:8], "trailer", "x-t")...)
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block[:3]})
		fr.WriteContinuation(1, true, block[3:])
		fr.WriteData(1, false, []byte("ab"))
		fr.WriteWindowUpdate(0, 1000)
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: enc("x-t", "v"), EndStream: true, EndHeaders: true})
	})
	frames(func(fr *http2.Framer, enc func(...string) []byte) {
		fr.WritePing(false, [8]byte{1})
		fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1}, http2.Setting{ID: http2.SettingHeaderTableSize, Val: 0})
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: enc(get...), EndStream: true, EndHeaders: true})
		fr.WriteRSTStream(1, http2.ErrCodeCancel)
		fr.WritePriority(3, http2.PriorityParam{StreamDep: 1, Weight: 5})
		fr.WriteGoAway(0, http2.ErrCodeNo, nil)
	})
	return seeds
}
