package apps

import (
	"errors"
	"fmt"
	"html"
	"io"
	"io/fs"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
)

// static serves files under one directory with http.ServeContent semantics
// (Range, If-None-Match, If-Modified-Since, HEAD, content types). Range
// headers are normalised first (see normalizeRange), so that no Range
// header costs more than the file itself.
//
// Dotfiles and dot-directories (.git, .env) are not served, except under
// .well-known. Paths are confined twice: the URL path is refused if any segment is "..",
// or it holds a NUL or backslash, and every open goes through an os.Root,
// which also refuses symlinks leading out of the root. With
// dir_follow_symlinks the root is opened with plain os.Open after the same
// path checks, so links may leave it but ".." still may not.
type static struct {
	dir         string
	root        *os.Root // nil when following symlinks out of the root
	listing     bool
	maxRanges   int
	log         *slog.Logger
	indexName   string
	precompress []encoding
}

// encoding is a precompressed sibling: file.ext + Suffix, served with
// Content-Encoding Name when the client accepts it.
type encoding struct {
	Name, Suffix string
}

func newStatic(dir string, env Env) (*static, error) {
	fi, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("%w %q: %w", ErrBadTarget, "dir:"+dir, err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("%w %q: not a directory", ErrBadTarget, "dir:"+dir)
	}
	s := &static{
		dir:         dir,
		listing:     env.Options.DirListing,
		maxRanges:   env.Options.RangesLimit(),
		log:         env.logger().With("dir", dir),
		indexName:   "index.html",
		precompress: []encoding{{"br", ".br"}, {"gzip", ".gz"}},
	}
	if !env.Options.DirFollowSymlinks {
		// The Root keeps the directory open: a rename of the mount point
		// later does not redirect requests elsewhere.
		s.root, err = os.OpenRoot(dir)
		if err != nil {
			return nil, fmt.Errorf("%w %q: %w", ErrBadTarget, "dir:"+dir, err)
		}
	}
	return s, nil
}

// Close releases the root directory; requests after it fail.
func (s *static) Close() error {
	if s.root == nil {
		return nil
	}
	return s.root.Close()
}

// cleanPath checks the request path and returns it relative to the root
// ("." for the root itself). r.URL.Path is already percent-decoded once, so
// "%2e%2e" and "%2f" arrive here as ".." and "/"; a double-encoded
// "%252e%252e" arrives as the literal name "%2e%2e", which is harmless.
func cleanPath(p string) (string, bool) {
	if strings.ContainsAny(p, "\x00\\") {
		return "", false
	}
	for seg := range strings.SplitSeq(p, "/") {
		if seg == ".." {
			return "", false
		}
	}
	c := path.Clean("/" + p)
	rel := strings.TrimPrefix(c, "/")
	if rel == "" {
		rel = "."
	}
	if !fs.ValidPath(rel) {
		return "", false
	}
	return rel, true
}

func (s *static) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "Method Not Allowed", http.StatusMethodNotAllowed)
		return
	}
	rel, ok := cleanPath(r.URL.Path)
	if !ok {
		http.Error(w, "Bad Request: invalid path", http.StatusBadRequest)
		return
	}
	if isHidden(rel) {
		http.Error(w, "Not Found", http.StatusNotFound)
		return
	}
	f, fi, err := s.open(rel)
	if err != nil {
		s.openError(w, r, rel, err)
		return
	}
	defer f.Close()

	if fi.IsDir() {
		if !strings.HasSuffix(r.URL.Path, "/") {
			// Relative, so it stays right under any mount prefix.
			s.redirectSlash(w, r)
			return
		}
		idx := path.Join(rel, s.indexName)
		fi2, f2, ok := s.openIndex(idx)
		if !ok {
			if !s.listing {
				http.Error(w, "Forbidden: directory listing is off", http.StatusForbidden)
				return
			}
			s.list(w, r, f)
			return
		}
		f.Close()
		f, fi, rel = f2, fi2, idx
		defer f.Close()
	} else if strings.HasSuffix(r.URL.Path, "/") {
		http.Error(w, "Not Found", http.StatusNotFound)
		return
	}
	s.serveFile(w, r, rel, f, fi)
}

func (s *static) openIndex(idx string) (fs.FileInfo, *os.File, bool) {
	f, fi, err := s.open(idx)
	if err != nil {
		return nil, nil, false
	}
	if fi.IsDir() {
		f.Close()
		return nil, nil, false
	}
	return fi, f, true
}

// isHidden reports whether rel has a segment starting with a dot other than
// .well-known: .git, .env and .htpasswd left in a web root are a classic
// leak, and nothing a site links to lives there.
func isHidden(rel string) bool {
	for seg := range strings.SplitSeq(rel, "/") {
		if strings.HasPrefix(seg, ".") && seg != "." && seg != ".well-known" {
			return true
		}
	}
	return false
}

// open opens rel for reading without blocking (a FIFO would otherwise hang
// the worker) and accepts only regular files and directories.
func (s *static) open(rel string) (*os.File, fs.FileInfo, error) {
	var f *os.File
	var err error
	flags := os.O_RDONLY | syscall.O_NONBLOCK
	if s.root != nil {
		f, err = s.root.OpenFile(rel, flags, 0)
	} else {
		f, err = os.OpenFile(filepath.Join(s.dir, filepath.FromSlash(rel)), flags, 0)
	}
	if err != nil {
		return nil, nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	if !fi.Mode().IsRegular() && !fi.IsDir() {
		f.Close()
		return nil, nil, fs.ErrNotExist
	}
	return f, fi, nil
}

func (s *static) openError(w http.ResponseWriter, r *http.Request, rel string, err error) {
	switch {
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, syscall.ENOTDIR):
		http.Error(w, "Not Found", http.StatusNotFound)
	case errors.Is(err, fs.ErrPermission):
		http.Error(w, "Forbidden", http.StatusForbidden)
	default:
		// os.Root's "path escapes from parent" (a symlink out of the root)
		// lands here: answer as if there were nothing.
		s.log.Debug("static: open refused", "path", rel, "err", err)
		http.Error(w, "Not Found", http.StatusNotFound)
	}
}

