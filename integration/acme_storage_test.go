package integration

import (
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"tlsedge/peercred/peercredtest"
)

// The ACME storage directory unwritable (root's, while the server runs as
// nobody) when renewals come due: the failure is logged and counted, and the
// server keeps serving the certificate it has.
func TestACMEStorageUnwritable(t *testing.T) {
	peercredtest.RequireRoot(t)
	pb := StartPebble(t, PebbleConfig{Validity: time.Minute})
	port := pb.TLSPort
	storage := filepath.Join(peercredtest.Dir(t), "acme") // root's; nobody may not write
	data := peercredtest.Dir(t)
	p := start(t, append(acmeArgs(pb, port, "http-01", "stuck.example.com"),
		"--acme-storage", storage, "--acme-renew-window", "90%", "--acme-renew-interval", "1s",
		"--user", "nobody", "--data-dir", data, "--statistics", "--mount", "/status=status:", "--mount", "/=text:still-here")...)
	roots := pb.Roots(t)
	first, code, err := acmeGet(port, "stuck.example.com", roots)
	if err != nil || code != 200 {
		t.Fatalf("first request: %d %v", code, err)
	}
	// Renewal is due after 6 s of the 60 s lifetime; wait for failures.
	deadline := time.Now().Add(40 * time.Second)
	for !strings.Contains(p.stderr.String(), "acme: storage is not writable") && time.Now().Before(deadline) {
		leaf, code, err := acmeGet(port, "stuck.example.com", roots)
		if err != nil || code != 200 {
			t.Fatalf("serving stopped while storage was unwritable: %d %v", code, err)
		}
		if leaf.SerialNumber.Cmp(first.SerialNumber) != 0 {
			t.Fatal("a renewed certificate was served although it could not be stored")
		}
		time.Sleep(200 * time.Millisecond)
	}
	if !strings.Contains(p.stderr.String(), "acme: storage is not writable") {
		t.Fatalf("no storage failure logged:\n%s", tail([]byte(p.stderr.String())))
	}
	// Counted in the statistics.
	leaf, code, err := acmeGet(port, "stuck.example.com", roots)
	if err != nil || code != 200 || leaf.SerialNumber.Cmp(first.SerialNumber) != 0 {
		t.Fatalf("after the failure: %d %v", code, err)
	}
	resp, err := acmeClient(port, roots).Get("https://stuck.example.com:" + strconv.Itoa(port) + "/status/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := regexp.MustCompile(`tlsedge_acme_events_total\{event="storage_failed"[^}]*\} (\d+)`).FindSubmatch(metrics)
	if m == nil || string(m[1]) == "0" {
		t.Fatalf("failure not counted: %s", m)
	}
	if fi, err := os.Stat(storage); err != nil || fi.Sys() == nil {
		t.Fatal(err)
	}
}
