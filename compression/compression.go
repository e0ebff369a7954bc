// Package compression compresses responses (gzip, zstd) for the mounts the
// compress option names. It is off by default: compressing a response that
// reflects what an attacker sends next to a secret (a CSRF token, a session
// id) over TLS lets the attacker learn the secret from the response sizes
// (BREACH, CRIME's HTTP sibling), so an operator turns it on for the mounts
// whose responses carry no secrets, or whose secrets are masked per
// response.
//
// A response is compressed when all of these hold:
//   - the request is not HEAD and has no Range header, and its
//     Accept-Encoding accepts one of compress_encodings with q > 0 (the
//     highest q wins; on a tie, the order of compress_encodings);
//   - the status is not 1xx, 204, 206 or 304, and the response carries no
//     Content-Encoding of its own and no Cache-Control: no-transform;
//   - its Content-Type is one of compress_types (an application/...+json
//     type counting as application/json, +xml as application/xml, and
//     application/javascript as text/javascript), and never a type that is
//     compressed already (images other than SVG, audio, video, archives,
//     WOFF2), whatever compress_types says;
//   - its body is at least compress_min_size bytes (by Content-Length, or,
//     without one, by what the handler writes before it returns or
//     flushes).
//
// A compressed response loses its Content-Length and Accept-Ranges, its
// ETag becomes weak (the bytes differ from the identity form's), and it gets
// Content-Encoding. Every response whose compression depended on the
// request's Accept-Encoding (an eligible type, status and size) gets
// "Vary: Accept-Encoding", compressed or not, so caches keep the forms apart.
//
// Encoders are pooled and bounded: each holds a fixed window (gzip's 32 KiB,
// zstd's window capped at compressZstdWindow) and its tables, about 1 MiB
// for gzip and 2 MiB for zstd at the default level, one per response being
// compressed; at most compress_max_encoders exist at once, in use or idle,
// and a response that finds none free is sent uncompressed (with its Vary),
// so compression's memory has a ceiling whatever the load.
package compression

import (
	"errors"
	"fmt"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"

	"tlsedge/config"
	"tlsedge/router"
)

// Options are the compress_* options of one server.
type Options struct {
	Compress          []string `opt:"compress" default:"" group:"Apps" help:"mount keys (as in mount: /api, a.test/) whose responses are compressed, * for every mount; empty: off (mind BREACH on responses carrying secrets, see README)"`
	CompressMinSize   int64    `opt:"compress_min_size" default:"1KiB" unit:"bytes" group:"Apps" help:"smallest response body compressed; smaller ones are sent as they are"`
	CompressTypes     []string `opt:"compress_types" default:"text/*,application/json,application/xml" group:"Apps" help:"media types compressed (type/* for a whole type; application/json and application/xml cover the +json and +xml kinds, such as image/svg+xml; application/javascript counts as text/javascript); already-compressed types never are"`
	CompressEncodings []string `opt:"compress_encodings" default:"zstd,gzip" group:"Apps" help:"encodings offered, preferred first when the client's q-values tie: zstd, gzip"`
	CompressLevel     string   `opt:"compress_level" default:"default" group:"Apps" help:"speed against size: fastest, default (gzip 5) or better (gzip 7, zstd better)"`
	// Each encoder holds about 1 MiB (gzip) to 2 MiB (zstd default; 5 MiB
	// at better), in use or idle: the cap is the memory compression may
	// hold, whatever the load.
	CompressMaxEncoders int `opt:"compress_max_encoders" default:"32" group:"Apps" help:"encoders that may exist at once, busy or idle (about 1-2 MiB each); responses past them are sent uncompressed"`
}

// maxMinSize caps compress_min_size: a response without Content-Length is
// held up to this size before the decision, per response being written.
const maxMinSize = 64 << 10

// compressZstdWindow caps zstd's window (and so its memory per encoder and
// what a client must hold to decode). Responses are compressed one by one,
// and most are far smaller: a larger window buys little.
const compressZstdWindow = 256 << 10

