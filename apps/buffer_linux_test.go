//go:build linux

package apps

import (
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// openUnder lists the files this process holds open under dir, as
// /proc/self/fd names them: "path (deleted)" once unlinked.
func openUnder(dir string) map[string]fs.FileMode {
	out := map[string]fs.FileMode{}
	fds, _ := os.ReadDir("/proc/self/fd")
	for _, fd := range fds {
		p := filepath.Join("/proc/self/fd", fd.Name())
		link, err := os.Readlink(p)
		if err != nil || !strings.HasPrefix(link, dir+"/") {
			continue
		}
		if fi, err := os.Stat(p); err == nil { // the open file itself
			out[link] = fi.Mode()
		}
	}
	return out
}

// A body larger than proxy_request_buffer_size goes to a 0600 file,
// unlinked at once, in a 0700 directory of its own under proxy_temp_path;
// once the request is done nothing is left there. A small body touches no
// file at all.
func TestProxyBufferingTempFile(t *testing.T) {
	tmp := t.TempDir()
	up := newLoggingUpstream(t)
	type seen struct {
		files map[string]fs.FileMode
		dirs  map[string]fs.FileMode
	}
	var mu sync.Mutex
	var during []seen
	up.during = func(*http.Request) {
		// The edge is waiting for this answer, holding the body's file.
		s := seen{files: openUnder(tmp), dirs: map[string]fs.FileMode{}}
		for link := range s.files {
			dir := filepath.Dir(strings.TrimSuffix(link, " (deleted)"))
			if fi, err := os.Stat(dir); err == nil {
				s.dirs[dir] = fi.Mode()
			}
		}
		mu.Lock()
		during = append(during, s)
		mu.Unlock()
	}
	front := serveTCP(t, mustNew(t, up.url, Env{Options: Options{ProxyRequestBuffering: true, ProxyTempPath: tmp}}))
	client := &http.Client{Timeout: 30 * time.Second}
	for i, size := range []int{1000, 5 << 20} {
		data := bytes.Repeat([]byte("0123456789abcdef"), size/16)
		resp, err := client.Post(front+"/", "application/octet-stream", struct{ io.Reader }{bytes.NewReader(data)})
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.HasPrefix(string(b), fmt.Sprint(len(data))+" ") {
			t.Fatalf("%d bytes: %d %q", size, resp.StatusCode, b)
		}
		mu.Lock()
		s := during[i]
		mu.Unlock()
		if size <= 64<<10 {
			if len(s.files) != 0 {
				t.Errorf("%d bytes: files open under proxy_temp_path: %v", size, s.files)
			}
			continue
		}
		if len(s.files) != 1 || len(s.dirs) != 1 {
			t.Fatalf("%d bytes: open under proxy_temp_path %v in %v; want one file in one directory", size, s.files, s.dirs)
		}
		for link, mode := range s.files {
			if !strings.HasSuffix(link, " (deleted)") || mode.Perm() != 0o600 || !mode.IsRegular() {
				t.Errorf("body file %s: mode %v; want 0600, already unlinked", link, mode)
			}
		}
		for dir, mode := range s.dirs {
			if filepath.Dir(dir) != tmp || mode.Perm() != 0o700 || !mode.IsDir() {
				t.Errorf("body directory %s: mode %v; want 0700 directly under %s", dir, mode, tmp)
			}
		}
		if left := leftIn(tmp); len(left) != 0 {
			t.Errorf("left behind in proxy_temp_path: %v", left)
		}
	}
}
