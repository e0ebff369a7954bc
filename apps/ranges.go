package apps

import (
	"cmp"
	"math"
	"mime/multipart"
	"net/textproto"
	"slices"
	"strconv"
	"strings"
)

// multipartSlack is how much a multipart/byteranges answer may exceed the
// file it is cut from: the part headers and boundaries of a few ranges. A
// request whose parts would cost more gets the whole file (200) instead, so
// no Range header can make the edge send more than a plain GET would, plus
// this.
const multipartSlack = 1 << 10

// byteRange is one satisfiable range, resolved against the representation's
// size: bytes first..last inclusive. order is the position of the earliest
// range-spec it stands for, so that coalesced parts keep the order the
// client asked for (RFC 9110, section 14.6).
type byteRange struct {
	first, last int64
	order       int
}

// rangeAnswer is what normalizeRange decided.
type rangeAnswer int

const (
	rangeIgnore        rangeAnswer = iota // serve the whole representation (200)
	rangeServe                            // serve the ranges in the normalised header (206)
	rangeUnsatisfiable                    // no range overlaps the representation (416)
)

// normalizeRange reads the Range header values of a request for a
// representation of size bytes and content type ctype, and returns what to
// do and, for rangeServe and rangeUnsatisfiable, the header to hand
// http.ServeContent in their place: absolute ranges, ascending within
// themselves, overlapping and adjacent ones coalesced (RFC 9110, section
// 14.2 allows both), in the order the client asked for them.
//
// http.ServeContent alone checks only that the ranges' bytes do not add up
// to more than the file: ten thousand "0-0" ranges pass that check and cost
// a part header each, a hundredfold amplification. Here:
//
//   - a header that is not a valid bytes ranges-specifier (two Range
//     fields, another unit, a bad range-spec, last-pos before first-pos) is
//     ignored, as RFC 9110 says, and the whole file is sent;
//   - more than maxRanges range-specs get the whole file too, as nginx's
//     max_ranges does, or 416 if none of them is satisfiable;
//   - a multipart answer larger than the file plus multipartSlack gets the
//     whole file.
//
// It reads at most maxRanges+1 range-specs once one of them is satisfiable,
// so the work is bounded whatever the header's length.
func normalizeRange(values []string, size int64, ctype string, maxRanges int) (rangeAnswer, string) {
	if len(values) != 1 {
		// The field is not a list: a second line is no range request we
		// can read one way only.
		return rangeIgnore, ""
	}
	unit, set, ok := strings.Cut(values[0], "=")
	if !ok || !strings.EqualFold(unit, "bytes") {
		return rangeIgnore, ""
	}
	var ranges []byteRange
	specs, satisfiable := 0, false
	for spec := range strings.SplitSeq(set, ",") {
		spec = strings.Trim(spec, " \t")
		if spec == "" {
			continue // RFC 9110, section 5.6.1: empty list elements do not count
		}
		r, sat, ok := parseRangeSpec(spec, size)
		if !ok {
			return rangeIgnore, ""
		}
		specs++
		if specs > maxRanges {
			if satisfiable || sat {
				// Whatever follows, the answer is the whole file.
				return rangeIgnore, ""
			}
			continue
		}
		if sat {
			satisfiable = true
			r.order = specs
			ranges = append(ranges, r)
		}
	}
	switch {
	case specs == 0:
		return rangeIgnore, ""
	case !satisfiable:
		// ServeContent answers this with 416 and "Content-Range: bytes
		// */size" (or 200 for an empty file, as it always has).
		return rangeUnsatisfiable, "bytes=" + strconv.FormatInt(size, 10) + "-"
	}
	ranges = coalesce(ranges)
	if len(ranges) > 1 && multipartSize(ranges, size, ctype) > size+multipartSlack {
		return rangeIgnore, ""
	}
	var b strings.Builder
	b.WriteString("bytes=")
	for i, r := range ranges {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.FormatInt(r.first, 10))
		b.WriteByte('-')
		b.WriteString(strconv.FormatInt(r.last, 10))
	}
	return rangeServe, b.String()
}

// parseRangeSpec parses one int-range ("first-[last]") or suffix-range
// ("-length") of RFC 9110, section 14.1.1, with no whitespace inside, and
// resolves it against size. ok is false for a spec that breaks the grammar
// or has last-pos before first-pos; sat says whether it selects any byte.
// Numbers too large for an int64 saturate: they are valid, just far away.
func parseRangeSpec(spec string, size int64) (r byteRange, sat, ok bool) {
	firstS, lastS, found := strings.Cut(spec, "-")
	if !found {
		return r, false, false
	}
	if firstS == "" {
		n, ok := parseDigits(lastS)
		if !ok {
			return r, false, false
		}
		if n == 0 || size == 0 {
			return r, false, true
		}
		return byteRange{first: size - min(n, size), last: size - 1}, true, true
	}
	first, ok := parseDigits(firstS)
	if !ok {
		return r, false, false
	}
	last := int64(-1)
	if lastS != "" {
		if last, ok = parseDigits(lastS); !ok || last < first {
			return r, false, false
		}
	}
	if first >= size {
		return r, false, true
	}
	if last < 0 || last >= size {
		last = size - 1
	}
	return byteRange{first: first, last: last}, true, true
}

// parseDigits parses a non-empty run of ASCII digits, saturating at the
// largest int64.
func parseDigits(s string) (int64, bool) {
	if s == "" {
		return 0, false
	}
	var n int64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		d := int64(c - '0')
		if n > (math.MaxInt64-d)/10 {
			n = math.MaxInt64
		} else {
			n = n*10 + d
		}
	}
	return n, true
}

// coalesce merges ranges that overlap or touch, and returns them in the
// order of the earliest range-spec each stands for.
func coalesce(ranges []byteRange) []byteRange {
	if len(ranges) < 2 {
		return ranges
	}
	slices.SortFunc(ranges, func(a, b byteRange) int {
		return cmp.Or(cmp.Compare(a.first, b.first), cmp.Compare(a.last, b.last))
	})
	out := ranges[:1]
	for _, r := range ranges[1:] {
		cur := &out[len(out)-1]
		if r.first <= cur.last+1 { // last < size, so no overflow
			cur.last = max(cur.last, r.last)
			cur.order = min(cur.order, r.order)
			continue
		}
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b byteRange) int { return a.order - b.order })
	return out
}

// multipartSize is the length of the multipart/byteranges body
// http.ServeContent writes for ranges, computed the way it computes its
// Content-Length: part headers through a mime/multipart writer, whose
// boundary always has the same length, plus the ranges' bytes.
func multipartSize(ranges []byteRange, size int64, ctype string) int64 {
	var cw countWriter
	mw := multipart.NewWriter(&cw)
	var n int64
	total := strconv.FormatInt(size, 10)
	for _, r := range ranges {
		mw.CreatePart(textproto.MIMEHeader{
			"Content-Range": {"bytes " + strconv.FormatInt(r.first, 10) + "-" + strconv.FormatInt(r.last, 10) + "/" + total},
			"Content-Type":  {ctype},
		})
		n += r.last - r.first + 1
	}
	mw.Close()
	return n + int64(cw)
}

type countWriter int64

func (w *countWriter) Write(p []byte) (int, error) {
	*w += countWriter(len(p))
	return len(p), nil
}
