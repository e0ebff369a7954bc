// Package boundedread reads the small files tlsedge is pointed at by its
// options (certificates, keys, CA bundles, password files) without trusting
// the path to name one. os.ReadFile on /dev/zero reads until memory runs out,
// and on a FIFO nobody writes to it blocks forever in open; either is one
// mistyped option away. ReadFile refuses anything but a regular file (a
// symlink to one is fine) and stops at MaxSize.
package boundedread

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"syscall"
)

// MaxSize is the most ReadFile reads. A certificate chain or CA bundle is
// tens of KiB; the system's whole trust store is under 1 MiB.
const MaxSize = 4 << 20

// ErrNotRegular and ErrTooLarge are wrapped, in an *fs.PathError naming the
// file, by what ReadFile refuses.
var (
	ErrNotRegular = errors.New("not a regular file")
	ErrTooLarge   = fmt.Errorf("larger than %d MiB; is this the right file?", MaxSize>>20)
)

// ReadFile reads the regular file name, of at most MaxSize bytes. Errors are
// *fs.PathError values, so errors.Is(err, fs.ErrNotExist) works as with
// os.ReadFile.
func ReadFile(name string) ([]byte, error) {
	// O_NONBLOCK makes opening a FIFO return at once instead of waiting for
	// a writer; it changes nothing for a regular file, which is all that is
	// read past the check below.
	f, err := os.OpenFile(name, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, &fs.PathError{Op: "read", Path: name, Err: fmt.Errorf("%w (%s)", ErrNotRegular, kind(fi.Mode()))}
	}
	data, err := io.ReadAll(io.LimitReader(f, MaxSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > MaxSize {
		return nil, &fs.PathError{Op: "read", Path: name, Err: ErrTooLarge}
	}
	return data, nil
}

func kind(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m&fs.ModeNamedPipe != 0:
		return "a named pipe"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeCharDevice != 0:
		return "a character device"
	case m&fs.ModeDevice != 0:
		return "a device"
	}
	return "type " + m.Type().String()
}
