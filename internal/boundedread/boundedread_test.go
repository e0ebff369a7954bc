package boundedread

import (
	"bytes"
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestReadFile(t *testing.T) {
	dir := t.TempDir()
	small := filepath.Join(dir, "small.pem")
	if err := os.WriteFile(small, []byte("pem"), 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link.pem")
	if err := os.Symlink(small, link); err != nil {
		t.Fatal(err)
	}
	exact := filepath.Join(dir, "exact")
	if err := os.WriteFile(exact, bytes.Repeat([]byte{'a'}, MaxSize), 0o600); err != nil {
		t.Fatal(err)
	}
	// A sparse file of a GiB: reading it whole would take a GiB of memory.
	huge := filepath.Join(dir, "huge")
	if f, err := os.Create(huge); err != nil {
		t.Fatal(err)
	} else if err := f.Truncate(1 << 30); err != nil {
		t.Fatal(err)
	} else {
		f.Close()
	}
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "s.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()

	tests := []struct {
		name, path string
		size       int
		err        error
		msg        string
	}{
		{"regular", small, 3, nil, ""},
		{"symlink to regular", link, 3, nil, ""},
		{"exactly MaxSize", exact, MaxSize, nil, ""},
		{"missing", filepath.Join(dir, "nope"), 0, fs.ErrNotExist, "no such file"},
		{"over MaxSize", huge, 0, ErrTooLarge, "larger than 4 MiB"},
		{"/dev/zero", "/dev/zero", 0, ErrNotRegular, "a character device"},
		{"fifo with no writer", fifo, 0, ErrNotRegular, "a named pipe"},
		{"directory", dir, 0, ErrNotRegular, "a directory"},
		{"socket", sock, 0, nil, ""}, // open fails: ENXIO
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			done := make(chan struct{})
			var data []byte
			var err error
			go func() { data, err = ReadFile(tt.path); close(done) }()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				t.Fatalf("ReadFile(%s) still blocked after 10s", tt.path)
			}
			if tt.name == "socket" {
				if err == nil {
					t.Fatal("a socket was read")
				}
				return
			}
			if tt.err == nil {
				if err != nil || len(data) != tt.size {
					t.Fatalf("ReadFile = %d bytes, %v; want %d", len(data), err, tt.size)
				}
				return
			}
			var pe *fs.PathError
			if !errors.Is(err, tt.err) || !errors.As(err, &pe) || !strings.Contains(err.Error(), tt.path) || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("ReadFile = %v; want a PathError naming the file, wrapping %v, saying %q", err, tt.err, tt.msg)
			}
		})
	}
}