func (s *static) redirectSlash(w http.ResponseWriter, r *http.Request) {
	// The mount prefix itself ("/static" mounted at /static) arrives with an
	// empty path; the segment to repeat is then the last one the client sent.
	p := r.URL.Path
	if p == "" {
		if u, err := url.ParseRequestURI(r.RequestURI); err == nil {
			p = u.Path
		}
	}
	target := path.Base(p) + "/"
	if p == "" || p == "/" {
		target = "./"
	}
	w.Header().Set("Location", (&url.URL{Path: target, RawQuery: r.URL.RawQuery}).String())
	w.WriteHeader(http.StatusMovedPermanently)
}

// serveFile serves f, or a precompressed sibling the client accepts, through
// http.ServeContent. The sibling must be a regular file at least as new as the
// original, so a stale .gz is never served in its place.
func (s *static) serveFile(w http.ResponseWriter, r *http.Request, rel string, f *os.File, fi fs.FileInfo) {
	h := w.Header()
	ctype := mime.TypeByExtension(path.Ext(rel))
	if ctype == "" {
		// Let ServeContent sniff the original, never the compressed bytes.
		var buf [512]byte
		n, _ := io.ReadFull(f, buf[:])
		ctype = http.DetectContentType(buf[:n])
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			httpError(w, r, "Internal Server Error", http.StatusInternalServerError)
			return
		}
	}
	h.Set("Content-Type", ctype)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Accept-Ranges", "bytes")

	body, info, enc := f, fi, ""
	hasVariant := false
	for _, e := range s.precompress {
		cf, cfi, err := s.open(rel + e.Suffix)
		if err != nil {
			continue
		}
		if cfi.IsDir() || cfi.ModTime().Before(fi.ModTime()) {
			cf.Close()
			continue
		}
		hasVariant = true
		if enc == "" && acceptsEncoding(r.Header.Values("Accept-Encoding"), e.Name) {
			body, info, enc = cf, cfi, e.Name
			defer cf.Close()
			continue
		}
		cf.Close()
	}
	if hasVariant {
		h.Add("Vary", "Accept-Encoding")
	}
	if enc != "" {
		h.Set("Content-Encoding", enc)
	}
	// A strong validator per representation, from mtime and size like
	// nginx's; the encoding tells the compressed one apart.
	etag := `"` + strconv.FormatInt(info.ModTime().UnixNano(), 36) + "-" + strconv.FormatInt(info.Size(), 36)
	if enc != "" {
		etag += "-" + enc
	}
	h.Set("ETag", etag+`"`)
	if rh := r.Header.Values("Range"); len(rh) > 0 {
		r = s.normalizeRange(r, rh, info.Size(), h.Get("Content-Type"))
	}
	http.ServeContent(w, r, rel, info.ModTime(), body)
}

// normalizeRange returns r with its Range header replaced by what
// normalizeRange (the function) makes of it for a representation of size
// bytes: removed when the whole file is the answer, else absolute and
// coalesced ranges. ServeContent then applies If-Range and the other
// preconditions to that as it would to the client's own header.
func (s *static) normalizeRange(r *http.Request, values []string, size int64, ctype string) *http.Request {
	ans, v := normalizeRange(values, size, ctype, s.maxRanges)
	r2 := new(http.Request)
	*r2 = *r
	r2.Header = r.Header.Clone()
	if ans == rangeIgnore {
		r2.Header.Del("Range")
	} else {
		r2.Header.Set("Range", v)
	}
	return r2
}

// acceptsEncoding reports whether Accept-Encoding values allow coding with a
// non-zero quality, by name or by "*".
func acceptsEncoding(values []string, coding string) bool {
	star := false
	for _, v := range values {
		for part := range strings.SplitSeq(v, ",") {
			name, params, _ := strings.Cut(strings.TrimSpace(part), ";")
			name = strings.ToLower(strings.TrimSpace(name))
			q := 1.0
			if k, val, ok := strings.Cut(strings.TrimSpace(params), "="); ok && strings.TrimSpace(k) == "q" {
				if f, err := strconv.ParseFloat(strings.TrimSpace(val), 64); err == nil {
					q = f
				}
			}
			switch name {
			case coding:
				return q > 0
			case "*":
				star = q > 0
			}
		}
	}
	return star
}

// list writes a plain HTML listing of dir, names escaped, dotfiles hidden.
func (s *static) list(w http.ResponseWriter, r *http.Request, dir *os.File) {
	entries, err := dir.ReadDir(-1)
	if err != nil {
		httpError(w, r, "Internal Server Error", http.StatusInternalServerError)
		return
	}
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") {
			continue
		}
		n := e.Name()
		if e.IsDir() {
			n += "/"
		}
		names = append(names, n)
	}
	slices.Sort(names)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	if r.Method == http.MethodHead {
		return
	}
	var b strings.Builder
	title := html.EscapeString(r.URL.Path)
	fmt.Fprintf(&b, "<!doctype html>\n<meta charset=utf-8>\n<title>Index of %s</title>\n<h1>Index of %s</h1>\n<ul>\n", title, title)
	for _, n := range names {
		u := url.URL{Path: n}
		fmt.Fprintf(&b, "<li><a href=\"./%s\">%s</a></li>\n", html.EscapeString(u.String()), html.EscapeString(n))
	}
	b.WriteString("</ul>\n")
	io.WriteString(w, b.String())
}