// Validate checks the options, each error naming its option.
func (o *Options) Validate() error {
	var errs []error
	for _, k := range o.Compress {
		if _, err := CleanKey(k); err != nil {
			errs = append(errs, config.KeyError("compress", "%v", err))
		}
	}
	if o.CompressMinSize < 0 || o.CompressMinSize > maxMinSize {
		errs = append(errs, config.KeyError("compress_min_size", "%d is out of range; use 0 to %d bytes", o.CompressMinSize, maxMinSize))
	}
	for _, t := range o.CompressTypes {
		t = strings.ToLower(strings.TrimSpace(t))
		mt, sub, ok := strings.Cut(t, "/")
		if !ok || mt == "" || sub == "" || mt == "*" || strings.ContainsAny(t, " ;") {
			errs = append(errs, config.KeyError("compress_types", "%q is not a media type like text/html or text/*", t))
			continue
		}
		if sub != "*" && precompressed(t) {
			errs = append(errs, config.KeyError("compress_types", "%s is compressed already: compressing it again costs CPU and saves nothing", t))
		}
	}
	if len(o.CompressEncodings) == 0 {
		errs = append(errs, config.KeyError("compress_encodings", "empty; use zstd, gzip or both"))
	}
	for _, e := range o.CompressEncodings {
		if e != "gzip" && e != "zstd" {
			errs = append(errs, config.KeyError("compress_encodings", "%q: use zstd or gzip", e))
		}
	}
	if o.CompressMaxEncoders < 1 {
		errs = append(errs, config.KeyError("compress_max_encoders", "%d: use 1 or more", o.CompressMaxEncoders))
	}
	if _, _, err := levels(o.CompressLevel); err != nil {
		errs = append(errs, config.KeyError("compress_level", "%v", err))
	}
	return errors.Join(errs...)
}

// CleanKey checks one compress entry: "*" or a mount key, returned in the
// form routing compares (router.CleanKey).
func CleanKey(k string) (string, error) {
	k = strings.TrimSpace(k)
	if k == "*" {
		return k, nil
	}
	return router.CleanKey(k)
}

func levels(s string) (int, zstd.EncoderLevel, error) {
	switch s {
	case "fastest":
		return 1, zstd.SpeedFastest, nil
	case "default", "":
		return 5, zstd.SpeedDefault, nil
	case "better":
		return 7, zstd.SpeedBetterCompression, nil
	}
	return 0, 0, fmt.Errorf("%q: use fastest, default or better", s)
}

// precompressed reports whether the media type t (lower case, no
// parameters) is compressed already.
func precompressed(t string) bool {
	mt, sub, _ := strings.Cut(t, "/")
	switch mt {
	case "image":
		return sub != "svg+xml" && sub != "bmp" && sub != "x-icon" && sub != "vnd.microsoft.icon"
	case "audio", "video":
		return true
	case "font":
		return sub == "woff" || sub == "woff2"
	case "application":
		switch sub {
		case "gzip", "x-gzip", "zstd", "zip", "x-bzip2", "x-xz", "x-7z-compressed", "x-rar-compressed", "vnd.rar",
			"br", "x-brotli", "pdf", "octet-stream", "x-compress", "x-lzip", "x-lz4", "epub+zip", "java-archive",
			"vnd.android.package-archive":
			return true
		}
		return strings.HasSuffix(sub, "+zip")
	}
	return false
}

// Compressor compresses the responses of the mounts its options name.
// Build one per configuration with New; it is safe for concurrent use.
type Compressor struct {
	keys    []string // cleaned mount keys, "*" for all
	minSize int
	exact   map[string]bool
	wild    []string // "text/" for text/*
	encs    []string
	gzLevel int
	zsLevel zstd.EncoderLevel
	gzIdle  chan *gzip.Writer
	zsIdle  chan *zstd.Encoder
	live    atomic.Int64 // encoders that exist, busy or idle
	max     int64
}

// New builds the compressor for o (validated). Its Wrap does nothing when
// compress is empty.
func New(o Options) (*Compressor, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	gz, zs, _ := levels(o.CompressLevel)
	c := &Compressor{
		minSize: int(o.CompressMinSize),
		exact:   map[string]bool{},
		encs:    slices.Clone(o.CompressEncodings),
		gzLevel: gz,
		zsLevel: zs,
		gzIdle:  make(chan *gzip.Writer, o.CompressMaxEncoders),
		zsIdle:  make(chan *zstd.Encoder, o.CompressMaxEncoders),
		max:     int64(o.CompressMaxEncoders),
	}
	for _, k := range o.Compress {
		k, _ = CleanKey(k)
		c.keys = append(c.keys, k)
	}
	for _, t := range o.CompressTypes {
		t = strings.ToLower(strings.TrimSpace(t))
		if p, ok := strings.CutSuffix(t, "/*"); ok {
			c.wild = append(c.wild, p+"/")
		} else {
			c.exact[t] = true
		}
	}
	return c, nil
}

