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
	"tlsedge/server/httpcore"
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

// A buffered body's memory is charged to the serving Core's budget, the one
// max_buffered_memory sets for request heads; when the budget cannot give
// it, the body goes to a file from its first byte instead of being refused.
func TestProxyBufferingChargesTheBudget(t *testing.T) {
	tmp := t.TempDir()
	up := newLoggingUpstream(t)
	budget := httpcore.NewBudget(8 << 20)
	var mu sync.Mutex
	var inUse []int64
	var files []int
	up.during = func(*http.Request) {
		mu.Lock()
		inUse = append(inUse, budget.InUse())
		files = append(files, len(openUnder(tmp)))
		mu.Unlock()
	}
	proxy := mustNew(t, up.url, Env{Options: Options{ProxyRequestBuffering: true, ProxyTempPath: tmp}})
	front, _ := serveCore(t, map[string]http.Handler{"/": proxy}, func(o *httpcore.Options) { o.Budget = budget })
	data := bytes.Repeat([]byte("0123456789abcdef"), 2048) // 32 KiB: fits proxy_request_buffer_size
	post := func() {
		t.Helper()
		resp, err := http.Post(front+"/", "application/octet-stream", bytes.NewReader(data))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.HasPrefix(string(b), fmt.Sprint(len(data))+" ") {
			t.Fatalf("%d %q", resp.StatusCode, b)
		}
	}
	post()
	// The budget is all but used up by others: the next body spills.
	held := budget.Limit() - 1024
	if !budget.TryAcquire(held) {
		t.Fatal("budget not free after the request")
	}
	post()
	budget.Release(held)
	mu.Lock()
	defer mu.Unlock()
	if len(inUse) != 2 {
		t.Fatalf("upstream saw %d requests", len(inUse))
	}
	if inUse[0] < int64(len(data)) || files[0] != 0 {
		t.Errorf("in memory: budget in use %d (want >= %d), %d files", inUse[0], len(data), files[0])
	}
	if inUse[1] != held || files[1] != 1 {
		t.Errorf("budget exhausted: in use %d (want only the %d held elsewhere), %d files (want the body on disk)", inUse[1], held, files[1])
	}
	if n := budget.InUse(); n != 0 {
		t.Errorf("%d bytes still charged after the requests", n)
	}
}
