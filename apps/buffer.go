package apps

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync"
	"tlsedge/server/httpcore"
)

// requestBuffer reads a request's whole body before the proxy contacts the
// upstream (proxy_request_buffering), so that a body the core refuses half
// way (broken chunking, over max_request_body_size, too slow) never reaches
// an upstream at all: not its head, not its first chunks, not even a
// connection. Up to memLimit bytes stay in memory; a larger body goes to a
// temporary file.
//
// The file lives in a directory of its own, created 0700 for the request
// under dir, and is created 0600 and unlinked at once: only the open
// descriptor names it, so no other user can open it, nothing is left behind
// whatever happens to the process, and the empty directory goes when the
// body is closed.
type requestBuffer struct {
	memLimit int64
	dir      string // where the private directories go
}

// errSpool marks a failure of the edge's own storage, which is no fault of
// the client's.
var errSpool = errors.New("apps: buffering the request body")

// read reads r's body whole. The error is the body's own (the client's
// fault) unless it wraps errSpool.
//
// The memory a body may take is charged to the serving Core's budget
// (max_buffered_memory), the one that bounds request heads: when the budget
// cannot give it, the body goes to a file from its first byte, so a flood
// of uploads costs disk, not memory, and never a refusal.
func (b *requestBuffer) read(r *http.Request) (*spooledBody, error) {
	sb := &spooledBody{}
	memLimit := b.memLimit
	if r.ContentLength >= 0 && r.ContentLength < memLimit {
		memLimit = r.ContentLength
	}
	if budget := httpcore.BudgetFromContext(r.Context()); budget != nil {
		charge := memLimit + bytes.MinRead
		if budget.TryAcquire(charge) {
			sb.budget, sb.charged = budget, charge
		} else {
			memLimit = 0
		}
	}
	var buf bytes.Buffer
	if r.ContentLength >= 0 && r.ContentLength <= memLimit {
		buf.Grow(int(r.ContentLength) + bytes.MinRead) // ReadFrom wants MinRead spare to read EOF
	}
	// Read to the end, not to Content-Length: the body's own EOF (or
	// error) is its verdict. One byte past the limit tells a body that
	// fits from one that does not.
	if _, err := buf.ReadFrom(io.LimitReader(r.Body, memLimit+1)); err != nil {
		sb.Close()
		return nil, err
	}
	if int64(buf.Len()) <= memLimit {
		sb.mem, sb.size = buf.Bytes(), int64(buf.Len())
		return sb, nil
	}
	sb.release() // the memory goes with the spill
	if err := b.spill(sb, buf.Bytes(), r.Body); err != nil {
		sb.Close()
		return nil, err
	}
	return sb, nil
}

// spill writes head and the rest of body to a private temporary file.
func (b *requestBuffer) spill(sb *spooledBody, head []byte, body io.Reader) error {
	dir, err := os.MkdirTemp(b.dir, "tlsedge-body-")
	if err != nil {
		return fmt.Errorf("%w: %w", errSpool, err)
	}
	sb.dir = dir
	// MkdirTemp creates 0700 and CreateTemp 0600 (a umask can only take
	// from those).
	f, err := os.CreateTemp(dir, "body-")
	if err != nil {
		return fmt.Errorf("%w: %w", errSpool, err)
	}
	sb.file = f
	if err := os.Remove(f.Name()); err != nil {
		return fmt.Errorf("%w: %w", errSpool, err)
	}
	if _, err := f.Write(head); err != nil {
		return fmt.Errorf("%w: %w", errSpool, err)
	}
	n, err := io.Copy(spoolWriter{f}, body)
	if err != nil {
		var we writeErr
		if errors.As(err, &we) {
			return fmt.Errorf("%w: %w", errSpool, we.err)
		}
		return err
	}
	sb.size = int64(len(head)) + n
	return nil
}

// spoolWriter hides the file's ReadFrom, so that io.Copy's errors tell
// writes (ours) from reads (the client's) apart.
type spoolWriter struct{ f *os.File }

type writeErr struct{ err error }

func (e writeErr) Error() string { return e.err.Error() }

func (w spoolWriter) Write(p []byte) (int, error) {
	n, err := w.f.Write(p)
	if err != nil {
		return n, writeErr{err}
	}
	return n, nil
}

// spooledBody is a request body read whole: in memory or in an unlinked
// file. The proxy hands the transport readers of it (one per attempt: a
// body held whole can be sent again when a pooled upstream connection
// turns out closed) and closes it itself once the request is done. A
// transport still reading then (an upstream that answered before taking
// the whole body) gets an error, which only ends that upstream request.
type spooledBody struct {
	mem     []byte
	file    *os.File
	dir     string
	size    int64
	close   sync.Once
	budget  *httpcore.Budget // what mem is charged to; nil when uncharged
	charged int64
}

// release gives the memory charge back, once.
func (sb *spooledBody) release() {
	if sb.budget != nil {
		sb.budget.Release(sb.charged)
		sb.budget = nil
	}
}

// reader returns a reader of the whole body, whose Close does nothing.
func (sb *spooledBody) reader() io.ReadCloser {
	var ra io.ReaderAt = bytes.NewReader(sb.mem)
	if sb.file != nil {
		ra = sb.file
	}
	return spoolReader{io.NewSectionReader(ra, 0, sb.size)}
}

// spoolReader is the body the transport reads; rewrite knows it needs no
// watching, since reading it cannot be the client's fault.
type spoolReader struct{ *io.SectionReader }

func (spoolReader) Close() error { return nil }

// Close closes the file, which frees its storage, and removes the private
// directory.
func (sb *spooledBody) Close() error {
	sb.close.Do(func() {
		sb.release()
		if sb.file != nil {
			sb.file.Close()
		}
		if sb.dir != "" {
			os.Remove(sb.dir)
		}
	})
	return nil
}

// buffered returns a shallow copy of r that carries sb as its body, with a
// Content-Length. Request trailers cannot follow a Content-Length and are
// dropped, as nginx drops them; Expect: 100-continue was answered when the
// body was read, and asking the upstream again would only delay it.
func buffered(r *http.Request, sb *spooledBody) *http.Request {
	r2 := new(http.Request)
	*r2 = *r
	r2.ContentLength = sb.size
	r2.TransferEncoding = nil
	r2.Trailer = nil
	if sb.size == 0 {
		r2.Body, r2.GetBody = http.NoBody, nil
	} else {
		r2.Body = sb.reader()
		r2.GetBody = func() (io.ReadCloser, error) { return sb.reader(), nil }
	}
	if _, ok := r.Header["Expect"]; ok {
		r2.Header = r.Header.Clone()
		r2.Header.Del("Expect")
	}
	return r2
}

// checkTempDir checks that private directories can be made under dir, so
// that a bad proxy_temp_path fails at start-up rather than on the first
// large upload.
func checkTempDir(dir string) error {
	fi, err := os.Stat(dir)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s is not a directory", dir)
	}
	d, err := os.MkdirTemp(dir, "tlsedge-body-")
	if err != nil {
		return err
	}
	return os.Remove(d)
}
