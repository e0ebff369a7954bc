package integration

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// logrotate's way: move the process log and the access log away, then
// SIGUSR1; both are opened again by name and the next lines go to the new
// files, none to the moved ones.
func TestSIGUSR1ReopensBothLogs(t *testing.T) {
	dir := t.TempDir()
	logPath, accessPath := filepath.Join(dir, "tlsedge.log"), filepath.Join(dir, "access.log")
	port := freePort(t)
	// The logs go to the file, so wait for the banner alone.
	p := launch(t, binary, nil, "--socket-port", strconv.Itoa(port), "--ssl-module", "none", "--mount", "/=text:ok",
		"--log-file", logPath, "--access-log", accessPath)
	for deadline := time.Now().Add(20 * time.Second); !strings.Contains(p.stdout.String(), "tlsedge is serving"); {
		if time.Now().After(deadline) {
			t.Fatal("tlsedge did not start serving within 20s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	url := "http://127.0.0.1:" + strconv.Itoa(port) + "/"
	get := func(path string) {
		t.Helper()
		resp, err := http.Get(url + path)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	get("before")
	for _, f := range []string{logPath, accessPath} {
		if err := os.Rename(f, f+".1"); err != nil {
			t.Fatal(err)
		}
	}
	p.cmd.Process.Signal(syscall.SIGUSR1)
	read := func(f string) string {
		b, _ := os.ReadFile(f)
		return string(b)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(read(logPath), "logs reopened") && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	get("after")
	time.Sleep(100 * time.Millisecond)
	if !strings.Contains(read(logPath), "logs reopened") {
		t.Errorf("the new process log lacks the reopen line:\n%s", read(logPath))
	}
	if strings.Contains(read(logPath+".1"), "logs reopened") {
		t.Errorf("the moved process log got lines after SIGUSR1:\n%s", read(logPath+".1"))
	}
	if !strings.Contains(read(logPath+".1"), "serving") {
		t.Errorf("the moved process log lacks the start-up lines:\n%s", read(logPath+".1"))
	}
	if a := read(accessPath); !strings.Contains(a, "/after") || strings.Contains(a, "/before") {
		t.Errorf("new access log:\n%s", a)
	}
	if a := read(accessPath + ".1"); !strings.Contains(a, "/before") || strings.Contains(a, "/after") {
		t.Errorf("moved access log:\n%s", a)
	}
}