// Keys are the mount keys compressed, as cleaned ("*" for every mount).
func (c *Compressor) Keys() []string { return slices.Clone(c.keys) }

// Wrap returns next compressing its responses when key (a mount key as
// router.MountSpec.Key gives it) or "*" is in compress; else next itself.
func (c *Compressor) Wrap(key string, next http.Handler) http.Handler {
	if c == nil || !slices.Contains(c.keys, key) && !slices.Contains(c.keys, "*") {
		return next
	}
	return &handler{c: c, next: next}
}

type handler struct {
	c    *Compressor
	next http.Handler
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodHead || r.Header.Get("Range") != "" {
		h.next.ServeHTTP(w, r)
		return
	}
	cw := &writer{ResponseWriter: w, c: h.c, enc: h.c.choose(r.Header.Values("Accept-Encoding"))}
	defer cw.finish()
	h.next.ServeHTTP(cw, r)
}

// choose picks the encoding for an Accept-Encoding: the offered one with
// the highest q above 0, ties going to the order of compress_encodings; ""
// when none is acceptable (or no Accept-Encoding was sent).
func (c *Compressor) choose(fields []string) string {
	if len(fields) == 0 {
		return ""
	}
	best, bestQ := "", 0.0
	for _, enc := range c.encs {
		q, star, found := -1.0, -1.0, false
		for _, f := range fields {
			for item := range strings.SplitSeq(f, ",") {
				name, params, _ := strings.Cut(item, ";")
				name = strings.ToLower(strings.TrimSpace(name))
				if name != enc && name != "*" && !(enc == "gzip" && name == "x-gzip") {
					continue
				}
				v := parseQ(params)
				if name == "*" {
					star = max(star, v)
				} else {
					q, found = max(q, v), true
				}
			}
		}
		if !found {
			q = star
		}
		if q > bestQ {
			best, bestQ = enc, q
		}
	}
	return best
}

// parseQ reads the q parameter of an Accept-Encoding item: 1 when absent,
// 0 when malformed (a client that sends nonsense gets identity).
func parseQ(params string) float64 {
	for p := range strings.SplitSeq(params, ";") {
		k, v, ok := strings.Cut(strings.TrimSpace(p), "=")
		if !ok || !strings.EqualFold(strings.TrimSpace(k), "q") {
			continue
		}
		q, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		if err != nil || q < 0 || q > 1 {
			return 0
		}
		return q
	}
	return 1
}

// eligible reports whether a response with header h and status code may be
// compressed, leaving out the size, which may not be known yet.
func (c *Compressor) eligible(code int, h http.Header) bool {
	switch {
	case code < 200, code == http.StatusNoContent, code == http.StatusPartialContent, code == http.StatusNotModified:
		return false
	}
	if ce := h.Get("Content-Encoding"); ce != "" && !strings.EqualFold(ce, "identity") {
		return false
	}
	for _, v := range h.Values("Cache-Control") {
		for d := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(d), "no-transform") {
				return false
			}
		}
	}
	ct := h.Get("Content-Type")
	if ct == "" {
		return false
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil || precompressed(mt) {
		return false
	}
	switch mt {
	case "application/javascript", "application/x-javascript", "application/ecmascript":
		mt = "text/javascript" // RFC 9239: JavaScript is text/javascript; the others are its old names
	}
	if c.exact[mt] {
		return true
	}
	// Structured syntax suffixes (RFC 6839): application/ld+json is JSON,
	// image/svg+xml and application/atom+xml are XML.
	if i := strings.LastIndexByte(mt, '+'); i > 0 {
		switch mt[i:] {
		case "+json":
			return c.exact["application/json"]
		case "+xml":
			return c.exact["application/xml"]
		}
	}
	for _, p := range c.wild {
		if strings.HasPrefix(mt, p) {
			return true
		}
	}
	return false
}
